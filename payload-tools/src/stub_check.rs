//! What a stub's bytes say about it, in code that uses nothing else of
//! this crate, so that the build script (`build.rs`, which checks every
//! stub it embeds into `payload-tools`) compiles this very file too:
//!
//! - [`find_prefixed`]: the version after a marker's prefix;
//! - [`platform_of_header`]: the OS and architecture a stub runs on, from
//!   its first bytes;
//! - [`target_of_platform`]: the target triple the project builds for that
//!   platform, and [`canonical_target`]: that triple for a name a user may
//!   give it by;
//! - [`examine`]: all of it for one stub claimed for a target, as one
//!   verdict: a onefile stub of the expected format, with the self-test
//!   mode, for that target.
//!
//! The marker prefixes are parameters, never constants here: this crate's
//! binaries hold them only masked (see `stub.rs`), or `payload-tools` itself
//! would pass for a stub.

/// The version after the first `prefix` in `bytes`, if any.
pub fn find_prefixed(bytes: &[u8], prefix: &[u8]) -> Option<u16> {
    let len = prefix.len() + 2;
    bytes
        .windows(len)
        .find(|w| &w[..prefix.len()] == prefix)
        .map(|w| u16::from_le_bytes([w[prefix.len()], w[prefix.len() + 1]]))
}

/// The `{OS}` and `{ARCH}` the stub at the start of `header` (a build's
/// first bytes) runs on: ELF is Linux, PE is Windows, the architecture
/// from the header; every offset is checked before it is read. `pack`,
/// `publish` and the stub's updater (a build for another platform is
/// never installed) all ask it.
pub fn platform_of_header(header: &[u8]) -> Result<(&'static str, &'static str), String> {
    let u16_at = |at: usize, big: bool| -> Option<u16> {
        let bytes = [*header.get(at)?, *header.get(at + 1)?];
        Some(if big {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    };
    if header.starts_with(b"\x7fELF") {
        let big = header.get(5) == Some(&2);
        let machine = u16_at(18, big).ok_or_else(|| "its ELF header is cut short".to_owned())?;
        let arch = match machine {
            0x3e => "x86_64",
            0xb7 => "aarch64",
            0x03 => "x86",
            0x28 => "arm",
            0xf3 => "riscv64",
            other => return Err(format!("ELF machine {other:#x}")),
        };
        return Ok(("linux", arch));
    }
    if header.starts_with(b"MZ") {
        let at = header
            .get(0x3c..0x40)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "its MS-DOS header is cut short".to_owned())?;
        if header.get(at..at.saturating_add(4)) != Some(b"PE\0\0") {
            return Err("no PE signature where its header says".to_owned());
        }
        let machine =
            u16_at(at + 4, false).ok_or_else(|| "its COFF header is cut short".to_owned())?;
        let arch = match machine {
            0x8664 => "x86_64",
            0xaa64 => "aarch64",
            0x014c => "x86",
            other => return Err(format!("PE machine {other:#x}")),
        };
        return Ok(("windows", arch));
    }
    Err("it is neither ELF nor PE".to_owned())
}

/// The target triple the project builds its stub as, for a platform:
/// Linux x86_64 as `x86_64-unknown-linux-gnu`, Windows x86_64 as
/// `x86_64-pc-windows-gnu` (Makefile `stub` and `windows`). `None` for a
/// platform it builds no stub for.
pub fn target_of_platform(os: &str, arch: &str) -> Option<&'static str> {
    match (os, arch) {
        ("linux", "x86_64") => Some("x86_64-unknown-linux-gnu"),
        ("windows", "x86_64") => Some("x86_64-pc-windows-gnu"),
        _ => None,
    }
}

/// The target triple of the stub `name` asks for: a triple the project
/// builds a stub for, or another name of the same stub. `linux` is
/// `x86_64-unknown-linux-gnu`; `windows` and `x86_64-pc-windows-msvc` are
/// `x86_64-pc-windows-gnu`, honestly: the packed file is a program of its
/// own, not linked with the app, and the stub needs only the DLLs every
/// Windows has, so it runs wherever an msvc build would. `None` for a
/// target the project builds no stub for (`x86_64-unknown-linux-musl`
/// among them: the Linux stub links glibc).
pub fn canonical_target(name: &str) -> Option<&'static str> {
    match name {
        "x86_64-unknown-linux-gnu" | "linux" => Some("x86_64-unknown-linux-gnu"),
        "x86_64-pc-windows-gnu" | "x86_64-pc-windows-msvc" | "windows" => {
            Some("x86_64-pc-windows-gnu")
        }
        _ => None,
    }
}

/// The markers a stub must carry: its prefixes and the versions expected
/// after them (docs/format.md, "The stub").
#[derive(Debug, Clone, Copy)]
pub struct Markers<'a> {
    pub stub_prefix: &'a [u8],
    pub format_version: u16,
    pub self_test_prefix: &'a [u8],
    pub self_test_version: u16,
}

/// Checks that `bytes` are a onefile stub for `target`: the stub marker
/// with the expected format version, the self-test marker with the
/// expected protocol version, and a header for the platform `target`
/// names. The error says what is wrong, for one line after the stub's name.
pub fn examine(bytes: &[u8], target: &str, markers: &Markers) -> Result<(), String> {
    match find_prefixed(bytes, markers.stub_prefix) {
        Some(v) if v == markers.format_version => {}
        Some(v) => {
            return Err(format!(
                "it is a stub for packed-file format {v}, not {}",
                markers.format_version
            ));
        }
        None => return Err("it is not a onefile stub (it lacks the stub marker)".to_owned()),
    }
    match find_prefixed(bytes, markers.self_test_prefix) {
        Some(v) if v == markers.self_test_version => {}
        Some(v) => {
            return Err(format!(
                "its self-test protocol is version {v}, not {}",
                markers.self_test_version
            ));
        }
        None => return Err("it lacks the self-test mode (no self-test marker)".to_owned()),
    }
    let (os, arch) =
        platform_of_header(bytes).map_err(|e| format!("its platform is unknown: {e}"))?;
    match target_of_platform(os, arch) {
        Some(t) if t == target => Ok(()),
        _ => Err(format!("it runs on {os} {arch}, not on {target}")),
    }
}
