//! Checking a downloaded build before it may replace anything: the size
//! and CRC-32 announced by `update.toml`, then, from the open download
//! itself, that it is a well-formed packed executable of the same app
//! whose payload checksums and unpacks.

use std::fs::File;

use payload_tools::PackedFile;
use payload_tools::extract::{Sink, extract};
use payload_tools::manifest::UpdateManifest;

use super::download::Fetched;
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    extract(&packed, Sink::Discard, threads).map_err(|e| not_packed(e.to_string()))?;
    Ok(packed.file)
}
