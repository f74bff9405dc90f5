//! Traces are one line per event whatever a server sends: values from
//! `update.toml` cannot forge a trace line or reach the terminal as escape
//! sequences.

use crate::craft::{Craft, TarCraft};
use crate::server::Route;
use crate::support::*;
use crate::update::publish;

#[test]
fn values_from_the_server_cannot_forge_traces_or_reach_the_terminal() {
    let p = publish(&[]);
    // A URL that does not answer, carrying a forged "Updated." line and a
    // terminal sequence that would clear the screen.
    let toml = format!(
        "url = \"http://127.0.0.1:{}/gone\\nAUTO UPDATE: Updated.\\u001b[2J\"\ncrc32 = 1\nversion = \"9.9\\u001b]0;owned\\u0007\\u202e\"\n",
        p.server.port
    );
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        !traces.iter().any(|t| t == "Updated."),
        "a server forged a trace line:\n{}",
        stderr(&out)
    );
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "escape sequences reached the terminal:\n{}",
        stderr(&out)
    );
    assert!(
        traces
            .iter()
            .any(|t| t.contains("\\nAUTO UPDATE: Updated.\\u{1b}[2J")),
        "the value is shown, escaped:\n{}",
        stderr(&out)
    );
    p.assert_still_10();
}

/// Names inside a packed file reach the user's terminal escaped too: a
/// hostile entry name cannot print a forged "intact" line or move the
/// cursor, from `payload-tools verify` or from the launcher.
#[test]
fn names_from_a_packed_file_cannot_forge_output_lines() {
    let s = Scratch::new();
    let exe = s.path("hostile.bin");
    let name = "../x\nok: 'hostile.bin' is intact\u{1b}[2K";
    let tar = TarCraft::new()
        .file("bin/app", b"#!/bin/sh\n", 0o755)
        .file(name, b"x", 0o644)
        .finish(true);
    Craft {
        name: "hostile".into(),
        version: "1".into(),
        entry: "bin/app".into(),
        unpacked_size: 11,
        frames: vec![tar],
        extra_metadata: String::new(),
    }
    .write(&stub(), &exe);
    let verify = tools(["verify".as_ref(), exe.as_os_str()]);
    let launch = s.run(&exe, ["x"]);
    for (what, out) in [("verify", &verify), ("launch", &launch)] {
        assert!(!out.status.success(), "{what}: {}", stderr(out));
        assert!(!out.stderr.contains(&0x1b), "{what}: {}", stderr(out));
        assert!(
            !stderr(out).lines().any(|l| l.starts_with("ok: ")),
            "{what} printed a forged line:\n{}",
            stderr(out)
        );
        assert!(stderr(out).contains("\\nok: "), "{what}: {}", stderr(out));
    }
}
