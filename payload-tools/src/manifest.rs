//! `update.toml`, the manifest a build's update URL serves, and the URL
//! spec that locates it (see `docs/updates.md`).
//!
//! - [`UpdateManifest::parse`] reads a manifest: `url` and `crc32` are
//!   required, `size` and `version` are used when present, unknown keys are
//!   ignored so that newer publishers can add fields.
//! - [`UpdateManifest::to_toml`] writes one (`pack --auto-update-toml-file`,
//!   `payload-tools update-toml`).
//! - [`expand_url_spec`] fills in `{VERSION}`, `{NAME}`, `{OS}`, `{ARCH}`.
//! - [`check_url_spec`] and [`check_url`] refuse, at pack time, URLs that
//!   every launch would refuse or never reach.

use serde::{Deserialize, Serialize};

/// Largest manifest accepted, in bytes: a real one is a few hundred.
pub const MAX_MANIFEST_LEN: u64 = 64 * 1024;

/// The contents of `update.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateManifest {
    /// Where the new executable is downloaded from.
    pub url: String,
    /// CRC-32 of the whole new executable.
    pub crc32: u32,
    /// Its length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its version, as in its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The minisign signature of the new executable (the whole `.minisig`
    /// text); required by builds that carry public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The trusted comment a signature of a build carries, binding it to the
/// app's name and version (so a signature cannot be replayed for another
/// build or another app).
pub fn trusted_comment(name: &str, version: &str) -> String {
    format!("onefile app={name} version={version}")
}

impl UpdateManifest {
    /// Parses a manifest; the error is one line saying what is wrong.
    pub fn parse(text: &str) -> Result<UpdateManifest, String> {
        let manifest: UpdateManifest =
            toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        if manifest.url.trim().is_empty() {
            return Err("'url' is empty".into());
        }
        Ok(manifest)
    }

    pub fn to_toml(&self) -> String {
        // Plain strings and integers always serialise.
        toml::to_string(self).unwrap_or_default()
    }
}

/// Expands the placeholders of an update URL spec.
pub fn expand_url_spec(spec: &str, name: &str, version: &str) -> String {
    spec.replace("{VERSION}", version)
        .replace("{NAME}", name)
        .replace("{OS}", std::env::consts::OS)
        .replace("{ARCH}", std::env::consts::ARCH)
}

/// The placeholders an update URL spec may use.
pub const PLACEHOLDERS: [&str; 4] = ["{VERSION}", "{NAME}", "{OS}", "{ARCH}"];

/// Checks an update URL spec as `pack` receives it: only known
/// placeholders, and once expanded a URL that [`check_url`] accepts. The
/// error is one line saying what is wrong.
pub fn check_url_spec(
    spec: &str,
    name: &str,
    version: &str,
    allow_insecure_http: bool,
) -> Result<(), String> {
    let mut rest = spec;
    while let Some(open) = rest.find(['{', '}']) {
        let tail = &rest[open..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                // The brace and what follows, up to a closing brace (kept),
                // the next brace or the next '/'.
                let end = tail[1..]
                    .find(['{', '}', '/'])
                    .map_or(tail.len(), |i| i + 1);
                let end = end + usize::from(tail[end..].starts_with('}'));
                let shown = &tail[..end];
                return Err(format!(
                    "unknown placeholder '{shown}' (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
        }
    }
    check_url(&expand_url_spec(spec, name, version), allow_insecure_http)
}

/// Checks a URL the updater will request: `https://`, or `http://` to this
/// machine (or anywhere with `allow_insecure_http`), with a host. The same
/// policy as the launcher's (`bootstrap/src/update/http.rs`).
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("it has no scheme: write it as https://host/path".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "'{scheme}://' is not used: only https:// (and http:// to this machine)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if scheme == "http" && !allow_insecure_http && !is_loopback(host) {
        return Err(format!(
            "plain http:// to '{host}' would be refused at every launch: use https://, or pass --allow-insecure-http"
        ));
    }
    Ok(())
}

/// 127.0.0.0/8, `::1` and `localhost`: where plain http is harmless.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The default download URL of a build: the folder of its expanded info
/// URL plus the executable's file name.
pub fn default_download_url(spec: &str, name: &str, version: &str, file_name: &str) -> String {
    let info = expand_url_spec(spec, name, version);
    let base = match info.rfind('/') {
        Some(i) => &info[..=i],
        None => "",
    };
    format!("{base}{file_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_minimal_and_ignore_unknown_keys() {
        let m = UpdateManifest::parse("url = \"http://x/a.bin\"\ncrc32 = 123\nfuture = true\n");
        assert_eq!(
            m,
            Ok(UpdateManifest {
                url: "http://x/a.bin".into(),
                crc32: 123,
                size: None,
                version: None,
                signature: None,
            })
        );
    }

    #[test]
    fn refuse_missing_or_wrong_types() {
        assert!(UpdateManifest::parse("url = \"x\"").is_err());
        assert!(UpdateManifest::parse("crc32 = 1").is_err());
        assert!(UpdateManifest::parse("url = 1\ncrc32 = 1").is_err());
        assert!(UpdateManifest::parse("url = \"x\"\ncrc32 = -1").is_err());
        assert!(UpdateManifest::parse("<html>").is_err());
        assert!(UpdateManifest::parse("").is_err());
    }

    #[test]
    fn round_trip() {
        let m = UpdateManifest {
            url: "https://example.org/1.1/app.bin".into(),
            crc32: 0xdead_beef,
            size: Some(12),
            version: Some("1.1".into()),
            signature: Some("untrusted comment: x\nAAAA\ntrusted comment: y\nBBBB\n".into()),
        };
        assert_eq!(UpdateManifest::parse(&m.to_toml()), Ok(m));
    }

    #[test]
    fn url_specs_that_cannot_work_are_refused() {
        let check = |spec: &str, insecure: bool| check_url_spec(spec, "app", "1.0", insecure);
        for good in [
            "https://example.org/{NAME}/{VERSION}/{OS}-{ARCH}/update.toml",
            "http://127.0.0.1:8000/{VERSION}/update.toml",
            "http://localhost/u.toml",
            "http://[::1]:9/u.toml",
            "HTTPS://user@example.org:443/u.toml",
        ] {
            assert_eq!(check(good, false), Ok(()), "{good}");
        }
        assert_eq!(check("http://example.org/u.toml", true), Ok(()));
        for (bad, says) in [
            ("example.org/{VERSION}/update.toml", "no scheme"),
            ("https://example.org/{VERSOIN}/u.toml", "'{VERSOIN}'"),
            ("https://example.org/{version}/u.toml", "'{version}'"),
            ("https://example.org/{VERSION/u.toml", "'{VERSION'"),
            ("https://example.org/}/u.toml", "'}'"),
            ("http://example.org/u.toml", "--allow-insecure-http"),
            ("http://192.0.2.1/u.toml", "'192.0.2.1'"),
            ("ftp://example.org/u.toml", "'ftp://'"),
            ("https:///u.toml", "no host"),
        ] {
            let err = check(bad, false).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn spec_expansion() {
        assert_eq!(
            default_download_url("http://h:1/{VERSION}/update.toml", "A", "1.1", "A.bin"),
            "http://h:1/1.1/A.bin"
        );
        assert_eq!(
            expand_url_spec("{NAME}-{VERSION}-{OS}-{ARCH}", "a", "2"),
            format!("a-2-{}-{}", std::env::consts::OS, std::env::consts::ARCH)
        );
    }
}
