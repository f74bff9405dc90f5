//! The new build's cache folder prepared by the update sidecar while the
//! app still runs, on Windows: the first start after an update is warm and
//! runs the new build.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support;
use crate::update::publish;

#[test]
fn the_first_start_after_an_update_is_warm() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    // An app that runs until its stdin closes: closed once the sidecar
    // says the new build is prepared (or that it will not be).
    let mut child =
        p.s.command(&p.exe)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the packed executable");
    let mut stdin = child.stdin.take();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().expect("piped stderr")).lines() {
        let line = line.expect("read stderr");
        let done = ["AUTO UPDATE: Prepared '", "AUTO UPDATE: Cannot prepare"]
            .iter()
            .any(|t| line.starts_with(t))
            || (line == "AUTO UPDATE: May not yet update."
                && !seen.contains("AUTO UPDATE: Preparing '"));
        seen.push_str(&line);
        seen.push('\n');
        if done {
            stdin = None;
        }
    }
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "{seen}");
    assert!(seen.contains("AUTO UPDATE: Updated."), "{seen}");

    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.1\n", "{}", support::stderr(&out));
    let launch = support::launch_traces(&out);
    assert!(
        !launch.iter().any(|t| t.starts_with("Cold start")),
        "{launch:#?}"
    );
    assert!(
        launch.iter().any(|t| t == "Warm start: already unpacked."),
        "{launch:#?}"
    );
    assert!(seen.contains("AUTO UPDATE: Prepared '"), "{seen}");
}
