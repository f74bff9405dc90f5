//! The launcher never keeps the user waiting for the updater: stdio
//! released at the app's exit, a short bound for a check that hangs, the
//! rest handed to a detached background updater (one at a time, no
//! terminal, no stdio, ending by itself); and `ONEFILE_UPDATE=now|check`
//! for scripts.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::nginx::{Config, Nginx};
use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, publish};

/// Far below the 5 s the launcher used to wait for a stalled check, far
/// above what a loaded machine needs to start and end a tiny app.
const PROMPT: Duration = Duration::from_secs(2);

/// Waits until `pid` has ended; panics after `bound`.
fn wait_for_end(pid: u32, bound: Duration) {
    let started = Instant::now();
    while process_runs(pid) {
        assert!(
            started.elapsed() < bound,
            "background updater {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `exe` without traces (as users do: with traces on, the launcher
/// waits for an unanswered host like for the rest) and with stdout on a
/// pipe, like `exe args | cat`; returns the time until the pipe's end of
/// file and until the launcher's exit, and its output.
fn run_piped(s: &Scratch, exe: &Path, args: &[&str]) -> (Duration, Duration, Output) {
    let started = Instant::now();
    let mut child = s
        .command(exe)
        .env_remove("AUTO_UPDATE_DEBUG")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut text = Vec::new();
    stdout.read_to_end(&mut text).expect("read");
    let eof = started.elapsed();
    let mut out = child.wait_with_output().expect("wait");
    let exited = started.elapsed();
    out.stdout = text;
    (eof, exited, out)
}

#[test]
fn a_stalled_check_returns_at_once_and_the_background_updater_gives_up_by_itself() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let (eof, exited, out) = run_piped(&p.s, &p.exe, &["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(eof < PROMPT, "end of file after {eof:?}");
    assert!(exited < PROMPT, "the launcher exited after {exited:?}");
    assert_eq!(out.status.code(), Some(0));
    let updaters = background_updaters_of(&p.s.cache());
    let [pid] = updaters[..] else {
        panic!("background updaters: {updaters:?}");
    };
    // The stalled check times out (30 s) in the background, which then
    // ends by itself and backs off.
    wait_for_end(pid, Duration::from_secs(90));
    let asked = |p: &crate::update::Published| {
        p.server
            .requests()
            .iter()
            .filter(|r| r.path == "/1.0/update.toml")
            .count()
    };
    assert_eq!(
        asked(&p),
        2,
        "the launcher's check, redone in the background"
    );
    let next = p.run(&["version"]);
    let traces = update_traces(&next);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("the next check is due in")),
        "{traces:#?}"
    );
    assert_eq!(asked(&p), 2);
    p.assert_still_10();
}

#[test]
fn the_background_updater_holds_no_terminal_no_stdio_and_runs_once() {
    let p = publish(&["--update-exit-wait", "1"]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let (_, _, first) = run_piped(&p.s, &p.exe, &["version"]);
    assert_eq!(stdout(&first), "1.0\n");
    let updaters = background_updaters_of(&p.s.cache());
    let [pid] = updaters[..] else {
        panic!("background updaters: {updaters:?}");
    };
    // A session of its own: no controlling terminal, no terminal signals.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "session id: {stat}");
    assert_eq!(fields[4], "0", "controlling terminal: {stat}");
    // Its stdio is the null device; nothing else of the launcher's.
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("fd");
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        let target = fs::read_link(entry.path()).unwrap_or_default();
        let shown = target.to_string_lossy();
        assert!(
            !shown.starts_with("/dev/pts") && !shown.starts_with("pipe:"),
            "fd {:?}: {shown}",
            entry.file_name()
        );
    }
    let environ = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"ONEFILE_UPDATE=background"),
        "environment"
    );
    // Another launch while it runs starts none (with traces on, it waits
    // for the stalled host its full second first).
    let second = p.run(&["version"]);
    let traces = update_traces(&second);
    assert!(background_updater(&second).is_none(), "{traces:#?}");
    assert!(
        traces.contains(&"A background updater runs already.".to_owned()),
        "{traces:#?}"
    );
    // The host goes away: the background updater ends.
    drop(p.server);
    wait_for_end(pid, Duration::from_secs(60));
}

#[test]
fn a_slow_download_is_finished_in_the_background_from_where_it_stopped() {
    let s = Scratch::new();
    let site = s.path("site");
    let Some(nginx) = Nginx::start_with(
        &site,
        &s.path("nginx"),
        &Config {
            server: "limit_rate 1m;".into(),
            ..Config::default()
        },
    ) else {
        skip("nginx is not installed (make deps installs it)");
        return;
    };
    // 1.1 brings 3 MB that cannot be compressed: 3 s at the rate limit.
    let noise_of = |version: &str, app: &Path| {
        if version == "1.1" {
            fs::write(app.join("bin/noise"), noise(3 << 20, 7)).expect("write");
        }
    };
    let mut builds = Vec::new();
    for version in ["1.0", "1.1"] {
        let app = s.probe_app(&format!("app-{version}"), version);
        noise_of(version, &app);
        let out = site.join(format!("{version}/{NAME}.bin"));
        let toml = site.join(format!("{version}/update.toml"));
        let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", nginx.port);
        let packed = pack(
            &app,
            &out,
            &[
                "--name",
                NAME,
                "--version",
                version,
                "--update-url-spec",
                &spec,
                "--auto-update-toml-file",
                toml.to_str().expect("utf8"),
                "--update-exit-wait",
                "0",
            ],
        );
        assert!(packed.status.success(), "{}", stderr(&packed));
        builds.push(fs::read(&out).expect("read"));
    }
    fs::copy(site.join("1.1/update.toml"), site.join("1.0/update.toml")).expect("publish");
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &builds[0], true);
    // The app runs a second, then exits: the download is under way.
    let (_, exited, out) = run_piped(&s, &exe, &["version", "1"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(exited < Duration::from_secs(1) + PROMPT, "{exited:?}");
    let updaters = background_updaters_of(&s.cache());
    let [pid] = updaters[..] else {
        panic!("background updaters: {updaters:?}");
    };
    assert_eq!(fs::read(&exe).expect("read"), builds[0], "not yet");
    wait_for_end(pid, Duration::from_secs(120));
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
    // The background updater went on from the launcher's partial file:
    // little more than the build crossed the network, not a second copy
    // of what the launcher had.
    let bin = format!("/1.1/{NAME}.bin");
    let sent: u64 = nginx
        .requests()
        .iter()
        .filter(|r| r.path == bin)
        .map(|r| r.sent)
        .sum();
    let len = builds[1].len() as u64;
    assert!(
        sent < len + len / 5,
        "{sent} bytes sent for a build of {len}"
    );
    let next = s.run(&exe, ["version"]);
    assert_eq!(stdout(&next), "1.1\n");
}

#[test]
fn update_now_installs_and_reports_in_one_line() {
    let p = publish(&[]);
    p.announce_11();
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(
        stdout(&out),
        format!("{NAME}: updated from 1.0 to 1.1\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    // Now up to date; the interval and backoff do not apply to a request.
    let again =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(stdout(&again), format!("{NAME}: 1.1 is up to date\n"));
    assert_eq!(again.status.code(), Some(0));
}

#[test]
fn update_check_reports_without_downloading() {
    let p = publish(&[]);
    p.announce_11();
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "check")
            .output()
            .expect("run");
    assert_eq!(
        stdout(&out),
        format!("{NAME}: 1.1 is available (running 1.0)\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(100));
    p.assert_still_10();
    let bin = format!("/1.1/{NAME}.bin");
    assert!(p.server.requests().iter().all(|r| r.path != bin));
    p.server
        .route("/1.0/update.toml", Route::file(p.toml10.clone()));
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "check")
            .output()
            .expect("run");
    assert_eq!(stdout(&out), format!("{NAME}: 1.0 is up to date\n"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn update_now_fails_with_a_code_per_cause() {
    // The host is down.
    let p = publish(&[]);
    p.repack_10(&["http://127.0.0.1:9/{VERSION}/update.toml"], &[]);
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let line = stderr(&out)
        .lines()
        .find(|l| l.starts_with(&format!("{NAME}: error: ")))
        .map(str::to_owned);
    assert!(line.is_some(), "{}", stderr(&out));

    // A manifest not signed by the build's key.
    let pair = minisign::KeyPair::generate_unencrypted_keypair().expect("key pair");
    let public = p.s.path("trusted.pub");
    fs::write(&public, pair.pk.to_box().expect("box").into_string()).expect("write");
    let spec = p.server.url("/{VERSION}/update.toml");
    p.repack_10(&[&spec], &["--public-key", public.to_str().expect("utf8")]);
    p.announce_11();
    let before = fs::read(&p.exe).expect("read");
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(102), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{NAME}: error: ")));
    assert!(
        fs::read(&p.exe).expect("read") == before,
        "executable changed"
    );

    // A value not understood: the app does not run.
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "later")
            .arg("version")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(105));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains(&format!(
            "{NAME}: error: ONEFILE_UPDATE=later is not understood"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn update_now_in_a_build_without_updates_says_so() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("plain.bin");
    let packed = pack(&app, &exe, &["--name", "plain", "--version", "1.0"]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    let out = s
        .command(&exe)
        .env("ONEFILE_UPDATE", "now")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(105));
    assert!(
        stderr(&out).contains("plain: error: this build has no updates"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_app_never_sees_onefile_update() {
    let p = publish(&[]);
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "")
            .args(["env", "ONEFILE_UPDATE"])
            .output()
            .expect("run");
    assert_eq!(stdout(&out), "ONEFILE_UPDATE unset\n", "{}", stderr(&out));
}

/// A 1.1 whose app dies of SIGSEGV as it starts.
const SEGFAULTS: &str = "#!/bin/sh\nkill -SEGV $$\n";

/// 1.0 and a 1.1 that crashes at start published, rolled back after one
/// failed start; the user's copy 1.0.
fn publish_crashing_11() -> crate::update::Published {
    use crate::server::Server;
    use crate::update::pack_version;
    let s = Scratch::new();
    let server = Server::start();
    let extra = ["--rollback-after", "1"];
    let (v10, toml10) = pack_version(&s, server.port, "1.0", &extra, |_| {});
    let (v11, toml11) = pack_version(&s, server.port, "1.1", &extra, |app| {
        write_file(&app.join("bin/probe"), SEGFAULTS.as_bytes(), true);
    });
    server.route(&format!("/1.0/{NAME}.bin"), Route::file(v10.clone()));
    server.route(&format!("/1.1/{NAME}.bin"), Route::file(v11.clone()));
    server.route("/1.0/update.toml", Route::file(toml10.clone()));
    server.route("/1.1/update.toml", Route::file(toml11.clone()));
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);
    crate::update::Published {
        s,
        server,
        exe,
        v10,
        v11,
        toml10,
        toml11,
    }
}

/// Waits until no background updater of the cache `cache` runs.
fn wait_for_no_updater(cache: &Path, bound: Duration) {
    for pid in background_updaters_of(cache) {
        wait_for_end(pid, bound);
    }
}

#[test]
fn a_launch_whose_executable_was_replaced_meanwhile_leaves_the_kept_build_alone() {
    let p = publish_crashing_11();
    p.server.route("/1.0/update.toml", Route::Stall);
    // The launcher's check hangs while its app runs for 3 s ...
    let running =
        p.s.command(&p.exe)
            .args(["version", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    // ... meanwhile an admin installs 1.1 (which crashes), keeping 1.0 as
    // the build to roll back to.
    p.announce_11();
    let now =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(now.status.code(), Some(0), "{}", stderr(&now));
    let previous = p.exe.with_file_name(format!(".{NAME}.bin.previous"));
    assert!(fs::read(&previous).expect("kept") == p.v10, "1.0 kept");
    let out = running.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "1.0\n");
    wait_for_no_updater(&p.s.cache(), Duration::from_secs(60));
    // Nothing updated the build kept under another name.
    assert!(
        fs::read(&previous).expect("kept") == p.v10,
        "the kept 1.0 was replaced: {}",
        stderr(&out)
    );
    // So the crashing 1.1 is rolled back to 1.0.
    let crashed = p.run(&["version"]);
    assert!(
        update_traces(&crashed)
            .iter()
            .any(|t| t.starts_with("Rolled back from 1.1 to 1.0")),
        "{}",
        stderr(&crashed)
    );
    assert_eq!(p.version_now(), "1.0");
}

#[test]
fn a_background_updater_whose_executable_is_no_longer_the_one_handed_off_does_nothing() {
    use std::os::unix::fs::MetadataExt;
    let p = publish(&[]);
    p.announce_11();
    let meta = fs::metadata(&p.exe).expect("stat");
    // Handed a file that the name no longer holds (another inode).
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "background")
            .env("ONEFILE_UPDATE_EXE", &p.exe)
            .env(
                "ONEFILE_UPDATE_EXE_ID",
                format!("{}:{}", meta.dev(), meta.ino() + 1),
            )
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0));
    // Its traces go to its file, not to stderr (it has none).
    let traces = fs::read_to_string(p.s.cache().join(NAME).join("background-updater.log"))
        .unwrap_or_default();
    assert!(
        traces.contains("is no longer the executable handed off"),
        "{traces}{}",
        stderr(&out)
    );
    assert!(p.server.requests().is_empty(), "nothing asked");
    p.assert_still_10();
}

#[test]
fn a_host_that_answers_the_manifest_but_stalls_the_build_does_not_hold_the_shell() {
    let p = publish(&[]);
    p.announce_11();
    p.server.route(&format!("/1.1/{NAME}.bin"), Route::Stall);
    let (eof, exited, out) = run_piped(&p.s, &p.exe, &["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(eof < PROMPT, "end of file after {eof:?}");
    assert!(exited < PROMPT, "the launcher exited after {exited:?}");
    assert_eq!(out.status.code(), Some(0));
    // The background updater it handed off to waits for the same host.
    let updaters = background_updaters_of(&p.s.cache());
    let [pid] = updaters[..] else {
        panic!("background updaters: {updaters:?}");
    };
    // SAFETY: a signal to the process this test's launch started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for_end(pid, Duration::from_secs(10));
    p.assert_still_10();
}

#[test]
fn a_launch_asked_to_stop_hands_nothing_off() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let pidfile = p.s.path("pid");
    let child =
        p.s.spawn_piped(&p.exe, &["wait-signal", pidfile.to_str().expect("utf8")]);
    crate::launch::wait_for_pid(&pidfile);
    // The check is under way (and hangs) when the stop comes.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: a signal to this test's own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), format!("got {}\n", libc::SIGTERM));
    let updaters = background_updaters_of(&p.s.cache());
    for pid in &updaters {
        // SAFETY: a signal to a process this test's launch started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(updaters.is_empty(), "background updaters: {updaters:?}");
    assert!(
        update_traces(&out)
            .contains(&"Asked to stop; the update is left for the next launch.".to_owned()),
        "{}",
        stderr(&out)
    );
}

#[test]
fn background_updaters_of_successive_builds_leave_one_lock_file() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Stall);
    for _ in 0..2 {
        // A new file each time, as an installed update is.
        fs::remove_file(&p.exe).expect("remove");
        write_file(&p.exe, &p.v10, true);
        let (_, _, out) = run_piped(&p.s, &p.exe, &["version"]);
        assert_eq!(stdout(&out), "1.0\n");
        let updaters = background_updaters_of(&p.s.cache());
        assert_eq!(updaters.len(), 1, "{updaters:?}");
        for pid in updaters {
            // SAFETY: a signal to a process this test's launch started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            wait_for_end(pid, Duration::from_secs(10));
        }
    }
    let locks: Vec<String> = fs::read_dir(p.s.cache().join(NAME))
        .expect("cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".background"))
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
}

/// Runs `exe` with `ONEFILE_UPDATE=value`.
fn request(p: &crate::update::Published, value: &str) -> Output {
    p.s.command(&p.exe)
        .env("ONEFILE_UPDATE", value)
        .output()
        .expect("run")
}

#[test]
fn update_check_reports_a_build_that_failed_verification_as_held_back() {
    let p = publish(&[]);
    p.announce_11_with_a_wrong_crc();
    let now = request(&p, "now");
    assert_eq!(now.status.code(), Some(102), "{}", stderr(&now));
    let check = request(&p, "check");
    assert_eq!(check.status.code(), Some(102), "{}", stderr(&check));
    assert!(stdout(&check).is_empty(), "{}", stdout(&check));
    assert!(
        stderr(&check).contains(&format!(
            "{NAME}: error: 1.1 failed verification lately; not downloaded again for now"
        )),
        "{}",
        stderr(&check)
    );
}

#[test]
fn update_check_reports_a_build_rolled_back_from_as_held_back() {
    let p = publish_crashing_11();
    p.announce_11();
    let now = request(&p, "now");
    assert_eq!(now.status.code(), Some(0), "{}", stderr(&now));
    let crashed = p.run(&["version"]);
    assert!(
        update_traces(&crashed)
            .iter()
            .any(|t| t.starts_with("Rolled back from 1.1 to 1.0")),
        "{}",
        stderr(&crashed)
    );
    let check = request(&p, "check");
    assert_eq!(check.status.code(), Some(102), "{}", stderr(&check));
    assert!(
        stderr(&check).contains(&format!(
            "{NAME}: error: 1.1 was rolled back from; not installed again"
        )),
        "{}",
        stderr(&check)
    );
    let now = request(&p, "now");
    assert_eq!(now.status.code(), Some(102), "{}", stderr(&now));
    assert_eq!(p.version_now(), "1.0");
}

#[test]
fn update_now_while_another_updater_is_at_work_is_busy() {
    let p = publish(&[]);
    p.announce_11();
    let bin = format!("/1.1/{NAME}.bin");
    p.server.route(&bin, Route::Stall);
    // The launcher hands the stalled download to a background updater,
    // which waits for it holding the updater's lock.
    let (_, _, out) = run_piped(&p.s, &p.exe, &["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let updaters = background_updaters_of(&p.s.cache());
    let [pid] = updaters[..] else {
        panic!("background updaters: {updaters:?}");
    };
    let asked = || p.server.requests().iter().filter(|r| r.path == bin).count();
    let started = Instant::now();
    while asked() < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let now = request(&p, "now");
    // SAFETY: a signal to a process this test's launch started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for_end(pid, Duration::from_secs(10));
    assert_eq!(now.status.code(), Some(104), "{}", stderr(&now));
    assert!(stderr(&now).contains(&format!("{NAME}: error: ")));
}

#[test]
fn with_traces_on_the_launcher_hands_off_as_soon_and_the_updater_traces_to_its_file() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let started = Instant::now();
    let out = p.s.run_leaving_background(&p.exe, ["version"]);
    let exited = started.elapsed();
    assert_eq!(stdout(&out), "1.0\n");
    assert!(exited < PROMPT, "the launcher exited after {exited:?}");
    let traces = update_traces(&out);
    let pid = background_updater(&out).expect("a background updater");
    let file = p.s.cache().join(NAME).join("background-updater.log");
    assert_eq!(
        traces.last().map(String::as_str),
        Some(format!("Its traces go to '{}'.", file.display()).as_str()),
        "{traces:#?}"
    );
    let started = Instant::now();
    while fs::read_to_string(&file).is_ok_and(|t| t.is_empty()) || !file.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "no trace file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to the process this test's launch started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for_end(pid, Duration::from_secs(10));
    let text = fs::read_to_string(&file).expect("its trace file");
    assert!(
        text.starts_with(&format!("AUTO UPDATE: Background updater {pid} started.\n")),
        "{text}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&file).expect("stat").mode() & 0o777, 0o600);
}
