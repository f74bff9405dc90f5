//! The stub marker: bytes that every onefile stub carries, so that `pack`
//! and `verify` can tell a stub from any other program (`pack --stub
//! /bin/ls` would otherwise make a file that runs `ls`).
//!
//! - The stub holds [`MARKER`] in a `#[used]` static (`bootstrap/src/main.rs`):
//!   `ONEFILE-STUB\0` and then the packed-file format version it reads, as a
//!   little-endian `u16` (docs/format.md, "The stub").
//! - [`find_in_bytes`] / [`find_in_file`] search a stub for it.
//! - [`platform_of_header`]: the OS and architecture a stub runs on, from
//!   its first bytes (in `stub_check`, with the check of a whole stub).
//! - [`examine`]: whether some bytes are a whole stub of this format, with
//!   the self-test mode, for a given target (`payload-tools stubs` and
//!   `pack` ask it of the stubs embedded in `payload-tools`).
//! - A stub that has the self-test mode (`ONEFILE_SELF_TEST`, docs/updates.md
//!   "Self-test before install") also holds [`SELF_TEST_MARKER`]:
//!   `ONEFILE-SELF-TEST\0` and the version of that protocol; an updater runs a
//!   new build in that mode only if its stub says so
//!   ([`self_test_version_in_file`]), since an older stub would run its app.
//! - This crate never holds the marker's bytes in the clear at run time:
//!   the search rebuilds them from a masked copy, so `payload-tools` itself,
//!   which links this code, is not taken for a stub.

use std::fs::File;
use std::path::Path;

use crate::error::Result;
use crate::rangeio::read_exact_at;
use crate::stub_check::find_prefixed;
use crate::trailer::FORMAT_VERSION;

const PREFIX: &[u8; 13] = b"ONEFILE-STUB\0";

/// Length of the marker: the prefix and the format version.
pub const MARKER_LEN: usize = PREFIX.len() + 2;

/// The marker of a stub that reads this crate's format version.
pub const MARKER: [u8; MARKER_LEN] = {
    let mut m = [0u8; MARKER_LEN];
    let mut i = 0;
    while i < PREFIX.len() {
        m[i] = PREFIX[i];
        i += 1;
    }
    let v = FORMAT_VERSION.to_le_bytes();
    m[PREFIX.len()] = v[0];
    m[PREFIX.len() + 1] = v[1];
    m
};

const SELF_TEST_PREFIX: &[u8; 18] = b"ONEFILE-SELF-TEST\0";

/// The version of the self-test protocol this crate describes: the
/// variable, the token's form and the line the stub answers with.
pub const SELF_TEST_VERSION: u16 = 1;

/// Length of the self-test marker: the prefix and the protocol version.
pub const SELF_TEST_MARKER_LEN: usize = SELF_TEST_PREFIX.len() + 2;

/// The marker of a stub that has the self-test mode of
/// [`SELF_TEST_VERSION`].
pub const SELF_TEST_MARKER: [u8; SELF_TEST_MARKER_LEN] = {
    let mut m = [0u8; SELF_TEST_MARKER_LEN];
    let mut i = 0;
    while i < SELF_TEST_PREFIX.len() {
        m[i] = SELF_TEST_PREFIX[i];
        i += 1;
    }
    let v = SELF_TEST_VERSION.to_le_bytes();
    m[SELF_TEST_PREFIX.len()] = v[0];
    m[SELF_TEST_PREFIX.len() + 1] = v[1];
    m
};

const MASK: u8 = 0xa5;

/// `prefix` XOR [`MASK`], computed at compile time: what this crate's
/// binaries hold instead of a marker's prefix.
const fn masked<const N: usize>(prefix: &[u8; N]) -> [u8; N] {
    let mut m = [0u8; N];
    let mut i = 0;
    while i < N {
        m[i] = prefix[i] ^ MASK;
        i += 1;
    }
    m
}

const MASKED_PREFIX: [u8; 13] = masked(PREFIX);
const MASKED_SELF_TEST_PREFIX: [u8; 18] = masked(SELF_TEST_PREFIX);

fn unmasked<const N: usize>(masked: &[u8; N]) -> [u8; N] {
    // black_box keeps the compiler from folding the unmasking back into a
    // constant copy of the prefix.
    let mask = std::hint::black_box(MASK);
    masked.map(|b| b ^ mask)
}

/// The format version named by the first marker in `bytes`, if any.
pub fn find_in_bytes(bytes: &[u8]) -> Option<u16> {
    find_prefixed(bytes, &unmasked(&MASKED_PREFIX))
}

/// Like [`find_in_bytes`], for the first `len` bytes of an open file (the
/// stub part of a packed file), read a chunk at a time.
pub fn find_in_file(file: &File, len: u64, path: &Path) -> Result<Option<u16>> {
    find_prefixed_in_file(file, len, path, &unmasked(&MASKED_PREFIX))
}

/// The self-test protocol version named by the first self-test marker in
/// `bytes` (a stub), if any.
pub fn self_test_version_in_bytes(bytes: &[u8]) -> Option<u16> {
    find_prefixed(bytes, &unmasked(&MASKED_SELF_TEST_PREFIX))
}

/// The self-test protocol version named by the first self-test marker in
/// the first `len` bytes of `file` (the stub part of a packed file), if
/// any: `None` for a stub without the self-test mode.
pub fn self_test_version_in_file(file: &File, len: u64, path: &Path) -> Result<Option<u16>> {
    find_prefixed_in_file(file, len, path, &unmasked(&MASKED_SELF_TEST_PREFIX))
}

fn find_prefixed_in_file(file: &File, len: u64, path: &Path, prefix: &[u8]) -> Result<Option<u16>> {
    const CHUNK: u64 = 1 << 20;
    let overlap = prefix.len() as u64 + 1;
    let mut buf = vec![0u8; (CHUNK + overlap) as usize];
    let mut at = 0u64;
    while at < len {
        // Each chunk overlaps the next by a marker's length less one, so a
        // marker cut by a chunk boundary is still found.
        let n = (len - at).min(CHUNK + overlap) as usize;
        read_exact_at(file, &mut buf[..n], at, path)?;
        if let Some(version) = find_prefixed(&buf[..n], prefix) {
            return Ok(Some(version));
        }
        at += CHUNK;
    }
    Ok(None)
}

/// Checks that `bytes` are a onefile stub of this crate's format, with the
/// self-test mode of [`SELF_TEST_VERSION`], for `target` (see
/// [`crate::stub_check::examine`]).
pub fn examine(bytes: &[u8], target: &str) -> std::result::Result<(), String> {
    let stub_prefix = unmasked(&MASKED_PREFIX);
    let self_test_prefix = unmasked(&MASKED_SELF_TEST_PREFIX);
    let markers = crate::stub_check::Markers {
        stub_prefix: &stub_prefix,
        format_version: FORMAT_VERSION,
        self_test_prefix: &self_test_prefix,
        self_test_version: SELF_TEST_VERSION,
    };
    crate::stub_check::examine(bytes, target, &markers)
}

/// The `{OS}` and `{ARCH}` a stub runs on, from its first bytes (kept in
/// `stub_check`, which the build script shares).
pub use crate::stub_check::platform_of_header;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_marker_and_its_version() {
        let mut stub = vec![7u8; 3000];
        stub.extend_from_slice(&MARKER);
        stub.extend_from_slice(&[1, 2, 3]);
        assert_eq!(find_in_bytes(&stub), Some(FORMAT_VERSION));
        assert_eq!(find_in_bytes(&stub[..3000 + MARKER_LEN - 1]), None);
        assert_eq!(find_in_bytes(b"ONEFILE-STUB"), None);
    }

    #[test]
    fn finds_a_marker_across_chunk_boundaries() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write;
        for at in [0usize, (1 << 20) - 7, 1 << 20, (1 << 20) + 3] {
            let mut bytes = vec![0u8; (1 << 20) + 64];
            bytes[at..at + MARKER_LEN].copy_from_slice(&MARKER);
            let mut file = tempfile::tempfile()?;
            file.write_all(&bytes)?;
            let len = bytes.len() as u64;
            assert_eq!(
                find_in_file(&file, len, Path::new("x")).ok(),
                Some(Some(FORMAT_VERSION)),
                "marker at {at}"
            );
        }
        Ok(())
    }

    #[test]
    fn finds_the_self_test_marker_and_its_version() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write;
        for at in [0usize, (1 << 20) - 11, (1 << 20) + 1] {
            let mut bytes = vec![0u8; (1 << 20) + 64];
            // The stub marker alone does not say the stub has the self-test.
            bytes[40..40 + MARKER_LEN].copy_from_slice(&MARKER);
            let mut file = tempfile::tempfile()?;
            file.write_all(&bytes)?;
            let len = bytes.len() as u64;
            let without = self_test_version_in_file(&file, len, Path::new("x")).ok();
            assert_eq!(without, Some(None));
            bytes[at..at + SELF_TEST_MARKER_LEN].copy_from_slice(&SELF_TEST_MARKER);
            let mut file = tempfile::tempfile()?;
            file.write_all(&bytes)?;
            let found = self_test_version_in_file(&file, len, Path::new("x")).ok();
            assert_eq!(found, Some(Some(SELF_TEST_VERSION)), "marker at {at}");
            // Only the first `len` bytes (the stub part) are searched.
            let before = self_test_version_in_file(&file, at as u64, Path::new("x")).ok();
            assert_eq!(before, Some(None), "marker at {at}");
        }
        Ok(())
    }

    /// An ELF x86_64 header, both markers, and filler: what `examine`
    /// takes for a Linux stub.
    fn linux_stub() -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[5] = 1; // little-endian
        bytes[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        bytes[1000..1000 + MARKER_LEN].copy_from_slice(&MARKER);
        bytes[2000..2000 + SELF_TEST_MARKER_LEN].copy_from_slice(&SELF_TEST_MARKER);
        bytes
    }

    #[test]
    fn examine_takes_a_whole_stub_for_its_target() {
        assert_eq!(examine(&linux_stub(), "x86_64-unknown-linux-gnu"), Ok(()));
    }

    #[test]
    fn examine_refuses_a_damaged_or_misnamed_stub() {
        let linux = "x86_64-unknown-linux-gnu";
        let mut no_marker = linux_stub();
        no_marker[1000] ^= 1;
        let mut other_format = linux_stub();
        other_format[1000 + MARKER_LEN - 2] ^= 0x40;
        let mut no_self_test = linux_stub();
        no_self_test[2000] ^= 1;
        let mut cut_header = linux_stub();
        cut_header[0] = b'#';
        for (bytes, target, says) in [
            (no_marker, linux, "lacks the stub marker"),
            (other_format, linux, "packed-file format"),
            (no_self_test, linux, "self-test"),
            (cut_header, linux, "neither ELF nor PE"),
            (
                linux_stub(),
                "x86_64-pc-windows-gnu",
                "runs on linux x86_64",
            ),
        ] {
            let verdict = examine(&bytes, target);
            assert!(
                verdict.as_ref().is_err_and(|e| e.contains(says)),
                "{says}: {verdict:?}"
            );
        }
    }
}
