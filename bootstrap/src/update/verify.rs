//! Checking a downloaded build before it may replace anything: the size
//! and CRC-32 announced by `update.toml`, then, from the open download
//! itself: a well-formed packed executable of the same app, signed by a
//! trusted key for that app and version (when the build carries keys), of
//! a newer version (unless downgrades are allowed), whose payload
//! checksums and unpacks.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::trace::info;
use payload_tools::extract::{Sink, check_arriving, extract};
use payload_tools::manifest::{Release, trusted_comment};
use payload_tools::rangeio::{RangeReader, file_crc32, read_exact_at};
use payload_tools::stub::platform_of_header;
use payload_tools::version::is_newer;
use payload_tools::{Metadata, PackedFile, Trailer};
use ureq::Agent;

use super::download::{Fetched, Progress};
use super::http;
use super::minisig::{FileDigest, FileHasher, PublicKey, Signature};
use super::tail::{self, Layout};
use super::{RunningBuild, UpdateError};
use crate::trace::UPDATE;

/// Refuses a build of another app, or one not newer than the running
/// build (unless downgrades are allowed), from its metadata.
pub fn check_identity(meta: &Metadata, build: &RunningBuild, url: &str) -> Result<(), UpdateError> {
    if meta.name != build.name {
        return Err(UpdateError::OtherApp {
            url: url.to_owned(),
            found: meta.name.clone(),
            expected: build.name.clone(),
        });
    }
    // The version inside the file decides, not the manifest's word for it.
    if !build.settings.allow_downgrade && !is_newer(&meta.version, &build.version) {
        return Err(UpdateError::NotNewer {
            url: url.to_owned(),
            found: meta.version.clone(),
            running: build.version.clone(),
        });
    }
    Ok(())
}

/// Bytes at a build's start read for its stub's platform: a real stub's
/// headers are in its first few hundred.
pub const STUB_HEADER_LEN: u64 = 4096;

/// Refuses a build whose stub (its first bytes, `header`) does not run on
/// this platform: a Windows build served to a Linux install, say, would
/// replace it with a file it cannot run.
pub fn check_platform(header: &[u8], url: &str) -> Result<(), UpdateError> {
    let this = (std::env::consts::OS, std::env::consts::ARCH);
    match platform_of_header(header) {
        Ok(found) if found == this => Ok(()),
        Ok((os, arch)) => Err(UpdateError::OtherPlatform {
            url: url.to_owned(),
            found: format!("{os}/{arch}"),
            expected: format!("{}/{}", this.0, this.1),
        }),
        Err(reason) => Err(UpdateError::NotPacked {
            url: url.to_owned(),
            reason: format!("its stub runs on no known platform: {reason}"),
        }),
    }
}

/// Refuses, before it is downloaded, a build whose stub is not this
/// platform's: read from its first bytes, unless its stub is the running
/// one. Any failure to read them leaves it to the check of the download.
pub fn check_platform_ahead(
    agent: &Agent,
    policy: http::Policy,
    release: &Release,
    layout: &Layout,
    build: &RunningBuild,
) -> Result<(), UpdateError> {
    let own_stub = build.packed.metadata.stub_hash.as_ref();
    if own_stub.is_some() && layout.metadata.stub_hash.as_ref() == own_stub {
        return Ok(());
    }
    match tail::fetch_start(agent, &release.url, policy, layout) {
        Some(header) => check_platform(&header, &release.url),
        None => Ok(()),
    }
}

/// Checks the payload of the build described by `layout` while `progress`
/// downloads it. `false` for any failure: the finished download is then
/// checked in full, which names what is wrong.
pub fn check_while_downloading(layout: &Layout, progress: &Progress) -> bool {
    let Some(file) = progress.file() else {
        return false;
    };
    let Ok(packed) = PackedFile::from_parts(
        file,
        Path::new(""),
        layout.file_len,
        layout.trailer,
        layout.metadata.clone(),
    ) else {
        return false;
    };
    check_arriving(&packed, checking_threads(), progress).is_ok()
}

fn checking_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Checks `fetched`; returns the download, open and read as a packed
/// build, on success. `payload_checked`
/// is the layout of a build whose payload was checked during the download:
/// if the finished file has that very trailer and metadata, its payload is
/// not decoded a second time, and its CRC-32 (when the download did not
/// compute it) follows from the payload's. `hashed` is the length and hash
/// of the bytes hashed for the signature during the download: used when
/// that is the whole file.
///
/// Only the trailer (a fixed 64 bytes) is read before the signature, for a
/// build that carries keys, is checked; the trailer bounds the metadata it
/// points to (`payload_tools::trailer::MAX_METADATA_LEN`, what a real build
/// can need), which is parsed after.
pub fn check(
    fetched: &Fetched,
    release: &Release,
    build: &RunningBuild,
    payload_checked: Option<&Layout>,
    hashed: Option<(u64, FileDigest)>,
) -> Result<PackedFile, UpdateError> {
    let url = &fetched.url;
    let path = Path::new(url);
    if let Some(size) = release.size
        && fetched.len != size
    {
        return Err(UpdateError::Size {
            url: url.clone(),
            expected: size,
            actual: fetched.len,
        });
    }
    let crc_error = |actual| UpdateError::Crc {
        url: url.clone(),
        expected: release.crc32,
        actual,
    };
    if let Some(crc32) = fetched.crc32
        && crc32 != release.crc32
    {
        return Err(crc_error(crc32));
    }
    let not_packed = |reason: String| UpdateError::NotPacked {
        url: url.clone(),
        reason,
    };
    let trailer = match Trailer::read_from(&fetched.file, fetched.len, path) {
        Ok(Some(trailer)) => trailer,
        Ok(None) => return Err(not_packed("it carries no payload".into())),
        Err(e) => return Err(not_packed(e.to_string())),
    };
    let keys = &build.settings.public_keys;
    let signature = if keys.is_empty() {
        None
    } else {
        let digest = hashed
            .filter(|(len, _)| *len == fetched.len)
            .map(|(_, digest)| digest);
        Some(check_signature(fetched, release, keys, digest)?)
    };
    let packed = read_packed(fetched, &trailer).map_err(|e| not_packed(e.to_string()))?;
    // The payload check made during the download counts only for a file
    // with the very trailer and metadata it was made with.
    let payload_checked = payload_checked.is_some_and(|layout| {
        layout.file_len == packed.len
            && layout.trailer == packed.trailer
            && layout.metadata == packed.metadata
    });
    if fetched.crc32.is_none() {
        let crc32 = if payload_checked {
            // The payload's CRC-32 was checked against the trailer's: the
            // whole file's follows from it and the small parts around it.
            packed.whole_file_crc32()
        } else {
            file_crc32(&fetched.file, path).map(|(_, crc32)| crc32)
        }
        .map_err(|e| UpdateError::Download {
            url: url.clone(),
            reason: format!("cannot read it back ({e})"),
        })?;
        if crc32 != release.crc32 {
            return Err(crc_error(crc32));
        }
    }
    let mut header = vec![0u8; STUB_HEADER_LEN.min(fetched.len) as usize];
    read_exact_at(&fetched.file, &mut header, 0, path).map_err(|e| not_packed(e.to_string()))?;
    check_platform(&header, url)?;
    check_identity(&packed.metadata, build, url)?;
    if let Some(signature) = signature {
        let expected = trusted_comment(&packed.metadata.name, &packed.metadata.version);
        if signature.trusted_comment() != expected {
            return Err(UpdateError::BadSignature {
                url: url.clone(),
                reason: format!(
                    "it signs '{}', but the file is '{expected}'",
                    signature.trusted_comment()
                ),
            });
        }
    }
    if payload_checked {
        info!(target: UPDATE, "Checked the payload while it downloaded.");
    } else {
        extract(&packed, Sink::Discard, checking_threads())
            .map_err(|e| not_packed(e.to_string()))?;
    }
    Ok(packed)
}

/// The download as a packed file: its metadata block (bounded by the
/// caller) and trailer read from its end, parsed and checked.
fn read_packed(fetched: &Fetched, trailer: &Trailer) -> payload_tools::Result<PackedFile> {
    let path = Path::new(&fetched.url);
    let start = trailer.metadata_offset;
    let mut tail = vec![0u8; (fetched.len - start) as usize];
    read_exact_at(&fetched.file, &mut tail, start, path)?;
    let file = fetched
        .file
        .try_clone()
        .map_err(payload_tools::Error::io("cannot reopen", path))?;
    let (trailer, metadata) =
        PackedFile::read_tail(path, fetched.len, &tail)?.ok_or_else(|| {
            payload_tools::Error::Metadata {
                path: path.into(),
                reason: "it carries no payload".into(),
            }
        })?;
    PackedFile::from_parts(file, path, fetched.len, trailer, metadata)
}

/// Checks the minisign signatures of `release` against the exact bytes of
/// the open download (read back from the handle that will be renamed into
/// place, never from a path, unless `digest` already holds their hash):
/// one of them must be by one of `keys`; traces which key signed and the
/// result. The caller checks that its trusted comment names the app and
/// version inside the file.
fn check_signature(
    fetched: &Fetched,
    release: &Release,
    keys: &[String],
    mut digest: Option<FileDigest>,
) -> Result<Signature, UpdateError> {
    let url = &fetched.url;
    let bad = |reason: String| UpdateError::BadSignature {
        url: url.clone(),
        reason,
    };
    let mut last_error = None;
    for text in release.all_signatures() {
        let signature = match Signature::decode(text) {
            Ok(signature) => signature,
            Err(e) => {
                last_error = Some(format!("unreadable: {e}"));
                continue;
            }
        };
        let id = signature.key_id();
        last_error = Some(format!("signed by another key ({id})"));
        for key in keys {
            let Ok(key) = PublicKey::from_base64(key) else {
                continue;
            };
            if !key.signed(&signature) {
                continue;
            }
            let digest = match &mut digest {
                Some(digest) => digest,
                None => {
                    let mut hasher = FileHasher::default();
                    hash_file(&fetched.file, fetched.len, &mut hasher)
                        .map_err(|e| bad(format!("cannot read the download: {e}")))?;
                    digest.insert(hasher.finish())
                }
            };
            match key.check(&signature, digest) {
                Ok(()) => {
                    info!(target: UPDATE, "Good signature by trusted key {id}.");
                    return Ok(signature);
                }
                Err(e) => last_error = Some(format!("key {id}: {e}")),
            }
        }
    }
    match last_error {
        None => Err(UpdateError::Unsigned { url: url.clone() }),
        Some(last) => Err(bad(format!("not signed by a trusted key: {last}"))),
    }
}

/// Feeds the first `len` bytes of `file` to `hasher`.
fn hash_file(file: &File, len: u64, hasher: &mut FileHasher) -> std::io::Result<()> {
    let mut reader = RangeReader::new(file, 0, len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// Hashes the download for its signature while it arrives. Returns how
/// many bytes were hashed (the whole file if the download succeeded) and
/// their hash; `None` if the file could not be read.
pub fn hash_while_downloading(progress: &Progress) -> Option<(u64, FileDigest)> {
    let file = progress.file()?;
    let mut reader = RangeReader::following(&file, 0, u64::MAX, progress);
    let mut hasher = FileHasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            // The download ended (or stopped): what was hashed is compared
            // with what was downloaded.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(_) => return None,
        }
    }
    Some((len, hasher.finish()))
}
