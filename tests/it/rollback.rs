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
    // The third failure rolls back; this launch ends as its app did, and
    // 1.0 runs from the next one.
    let out = p.run(&["version"]);
    assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{NAME}: 1.1 failed to start 3 times; 1.0 was restored and runs from the next launch"
        )),
        "{}",
        stderr(&out)
    );
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
    assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    assert_eq!(p.run(&["version"]).stdout, b"1.0\n");

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
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);
    assert_eq!(p.run(&["version"]).stdout, b"1.0\n");

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
    // launcher itself was given (inherited from another launch's app) are
    // not passed on.
    let inherited = [
        ("ONEFILE_FIRST_RUN", "1"),
        ("ONEFILE_PREVIOUS_VERSION", "0.9"),
        ("ONEFILE_HEALTH_FILE", "/elsewhere/.health"),
        ("ONEFILE_ROLLED_BACK_FROM", "1.1"),
    ];
    for rolled_back_from in ["1.1", "1:1.1"] {
        let out =
            p.s.command(&p.exe)
                .arg("env")
                .args(inherited.map(|(name, _)| name))
                .envs(inherited)
                .env("ONEFILE_ROLLED_BACK_FROM", rolled_back_from)
                .output()
                .expect("run");
        assert_eq!(
            stdout(&out),
            "ONEFILE_FIRST_RUN unset\nONEFILE_PREVIOUS_VERSION unset\n\
             ONEFILE_HEALTH_FILE unset\nONEFILE_ROLLED_BACK_FROM unset\n",
            "{}",
            stderr(&out)
        );
    }
}

/// A 1.1 that prints whether it got its first run, enters itself at the
/// barrier (`$BARRIER.<pid>`), and waits (at most 30 s) until `$BARRIER`
/// exists: all of them are on probation at once.
const WAITS_AT_BARRIER: &str = "#!/bin/sh\necho \"first run: ${ONEFILE_FIRST_RUN:-no}\"\n\
    touch \"$BARRIER.$$\"\ni=0\n\
    while [ ! -e \"$BARRIER\" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n";

#[test]
fn of_8_concurrent_first_launches_exactly_one_sees_its_first_run() {
    let p = publish_11(&["--healthy-after", "1h"], Some(WAITS_AT_BARRIER));
    install_11(&p);
    let barrier = p.s.path("barrier");
    let children: Vec<_> = (0..8)
        .map(|_| {
            p.s.command(&p.exe)
                .env("BARRIER", &barrier)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let arrived = || {
        fs::read_dir(p.s.path(""))
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("barrier."))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived() < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(arrived(), 8, "all 8 on probation at once");
    fs::write(&barrier, b"").expect("open the barrier");
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let first = outs
        .iter()
        .filter(|o| stdout(o) == "first run: 1\n")
        .count();
    assert_eq!(
        first,
        1,
        "{:?}",
        outs.iter().map(stdout).collect::<Vec<_>>()
    );
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

/// A 1.1 that is healthy: `version` prints it; otherwise it creates
/// `$STARTED` and runs for 30 s.
const RUNS_LONG: &str = "#!/bin/sh\n[ \"$1\" = version ] && { echo 1.1; exit 0; }\n\
    touch \"$STARTED\"\nsleep 30\n";

#[test]
fn killing_a_healthy_builds_launcher_while_its_app_runs_is_no_failed_start() {
    let p = publish_11(&[], Some(RUNS_LONG));
    install_11(&p);
    let started = p.s.path("started");
    for _ in 0..4 {
        let _ = fs::remove_file(&started);
        let mut child =
            p.s.command(&p.exe)
                .env("STARTED", &started)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !started.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(started.exists(), "the app started");
        // The launcher notes the start right after the spawn.
        std::thread::sleep(Duration::from_millis(300));
        child.kill().expect("kill the launcher");
        child.wait().expect("wait");
    }
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    assert!(
        update_traces(&out).contains(
            &"1 start(s) of 1.1 ended unobserved (launcher killed after the app started): not counted."
                .to_owned()
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        update_traces(&out).contains(
            &"1.1 is on probation: 0 failed start(s) so far, healthy after 5000 ms.".to_owned()
        ),
        "{}",
        stderr(&out)
    );
    assert!(!rolled_back(&out), "{}", stderr(&out));
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    assert!(!p.s.cache().join(NAME).join(".rolled-back").exists());
}

#[test]
fn an_update_while_on_probation_keeps_the_last_healthy_build_to_roll_back_to() {
    let p = publish_11(&[], Some(SEGFAULTS));
    install_11(&p);
    let (v12, toml12) = pack_version(&p.s, p.server.port, "1.2", &[], |app| {
        write_file(&app.join("bin/probe"), SEGFAULTS.as_bytes(), true);
    });
    p.server
        .route(&format!("/1.2/{NAME}.bin"), Route::file(v12.clone()));
    // 1.2 is announced to every earlier version.
    p.server
        .route("/1.1/update.toml", Route::file(toml12.clone()));
    p.server.route("/1.0/update.toml", Route::file(toml12));
    let_time_pass(&p.s.cache());
    // 1.1 fails its first start, and its updater installs 1.2.
    let out = p.run(&["version"]);
    assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), v12);
    assert_eq!(
        fs::read(previous(&p)).expect("a previous build"),
        p.v10,
        "the unproven 1.1 never replaces the healthy 1.0 as the previous build"
    );
    for _ in 0..3 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10, "rolled back to 1.0");
    let_time_pass(&p.s.cache());
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Not installing 1.2: rolled back from it")),
        "{}",
        stderr(&out)
    );
    assert!(records(&p).is_empty(), "{:?}", records(&p));
}

/// A 1.1 that reads a line, prints it, and dies of SIGSEGV.
const READS_THEN_SEGFAULTS: &str =
    "#!/bin/sh\nread line\necho \"1.1 read: $line\"\nkill -SEGV $$\n";

#[test]
fn a_rollback_decided_at_the_apps_exit_does_not_run_the_command_again() {
    use std::io::Write;
    let p = publish_11(&["--rollback-after", "1"], Some(READS_THEN_SEGFAULTS));
    install_11(&p);
    let mut child =
        p.s.command(&p.exe)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"first\nsecond\n").expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(rolled_back(&out), "{}", stderr(&out));
    assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1.1 read: first\n");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);
}

#[test]
fn a_rollback_decided_before_the_app_ran_runs_the_restored_build_at_once() {
    // The entry's interpreter is missing: the launcher cannot execute it.
    let p = publish_11(&[], Some("#!/nonexistent/sh\n"));
    install_11(&p);
    for start in 1..=2 {
        let out = p.run(&["version"]);
        assert!(!out.status.success(), "{}", stderr(&out));
        assert!(
            update_traces(&out)
                .iter()
                .any(|t| t.starts_with(&format!("Failed start {start} of 1.1 (cannot start"))),
            "{}",
            stderr(&out)
        );
    }
    let out = p.run(&["env", "ONEFILE_ROLLED_BACK_FROM"]);
    assert!(rolled_back(&out), "{}", stderr(&out));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ONEFILE_ROLLED_BACK_FROM=1.1\n");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10);
    // Only that launch: the next is told nothing.
    let out = p.run(&["env", "ONEFILE_ROLLED_BACK_FROM"]);
    assert_eq!(stdout(&out), "ONEFILE_ROLLED_BACK_FROM unset\n");
}

#[test]
fn what_killed_launches_and_vanished_builds_leave_is_removed() {
    let p = publish_11(&[], None);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    let folder = p.s.cache().join(NAME);
    let dead = {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    };
    let live = std::process::id();
    let abandoned = folder.join(".probation-1-2");
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(31 * 24 * 3600);
    for name in [".probation-1-2", ".probation-1-2.lock", ".probation-3-4"] {
        fs::write(folder.join(name), b"").expect("write");
    }
    for name in [".probation-1-2", ".probation-1-2.lock"] {
        let file = fs::File::options()
            .write(true)
            .open(folder.join(name))
            .expect("open");
        file.set_modified(month_ago).expect("age it");
    }
    let dead_health = format!(".health-{dead}-00000000000000ab");
    let live_health = format!(".health-{live}-00000000000000cd");
    fs::write(folder.join(&dead_health), b"").expect("write");
    fs::write(folder.join(&live_health), b"").expect("write");
    let out =
        p.s.command(&p.exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    assert!(!abandoned.exists(), "{}", stderr(&out));
    assert!(!folder.join(".probation-1-2.lock").exists());
    assert!(!folder.join(&dead_health).exists());
    // A record in use recently, and the health file of a live launcher,
    // stay.
    assert!(folder.join(".probation-3-4").exists());
    assert!(folder.join(&live_health).exists());
}
