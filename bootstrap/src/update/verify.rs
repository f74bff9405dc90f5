//! Checking a downloaded build before it may replace anything: the size
//! and CRC-32 announced by `update.toml`, then, from the open download
//! itself: a well-formed packed executable of the same app, signed by a
//! trusted key for that app and version (when the build carries keys), of
//! a newer version (unless downgrades are allowed), whose payload
//! checksums and unpacks.

use std::fs::File;

use payload_tools::PackedFile;
use payload_tools::extract::{Sink, extract};
use std::io::Read;

use payload_tools::manifest::{UpdateManifest, trusted_comment};
use payload_tools::rangeio::RangeReader;
use payload_tools::version::is_newer;

use super::download::Fetched;
use super::minisig::{PublicKey, Signature};
use super::{RunningBuild, UpdateError};

/// Checks `fetched`; returns the open download on success.
pub fn check(
    fetched: &Fetched,
    manifest: &UpdateManifest,
    build: &RunningBuild,
) -> Result<File, UpdateError> {
    let url = &fetched.url;
    if let Some(size) = manifest.size
        && fetched.len != size
    {
        return Err(UpdateError::Size {
            url: url.clone(),
            expected: size,
            actual: fetched.len,
        });
    }
    if fetched.crc32 != manifest.crc32 {
        return Err(UpdateError::Crc {
            url: url.clone(),
            expected: manifest.crc32,
            actual: fetched.crc32,
        });
    }
    let not_packed = |reason: String| UpdateError::NotPacked {
        url: url.clone(),
        reason,
    };
    let handle = fetched
        .file
        .try_clone()
        .map_err(|e| not_packed(e.to_string()))?;
    let packed = match PackedFile::from_file(handle, url.as_ref()) {
        Ok(Some(packed)) => packed,
        Ok(None) => return Err(not_packed("it carries no payload".into())),
        Err(e) => return Err(not_packed(e.to_string())),
    };
    if packed.metadata.name != build.name {
        return Err(UpdateError::OtherApp {
            url: url.clone(),
            found: packed.metadata.name.clone(),
            expected: build.name.clone(),
        });
    }
    let meta = &packed.metadata;
    if !build.settings.public_keys.is_empty() {
        check_signature(&packed, manifest, &build.settings.public_keys, url)?;
    }
    // The version inside the file decides, not the manifest's word for it.
    if !build.settings.allow_downgrade && !is_newer(&meta.version, &build.version) {
        return Err(UpdateError::NotNewer {
            url: url.clone(),
            found: meta.version.clone(),
            running: build.version.clone(),
        });
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    extract(&packed, Sink::Discard, threads).map_err(|e| not_packed(e.to_string()))?;
    Ok(packed.file)
}

/// Checks the minisign signature in `manifest` against the exact bytes of
/// the open download (read back from the handle that will be renamed into
/// place, never from a path), with one of `keys`, and that its trusted
/// comment names the app and version found inside the file.
fn check_signature(
    packed: &PackedFile,
    manifest: &UpdateManifest,
    keys: &[String],
    url: &str,
) -> Result<(), UpdateError> {
    let bad = |reason: String| UpdateError::BadSignature {
        url: url.to_owned(),
        reason,
    };
    let text = manifest
        .signature
        .as_deref()
        .ok_or_else(|| UpdateError::Unsigned {
            url: url.to_owned(),
        })?;
    let signature = Signature::decode(text).map_err(|e| bad(format!("unreadable: {e}")))?;
    let mut last_error = String::from("no trusted key");
    for key in keys {
        let Ok(key) = PublicKey::from_base64(key) else {
            continue;
        };
        let mut verifier = match key.checker(&signature) {
            Ok(v) => v,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let mut reader = RangeReader::new(&packed.file, 0, packed.len);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| bad(format!("cannot read the download: {e}")))?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
        }
        match verifier.finish() {
            Ok(()) => {
                let expected = trusted_comment(&packed.metadata.name, &packed.metadata.version);
                if signature.trusted_comment() != expected {
                    return Err(bad(format!(
                        "it signs '{}', but the file is '{expected}'",
                        signature.trusted_comment()
                    )));
                }
                return Ok(());
            }
            Err(e) => last_error = e,
        }
    }
    Err(bad(format!("not signed by a trusted key: {last_error}")))
}
