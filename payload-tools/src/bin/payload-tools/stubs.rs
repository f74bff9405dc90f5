//! Where the stub that `pack` puts in front of an app comes from, and
//! `payload-tools stubs`, which says it.
//!
//! `pack` takes the first of:
//! 1. `--stub PATH` (checked against `--target` when both are given);
//! 2. a `bootstrap` (`bootstrap.exe`) next to this command, when the
//!    target is the one this command was built for: a development build,
//!    whose freshly built stub the tests must use;
//! 3. the stub embedded for the target (`build.rs` puts them in: release
//!    builds, the wheel, `cargo install`);
//!
//! and otherwise fails with one line naming `payload-tools stubs`. The
//! target is `--target` (a triple, or another name of the same stub:
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
    let next_to_me = development_stub(&me);
    match choose(flag, target, next_to_me, EMBEDDED)? {
        Source::File(path) => {
            check_file(&path, target)?;
            Ok(Chosen { path, bytes: None })
        }
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
    File(PathBuf),
    Embedded(&'static Embedded),
}

/// The order of the module doc, with what this machine has as arguments:
/// the `bootstrap` next to this command (if there is one) and the
/// embedded stubs.
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
        return Ok(Source::File(path));
    }
    let for_host = target.is_none() || wanted == canonical_target(BUILT_FOR);
    if let (true, Some(path)) = (for_host, next_to_me) {
        return Ok(Source::File(path));
    }
    if let Some(found) = wanted.and_then(|w| embedded.iter().find(|e| e.target == w)) {
        return Ok(Source::Embedded(found));
    }
    let shown = wanted.unwrap_or(BUILT_FOR);
    Err(Failure {
        message: format!(
            "no stub for {shown}: this payload-tools carries {} (payload-tools stubs lists them)",
            carried(embedded)
        ),
        hint: Some(
            "install a release payload-tools (pip install, cargo install: README), or pass --stub PATH"
                .into(),
        ),
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

/// The `bootstrap` next to the command at `me`, if there is one.
fn development_stub(me: &Path) -> Option<PathBuf> {
    let path = parent_dir(me).join(format!("bootstrap{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
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

/// `payload-tools stubs`: one line per stub this command can use, on
/// stdout; a note on stderr when it has none.
pub fn list() -> Result<(), Failure> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot locate payload-tools itself: {e}"))?;
    let version = env!("CARGO_PKG_VERSION");
    println!(
        "{:<26} {:<9} {:>9}  {:<32}  source",
        "target", "version", "bytes", "blake2b-128"
    );
    for embedded in EMBEDDED {
        let (len, hash) = match unpack(embedded) {
            Ok(bytes) => (bytes.len().to_string(), PartHash::of(&bytes).to_string()),
            Err(failure) => {
                eprintln!("payload-tools: warning: {}", failure.message);
                ("-".to_owned(), "damaged".to_owned())
            }
        };
        println!(
            "{:<26} {version:<9} {len:>9}  {hash:<32}  embedded ({})",
            embedded.target, embedded.origin
        );
    }
    if let Some(path) = development_stub(&me) {
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read stub '{}': {e}", path.display()))?;
        let target = canonical_target(BUILT_FOR).unwrap_or(BUILT_FOR);
        println!(
            "{target:<26} {version:<9} {:>9}  {:<32}  development stub, used instead: {}",
            bytes.len(),
            PartHash::of(&bytes).to_string(),
            path.display()
        );
    } else if EMBEDDED.is_empty() {
        eprintln!(
            "payload-tools: no stubs embedded and no bootstrap next to payload-tools: pack needs --stub PATH"
        );
    }
    Ok(())
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
                Ok(Source::File(PathBuf::from("my-stub")))
            );
        }
    }

    #[test]
    fn a_development_stub_wins_over_the_embedded_one_for_the_host_only() {
        let host = canonical_target(BUILT_FOR);
        assert_eq!(
            chosen(None, None, dev(), &BOTH),
            Ok(Source::File(PathBuf::from("/opt/tools/bootstrap")))
        );
        for (target, index) in [(LINUX, 0), (WINDOWS, 1), ("x86_64-pc-windows-msvc", 1)] {
            let expected = if canonical_target(target) == host {
                Source::File(PathBuf::from("/opt/tools/bootstrap"))
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
