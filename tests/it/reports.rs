//! Reports (issue 15): a real 1.0 updating to a real 1.1, a real 1.1 rolled
//! back, manifests refused and downloads failing, each reporting to a
//! second real HTTP server on loopback that records every request; the
//! report URL from `pack --report-url`, a trusted manifest's `report`, and
//! `publish --report-url`.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use minisign::{KeyPair, SecretKey};
use payload_tools::manifest::{
    Release, UpdateManifest, datetime_from_unix, manifest_trusted_comment, trusted_comment,
    with_signatures,
};

use crate::server::{Route, Server};
use crate::support::*;
use crate::update::{NAME, Published, pack_version, publish};

/// The report requests `host` received (path with query, User-Agent).
fn reports(host: &Server) -> Vec<(String, String)> {
    host.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/report"))
        .map(|r| (r.path, r.user_agent.unwrap_or_default()))
        .collect()
}

/// The report paths `host` received.
fn report_paths(host: &Server) -> Vec<String> {
    reports(host).into_iter().map(|(path, _)| path).collect()
}

/// The path of a report of `event` from `from` to `to` with `reason`.
fn report(from: &str, to: Option<&str>, event: &str, reason: Option<&str>) -> String {
    let mut path = format!("/report?app={NAME}&from={from}");
    if let Some(to) = to {
        path.push_str(&format!("&to={to}"));
    }
    path.push_str(&format!("&event={event}"));
    if let Some(reason) = reason {
        path.push_str(&format!("&reason={reason}"));
    }
    path
}

/// The updater's User-Agent for `version` of the test app.
fn user_agent_of(version: &str) -> String {
    format!(
        " {NAME}/{version} ({}; {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// 1.0 and 1.1 published, 1.0 installed, both reporting to `host`.
fn publish_reporting(host: &Server, extra: &[&str]) -> Published {
    let url = host.url("/report");
    let mut args = vec!["--report-url", url.as_str()];
    args.extend_from_slice(extra);
    publish(&args)
}

#[test]
fn an_update_from_1_0_to_1_1_sends_exactly_one_updated_report() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    let out = launch(&p);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(reports(&host).is_empty(), "up to date: no report");

    p.announce_11();
    let out = update_now(&p);
    let sent = reports(&host);
    assert_eq!(
        sent.iter()
            .map(|(path, _)| path.clone())
            .collect::<Vec<_>>(),
        [report("1.0", Some("1.1"), "updated", None)],
        "{}",
        stderr(&out)
    );
    let agent = &sent[0].1;
    assert!(
        agent.starts_with("onefile/") && agent.ends_with(&user_agent_of("1.0")),
        "{agent}"
    );
    let traced = format!(
        "Reported 'updated' (1.0 -> 1.1) to 127.0.0.1:{}.",
        host.port
    );
    assert!(update_traces(&out).contains(&traced), "{}", stderr(&out));

    // 1.1 is up to date: nothing more.
    let out = launch(&p);
    assert_eq!(stdout(&out), "1.1\n");
    assert_eq!(reports(&host).len(), 1, "{}", stderr(&out));
}

#[test]
fn no_report_is_sent_without_a_report_url() {
    let p = publish(&[]);
    p.announce_11();
    let out = update_now(&p);
    assert!(
        !update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Reported ") || t.starts_with("Could not report ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(pending_reports(&p), Vec::<String>::new());
    // Only manifests and builds were asked for.
    for request in p.server.requests() {
        assert!(
            request.path.ends_with("update.toml") || request.path.ends_with(".bin"),
            "{}",
            request.path
        );
    }
}

#[test]
fn a_stalled_report_host_delays_neither_the_app_nor_the_launchers_exit() {
    let host = Server::start();
    // The server routes by the whole path, query included.
    host.route(&report("1.0", Some("1.1"), "updated", None), Route::Stall);
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let started = Instant::now();
    let out = p.s.run_leaving_background(&p.exe, ["version", "1"]);
    let took = started.elapsed();
    assert_eq!(stdout(&out), "1.0\n");
    assert_updated(&out);
    // The app runs 1 s; a launcher that waited for the report's 2 s
    // timeout would take 3 s or more.
    assert!(took < Duration::from_millis(2_800), "{took:?}");
    let out = with_background_traces(out);
    // Sent once, by one process, never retried.
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "updated", None)],
        "{}",
        stderr(&out)
    );
    assert_eq!(pending_reports(&p), Vec::<String>::new());
    launch(&p);
    assert_eq!(report_paths(&host).len(), 1, "{:?}", report_paths(&host));
}

/// The report files left in the app's cache folder (pending, claimed or
/// half written).
fn pending_reports(p: &Published) -> Vec<String> {
    let folder = p.s.cache().join(NAME);
    let mut names: Vec<String> = fs::read_dir(&folder)
        .expect("cache folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".report-"))
        .collect();
    names.sort();
    names
}

/// Leaves a pending `updated` report (1.0 to 1.1, to `url`) in the app's
/// cache folder, as a launcher that ended before sending it does.
fn leave_pending_updated(p: &Published, url: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let folder = p.s.cache().join(NAME);
    let created = now();
    let path = folder.join(format!(".report-{created}-1-0000abcd"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    let text = format!("onefile report 1\n{url}\nupdated\n\n1.0\n1.1\nend\n");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
}

#[test]
fn an_update_a_short_app_finishes_in_the_foreground_is_reported_once_by_the_background_updater() {
    let host = Server::start();
    // A far host: it answers long after the launcher's 25 ms.
    host.route(
        &report("1.0", Some("1.1"), "updated", None),
        Route::Late {
            status: 204,
            delay_ms: 200,
        },
    );
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let out = p.s.run_leaving_background(&p.exe, ["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_updated(&out);
    let out = with_background_traces(out);
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "updated", None)],
        "{}",
        stderr(&out)
    );
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t == "The report of 'updated' is left for the background updater."),
        "{}",
        stderr(&out)
    );
    let traced = format!(
        "Reported 'updated' (1.0 -> 1.1) to 127.0.0.1:{}.",
        host.port
    );
    let background = stderr(&out);
    let background = background
        .split("Background updater ")
        .nth(1)
        .unwrap_or_default();
    assert!(background.contains(&traced), "{}", stderr(&out));
    assert_eq!(pending_reports(&p), Vec::<String>::new());
    // 1.1 runs, and has nothing more to say.
    let out = launch(&p);
    assert_eq!(stdout(&out), "1.1\n");
    assert_eq!(report_paths(&host).len(), 1, "{}", stderr(&out));
}

#[test]
fn a_report_host_that_is_down_gets_one_attempt_and_no_retry() {
    let host = Server::start();
    host.route(&report("1.0", Some("1.1"), "updated", None), Route::Hangup);
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let out = update_now(&p);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Could not report 'updated' (1.0 -> 1.1)")),
        "{}",
        stderr(&out)
    );
    assert_eq!(report_paths(&host).len(), 1);
    assert_eq!(pending_reports(&p), Vec::<String>::new(), "dropped");
    for _ in 0..2 {
        let_time_pass(&p.s.cache());
        launch(&p);
    }
    assert_eq!(report_paths(&host).len(), 1, "not retried");
}

#[test]
fn of_8_concurrent_launches_one_sends_a_pending_report() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    launch(&p);
    assert!(reports(&host).is_empty());
    leave_pending_updated(&p, &host.url("/report"));
    let children: Vec<_> = (0..8)
        .map(|_| {
            p.s.command(&p.exe)
                .args(["version", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| with_background_traces(c.wait_with_output().expect("wait")))
        .collect();
    let all: String = outs.iter().map(stderr).collect();
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "updated", None)],
        "{all}"
    );
    assert_eq!(pending_reports(&p), Vec::<String>::new(), "{all}");
}

#[test]
fn a_claimer_killed_mid_report_leaves_no_file_for_long_and_its_report_is_not_sent_again() {
    let host = Server::start();
    host.route(&report("1.0", Some("1.1"), "updated", None), Route::Stall);
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let mut now =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
    let started = Instant::now();
    while reports(&host).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no report");
        std::thread::sleep(Duration::from_millis(10));
    }
    now.kill().expect("SIGKILL");
    now.wait().expect("wait");
    let left = pending_reports(&p);
    assert!(left.len() == 1 && left[0].ends_with(".claimed"), "{left:?}");
    // The next run cleans what the killed claimer left: it had its one
    // attempt.
    launch(&p);
    assert_eq!(pending_reports(&p), Vec::<String>::new());
    assert_eq!(report_paths(&host).len(), 1);
}

/// A minisign key pair; the public key written where `pack` reads it.
struct Key {
    secret: SecretKey,
    public: PathBuf,
}

fn key(dir: &Scratch, name: &str) -> Key {
    let pair = KeyPair::generate_unencrypted_keypair().expect("key pair");
    let public = dir.path(&format!("{name}.pub"));
    fs::write(&public, pair.pk.to_box().expect("public key").into_string()).expect("write");
    Key {
        secret: pair.sk,
        public,
    }
}

fn sign(key: &Key, bytes: &[u8], comment: &str) -> String {
    minisign::sign(None, &key.secret, bytes, Some(comment), None)
        .expect("sign")
        .into_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// A manifest offering 1.1 (its build signed by `key`), of `sequence`,
/// expiring at `expires`, reporting to `report`.
fn offering_11(
    p: &Published,
    key: Option<&Key>,
    sequence: u64,
    expires: i64,
    report: Option<String>,
) -> UpdateManifest {
    let signature = key.map(|k| sign(k, &p.v11, &trusted_comment(NAME, "1.1")));
    let release = Release {
        url: p.server.url(&format!("/1.1/{NAME}.bin")),
        crc32: crc32fast::hash(&p.v11),
        size: Some(p.v11.len() as u64),
        version: Some("1.1".into()),
        signature,
        signatures: vec![],
        mirrors: vec![],
    };
    UpdateManifest {
        app: Some(NAME.into()),
        os: Some(std::env::consts::OS.into()),
        arch: Some(std::env::consts::ARCH.into()),
        specs: vec![format!(
            "http://127.0.0.1:{}/{{VERSION}}/update.toml",
            p.server.port
        )],
        sequence: Some(sequence),
        expires: Some(datetime_from_unix(expires)),
        report,
        ..UpdateManifest::offering(release)
    }
}

/// `manifest`'s text signed by `signer` (none: unsigned).
fn signed(manifest: &UpdateManifest, signer: Option<&Key>) -> String {
    let body = manifest.to_toml();
    let Some(signer) = signer else {
        return body;
    };
    let app = manifest.app.as_deref().unwrap_or(NAME);
    let comment = manifest_trusted_comment(
        app,
        manifest.sequence.unwrap_or(0),
        manifest.expires_at().expect("an instant"),
    );
    with_signatures(&body, vec![sign(signer, body.as_bytes(), &comment)])
}

fn serve(p: &Published, text: &str) {
    p.server
        .route("/1.0/update.toml", Route::file(text.as_bytes().to_vec()));
}

/// Runs the install once, its app running for a second (the updater's
/// check and its report happen meanwhile: a report still in flight when
/// the launcher ends is dropped); with what a background updater made of
/// it.
fn launch(p: &Published) -> Output {
    let out = p.run(&["version", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Installs what is announced with `ONEFILE_UPDATE=now`: the process that
/// installs reports, then exits.
fn update_now(p: &Published) -> Output {
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_updated(&out);
    out
}

#[test]
fn a_signed_manifests_report_overrides_the_packed_one_and_an_unsigned_ones_does_not() {
    let (packed_host, manifest_host) = (Server::start(), Server::start());
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let public = a.public.to_str().expect("utf8");
    let p = publish_reporting(&packed_host, &["--public-key", public]);
    let elsewhere = Some(manifest_host.url("/report"));

    // Unsigned, naming another report host: refused, reported where the
    // build says.
    let unsigned = offering_11(&p, Some(&a), 100, now() + 86_400, elsewhere.clone());
    serve(&p, &signed(&unsigned, None));
    let out = launch(&p);
    assert_eq!(
        report_paths(&packed_host),
        [report("1.0", None, "refused", Some("signature"))],
        "{}",
        stderr(&out)
    );
    assert!(reports(&manifest_host).is_empty());

    // Signed: its report URL is used.
    let trusted = offering_11(&p, Some(&a), 101, now() + 86_400, elsewhere);
    serve(&p, &signed(&trusted, Some(&a)));
    let out = update_now(&p);
    assert_eq!(
        report_paths(&manifest_host),
        [report("1.0", Some("1.1"), "updated", None)],
        "{}",
        stderr(&out)
    );
    assert_eq!(report_paths(&packed_host).len(), 1, "{}", stderr(&out));
}

#[test]
fn an_empty_report_in_a_trusted_manifest_turns_reports_off() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    let off = offering_11(&p, None, 100, now() + 86_400, Some(String::new()));
    serve(&p, &off.to_toml());
    let out = update_now(&p);
    assert!(
        update_traces(&out).contains(&"Reports are turned off by the update info.".to_owned()),
        "{}",
        stderr(&out)
    );
    assert!(reports(&host).is_empty(), "{:?}", reports(&host));
}

#[test]
fn refused_manifests_each_send_their_reason_once() {
    let host = Server::start();
    let keys = Scratch::new();
    let (a, b) = (key(&keys, "a"), key(&keys, "b"));
    let public = a.public.to_str().expect("utf8");
    let p = publish_reporting(&host, &["--public-key", public]);
    let day = 86_400;
    let mut expected = Vec::new();
    let mut refuse = |text: String, reason: &str| {
        serve(&p, &text);
        let out = launch(&p);
        expected.push(report("1.0", None, "refused", Some(reason)));
        assert_eq!(report_paths(&host), expected, "{}", stderr(&out));
        p.assert_still_10();
    };
    let by_b = offering_11(&p, Some(&a), 100, now() + day, None);
    refuse(signed(&by_b, Some(&b)), "signature");
    let other_app = UpdateManifest {
        app: Some("OtherApp".into()),
        ..offering_11(&p, Some(&a), 100, now() + day, None)
    };
    refuse(signed(&other_app, Some(&a)), "identity");
    let expired = offering_11(&p, Some(&a), 100, now() - 60, None);
    refuse(signed(&expired, Some(&a)), "expired");
    // Seen: a sequence of 2000 (offering 1.0: nothing to do, no report)...
    let mut current = offering_11(&p, Some(&a), 2000, now() + day, None);
    current.url = p.server.url(&format!("/1.0/{NAME}.bin"));
    current.crc32 = crc32fast::hash(&p.v10);
    current.size = Some(p.v10.len() as u64);
    current.version = Some("1.0".into());
    current.signature = Some(sign(&a, &p.v10, &trusted_comment(NAME, "1.0")));
    serve(&p, &signed(&current, Some(&a)));
    launch(&p);
    assert_eq!(report_paths(&host).len(), 3);
    // ... then 1999: a replay.
    let replayed = offering_11(&p, Some(&a), 1999, now() + day, None);
    refuse(signed(&replayed, Some(&a)), "replay");
    // A signed manifest missing a field is refused by the check it serves.
    let no_sequence = UpdateManifest {
        sequence: None,
        ..offering_11(&p, Some(&a), 3000, now() + day, None)
    };
    refuse(signed(&no_sequence, Some(&a)), "replay");
    let no_expiry = UpdateManifest {
        expires: None,
        ..offering_11(&p, Some(&a), 3000, now() + day, None)
    };
    refuse(signed(&no_expiry, Some(&a)), "expired");
}

#[test]
fn failed_downloads_send_network_and_verify_once() {
    // A host that hangs up halfway through the build.
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::CutShort {
            body: p.v11.clone(),
            etag: None,
            send: p.v11.len() / 2,
        },
    );
    p.announce_11();
    let out = launch(&p);
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "failed", Some("network"))],
        "{}",
        stderr(&out)
    );
    p.assert_still_10();

    // A build whose CRC-32 is not the announced one.
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    p.announce_11_with_a_wrong_crc();
    let out = launch(&p);
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "failed", Some("verify"))],
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
}

#[test]
fn a_build_that_fails_its_self_test_sends_refused_self_test_once() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    // Linux/x86_64 by its header, but a relocatable object (`e_type` 1),
    // which the kernel refuses to execute: its self-test fails.
    let mut build = p.v11.clone();
    build[16..18].copy_from_slice(&1u16.to_le_bytes());
    crate::update::announce_body(&p, build);
    let out = launch(&p);
    assert_eq!(
        report_paths(&host),
        [report("1.0", Some("1.1"), "refused", Some("self-test"))],
        "{}",
        stderr(&out)
    );
    // Held back: not tried again, so not reported again.
    launch(&p);
    assert_eq!(report_paths(&host).len(), 1, "{:?}", report_paths(&host));
    p.assert_still_10();
}

#[test]
fn update_check_sends_no_report_and_update_now_does() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    let other = UpdateManifest {
        app: Some("OtherApp".into()),
        ..offering_11(&p, None, 100, now() + 86_400, None)
    };
    serve(&p, &other.to_toml());
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "check")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(102), "{}", stderr(&out));
    assert!(reports(&host).is_empty(), "{:?}", reports(&host));
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(102), "{}", stderr(&out));
    assert_eq!(
        report_paths(&host),
        [report("1.0", None, "refused", Some("identity"))],
        "{}",
        stderr(&out)
    );
}

/// A 1.1 whose app dies of SIGSEGV as it starts.
const SEGFAULTS: &str = "#!/bin/sh\nkill -SEGV $$\n";

/// 1.0 and a crashing 1.1 published, reporting to `host`; 1.1 installed
/// over the user's 1.0 (its `updated` report sent).
fn install_crashing_11(host: &Server) -> Published {
    let url = host.url("/report");
    install_crashing_11_with(host, &["--report-url", url.as_str()], None)
}

/// Like [`install_crashing_11`], packed with `extra`, the manifests naming
/// `manifest_report` as their `report`.
fn install_crashing_11_with(
    host: &Server,
    extra: &[&str],
    manifest_report: Option<&str>,
) -> Published {
    let s = Scratch::new();
    let server = Server::start();
    let (v10, toml10) = pack_version(&s, server.port, "1.0", extra, |_| {});
    let (v11, mut toml11) = pack_version(&s, server.port, "1.1", extra, |app| {
        write_file(&app.join("bin/probe"), SEGFAULTS.as_bytes(), true);
    });
    if let Some(report) = manifest_report {
        toml11 = [format!("report = \"{report}\"\n").into_bytes(), toml11].concat();
    }
    server.route(&format!("/1.0/{NAME}.bin"), Route::file(v10.clone()));
    server.route(&format!("/1.1/{NAME}.bin"), Route::file(v11.clone()));
    server.route("/1.0/update.toml", Route::file(toml11.clone()));
    server.route("/1.1/update.toml", Route::file(toml11.clone()));
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);
    let p = Published {
        s,
        server,
        exe,
        v10,
        v11,
        toml10,
        toml11,
    };
    update_now(&p);
    if manifest_report != Some("") {
        assert_eq!(
            report_paths(host),
            [report("1.0", Some("1.1"), "updated", None)]
        );
    }
    p
}

/// The `rolled-back` reports `host` received.
fn rollbacks(host: &Server) -> Vec<(String, String)> {
    reports(host)
        .into_iter()
        .filter(|(path, _)| path.contains("event=rolled-back"))
        .collect()
}

/// Runs the restored 1.0 a few times: the rollback's report goes once.
fn run_restored(p: &Published) {
    for _ in 0..3 {
        let_time_pass(&p.s.cache());
        let out = launch(p);
        assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    }
}

#[test]
fn a_1_1_rolled_back_after_3_crashes_sends_exactly_one_rolled_back_report() {
    let host = Server::start();
    let p = install_crashing_11(&host);
    for _ in 0..3 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10, "1.0 restored");
    run_restored(&p);
    let sent = rollbacks(&host);
    assert_eq!(
        sent.iter()
            .map(|(path, _)| path.clone())
            .collect::<Vec<_>>(),
        [report("1.1", Some("1.0"), "rolled-back", Some("crash"))]
    );
    assert!(sent[0].1.starts_with("onefile/"), "{}", sent[0].1);
    assert_eq!(report_paths(&host).len(), 2, "{:?}", report_paths(&host));
}

#[test]
fn of_8_concurrent_launches_of_a_crashing_1_1_one_rollback_is_reported_once() {
    let host = Server::start();
    let p = install_crashing_11(&host);
    let children: Vec<_> = (0..8)
        .map(|_| {
            // The restored 1.0 runs its app for a second.
            p.s.command(&p.exe)
                .args(["version", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| with_background_traces(c.wait_with_output().expect("wait")))
        .collect();
    assert_eq!(fs::read(&p.exe).expect("read"), p.v10, "1.0 restored");
    run_restored(&p);
    let all: String = outs.iter().map(stderr).collect();
    assert_eq!(
        rollbacks(&host)
            .into_iter()
            .map(|(path, _)| path)
            .collect::<Vec<_>>(),
        [report("1.1", Some("1.0"), "rolled-back", Some("crash"))],
        "{all}"
    );
}

#[test]
fn pack_bounds_the_report_url_and_inspect_shows_it() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    let spec = "https://example.org/{VERSION}/update.toml";
    let refused = |url: &str, says: &str| {
        let out = tools([
            "pack",
            app.to_str().expect("utf8"),
            "-o",
            exe.to_str().expect("utf8"),
            "--stub",
            stub().to_str().expect("utf8"),
            "--entry",
            "bin/probe",
            "--name",
            "probeapp",
            "--update-url-spec",
            spec,
            "--report-url",
            url,
        ]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--report-url") && err.contains(says), "{err}");
        assert!(err.len() < 1_000, "one short error: {} bytes", err.len());
        assert!(!exe.exists());
    };
    let long = format!("https://example.org/{}", "r".repeat(100 * 1024));
    refused(&long, "longer than 2048 bytes");
    refused("https://user:secret@example.org/r", "user info");
    refused("http://example.org/r", "--allow-insecure-http");

    let url = "https://reports.example.org/r?channel=beta";
    pack(
        &app,
        &exe,
        &["--update-url-spec", spec, "--report-url", url],
    );
    assert_eq!(inspect(&exe)["update"]["report_url"], url);
    let out = tools(["inspect", exe.to_str().expect("utf8")]);
    assert!(
        stdout(&out).contains(&format!("reports to      {url}")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn publish_writes_the_sites_report_url_into_every_manifest_and_can_forget_it() {
    let s = Scratch::new();
    let site = s.path("site");
    let spec = "http://127.0.0.1:9/{VERSION}/update.toml";
    let build = |version: &str| -> PathBuf {
        let app = s.probe_app(&format!("app-{version}"), version);
        let out = s.path(&format!("builds/{version}/probeapp.bin"));
        pack(
            &app,
            &out,
            &["--version", version, "--update-url-spec", spec],
        );
        out
    };
    let tool = |command: &str, args: &[&str]| {
        let out = std::process::Command::new(bin("payload-tools"))
            .arg(command)
            .arg("--site")
            .arg(&site)
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    };
    let report_of = |version: &str| -> Option<String> {
        let text = fs::read_to_string(site.join(format!("{version}/update.toml"))).expect("read");
        UpdateManifest::parse(&text).expect("a manifest").report
    };
    let url = "http://127.0.0.1:9/report";
    let v10 = build("1.0");
    tool("publish", &[path(&v10), "--report-url", url]);
    assert_eq!(report_of("1.0").as_deref(), Some(url));
    let v11 = build("1.1");
    tool("publish", &[path(&v11), "--rollout", "10"]);
    tool("rollout", &["--percent", "50"]);
    for version in ["1.0", "1.1"] {
        assert_eq!(report_of(version).as_deref(), Some(url), "{version}");
    }
    let v12 = build("1.2");
    tool("publish", &[path(&v12), "--no-report-url"]);
    for version in ["1.0", "1.1", "1.2"] {
        assert_eq!(report_of(version), None, "{version}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn a_report_follows_no_redirect() {
    let host = Server::start();
    host.route(
        &report("1.0", Some("1.1"), "updated", None),
        Route::Redirect(host.url("/elsewhere")),
    );
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let out = update_now(&p);
    let paths: Vec<String> = host.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [report("1.0", Some("1.1"), "updated", None)],
        "{}",
        stderr(&out)
    );
}

#[test]
fn update_now_answers_before_its_report_is_sent() {
    use std::io::Read;
    let host = Server::start();
    host.route(&report("1.0", Some("1.1"), "updated", None), Route::Stall);
    let p = publish_reporting(&host, &[]);
    p.announce_11();
    let mut child =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .env_remove("AUTO_UPDATE_DEBUG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let mut answer = String::new();
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    stdout_pipe.read_to_string(&mut answer).expect("read");
    let mut errors = String::new();
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    stderr_pipe.read_to_string(&mut errors).expect("read");
    // Both pipes ended while the process still waits for the stalled
    // report host (2 s): a moment later it still runs. (A process that
    // answered at its exit is gone by then.)
    std::thread::sleep(Duration::from_millis(300));
    let running = child.try_wait().expect("try_wait").is_none();
    let status = child.wait().expect("wait");
    assert_eq!(
        answer,
        format!("{NAME}: updated from 1.0 to 1.1\n"),
        "{errors}"
    );
    assert!(running, "the answer came only at the exit");
    assert_eq!(status.code(), Some(0));
    assert_eq!(report_paths(&host).len(), 1);
}

#[test]
fn a_report_in_flight_when_the_launcher_ends_is_put_back_and_sent_by_the_background_updater() {
    let host = Server::start();
    let p = publish_reporting(&host, &[]);
    launch(&p);
    // The first attempt meets a host that does not answer before the app
    // (1 s) has exited; the next one is answered.
    host.route(
        &report("1.0", Some("1.1"), "updated", None),
        Route::Sequence(vec![Route::Stall, Route::Status(204)]),
    );
    leave_pending_updated(&p, &host.url("/report"));
    let out = launch(&p);
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(report_paths(&host).len(), 2, "{}", stderr(&out));
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t == "The report in flight is put back, unsent."),
        "{}",
        stderr(&out)
    );
    let traced = format!(
        "Reported 'updated' (1.0 -> 1.1) to 127.0.0.1:{}.",
        host.port
    );
    assert!(update_traces(&out).contains(&traced), "{}", stderr(&out));
    assert_eq!(pending_reports(&p), Vec::<String>::new());
    launch(&p);
    assert_eq!(report_paths(&host).len(), 2);
}

#[test]
fn a_rollback_is_reported_to_the_manifests_url_on_runs_that_fetch_no_manifest() {
    let host = Server::start();
    let url = host.url("/report");
    // No URL packed: the manifest's alone; no check due after the install.
    let p = install_crashing_11_with(&host, &["--update-check-interval", "1h"], Some(&url));
    for _ in 0..3 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    }
    let mut all = String::new();
    // The restored 1.0's first launch checks (its app exits at once); the
    // next ones have no check due.
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    for _ in 0..2 {
        let out = launch(&p);
        assert_eq!(stdout(&out), "1.0\n");
        all.push_str(&stderr(&out));
    }
    assert_eq!(
        rollbacks(&host)
            .into_iter()
            .map(|(path, _)| path)
            .collect::<Vec<_>>(),
        [report("1.1", Some("1.0"), "rolled-back", Some("crash"))],
        "{all}"
    );
    assert_eq!(pending_reports(&p), Vec::<String>::new());
}

#[test]
fn a_manifest_that_turned_reports_off_keeps_them_off_on_runs_that_fetch_no_manifest() {
    let host = Server::start();
    let url = host.url("/report");
    let extra = [
        "--report-url",
        url.as_str(),
        "--update-check-interval",
        "1h",
    ];
    let p = install_crashing_11_with(&host, &extra, Some(""));
    for _ in 0..3 {
        let out = p.run(&["version"]);
        assert_eq!(out.status.signal(), Some(11), "{}", stderr(&out));
    }
    // The restored 1.0's first launch checks (its app exits at once); the
    // next ones have no check due.
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    for _ in 0..2 {
        let out = launch(&p);
        assert_eq!(stdout(&out), "1.0\n");
    }
    assert_eq!(report_paths(&host), Vec::<String>::new());
    assert_eq!(pending_reports(&p), Vec::<String>::new());
}
