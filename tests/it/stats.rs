//! `payload-tools stats` and `rollout --halt-if-rollbacks` over access logs:
//! the `combined` log nginx wrote while a real install checked, updated and
//! reported its update (counted against nginx's own second log of the same
//! requests), plus
//! hand-written report and hostile lines; `--since`, `--app`, gzip input,
//! logs that cannot be read; and a signed site halted above the threshold
//! and left alone below it, with the exit statuses CI relies on.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::nginx::{Config, Nginx};
use crate::support::*;

const APP: &str = "probeapp";

/// One `combined` line on `day` (`dd/Mon/yyyy`).
fn line(day: &str, request: &str, status: u16, bytes: u64, agent: &str) -> String {
    format!(
        "127.0.0.1 - - [{day}:10:00:00 +0000] \"{request}\" {status} {bytes} \"-\" \"{agent}\"\n"
    )
}

fn agent(app: &str, version: &str) -> String {
    format!("onefile/0.1.0 {app}/{version} (linux; x86_64)")
}

/// A report request as the contract shapes it: a GET by the updater of
/// the app the query names, at version `sender`.
fn report(day: &str, query: &str, sender: &str) -> String {
    let app = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("app="))
        .expect("a report names its app");
    line(
        day,
        &format!("GET /report?{query} HTTP/1.1"),
        404,
        153,
        &agent(app, sender),
    )
}

fn stats(args: &[&str]) -> Output {
    tools(std::iter::once("stats").chain(args.iter().copied()))
}

fn stats_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = stats(&all);
    assert!(out.status.success(), "stats failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("stats --json prints JSON")
}

/// The day of `json` named `day`.
fn day<'a>(json: &'a serde_json::Value, day: &str) -> &'a serde_json::Value {
    json["days"]
        .as_array()
        .and_then(|days| days.iter().find(|d| d["day"] == day))
        .unwrap_or_else(|| panic!("no day {day} in {json:#}"))
}

/// A site folder and the port its nginx will listen on (in the builds'
/// URL spec).
struct Site {
    s: Scratch,
    port: u16,
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let s = Scratch::new();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = s.path("site");
        Site { s, port, dir }
    }

    fn build(&self, version: &str, extra: &[&str]) -> PathBuf {
        let app = self.s.probe_app(&format!("app-{version}"), version);
        let out = self.s.path(&format!("builds/{version}/{APP}.bin"));
        let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", self.port);
        let mut args = vec!["--version", version, "--update-url-spec", &spec];
        args.extend_from_slice(extra);
        pack(&app, &out, &args);
        out
    }

    fn tool(&self, command: &str, args: &[&str]) -> Output {
        Command::new(bin("payload-tools"))
            .arg(command)
            .arg("--site")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run payload-tools")
    }

    fn publish(&self, build: &Path, args: &[&str]) {
        let mut all = vec![build.to_str().expect("utf8")];
        all.extend_from_slice(args);
        let out = self.tool("publish", &all);
        assert!(out.status.success(), "publish failed: {}", stderr(&out));
    }

    fn keygen(&self) -> (String, String) {
        let base = self.s.path("release");
        let out = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let path = |suffix: &str| format!("{}.{suffix}", base.display());
        (path("key"), path("pub"))
    }

    fn manifest(&self, version: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{version}/update.toml"))).expect("manifest")
    }

    fn write_log(&self, name: &str, text: impl AsRef<[u8]>) -> String {
        let path = self.s.path(name);
        fs::write(&path, text).expect("write log");
        path.to_str().expect("utf8").to_owned()
    }
}

#[test]
fn stats_counts_what_real_installs_asked_nginx_for_and_the_reports_exactly() {
    let site = Site::new();
    // Reports go to the same nginx, which answers 404 and logs them.
    let report_url = format!("http://127.0.0.1:{}/report", site.port);
    let reporting = ["--report-url", report_url.as_str()];
    site.publish(&site.build("1.0", &reporting), &[]);
    site.publish(&site.build("1.1", &reporting), &[]);
    let config = Config {
        port: Some(site.port),
        ..Config::default()
    };
    let Some(nginx) = Nginx::start_with(&site.dir, &site.s.path("nginx"), &config) else {
        skip("nginx is not installed");
        return;
    };
    let exe = site.s.path("user/probeapp.bin");
    let bytes = fs::read(site.dir.join(format!("1.0/{APP}.bin"))).expect("build");
    write_file(&exe, &bytes, true);
    // The process that installs reports `updated` before it exits.
    let out = site
        .s
        .command(&exe)
        .env("ONEFILE_UPDATE", "now")
        .output()
        .expect("run");
    assert_updated(&out);
    // Checks from 1.1 now, the second one answered 304 by its ETag.
    for _ in 0..2 {
        let out = site.s.run(&exe, ["version"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (combined, own) = (nginx.combined.clone(), nginx.log.clone());
    drop(nginx);
    let real = fs::read_to_string(combined).expect("log");

    // What nginx's own second log of the same requests says.
    let own = fs::read_to_string(own).expect("log");
    let mut want_checks: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut not_modified, mut manifest_bytes, mut build_bytes, mut range_bytes) = (0, 0, 0, 0);
    for l in own.lines() {
        let fields: Vec<&str> = l.split('"').collect();
        let path = fields[1].split(' ').nth(1).expect("path");
        let mut numbers = fields[2].split_whitespace();
        let status: u16 = numbers.next().and_then(|n| n.parse().ok()).expect("status");
        let sent: u64 = numbers.next().and_then(|n| n.parse().ok()).expect("sent");
        if path.starts_with("/report?") {
            continue;
        }
        let version = fields[5]
            .strip_prefix("onefile/")
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|app| app.strip_prefix(&format!("{APP}/")))
            .expect("an updater's request");
        if path.ends_with(".toml") {
            // The contract: a check is a manifest answered 200 or 304.
            assert!(matches!(status, 200 | 304), "{l}");
            *want_checks.entry(version.to_owned()).or_default() += 1;
            not_modified += u64::from(status == 304);
            manifest_bytes += sent;
        } else if status == 206 {
            range_bytes += sent;
        } else if status == 200 {
            build_bytes += sent;
        }
    }
    assert!(want_checks.contains_key("1.0") && want_checks.contains_key("1.1"));
    assert!(not_modified >= 1, "{own}");

    // Reports, another app, and hostile lines, on an earlier day.
    let old = "01/Jan/2026";
    let mut extra = String::new();
    for _ in 0..3 {
        extra += &report(old, "app=probeapp&from=1.0&to=1.1&event=updated", "1.1");
    }
    extra += &report(
        old,
        "app=probeapp&from=1.1&to=1.0&event=rolled-back&reason=crash",
        "1.0",
    );
    extra += &report(
        old,
        "app=probeapp&from=1.0&event=refused&reason=signature",
        "1.0",
    );
    extra += &report(
        old,
        "app=probeapp&from=1.0&event=failed&reason=network",
        "1.0",
    );
    extra += &report(old, "app=other&from=1.0&to=9.0&event=updated", "9.0");
    extra += &line(
        old,
        "GET /1.0/update.toml HTTP/1.1",
        200,
        10,
        &agent("other", "9.0"),
    );
    // A spoofed agent (quotes escaped by nginx), a browser, too long, not
    // UTF-8, truncated, garbage.
    extra += &line(
        old,
        "GET /1.0/update.toml HTTP/1.1",
        200,
        10,
        r#"x\x22 \x22onefile/0.1.0 probeapp/7.0 (linux; x86_64)"#,
    );
    extra += &line(old, "GET / HTTP/1.1", 200, 615, "Mozilla/5.0 (X11)");
    extra += &"x".repeat(9000);
    extra += "\n";
    extra += "127.0.0.1 - - [01/Jan/2026:10:00:00 +0000] \"GET /1.0/update.toml HTTP/1.1\" 200 612 \"-\" \"onefile/0.1\n";
    extra += "\\x16\\x03\\x01 400 157\n";
    let mut bytes = format!("{real}{extra}").into_bytes();
    bytes.extend_from_slice(
        b"127.0.0.1 - - [01/Jan/2026:10:00:00 +0000] \"GET /\xff HTTP/1.1\" 200 1 \"-\" \"-\"\n",
    );
    let log = site.write_log("access.log", &bytes);

    let json = stats_json(&[&log]);
    assert_eq!(json["format"], 1);
    let today = json["days"]
        .as_array()
        .and_then(|d| d.last())
        .map(|d| d["day"].as_str().expect("a day").to_owned())
        .expect("a day");
    let t = day(&json, &today);
    assert_eq!(t["checks"], serde_json::json!(want_checks), "{json:#}");
    assert_eq!(t["not_modified"], not_modified);
    assert_eq!(
        t["updated"],
        serde_json::json!([{ "from": "1.0", "to": "1.1", "count": 1 }]),
        "the real installation's report"
    );
    assert_eq!(t["bytes"]["manifests"], manifest_bytes);
    assert_eq!(t["bytes"]["builds"], build_bytes);
    assert_eq!(t["bytes"]["ranges"], range_bytes);
    let o = day(&json, "2026-01-01");
    assert_eq!(o["checks"], serde_json::json!({ "9.0": 1 }));
    assert_eq!(
        o["updated"],
        serde_json::json!([
            { "from": "1.0", "to": "1.1", "count": 3 },
            { "from": "1.0", "to": "9.0", "count": 1 },
        ])
    );
    assert_eq!(
        o["rolled_back"],
        serde_json::json!([{ "version": "1.1", "reason": "crash", "count": 1 }])
    );
    assert_eq!(
        o["refused"],
        serde_json::json!([{ "version": "1.0", "reason": "signature", "count": 1 }])
    );
    assert_eq!(
        o["failed"],
        serde_json::json!([{ "version": "1.0", "reason": "network", "count": 1 }])
    );
    assert_eq!(
        json["skipped"],
        serde_json::json!({ "too_long": 1, "not_utf8": 1, "truncated": 2 })
    );
    assert_eq!(json["other_clients"], 2);
    assert_eq!(json["latest"]["version"], "9.0");

    // --app: only probeapp's; the latest is then 1.1, on every check of
    // the last day.
    let json = stats_json(&[&log, "--app", APP]);
    assert_eq!(day(&json, "2026-01-01")["checks"], serde_json::json!({}));
    assert_eq!(json["latest"]["version"], "1.1");
    assert_eq!(json["latest"]["installs"], 4);
    assert_eq!(json["latest"]["rollbacks"], 1);
    assert_eq!(json["latest"]["day"], today.as_str());
    assert_eq!(json["latest"]["checks"], want_checks["1.1"]);

    // --since leaves the earlier day out; the same input prints the same
    // bytes; the tables name what they counted.
    let json = stats_json(&[&log, "--since", &today]);
    assert_eq!(json["days"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        stats(&["--json", &log]).stdout,
        stats(&["--json", &log]).stdout
    );
    let out = stats(&[&log, "--app", APP]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("updated       1.0 -> 1.1: 3"), "{text}");
    assert!(text.contains("updated       1.0 -> 1.1: 1"), "{text}");
    assert!(text.contains("rolled back   1.1 (crash): 1"), "{text}");
    let all: u64 = want_checks.values().sum();
    assert!(
        text.contains(&format!(
            "of the checks on {today} ({} of {all})",
            want_checks["1.1"]
        )),
        "{text}"
    );
    assert!(
        stderr(&out).contains("skipped 4 line(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stats_reads_gzip_logs_and_refuses_what_it_cannot_read_in_one_line() {
    let s = Scratch::new();
    let mut text = String::new();
    for i in 0..500 {
        let version = if i % 5 == 0 { "1.1" } else { "1.0" };
        text += &line(
            "24/Nov/2026",
            "GET /1.0/update.toml HTTP/1.1",
            if i % 2 == 0 { 304 } else { 200 },
            0,
            &agent(APP, version),
        );
    }
    let plain = s.path("access.log");
    fs::write(&plain, &text).expect("write");
    // A rotated log as logrotate leaves it, two gzip members in one file
    // as `cat a.gz b.gz` makes.
    let gz = s.path("access.log.2.gz");
    let gzip = |bytes: &str| -> Vec<u8> {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = bytes.to_owned();
        let writer = std::thread::spawn(move || {
            std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("feed gzip")
        });
        let out = child.wait_with_output().expect("gzip");
        writer.join().expect("writer");
        out.stdout
    };
    let (first, second) = text.split_at(text.len() / 2 + 7);
    let mut both = gzip(first);
    both.extend(gzip(second));
    fs::write(&gz, both).expect("write");
    let plain_json = stats_json(&[plain.to_str().expect("utf8")]);
    let gz_json = stats_json(&[gz.to_str().expect("utf8")]);
    assert_eq!(plain_json, gz_json);
    let d = day(&gz_json, "2026-11-24");
    assert_eq!(d["checks"], serde_json::json!({ "1.0": 400, "1.1": 100 }));
    assert_eq!(d["not_modified"], 250);
    assert_eq!(gz_json["skipped"], serde_json::json!({}));

    // A missing log, a binary file, a damaged gzip, a folder: one error line each.
    let mut damaged = fs::read(&gz).expect("read");
    // Cut inside the second member's data, as a copy taken mid-write is.
    let cut = damaged.len() - 20;
    damaged.truncate(cut);
    let damaged_path = s.path("damaged.gz");
    fs::write(&damaged_path, damaged).expect("write");
    for (path, says) in [
        (s.path("missing.log"), "cannot read"),
        (bin("payload-tools"), "is not a text access log"),
        (damaged_path, "cannot read"),
        (s.path(""), "is not a file"),
        (fifo(&s), "is not a file"),
    ] {
        // A reader that blocks on a FIFO is stopped (exit 124), not waited
        // for.
        let out = Command::new("timeout")
            .args(["60", bin("payload-tools").to_str().expect("utf8"), "stats"])
            .arg(&path)
            .output()
            .expect("run payload-tools");
        assert_eq!(out.status.code(), Some(1), "{path:?}");
        let errors: Vec<_> = messages(&out)
            .into_iter()
            .filter(|l| l.starts_with("payload-tools: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{path:?}: {}", stderr(&out));
        assert!(errors[0].contains(says), "{path:?}: {}", errors[0]);
        assert!(out.stdout.is_empty(), "{path:?}");
    }
    let out = stats(&[plain.to_str().expect("utf8"), "--since", "24.11.2026"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--since '24.11.2026' is not a date"));
}

#[test]
fn halt_if_rollbacks_halts_a_signed_release_above_the_threshold_and_not_below() {
    let site = Site::new();
    let (secret, public) = site.keygen();
    let keyed = ["--public-key", public.as_str()];
    site.publish(&site.build("1.0", &keyed), &["--key", &secret]);
    site.publish(
        &site.build("1.1", &keyed),
        &["--key", &secret, "--rollout", "10"],
    );
    let day = "24/Nov/2026";
    let mut text = String::new();
    for _ in 0..100 {
        text += &report(day, "app=probeapp&from=1.0&to=1.1&event=updated", "1.1");
    }
    // Another app's rollbacks and 1.0's own do not count against 1.1.
    for _ in 0..5 {
        text += &report(
            day,
            "app=other&from=1.1&to=1.0&event=rolled-back&reason=crash",
            "1.0",
        );
        text += &report(
            day,
            "app=probeapp&from=1.0&to=0.9&event=rolled-back&reason=crash",
            "0.9",
        );
    }
    for _ in 0..2 {
        text += &report(
            day,
            "app=probeapp&from=1.1&to=1.0&event=rolled-back&reason=exit-code",
            "1.0",
        );
    }
    let two = site.write_log("two.log", &text);
    text += &report(
        day,
        "app=probeapp&from=1.1&to=1.0&event=rolled-back&reason=crash",
        "1.0",
    );
    let three = site.write_log("three.log", &text);
    let halt = |log: &str, keys: &[&str]| {
        let mut args = vec!["--halt-if-rollbacks", "2", "--log", log];
        args.extend_from_slice(keys);
        site.tool("rollout", &args)
    };
    let before = site.manifest("1.0");
    assert!(before.contains("[rollout]") && !before.contains("halted"));

    // 2 of 100: not above 2%, nothing written, exit 0.
    let out = halt(&two, &["--key", &secret]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().last(),
        Some(
            "probeapp 1.1: 2 rollback(s) of 100 install(s) (2.0%) in 112 log line(s), within 2%: not halted"
        )
    );
    assert_eq!(site.manifest("1.0"), before);

    // Without the key of the signed site: an error up front, healthy or
    // not, nothing written.
    let out = halt(&two, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no --key is given"),
        "{}",
        stderr(&out)
    );
    let out = halt(&three, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no --key is given"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.manifest("1.0"), before);

    // With it: halted, exit 3, every manifest re-signed and offering 1.0.
    let out = halt(&three, &["--key", &secret]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "3 rollback(s) of 100 install(s) (3.0%) in 113 log line(s), above 2%: halting it"
        ),
        "{}",
        stdout(&out)
    );
    for version in ["1.0", "1.1"] {
        let text = site.manifest(version);
        assert!(text.contains("halted = true"), "{text}");
        assert!(text.contains("[manifest_signature]"), "{text}");
        crate::publish::assert_verifies(&text, &public);
    }

    // Again: already halted, exit 0, nothing written.
    let halted = site.manifest("1.0");
    let out = halt(&three, &["--key", &secret]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("above 2%: already halted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.manifest("1.0"), halted);
}

#[test]
fn halt_if_rollbacks_on_a_first_release_says_it_cannot_and_does_not_fail() {
    let site = Site::new();
    site.publish(&site.build("1.0", &[]), &[]);
    let text = report(
        "24/Nov/2026",
        "app=probeapp&from=1.0&to=0.9&event=rolled-back&reason=start",
        "0.9",
    )
    .repeat(3);
    let log = site.write_log("a.log", &text);
    let before = site.manifest("1.0");
    let out = site.tool("rollout", &["--halt-if-rollbacks", "2", "--log", &log]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 rollback(s) of 0 install(s) in 3 log line(s), above 2%, but there is no earlier release at 100% to fall back to: not halted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.manifest("1.0"), before);
    // --log needs --halt-if-rollbacks and the other way round.
    let out = site.tool("rollout", &["--halt-if-rollbacks", "2"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let out = site.tool("rollout", &["--log", &log, "--percent", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--log is read only by --halt-if-rollbacks"));
    assert!(fs::read_to_string(site.dir.join("1.0/update.toml")).is_ok());
}

/// A FIFO with no writer: opening it for reading would block for good.
fn fifo(s: &Scratch) -> PathBuf {
    let path = s.path("fifo.log");
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    path
}

#[test]
fn stats_counts_reports_by_the_contract_and_checks_that_were_answered() {
    let s = Scratch::new();
    let (d1, d2) = ("24/Nov/2026", "25/Nov/2026");
    let query = |version: &str| {
        format!("/report?app=probeapp&from={version}&to=1.0&event=rolled-back&reason=crash")
    };
    let mut text = String::new();
    // Checks answered 200 and 304, by 1.9 and 1.10.
    text += &line(
        d1,
        "GET /u/update.toml HTTP/1.1",
        200,
        600,
        &agent(APP, "1.9"),
    );
    text += &line(
        d1,
        "GET /u/update.toml HTTP/1.1",
        304,
        0,
        &agent(APP, "1.10"),
    );
    // A broken site's answers are no checks, and no manifest bytes.
    text += &line(
        d1,
        "GET /u/update.toml HTTP/1.1",
        404,
        153,
        &agent(APP, "1.9"),
    );
    text += &line(
        d1,
        "GET /u/update.toml HTTP/1.1",
        500,
        177,
        &agent(APP, "1.9"),
    );
    text += &line(d1, "GET /u/app.bin HTTP/1.1", 416, 0, &agent(APP, "1.9"));
    // Not reports: curl, a browser's POST, an updater's HEAD, another
    // app's updater. The curl one names 99.0, which is not the latest.
    for (method, sender) in [
        ("GET", "curl/8.5.0".to_owned()),
        ("POST", "Mozilla/5.0".to_owned()),
        ("HEAD", agent(APP, "1.0")),
        ("GET", agent("other", "1.0")),
    ] {
        text += &line(
            d1,
            &format!("{method} {} HTTP/1.1", query("99.0")),
            404,
            153,
            &sender,
        );
    }
    // A report by the contract.
    text += &report(
        d1,
        "app=probeapp&from=1.10&to=1.9&event=rolled-back&reason=crash",
        "1.9",
    );
    text += &report(d1, "app=probeapp&from=1.9&to=1.10&event=updated", "1.10");
    text += &report(d1, "app=probeapp&from=1.10&to=1.9&event=updated", "1.9");
    // A HEAD alone on a later day makes no day.
    text += &line(
        d2,
        "HEAD /u/update.toml HTTP/1.1",
        200,
        0,
        &agent(APP, "1.9"),
    );
    let log = s.path("access.log");
    fs::write(&log, &text).expect("write");
    let log = log.to_str().expect("utf8");

    let json = stats_json(&[log]);
    assert_eq!(json["days"].as_array().map(Vec::len), Some(1), "{json:#}");
    let d = day(&json, "2026-11-24");
    assert_eq!(d["checks"], serde_json::json!({ "1.10": 1, "1.9": 1 }));
    assert_eq!(d["not_modified"], 1);
    assert_eq!(d["bytes"]["manifests"], 600);
    assert_eq!(
        d["manifest_errors"],
        serde_json::json!({ "404": 1, "500": 1 })
    );
    assert_eq!(d["build_errors"], serde_json::json!({ "416": 1 }));
    assert_eq!(
        d["rolled_back"],
        serde_json::json!([{ "version": "1.10", "reason": "crash", "count": 1 }])
    );
    // Lists in version order: 1.9 before 1.10.
    assert_eq!(
        d["updated"],
        serde_json::json!([
            { "from": "1.9", "to": "1.10", "count": 1 },
            { "from": "1.10", "to": "1.9", "count": 1 },
        ])
    );
    assert_eq!(json["ignored_reports"], 4);
    assert_eq!(json["other_clients"], 2);
    assert_eq!(json["latest"]["version"], "1.10");
    assert_eq!(json["latest"]["rollbacks"], 1);

    let out = stats(&[log]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("checks        2 (1.9: 1, 1.10: 1), 50.0% answered 304"),
        "{text}"
    );
    assert!(text.contains("manifest errors 404: 1, 500: 1"), "{text}");
    assert!(
        text.contains("2 from other clients, 4 report(s) ignored"),
        "{text}"
    );
    assert!(
        !text.contains("99.0") && !text.contains("2026-11-25"),
        "{text}"
    );
}

#[test]
fn halt_if_rollbacks_counts_exactly_past_spoofed_versions_and_only_updaters_reports() {
    let site = Site::new();
    site.publish(&site.build("1.0", &[]), &[]);
    site.publish(&site.build("1.1", &[]), &["--rollout", "10"]);
    let day = "24/Nov/2026";
    let halt = |text: &str| {
        let log = site.write_log("halt.log", text);
        site.tool("rollout", &["--halt-if-rollbacks", "2", "--log", &log])
    };
    let rolled_back = "app=probeapp&from=1.1&to=1.0&event=rolled-back&reason=crash";

    // One rolled-back report by curl, an updater's HEAD, and two by the
    // updater with no install seen: below the minimum of 3, not halted.
    let mut text = line(
        day,
        &format!("GET /r?{rolled_back} HTTP/1.1"),
        404,
        153,
        "curl/8.5.0",
    );
    text += &line(
        day,
        &format!("HEAD /r?{rolled_back} HTTP/1.1"),
        404,
        0,
        &agent(APP, "1.0"),
    );
    text += &report(day, rolled_back, "1.0").repeat(2);
    let out = halt(&text);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().last(),
        Some(
            "probeapp 1.1: 2 rollback(s) of 0 install(s) in 4 log line(s), 2 report(s) ignored (not a GET by its updater), above 2%, but fewer than 3 rollbacks: not halted"
        )
    );
    assert!(!site.manifest("1.0").contains("halted"));

    // 20,000 checks of the real manifest by spoofed versions (past the
    // cap of versions), then 100 installs and 50 rollbacks: counted
    // exactly, halted, exit 3.
    let mut text = String::new();
    for n in 0..20_000 {
        text += &line(
            day,
            "GET /1.1/update.toml HTTP/1.1",
            200,
            600,
            &agent(APP, &format!("0.{n}")),
        );
    }
    text += &report(day, "app=probeapp&from=1.0&to=1.1&event=updated", "1.1").repeat(100);
    text += &report(day, rolled_back, "1.0").repeat(50);
    // In a rotated log with garbage after its gzip member (as `gzip -dc`
    // takes it, "trailing garbage ignored"): counted up to there, named on
    // standard error, and the halt still decides.
    let damaged = site.s.path("halt.log.1.gz");
    let mut gz = Command::new("gzip")
        .arg("-c")
        .arg(site.write_log("plain.log", &text))
        .output()
        .expect("gzip")
        .stdout;
    gz.extend_from_slice(b"garbage\n");
    fs::write(&damaged, gz).expect("write");
    let out = site.tool(
        "rollout",
        &[
            "--halt-if-rollbacks",
            "2",
            "--log",
            damaged.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("halt.log.1.gz' breaks off after"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(
            "50 rollback(s) of 100 install(s) (50.0%) in 20150 log line(s), above 2%: halting it"
        ),
        "{}",
        stdout(&out)
    );
    assert!(site.manifest("1.0").contains("halted = true"));

    // stats over the same log says loudly that its maps overflowed.
    let log = site.write_log("halt.log", &text);
    let out = stats(&[&log]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("WARNING: the logs hold more distinct keys than counted"));
    assert!(stderr(&out).contains("warning: the logs hold more distinct keys than counted"));
}
