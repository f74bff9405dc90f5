//! Probation and rollback (issue 14): a real 1.0 published and installed,
//! then a real 1.1 installed over it by the updater, which keeps 1.0 beside
//! it as `.<exe>.previous`; 1.1 crashes at start, exits with a code listed
//! unhealthy, or is healthy, and the launcher rolls back or lets 1.0 go.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::server::{Route, Server};
use crate::support::*;
use crate::update::{NAME, Published, pack_version};

/// A 1.1 whose app dies of SIGSEGV as it starts.
const SEGFAULTS: &str = "#!/bin/sh\nkill -SEGV $$\n";
/// A 1.1 whose app exits 127 (a missing library, say).
const EXITS_127: &str = "#!/bin/sh\nexit 127\n";
/// A 1.1 that says it is healthy, then runs until its previous build is
/// gone (at most 10 s), then prints `ok`.
const SAYS_HEALTHY: &str = "#!/bin/sh\ntouch \"$ONEFILE_HEALTH_FILE\"\n\
    i=0\nwhile [ -e \"$PREVIOUS\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
    [ -e \"$PREVIOUS\" ] && exit 3\necho ok\n";

/// 1.0 and 1.1 published, the user's copy 1.0; `app_11` replaces the
/// probe of 1.1 with a script when given. Both packed with `extra`.
fn publish_11(extra: &[&str], app_11: Option<&str>) -> Published {
    let s = Scratch::new();
    let server = Server::start();
    let (v10, toml10) = pack_version(&s, server.port, "1.0", extra, |_| {});
    let (v11, toml11) = pack_version(&s, server.port, "1.1", extra, |app| {
        if let Some(script) = app_11 {
            write_file(&app.join("bin/probe"), script.as_bytes(), true);
        }
    });
    server.route(&format!("/1.0/{NAME}.bin"), Route::file(v10.clone()));
    server.route(&format!("/1.1/{NAME}.bin"), Route::file(v11.clone()));
    server.route("/1.0/update.toml", Route::file(toml10.clone()));
    server.route("/1.1/update.toml", Route::file(toml11.clone()));
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);
    Published {
        s,
        server,
        exe,
        v10,
        v11,
        toml10,
        toml11,
    }
}

/// Publishes 1.1 and lets the user's 1.0 install it.
fn install_11(p: &Published) {
    p.announce_11();
    let out = p.run(&["version", "1"]);
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11, "1.1 installed");
    assert_eq!(
        fs::read(previous(p)).expect("the previous build is kept"),
        p.v10
    );
}

fn previous(p: &Published) -> PathBuf {
    p.exe.with_file_name(format!(".{NAME}.bin.previous"))
}

/// Probation records, their locks and temporary files left in the app's
/// cache folder.
fn records(p: &Published) -> Vec<String> {
    fs::read_dir(p.s.cache().join(NAME))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".probation-"))
        .collect()
}

fn rolled_back(out: &Output) -> bool {
    update_traces(out)
        .iter()
        .any(|t| t.starts_with("Rolled back from 1.1 to 1.0"))
}

/// How many times the server was asked for the 1.1 build itself.
fn downloads_of_11(p: &Published) -> usize {
    p.server
        .requests()
        .iter()
        .filter(|r| r.path == format!("/1.1/{NAME}.bin") && !r.is_tail())
        .count()
}

#[test]
fn a_1_1_that_segfaults_is_rolled_back_after_3_failed_starts_and_not_installed_again() {
    let p = publish_11(&[], Some(SEGFAULTS));
    install_11(&p);
    for start in 1..=2 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
        let failed = format!("Failed start {start} of 1.1 (killed by signal 11).");
        assert!(update_traces(&out).contains(&failed), "{}", stderr(&out));
        assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    }
    // The third failure rolls back, and this launch runs 1.0.
    let out = p.run(&["env", "ONEFILE_ROLLED_BACK_FROM"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ONEFILE_ROLLED_BACK_FROM=1.1\n");
    assert!(
        update_traces(&out).contains(
            &"Rolled back from 1.1 to 1.0 after 3 failed starts (last: killed by signal 11)."
                .to_owned()
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10, "1.0 restored");
    assert!(!previous(&p).exists(), "the bad build is gone");
    assert!(records(&p).is_empty(), "{:?}", records(&p));

    // 1.1 is still announced: checked, never downloaded again.
    let downloads = downloads_of_11(&p);
    for _ in 0..2 {
        let_time_pass(&p.s.cache());
        let out = p.run(&["version"]);
        assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
        assert!(
            update_traces(&out)
                .iter()
                .any(|t| t.starts_with("Not installing 1.1: rolled back from it")),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(downloads_of_11(&p), downloads, "1.1 downloaded again");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);
}

#[test]
fn a_later_good_1_2_installs_after_a_rollback() {
    let p = publish_11(&["--rollback-after", "1"], Some(SEGFAULTS));
    install_11(&p);
    let out = p.run(&["version"]);
    assert!(rolled_back(&out), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1.0\n");

    let (v12, toml12) = pack_version(
        &p.s,
        p.server.port,
        "1.2",
        &["--rollback-after", "1"],
        |_| {},
    );
    p.server
        .route(&format!("/1.2/{NAME}.bin"), Route::file(v12.clone()));
    p.server.route("/1.0/update.toml", Route::file(toml12));
    let_time_pass(&p.s.cache());
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), v12);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.2\n", "{}", stderr(&out));
    assert!(!previous(&p).exists(), "1.2 is healthy: 1.0 goes");
}

#[test]
fn an_exit_code_listed_unhealthy_is_a_failed_start_and_others_are_not() {
    let p = publish_11(&["--unhealthy-exit-code", "127"], Some(EXITS_127));
    install_11(&p);
    for _ in 0..2 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    }
    let out = p.run(&["version"]);
    assert!(rolled_back(&out), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);

    // Not listed: a command-line tool reporting a failure, not a crash.
    let p = publish_11(&[], Some(EXITS_127));
    install_11(&p);
    let out = p.run(&["version"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        update_traces(&out).contains(
            &"1.1 is healthy (it exited with code 127); the previous build (1.0) is removed."
                .to_owned()
        ),
        "{}",
        stderr(&out)
    );
    assert!(!previous(&p).exists());
    assert!(records(&p).is_empty());
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}

#[test]
fn a_healthy_1_1_lets_1_0_go_after_its_first_run_and_sees_its_first_run_once() {
    let p = publish_11(&[], None);
    install_11(&p);
    let names = ["env", "ONEFILE_FIRST_RUN", "ONEFILE_PREVIOUS_VERSION"];
    let out = p.run(&names);
    assert_eq!(
        stdout(&out),
        "ONEFILE_FIRST_RUN=1\nONEFILE_PREVIOUS_VERSION=1.0\n",
        "{}",
        stderr(&out)
    );
    assert!(!previous(&p).exists(), "healthy after its first run");
    assert!(records(&p).is_empty());
    // Once: the next launch is an ordinary one, and the variables the
    // launcher itself was given are not passed on.
    let out =
        p.s.command(&p.exe)
            .args(names)
            .env("ONEFILE_FIRST_RUN", "1")
            .env("ONEFILE_PREVIOUS_VERSION", "0.9")
            .output()
            .expect("run");
    assert_eq!(
        stdout(&out),
        "ONEFILE_FIRST_RUN unset\nONEFILE_PREVIOUS_VERSION unset\n"
    );
}

#[test]
fn of_8_concurrent_first_launches_exactly_one_sees_its_first_run() {
    let p = publish_11(&[], None);
    install_11(&p);
    let children: Vec<_> = (0..8)
        .map(|_| {
            p.s.command(&p.exe)
                .args(["env", "ONEFILE_FIRST_RUN"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let first = outs
        .iter()
        .filter(|o| stdout(o) == "ONEFILE_FIRST_RUN=1\n")
        .count();
    assert_eq!(first, 1);
    assert!(!previous(&p).exists());
    assert!(records(&p).is_empty(), "{:?}", records(&p));
}

#[test]
fn the_health_file_makes_a_long_running_app_healthy_before_healthy_after() {
    let p = publish_11(&["--healthy-after", "1h"], Some(SAYS_HEALTHY));
    install_11(&p);
    let out =
        p.s.command(&p.exe)
            .env("PREVIOUS", previous(&p))
            .output()
            .expect("run");
    // The script saw its previous build go while it ran.
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    assert!(
        update_traces(&out).contains(
            &"1.1 is healthy (it created its health file); the previous build (1.0) is removed."
                .to_owned()
        ),
        "{}",
        stderr(&out)
    );
    assert!(records(&p).is_empty());
    // The launcher removed the health file.
    let health = fs::read_dir(p.s.cache().join(NAME))
        .expect("list")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".health-"))
        .count();
    assert_eq!(health, 0);
}

#[test]
fn rollback_after_0_never_rolls_back() {
    let p = publish_11(&["--rollback-after", "0"], Some(SEGFAULTS));
    install_11(&p);
    for _ in 0..4 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
        assert!(!rolled_back(&out), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}

#[test]
fn of_8_concurrent_launches_of_a_crashing_1_1_one_rolls_back() {
    let p = publish_11(&[], Some(SEGFAULTS));
    install_11(&p);
    let mut children: Vec<_> = (0..8)
        .map(|_| {
            p.s.command(&p.exe)
                .arg("version")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    // Meanwhile the executable is always one of the two builds, whole.
    while children
        .iter_mut()
        .any(|c| c.try_wait().expect("wait").is_none())
    {
        let now = fs::read(&p.exe).expect("the executable is always there");
        assert!(now == p.v10 || now == p.v11, "a broken executable");
    }
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let rollbacks = outs.iter().filter(|o| rolled_back(o)).count();
    assert_eq!(rollbacks, 1);
    for out in &outs {
        let ran_10 = out.status.success() && stdout(out) == "1.0\n";
        assert!(ran_10 || out.status.signal() == Some(11), "{}", stderr(out));
    }
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);
    assert!(records(&p).is_empty(), "{:?}", records(&p));
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
}

#[test]
fn launchers_killed_at_random_moments_never_break_the_executable() {
    let p = publish_11(&[], Some(SEGFAULTS));
    install_11(&p);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    for _ in 0..30 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_micros((seed >> 33) % 30_000);
        let mut child = p.s.spawn_quiet(&p.exe, ["version"]);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let now = fs::read(&p.exe).expect("the executable is always there");
        assert!(now == p.v10 || now == p.v11, "a broken executable");
    }
    // Afterwards, launches settle on 1.0: every start of 1.1 failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = p.run(&["version"]);
        if stdout(&out) == "1.0\n" && fs::read(&p.exe).expect("read") == p.v10 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
    }
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
}

#[test]
fn a_previous_build_left_without_probation_goes_at_the_next_check() {
    let p = publish_11(&[], None);
    install_11(&p);
    // The record lost (a cache folder emptied by hand): 1.1 is no longer
    // on probation, and the copy of 1.0 beside it serves nothing.
    for name in records(&p) {
        fs::remove_file(p.s.cache().join(NAME).join(name)).expect("remove");
    }
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    assert!(
        !update_traces(&out).iter().any(|t| t.contains("probation")),
        "{}",
        stderr(&out)
    );
    assert!(!previous(&p).exists(), "{}", stderr(&out));
    p.assert_clean(false);
}

#[test]
fn a_build_without_update_settings_keeps_no_previous_build() {
    let p = publish_11(&[], None);
    // 1.1 packed without an update URL: it has no probation settings, and
    // nothing would ever roll it back.
    let v11 = p.s.path("plain-1.1.bin");
    pack(
        &p.s.path("app-1.1"),
        &v11,
        &["--name", NAME, "--version", "1.1"],
    );
    let v11 = fs::read(&v11).expect("read");
    p.server
        .route(&format!("/1.1/{NAME}.bin"), Route::file(v11.clone()));
    let toml = format!(
        "url = \"{}\"\ncrc32 = {}\nsize = {}\nversion = \"1.1\"\n",
        p.server.url(&format!("/1.1/{NAME}.bin")),
        crc32fast::hash(&v11),
        v11.len()
    );
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), v11);
    assert!(!previous(&p).exists(), "{}", stderr(&out));
    assert!(records(&p).is_empty(), "{:?}", records(&p));
}
