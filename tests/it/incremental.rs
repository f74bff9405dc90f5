//! Incremental updates: the updater copies what the running build holds
//! and fetches only the rest, from nginx (ranges), falls back to the whole
//! build from a server without ranges (Python's http.server) or one that
//! lies, resumes an interrupted assembly, repairs a damaged running
//! executable, and always ends with the published bytes exactly.
//! `payload-tools inspect --against` predicts what an update fetches: the
//! tests hold nginx's access log to that prediction.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::nginx::Nginx;
use crate::server::{Lie, Route, Server};
use crate::support::*;
use crate::update::{NAME, pack_version};

/// The app of every version: the probe, two 5 MiB libraries and 40 small
/// files, all seeded (so builds share their bytes), then `change`.
/// A version of the test app: its number, and what it changes in the tree.
type Version<'a> = (&'a str, &'a dyn Fn(&Path));

fn app_tree(app: &Path, change: &dyn Fn(&Path)) {
    write_file(&app.join("lib/a.so"), &noise(5 << 20, 1), false);
    write_file(&app.join("lib/b.so"), &noise(5 << 20, 2), false);
    for i in 0..40 {
        write_file(
            &app.join(format!("share/{i:02}.txt")),
            &noise(20 * 1024, 100 + i),
            false,
        );
    }
    change(app);
}

/// Packs each of `versions` (name, change) into `site/<version>/`, its
/// update URL on `port`; returns the builds.
fn build_site(s: &Scratch, port: u16, versions: &[Version<'_>], extra: &[&str]) -> Vec<Vec<u8>> {
    versions
        .iter()
        .map(|(version, change)| {
            pack_version(s, port, version, extra, |app| app_tree(app, *change)).0
        })
        .collect()
}

fn unchanged(_: &Path) {}

fn one_small_file_changed(app: &Path) {
    write_file(&app.join("share/07.txt"), &noise(20 * 1024, 999), false);
}

/// The user's copy of `build`, with its update.toml announcing `to`.
fn install(s: &Scratch, build: &[u8], from: &str, to: &str) -> PathBuf {
    let site = s.path("site");
    fs::copy(
        site.join(format!("{to}/update.toml")),
        site.join(format!("{from}/update.toml")),
    )
    .expect("announce");
    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, build, true);
    exe
}

/// What `payload-tools inspect NEW --against OLD --json` predicts.
fn predicted(old: &Path, new: &Path) -> serde_json::Value {
    let out = tools([
        "inspect".as_ref(),
        new.as_os_str(),
        "--against".as_ref(),
        old.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn site_build(s: &Scratch, version: &str) -> PathBuf {
    s.path(&format!("site/{version}/{NAME}.bin"))
}

/// Bytes nginx sent for `path`, and how many requests asked for it.
fn served(nginx: &Nginx, path: &str) -> (u64, usize) {
    let requests: Vec<_> = nginx
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    for r in &requests {
        assert_eq!(r.status, 206, "only ranges were asked for: {requests:#?}");
    }
    (requests.iter().map(|r| r.sent).sum(), requests.len())
}

fn assert_traced(traces: &[String], part: &str) {
    assert!(
        traces.iter().any(|t| t.contains(part)),
        "no '{part}' in {traces:#?}"
    );
}

/// An update from `from` to `to` against nginx: fetches exactly what
/// `inspect --against` predicts, which is at most `most_percent` of the
/// build, and ends with the published bytes.
fn update_against_nginx(versions: &[Version<'_>], from: usize, to: usize, most_percent: f64) {
    let s = Scratch::new();
    let site = s.path("site");
    fs::create_dir_all(&site).expect("mkdir");
    let Some(nginx) = Nginx::start(&site, &s.path("nginx")) else {
        skip("nginx is not installed (make deps installs it)");
        return;
    };
    let builds = build_site(&s, nginx.port, versions, &[]);
    let (from_version, to_version) = (versions[from].0, versions[to].0);
    let exe = install(&s, &builds[from], from_version, to_version);
    let prediction = predicted(&site_build(&s, from_version), &site_build(&s, to_version));
    assert_eq!(prediction["incremental"], true, "{prediction:#}");

    // The app runs until the update is ready: the launcher does it all,
    // none of it is handed off (and fetched again) at the app's exit.
    let out = run_until_ready(&s, &exe);
    let traces = update_traces(&out);
    assert_traced(&traces, "Incremental update: ");
    assert_traced(&traces, "Assembled: ");
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(
        fs::read(&exe).expect("read"),
        builds[to],
        "the published bytes"
    );
    let (sent, requests) = served(&nginx, &format!("/{to_version}/{NAME}.bin"));
    assert_eq!(
        (sent, requests as u64),
        (
            prediction["fetched_bytes"].as_u64().expect("bytes"),
            prediction["requests"].as_u64().expect("requests")
        ),
        "nginx sent what inspect --against predicted: {prediction:#}"
    );
    let percent = sent as f64 * 100.0 / builds[to].len() as f64;
    assert!(
        percent <= most_percent,
        "{sent} bytes of {} fetched ({percent:.1}%)",
        builds[to].len()
    );
    let verify = tools(["verify".as_ref(), exe.as_os_str()]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let run = s.run(&exe, ["version"]);
    assert_eq!(stdout(&run), format!("{to_version}\n"));
}

#[test]
fn one_changed_small_file_fetches_only_its_frame() {
    update_against_nginx(
        &[("1.0", &unchanged), ("1.1", &one_small_file_changed)],
        0,
        1,
        10.0,
    );
}

#[test]
fn a_large_file_changed_inside_is_fetched_incrementally() {
    let changed = |app: &Path| {
        let lib = app.join("lib/a.so");
        let mut bytes = fs::read(&lib).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle..middle + 100].copy_from_slice(&[7u8; 100]);
        write_file(&lib, &bytes, false);
    };
    // Today's frames hold a large file whole: that frame is fetched, the
    // other library, the probe and the stub are not.
    update_against_nginx(&[("1.0", &unchanged), ("1.1", &changed)], 0, 1, 40.0);
}

#[test]
fn files_added_removed_and_renamed_are_handled() {
    let changed = |app: &Path| {
        fs::remove_file(app.join("share/03.txt")).expect("remove");
        write_file(&app.join("share/new.txt"), &noise(30 * 1024, 77), false);
        fs::rename(app.join("lib/b.so"), app.join("lib/c.so")).expect("rename");
    };
    // A renamed file's frame holds its new name: today's frames hold a
    // large file whole, so all of it is fetched again.
    update_against_nginx(&[("1.0", &unchanged), ("1.1", &changed)], 0, 1, 35.0);
}

#[test]
fn two_releases_back_to_the_latest_in_one_step() {
    let second = |app: &Path| {
        one_small_file_changed(app);
        write_file(&app.join("share/30.txt"), &noise(20 * 1024, 31), false);
    };
    update_against_nginx(
        &[
            ("1.0", &unchanged),
            ("1.1", &one_small_file_changed),
            ("1.2", &second),
        ],
        0,
        2,
        15.0,
    );
}

/// Python's http.server, which answers every request with the whole file.
struct PythonServer(Child);

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_server(root: &Path) -> Option<(PythonServer, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = PythonServer(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((server, port))
}

#[test]
fn a_server_without_ranges_gets_the_whole_build_downloaded() {
    let s = Scratch::new();
    let site = s.path("site");
    fs::create_dir_all(&site).expect("mkdir");
    let Some((_server, port)) = python_server(&site) else {
        skip("python3 -m http.server cannot run here");
        return;
    };
    let builds = build_site(
        &s,
        port,
        &[("1.0", &unchanged), ("1.1", &one_small_file_changed)],
        &[],
    );
    let exe = install(&s, &builds[0], "1.0", "1.1");
    let out = s.run(&exe, ["version"]);
    let traces = update_traces(&out);
    assert_traced(&traces, "no range support");
    assert!(
        !traces.iter().any(|t| t.contains("Incremental update: ")),
        "{traces:#?}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
}

/// 1.0 installed and 1.1 announced on the test server, 1.1 served by the
/// route `serve` makes of its bytes.
fn on_test_server(
    extra: &[&str],
    serve: impl Fn(Vec<u8>) -> Route,
) -> (Scratch, Server, PathBuf, Vec<Vec<u8>>) {
    let s = Scratch::new();
    let server = Server::start();
    let builds = build_site(
        &s,
        server.port,
        &[("1.0", &unchanged), ("1.1", &one_small_file_changed)],
        extra,
    );
    let exe = install(&s, &builds[0], "1.0", "1.1");
    let toml = fs::read(s.path("site/1.1/update.toml")).expect("read");
    server.route("/1.0/update.toml", Route::file(toml));
    server.route(&format!("/1.1/{NAME}.bin"), serve(builds[1].clone()));
    (s, server, exe, builds)
}

const ETAG: &str = "\"v11\"";

fn lying(lie: Lie) -> impl Fn(Vec<u8>) -> Route {
    move |body| Route::Lying {
        body,
        etag: ETAG.into(),
        lie,
    }
}

#[test]
fn a_server_that_lies_in_a_range_response_gets_the_whole_build_downloaded() {
    for (lie, reason) in [
        (Lie::WrongBytes, "do not match its hash"),
        (Lie::WrongRange, "another range"),
        (Lie::WholeFile, "HTTP status 200"),
    ] {
        let (s, _server, exe, builds) = on_test_server(&[], lying(lie));
        let out = s.run(&exe, ["version"]);
        let traces = update_traces(&out);
        assert_traced(&traces, "Incremental update failed");
        assert_traced(&traces, reason);
        assert!(
            traces.contains(&"Updated.".to_owned()),
            "{lie:?}: {traces:#?}"
        );
        assert_eq!(fs::read(&exe).expect("read"), builds[1], "{lie:?}");
        // 1.0, kept for a rollback by the update, is not a leftover.
        let left: Vec<_> = fs::read_dir(exe.parent().expect("dir"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".previous"))
            .collect();
        assert_eq!(left.len(), 1, "{lie:?}: {left:?}");
    }
}

#[test]
fn an_interrupted_incremental_update_resumes() {
    // The assembly is cut short, then so is the whole download it falls
    // back to (a first part of the build kept): the next launch assembles
    // the rest, from where the kept part ends.
    let (s, server, exe, builds) = on_test_server(&[], |body| {
        Route::Sequence(vec![
            Route::Lying {
                body: body.clone(),
                etag: ETAG.into(),
                lie: Lie::CutShort,
            },
            Route::CutShort {
                body: body.clone(),
                etag: Some(ETAG.into()),
                // Past the stub, inside the next part.
                send: body.len() / 2,
            },
            Route::File {
                body,
                etag: Some(ETAG.into()),
                ranges: true,
            },
        ])
    });
    // The app lives until the updater is done: none of it handed off.
    let first = run_until_ready(&s, &exe);
    let traces = update_traces(&first);
    assert_traced(&traces, "Incremental update failed");
    assert_traced(&traces, "kept for resuming");
    assert_eq!(fs::read(&exe).expect("read"), builds[0], "not yet");
    // The whole download it fell back to continued the kept part.
    assert!(
        server.requests().iter().any(|r| r
            .range
            .as_deref()
            .is_some_and(|r| r.ends_with('-') && !r.starts_with("bytes=-"))),
        "{:#?}",
        server.requests()
    );

    let before_second = server.requests().len();
    let second = s.run(&exe, ["version"]);
    let traces = update_traces(&second);
    assert_traced(&traces, "Resuming the incremental update at byte ");
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
    // The second launch asked only for ranges beyond what was kept.
    let resumed_at: u64 = traces
        .iter()
        .find_map(|t| t.strip_prefix("Resuming the incremental update at byte "))
        .and_then(|t| t.trim_end_matches('.').parse().ok())
        .expect("offset");
    assert!(resumed_at > 0);
    let asked = server.range_starts_after(before_second);
    assert!(
        asked.iter().all(|&start| start >= resumed_at),
        "{asked:?} from {resumed_at}"
    );
}

#[test]
fn a_signed_build_updates_incrementally() {
    let keys = Scratch::new();
    let base = keys.path("release");
    let made = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let (secret, public) = (keys.path("release.key"), keys.path("release.pub"));
    let (s, _server, exe, builds) = on_test_server(
        &[
            "--public-key",
            public.to_str().expect("utf8"),
            "--key",
            secret.to_str().expect("utf8"),
        ],
        |body| Route::File {
            body,
            etag: Some(ETAG.into()),
            ranges: true,
        },
    );
    let out = s.run(&exe, ["version"]);
    let traces = update_traces(&out);
    assert_traced(&traces, "Assembled: ");
    assert_traced(&traces, "Good signature by trusted key");
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
}

#[test]
fn a_damaged_running_executable_is_repaired_from_the_server() {
    let (s, _server, exe, builds) = on_test_server(&[], |body| Route::File {
        body,
        etag: Some(ETAG.into()),
        ranges: true,
    });
    // Unpacked once, then a byte of a frame that 1.1 shares is damaged on
    // disk: launches still run from the cache.
    let first = s
        .command(&exe)
        .arg("version")
        .env("AUTO_UPDATE_DISABLE", "1")
        .output()
        .expect("run");
    assert_eq!(stdout(&first), "1.0\n");
    let meta = inspect(&exe);
    let frames = meta["frame_index"].as_array().expect("frames");
    let payload_offset = meta["payload_offset"].as_u64().expect("offset");
    // The largest frame: one of the libraries, the same in both builds.
    let (mut at, mut largest) = (payload_offset, (0, 0));
    for frame in frames {
        let len = frame[0].as_u64().expect("len");
        if len > largest.1 {
            largest = (at, len);
        }
        at += len;
    }
    let mut bytes = fs::read(&exe).expect("read");
    let damaged = (largest.0 + largest.1 / 2) as usize;
    bytes[damaged] ^= 0x55;
    write_file(&exe, &bytes, true);

    let out = s.run(&exe, ["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert_traced(
        &traces,
        &format!("part at byte {} does not match its hash", largest.0),
    );
    assert_traced(&traces, "1 repaired");
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
}

#[test]
fn inspect_against_names_the_cost_of_an_update() {
    let s = Scratch::new();
    let builds = build_site(
        &s,
        1,
        &[("1.0", &unchanged), ("1.1", &one_small_file_changed)],
        &[],
    );
    let out = tools([
        "inspect".as_ref(),
        site_build(&s, "1.1").as_os_str(),
        "--against".as_ref(),
        site_build(&s, "1.0").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("update          AutoUpdatingTest 1.0 -> 1.1"),
        "{text}"
    );
    assert!(text.contains("from the installed build"), "{text}");
    let json = predicted(&site_build(&s, "1.0"), &site_build(&s, "1.1"));
    assert_eq!(json["file_len"].as_u64(), Some(builds[1].len() as u64));
    assert!(json["fetched_bytes"].as_u64().expect("bytes") < builds[1].len() as u64 / 10);
    // Against itself: only the end is fetched.
    let same = predicted(&site_build(&s, "1.1"), &site_build(&s, "1.1"));
    assert_eq!(same["requests"], 1, "{same:#}");
}

/// `build` with its metadata rewritten by `edit` (trailer and CRCs made
/// consistent again): what a hostile server can serve as a build's end.
fn with_metadata(build: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let trailer = &build[build.len() - 64..];
    let field = |at: usize| u64::from_le_bytes(trailer[at..at + 8].try_into().expect("8")) as usize;
    let (metadata_offset, metadata_len) = (field(24), field(32));
    let text =
        std::str::from_utf8(&build[metadata_offset..metadata_offset + metadata_len]).expect("utf8");
    let edited = edit(text);
    let mut out = build[..metadata_offset].to_vec();
    out.extend_from_slice(edited.as_bytes());
    let mut new_trailer = trailer.to_vec();
    new_trailer[32..40].copy_from_slice(&(edited.len() as u64).to_le_bytes());
    new_trailer[44..48].copy_from_slice(&crc32fast::hash(edited.as_bytes()).to_le_bytes());
    let crc = crc32fast::hash(&new_trailer[4..]);
    new_trailer[0..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&new_trailer);
    out
}

#[test]
fn an_end_whose_frames_do_not_cover_the_payload_is_not_assembled() {
    // A hostile build lists the running build's frames a hundred times (by
    // their real hashes): assembling it would write far past its announced
    // size. Its end is not used; the build is downloaded whole, refused
    // by its checks, and nothing is left.
    let (s, server, exe, builds) = on_test_server(&[], |body| Route::File {
        body,
        etag: Some(ETAG.into()),
        ranges: true,
    });
    let hostile = with_metadata(&builds[1], |text| {
        let frames_line = text
            .lines()
            .find(|l| l.starts_with("frames = "))
            .expect("frames");
        let repeated = format!(
            "frames = [{}]",
            vec![frames_line["frames = [".len()..frames_line.len() - 1].to_owned(); 100].join(", ")
        );
        let hashes_line = text
            .lines()
            .find(|l| l.starts_with("frame_hashes = "))
            .expect("hashes");
        let hashes = STANDARD
            .decode(&hashes_line.as_bytes()["frame_hashes = \"".len()..hashes_line.len() - 1])
            .expect("base64");
        let hashes = format!("frame_hashes = \"{}\"", STANDARD.encode(hashes.repeat(100)));
        let size_line = text
            .lines()
            .find(|l| l.starts_with("unpacked_size = "))
            .expect("size");
        text.replace(frames_line, &repeated)
            .replace(hashes_line, &hashes)
            // Room in the declared sizes for the frames' tar bytes.
            .replace(size_line, "unpacked_size = 1099511627776")
    });
    let url = server.url(&format!("/1.1/{NAME}.bin"));
    let toml = format!(
        "url = \"{url}\"\ncrc32 = {}\nsize = {}\nversion = \"1.1\"\n",
        crc32fast::hash(&hostile),
        hostile.len()
    );
    server.route("/1.0/update.toml", Route::file(toml.into_bytes()));
    server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::File {
            body: hostile,
            etag: Some(ETAG.into()),
            ranges: true,
        },
    );
    let out = s.run(&exe, ["version"]);
    let traces = update_traces(&out);
    assert_traced(&traces, "no end of the build");
    assert!(
        !traces.iter().any(|t| t.contains("Incremental update: ")),
        "{traces:#?}"
    );
    assert_traced(&traces, "is not a valid packed executable");
    assert_eq!(fs::read(&exe).expect("read"), builds[0]);
    let left: Vec<_> = fs::read_dir(exe.parent().expect("dir"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
