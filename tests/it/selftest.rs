//! The stub's self-test mode (`ONEFILE_SELF_TEST`) and the updater running
//! a new build in it before installing it: builds that cannot start here
//! (a truncated stub, an executable the system refuses, a stub that
//! crashes) are refused, held back and never installed; a healthy one
//! installs; the mode never runs the app, and the app never sees the
//! variable.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::support::*;
use crate::update::{NAME, Published, announce_body, publish, publish_apps};

const PASSED: &str = "The new build passed its self-test.";
const FAILED: &str = "The new build failed its self-test: ";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Runs 1.0 against the announced build that must fail its self-test, and
/// checks that nothing was installed and the download is gone; returns
/// the self-test's failure trace.
fn expect_refused(p: &Published) -> String {
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "the app ran: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let traces = update_traces(&out);
    let failed = traces
        .iter()
        .find(|t| t.starts_with(FAILED))
        .unwrap_or_else(|| panic!("no self-test failure: {traces:#?}"))
        .clone();
    assert!(!traces.iter().any(|t| t == "Updated."), "{traces:#?}");
    p.assert_still_10();
    p.assert_clean(false);
    failed
}

/// Requests that downloaded `/other.bin` (where `announce_body` serves).
fn downloads(p: &Published) -> usize {
    p.server
        .requests()
        .iter()
        .filter(|r| r.path == "/other.bin")
        .count()
}

/// The next launches do not download the refused build again.
fn expect_held_back(p: &Published) {
    let before = downloads(p);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains(
            "failed its self-test or failed verification on every mirror; not downloaded again"
        )),
        "{traces:#?}"
    );
    assert_eq!(downloads(p), before, "downloaded again: {traces:#?}");
    p.assert_still_10();
}

/// Where `marker` starts in `bytes`.
fn find(bytes: &[u8], marker: &[u8]) -> Option<usize> {
    bytes.windows(marker.len()).position(|w| w == marker)
}

/// The file offset of the ELF executable `elf`'s entry point (64-bit,
/// little-endian), from its program headers.
fn entry_offset(elf: &[u8]) -> usize {
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes"));
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().expect("2 bytes"));
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF");
    let entry = u64_at(24);
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    for i in 0..phnum as usize {
        let ph = phoff + i * phentsize;
        let kind = u32::from_le_bytes(elf[ph..ph + 4].try_into().expect("4 bytes"));
        let (offset, vaddr, filesz) = (u64_at(ph + 8), u64_at(ph + 16), u64_at(ph + 32));
        if kind == 1 && (vaddr..vaddr + filesz).contains(&entry) {
            return (entry - vaddr + offset) as usize;
        }
    }
    panic!("no loadable segment holds the entry point {entry:#x}");
}

#[test]
fn a_healthy_build_passes_its_self_test_and_installs() {
    let p = publish(&[]);
    p.announce_11();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_updated(&out);
    let traces = update_traces(&out);
    let at = |trace: &str| traces.iter().position(|t| t.starts_with(trace));
    let (downloaded, passed, updated) = (at("Downloaded to"), at(PASSED), at("Updated."));
    assert!(
        downloaded < passed && passed < updated && downloaded.is_some(),
        "{traces:#?}"
    );
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

#[test]
fn a_build_whose_stub_is_truncated_is_refused_and_not_downloaded_again() {
    let p = publish(&[]);
    // A stub cut short after its markers (so that pack takes it), in the
    // middle of what the system loads: the rest of the file is read as code.
    let stub = fs::read(stub()).expect("read the stub");
    let markers = [&b"ONEFILE-STUB\0"[..], b"ONEFILE-SELF-TEST\0"];
    let last = markers
        .iter()
        .filter_map(|m| find(&stub, m).map(|at| at + m.len() + 2))
        .max()
        .expect("the stub marker");
    let cut = (last + 4096).min(stub.len() / 2);
    assert!(cut >= last, "the markers sit past the stub's middle");
    let truncated = p.s.path("truncated-stub");
    write_file(&truncated, &stub[..cut], true);
    let out = p.s.path("truncated.bin");
    let packed = tools([
        "pack".as_ref(),
        p.s.path("app-1.1").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--stub".as_ref(),
        truncated.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
        "--name".as_ref(),
        NAME.as_ref(),
        "--version".as_ref(),
        "1.1".as_ref(),
    ]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    announce_body(&p, fs::read(&out).expect("read"));
    expect_refused(&p);
    expect_held_back(&p);
}

#[test]
fn a_build_the_system_cannot_execute_is_refused() {
    let p = publish(&[]);
    // Linux/x86_64 by its header, so that the platform checks let it
    // through, but a relocatable object (`e_type` 1), which the kernel
    // refuses to execute (ENOEXEC), like a build for another system.
    let mut build = p.v11.clone();
    build[16..18].copy_from_slice(&1u16.to_le_bytes());
    announce_body(&p, build);
    let failed = expect_refused(&p);
    assert!(failed.contains("cannot execute it"), "{failed}");
    expect_held_back(&p);
}

#[test]
fn a_build_whose_header_names_another_architecture_is_refused_by_the_platform_check() {
    let p = publish(&[]);
    // Its header says aarch64 (x86_64 on an aarch64 machine): the platform
    // check refuses it before anything runs it.
    let other: u16 = if cfg!(target_arch = "aarch64") {
        0x3e
    } else {
        0xb7
    };
    let mut build = p.v11.clone();
    build[18..20].copy_from_slice(&other.to_le_bytes());
    announce_body(&p, build);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("is a build for linux/")),
        "{traces:#?}"
    );
    assert!(
        !traces.iter().any(|t| t.contains("self-test")),
        "{traces:#?}"
    );
    p.assert_still_10();
    p.assert_clean(false);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_build_for_a_cpu_this_one_is_not_is_refused_by_its_self_test() {
    // The header says x86_64, so every check before the self-test lets it
    // through, but its first instruction is one this CPU does not have
    // (ud2 stands for an instruction of a newer CPU): SIGILL.
    let p = publish(&[]);
    let mut build = p.v11.clone();
    let entry = entry_offset(&build);
    build[entry..entry + 2].copy_from_slice(&[0x0f, 0x0b]);
    announce_body(&p, build);
    let failed = expect_refused(&p);
    assert!(failed.contains("SIGILL"), "{failed}");
    expect_held_back(&p);
}

#[test]
fn a_build_whose_program_loader_is_missing_here_is_refused_by_its_self_test() {
    // A build linked for another C library (glibc against musl): its
    // program loader (PT_INTERP) does not exist here; the kernel says
    // ENOENT, the build's fault.
    let p = publish(&[]);
    let mut build = p.v11.clone();
    let stub_len = crate::update::payload_offset(&build);
    let interp = find(&build[..stub_len], b"/lib64/ld-linux-x86-64.so.2\0")
        .or_else(|| find(&build[..stub_len], b"/lib/ld-linux-aarch64.so.1\0"))
        .expect("the test stub is linked dynamically: its program loader");
    build[interp + 1..interp + 6].copy_from_slice(b"nolib");
    announce_body(&p, build);
    let failed = expect_refused(&p);
    assert!(
        failed.contains("cannot execute it: No such file"),
        "{failed}"
    );
    expect_held_back(&p);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_build_whose_stub_crashes_is_refused() {
    let p = publish(&[]);
    // Its first instruction writes to address 0: SIGSEGV at once.
    let mut build = p.v11.clone();
    let entry = entry_offset(&build);
    let store_to_null = [0x89, 0x04, 0x25, 0, 0, 0, 0];
    build[entry..entry + store_to_null.len()].copy_from_slice(&store_to_null);
    announce_body(&p, build);
    let failed = expect_refused(&p);
    assert!(failed.contains("SIGSEGV"), "{failed}");
    expect_held_back(&p);
}

#[test]
fn a_build_whose_version_is_spelled_otherwise_than_announced_installs() {
    // The manifest announces 1.1; the file says 1.1.0 or v1.1, the same
    // version (verification compares versions by their order): its answer
    // names its own version, and that passes.
    for spelling in ["1.1.0", "v1.1"] {
        let p = publish(&[]);
        let (build, _) = crate::update::pack_version(&p.s, p.server.port, spelling, &[], |_| {});
        announce_body(&p, build.clone());
        let out = p.run(&["version"]);
        assert_eq!(stdout(&out), "1.0\n");
        let traces = update_traces(&out);
        assert!(
            traces.iter().any(|t| t == PASSED),
            "{spelling}: {traces:#?}"
        );
        assert_updated(&out);
        assert_eq!(fs::read(&p.exe).expect("read"), build, "{spelling}");
    }
}

/// Packs 1.1 for `p` with the stub `stub_bytes` (written to a file of its
/// own); returns the packed build.
fn pack_11_with_stub(p: &Published, stub_bytes: &[u8]) -> Vec<u8> {
    let stub_file = p.s.path("edited-stub");
    write_file(&stub_file, stub_bytes, true);
    let out = p.s.path("edited.bin");
    let packed = tools([
        "pack".as_ref(),
        p.s.path("app-1.1").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--stub".as_ref(),
        stub_file.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
        "--name".as_ref(),
        NAME.as_ref(),
        "--version".as_ref(),
        "1.1".as_ref(),
    ]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    fs::read(&out).expect("read")
}

const SELF_TEST_MARKER: &[u8] = b"ONEFILE-SELF-TEST\0";

#[test]
fn a_build_whose_stub_predates_the_self_test_installs_without_one() {
    let p = publish(&[]);
    // An older stub has no self-test marker (and pack records none in the
    // metadata): run in that mode it would run its app, so the updater
    // does not run it, and says so.
    let mut stub = fs::read(stub()).expect("read the stub");
    let at = find(&stub, SELF_TEST_MARKER).expect("the self-test marker");
    stub[at..at + 7].copy_from_slice(b"OLDFILE");
    let build = pack_11_with_stub(&p, &stub);
    let packed = p.s.path("edited.bin");
    let info = inspect(&packed);
    for key in ["self_test", "stub_self_test"] {
        assert_eq!(info.get(key), Some(&serde_json::Value::Null), "{key}");
    }
    let shown = tools(["inspect".as_ref(), packed.as_os_str()]);
    assert!(
        stdout(&shown).contains("self-test       none: an updater installs this build untested"),
        "{}",
        stdout(&shown)
    );
    announce_body(&p, build.clone());
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_updated(&out);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t == "The new build's stub has no self-test; installing it without one."),
        "{traces:#?}"
    );
    assert!(!traces.iter().any(|t| t == PASSED), "{traces:#?}");
    assert_eq!(fs::read(&p.exe).expect("read"), build);
    assert_eq!(p.version_now(), "1.1");
}

#[test]
fn a_build_whose_metadata_promises_a_self_test_is_tested_though_its_stub_lost_the_marker() {
    let p = publish(&[]);
    // A stub cut short before its markers, with the two markers appended
    // (so that pack takes it and records the self-test in the metadata);
    // then the self-test marker is erased from the packed build: its stub
    // no longer shows it, but its metadata says it has the mode, so the
    // self-test runs, and the truncated stub fails it.
    let stub = fs::read(stub()).expect("read the stub");
    let marker_at = |marker: &[u8]| find(&stub, marker).expect("a marker");
    let format_at = marker_at(b"ONEFILE-STUB\0");
    let self_test_at = marker_at(SELF_TEST_MARKER);
    let cut = format_at.min(self_test_at) / 2;
    let mut edited = stub[..cut].to_vec();
    edited.extend_from_slice(&stub[format_at..format_at + 15]);
    edited.extend_from_slice(&stub[self_test_at..self_test_at + SELF_TEST_MARKER.len() + 2]);
    let mut build = pack_11_with_stub(&p, &edited);
    let appended = find(&build, SELF_TEST_MARKER).expect("the appended marker");
    assert!(appended >= cut, "the stub's own marker survived the cut");
    build[appended..appended + 7].copy_from_slice(b"OLDFILE");
    // `inspect` tells from the metadata alone that an updater tests it.
    let erased = p.s.path("erased.bin");
    write_file(&erased, &build, false);
    let info = inspect(&erased);
    assert_eq!(info["self_test"], 1);
    assert_eq!(info.get("stub_self_test"), Some(&serde_json::Value::Null));
    let shown = tools(["inspect".as_ref(), erased.as_os_str()]);
    assert!(
        stdout(&shown).contains("self-test       protocol 1: an updater runs it"),
        "{}",
        stdout(&shown)
    );
    announce_body(&p, build);
    expect_refused(&p);
    expect_held_back(&p);
}

/// The processes running a file in `dir` (by `/proc/<pid>/exe`).
pub fn running_in(dir: &Path) -> Vec<String> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| fs::read_link(e.path().join("exe")).ok())
        .filter(|exe| exe.parent() == Some(dir))
        .map(|exe| exe.display().to_string())
        .collect()
}

/// 1.0 waiting `wait` seconds at most for its updater after the app's
/// exit, and a 1.1 announced whose stub spins forever at its first
/// instruction (x86_64).
#[cfg(target_arch = "x86_64")]
pub fn publish_a_hanging_build(wait: &str) -> Published {
    let p = publish(&["--update-exit-wait", wait]);
    let mut build = p.v11.clone();
    let entry = entry_offset(&build);
    // jmp to itself.
    build[entry..entry + 2].copy_from_slice(&[0xeb, 0xfe]);
    announce_body(&p, build);
    p
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_build_that_never_answers_is_stopped_and_refused() {
    let p = publish_a_hanging_build("60");
    let failed = expect_refused(&p);
    assert!(failed.contains("did not answer within 10 s"), "{failed}");
    let dir = p.exe.parent().expect("folder");
    assert_eq!(running_in(dir), Vec::<String>::new());
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_self_test_never_outlives_the_launcher() {
    // The launcher gives up on its updater 1 s after the app's exit, in
    // the middle of the self-test: the build under test ends with it.
    let p = publish_a_hanging_build("1");
    let out = p.s.run_leaving_background(&p.exe, ["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.starts_with("Still busy")),
        "{traces:#?}"
    );
    // The background updater the launcher handed the rest to would test
    // the hanging build again (its own self-test ends with it in turn):
    // stopped, so that only what the launcher started is looked for.
    stop_background_updater(&out);
    let dir = p.exe.parent().expect("folder");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !running_in(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(running_in(dir), Vec::<String>::new());
    p.assert_still_10();
}

/// 1.0 and 1.1 whose entry is a script that leaves `ran-<version>` in
/// `marks` and then runs the probe.
fn publish_marking(marks: &Path) -> Published {
    fs::create_dir_all(marks).expect("mkdir");
    let script = format!(
        "#!/bin/sh\ntouch '{}/ran-'\"$ONEFILE_VERSION\"\nexec \"$ONEFILE_DIR/bin/probe\" \"$@\"\n",
        marks.display()
    );
    publish_apps(&["--entry", "run.sh"], |app| {
        write_file(&app.join("run.sh"), script.as_bytes(), true);
    })
}

fn marks_in(marks: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(marks)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_self_test_never_runs_the_app() {
    let marks_dir = tempfile::tempdir().expect("temp dir");
    let marks = marks_dir.path().to_owned();
    let p = publish_marking(&marks);
    // By hand: one line, exit 0, and neither the app nor the cache.
    let v11 = p.s.path("site/1.1/AutoUpdatingTest.bin");
    let cache = p.s.cache();
    let out =
        p.s.command(&v11)
            .arg("version")
            .env("ONEFILE_SELF_TEST", TOKEN)
            .output()
            .expect("run");
    assert_eq!(
        stdout(&out),
        format!("onefile-self-test {TOKEN} ok {NAME} 1.1\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    assert!(marks_in(&marks).is_empty(), "{:?}", marks_in(&marks));
    assert!(!cache.exists(), "the self-test touched the cache");

    // By the updater: 1.1 passes its self-test, and only 1.0's app ran.
    p.announce_11();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_updated(&out);
    assert!(
        update_traces(&out).iter().any(|t| t == PASSED),
        "{}",
        stderr(&out)
    );
    assert_eq!(marks_in(&marks), ["ran-1.0"]);
}

#[test]
fn a_damaged_build_fails_its_self_test_by_hand() {
    let p = publish(&[]);
    let mut damaged = p.v11.clone();
    let offset = crate::update::payload_offset(&damaged);
    // The payload's first frame no longer starts with zstd's magic.
    damaged[offset] ^= 0xff;
    let exe = p.s.path("damaged.bin");
    write_file(&exe, &damaged, true);
    let out =
        p.s.command(&exe)
            .arg("version")
            .env("ONEFILE_SELF_TEST", TOKEN)
            .output()
            .expect("run");
    assert_eq!(stdout(&out), "");
    assert_ne!(out.status.code(), Some(0));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("onefile-self-test {TOKEN} failed: ")),
        "{lines:?}"
    );
    assert!(lines[0].contains("zstd frame"), "{lines:?}");
}

/// Runs the user's 1.0 `env ONEFILE_SELF_TEST` with `value` in its
/// environment, and `extra` arguments after.
fn run_with_value(p: &Published, value: &str, extra: &[&str]) -> Output {
    p.s.command(&p.exe)
        .args(["env", "ONEFILE_SELF_TEST"])
        .args(extra)
        .env("ONEFILE_SELF_TEST", value)
        .env("AUTO_UPDATE_DISABLE", "1")
        .output()
        .expect("run")
}

#[test]
fn a_value_that_is_not_a_token_runs_the_app_which_never_sees_it() {
    let p = publish(&[]);
    for value in [
        "not-hex-at-all-not-hex",
        "0123456789ABCDEF",
        "0123456789abcde",
        &"a".repeat(65),
        "",
    ] {
        let out = run_with_value(&p, value, &[]);
        assert_eq!(out.status.code(), Some(0), "{value:?}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "ONEFILE_SELF_TEST unset\n",
            "{value:?}: {}",
            stderr(&out)
        );
    }
    // Arguments never ask for it.
    let args = p.run(&["args", "ONEFILE_SELF_TEST", TOKEN]);
    assert!(stdout(&args).ends_with(&format!("ONEFILE_SELF_TEST\n{TOKEN}\n")));
}

#[test]
fn a_token_in_the_environment_asks_for_the_self_test_instead_of_the_app() {
    let p = publish(&[]);
    let out = run_with_value(&p, TOKEN, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("onefile-self-test {TOKEN} ok {NAME} 1.0\n")
    );
}

#[test]
fn the_self_test_reads_the_file_executed_even_once_its_name_is_gone() {
    // The build runs from a file that has no name any more (removed after
    // it was opened): it must still read itself, the file executed, not
    // whatever its former path leads to.
    let p = publish(&[]);
    let copy = p.s.path("gone.bin");
    write_file(&copy, &p.v11, true);
    let held = fs::File::open(&copy).expect("open");
    fs::remove_file(&copy).expect("remove");
    use std::os::fd::AsRawFd;
    let by_fd = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
    let out =
        p.s.command(Path::new(&by_fd))
            .env("ONEFILE_SELF_TEST", TOKEN)
            .output()
            .expect("run");
    assert_eq!(
        stdout(&out),
        format!("onefile-self-test {TOKEN} ok {NAME} 1.1\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// The download of the user's folder, if there is one.
fn download_in(p: &Published) -> Option<std::path::PathBuf> {
    fs::read_dir(p.exe.parent().expect("folder"))
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .find(|path| path.to_string_lossy().ends_with(".download"))
}

#[test]
fn a_self_test_this_machine_keeps_from_running_keeps_the_download_for_the_next_launch() {
    // Another process holds the download open for writing while it
    // arrives (slowly): Linux refuses to execute it (ETXTBSY). Not the
    // build's fault: nothing is installed, nothing held back, and the
    // verified download is kept; the next launch self-tests and installs
    // it without downloading it again.
    let p = publish(&[]);
    let body = p.v11.clone();
    let chunk = body.len() / 20 + 1;
    let route = crate::server::Route::Drip {
        body: body.clone(),
        chunk,
        delay_ms: 100,
    };
    crate::update::announce_route(&p, &body, route);
    // The app lives until the updater is done: a download dripping 100 ms
    // apart would be handed off at the app's exit.
    let seen = p.s.path("status-seen");
    let launcher =
        p.s.command(&p.exe)
            .args(["watch-status", seen.to_str().expect("utf8"), "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let holder = loop {
        if let Some(path) = download_in(&p)
            && let Ok(file) = fs::OpenOptions::new().write(true).open(&path)
        {
            break file;
        }
        assert!(std::time::Instant::now() < deadline, "no download appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let out = launcher.wait_with_output().expect("wait");
    drop(holder);
    assert!(out.status.success(), "{}", stderr(&out));
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with(
                "The new build's self-test could not run now: cannot start it: Text file busy"
            ) && t.ends_with("the verified download is kept for the next launch.")),
        "{traces:#?}"
    );
    assert!(!traces.iter().any(|t| t.starts_with(FAILED)), "{traces:#?}");
    p.assert_still_10();
    assert!(p.has_download(), "the download was not kept");

    let before = downloads(&p);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Using the build verified by an earlier launch")),
        "{traces:#?}"
    );
    assert!(traces.iter().any(|t| t == PASSED), "{traces:#?}");
    assert_updated(&out);
    assert_eq!(downloads(&p), before, "downloaded again: {traces:#?}");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    p.assert_clean(false);
}

/// Runs the user's 1.0 with at most `limit` open file descriptors.
fn run_with_descriptors(p: &Published, limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    // The app lives until the updater is done (or 15 s, when the limit
    // kept the status file from being written), so the self-test runs in
    // this launcher, with this limit, however loaded the machine; the
    // traces of a background updater it handed off to are read too.
    let seen = p.s.path(&format!("status-seen-{limit}"));
    let mut cmd = p.s.command(&p.exe);
    cmd.args(["watch-status", seen.to_str().expect("utf8"), "15"]);
    // SAFETY: setrlimit is async-signal-safe, on memory of this frame.
    unsafe {
        cmd.pre_exec(move || {
            let limits = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limits) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    with_background_traces(cmd.output().expect("run"))
}

#[test]
fn a_self_test_without_file_descriptors_keeps_the_download_and_holds_nothing_back() {
    // Launches with ever more file descriptors allowed: one gets as far as
    // the self-test and cannot make its pipes (EMFILE), which is not the
    // build's fault; a later one installs the build kept then, without
    // downloading it again, and none refuses or holds it back.
    let p = publish(&[]);
    p.announce_11();
    let fetched = || {
        p.server
            .requests()
            .iter()
            .filter(|r| r.path == format!("/1.1/{NAME}.bin"))
            .count()
    };
    let mut downloads_when_kept = None;
    for limit in 8..64 {
        // How many descriptors a step needs depends on timing (a pooled
        // connection, the app's status reads), so a launch may fail a
        // check before the self-test; its backoff must not stop the scan.
        let_time_pass(&p.s.cache());
        let out = run_with_descriptors(&p, limit);
        let traces = update_traces(&out);
        assert!(
            !traces
                .iter()
                .any(|t| t.starts_with(FAILED) || t.contains("not downloaded again")),
            "{limit}: {traces:#?}"
        );
        let kept = traces.iter().any(|t| {
            t.starts_with("The new build's self-test could not run now")
                && t.contains("Too many open files")
        });
        if kept && downloads_when_kept.is_none() {
            downloads_when_kept = Some(fetched());
        }
        if traces.iter().any(|t| t == "Updated.") {
            break;
        }
    }
    let downloads_when_kept = downloads_when_kept.expect("no launch ran out at the self-test");
    assert_eq!(fetched(), downloads_when_kept, "downloaded again");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}
