//! Where the stub that `pack` puts in front of an app comes from, and
//! `payload-tools stubs`, which says it.
//!
//! `pack` takes the first of:
//! 1. `--stub PATH` (checked against `--target` when both are given);
//! 2. a `bootstrap` (`bootstrap.exe`) next to this command, when the
//!    target is the one this command was built for and the file is a
//!    stub for it (`stub::examine`): a development build, whose freshly
//!    built stub the tests must use. Any other file of that name (an
//!    installed command shares its bin folder with other tools) is
//!    ignored, with a note;
//! 3. the stub embedded for the target (`build.rs` puts them in: release
//!    builds, the wheel, `cargo install`);
//!
//! and otherwise fails with one line naming `payload-tools stubs` (and,
//! for its own target, why this build embeds none). The target is
//! `--target` (a triple, or another name of the same stub:
//! `stub_check::canonical_target`), by default the one this command was
//! built for.

use std::path::{Path, PathBuf};

use payload_tools::digest::PartHash;
use payload_tools::persist::parent_dir;
use payload_tools::stub;
use payload_tools::stub_check::{canonical_target, platform_of_header, target_of_platform};

use crate::Failure;

/// A stub embedded by `build.rs`, zstd-compressed.
#[derive(Debug, PartialEq)]
pub struct Embedded {
    /// The target triple it runs on (checked by `build.rs`).
    pub target: &'static str,
    /// Its length once decompressed.
    pub len: usize,
    /// How it came in, for `payload-tools stubs`.
    pub origin: &'static str,
    pub compressed: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/embedded_stubs.rs"));

/// The target this command was built for: the default of `--target`.
const BUILT_FOR: &str = env!("ONEFILE_BUILT_FOR");

/// Why this build embeds no stub for [`BUILT_FOR`], from `build.rs`;
/// empty when it does.
const NO_STUB_WHY: &str = env!("ONEFILE_NO_STUB_WHY");

/// The largest file next to this command read as a stub: a debug stub is
/// about 8 MB, a release one 2 MB.
const MAX_STUB_FILE: u64 = 64 << 20;

/// The stub `pack` uses: a file, or the bytes of an embedded one (with a
/// name for messages).
#[derive(Debug)]
pub struct Chosen {
    pub path: PathBuf,
    pub bytes: Option<Vec<u8>>,
}

/// The stub for `pack --stub`/`--target` (see the module doc).
pub fn for_pack(flag: Option<PathBuf>, target: Option<&str>) -> Result<Chosen, Failure> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot locate payload-tools itself: {e}"))?;
    let neighbour = next_to_me(&me);
    if let (None, true, Neighbour::Ignored { path, why }) = (&flag, for_host(target), &neighbour) {
        eprintln!(
            "payload-tools: note: ignoring '{}': {why}; using the stub payload-tools carries",
            path.display()
        );
    }
    let usable = match neighbour {
        Neighbour::Stub(path) => Some(path),
        _ => None,
    };
    match choose(flag.clone(), target, usable, EMBEDDED)? {
        Source::Flag(path) => {
            check_file(&path, target)?;
            Ok(Chosen { path, bytes: None })
        }
        Source::NextToMe(path) => Ok(Chosen { path, bytes: None }),
        Source::Embedded(embedded) => {
            let bytes = unpack(embedded)?;
            Ok(Chosen {
                path: PathBuf::from(format!(
                    "<the stub for {} in payload-tools>",
                    embedded.target
                )),
                bytes: Some(bytes),
            })
        }
    }
}

/// Where a stub comes from.
#[derive(Debug, PartialEq)]
enum Source {
    Flag(PathBuf),
    NextToMe(PathBuf),
    Embedded(&'static Embedded),
}

/// Whether `--target` asks for the target this command was built for.
fn for_host(target: Option<&str>) -> bool {
    target.is_none_or(|name| canonical_target(name) == canonical_target(BUILT_FOR))
}

/// The order of the module doc, with what this machine has as arguments:
/// the stub next to this command (if there is one, and it is one) and
/// the embedded stubs.
fn choose(
    flag: Option<PathBuf>,
    target: Option<&str>,
    next_to_me: Option<PathBuf>,
    embedded: &'static [Embedded],
) -> Result<Source, Failure> {
    let wanted = match target {
        Some(name) => Some(canonical_target(name).ok_or_else(|| Failure {
            message: format!("no stub is built for target '{name}'"),
            hint: Some(format!(
                "targets with stubs: {}; payload-tools stubs lists those this payload-tools carries",
                known_targets()
            )),
        })?),
        None => canonical_target(BUILT_FOR),
    };
    if let Some(path) = flag {
        return Ok(Source::Flag(path));
    }
    if let (true, Some(path)) = (for_host(target), next_to_me) {
        return Ok(Source::NextToMe(path));
    }
    if let Some(found) = wanted.and_then(|w| embedded.iter().find(|e| e.target == w)) {
        return Ok(Source::Embedded(found));
    }
    let shown = wanted.unwrap_or(BUILT_FOR);
    let own = for_host(target);
    let why = if own && !NO_STUB_WHY.is_empty() {
        format!(", because {NO_STUB_WHY}")
    } else {
        String::new()
    };
    Err(Failure {
        message: format!(
            "no stub for {shown}: this payload-tools carries {}{why} (payload-tools stubs lists them)",
            carried(embedded)
        ),
        hint: Some(if own {
            "install a release payload-tools (the wheel of make wheel, or cargo install --path payload-tools: README), or pass --stub PATH".into()
        } else {
            format!(
                "the wheel of make wheel carries the stub for {shown}; or pass --stub PATH, a bootstrap built for it"
            )
        }),
    })
}

fn known_targets() -> String {
    [
        "x86_64-unknown-linux-gnu",
        "x86_64-pc-windows-gnu (also: x86_64-pc-windows-msvc, windows)",
    ]
    .join(", ")
}

fn carried(embedded: &[Embedded]) -> String {
    if embedded.is_empty() {
        return "no stubs".to_owned();
    }
    let targets: Vec<&str> = embedded.iter().map(|e| e.target).collect();
    format!("stubs for {} only", targets.join(", "))
}

/// The `bootstrap` next to this command, as found.
#[derive(Debug)]
enum Neighbour {
    None,
    /// A stub for the target this command was built for: used.
    Stub(PathBuf),
    /// Another file of that name: not used.
    Ignored {
        path: PathBuf,
        why: String,
    },
}

/// The `bootstrap` next to the command at `me`, examined: only a stub for
/// this command's own target counts.
fn next_to_me(me: &Path) -> Neighbour {
    let path = parent_dir(me).join(format!("bootstrap{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        return Neighbour::None;
    }
    match examine_file(&path) {
        Ok(()) => Neighbour::Stub(path),
        Err(why) => Neighbour::Ignored { path, why },
    }
}

fn examine_file(path: &Path) -> Result<(), String> {
    let Some(host) = canonical_target(BUILT_FOR) else {
        return Err(format!("the project builds no stub for {BUILT_FOR}"));
    };
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    if len > MAX_STUB_FILE {
        return Err(format!("{len} bytes is too big for a stub"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    stub::examine(&bytes, host)
}

/// The embedded stub's bytes, checked again: a damaged copy of
/// `payload-tools` must not pack a damaged stub.
fn unpack(embedded: &Embedded) -> Result<Vec<u8>, Failure> {
    let damaged = |why: String| Failure {
        message: format!(
            "the stub for {} inside this payload-tools is damaged: {why}",
            embedded.target
        ),
        hint: Some("install payload-tools again".into()),
    };
    let bytes = zstd::bulk::decompress(embedded.compressed, embedded.len)
        .map_err(|e| damaged(e.to_string()))?;
    if bytes.len() != embedded.len {
        return Err(damaged(format!(
            "{} bytes, not {}",
            bytes.len(),
            embedded.len
        )));
    }
    stub::examine(&bytes, embedded.target).map_err(damaged)?;
    Ok(bytes)
}

/// A stub file must carry the stub marker of our format version (any
/// other program would be packed without complaint and run instead of
/// the app) and, with `--target`, run on that target.
fn check_file(path: &Path, target: Option<&str>) -> Result<(), Failure> {
    use payload_tools::trailer::FORMAT_VERSION;
    let cannot_read = |e: std::io::Error| format!("cannot read stub '{}': {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let len = file.metadata().map_err(cannot_read)?.len();
    match stub::find_in_file(&file, len, path)? {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(Failure {
                message: format!(
                    "'{}' is a stub for packed-file format {other}; this payload-tools writes format {FORMAT_VERSION}",
                    path.display()
                ),
                hint: Some("use the bootstrap built together with this payload-tools".into()),
            });
        }
        None => {
            return Err(Failure {
                message: format!(
                    "'{}' is not a onefile stub (it lacks the stub marker)",
                    path.display()
                ),
                hint: Some(
                    "pass the 'bootstrap' binary built with this payload-tools, or leave --stub out"
                        .into(),
                ),
            });
        }
    }
    let Some(wanted) = target.and_then(canonical_target) else {
        return Ok(());
    };
    let mut header = vec![0u8; 4096.min(len as usize)];
    payload_tools::rangeio::read_exact_at(&file, &mut header, 0, path)?;
    let runs_on = platform_of_header(&header)
        .ok()
        .and_then(|(os, arch)| target_of_platform(os, arch));
    if runs_on != Some(wanted) {
        return Err(Failure {
            message: format!(
                "'{}' is not a stub for {wanted} (it runs on {})",
                path.display(),
                runs_on.unwrap_or("another platform")
            ),
            hint: Some(
                "leave --stub out to use the stub payload-tools carries for --target".into(),
            ),
        });
    }
    Ok(())
}

/// `payload-tools stubs`: one line per stub this command has, on stdout:
/// its target, the packed-file format it reads (from its marker), size,
/// hash and where it comes from; on stderr, why this build embeds none
/// for its own target. Fails when an embedded stub is damaged.
pub fn list() -> Result<(), Failure> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot locate payload-tools itself: {e}"))?;
    let version = env!("CARGO_PKG_VERSION");
    let host = canonical_target(BUILT_FOR).unwrap_or(BUILT_FOR);
    println!(
        "{:<26} {:<6} {:>9}  {:<32}  source",
        "target", "format", "bytes", "blake2b-128"
    );
    let mut damaged = None;
    for embedded in EMBEDDED {
        let (format, len, hash) = match unpack(embedded) {
            Ok(bytes) => (
                format_of(&bytes),
                bytes.len().to_string(),
                PartHash::of(&bytes).to_string(),
            ),
            Err(failure) => {
                damaged.get_or_insert(failure);
                ("-".to_owned(), "-".to_owned(), "damaged".to_owned())
            }
        };
        println!(
            "{:<26} {format:<6} {len:>9}  {hash:<32}  embedded in payload-tools {version} ({})",
            embedded.target, embedded.origin
        );
    }
    let neighbour = next_to_me(&me);
    match &neighbour {
        Neighbour::Stub(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read stub '{}': {e}", path.display()))?;
            println!(
                "{host:<26} {:<6} {:>9}  {:<32}  development stub, used instead: {}",
                format_of(&bytes),
                bytes.len(),
                PartHash::of(&bytes).to_string(),
                path.display()
            );
        }
        Neighbour::Ignored { path, why } => {
            println!(
                "{host:<26} {:<6} {:>9}  {:<32}  ignored, not a stub for it ({why}): {}",
                "-",
                "-",
                "-",
                path.display()
            );
        }
        Neighbour::None => {}
    }
    let has_own = EMBEDDED.iter().any(|e| e.target == host);
    if !has_own && !NO_STUB_WHY.is_empty() {
        let what = if EMBEDDED.is_empty() {
            "no stubs embedded".to_owned()
        } else {
            format!("no stub embedded for {host}")
        };
        let then = if matches!(neighbour, Neighbour::Stub(_)) {
            "the development stub next to it is used"
        } else {
            "pack needs --stub PATH"
        };
        eprintln!(
            "payload-tools: {what}: this build could not build one because {NO_STUB_WHY}; {then}"
        );
    }
    match damaged {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// The packed-file format a stub reads, from its marker.
fn format_of(bytes: &[u8]) -> String {
    stub::find_in_bytes(bytes).map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX: &str = "x86_64-unknown-linux-gnu";
    const WINDOWS: &str = "x86_64-pc-windows-gnu";

    static BOTH: [Embedded; 2] = [
        Embedded {
            target: LINUX,
            len: 0,
            origin: "test",
            compressed: b"",
        },
        Embedded {
            target: WINDOWS,
            len: 0,
            origin: "test",
            compressed: b"",
        },
    ];
    static LINUX_ONLY: [Embedded; 1] = [Embedded {
        target: LINUX,
        len: 0,
        origin: "test",
        compressed: b"",
    }];

    fn dev() -> Option<PathBuf> {
        Some(PathBuf::from("/opt/tools/bootstrap"))
    }

    fn flag() -> Option<PathBuf> {
        Some(PathBuf::from("my-stub"))
    }

    fn chosen(
        flag: Option<PathBuf>,
        target: Option<&str>,
        next_to_me: Option<PathBuf>,
        embedded: &'static [Embedded],
    ) -> Result<Source, String> {
        choose(flag, target, next_to_me, embedded).map_err(|f| f.message)
    }

    #[test]
    fn the_stub_flag_wins_over_everything() {
        for target in [None, Some(LINUX), Some("windows")] {
            assert_eq!(
                chosen(flag(), target, dev(), &BOTH),
                Ok(Source::Flag(PathBuf::from("my-stub")))
            );
        }
    }

    #[test]
    fn a_development_stub_wins_over_the_embedded_one_for_the_host_only() {
        let host = canonical_target(BUILT_FOR);
        assert_eq!(
            chosen(None, None, dev(), &BOTH),
            Ok(Source::NextToMe(PathBuf::from("/opt/tools/bootstrap")))
        );
        for (target, index) in [(LINUX, 0), (WINDOWS, 1), ("x86_64-pc-windows-msvc", 1)] {
            let expected = if canonical_target(target) == host {
                Source::NextToMe(PathBuf::from("/opt/tools/bootstrap"))
            } else {
                Source::Embedded(&BOTH[index])
            };
            assert_eq!(
                chosen(None, Some(target), dev(), &BOTH),
                Ok(expected),
                "{target}"
            );
        }
    }

    #[test]
    fn without_a_development_stub_the_embedded_one_for_the_target_is_taken() {
        assert_eq!(
            chosen(None, Some(LINUX), None, &BOTH),
            Ok(Source::Embedded(&BOTH[0]))
        );
        assert_eq!(
            chosen(None, Some("windows"), None, &BOTH),
            Ok(Source::Embedded(&BOTH[1]))
        );
        if canonical_target(BUILT_FOR) == Some(LINUX) {
            assert_eq!(
                chosen(None, None, None, &BOTH),
                Ok(Source::Embedded(&BOTH[0]))
            );
        }
    }

    #[test]
    fn a_missing_stub_is_one_error_naming_the_stubs_command() {
        let missing = chosen(None, Some(WINDOWS), None, &LINUX_ONLY);
        assert!(
            missing
                .as_ref()
                .is_err_and(|m| m.contains("no stub for x86_64-pc-windows-gnu")
                    && m.contains("payload-tools stubs")
                    && m.contains(LINUX)),
            "{missing:?}"
        );
        let none = chosen(None, Some(LINUX), None, &[]);
        assert!(
            none.as_ref().is_err_and(|m| m.contains("carries no stubs")),
            "{none:?}"
        );
        let unknown = chosen(None, Some("aarch64-apple-darwin"), dev(), &BOTH);
        assert!(
            unknown
                .as_ref()
                .is_err_and(|m| m.contains("no stub is built for target 'aarch64-apple-darwin'")),
            "{unknown:?}"
        );
    }

    /// Bytes `stub::examine` takes for a Linux x86_64 stub: an ELF header
    /// for x86_64, both markers, and `filler` (not a program that runs:
    /// the path of the bytes is what is tested here; tests/it/install.rs
    /// runs real stubs).
    fn linux_stub_bytes(filler: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        bytes.extend_from_slice(&stub::MARKER);
        bytes.extend_from_slice(filler);
        bytes.extend_from_slice(&stub::SELF_TEST_MARKER);
        bytes
    }

    /// An embedded stub of `bytes`, as `build.rs` writes one.
    fn embedded_of(target: &'static str, bytes: &[u8]) -> std::io::Result<&'static [Embedded]> {
        let compressed = zstd::bulk::compress(bytes, 19)?;
        Ok(Box::leak(Box::new([Embedded {
            target,
            len: bytes.len(),
            origin: "test",
            compressed: Box::leak(compressed.into_boxed_slice()),
        }])))
    }

    #[test]
    fn an_embedded_stub_is_unpacked_checked_and_packed_as_it_is()
    -> Result<(), Box<dyn std::error::Error>> {
        let bytes = linux_stub_bytes(&[0x5a; 4096]);
        let embedded = embedded_of(LINUX, &bytes)?;
        let Ok(Source::Embedded(found)) = choose(None, Some(LINUX), None, embedded) else {
            panic!("the embedded stub is chosen");
        };
        let unpacked = unpack(found).map_err(|f| f.message);
        assert_eq!(unpacked.as_ref(), Ok(&bytes));

        // What `pack` then does with the bytes: they are the packed file's
        // first part, which is executable.
        let dir = tempfile::tempdir()?;
        let app = dir.path().join("app");
        std::fs::create_dir(&app)?;
        std::fs::write(app.join("hello"), b"#!/bin/sh\necho hi\n")?;
        let output = dir.path().join("hello.bin");
        let opts = payload_tools::pack::PackOptions {
            input: app,
            output: output.clone(),
            stub: PathBuf::from("<the stub for x86_64-unknown-linux-gnu in payload-tools>"),
            stub_bytes: unpacked.ok(),
            entry: Some("hello".into()),
            name: "hello".into(),
            version: "1.0".into(),
            argv0: Default::default(),
            level: 3,
            threads: 1,
            update: None,
            windows_subsystem: Default::default(),
            dictionary: Default::default(),
        };
        let report = payload_tools::pack::pack(&opts, &mut payload_tools::pack::NoProgress)?;
        let packed = std::fs::read(&output)?;
        assert_eq!(&packed[..bytes.len()], &bytes[..]);
        assert_eq!(report.metadata.stub_hash, Some(PartHash::of(&bytes)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&output)?.permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        Ok(())
    }

    #[test]
    fn an_embedded_stub_that_decodes_but_is_no_stub_for_its_target_is_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut no_self_test = linux_stub_bytes(b"");
        no_self_test.truncate(64 + stub::MARKER_LEN);
        let mut windows_header = linux_stub_bytes(b"");
        windows_header[..2].copy_from_slice(b"MZ");
        for (bytes, why) in [
            (&no_self_test, "it lacks the self-test mode"),
            (&windows_header, "its platform is unknown"),
            (&b"just some bytes".to_vec(), "it lacks the stub marker"),
        ] {
            let embedded = embedded_of(LINUX, bytes)?;
            let refused = unpack(&embedded[0]).map_err(|f| f.message);
            assert!(
                refused.as_ref().is_err_and(
                    |m| m.contains("inside this payload-tools is damaged") && m.contains(why)
                ),
                "{why}: {refused:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_missing_own_stub_says_why_this_build_has_none() {
        let own = chosen(None, None, None, &[]);
        if NO_STUB_WHY.is_empty() {
            return;
        }
        assert!(
            own.as_ref()
                .is_err_and(|m| m.contains(&format!("because {NO_STUB_WHY}"))
                    && m.contains("payload-tools stubs")),
            "{own:?}"
        );
        // Another platform's stub is not this build's own to lack.
        let other = if cfg!(windows) { LINUX } else { WINDOWS };
        let missing = choose(None, Some(other), None, &[]).map_err(|f| (f.message, f.hint));
        let Err((message, Some(hint))) = missing else {
            panic!("no stub for {other}: {missing:?}");
        };
        assert!(!message.contains("because"), "{message}");
        assert!(hint.contains("the wheel"), "{hint}");
    }

    #[test]
    fn a_damaged_embedded_stub_is_refused() {
        static DAMAGED: Embedded = Embedded {
            target: LINUX,
            len: 10,
            origin: "test",
            compressed: b"not zstd at all",
        };
        let refused = unpack(&DAMAGED).map_err(|f| f.message);
        assert!(
            refused.as_ref().is_err_and(|m| m.contains("damaged")),
            "{refused:?}"
        );
    }
}
