//! The first proof that the Windows executables work: a file packed by
//! `payload-tools.exe` (and one packed on Linux) unpacks once and then
//! starts warm; the app gets its arguments exactly, its stdin and the
//! `ONEFILE_*` variables, and its exit code, all 32 bits of it, becomes
//! the launcher's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::{self, Scratch};

/// Arguments that a command line must quote or escape to keep, and some
/// that only `cmd.exe` would interpret (the launcher must not use it).
const TRICKY_ARGS: &[&str] = &[
    "two words",
    "",
    "quote\"inside",
    "\"quoted\"",
    "back\\slash",
    "trailing\\",
    "trailing\\\\",
    "\\\"",
    "tab\there",
    "é ß 日本 🙂",
    "%PATH%",
    "a&b|c<d>e^f",
];

/// The probe's `args` output without `argv[0]` (on Windows it is the
/// entry's path as the launcher started it).
fn args_after_argv0(out: &Output) -> Vec<String> {
    let text = support::stdout(out);
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(""),
        "output ends with a newline"
    );
    lines.into_iter().skip(1).collect()
}

fn packed_probe(s: &Scratch) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probeapp.exe");
    support::pack(&app, &exe, &["--version", "1.0"]);
    exe
}

/// The build folders in the cache of app `name`.
fn unpacked_builds(s: &Scratch, name: &str) -> Vec<PathBuf> {
    let Ok(items) = std::fs::read_dir(s.cache().join(name)) else {
        return Vec::new();
    };
    items
        .map(|item| item.expect("cache entry").path())
        .filter(|p| p.is_dir())
        .collect()
}

#[test]
fn packs_with_payload_tools_exe_then_runs_cold_and_warm() {
    let s = Scratch::new();
    let exe = packed_probe(&s);

    let cold = s.run(&exe, ["args", "one"]);
    assert_eq!(cold.status.code(), Some(0), "{}", support::stderr(&cold));
    assert_eq!(args_after_argv0(&cold), ["args", "one"]);
    let traces = support::launch_traces(&cold);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Cold start: unpacking")),
        "{traces:?}"
    );
    let builds = unpacked_builds(&s, "probeapp");
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0].join("bin/probe.exe").is_file());

    let warm = s.run(&exe, ["args", "two"]);
    assert_eq!(warm.status.code(), Some(0), "{}", support::stderr(&warm));
    assert_eq!(args_after_argv0(&warm), ["args", "two"]);
    let traces = support::launch_traces(&warm);
    assert!(
        traces.iter().any(|t| t == "Warm start: already unpacked."),
        "{traces:?}"
    );
}

#[test]
fn arguments_arrive_exactly() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let out = s.run(
        &exe,
        std::iter::once("args").chain(TRICKY_ARGS.iter().copied()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let mut want = vec!["args"];
    want.extend_from_slice(TRICKY_ARGS);
    assert_eq!(args_after_argv0(&out), want);
}

#[test]
fn exit_codes_pass_through_whole() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    // 0xC0000005 (an access violation's NTSTATUS) and 0xFFFFFFFF as i32.
    for code in [0, 1, 3, 255, 256, 1000, -1_073_741_819, -1] {
        let out = s.run(&exe, ["exit", &code.to_string()]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit {code}: {}",
            support::stderr(&out)
        );
    }
}

#[test]
fn stdin_reaches_the_app_byte_for_byte() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    // Every byte value, CR LF and a lone LF: nothing translates them.
    let mut input: Vec<u8> = (0..=255u8).collect();
    input.extend_from_slice(b"line\r\nline\n\x1a end");
    let mut child = s
        .command(&exe)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || stdin.write_all(&input).expect("write stdin"))
    };
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(out.stdout, input);
}

#[test]
fn onefile_variables_name_the_build() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let out = s.run(
        &exe,
        [
            "env",
            "ONEFILE_NAME",
            "ONEFILE_VERSION",
            "ONEFILE_EXE",
            "ONEFILE_DIR",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let text = support::stdout(&out);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
            .to_owned()
    };
    assert_eq!(value("ONEFILE_NAME"), "probeapp");
    assert_eq!(value("ONEFILE_VERSION"), "1.0");
    let canonical = |p: &Path| std::fs::canonicalize(p).expect("canonicalize");
    assert_eq!(canonical(Path::new(&value("ONEFILE_EXE"))), canonical(&exe));
    let dir = canonical(Path::new(&value("ONEFILE_DIR")));
    assert!(dir.starts_with(canonical(&s.cache())), "{dir:?}");
    assert!(dir.join("bin/probe.exe").is_file(), "{dir:?}");
}

/// `make test-windows` packs the probe on Linux, with the Linux
/// `payload-tools` and `--stub bootstrap.exe`, and names the file in
/// `ONEFILE_CROSS_PACKED`: the result must verify with `payload-tools.exe`
/// and run here like a file packed on Windows.
#[test]
fn packed_on_linux_runs_on_windows() {
    let Some(packed) = std::env::var_os("ONEFILE_CROSS_PACKED") else {
        support::skip("no file packed on Linux (make test-windows makes one)");
        return;
    };
    let s = Scratch::new();
    let exe = s.path("from-linux.exe");
    std::fs::copy(&packed, &exe).expect("copy the file packed on Linux");

    let verified = support::tools(["verify".as_ref(), exe.as_os_str()]);
    assert!(
        verified.status.success(),
        "verify: {}",
        support::stderr(&verified)
    );
    let out = s.run(&exe, ["args", "two words", "trailing\\"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(args_after_argv0(&out), ["args", "two words", "trailing\\"]);
    let out = s.run(&exe, ["exit", "42"]);
    assert_eq!(out.status.code(), Some(42), "{}", support::stderr(&out));
}
