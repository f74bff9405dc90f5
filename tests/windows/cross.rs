//! Cross-packing from Windows: `payload-tools.exe` packs an app for Linux
//! with the Linux stub (`make test-windows` names it in
//! `ONEFILE_LINUX_STUB`), the entry given the Windows way, `bin\run.sh`.
//! The result must verify and inspect here, and `make test-windows` runs
//! it on Linux after the tests (`ONEFILE_CROSS_DIR/from-windows`), for its
//! output and exit code: Wine 8.0's `CreateProcess` refuses a Linux
//! executable ("Bad EXE format"), so this Windows program cannot run it.

use crate::support::{self, Scratch};

/// The app: a shell script that prints `ONEFILE_NAME` and its arguments
/// and exits 7 (what scripts/test-windows.sh checks).
const RUN_SH: &str = "#!/bin/sh\nprintf '%s|' \"$ONEFILE_NAME\" \"$@\"\nexit 7\n";

#[test]
fn payload_tools_exe_packs_for_linux_with_a_backslash_entry() {
    let (Some(stub), Some(dir)) = (
        std::env::var_os("ONEFILE_LINUX_STUB"),
        std::env::var("ONEFILE_CROSS_DIR").ok(),
    ) else {
        support::skip("no Linux stub given (make test-windows gives one)");
        return;
    };
    let s = Scratch::new();
    let app = s.path("app");
    std::fs::create_dir_all(app.join("bin")).expect("mkdir");
    std::fs::write(app.join("bin/run.sh"), RUN_SH).expect("write run.sh");
    // A Unix path, as the script reads it (Wine maps it to drive Z:).
    let packed = format!("{dir}/from-windows");
    let _ = std::fs::remove_file(&packed);
    let out = support::tools([
        "pack",
        app.to_str().expect("UTF-8 path"),
        "--entry",
        "bin\\run.sh",
        "--name",
        "crossapp",
        "--version",
        "1.0",
        "--stub",
        stub.to_str().expect("UTF-8 path"),
        "-o",
        &packed,
    ]);
    assert!(out.status.success(), "pack: {}", support::stderr(&out));
    let verified = support::tools(["verify", &packed]);
    assert!(
        verified.status.success(),
        "verify: {}",
        support::stderr(&verified)
    );
    let inspected = support::tools(["inspect", "--json", &packed]);
    assert!(
        support::stdout(&inspected).contains("\"entry\": \"bin/run.sh\""),
        "{}",
        support::stdout(&inspected)
    );
}

/// A `.cmd` script as the entry, given as `bin\run.cmd`.
const RUN_CMD: &str = "@echo off\r\necho cmd ran %~1\r\nexit /b 7\r\n";

fn cmd_app(s: &Scratch) -> std::path::PathBuf {
    let app = s.path("cmdapp");
    std::fs::create_dir_all(app.join("bin")).expect("mkdir");
    std::fs::write(app.join("bin/run.cmd"), RUN_CMD).expect("write run.cmd");
    app
}

fn check_cmd_app_runs(s: &Scratch, exe: &std::path::Path) {
    let out = s.run(exe, ["two words"]);
    assert_eq!(out.status.code(), Some(7), "{}", support::stderr(&out));
    assert_eq!(support::stdout(&out).trim_end(), "cmd ran two words");
}

#[test]
fn a_cmd_entry_given_with_a_backslash_runs() {
    let s = Scratch::new();
    let app = cmd_app(&s);
    let exe = s.path("cmdapp.exe");
    support::pack(&app, &exe, &["--entry", "bin\\run.cmd"]);
    check_cmd_app_runs(&s, &exe);
}

/// The same app packed on Linux, `--entry 'bin\run.cmd'`, by
/// `make test-windows` (`ONEFILE_CROSS_PACKED_CMD`).
#[test]
fn a_cmd_entry_packed_on_linux_with_a_backslash_runs() {
    let Some(packed) = std::env::var_os("ONEFILE_CROSS_PACKED_CMD") else {
        support::skip("no file packed on Linux (make test-windows makes one)");
        return;
    };
    let s = Scratch::new();
    let exe = s.path("cmdapp-from-linux.exe");
    std::fs::copy(&packed, &exe).expect("copy the file packed on Linux");
    check_cmd_app_runs(&s, &exe);
}
