//! Self-update against a real HTTP server on loopback: the demo's traces,
//! every failure (each leaves the old executable running and no stray
//! files), redirects, resumed downloads, concurrent instances, and folders
//! the updater may not write to.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::server::{Route, Server};
use crate::support::*;

pub const NAME: &str = "AutoUpdatingTest";

/// Two published builds of one app (1.0 and 1.1), served by `server`,
/// and a user's copy of 1.0.
pub struct Published {
    pub s: Scratch,
    pub server: Server,
    pub exe: PathBuf,
    pub v10: Vec<u8>,
    pub v11: Vec<u8>,
    pub toml10: Vec<u8>,
    pub toml11: Vec<u8>,
}

pub fn publish(extra: &[&str]) -> Published {
    publish_apps(extra, |_| {})
}

/// Like [`publish`], with `prepare` adding files to each version's app
/// folder before it is packed.
pub fn publish_apps(extra: &[&str], prepare: impl Fn(&Path)) -> Published {
    let s = Scratch::new();
    let server = Server::start();
    let mut built = Vec::new();
    for version in ["1.0", "1.1"] {
        built.push(pack_version(&s, server.port, version, extra, &prepare));
    }
    let [(v10, toml10), (v11, toml11)] = <[_; 2]>::try_from(built).expect("two builds");
    server.route(&format!("/1.0/{NAME}.bin"), Route::file(v10.clone()));
    server.route(&format!("/1.1/{NAME}.bin"), Route::file(v11.clone()));
    server.route("/1.0/update.toml", Route::file(toml10.clone()));
    server.route("/1.1/update.toml", Route::file(toml11.clone()));
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);
    Published {
        s,
        server,
        exe,
        v10,
        v11,
        toml10,
        toml11,
    }
}

/// Packs `version` of the test app into `site/<version>/` of `s`, its
/// update URL on the server at `port`, with `extra` flags and `prepare`
/// adding files first; returns the build and its `update.toml`.
pub fn pack_version(
    s: &Scratch,
    port: u16,
    version: &str,
    extra: &[&str],
    prepare: impl Fn(&Path),
) -> (Vec<u8>, Vec<u8>) {
    let app = s.probe_app(&format!("app-{version}"), version);
    prepare(&app);
    let out = s.path(&format!("site/{version}/{NAME}.bin"));
    let toml = s.path(&format!("site/{version}/update.toml"));
    let spec = format!("http://127.0.0.1:{port}/{{VERSION}}/update.toml");
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
    (
        fs::read(&out).expect("read"),
        fs::read(&toml).expect("read"),
    )
}

impl Published {
    /// Packs the installed 1.0 again, asking the update URL specs `specs` in
    /// order (the first is its own location, the others fallbacks), with
    /// `extra` flags.
    pub fn repack_10(&self, specs: &[&str], extra: &[&str]) {
        let mut args = vec!["--name", NAME, "--version", "1.0"];
        for spec in specs {
            args.extend(["--update-url-spec", spec]);
        }
        args.extend_from_slice(extra);
        let out = pack(&self.s.path("app-1.0"), &self.exe, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// Publishes 1.1 where 1.0 looks for updates.
    pub fn announce_11(&self) {
        self.server
            .route("/1.0/update.toml", Route::file(self.toml11.clone()));
    }

    /// Publishes 1.1 with a `crc32` its bytes do not have.
    pub fn announce_11_with_a_wrong_crc(&self) {
        let text = String::from_utf8(self.toml11.clone()).expect("utf8");
        let crc_line = text
            .lines()
            .find(|l| l.starts_with("crc32"))
            .expect("crc32 line");
        let bad = text.replace(crc_line, "crc32 = 12345");
        self.server
            .route("/1.0/update.toml", Route::file(bad.into_bytes()));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.s.run(&self.exe, args)
    }

    /// The version the user's executable runs now (updates off for this check).
    pub fn version_now(&self) -> String {
        let out = self
            .s
            .command(&self.exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }

    /// The user's folder holds the executable and nothing else, or also a
    /// resumable partial download when `partial_ok`, or 1.0 kept for a
    /// rollback by an update to 1.1 (until 1.1 has started well).
    pub fn assert_clean(&self, partial_ok: bool) {
        let dir = self.exe.parent().expect("dir");
        for entry in fs::read_dir(dir).expect("list").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let partial = is_download(&name);
            let previous = name == format!(".{NAME}.bin.previous")
                && fs::read(entry.path()).expect("read") == self.v10;
            assert!(
                name == format!("{NAME}.bin") || (partial_ok && partial) || previous,
                "stray file {name}"
            );
        }
    }

    /// The user's folder holds a (partial) download.
    pub fn has_download(&self) -> bool {
        let dir = self.exe.parent().expect("dir");
        fs::read_dir(dir)
            .expect("list")
            .flatten()
            .any(|e| is_download(&e.file_name().to_string_lossy()))
    }

    pub fn assert_still_10(&self) {
        assert_eq!(
            fs::read(&self.exe).expect("read"),
            self.v10,
            "executable changed"
        );
        assert_eq!(self.version_now(), "1.0");
    }
}

/// Where the payload of a packed file starts: its stub's length, from its
/// trailer (docs/format.md).
pub fn payload_offset(build: &[u8]) -> usize {
    let trailer = &build[build.len() - 64..];
    let field: [u8; 8] = trailer[8..16].try_into().expect("8 bytes");
    u64::from_le_bytes(field) as usize
}

/// Whether `name` is a download of the test app's executable: a file of
/// its own, `.<exe name>.<inode>.<random>.download`.
pub fn is_download(name: &str) -> bool {
    name.strip_prefix(&format!(".{NAME}.bin."))
        .and_then(|rest| rest.strip_suffix(".download"))
        .and_then(|tag| tag.split_once('.'))
        .is_some_and(|(inode, random)| {
            inode.parse::<u64>().is_ok() && random.parse::<u64>().is_ok()
        })
}

/// Leaves the state a download of `exe` killed halfway leaves: `bytes` in
/// a download file of its own beside it, and its resume record (of the
/// whole `build`, from `url`, with the server's `validator`) in the
/// updater's private file in the app's cache folder under `cache`.
pub fn plant_partial(
    cache: &Path,
    exe: &Path,
    bytes: &[u8],
    url: &str,
    build: &[u8],
    validator: &str,
) {
    let (crc32, size) = (crc32fast::hash(build), build.len());
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let private = |path: &Path, bytes: &[u8]| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .expect("create");
        std::io::Write::write_all(&mut file, bytes).expect("write");
    };
    let exe_meta = fs::metadata(exe).expect("stat");
    let name = format!(".{NAME}.bin.{}.1234567890.download", exe_meta.ino());
    let partial = exe.with_file_name(&name);
    private(&partial, bytes);
    let ino = fs::metadata(&partial).expect("stat").ino();
    let state = cache
        .join(NAME)
        .join(format!(".update-{}-{}", exe_meta.dev(), exe_meta.ino()));
    let _ = fs::remove_file(&state);
    let record =
        format!("onefile resume 2\n{url}\n{crc32}\n{size}\n{name}\n{ino}\n{validator}\nend\n");
    private(&state, record.as_bytes());
}

#[test]
fn the_demo_traces_word_for_word() {
    let p = publish(&[]);
    let info10 = p.server.url("/1.0/update.toml");
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert_eq!(
        update_traces(&out),
        [
            "Thread started.".to_owned(),
            format!("Expanded info URL to '{info10}'."),
            format!(
                "CRC32 {} matches already.",
                p.server.url(&format!("/1.0/{NAME}.bin"))
            ),
        ]
    );

    p.announce_11();
    // The app runs for a second: the download finishes while it runs.
    let out = p.run(&["version", "1"]);
    assert_eq!(stdout(&out), "1.0\n");
    let mut traces = update_traces(&out);
    // The new build's cache folder is prepared beside the wait for the app,
    // so its traces come in no fixed order with those (prewarm.rs checks
    // them).
    traces.retain(|t| {
        !["Preparing ", "Unpacked ", "Prepared "]
            .iter()
            .any(|p| t.starts_with(p))
    });
    // The download has a name of its own: checked, then masked.
    let downloaded = traces
        .iter_mut()
        .find(|t| t.starts_with("Downloaded to '"))
        .expect("a download");
    let path = &downloaded["Downloaded to '".len()..downloaded.len() - "'.".len()];
    let path = Path::new(path);
    assert_eq!(path.parent(), p.exe.parent(), "{path:?}");
    assert!(
        is_download(&path.file_name().expect("name").to_string_lossy()),
        "{path:?}"
    );
    *downloaded = "Downloaded to '…'.".into();
    assert_eq!(
        traces,
        [
            "Thread started.".to_owned(),
            format!("Expanded info URL to '{info10}'."),
            format!(
                "URL to check '{}'.",
                p.server.url(&format!("/1.1/{NAME}.bin"))
            ),
            "The server sent no end of the build (no range support?); downloading it whole."
                .to_owned(),
            "Downloaded to '…'.".to_owned(),
            "The new build passed its self-test.".to_owned(),
            "May not yet update.".to_owned(),
            "May update.".to_owned(),
            "Updated.".to_owned(),
            format!(
                "On probation until it starts well; '.{NAME}.bin.previous' keeps 1.0 for a rollback."
            ),
        ],
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);

    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n");
    // Decided at the app's exit, while the updater may still be busy.
    let mut traces = update_traces(&out);
    let healthy = "1.1 is healthy (it exited with code 0); the previous build (1.0) is removed.";
    assert!(traces.iter().any(|t| t == healthy), "{}", stderr(&out));
    traces.retain(|t| t != healthy);
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
            format!(
                "CRC32 {} matches already.",
                p.server.url(&format!("/1.1/{NAME}.bin"))
            ),
        ]
    );
    p.assert_clean(false);
}

#[test]
fn updated_executable_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let p = publish(&[]);
    fs::set_permissions(&p.exe, fs::Permissions::from_mode(0o750)).expect("chmod");
    p.announce_11();
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(
        fs::metadata(&p.exe).expect("stat").permissions().mode() & 0o777,
        0o750
    );
}

/// Runs 1.0 against a faulty publication and checks the outcome.
pub fn expect_failure(p: &Published, trace_part: &str) -> Output {
    let started = Instant::now();
    // With what a background updater it handed the rest to made of it.
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "the app ran: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains(trace_part)),
        "no trace with {trace_part:?}: {traces:#?}"
    );
    assert!(!traces.contains(&"Updated.".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(30));
    p.assert_still_10();
    // A failed check backs off: the next one here stands for a launch
    // after the backoff.
    let_time_pass(&p.s.cache());
    out
}

#[test]
fn http_errors_are_traced_and_harmless() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Status(404));
    expect_failure(&p, "HTTP status 404");
    p.server.route("/1.0/update.toml", Route::Status(500));
    expect_failure(&p, "HTTP status 500");
    p.announce_11();
    p.server
        .route(&format!("/1.1/{NAME}.bin"), Route::Status(503));
    expect_failure(&p, "HTTP status 503");
    p.assert_clean(false);
}

#[test]
fn connection_refused_is_traced_and_harmless() {
    let p = publish(&[]);
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // Repack 1.0 pointing at the closed port.
    let app = p.s.path("app-1.0");
    let spec = format!("http://127.0.0.1:{dead_port}/{{VERSION}}/update.toml");
    pack(
        &app,
        &p.exe,
        &[
            "--name",
            NAME,
            "--version",
            "1.0",
            "--update-url-spec",
            &spec,
        ],
    );
    let before = fs::read(&p.exe).expect("read");
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("Cannot fetch")),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&p.exe).expect("read"), before);
    p.assert_clean(false);
}

#[test]
fn a_server_that_never_answers_delays_nothing() {
    let p = publish(&["--update-exit-wait", "1"]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let started = Instant::now();
    let out = p.s.run_leaving_background(&p.exe, ["version"]);
    let took = started.elapsed();
    stop_background_updater(&out);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        took < Duration::from_secs(8),
        "the launcher waited {took:?}"
    );
    assert!(
        update_traces(&out).iter().any(|t| t.contains("Still busy")),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
    p.assert_clean(false);
}

#[test]
fn the_app_starts_at_once_while_the_server_stalls() {
    let p = publish(&["--update-exit-wait", "1"]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let mut child =
        p.s.command(&p.exe)
            .args(["print", "started", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut stdout_pipe, &mut first).expect("read");
    assert_eq!(&first, b"started\n");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the app was delayed"
    );
    child.wait().expect("wait");
}

#[test]
fn a_body_cut_short_is_discarded() {
    let p = publish(&[]);
    p.announce_11();
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::CutShort {
            body: p.v11.clone(),
            etag: None,
            send: p.v11.len() / 3,
        },
    );
    expect_failure(&p, "Download of");
    p.assert_clean(false);
}

#[test]
fn a_wrong_crc_is_discarded() {
    let p = publish(&[]);
    p.announce_11_with_a_wrong_crc();
    expect_failure(&p, "CRC32 of");
    p.assert_clean(false);
    // Served with ranges, the CRC-32 is assembled from the parts around
    // the payload checked during the download: the same figure.
    p.server
        .route(&format!("/1.1/{NAME}.bin"), with_ranges(&p.v11));
    let actual = format!("is {}, update info says 12345", crc32fast::hash(&p.v11));
    expect_failure(&p, &actual);
    p.assert_still_10();
    p.assert_clean(false);
}

pub fn announce_body(p: &Published, body: Vec<u8>) {
    announce_route(p, &body, Route::file(body.clone()));
}

/// Announces `body` (its CRC-32 and size) as 1.1, served by `route`.
pub fn announce_route(p: &Published, body: &[u8], route: Route) {
    let toml = format!(
        "url = \"{}\"\ncrc32 = {}\nsize = {}\nversion = \"1.1\"\n",
        p.server.url("/other.bin"),
        crc32fast::hash(body),
        body.len()
    );
    p.server.route("/other.bin", route);
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
}

fn with_ranges(body: &[u8]) -> Route {
    Route::File {
        body: body.to_vec(),
        etag: None,
        ranges: true,
    }
}

const CHECKED_WHILE_DOWNLOADING: &str = "Checked the payload while it downloaded.";

/// Requests for `path` that downloaded it (not those for its end).
fn downloads_of(p: &Published, path: &str) -> usize {
    p.server
        .requests()
        .iter()
        .filter(|r| r.path == path && !r.is_tail())
        .count()
}

#[test]
fn the_payload_is_checked_while_it_downloads() {
    let p = publish(&[]);
    p.announce_11();
    p.server
        .route(&format!("/1.1/{NAME}.bin"), with_ranges(&p.v11));
    // The app runs until the update is ready: nothing is handed off at
    // its exit (and asked again), which the exact counts below would show.
    let out = run_until_ready(&p.s, &p.exe);
    assert_updated(&out);
    let traces = update_traces(&out);
    assert!(
        traces.contains(&CHECKED_WHILE_DOWNLOADING.to_owned()),
        "{traces:#?}"
    );
    let tails: Vec<_> = p
        .server
        .requests()
        .into_iter()
        .filter(|r| r.is_tail())
        .collect();
    assert_eq!(tails.len(), 1, "{tails:?}");
    assert_eq!(downloads_of(&p, &format!("/1.1/{NAME}.bin")), 1);
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    p.assert_clean(false);
}

#[test]
fn a_build_refused_by_its_end_is_not_downloaded() {
    let p = publish(&[]);
    let other = other_apps_build(&p);
    announce_route(&p, &other, with_ranges(&other));
    expect_failure(&p, "not of 'AutoUpdatingTest'");
    // The same build as the running one, announced as new.
    announce_route(&p, &p.v10, with_ranges(&p.v10.clone()));
    p.server.route("/1.0/update.toml", {
        let text = String::from_utf8(p.toml11.clone()).expect("utf8");
        let crc = text
            .lines()
            .find(|l| l.starts_with("crc32"))
            .expect("crc32");
        Route::file(
            text.replace(&format!("/1.1/{NAME}.bin"), "/other.bin")
                .replace(crc, "crc32 = 1")
                .into_bytes(),
        )
    });
    expect_failure(&p, "not newer than the running '1.0'");
    assert_eq!(downloads_of(&p, "/other.bin"), 0);
    p.assert_still_10();
    p.assert_clean(false);
}

#[test]
fn a_damaged_payload_served_with_ranges_is_refused() {
    let p = publish(&[]);
    // A payload byte flipped in a file whose CRC-32 update.toml vouches
    // for: its end (trailer, metadata) is intact.
    let mut damaged = p.v11.clone();
    let middle = damaged.len() - 20_000;
    damaged[middle] ^= 0xff;
    announce_route(&p, &damaged, with_ranges(&damaged));
    // Assembled from the running build's intact parts, it is not the build
    // announced; a whole download from the same server would not be
    // either, and is not made.
    expect_failure(&p, "failed verification on every mirror");
    let out = p.run(&["version"]);
    assert!(!update_traces(&out).contains(&CHECKED_WHILE_DOWNLOADING.to_owned()));
    p.assert_still_10();
    p.assert_clean(false);
}

#[test]
fn an_end_that_does_not_match_the_download_is_not_trusted() {
    let p = publish(&[]);
    // Build 1.2 of the same files: the same length and payload as 1.1,
    // other metadata. The server answers the look at the end from it.
    let v12 = p.s.path("v12.bin");
    let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", p.server.port);
    pack(
        &p.s.path("app-1.1"),
        &v12,
        &[
            "--name",
            NAME,
            "--version",
            "1.2",
            "--update-url-spec",
            &spec,
        ],
    );
    let v12 = fs::read(&v12).expect("read");
    assert_eq!(v12.len(), p.v11.len());
    announce_route(
        &p,
        &p.v11,
        Route::Split {
            tail_of: v12,
            body: p.v11.clone(),
        },
    );
    let out = p.run(&["version"]);
    assert_updated(&out);
    let traces = update_traces(&out);
    assert!(
        !traces.contains(&CHECKED_WHILE_DOWNLOADING.to_owned()),
        "{traces:#?}"
    );
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
    p.assert_clean(false);
}

#[test]
fn a_file_that_is_not_a_packed_executable_is_discarded() {
    let p = publish(&[]);
    announce_body(&p, noise(300_000, 5));
    expect_failure(&p, "not a valid packed executable");
    // A damaged packed file whose CRC-32 the manifest vouches for.
    let mut damaged = p.v11.clone();
    let n = damaged.len();
    damaged[n - 200] ^= 0xff;
    announce_body(&p, damaged);
    expect_failure(&p, "not a valid packed executable");
    p.assert_clean(false);
}

/// 1.1's files packed as another app, of a higher version.
fn other_apps_build(p: &Published) -> Vec<u8> {
    let other = p.s.path("other.bin");
    pack(
        &p.s.path("app-1.1"),
        &other,
        &["--name", "SomethingElse", "--version", "9"],
    );
    fs::read(&other).expect("read")
}

#[test]
fn a_packed_executable_of_another_app_is_discarded() {
    let p = publish(&[]);
    announce_body(&p, other_apps_build(&p));
    expect_failure(&p, "not of 'AutoUpdatingTest'");
    p.assert_clean(false);
}

#[test]
fn malformed_and_oversized_update_toml_are_traced() {
    let p = publish(&[]);
    for (body, expect) in [
        (b"<html>not toml</html>".to_vec(), "Bad update info"),
        (b"url = \"x\"\n".to_vec(), "Bad update info"),
        (b"".to_vec(), "Bad update info"),
        (
            b"url = \"http://x/y\"\ncrc32 = \"abc\"\n".to_vec(),
            "Bad update info",
        ),
        (vec![b'#'; 200_000], "larger than"),
    ] {
        p.server.route("/1.0/update.toml", Route::file(body));
        expect_failure(&p, expect);
    }
    p.assert_clean(false);
}

#[test]
fn older_announced_versions_are_not_installed() {
    let p = publish(&[]);
    let text = String::from_utf8(p.toml11.clone())
        .expect("utf8")
        .replace("version = \"1.1\"", "version = \"0.9\"");
    p.server
        .route("/1.0/update.toml", Route::file(text.into_bytes()));
    expect_failure(&p, "not newer");
}

#[test]
fn redirects_are_followed() {
    let p = publish(&[]);
    p.server.route(
        "/1.0/update.toml",
        Route::Redirect(p.server.url("/moved/update.toml")),
    );
    let text = String::from_utf8(p.toml11.clone())
        .expect("utf8")
        .replace(&format!("/1.1/{NAME}.bin"), "/moved/app.bin");
    p.server
        .route("/moved/update.toml", Route::file(text.into_bytes()));
    p.server.route(
        "/moved/app.bin",
        Route::Redirect(p.server.url(&format!("/1.1/{NAME}.bin"))),
    );
    // The app runs until the update is ready: nothing is handed off at
    // its exit (and asked again), which the exact counts below would show.
    let out = run_until_ready(&p.s, &p.exe);
    assert_updated(&out);
    let paths: Vec<String> = p.server.requests().into_iter().map(|r| r.path).collect();
    // The build's redirects are followed twice: for its end (trailer and
    // metadata), then for the download.
    assert_eq!(
        paths,
        [
            "/1.0/update.toml".to_owned(),
            "/moved/update.toml".to_owned(),
            "/moved/app.bin".to_owned(),
            format!("/1.1/{NAME}.bin"),
            "/moved/app.bin".to_owned(),
            format!("/1.1/{NAME}.bin"),
        ]
    );
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

/// The new build's first download is cut after `send` bytes (with an ETag,
/// so it is resumable); later requests get the whole file, with or without
/// `Range` support.
fn interrupt_then_serve(p: &Published, send: usize, ranges: bool) {
    let etag = "\"v11\"".to_owned();
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::Sequence(vec![
            Route::CutShort {
                body: p.v11.clone(),
                etag: Some(etag.clone()),
                send,
            },
            Route::File {
                body: p.v11.clone(),
                etag: Some(etag),
                ranges,
            },
        ]),
    );
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let p = publish(&[]);
    p.announce_11();
    // Inside the part after the stub: an assembly resumes at the start of
    // the part that holds the first byte missing.
    let cut = payload_offset(&p.v11) + 1000;
    interrupt_then_serve(&p, cut, true);
    expect_failure(&p, "kept for resuming");
    p.assert_clean(true);
    let before = p.server.requests().len();
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    // The server now serves the end of the build: the rest is assembled
    // from the running build and ranges, from the start of the part the
    // kept download ends in.
    let resumed_at: u64 = traces
        .iter()
        .find_map(|t| t.strip_prefix("Resuming the incremental update at byte "))
        .and_then(|t| t.strip_suffix('.')?.parse().ok())
        .unwrap_or_else(|| panic!("{traces:#?}"));
    assert!(
        resumed_at > 0 && resumed_at <= cut as u64,
        "{resumed_at} of {cut}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    let asked = p.server.range_starts_after(before);
    assert!(
        !asked.is_empty() && asked.iter().all(|&start| start >= resumed_at),
        "{asked:?}"
    );
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

#[test]
fn a_server_without_range_support_restarts_the_download() {
    let p = publish(&[]);
    p.announce_11();
    interrupt_then_serve(&p, 1000, false);
    expect_failure(&p, "kept for resuming");
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("from the start")),
        "{traces:#?}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

#[test]
fn two_instances_update_once() {
    let p = publish(&[]);
    p.announce_11();
    let children: Vec<_> = (0..2)
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
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let updated = outs
        .iter()
        .filter(|o| update_traces(o).contains(&"Updated.".to_owned()))
        .count();
    for o in &outs {
        assert_eq!(stdout(o), "1.0\n");
    }
    assert_eq!(
        updated,
        1,
        "{:#?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

#[test]
fn a_read_only_folder_is_skipped() {
    let p = publish(&[]);
    p.announce_11();
    let dir = p.exe.parent().expect("dir").to_owned();
    if !remount(&dir, true, 64 << 10) {
        return;
    }
    let out = p.run(&["version"]);
    let ro_exe = fs::read(&p.exe).expect("read");
    unmount(&dir);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("Read-only") || t.contains("read-only")),
        "{}",
        stderr(&out)
    );
    assert_eq!(ro_exe, p.v10);
}

#[test]
fn an_executable_of_another_user_is_not_replaced() {
    use std::os::unix::ffi::OsStrExt;
    let p = publish(&[]);
    p.announce_11();
    let c_path = std::ffi::CString::new(p.exe.as_os_str().as_bytes()).expect("c path");
    // SAFETY: valid C string; chown to "nobody".
    if unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) } != 0 {
        skip("cannot chown here (needs root)");
        return;
    }
    expect_failure(&p, "belongs to user 65534");
    p.assert_clean(false);
}

#[test]
fn updates_can_be_turned_off_per_run() {
    let p = publish(&[]);
    p.announce_11();
    let out =
        p.s.command(&p.exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
    assert_eq!(stdout(&out), "1.0\n");
    assert!(update_traces(&out).is_empty(), "{}", stderr(&out));
    assert!(p.server.requests().is_empty());
    let _ = (&p.v10, &p.toml10);
}
