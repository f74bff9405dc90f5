//! Probation and rollback on Windows (issue 14): the running 1.0 that an
//! update renames aside is kept as `.app.exe.previous`; a 1.1 whose app
//! ends with an exception's NTSTATUS is rolled back to it after three
//! failed starts, and a healthy 1.1 lets it go.

use std::fs;

use crate::support;
use crate::update::publish;

/// STATUS_ACCESS_VIOLATION (0xC0000005) as the probe's `exit` takes it.
const ACCESS_VIOLATION: &str = "-1073741819";

#[test]
fn a_1_1_that_crashes_is_rolled_back_to_1_0_after_3_failed_starts() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let out = p.run(&["version", "1"]);
    assert!(
        support::update_traces(&out).iter().any(|t| t == "Updated."),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.1"));
    let previous = p.s.path("installed/.app.exe.previous");
    assert_eq!(fs::read(&previous).expect("1.0 kept"), p.bytes("1.0"));

    for start in 1..=2 {
        let out = p.run(&["exit", ACCESS_VIOLATION]);
        let failed = format!("Failed start {start} of 1.1 (exception 0xC0000005).");
        assert!(
            support::update_traces(&out).contains(&failed),
            "{}",
            support::stderr(&out)
        );
        assert_eq!(p.installed(), p.bytes("1.1"));
    }
    let out = p.run(&["exit", ACCESS_VIOLATION]);
    assert!(
        support::update_traces(&out).contains(
            &"Rolled back from 1.1 to 1.0 after 3 failed starts (last: exception 0xC0000005)."
                .to_owned()
        ),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.0"), "1.0 restored");
    // A later start runs 1.0 and removes the bad build's aside copy.
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
}

#[test]
fn a_healthy_1_1_lets_the_kept_1_0_go() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let out = p.run(&["version", "1"]);
    assert!(
        support::update_traces(&out).iter().any(|t| t == "Updated."),
        "{}",
        support::stderr(&out)
    );
    assert!(p.s.path("installed/.app.exe.previous").exists());
    let out = p.run(&["env", "ONEFILE_FIRST_RUN", "ONEFILE_PREVIOUS_VERSION"]);
    assert_eq!(
        support::stdout(&out),
        "ONEFILE_FIRST_RUN=1\nONEFILE_PREVIOUS_VERSION=1.0\n",
        "{}",
        support::stderr(&out)
    );
    assert!(
        support::update_traces(&out).contains(
            &"1.1 is healthy (it exited with code 0); the previous build (1.0) is removed."
                .to_owned()
        ),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
}

#[test]
fn an_app_that_exits_with_minus_1_is_healthy_not_crashed() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let out = p.run(&["version", "1"]);
    assert!(
        support::update_traces(&out).iter().any(|t| t == "Updated."),
        "{}",
        support::stderr(&out)
    );
    // `exit(-1)`: an ordinary failure, as on Linux (where it is 255).
    let out = p.run(&["exit", "-1"]);
    assert!(
        support::update_traces(&out).contains(
            &"1.1 is healthy (it exited with code -1); the previous build (1.0) is removed."
                .to_owned()
        ),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.1"));
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
}

#[test]
fn the_rollback_marker_is_obeyed_only_from_the_parent_launcher() {
    let p = publish(&["1.0"], &[]);
    // The launcher that rolled back runs the restored one as its child and
    // names its own pid: this test process, here.
    let ours = format!("{}:1.1", std::process::id());
    for (marker, seen) in [
        (ours.as_str(), "ONEFILE_ROLLED_BACK_FROM=1.1\n"),
        ("1.1", "ONEFILE_ROLLED_BACK_FROM unset\n"),
        ("1:1.1", "ONEFILE_ROLLED_BACK_FROM unset\n"),
    ] {
        let out =
            p.s.command(&p.exe)
                .args(["env", "ONEFILE_ROLLED_BACK_FROM"])
                .env("AUTO_UPDATE_DISABLE", "1")
                .env("ONEFILE_ROLLED_BACK_FROM", marker)
                .output()
                .expect("run");
        assert_eq!(
            support::stdout(&out),
            seen,
            "{marker}: {}",
            support::stderr(&out)
        );
    }
}
