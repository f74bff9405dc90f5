//! A build's mirrors: a dead one, one that answers 404 and one that serves
//! other bytes each hand over to the next, and a download cut short on one
//! mirror resumes on the next from where it stopped.

use std::fs;
use std::time::Duration;

use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, payload_offset, publish};

/// Announces 1.1 where 1.0 looks, at `url` first and then at `mirrors`.
fn announce_at(p: &Published, url: &str, mirrors: &[String]) {
    let text = String::from_utf8(p.toml11.clone()).expect("utf8");
    let url_line = text
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("url line");
    let quoted: Vec<String> = mirrors.iter().map(|m| format!("\"{m}\"")).collect();
    let text = format!("mirrors = [{}]\n", quoted.join(", "))
        + &text.replace(url_line, &format!("url = \"{url}\""));
    p.server
        .route("/1.0/update.toml", Route::file(text.into_bytes()));
}

fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/{NAME}.bin")
}

#[test]
fn a_dead_a_missing_and_a_wrong_mirror_hand_over_to_the_next() {
    let p = publish(&[]);
    let wrong: Vec<u8> = p.v11.iter().map(|b| b ^ 0x5a).collect();
    p.server.route("/wrong/app.bin", Route::file(wrong));
    p.server.route("/good/app.bin", Route::file(p.v11.clone()));
    let mirrors = [
        p.server.url("/missing/app.bin"),
        p.server.url("/wrong/app.bin"),
        p.server.url("/good/app.bin"),
    ];
    announce_at(&p, &dead_url(), &mirrors);
    // The app runs until the update is ready: nothing is handed off at
    // its exit (and asked again), which the exact counts below would show.
    let out = run_until_ready(&p.s, &p.exe);
    let traces = update_traces(&out);
    for (i, mirror) in mirrors.iter().enumerate() {
        let want = format!("Mirror {} of 4: '{mirror}'.", i + 2);
        assert!(traces.contains(&want), "no {want:?}: {traces:#?}");
    }
    for failed in [
        "Mirror 1 of 4 failed: Cannot fetch",
        "Mirror 2 of 4 failed: Cannot fetch",
        "Mirror 3 of 4 failed: ",
    ] {
        assert!(
            traces.iter().any(|t| t.starts_with(failed)),
            "no {failed:?}: {traces:#?}"
        );
    }
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    p.assert_clean(false);
    // Each mirror was asked in this one check, none twice for the build;
    // the missing one only for the build's end, whose 404 moved on.
    let asked = |path: &str| {
        p.server
            .requests()
            .iter()
            .filter(|r| r.path == path && !r.is_tail())
            .count()
    };
    assert_eq!(asked("/missing/app.bin"), 0);
    assert_eq!(asked("/wrong/app.bin"), 1);
    assert_eq!(asked("/good/app.bin"), 1);
}

#[test]
fn a_download_cut_on_one_mirror_resumes_on_the_next() {
    let p = publish(&[]);
    // Halfway into the payload: past the stub, which an incremental update
    // would copy from the running build and fetch nothing of.
    let start = payload_offset(&p.v11);
    let half = start + (p.v11.len() - start) / 2;
    p.server.route(
        "/a/app.bin",
        Route::CutShort {
            body: p.v11.clone(),
            etag: Some("\"from-a\"".into()),
            send: half,
        },
    );
    p.server.route(
        "/b/app.bin",
        Route::File {
            body: p.v11.clone(),
            etag: Some("\"from-b\"".into()),
            ranges: true,
        },
    );
    announce_at(
        &p,
        &p.server.url("/a/app.bin"),
        &[p.server.url("/b/app.bin")],
    );
    // The app runs until the update is ready: nothing is handed off at
    // its exit (and asked again), which the exact counts below would show.
    let out = run_until_ready(&p.s, &p.exe);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Mirror 1 of 2 failed: ") && t.contains("kept for resuming")),
        "{traces:#?}"
    );
    let resumed_at: u64 = traces
        .iter()
        .find_map(|t| {
            t.strip_prefix("Resuming download at byte ")
                .or_else(|| t.strip_prefix("Resuming the incremental update at byte "))
        })
        .and_then(|t| t.strip_suffix('.')?.parse().ok())
        .unwrap_or_else(|| panic!("not resumed: {traces:#?}"));
    assert!(resumed_at > 0 && resumed_at <= half as u64, "{resumed_at}");
    // Asked without A's If-Range, B answered with the rest, not the whole.
    assert!(
        !traces
            .iter()
            .any(|t| t.starts_with("The server sent the whole file")),
        "{traces:#?}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    // Mirror B was only asked for what A had not sent: every request for
    // the build had a Range past 0.
    let from_b: Vec<_> = p
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/b/app.bin" && !r.is_tail())
        .collect();
    assert!(!from_b.is_empty());
    for request in &from_b {
        let start: u64 = request
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next()?.parse().ok())
            .unwrap_or_else(|| panic!("a request without a range: {request:?}"));
        assert!(start > 0, "{request:?}");
    }
}

/// `p`'s 1.1 served at `path`, with ranges and an ETag.
fn serve_11(p: &Published, path: &str) -> String {
    p.server.route(
        path,
        Route::File {
            body: p.v11.clone(),
            etag: Some("\"b11\"".into()),
            ranges: true,
        },
    );
    p.server.url(path)
}

/// Requests for `path` the server saw: (ends of the build, the rest).
fn asked(p: &Published, path: &str) -> (usize, usize) {
    let requests = p.server.requests();
    let of = requests.iter().filter(|r| r.path == path);
    (
        of.clone().filter(|r| r.is_tail()).count(),
        of.filter(|r| !r.is_tail()).count(),
    )
}

#[test]
fn a_stalled_mirror_does_not_keep_later_launches_from_the_next() {
    let p = publish(&["--update-exit-wait", "0.5"]);
    p.server.route("/stall/app.bin", Route::Stall);
    let good = serve_11(&p, "/good/app.bin");
    announce_at(&p, &p.server.url("/stall/app.bin"), &[good]);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Still busy ")),
        "{}",
        stderr(&out)
    );
    // The background updater the launcher handed over to starts at the
    // mirror after the one that stalled.
    assert!(background_updater(&out).is_some(), "{}", stderr(&out));
    wait_for_background_updater(&out, Duration::from_secs(60));
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    assert_eq!(asked(&p, "/stall/app.bin"), (1, 0));
}

#[test]
fn a_network_failure_on_the_build_s_end_moves_on_to_the_next_mirror_at_once() {
    // A mirror that hangs up (as a stalled one does after its timeout):
    // asked once, not again for the whole build.
    let p = publish(&[]);
    p.server.route("/hangup/app.bin", Route::Hangup);
    let good = serve_11(&p, "/good/app.bin");
    announce_at(&p, &p.server.url("/hangup/app.bin"), &[good]);
    // All of it in the launcher (a background updater starts over at the
    // mirror after the one under way).
    let out = run_until_ready(&p.s, &p.exe);
    let traces = update_traces(&out);
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(asked(&p, "/hangup/app.bin"), (1, 0));
}

#[test]
fn a_mirror_named_twice_is_asked_once() {
    let p = publish(&[]);
    let missing = p.server.url("/missing/app.bin");
    let good = serve_11(&p, "/good/app.bin");
    let mut mirrors = vec![missing.clone(); 6];
    mirrors.push(good);
    announce_at(&p, &missing, &mirrors);
    // All of it in the launcher (a background updater starts over at the
    // mirror after the one under way).
    let out = run_until_ready(&p.s, &p.exe);
    let traces = update_traces(&out);
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert!(
        traces.iter().any(|t| t.starts_with("Mirror 2 of 2: ")),
        "{traces:#?}"
    );
    let (tails, rest) = asked(&p, "/missing/app.bin");
    assert_eq!((tails, rest), (1, 0), "asked once, its end only");
}

#[test]
fn a_release_wrong_on_every_mirror_is_downloaded_once_then_held_back() {
    let p = publish(&[]);
    let a = serve_11(&p, "/a/app.bin");
    let b = serve_11(&p, "/b/app.bin");
    // The manifest announces a CRC-32 the build does not have.
    let text = String::from_utf8(p.toml11.clone()).expect("utf8");
    let crc_line = text
        .lines()
        .find(|l| l.starts_with("crc32"))
        .expect("crc32 line");
    let url_line = text
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("url line");
    let text = format!("mirrors = [\"{b}\"]\n")
        + &text
            .replace(crc_line, "crc32 = 12345")
            .replace(url_line, &format!("url = \"{a}\""));
    p.server
        .route("/1.0/update.toml", Route::file(text.into_bytes()));
    // The app runs until the update is ready: nothing is handed off at
    // its exit (and asked again), which the exact counts below would show.
    let out = run_until_ready(&p.s, &p.exe);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("failed verification on every mirror")),
        "{traces:#?}"
    );
    assert!(
        traces
            .iter()
            .any(|t| t.contains("serves the same build that failed verification")),
        "{traces:#?}"
    );
    // Mirror B serves the same end as A: its build is not downloaded.
    assert_eq!(asked(&p, "/b/app.bin").1, 0);
    let from_a = asked(&p, "/a/app.bin").1;
    // The next launches check, but download nothing of it.
    let before = p.server.requests().len();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let after: Vec<_> = p.server.requests().into_iter().skip(before).collect();
    assert!(
        after.iter().all(|r| r.path == "/1.0/update.toml"),
        "{after:#?}"
    );
    assert_eq!(asked(&p, "/a/app.bin").1, from_a);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("not downloaded again for")),
        "{}",
        stderr(&out)
    );
}
