//! The background updater on Windows: an update still under way when the
//! app exits is finished by a detached process the launcher starts, and
//! `ONEFILE_UPDATE=now` updates without running the app.

use std::time::{Duration, Instant};

use crate::support;
use crate::update::publish;

#[test]
fn an_update_completes_in_the_background_after_the_app_exits_at_once() {
    // No wait at all after the app's exit: whatever the update still has
    // to do, the background updater does.
    let p = publish(&["1.0", "1.1"], &["--update-exit-wait", "0"]);
    p.announce("1.0", "1.1");
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Started background updater ")),
        "{traces:#?}"
    );
    let started = Instant::now();
    while p.installed() != p.bytes("1.1") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not installed in the background"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p.assert_later_start_runs("1.1");
}

#[test]
fn update_now_installs_without_running_the_app() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .arg("version")
            .output()
            .expect("run");
    assert_eq!(
        support::stdout(&out),
        "probeapp: updated from 1.0 to 1.1\n",
        "{}",
        support::stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(p.installed(), p.bytes("1.1"));
}

#[test]
fn the_background_updater_holds_no_handle_of_the_launcher() {
    use std::io::Read;
    use std::process::Stdio;
    // Traces on, so the launcher keeps stderr open to its end: a pipe the
    // background updater would hold (for the 30 s of the stalled check)
    // if it inherited the launcher's handles.
    let p = publish(&["1.0", "1.1"], &[]);
    p.server
        .route("/1.0/update.toml", crate::server::Route::Stall);
    let started = Instant::now();
    let mut child =
        p.s.command(&p.exe)
            .arg("version")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).expect("read");
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let traces = reader.join().expect("reader");
    let eof = started.elapsed();
    child.wait().expect("wait");
    assert_eq!(stdout, "1.0\n", "{traces}");
    assert!(traces.contains("Started background updater "), "{traces}");
    assert!(
        eof < Duration::from_secs(15),
        "end of file after {eof:?}: {traces}"
    );
}

#[test]
fn the_launcher_ends_wherever_its_update_thread_is_when_the_app_exits() {
    // The app exits while the update thread is inside a system call: a
    // request the host never answers, a download that stopped midway, one
    // that drips. Whatever the thread is in, the launcher ends, passing on
    // the app's exit. (A launcher ending by `ExitProcess` could wait for
    // ever on the loader lock a thread inside a system library held.)
    // Each round has its own copy and cache, so that no backoff, schedule
    // or running updater of an earlier round leaves the thread idle.
    use crate::server::Route;
    use std::process::Stdio;
    let p = publish(&["1.0", "1.1"], &[]);
    let build = p.bytes("1.1").to_vec();
    let half = build.len() / 2;
    for round in 0..9 {
        let (exe, cache) = (
            p.s.path(&format!("round-{round}/app.exe")),
            p.s.path(&format!("round-{round}/cache")),
        );
        std::fs::create_dir_all(&cache).expect("mkdir");
        std::fs::write(&exe, p.bytes("1.0")).expect("copy");
        match round % 3 {
            0 => p.server.route("/1.0/update.toml", Route::Stall),
            1 => {
                p.announce("1.0", "1.1");
                p.serve(
                    "1.1",
                    Route::StallAfter {
                        body: build.clone(),
                        send: half,
                    },
                );
            }
            _ => {
                p.announce("1.0", "1.1");
                p.serve(
                    "1.1",
                    Route::Drip {
                        body: build.clone(),
                        chunk: build.len() / 20 + 1,
                        delay_ms: 100,
                    },
                );
            }
        }
        // The app ends at a different moment of the thread's work each time.
        let lives = format!("{}", [0.0, 0.05, 0.3][round / 3]);
        let mut child =
            p.s.command(&exe)
                .env("ONEFILE_CACHE_DIR", &cache)
                .args(["version", &lives])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("round {round}: the launcher still runs after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, traces) = (
            stdout.join().expect("stdout"),
            stderr.join().expect("stderr"),
        );
        assert!(status.success(), "round {round}: {status:?}: {traces}");
        // The thread was inside a network call when the app exited.
        assert!(
            traces.contains("Started background updater "),
            "round {round}: {traces}"
        );
        assert_eq!(stdout, "1.0\n", "round {round}: {traces}");
    }
}
