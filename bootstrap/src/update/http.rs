//! HTTP for the updater: one agent with bounded timeouts, the system's
//! trust store for HTTPS (with ring's algorithms and no client
//! certificate), proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`;
//! redirects followed here, a few at most, each hop checked against the
//! transport policy; and the fetch of `update.toml`, capped in size.
//!
//! The policy: `https://` always; plain `http://` only to this machine
//! (127.0.0.0/8, `::1`, `localhost`) unless the build opted in with
//! `--allow-insecure-http`; never a redirect from `https` to `http`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use payload_tools::manifest::MAX_MANIFEST_LEN;
use rustls::crypto::{CryptoProvider, KeyProvider};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use ureq::Agent;
use ureq::http::{Response, Uri};
use ureq::tls::{RootCerts, TlsConfig};

use super::{RunningBuild, UpdateError};

/// Connecting must not take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A read that gets nothing for this long means a stalled server.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole fetch of `update.toml`.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed at most.
const MAX_REDIRECTS: u32 = 5;

/// Which URLs the updater may use.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_insecure_http: bool,
}

/// The agent for every request of the updater of `build`.
pub fn agent(build: &RunningBuild) -> Agent {
    Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        // Redirects are followed by `get`, which checks every hop.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(user_agent(&build.name, &build.version))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .unversioned_rustls_crypto_provider(crypto())
                .build(),
        )
        .build()
        .into()
}

/// `onefile/<tool version> <app>/<version> (<os>; <arch>)`: a host's access
/// logs show which versions of the app check, with no telemetry. The app's
/// name and version are safe file names already; anything that is not an
/// HTTP token character is dropped all the same.
fn user_agent(name: &str, version: &str) -> String {
    let token = |value: &str| -> String {
        value
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c))
            .collect()
    };
    format!(
        "onefile/{} {}/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        token(name),
        token(version),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// ring's TLS algorithms, all of them (versions, cipher suites, key
/// exchanges, signature checks), without its private keys: the updater
/// presents no client certificate, and ring's code to load and sign with
/// RSA, ECDSA and Ed25519 keys cost 43 KB of every packed file.
fn crypto() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        key_provider: &NoPrivateKeys,
        ..rustls::crypto::ring::default_provider()
    })
}

/// Loads no private key: nothing in the updater asks for one.
#[derive(Debug)]
struct NoPrivateKeys;

impl KeyProvider for NoPrivateKeys {
    fn load_private_key(
        &self,
        _: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "the updater presents no client certificate".into(),
        ))
    }
}

/// GETs `url` with `headers`, following redirects that the policy allows.
/// Returns the final response and its URL.
pub fn get(
    agent: &Agent,
    url: &str,
    policy: Policy,
    headers: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<(Response<ureq::Body>, String), UpdateError> {
    let mut current = url.to_owned();
    let mut was_https = false;
    for _ in 0..=MAX_REDIRECTS {
        let (response, uri) = get_once(agent, &current, was_https, policy, headers, timeout)?;
        was_https = uri.scheme_str() == Some("https");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (status, location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                current = resolve(&uri, &location);
            }
            _ => return Ok((response, current)),
        }
    }
    Err(UpdateError::Transport {
        url: url.to_owned(),
        reason: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// One `GET` of `url` (arrived at from an https URL when `was_https`), a
/// redirect answered as it is: for a report, whose answer is never read.
pub fn get_once(
    agent: &Agent,
    url: &str,
    was_https: bool,
    policy: Policy,
    headers: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<(Response<ureq::Body>, Uri), UpdateError> {
    let uri: Uri = url.parse().map_err(|_| UpdateError::Transport {
        url: url.to_owned(),
        reason: "not a valid URL".into(),
    })?;
    check_hop(was_https, &uri, url, policy)?;
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .config()
        .timeout_global(timeout)
        .build()
        .call()
        .map_err(|e| UpdateError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    Ok((response, uri))
}

/// Whether the updater may request `uri`, arriving from an https URL when
/// `was_https`.
fn check_hop(was_https: bool, uri: &Uri, url: &str, policy: Policy) -> Result<(), UpdateError> {
    if was_https && uri.scheme_str() != Some("https") {
        return Err(UpdateError::Insecure {
            url: url.to_owned(),
            reason: "a redirect from https to http is refused",
        });
    }
    check_allowed(uri, url, policy)
}

fn check_allowed(uri: &Uri, url: &str, policy: Policy) -> Result<(), UpdateError> {
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if policy.allow_insecure_http || uri.host().is_some_and(is_loopback) => Ok(()),
        Some("http") => Err(UpdateError::Insecure {
            url: url.to_owned(),
            reason: "plain http is only used to this machine unless the build allows it (pack --allow-insecure-http)",
        }),
        _ => Err(UpdateError::Insecure {
            url: url.to_owned(),
            reason: "only https (and http to this machine) are used",
        }),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The absolute URL a `Location` header points to, relative to `base`.
fn resolve(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{dir}{location}")
}

/// The first byte, last byte and total length (`None` for `*`) of a
/// `Content-Range: bytes FIRST-LAST/TOTAL` header.
pub fn content_range(response: &Response<ureq::Body>) -> Option<(u64, u64, Option<u64>)> {
    parse_content_range(response.headers().get("content-range")?.to_str().ok()?)
}

fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = range.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let parse = |n: &str| n.trim().parse::<u64>().ok();
    let (first, last) = (parse(first)?, parse(last)?);
    let total = match total.trim() {
        "*" => None,
        n => Some(parse(n).filter(|&total| last < total)?),
    };
    (first <= last).then_some((first, last, total))
}

/// The response's validator, for `If-Range`: a strong ETag, else
/// Last-Modified (a weak ETag may not be used for ranges).
pub fn validator(response: &Response<ureq::Body>) -> Option<String> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    header("etag")
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header("last-modified"))
}

/// What the host answered for `update.toml`.
#[derive(Debug)]
pub enum ManifestReply {
    /// 200: the text, and its validators (`ETag`, `Last-Modified`).
    Fresh {
        text: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 304: unchanged since the validators the request sent.
    NotModified,
    /// Another status, and its `Retry-After` header.
    Refused {
        status: u16,
        retry_after: Option<String>,
    },
}

/// Fetches `update.toml` with `headers` (conditional ones), its text at
/// most [`MAX_MANIFEST_LEN`] bytes.
pub fn fetch_manifest(
    agent: &Agent,
    url: &str,
    policy: Policy,
    headers: &[(&str, &str)],
) -> Result<ManifestReply, UpdateError> {
    let (mut response, _) = get(agent, url, policy, headers, Some(MANIFEST_TIMEOUT))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    match status {
        200 => {}
        304 => return Ok(ManifestReply::NotModified),
        _ => {
            return Ok(ManifestReply::Refused {
                status,
                retry_after: header("retry-after"),
            });
        }
    }
    let (etag, last_modified) = (header("etag"), header("last-modified"));
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
            other => UpdateError::Transport {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        })?;
    Ok(ManifestReply::Fresh {
        text,
        etag,
        last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "127.1.2.3", "[::1]", "localhost", "LOCALHOST"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "example.org", "localhost.example.org", "[::2]"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn transport_policy() {
        let strict = Policy {
            allow_insecure_http: false,
        };
        let lax = Policy {
            allow_insecure_http: true,
        };
        let ok = |was_https, url: &str, policy| {
            url.parse::<Uri>()
                .is_ok_and(|uri| check_hop(was_https, &uri, url, policy).is_ok())
        };
        assert!(ok(false, "https://example.org/u.toml", strict));
        assert!(ok(false, "http://127.0.0.1:8/u.toml", strict));
        assert!(ok(false, "http://[::1]:8/u.toml", strict));
        assert!(!ok(false, "http://example.org/u.toml", strict));
        assert!(ok(false, "http://example.org/u.toml", lax));
        assert!(!ok(false, "ftp://example.org/u.toml", lax));
        // https -> http is refused even to loopback, even when allowed.
        assert!(!ok(true, "http://127.0.0.1:8/x", strict));
        assert!(!ok(true, "http://example.org/x", lax));
        assert!(ok(true, "https://mirror.example.org/x", strict));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, 199, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in [
            "bytes 9-5/100",
            "bytes 5-100/100",
            "bytes */100",
            "items 1-2/3",
            "bytes 1-2",
            "bytes x-2/3",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_agent_keeps_token_characters_only() {
        let agent = user_agent("My App(1)", "1.0;beta/2");
        let app = agent.split(' ').nth(1).unwrap_or_default();
        assert_eq!(app, "MyApp1/1.0beta2");
        assert!(agent.starts_with(concat!("onefile/", env!("CARGO_PKG_VERSION"), " ")));
    }

    #[test]
    fn relative_redirects() -> Result<(), ureq::http::uri::InvalidUri> {
        let base: Uri = "https://h:8/a/b/update.toml".parse()?;
        assert_eq!(resolve(&base, "/x"), "https://h:8/x");
        assert_eq!(resolve(&base, "c.toml"), "https://h:8/a/b/c.toml");
        assert_eq!(resolve(&base, "//other/y"), "https://other/y");
        assert_eq!(resolve(&base, "http://z/"), "http://z/");
        Ok(())
    }
}
