//! Where `pack` finds its stub: `--stub PATH`, else a `bootstrap` next to
//! `payload-tools` that is a stub for its own target (any other file of
//! that name is ignored), else the stub it carries for `--target`; a
//! target with none is one error line naming `payload-tools stubs`, which
//! lists them and says why a build has none. The stubs a release build
//! embeds are tested on the wheel and on `cargo install`
//! (scripts/test-install.sh), the embedded path's bytes by the unit tests
//! of `stubs.rs`; here, the development build's order.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use payload_tools::digest::PartHash;

use crate::support::*;

const LINUX: &str = "x86_64-unknown-linux-gnu";
const WINDOWS: &str = "x86_64-pc-windows-gnu";

/// Packs the probe app with `extra` flags (no `--stub` unless given) by
/// the `payload-tools` at `tools_exe`.
fn pack_with(tools_exe: &Path, s: &Scratch, out: &Path, extra: &[&str]) -> Output {
    let app = s.probe_app("app", "1.0");
    Command::new(tools_exe)
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(out)
        .args(["--entry", "bin/probe", "--name", "probeapp"])
        .args(extra)
        .output()
        .expect("run payload-tools")
}

/// The stub part of a packed file.
fn stub_part(exe: &Path) -> Vec<u8> {
    let info = inspect(exe);
    let len = info["payload_offset"].as_u64().expect("payload_offset") as usize;
    fs::read(exe).expect("read packed")[..len].to_vec()
}

/// The `payload-tools` command alone in a folder: no `bootstrap` next to it.
fn lone_tools(s: &Scratch) -> PathBuf {
    let dir = s.path("lone");
    fs::create_dir_all(&dir).expect("mkdir");
    let exe = dir.join("payload-tools");
    fs::copy(bin("payload-tools"), &exe).expect("copy payload-tools");
    exe
}

/// The error lines of a failed command: exactly one `error:` line (and
/// maybe a hint), which is returned.
fn one_error(out: &Output) -> String {
    assert!(!out.status.success(), "it succeeded: {}", stderr(out));
    let errors: Vec<String> = messages(out)
        .into_iter()
        .filter(|l| l.starts_with("payload-tools: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", stderr(out));
    errors[0].clone()
}

/// The rows of `payload-tools stubs` that say `source`, as (target, bytes,
/// hash) for each.
fn listed(out: &Output, source: &str) -> Vec<(String, String, String)> {
    stdout(out)
        .lines()
        .filter(|l| l.contains(source))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_owned(), cols[2].to_owned(), cols[3].to_owned())
        })
        .collect()
}

#[test]
fn pack_for_its_own_target_takes_the_bootstrap_next_to_payload_tools() {
    let s = Scratch::new();
    for target in [LINUX, "linux"] {
        let exe = s.path(&format!("{target}.bin"));
        let out = pack_with(&bin("payload-tools"), &s, &exe, &["--target", target]);
        assert!(out.status.success(), "--target {target}: {}", stderr(&out));
        assert_eq!(
            stub_part(&exe),
            fs::read(stub()).expect("read stub"),
            "--target {target}"
        );
        let run = s.run(&exe, ["print", "packed for its target"]);
        assert_eq!(stdout(&run), "packed for its target\n", "{}", stderr(&run));
    }
}

#[test]
fn the_stub_flag_wins_and_must_run_on_the_target() {
    let s = Scratch::new();
    // The development stub with 16 bytes after its end, which nothing
    // reads: a stub of its own, told apart from the one next to
    // payload-tools by its bytes.
    let mine = s.path("my-bootstrap");
    let mut bytes = fs::read(stub()).expect("read stub");
    bytes.extend_from_slice(b"--stub was used.");
    fs::write(&mine, &bytes).expect("write stub");
    let mine_text = mine.to_str().expect("UTF-8 path");
    for target in [&[][..], &["--target", LINUX][..]] {
        let exe = s.path("mine.bin");
        let mut args = vec!["--stub", mine_text];
        args.extend_from_slice(target);
        let out = pack_with(&bin("payload-tools"), &s, &exe, &args);
        assert!(out.status.success(), "{target:?}: {}", stderr(&out));
        assert_eq!(
            stub_part(&exe),
            bytes,
            "{target:?}: the --stub file went in"
        );
        let run = s.run(&exe, ["print", "packed with --stub"]);
        assert_eq!(stdout(&run), "packed with --stub\n", "{}", stderr(&run));
        fs::remove_file(&exe).expect("rm");
    }

    let exe = s.path("other.exe");
    let out = pack_with(
        &bin("payload-tools"),
        &s,
        &exe,
        &["--stub", mine_text, "--target", "windows"],
    );
    let error = one_error(&out);
    assert!(
        error.contains(&format!("is not a stub for {WINDOWS} (it runs on {LINUX})")),
        "{error}"
    );
    assert!(!exe.exists(), "nothing is written");
}

#[test]
fn a_target_without_a_stub_is_one_error_naming_the_stubs_command() {
    let s = Scratch::new();
    let lone = lone_tools(&s);
    let list = Command::new(&lone).arg("stubs").output().expect("stubs");
    assert!(list.status.success(), "{}", stderr(&list));
    let embedded: Vec<String> = listed(&list, "embedded in payload-tools")
        .into_iter()
        .map(|(target, _, _)| target)
        .collect();
    for target in [LINUX, WINDOWS] {
        let exe = s.path(&format!("{target}.out"));
        let out = pack_with(&lone, &s, &exe, &["--target", target]);
        if embedded.iter().any(|t| t == target) {
            // A release build: its own stub goes in.
            assert!(out.status.success(), "{}", stderr(&out));
            continue;
        }
        let error = one_error(&out);
        assert!(
            error.contains(&format!("no stub for {target}"))
                && error.contains("payload-tools stubs"),
            "{error}"
        );
        // For its own target, why this build has none (here: a
        // development build); for another, which install carries it.
        if target == LINUX {
            assert!(
                error.contains(", because it is a development build"),
                "{error}"
            );
        } else {
            assert!(stderr(&out).contains("hint: the wheel"), "{}", stderr(&out));
        }
        assert!(!exe.exists(), "nothing is written");
    }
    if embedded.is_empty() {
        assert!(
            stderr(&list).contains("no stubs embedded: this build could not build one because it is a development build"),
            "{}",
            stderr(&list)
        );
    }
    let out = pack_with(
        &lone,
        &s,
        &s.path("mac.out"),
        &["--target", "aarch64-apple-darwin"],
    );
    let error = one_error(&out);
    assert!(
        error.contains("no stub is built for target 'aarch64-apple-darwin'"),
        "{error}"
    );
}

#[test]
fn stubs_lists_the_development_stub_used_instead() {
    let out = tools(["stubs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("target "), "a header first: {text}");
    let bytes = fs::read(stub()).expect("read stub");
    let development = listed(&out, "development stub, used instead: ");
    assert_eq!(
        development,
        vec![(
            LINUX.to_owned(),
            bytes.len().to_string(),
            PartHash::of(&bytes).to_string()
        )],
        "{text}"
    );
    assert!(
        text.contains(&format!("used instead: {}", stub().display())),
        "{text}"
    );

    let s = Scratch::new();
    let lone = Command::new(lone_tools(&s))
        .arg("stubs")
        .output()
        .expect("stubs");
    assert!(lone.status.success(), "{}", stderr(&lone));
    assert!(
        listed(&lone, "development stub").is_empty(),
        "{}",
        stdout(&lone)
    );
}

#[test]
fn a_bootstrap_next_to_payload_tools_that_is_no_stub_is_ignored() {
    let s = Scratch::new();
    let lone = lone_tools(&s);
    let other = lone.with_file_name("bootstrap");
    // Another tool's command of the same name, in a shared bin folder.
    fs::write(&other, "#!/bin/sh\necho other tool\n").expect("write");
    let list = Command::new(&lone).arg("stubs").output().expect("stubs");
    assert!(list.status.success(), "{}", stderr(&list));
    let ignored = listed(&list, "ignored, not a stub for it (");
    assert_eq!(
        ignored,
        vec![(LINUX.to_owned(), "-".to_owned(), "-".to_owned())],
        "{}",
        stdout(&list)
    );
    assert!(
        stdout(&list).contains(&format!("lacks the stub marker)): {}", other.display())),
        "{}",
        stdout(&list)
    );
    assert!(
        listed(&list, "development stub").is_empty(),
        "{}",
        stdout(&list)
    );

    let exe = s.path("hello.bin");
    let out = pack_with(&lone, &s, &exe, &[]);
    assert!(
        stderr(&out).contains(&format!(
            "payload-tools: note: ignoring '{}': it is not a onefile stub",
            other.display()
        )),
        "{}",
        stderr(&out)
    );
    let embedded = !listed(&list, "embedded in payload-tools").is_empty();
    if embedded {
        // A release build: its own stub goes in, never the other file.
        assert!(out.status.success(), "{}", stderr(&out));
        assert_ne!(stub_part(&exe), fs::read(&other).expect("read"));
        let run = s.run(&exe, ["print", "the embedded stub"]);
        assert_eq!(stdout(&run), "the embedded stub\n", "{}", stderr(&run));
    } else {
        let error = one_error(&out);
        assert!(error.contains(&format!("no stub for {LINUX}")), "{error}");
        assert!(
            !stderr(&out).contains("leave --stub out"),
            "no hint about a --stub never given: {}",
            stderr(&out)
        );
        assert!(!exe.exists(), "nothing is written");
    }

    // A real stub there is used, as in a development build.
    fs::copy(stub(), &other).expect("copy stub");
    let out = pack_with(&lone, &s, &exe, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stub_part(&exe), fs::read(stub()).expect("read stub"));
}
