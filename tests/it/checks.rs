//! What a check for updates costs: a conditional GET answered 304 by nginx
//! and by Python's http.server, no request at all between checks (the
//! interval, `Retry-After`, the backoff after failures, and a clock that
//! moved back), the User-Agent a host's logs show, and the fallback
//! locations of `update.toml`.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::nginx::Nginx;
use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, publish};

const NOT_MODIFIED: &str = "update.toml not modified since the last check.";

/// Packs 1.0 and 1.1 into `site/<version>/`, each announcing itself in its
/// `update.toml`, 1.0's update URL under `base`; returns both builds.
fn pack_site(s: &Scratch, base: &str, extra: &[&str]) -> [Vec<u8>; 2] {
    let spec = format!("{base}/{{VERSION}}/update.toml");
    ["1.0", "1.1"].map(|version| {
        let app = s.probe_app(&format!("app-{version}"), version);
        let out = s.path(&format!("site/{version}/{NAME}.bin"));
        let toml = s.path(&format!("site/{version}/update.toml"));
        let mut args = vec![
            "--name",
            NAME,
            "--version",
            version,
            "--update-url-spec",
            &spec,
            "--auto-update-toml-file",
            toml.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        pack(&app, &out, &args);
        fs::read(&out).expect("read")
    })
}

/// Publishes 1.1 where 1.0 looks, modified an hour from now: later than
/// anything before, so that its `Last-Modified` and ETag change even
/// within the second.
pub(crate) fn announce_11(site: &Path) {
    let to = site.join("1.0/update.toml");
    fs::copy(site.join("1.1/update.toml"), &to).expect("publish");
    let file = fs::File::options().write(true).open(&to).expect("open");
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .expect("set mtime");
}

#[test]
fn an_unchanged_manifest_costs_a_304_and_a_changed_one_is_installed_nginx() {
    let s = Scratch::new();
    let site = s.path("site");
    let Some(nginx) = Nginx::start(&site, &s.path("nginx")) else {
        skip("nginx is not installed (make deps installs it)");
        return;
    };
    let [v10, v11] = pack_site(&s, &nginx.url(""), &[]);
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);

    // 1.0 announces itself: nothing to do, and its validators are kept.
    let out = s.run(&exe, ["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("CRC32") && t.ends_with("matches already.")),
        "{}",
        stderr(&out)
    );
    let out = s.run(&exe, ["version"]);
    assert!(
        update_traces(&out).contains(&NOT_MODIFIED.to_owned()),
        "{}",
        stderr(&out)
    );
    let requests = nginx.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        (
            requests[1].path.as_str(),
            requests[1].status,
            requests[1].sent
        ),
        ("/1.0/update.toml", 304, 0),
        "the second check: 304, no body"
    );

    // Every request names the tool, the app and its version.
    let arch = std::env::consts::ARCH;
    for agent in nginx.user_agents() {
        let agent = agent.expect("a User-Agent");
        assert!(
            agent.starts_with("onefile/")
                && agent.ends_with(&format!(" {NAME}/1.0 (linux; {arch})")),
            "{agent}"
        );
    }

    // A changed manifest is fetched whole and installed.
    announce_11(&site);
    let out = s.run(&exe, ["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&exe).expect("read"), v11);
    let requests = nginx.requests();
    let toml_len = fs::metadata(site.join("1.0/update.toml"))
        .expect("stat")
        .len();
    assert_eq!(
        (
            requests[2].path.as_str(),
            requests[2].status,
            requests[2].sent
        ),
        ("/1.0/update.toml", 200, toml_len),
        "{requests:#?}"
    );
}

/// Python's http.server on a free port of 127.0.0.1, serving `root`:
/// `Last-Modified` and `If-Modified-Since`, no ETag, no ranges.
pub(crate) struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start(root: &Path) -> Option<PythonServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        PythonServer::start_at(root, port)
    }

    /// Serves `root` on `port` of 127.0.0.1; `None` if it cannot.
    pub(crate) fn start_at(root: &Path, port: u16) -> Option<PythonServer> {
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PythonServer { child, port })
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_unchanged_manifest_costs_a_304_python_http_server() {
    let s = Scratch::new();
    let site = s.path("site");
    fs::create_dir_all(&site).expect("site");
    let Some(python) = PythonServer::start(&site) else {
        skip("python3 -m http.server does not start here");
        return;
    };
    let [v10, v11] = pack_site(&s, &format!("http://127.0.0.1:{}", python.port), &[]);
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);
    let out = s.run(&exe, ["version"]);
    assert!(!update_traces(&out).contains(&NOT_MODIFIED.to_owned()));
    let record = check_record(&s.cache(), NAME).expect("a check record");
    assert!(record.contains(" GMT\n"), "Last-Modified kept: {record}");
    let out = s.run(&exe, ["version"]);
    assert!(
        update_traces(&out).contains(&NOT_MODIFIED.to_owned()),
        "{}",
        stderr(&out)
    );
    announce_11(&site);
    let out = s.run(&exe, ["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&exe).expect("read"), v11);
}

/// The number of requests for 1.0's `update.toml` the server saw.
fn manifest_requests(p: &crate::update::Published) -> usize {
    p.server
        .requests()
        .iter()
        .filter(|r| r.path == "/1.0/update.toml")
        .count()
}

/// The record's lines (see `bootstrap/src/update/schedule.rs`).
fn record_lines(s: &Scratch) -> Vec<String> {
    check_record(&s.cache(), NAME)
        .expect("a check record")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn between_checks_no_request_at_all_unless_the_clock_moved_back() {
    let p = publish(&["--update-check-interval", "1h"]);
    // The checking runs' apps run until the update is ready: nothing is
    // handed off at their exit (and asked again), which the exact counts
    // would show.
    run_until_ready(&p.s, &p.exe);
    assert_eq!(manifest_requests(&p), 1);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(manifest_requests(&p), 1, "no request within the hour");
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Checked ") && t.contains(" s ago; the next check is due in ")),
        "{traces:#?}"
    );
    // The record says the last check is an hour in the future: the clock
    // moved back since, and a check is due.
    let mut lines = record_lines(&p.s);
    let checked: u64 = lines[2].parse().expect("checked_at");
    lines[2] = (checked + 3600).to_string();
    lines[3] = (checked + 7200).to_string();
    let path = p.s.cache().join(NAME).join(".update-check");
    fs::write(&path, lines.join("\n") + "\n").expect("rewrite the record");
    p.announce_11();
    let out = run_until_ready(&p.s, &p.exe);
    assert_updated(&out);
    assert_eq!(manifest_requests(&p), 2);
}

#[test]
fn retry_after_on_a_503_sets_the_next_check() {
    let p = publish(&[]);
    p.server.route(
        "/1.0/update.toml",
        Route::StatusWith {
            status: 503,
            headers: vec![("Retry-After", "600".to_owned())],
        },
    );
    // The checking runs' apps run until the update is ready: nothing is
    // handed off at their exit (and asked again), which the exact counts
    // would show.
    let out = run_until_ready(&p.s, &p.exe);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("HTTP status 503")),
        "{}",
        stderr(&out)
    );
    let lines = record_lines(&p.s);
    let (checked, due): (u64, u64) = (lines[2].parse().expect("n"), lines[3].parse().expect("n"));
    // What the server asked, and up to a quarter more: a fleet told the
    // same does not come back in the same second.
    assert!((600..=750).contains(&(due - checked)), "{lines:#?}");
    p.announce_11();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(manifest_requests(&p), 1, "no request within the window");
    let_time_pass(&p.s.cache());
    let out = run_until_ready(&p.s, &p.exe);
    assert_updated(&out);
    assert_eq!(manifest_requests(&p), 2);
}

#[test]
fn retry_after_never_shortens_the_backoff_and_failures_keep_the_validators() {
    let p = publish(&[]);
    let manifest = Route::File {
        body: p.toml10.clone(),
        etag: Some("\"v1\"".into()),
        ranges: false,
    };
    let now_ish = "Sun, 06 Nov 1994 08:49:37 GMT".to_owned();
    p.server.route(
        "/1.0/update.toml",
        Route::Sequence(vec![
            manifest,
            Route::StatusWith {
                status: 503,
                headers: vec![("Retry-After", "0".to_owned())],
            },
            Route::StatusWith {
                status: 429,
                headers: vec![("Retry-After", now_ish)],
            },
            Route::StatusWith {
                status: 304,
                headers: vec![("ETag", "\"v1\"".to_owned())],
            },
        ]),
    );
    // Settled: the validators are kept.
    p.run(&["version"]);
    for n in 1..=2 {
        let_time_pass(&p.s.cache());
        let out = p.run(&["version"]);
        assert!(
            update_traces(&out)
                .iter()
                .any(|t| t.starts_with(&format!("Check failed ({n} in a row)"))),
            "{}",
            stderr(&out)
        );
        // "Retry at once" or a date past: the backoff all the same.
        let lines = record_lines(&p.s);
        let (checked, due): (u64, u64) =
            (lines[2].parse().expect("n"), lines[3].parse().expect("n"));
        assert!(due - checked >= 30, "{lines:#?}");
    }
    // The host is back: asked conditionally, as before it failed.
    let_time_pass(&p.s.cache());
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out).contains(&NOT_MODIFIED.to_owned()),
        "{}",
        stderr(&out)
    );
    let last = p.server.requests().pop().expect("a request");
    assert_eq!(last.if_none_match.as_deref(), Some("\"v1\""), "{last:?}");
}

/// The manifest `toml` with a top-level `expires` this far from now.
fn expiring(toml: &[u8], in_s: i64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let at = payload_tools::manifest::datetime_from_unix(now + in_s);
    let mut text = format!("expires = {at}\n").into_bytes();
    text.extend_from_slice(toml);
    text
}

#[test]
fn a_304_never_keeps_an_install_on_a_manifest_about_to_expire() {
    // A host (or a CDN, or a fallback) that answers 304 to whatever it is
    // asked: the install must still notice that the manifest it settled on
    // expires, rather than hear "not modified" forever.
    let p = publish(&[]);
    let not_modified = Route::StatusWith {
        status: 304,
        headers: vec![("ETag", "\"v1\"".to_owned())],
    };
    p.server.route(
        "/1.0/update.toml",
        Route::Sequence(vec![
            Route::File {
                // Trusted now, but expiring within the hour.
                body: expiring(&p.toml10, 50 * 60),
                etag: Some("\"v1\"".into()),
                ranges: false,
            },
            not_modified,
        ]),
    );
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("CRC32") && t.ends_with("matches already.")),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(!traces.contains(&NOT_MODIFIED.to_owned()), "{traces:#?}");
    let last = p.server.requests().pop().expect("a request");
    assert_eq!(last.if_none_match, None, "{last:?}");
}

#[test]
fn validators_older_than_a_day_are_not_sent() {
    // nginx's ETag is the mtime's second and the size: a manifest changed
    // within the same second to the same size keeps it. It is fetched
    // whole at least once a day all the same.
    let p = publish(&[]);
    p.server.route(
        "/1.0/update.toml",
        Route::File {
            body: p.toml10.clone(),
            etag: Some("\"v1\"".into()),
            ranges: false,
        },
    );
    p.run(&["version"]);
    p.run(&["version"]);
    let second = p.server.requests().pop().expect("a request");
    assert_eq!(second.if_none_match.as_deref(), Some("\"v1\""));
    // The validators were stored a day ago (line 10: when).
    let mut lines = record_lines(&p.s);
    let stored: u64 = lines[10].parse().expect("settled_at");
    lines[10] = (stored - 24 * 3600).to_string();
    let path = p.s.cache().join(NAME).join(".update-check");
    fs::write(&path, lines.join("\n") + "\n").expect("rewrite the record");
    p.run(&["version"]);
    let third = p.server.requests().pop().expect("a request");
    assert_eq!(third.if_none_match, None, "{third:?}");
}

#[test]
fn a_manifest_that_led_to_a_failed_update_is_fetched_whole_next_time() {
    let p = publish(&[]);
    p.server.route(
        "/1.0/update.toml",
        Route::File {
            body: p.toml11.clone(),
            etag: Some("\"v2\"".into()),
            ranges: false,
        },
    );
    p.server
        .route(&format!("/1.1/{NAME}.bin"), Route::Status(404));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("HTTP status 404")),
        "{}",
        stderr(&out)
    );
    p.run(&["version"]);
    let asked: Vec<_> = p
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/1.0/update.toml")
        .collect();
    assert_eq!(asked.len(), 2, "a failed download does not back off");
    assert_eq!(asked[1].if_none_match, None, "{asked:?}");
}

#[test]
fn an_interrupted_download_resumes_at_the_next_launch_whatever_the_interval() {
    let p = publish(&["--update-check-interval", "1h"]);
    p.announce_11();
    let etag = Some("\"b11\"".to_owned());
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::CutShort {
            body: p.v11.clone(),
            etag: etag.clone(),
            send: p.v11.len() / 2,
        },
    );
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("kept for resuming")),
        "{}",
        stderr(&out)
    );
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::File {
            body: p.v11.clone(),
            etag,
            ranges: true,
        },
    );
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    // Concluded: now the interval holds.
    let lines = record_lines(&p.s);
    let (checked, due): (u64, u64) = (lines[2].parse().expect("n"), lines[3].parse().expect("n"));
    assert_eq!(due - checked, 3600, "{lines:#?}");
}

#[test]
fn a_stalled_first_location_does_not_keep_later_launches_from_the_next() {
    let p = publish(&[]);
    p.server.route("/stall/1.0/update.toml", Route::Stall);
    p.server
        .route("/fallback/1.0/update.toml", Route::file(p.toml11.clone()));
    let stalled = p.server.url("/stall/{VERSION}/update.toml");
    let good = p.server.url("/fallback/{VERSION}/update.toml");
    p.repack_10(&[&stalled, &good], &["--update-exit-wait", "0.5"]);
    let started = Instant::now();
    let out = p.s.run_leaving_background(&p.exe, ["version"]);
    // The exit waits for the check no longer than the build says.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Still busy ")),
        "{}",
        stderr(&out)
    );
    // The background updater it handed over to asks the next location
    // first, and installs what it announces.
    assert!(background_updater(&out).is_some(), "{}", stderr(&out));
    wait_for_background_updater(&out, Duration::from_secs(60));
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    let asked = |path: &str| {
        p.server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    assert_eq!(asked("/fallback/1.0/update.toml"), 1);
    assert_eq!(asked("/stall/1.0/update.toml"), 1);
    // Had that launch come more than a minute later, the unfinished check
    // would have counted as a failed one, and backed off.
}

#[test]
fn impossible_check_settings_are_refused_when_packing() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let spec = "https://example.org/{VERSION}/update.toml";
    let long_spec = format!(
        "https://example.org/{}/{{VERSION}}/update.toml",
        "a".repeat(4200)
    );
    for (args, message) in [
        (
            vec!["--update-url-spec", spec, "--update-check-interval", "31d"],
            "--update-check-interval is longer than 30 days",
        ),
        (
            vec![
                "--update-url-spec",
                spec,
                "--update-check-interval",
                "18446744073709551615s",
            ],
            "--update-check-interval",
        ),
        (
            vec!["--update-check-interval", "1h"],
            "--update-check-interval needs --update-url-spec",
        ),
        (
            vec!["--update-url-spec", &long_spec],
            "--update-url-spec is longer than 2048 bytes",
        ),
        (
            vec!["--update-url-spec", spec, "--update-url-spec", spec],
            "is given twice",
        ),
    ] {
        let out_path = s.path("app.bin");
        let stub_path = stub();
        let mut argv: Vec<&std::ffi::OsStr> = vec![
            "pack".as_ref(),
            app.as_os_str(),
            "-o".as_ref(),
            out_path.as_os_str(),
            "--stub".as_ref(),
            stub_path.as_os_str(),
            "--entry".as_ref(),
            "bin/probe".as_ref(),
            "--name".as_ref(),
            NAME.as_ref(),
        ];
        argv.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        let out = tools(argv);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_failing_check_backs_off() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Status(500));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Check failed (1 in a row); the next check is due in ")),
        "{}",
        stderr(&out)
    );
    let lines = record_lines(&p.s);
    let (checked, due): (u64, u64) = (lines[2].parse().expect("n"), lines[3].parse().expect("n"));
    // Failure 1 waits U(0.5, 1) x 60 s.
    assert!((30..=60).contains(&(due - checked)), "{lines:#?}");
    assert_eq!(lines[4], "1", "one failure: {lines:#?}");
    p.announce_11();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(manifest_requests(&p), 1, "no request while backing off");
    // A body that is not a manifest is a failed check too, the second.
    let_time_pass(&p.s.cache());
    p.server.route(
        "/1.0/update.toml",
        Route::file(b"<html>down</html>".to_vec()),
    );
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Check failed (2 in a row)")),
        "{}",
        stderr(&out)
    );
    let lines = record_lines(&p.s);
    let (checked, due): (u64, u64) = (lines[2].parse().expect("n"), lines[3].parse().expect("n"));
    assert!((60..=120).contains(&(due - checked)), "{lines:#?}");
    // A check that works clears the failures.
    let_time_pass(&p.s.cache());
    p.announce_11();
    let out = p.run(&["version"]);
    assert_updated(&out);
}

#[test]
fn a_dead_first_location_falls_back_to_the_next() {
    let p = publish(&[]);
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead = format!("http://127.0.0.1:{dead_port}/{{VERSION}}/update.toml");
    let second = p.server.url("/fallback/{VERSION}/update.toml");
    p.repack_10(&[&dead, &second], &[]);
    let meta = inspect(&p.exe);
    assert_eq!(meta["update"]["fallback_url_specs"][0], second.as_str());
    p.server
        .route("/fallback/1.0/update.toml", Route::file(p.toml11.clone()));
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces.contains(&format!(
            "Location 2 of 2: '{}'.",
            p.server.url("/fallback/1.0/update.toml")
        )),
        "{traces:#?}"
    );
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}

#[test]
fn every_fallback_location_is_checked_when_packing() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        s.path("app.bin").as_os_str(),
        "--stub".as_ref(),
        stub().as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
        "--name".as_ref(),
        NAME.as_ref(),
        "--update-url-spec".as_ref(),
        "https://example.org/{VERSION}/update.toml".as_ref(),
        "--update-url-spec".as_ref(),
        "http://example.org/{VERSION}/update.toml".as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("--update-url-spec 'http://example.org/{VERSION}/update.toml' cannot work"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_request_names_the_app_and_its_version_in_its_user_agent() {
    let p = publish(&[]);
    p.announce_11();
    let out = p.run(&["version"]);
    assert_updated(&out);
    let requests = p.server.requests();
    // The manifest, the build's end, and the build.
    assert!(requests.len() >= 3, "{requests:#?}");
    let tail = format!(" {NAME}/1.0 (linux; {})", std::env::consts::ARCH);
    for request in &requests {
        let agent = request.user_agent.as_deref().unwrap_or_default();
        assert!(
            agent.starts_with("onefile/") && agent.ends_with(&tail),
            "{request:?}"
        );
    }
}

#[test]
fn publish_writes_the_fallback_locations_under_the_site() {
    let s = Scratch::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let app = s.probe_app("app-1.0", "1.0");
    let build = s.path(&format!("builds/{NAME}.bin"));
    let primary = format!("http://127.0.0.1:{port}/{{VERSION}}/update.toml");
    let fallback = format!("http://127.0.0.1:{port}/fallback/{{VERSION}}/update.toml");
    let elsewhere = "https://elsewhere.example.org/{VERSION}/update.toml";
    let specs = [
        "--update-url-spec",
        &primary,
        "--update-url-spec",
        &fallback,
    ];
    let mut args = vec!["--name", NAME, "--version", "1.0"];
    args.extend_from_slice(&specs);
    args.extend_from_slice(&["--update-url-spec", elsewhere]);
    pack(&app, &build, &args);
    let site = s.path("site");
    let out = tools([
        "publish".as_ref(),
        build.as_os_str(),
        "--site".as_ref(),
        site.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = fs::read_to_string(site.join("1.0/update.toml")).expect("the first location");
    let second =
        fs::read_to_string(site.join("fallback/1.0/update.toml")).expect("the fallback location");
    assert_eq!(first, second);
    // A location on another host is that host's business.
    assert!(!site.join("elsewhere.example.org").exists());
}

#[test]
fn a_config_file_names_fallback_locations_as_a_list() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let config = s.path("onefile.toml");
    let first = "https://example.org/{VERSION}/update.toml";
    let second = "https://mirror.example.org/{VERSION}/update.toml";
    fs::write(
        &config,
        format!("update_url_spec = [\"{first}\", \"{second}\"]\nupdate_check_interval = \"1h\"\n"),
    )
    .expect("write the config");
    let out = s.path("app.bin");
    pack(
        &app,
        &out,
        &[
            "--name",
            NAME,
            "--version",
            "1.0",
            "--config",
            config.to_str().expect("utf8"),
        ],
    );
    let meta = inspect(&out);
    assert_eq!(meta["update"]["url_spec"], first);
    assert_eq!(meta["update"]["fallback_url_specs"][0], second);
    assert_eq!(meta["update"]["check_interval_s"], 3600);
}

#[test]
fn a_release_refused_by_its_end_waits_for_the_interval() {
    let p = publish(&["--update-check-interval", "1h"]);
    // Announced as 1.1, but its end says 1.0: refused before downloading.
    p.server.route(
        "/other.bin",
        Route::File {
            body: p.v10.clone(),
            etag: None,
            ranges: true,
        },
    );
    let toml = format!(
        "url = \"{}\"\ncrc32 = 1\nsize = {}\nversion = \"1.1\"\n",
        p.server.url("/other.bin"),
        p.v10.len()
    );
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("not newer than the running '1.0'")),
        "{}",
        stderr(&out)
    );
    p.run(&["version"]);
    assert_eq!(manifest_requests(&p), 1, "no request within the hour");
}
