//! The app knows about its updates, on Windows: the status file named by
//! `ONEFILE_UPDATE_STATUS` reaches `ready` through a real update (renamed
//! over while the app reads it), and restart to update starts the new
//! build once, as a child of the launcher that passes its exit code on.

use std::fs;

use crate::server::Route;
use crate::support;
use crate::update::publish;

#[test]
fn the_status_file_reaches_ready_and_is_gone_after_the_exit() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    // Slowly, so that the app sees the download.
    let build = p.bytes("1.1").to_vec();
    p.serve(
        "1.1",
        Route::Drip {
            chunk: build.len() / 10 + 1,
            body: build,
            delay_ms: 100,
        },
    );
    let record = p.s.path("seen.txt");
    let out = p.run(&["watch-status", record.to_str().expect("utf8"), "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let text = fs::read_to_string(&record).expect("the app's record");
    let seen: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let states: Vec<&str> = seen
        .iter()
        .map(|r| r["state"].as_str().expect("a state"))
        .collect();
    // `checking` may be over before the app first looks.
    assert!(
        matches!(states.first(), Some(&"checking" | &"downloading")),
        "{text}"
    );
    assert!(states.contains(&"downloading"), "{text}");
    assert_eq!(states.last(), Some(&"ready"), "{text}");
    assert_eq!(seen.last().expect("ready")["version"], "1.1");
    let sequences: Vec<u64> = seen
        .iter()
        .map(|r| r["sequence"].as_u64().expect("a sequence"))
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    // Removed by the launcher itself, before any later start could.
    let left: Vec<String> = fs::read_dir(p.s.cache().join("probeapp"))
        .expect("the app's cache folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".status-"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    p.assert_later_start_runs("1.1");
}

#[test]
fn an_app_holding_the_file_open_never_holds_the_update() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    // Opened without FILE_SHARE_DELETE from the app's start on: no state
    // can replace it while the app runs.
    let out = p.run(&["hold-status", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let traces = support::launch_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Cannot replace the status file")),
        "{traces:#?}"
    );
    assert!(
        traces.iter().any(|t| t == "Telling the app: ready."),
        "{traces:#?}"
    );
    p.assert_later_start_runs("1.1");
}

#[test]
fn restart_to_update_starts_the_new_build_once() {
    let p = publish(&["1.0", "1.1"], &["--restart-exit-code", "75"]);
    p.announce("1.0", "1.1");
    let log = p.s.path("starts.log");
    let out =
        p.s.command(&p.exe)
            .args(["log-exit", log.to_str().expect("utf8"), "75", "0"])
            .env("PROBE_MARK", "kept")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let text = fs::read_to_string(&log).expect("the app's log");
    let starts: Vec<&str> = text.lines().collect();
    assert_eq!(starts.len(), 2, "{text}");
    assert!(
        starts[0].starts_with("version=1.0 restarted=unset mark=kept status=set cwd="),
        "{text}"
    );
    // The same arguments and environment, on the new build, marked
    // (`argv[0]` is the entry's path on Windows: each build has its own).
    assert!(
        starts[1].starts_with("version=1.1 restarted=1 mark=kept status=set cwd="),
        "{text}"
    );
    let cwd = |start: &str| {
        let after = start
            .split_once(" cwd=")
            .map(|(_, rest)| rest)
            .unwrap_or("");
        after.split_once(" args=").map(|(cwd, _)| cwd.to_owned())
    };
    assert_eq!(cwd(starts[0]), cwd(starts[1]), "{text}");
    let arguments = format!(" log-exit {} 75 0", log.display());
    assert!(
        starts.iter().all(|start| start.ends_with(&arguments)),
        "{text}"
    );
    // A packed app started by a restarted app inherits
    // ONEFILE_RESTARTED=1: it is no restart (the marker names no parent
    // launcher), so it restarts on its own code, once; asked again by the
    // restarted app, the launcher exits with the code.
    fs::remove_file(&log).expect("remove the log");
    let out =
        p.s.command(&p.exe)
            .args(["log-exit", log.to_str().expect("utf8"), "75"])
            .env("ONEFILE_RESTARTED", "1")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(75), "{}", support::stderr(&out));
    let text = fs::read_to_string(&log).expect("the app's log");
    let starts: Vec<&str> = text.lines().collect();
    assert_eq!(starts.len(), 2, "{text}");
    assert!(starts[0].contains(" restarted=unset "), "{text}");
    assert!(starts[1].contains(" restarted=1 "), "{text}");
}

#[test]
fn a_restart_never_runs_beside_a_busy_updater() {
    // The check stalls past the exit wait: restarting now would leave that
    // updater, holding the update lock, in the waiting parent. The
    // launcher exits with the code instead.
    let p = publish(
        &["1.0", "1.1"],
        &["--restart-exit-code", "75", "--update-exit-wait", "1"],
    );
    p.server.route("/1.0/update.toml", Route::Stall);
    let log = p.s.path("starts.log");
    let out =
        p.s.command(&p.exe)
            .args(["log-exit", log.to_str().expect("utf8"), "75", "0"])
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(75), "{}", support::stderr(&out));
    let text = fs::read_to_string(&log).expect("the app's log");
    assert_eq!(text.lines().count(), 1, "{text}");
    let traces = support::launch_traces(&out);
    assert!(
        traces.iter().any(|t| t
            == "The updater is still busy: exiting with the restart code rather than restarting beside it."),
        "{traces:#?}"
    );
}
