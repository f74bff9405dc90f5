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
