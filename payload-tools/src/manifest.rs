//! `update.toml`, the manifest a build's update URL serves, and the URL
//! spec that locates it (see `docs/updates.md`).
//!
//! - [`UpdateManifest::parse`] reads a manifest: `url` and `crc32` are
//!   required, `size` and `version` are used when present, unknown keys are
//!   ignored so that newer publishers can add fields.
//! - [`UpdateManifest::to_toml`] writes one (`pack --auto-update-toml-file`,
//!   `payload-tools update-toml`).
//! - [`expand_url_spec`] fills in `{VERSION}`, `{NAME}`, `{OS}`, `{ARCH}`.

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
