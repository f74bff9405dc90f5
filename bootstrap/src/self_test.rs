//! The stub's self-test mode: the updater runs a downloaded build this way
//! before installing it (`update::self_test`), and anyone can by hand
//! (docs/updates.md, "Self-test before install").
//!
//! 1. Only `ONEFILE_SELF_TEST=<token>` in the environment asks for it, with
//!    a token of 16 to 64 characters of `[0-9a-f]`; any other value is not
//!    a request and changes nothing (the launcher removes the variable from
//!    the app's environment either way). Never an argument: the app's own
//!    arguments can never trigger it.
//! 2. Open our own executable (on Linux the file executed, by
//!    `/proc/self/exe`) and read its trailer and metadata, checked
//!    (`PackedFile::open`: the trailer's and the metadata's CRC-32, the
//!    layout, the features the metadata requires, a frame index that covers
//!    the payload exactly).
//! 3. Read the first bytes of the payload: a zstd frame (or the skippable
//!    frame of a dictionary) must start there. Cheap, and enough: the
//!    updater checked the whole file's CRC-32, signature and payload before
//!    it asks; what the self-test adds is that this very stub, on this
//!    machine, starts and reads its own build.
//! 4. Print `onefile-self-test <token> ok <name> <version>` on stdout and
//!    exit 0; on any failure, one line on stderr and exit 1. The app is not
//!    run, nothing is unpacked, the cache and the updater are not touched.

use std::io::Write;
use std::process::ExitCode;

use payload_tools::PackedFile;
use payload_tools::text::Escaped;

/// The variable that asks for the self-test.
pub const VAR: &str = "ONEFILE_SELF_TEST";

/// The marker by which an updater knows that this stub has the self-test
/// mode (`payload_tools::stub`): kept in the binary although nothing reads
/// it at run time.
#[used]
static SELF_TEST_MARKER: [u8; payload_tools::stub::SELF_TEST_MARKER_LEN] =
    payload_tools::stub::SELF_TEST_MARKER;

/// Runs the self-test if the environment asks for it; `None` otherwise,
/// and the launch goes on.
pub fn run_if_requested() -> Option<ExitCode> {
    let token = std::env::var_os(VAR)?.into_string().ok()?;
    if !is_token(&token) {
        return None;
    }
    let answer = match check() {
        Ok((name, version)) => {
            let line = format!("onefile-self-test {token} ok {name} {version}\n");
            // An answer that cannot be written is no answer: the updater
            // refuses the build, as it should when nothing can be said.
            match std::io::stdout().write_all(line.as_bytes()) {
                Ok(()) => return Some(ExitCode::SUCCESS),
                Err(e) => format!("cannot write the answer: {e}"),
            }
        }
        Err(reason) => reason,
    };
    eprintln!("onefile-self-test {token} failed: {}", Escaped(&answer));
    Some(ExitCode::FAILURE)
}

/// Whether `value` is a self-test token: 16 to 64 lowercase hex digits.
pub fn is_token(value: &str) -> bool {
    (16..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Steps 2 and 3: the build's name and version, or why it is not sound.
fn check() -> Result<(String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find its executable: {e}"))?;
    let packed = open_own(&exe)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("'{}' carries no payload", exe.display()))?;
    let mut first = [0u8; 4];
    if packed.trailer.payload_len < first.len() as u64 {
        return Err("its payload is shorter than a frame header".into());
    }
    payload_tools::rangeio::read_exact_at(
        &packed.file,
        &mut first,
        packed.trailer.payload_offset,
        &exe,
    )
    .map_err(|e| e.to_string())?;
    if !is_frame_start(first) {
        return Err(format!(
            "its payload does not start with a zstd frame (found {})",
            hex(&first)
        ));
    }
    let meta = packed.metadata;
    Ok((meta.name, meta.version))
}

/// Our own executable (`exe` names it in messages). On Linux the very file
/// executed, by `/proc/self/exe`, not the path it had then looked up again:
/// a name replaced or removed meanwhile changes nothing.
fn open_own(exe: &std::path::Path) -> payload_tools::Result<Option<PackedFile>> {
    #[cfg(target_os = "linux")]
    {
        let file = std::fs::File::open("/proc/self/exe")
            .map_err(payload_tools::Error::io("cannot open", exe))?;
        PackedFile::from_file(file, exe)
    }
    #[cfg(not(target_os = "linux"))]
    PackedFile::open(exe)
}

/// Whether `magic` (little-endian) starts a zstd frame, or a skippable
/// frame (0x184D2A50 to 0x184D2A5F: a build's dictionary part).
fn is_frame_start(magic: [u8; 4]) -> bool {
    let magic = u32::from_le_bytes(magic);
    magic == 0xFD2F_B528 || magic & 0xFFFF_FFF0 == 0x184D_2A50
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_16_to_64_lowercase_hex_digits() {
        assert!(is_token("0123456789abcdef"));
        assert!(is_token(&"f".repeat(64)));
        assert!(!is_token(&"f".repeat(15)));
        assert!(!is_token(&"f".repeat(65)));
        assert!(!is_token("0123456789ABCDEF"));
        assert!(!is_token("0123456789abcdeg"));
        assert!(!is_token("0123456789abcde "));
        assert!(!is_token(""));
    }

    #[test]
    fn frames_and_dictionaries_start_a_payload() {
        assert!(is_frame_start([0x28, 0xb5, 0x2f, 0xfd]));
        assert!(is_frame_start([0x57, 0x2a, 0x4d, 0x18]));
        assert!(!is_frame_start([0x7f, b'E', b'L', b'F']));
    }
}
