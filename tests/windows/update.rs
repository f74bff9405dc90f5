//! Self-update on Windows, against `it/server.rs` on 127.0.0.1: a running
//! executable cannot be replaced but can be renamed, so the running build
//! moves aside to a fresh `.<name>.<number>.old`, the new build takes its
//! name, and a later start removes the aside copies nothing runs. Beside
//! that, the rules of Linux: the demo's traces, one updater per executable
//! (its lock keyed by the file's identity), resumed downloads, CRC-32 and
//! signature checks, and no build installed by hand ever downgraded.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use crate::server::{Route, Server};
use crate::support::{self, Scratch};

/// Builds of the probe app, each looking for updates at
/// `/<version>/update.toml` on one server, and a user's copy of the first.
pub(crate) struct Published {
    pub(crate) s: Scratch,
    pub(crate) server: Server,
    /// The user's copy: `installed/app.exe`.
    pub(crate) exe: PathBuf,
    /// Each version's build and its `update.toml`.
    builds: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// Publishes `versions` (each served as `/<version>/app.exe`, announcing
/// itself), packed with `extra` flags, and installs the first.
pub(crate) fn publish(versions: &[&str], extra: &[&str]) -> Published {
    let s = Scratch::new();
    let server = Server::start();
    let mut builds = Vec::new();
    for version in versions {
        let (exe, toml) = pack_version(&s, &server, version, extra);
        server.route(&format!("/{version}/app.exe"), Route::file(exe.clone()));
        server.route(
            &format!("/{version}/update.toml"),
            Route::file(toml.clone()),
        );
        builds.push(((*version).to_owned(), exe, toml));
    }
    let exe = s.path("installed/app.exe");
    fs::create_dir_all(s.path("installed")).expect("mkdir");
    fs::write(&exe, &builds[0].1).expect("install");
    Published {
        s,
        server,
        exe,
        builds,
    }
}

/// Packs the probe as `version` into `site/<version>/app.exe` with
/// `payload-tools.exe`; returns the build and its `update.toml`.
fn pack_version(s: &Scratch, server: &Server, version: &str, extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let app = s.probe_app(&format!("app-{version}"), version);
    let dir = s.path(&format!("site/{version}"));
    fs::create_dir_all(&dir).expect("mkdir");
    let (exe, toml) = (dir.join("app.exe"), dir.join("update.toml"));
    let spec = server.url("/{VERSION}/update.toml");
    let mut args = vec![
        "--version",
        version,
        "--update-url-spec",
        &spec,
        "--auto-update-toml-file",
        toml.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    support::pack(&app, &exe, &args);
    (
        fs::read(&exe).expect("read"),
        fs::read(&toml).expect("read"),
    )
}

impl Published {
    fn build(&self, version: &str) -> &(String, Vec<u8>, Vec<u8>) {
        self.builds
            .iter()
            .find(|b| b.0 == version)
            .expect("a published version")
    }

    pub(crate) fn bytes(&self, version: &str) -> &[u8] {
        &self.build(version).1
    }

    /// Tells users of `from` about `to`.
    pub(crate) fn announce(&self, from: &str, to: &str) {
        self.server.route(
            &format!("/{from}/update.toml"),
            Route::file(self.build(to).2.clone()),
        );
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.s.run(&self.exe, args)
    }

    /// Starts the user's executable with `args`, its output piped.
    fn spawn(&self, exe: &Path, args: &[&str], updates: bool) -> Child {
        let mut cmd = self.s.command(exe);
        if !updates {
            cmd.env("AUTO_UPDATE_DISABLE", "1");
        }
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the packed executable")
    }

    /// The version the user's executable runs now (updates off).
    fn version_now(&self) -> String {
        let out = self.spawn(&self.exe, &["version"], false);
        let out = out.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", support::stderr(&out));
        support::stdout(&out).trim().to_owned()
    }

    /// Serves `version`'s build by `route` instead.
    pub(crate) fn serve(&self, version: &str, route: Route) {
        self.server.route(&format!("/{version}/app.exe"), route);
    }

    /// The requests for `version`'s `update.toml` so far.
    pub(crate) fn manifest_requests(&self, version: &str) -> usize {
        let path = format!("/{version}/update.toml");
        self.server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// The ranges asked for so far (`Range` headers), the builds' ends
    /// included.
    pub(crate) fn ranges_asked(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .filter_map(|r| r.range)
            .collect()
    }

    pub(crate) fn installed(&self) -> Vec<u8> {
        fs::read(&self.exe).expect("read the executable")
    }

    /// A later start runs `version`, and removes every aside copy: only the
    /// executable is left in its folder.
    pub(crate) fn assert_later_start_runs(&self, version: &str) {
        let out = self.run(&["version"]);
        assert_eq!(
            support::stdout(&out),
            format!("{version}\n"),
            "{}",
            support::stderr(&out)
        );
        assert_eq!(
            self.folder(),
            ["app.exe"],
            "files left beside the executable"
        );
    }

    /// The names in the executable's folder, sorted.
    pub(crate) fn folder(&self) -> Vec<String> {
        listing(self.exe.parent().expect("folder"))
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether `name` is an aside copy of `app.exe`: `.app.exe.<number>.old`.
fn is_aside(name: &str) -> bool {
    name.strip_prefix(".app.exe.")
        .and_then(|n| n.strip_suffix(".old"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn traces_contain(out: &Output, trace: &str) -> bool {
    support::update_traces(out).iter().any(|t| t == trace)
}

#[test]
fn seed_update_renames_the_running_exe_aside_and_a_later_start_removes_it() {
    let p = publish(&["1.0", "1.1"], &[]);
    let info10 = p.server.url("/1.0/update.toml");
    // The app lives until the updater is done, so that the check is the
    // launcher's own however slow the machine (none handed off).
    let seen = p.s.path("status-seen");
    let out = p.run(&["watch-status", seen.to_str().expect("utf8"), "60"]);
    let states = fs::read_to_string(&seen).expect("status record");
    assert!(states.contains("\"state\":\"up-to-date\""), "{states}");
    assert_eq!(
        support::update_traces(&out),
        [
            "Thread started.".to_owned(),
            format!("Expanded info URL to '{info10}'."),
            format!("CRC32 {} matches already.", p.server.url("/1.0/app.exe")),
        ],
        "{}",
        support::stderr(&out)
    );

    p.announce("1.0", "1.1");
    // Again the app lives until the updater is done (here: the build is
    // ready), so that nothing is handed off at its exit, which the exact
    // traces below would show.
    let seen = p.s.path("status-seen-2");
    let out = p.run(&["watch-status", seen.to_str().expect("utf8"), "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let mut traces = support::update_traces(&out);
    // The new build's cache folder is prepared beside the wait for the app,
    // so its traces come in no fixed order with those (prewarm.rs checks
    // them).
    // And whether the app still runs when the build is ready ("May not
    // yet update.") depends on how fast the machine downloads and
    // self-tests it.
    traces.retain(|t| {
        ![
            "Preparing ",
            "Unpacked ",
            "Prepared ",
            "May not yet update.",
        ]
        .iter()
        .any(|p| t.starts_with(p))
    });
    let downloaded = traces
        .iter_mut()
        .find(|t| t.starts_with("Downloaded to '"))
        .unwrap_or_else(|| panic!("no download:\n{}", support::stderr(&out)));
    let path = PathBuf::from(&downloaded["Downloaded to '".len()..downloaded.len() - "'.".len()]);
    assert_eq!(path.parent(), p.exe.parent(), "{path:?}");
    *downloaded = "Downloaded to '…'.".into();
    assert_eq!(
        traces,
        [
            "Thread started.".to_owned(),
            format!("Expanded info URL to '{info10}'."),
            format!("URL to check '{}'.", p.server.url("/1.1/app.exe")),
            "The server sent no end of the build (no range support?); downloading it whole."
                .to_owned(),
            "Downloaded to '…'.".to_owned(),
            "The new build passed its self-test.".to_owned(),
            "May update.".to_owned(),
            "Updated.".to_owned(),
            "On probation until it starts well; '.app.exe.previous' keeps 1.0 for a rollback."
                .to_owned(),
        ],
        "{}",
        support::stderr(&out)
    );
    assert_eq!(
        p.installed(),
        p.bytes("1.1"),
        "app.exe is not the 1.1 build"
    );
    // The 1.0 build moved aside, and is kept for a rollback while 1.1 is
    // on probation.
    assert_eq!(p.folder(), [".app.exe.previous", "app.exe"]);
    assert_eq!(
        fs::read(p.s.path("installed/.app.exe.previous")).expect("read"),
        p.bytes("1.0"),
        "the 1.0 build is not aside"
    );

    let seen = p.s.path("status-seen-3");
    let out = p.run(&["watch-status", seen.to_str().expect("utf8"), "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let states = fs::read_to_string(&seen).expect("status record");
    assert!(
        states.contains("\"state\":\"up-to-date\",\"version\":\"1.1\""),
        "{states}"
    );
    // Decided when the app has run 5 s or exits, whichever comes first,
    // in no fixed order with the updater's traces.
    let mut traces = support::update_traces(&out);
    let healthy = |t: &String| {
        t.starts_with("1.1 is healthy (") && t.ends_with("); the previous build (1.0) is removed.")
    };
    assert!(traces.iter().any(healthy), "{traces:#?}");
    traces.retain(|t| !healthy(t));
    assert_eq!(
        traces,
        [
            "First run of 1.1 after 1.0.".to_owned(),
            "1.1 is on probation: 0 failed start(s) so far, healthy after 5000 ms.".to_owned(),
            "Thread started.".to_owned(),
            format!(
                "Expanded info URL to '{}'.",
                p.server.url("/1.1/update.toml")
            ),
            format!("CRC32 {} matches already.", p.server.url("/1.1/app.exe")),
        ],
    );
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
}

#[test]
fn a_wrong_crc_is_refused_and_leaves_nothing() {
    let p = publish(&["1.0", "1.1"], &[]);
    let text = String::from_utf8(p.build("1.1").2.clone()).expect("UTF-8");
    let crc_line = text
        .lines()
        .find(|l| l.starts_with("crc32"))
        .expect("a crc32 line");
    let bad = text.replace(crc_line, "crc32 = 12345");
    p.server
        .route("/1.0/update.toml", Route::file(bad.into_bytes()));
    let out = p.run(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(support::stdout(&out), "1.0\n");
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(
            |t| t.starts_with("CRC32 of ") && t.ends_with("update info says 12345; discarded.")
        ),
        "{traces:#?}"
    );
    assert!(!traces_contain(&out, "Updated."));
    assert_eq!(p.installed(), p.bytes("1.0"));
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
    assert_eq!(p.version_now(), "1.0");
}

/// A key pair made by `payload-tools.exe keygen` in `dir`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let base = dir.join(name);
    let out = support::tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

#[test]
fn a_signed_update_installs_and_a_bad_signature_is_refused() {
    let keys = Scratch::new();
    let (secret, public) = keygen(keys.dir.path(), "trusted");
    let (wrong, _) = keygen(keys.dir.path(), "wrong");
    let p = publish(
        &["1.0", "1.1"],
        &[
            "--public-key",
            public.to_str().expect("UTF-8"),
            "--key",
            secret.to_str().expect("UTF-8"),
        ],
    );
    let good = String::from_utf8(p.build("1.1").2.clone()).expect("UTF-8");
    assert!(good.contains("signature"), "{good}");

    // The same file and CRC-32, signed by a key the build does not trust.
    let v11 = p.s.path("site/1.1/app.exe");
    let out = support::tools([
        "sign".as_ref(),
        v11.as_os_str(),
        "--key".as_ref(),
        wrong.as_os_str(),
        "-o".as_ref(),
        p.s.path("wrong.minisig").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let wrong_sig = fs::read_to_string(p.s.path("wrong.minisig")).expect("signature");
    // Update info signed by the trusted key, announcing a build signed by
    // the wrong one.
    let mut bad = payload_tools::manifest::UpdateManifest::parse(&good).expect("manifest");
    bad.signature = Some(wrong_sig);
    let trusted = fs::read_to_string(&secret).expect("secret key");
    let trusted = minisign::SecretKeyBox::from_string(&trusted)
        .and_then(|b| b.into_unencrypted_secret_key())
        .expect("secret key");
    let bad = crate::trust::signed(&bad, &trusted);
    p.server
        .route("/1.0/update.toml", Route::file(bad.into_bytes()));
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("another key")),
        "{traces:#?}"
    );
    assert_eq!(p.installed(), p.bytes("1.0"));
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");

    p.announce("1.0", "1.1");
    let out = p.run(&["version"]);
    assert!(
        traces_contain(&out, "Updated."),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.1"));
    assert_eq!(p.version_now(), "1.1");
}

#[test]
fn an_interrupted_download_is_resumed_on_the_next_start() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let v11 = p.bytes("1.1").to_vec();
    // Inside the part after the stub (its length is the trailer's payload
    // offset): an assembly resumes at the start of the part that holds the
    // first missing byte.
    let trailer = &v11[v11.len() - 64..];
    let payload_offset = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    let cut = payload_offset as usize + 1000;
    let etag = "\"v11\"".to_owned();
    p.server.route(
        "/1.1/app.exe",
        Route::Sequence(vec![
            Route::CutShort {
                body: v11.clone(),
                etag: Some(etag.clone()),
                send: cut,
            },
            Route::File {
                body: v11.clone(),
                etag: Some(etag),
                ranges: true,
            },
        ]),
    );
    // The app lives until the updater reports, so that the launcher itself
    // meets the cut (however slow Wine is, nothing is handed off).
    let seen = p.s.path("seen.txt");
    let out = p.run(&["watch-status", seen.to_str().expect("utf8"), "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("kept for resuming")),
        "{traces:#?}"
    );
    assert_eq!(p.installed(), p.bytes("1.0"));

    let before = p.server.requests().len();
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    // The server now serves the end of the build: the rest is assembled
    // from the running build and ranges.
    let resumed_at: u64 = traces
        .iter()
        .find_map(|t| t.strip_prefix("Resuming the incremental update at byte "))
        .and_then(|t| t.strip_suffix('.')?.parse().ok())
        .unwrap_or_else(|| panic!("{traces:#?}"));
    assert!(
        resumed_at > 0 && resumed_at <= cut as u64,
        "{resumed_at} of {cut}"
    );
    assert!(traces_contain(&out, "Updated."), "{traces:#?}");
    let asked = p.server.range_starts_after(before);
    assert!(
        !asked.is_empty() && asked.iter().all(|&start| start >= resumed_at),
        "{asked:?}"
    );
    assert_eq!(p.installed(), v11);
    // A later start runs 1.1 and removes the aside copy of 1.0.
    p.assert_later_start_runs("1.1");
}

#[test]
fn a_stale_or_planted_aside_name_does_not_block_the_update() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    // What an earlier build's name for the aside copy could hold: a folder
    // (which nothing may delete for us), and a copy of the aside name an
    // update of ours could pick.
    let planted = p.s.path("installed/.app.exe.old");
    fs::create_dir_all(&planted).expect("mkdir");
    fs::write(planted.join("keep.txt"), "mine").expect("write");
    let out = p.run(&["version"]);
    assert!(
        traces_contain(&out, "Updated."),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.1"));
    assert_eq!(
        fs::read_to_string(planted.join("keep.txt")).expect("the planted folder is kept"),
        "mine"
    );
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.1\n");
    assert_eq!(p.folder(), [".app.exe.old", "app.exe"]);
}

/// Reads `child`'s stderr until a line ends with `trace`; returns what it
/// read. Panics if the stream ends first.
fn wait_for_trace(child: &mut Child, trace: &str) -> String {
    let stderr = child.stderr.as_mut().expect("piped stderr");
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "no {trace:?} in:\n{seen}");
        seen.push_str(&line);
        if line.trim_end().ends_with(trace) {
            return seen;
        }
    }
}

#[test]
fn an_aside_copy_still_in_use_does_not_block_the_next_update() {
    let p = publish(&["1.0", "1.1", "1.2"], &[]);
    // An old instance that keeps running the 1.0 file for a while.
    let old = p.spawn(&p.exe, &["version", "12"], false);
    std::thread::sleep(std::time::Duration::from_secs(1));
    p.announce("1.0", "1.1");
    let out = p.run(&["version"]);
    assert!(
        traces_contain(&out, "Updated."),
        "{}",
        support::stderr(&out)
    );
    // Kept for a rollback while 1.1 is on probation.
    let first_aside: Vec<String> = p
        .folder()
        .into_iter()
        .filter(|n| is_aside(n) || n == ".app.exe.previous")
        .collect();
    assert_eq!(first_aside.len(), 1, "{:?}", p.folder());

    // 1.1 cannot delete that aside copy while the old instance runs it, and
    // must still update.
    p.announce("1.1", "1.2");
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.1\n", "{}", support::stderr(&out));
    let in_use = p.s.path(&format!("installed/{}", first_aside[0])).exists();
    assert!(
        traces_contain(&out, "Updated."),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.2"));

    let old = old.wait_with_output().expect("wait");
    assert_eq!(support::stdout(&old), "1.0\n", "{}", support::stderr(&old));
    assert_eq!(old.status.code(), Some(0));

    // Nothing runs the aside copies now: a later start removes them all.
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.2\n");
    assert_eq!(p.folder(), ["app.exe"], "files left beside the executable");
    if !in_use {
        support::skip(
            "Wine deleted an executable that a process still ran (Windows refuses): \
             the aside copy in use was not shown",
        );
    }
}

#[test]
fn a_build_installed_by_hand_while_the_app_runs_is_kept() {
    let p = publish(&["1.0", "1.1", "1.2"], &[]);
    p.announce("1.0", "1.1");
    let mut child = p.spawn(&p.exe, &["version", "4"], true);
    wait_for_trace(&mut child, "AUTO UPDATE: May not yet update.");
    // The user installs 1.2 by hand meanwhile: the running file can only
    // be renamed away.
    fs::rename(&p.exe, p.s.path("installed/by-hand.old")).expect("move the running 1.0");
    fs::write(&p.exe, p.bytes("1.2")).expect("install 1.2");
    let out = child.wait_with_output().expect("wait");
    let rest = support::stderr(&out);
    assert_eq!(support::stdout(&out), "1.0\n", "{rest}");
    assert!(!rest.contains("AUTO UPDATE: Updated."), "{rest}");
    assert!(rest.contains("replaced while the app ran"), "{rest}");
    assert_eq!(p.installed(), p.bytes("1.2"), "1.2 was replaced");
    assert_eq!(p.folder(), ["app.exe", "by-hand.old"]);
}

#[test]
fn a_failed_install_puts_the_running_build_back() {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{FILE_SHARE_READ, FILE_SHARE_WRITE};

    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let mut child = p.spawn(&p.exe, &["version", "3"], true);
    let seen = wait_for_trace(&mut child, "AUTO UPDATE: May not yet update.");
    let download = seen
        .lines()
        .find_map(|l| l.strip_prefix("AUTO UPDATE: Downloaded to '"))
        .and_then(|l| l.strip_suffix("'."))
        .unwrap_or_else(|| panic!("no download in:\n{seen}"))
        .to_owned();
    // Held open without sharing the right to delete or rename it: the move
    // of the download into place fails, after the running file went aside.
    let blocker = fs::OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .open(&download)
        .expect("open the download");
    let out = child.wait_with_output().expect("wait");
    let rest = support::stderr(&out);
    assert_eq!(support::stdout(&out), "1.0\n", "{rest}");
    assert!(!rest.contains("AUTO UPDATE: Updated."), "{rest}");
    assert!(
        rest.contains("Cannot replace") && rest.contains("the old executable is kept"),
        "{rest}"
    );
    // The running build is back at its name, and nothing else moved aside.
    assert_eq!(p.installed(), p.bytes("1.0"));
    assert!(!p.folder().iter().any(|n| is_aside(n)), "{:?}", p.folder());
    drop(blocker);

    // The next start updates, and removes the download left behind.
    let out = p.run(&["version"]);
    assert!(
        traces_contain(&out, "Updated."),
        "{}",
        support::stderr(&out)
    );
    p.assert_later_start_runs("1.1");
}

#[test]
fn two_launches_at_once_update_once() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let children: Vec<Child> = (0..2)
        .map(|_| p.spawn(&p.exe, &["version", "2"], true))
        .collect();
    // Each with the traces of the background updater it handed off to (if
    // any), once that has ended.
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| support::with_background_traces(c.wait_with_output().expect("wait")))
        .collect();
    for out in &outs {
        assert_eq!(support::stdout(out), "1.0\n", "{}", support::stderr(out));
    }
    let updated = outs
        .iter()
        .filter(|o| traces_contain(o, "Updated."))
        .count();
    let all: Vec<String> = outs.iter().map(support::stderr).collect();
    assert_eq!(updated, 1, "{all:#?}");
    assert_eq!(p.installed(), p.bytes("1.1"));
    // The aside copy the other instance still ran is removed by a later
    // start.
    p.assert_later_start_runs("1.1");
}

#[test]
fn two_copies_of_the_app_each_update_their_own_executable() {
    // The updater's lock is one per executable (its volume and file index),
    // not one per app: two installed copies update at the same time.
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let other = p.s.path("elsewhere/app.exe");
    fs::create_dir_all(p.s.path("elsewhere")).expect("mkdir");
    fs::write(&other, p.bytes("1.0")).expect("install a second copy");
    let children = [
        p.spawn(&p.exe, &["version", "2"], true),
        p.spawn(&other, &["version", "2"], true),
    ];
    for child in children {
        let out = support::with_background_traces(child.wait_with_output().expect("wait"));
        assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
        assert!(
            traces_contain(&out, "Updated."),
            "{}",
            support::stderr(&out)
        );
    }
    assert_eq!(p.installed(), p.bytes("1.1"));
    assert_eq!(fs::read(&other).expect("read"), p.bytes("1.1"));
}

/// `path`'s short (8.3) form, as Windows gives it.
fn short_path(path: &Path) -> Option<PathBuf> {
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    let name: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut buf = vec![0u16; 1024];
    // SAFETY: `name` is NUL-terminated; `buf` is writable for its length.
    let n = unsafe {
        windows_sys::Win32::Storage::FileSystem::GetShortPathNameW(
            name.as_ptr(),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
    } as usize;
    (n > 0 && n < buf.len()).then(|| PathBuf::from(std::ffi::OsString::from_wide(&buf[..n])))
}

/// Started by its short name (`MYAPPL~1.EXE`, as some shortcuts and old
/// programs do), the executable is still updated at its own name: the
/// alias must not become the new build's name. (Wine 8.0 reports the long
/// name as the process's own path whatever it was started by, so under
/// Wine this holds without `sys::long_path` too; Windows reports the name
/// as started.)
#[test]
fn an_executable_started_by_its_short_name_is_updated_at_its_long_name() {
    let published = publish(&["1.0", "1.1"], &[]);
    published.announce("1.0", "1.1");
    let long = published.exe.with_file_name("MyApplication.exe");
    fs::rename(&published.exe, &long).expect("rename");
    let short = match short_path(&long) {
        Some(short) if short.file_name() != long.file_name() => short,
        _ => {
            support::skip("this filesystem gives the file no short name");
            return;
        }
    };
    let out = published.s.run(&short, ["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(support::stdout(&out), "1.0\n");
    let traces = support::update_traces(&out);
    assert!(traces.iter().any(|t| t == "Updated."), "{traces:?}");
    assert_eq!(fs::read(&long).expect("read"), published.bytes("1.1"));
    let short_name = short
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a short name")
        .to_owned();
    let names = listing(long.parent().expect("folder"));
    assert!(
        names.contains(&"MyApplication.exe".to_owned()) && !names.contains(&short_name),
        "{names:?}"
    );
}
