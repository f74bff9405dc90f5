//! HTTP for the updater: one agent with bounded timeouts, the system's
//! trust store for HTTPS, proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`,
//! a few redirects at most; and the fetch of `update.toml`, capped in size.

use std::time::Duration;

use payload_tools::manifest::{MAX_MANIFEST_LEN, UpdateManifest};
use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig};

use super::UpdateError;

/// Connecting must not take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A read that gets nothing for this long means a stalled server.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole fetch of `update.toml`.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed at most.
const MAX_REDIRECTS: u32 = 5;

pub fn agent() -> Agent {
    Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .max_redirects(MAX_REDIRECTS)
        .http_status_as_error(false)
        .user_agent(concat!("onefile/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into()
}

/// Fetches and parses `update.toml`.
pub fn fetch_manifest(agent: &Agent, url: &str) -> Result<UpdateManifest, UpdateError> {
    let transport = |e: ureq::Error| UpdateError::Transport {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let mut response = agent
        .get(url)
        .config()
        .timeout_global(Some(MANIFEST_TIMEOUT))
        .build()
        .call()
        .map_err(transport)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(UpdateError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST_LEN)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => UpdateError::Manifest {
                url: url.to_owned(),
                reason: format!("larger than {MAX_MANIFEST_LEN} bytes"),
            },
            other => transport(other),
        })?;
    UpdateManifest::parse(&text).map_err(|reason| UpdateError::Manifest {
        url: url.to_owned(),
        reason,
    })
}

/// One line for a transport error.
pub fn describe(e: &ureq::Error) -> String {
    e.to_string()
}
