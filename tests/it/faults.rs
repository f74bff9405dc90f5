//! Reliability under faults: kill -9 at random moments, full disks,
//! read-only folders, a hostile server, many instances at once, a real
//! static server (nginx), and a soak. The promise checked after every fault:
//! the executable on disk runs (the old build or the new one, byte for byte),
//! the cache holds no half-unpacked build a launch would trust, and no stray
//! files remain but a resumable partial download.
//!
//! Random moments come from a seeded generator; the seed is printed, and
//! `ONEFILE_FAULT_SEED` replays it. `ONEFILE_FAULT_TRIALS` sets the trials per
//! scenario (CI runs a few; `make soak` runs the long version).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::nginx::Nginx;
use crate::server::Route;
use crate::support::*;
use crate::update::{
    NAME, Published, expect_failure, payload_offset, plant_partial, publish, publish_apps,
};

/// A small seeded xorshift generator: reproducible trials.
struct Rng(u64);

impl Rng {
    fn from_env(scenario: &str) -> Rng {
        let seed = std::env::var("ONEFILE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{scenario}: ONEFILE_FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn trials(default: usize) -> usize {
    std::env::var("ONEFILE_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Build folders in the cache that a launch would trust must be complete.
fn assert_cache_trustworthy(cache: &Path, app: &str, tree: &Path) {
    let dir = cache.join(app);
    let Ok(listing) = fs::read_dir(&dir) else {
        return;
    };
    let want = snapshot(tree);
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !name.starts_with('.') {
            assert_eq!(
                snapshot(&e.path()),
                want,
                "build folder {name} is incomplete"
            );
        }
    }
}

fn leftovers(cache: &Path, app: &str) -> Vec<String> {
    fs::read_dir(cache.join(app))
        .map(|l| {
            l.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-") || n.starts_with(".trash-"))
                .collect()
        })
        .unwrap_or_default()
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kill_during_cold_unpacking() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    for i in 0..120 {
        write_file(
            &app.join(format!("lib/m{i:03}.so")),
            &noise(150_000, i),
            i % 7 == 0,
        );
    }
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let started = Instant::now();
    assert_eq!(stdout(&s.run(&exe, ["print", "ok"])), "ok\n");
    let cold_us = started.elapsed().as_micros() as u64;
    let mut rng = Rng::from_env("kill_during_cold_unpacking");
    let (mut interrupted, mut finished_or_not_started) = (0, 0);
    for trial in 0..trials(6) {
        let _ = fs::remove_dir_all(s.cache());
        let mut child = s.spawn_quiet(&exe, ["print", "ok"]);
        std::thread::sleep(Duration::from_micros(rng.below(cold_us * 12 / 10)));
        kill9(&mut child);
        assert_cache_trustworthy(&s.cache(), "probeapp", &app);
        if leftovers(&s.cache(), "probeapp").is_empty() {
            finished_or_not_started += 1;
        } else {
            interrupted += 1;
        }
        let out = s.run(&exe, ["print", "ok"]);
        assert_eq!(stdout(&out), "ok\n", "trial {trial}: {}", stderr(&out));
        assert_cache_trustworthy(&s.cache(), "probeapp", &app);
        assert_eq!(
            leftovers(&s.cache(), "probeapp"),
            Vec::<String>::new(),
            "trial {trial}"
        );
    }
    eprintln!(
        "kill_during_cold_unpacking: {interrupted} kills mid-unpacking, {finished_or_not_started} before or after"
    );
}

/// Published 1.0 and 1.1 with an 8 MB file each, so an update takes a
/// while; 1.1 is served with an ETag and ranges, so it resumes.
fn publish_with_blob(extra: &[&str]) -> Published {
    let mut args = vec!["--level", "1"];
    args.extend_from_slice(extra);
    let p = publish_apps(&args, |app| {
        write_file(&app.join("data/blob"), &noise(8 << 20, 77), false)
    });
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::File {
            body: p.v11.clone(),
            etag: Some("\"v11\"".into()),
            ranges: true,
        },
    );
    p
}

fn assert_is_one_of_the_builds(p: &Published, trial: usize) {
    let bytes = fs::read(&p.exe).expect("read");
    assert!(
        bytes == p.v10 || bytes == p.v11,
        "trial {trial}: the executable is neither build"
    );
}

#[test]
fn kill_during_update() {
    let p = publish_with_blob(&[]);
    p.announce_11();
    // Time one whole update to spread the kills over it.
    let _ = p.run(&["exit", "0"]); // unpack 1.0, update
    let started = Instant::now();
    write_file(&p.exe, &p.v10, true);
    let _ = p.run(&["exit", "0"]);
    let update_us = started.elapsed().as_micros() as u64;
    let mut rng = Rng::from_env("kill_during_update");
    // Old build and no download yet / old build and a (partial) download /
    // new build installed.
    let mut outcomes = [0; 3];
    for trial in 0..trials(8) {
        write_file(&p.exe, &p.v10, true);
        let mut child = p.s.spawn_quiet(&p.exe, ["exit", "0"]);
        std::thread::sleep(Duration::from_micros(rng.below(update_us * 12 / 10)));
        kill9(&mut child);
        assert_is_one_of_the_builds(&p, trial);
        p.assert_clean(true);
        let partial = p.has_download();
        match (fs::read(&p.exe).expect("read") == p.v11, partial) {
            (true, _) => outcomes[2] += 1,
            (false, true) => outcomes[1] += 1,
            (false, false) => outcomes[0] += 1,
        }
        // The next launches finish the job (resuming where they can).
        for _ in 0..2 {
            if fs::read(&p.exe).expect("read") == p.v11 {
                break;
            }
            let out = p.run(&["exit", "0"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "trial {trial}: {}",
                stderr(&out)
            );
        }
        assert!(
            fs::read(&p.exe).expect("read") == p.v11,
            "trial {trial}: not updated"
        );
        p.assert_clean(false);
    }
    eprintln!(
        "kill_during_update: killed before any download {}, with a download on disk {}, after the install {}",
        outcomes[0], outcomes[1], outcomes[2]
    );
}

#[test]
fn file_size_limit_during_download() {
    let p = publish(&[]);
    p.announce_11();
    assert!(
        p.s.command(&p.exe)
            .args(["exit", "0"])
            .env("AUTO_UPDATE_DISABLE", "1")
            .status()
            .expect("run")
            .success()
    );
    let mut cmd = p.s.command(&p.exe);
    cmd.arg("version");
    limit_file_size(&mut cmd, 1 << 20);
    // A download handed off at the app's exit goes on in the background
    // updater, under the same limit: its traces count, and the checks
    // below wait for it.
    let out = with_background_traces(cmd.output().expect("run"));
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("File too large")),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
    p.assert_clean(false);
}

#[test]
fn full_disk_during_download() {
    let p = publish(&[]);
    p.announce_11();
    let dir = p.exe.parent().expect("dir").to_owned();
    // Room for the old executable and a third of the new one.
    let room = (p.v10.len() + p.v11.len() / 3) as u64 / 1024;
    if !remount(&dir, false, room) {
        return;
    }
    let out = p.run(&["version"]);
    let after = fs::read(&p.exe).expect("read");
    let strays: Vec<String> = fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    unmount(&dir);
    assert_eq!(stdout(&out), "1.0\n");
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("No space left")),
        "{}",
        stderr(&out)
    );
    assert_eq!(after, p.v10);
    assert_eq!(strays, [format!("{NAME}.bin")]);
}

#[test]
fn full_disk_while_unpacking_leaves_nothing() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("data/big"), &noise(6 << 20, 5), false);
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let cache = s.cache();
    fs::create_dir_all(&cache).expect("mkdir");
    if !remount(&cache, false, 4 << 10) {
        return;
    }
    let out = s.run(&exe, ["print", "x"]);
    let left: Vec<String> = fs::read_dir(cache.join("probeapp"))
        .map(|l| {
            l.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    unmount(&cache);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        messages(&out)[0].contains("disk is full"),
        "{}",
        stderr(&out)
    );
    assert!(left.iter().all(|n| n.ends_with(".lock")), "left {left:?}");
}

#[test]
fn read_only_cache_still_runs_what_it_holds() {
    let s = Scratch::new();
    let exe = {
        let app = s.probe_app("app", "1.0");
        let exe = s.path("probe.bin");
        pack(&app, &exe, &[]);
        exe
    };
    assert_eq!(stdout(&s.run(&exe, ["print", "warm"])), "warm\n");
    if !remount(&s.cache(), true, 64 << 10) {
        return;
    }
    let out = s.run(&exe, ["print", "still runs"]);
    unmount(&s.cache());
    assert_eq!(stdout(&out), "still runs\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
}

#[test]
fn server_faults() {
    let p = publish(&["--update-exit-wait", "1"]);
    p.announce_11();
    let bin = format!("/1.1/{NAME}.bin");
    let half = p.v11.len() / 2;

    p.server.route(
        &bin,
        Route::Reset {
            body: p.v11.clone(),
            send: half,
        },
    );
    expect_failure(&p, "Download of");
    p.assert_clean(false);

    // More bytes than update.toml announces: stopped at the announced size.
    let text = String::from_utf8(p.toml11.clone()).expect("utf8");
    let size_line = text.lines().find(|l| l.starts_with("size")).expect("size");
    let smaller = text.replace(size_line, &format!("size = {}", p.v11.len() - 100));
    p.server
        .route("/1.0/update.toml", Route::file(smaller.into_bytes()));
    p.server.route(&bin, Route::file(p.v11.clone()));
    expect_failure(&p, "expected; discarded");
    p.assert_clean(false);
    p.announce_11();

    // A stall after some bytes, and a slow drip: the launcher leaves on time.
    for route in [
        Route::StallAfter {
            body: p.v11.clone(),
            send: half,
        },
        Route::Drip {
            body: p.v11.clone(),
            chunk: 1000,
            delay_ms: 20,
        },
    ] {
        p.server.route(&bin, route);
        let started = Instant::now();
        let out = p.s.run_leaving_background(&p.exe, ["version"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        // What the launcher left, a background updater would go on with:
        // stopped here, so that the next case starts from the same state.
        stop_background_updater(&out);
        assert_eq!(stdout(&out), "1.0\n", "the app ran: {}", stderr(&out));
        assert!(
            update_traces(&out)
                .iter()
                .any(|t| t.starts_with("Still busy")),
            "{}",
            stderr(&out)
        );
        p.assert_still_10();
        let_time_pass(&p.s.cache());
        p.assert_clean(true);
    }

    // An ETag that changes between attempts: the partial is not reused.
    p.server.route(
        &bin,
        Route::Sequence(vec![
            Route::CutShort {
                body: p.v11.clone(),
                etag: Some("\"a\"".into()),
                send: half,
            },
            Route::File {
                body: p.v11.clone(),
                etag: Some("\"b\"".into()),
                ranges: true,
            },
        ]),
    );
    let _ = p.run(&["version"]);
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}

#[test]
fn more_server_faults() {
    let p = publish(&[]);
    // A redirect loop.
    p.server
        .route("/1.0/update.toml", Route::Redirect(p.server.url("/loop")));
    p.server
        .route("/loop", Route::Redirect(p.server.url("/1.0/update.toml")));
    expect_failure(&p, "Cannot fetch");
    // A truncated update.toml.
    p.server.route(
        "/1.0/update.toml",
        Route::CutShort {
            body: p.toml11.clone(),
            etag: None,
            send: p.toml11.len() / 2,
        },
    );
    expect_failure(&p, "update.toml");
    // A gzip-encoded download nobody asked for: its bytes are not the build.
    p.announce_11();
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(p.s.path(&format!("site/1.1/{NAME}.bin")))
        .output()
        .expect("gzip");
    p.server
        .route(&format!("/1.1/{NAME}.bin"), Route::Gzipped(gz.stdout));
    expect_failure(&p, "discarded");
    p.assert_clean(false);
}

#[test]
fn sixteen_cold_instances_while_an_update_is_published() {
    let p = publish(&[]);
    let mut children = Vec::new();
    for i in 0..16 {
        if i == 8 {
            p.announce_11();
        }
        children.push(
            p.s.command(&p.exe)
                .args(["version", "0.3"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        );
    }
    // Each with the traces of the background updater it handed off to (if
    // any), once that has ended.
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| with_background_traces(c.wait_with_output().expect("wait")))
        .collect();
    let mut unpacked = 0;
    let mut updated = 0;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        let v = stdout(o);
        assert!(v == "1.0\n" || v == "1.1\n", "{v:?}");
        unpacked += stderr(o).matches("ONEFILE: Unpacked").count();
        updated += update_traces(o).iter().filter(|t| *t == "Updated.").count();
    }
    assert!(
        unpacked <= 2,
        "each build unpacked at most once ({unpacked})"
    );
    assert!(updated <= 1);
    // Downloads from the start: a background updater resuming what a
    // launcher began asks from where it stopped.
    let downloads = p
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.path.ends_with(".bin")
                && r.range
                    .as_deref()
                    .is_none_or(|range| range.starts_with("bytes=0-"))
        })
        .count();
    assert!(downloads <= 1, "{downloads} downloads");
    // The final executable is a whole build and verifies.
    let verify = tools(["verify".as_ref(), p.exe.as_os_str()]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    if updated == 0 {
        let out = p.run(&["version"]);
        assert_updated(&out);
    }
    assert_eq!(p.version_now(), "1.1");
    p.assert_clean(false);
}

#[test]
fn update_and_resume_against_nginx() {
    let s = Scratch::new();
    let site = s.path("site");
    let Some(nginx) = Nginx::start(&site, &s.path("nginx")) else {
        skip("nginx is not installed (make deps installs it)");
        return;
    };
    let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", nginx.port);
    let mut builds = Vec::new();
    for version in ["1.0", "1.1"] {
        let app = s.probe_app(&format!("app-{version}"), version);
        let out = site.join(format!("{version}/{NAME}.bin"));
        let toml = site.join(format!("{version}/update.toml"));
        pack(
            &app,
            &out,
            &[
                "--name",
                NAME,
                "--version",
                version,
                "--update-url-spec",
                &spec,
                "--auto-update-toml-file",
                toml.to_str().expect("utf8"),
            ],
        );
        builds.push(fs::read(&out).expect("read"));
    }
    fs::copy(site.join("1.1/update.toml"), site.join("1.0/update.toml")).expect("publish");
    let exe = s.path(&format!("user/{NAME}.bin"));
    // The state a download killed halfway leaves: half the file, and the
    // resume information with nginx's own ETag.
    write_file(&exe, &builds[0], true);
    let first = s.run(&exe, ["version"]);
    assert_updated(&first);
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
    write_file(&exe, &builds[0], true);
    // 1.0, kept for a rollback by the update, is not a leftover.
    let resume_info = fs::read_dir(exe.parent().expect("dir"))
        .expect("list")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".previous"))
        .count();
    assert_eq!(resume_info, 1, "nothing left over by the first update");
    let head = Command::new("curl")
        .args([
            "-sI",
            &format!("http://127.0.0.1:{}/1.1/{NAME}.bin", nginx.port),
        ])
        .output()
        .expect("curl");
    let etag = stdout(&head)
        .lines()
        .find_map(|l| l.strip_prefix("ETag: ").map(|v| v.trim().to_owned()))
        .expect("nginx sends an ETag");
    // Inside the part after the stub.
    let half = payload_offset(&builds[1]) + 1000;
    plant_partial(
        &s.cache(),
        &exe,
        &builds[1][..half],
        &format!("http://127.0.0.1:{}/1.1/{NAME}.bin", nginx.port),
        &builds[1],
        &etag,
    );
    let out = s.run(&exe, ["version"]);
    let traces = update_traces(&out);
    // nginx serves ranges: the rest is assembled, from the start of the
    // part the kept half ends in.
    let resumed_at: usize = traces
        .iter()
        .find_map(|t| t.strip_prefix("Resuming the incremental update at byte "))
        .and_then(|t| t.strip_suffix('.')?.parse().ok())
        .unwrap_or_else(|| panic!("{traces:#?}"));
    assert!(
        resumed_at > 0 && resumed_at <= half,
        "{resumed_at} of {half}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(fs::read(&exe).expect("read"), builds[1]);
    let log = fs::read_to_string(&nginx.log).expect("access log");
    assert!(log.contains("\" 206 "), "nginx served a range:\n{log}");
}

/// 300 cycles (`ONEFILE_SOAK_CYCLES`) of launch/update flipping between two
/// published builds, with random kills between and during launches. Run by
/// `make soak`; too long for every CI run.
#[test]
#[ignore = "long: run with `make soak`"]
fn soak_launch_update_flip() {
    let p = publish_with_blob(&["--allow-downgrade"]);
    // Manifests without versions, and builds that allow downgrades, so that
    // the flip back is allowed.
    let strip = |t: &[u8]| -> Vec<u8> {
        String::from_utf8_lossy(t)
            .lines()
            .filter(|l| !l.starts_with("version"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let (to10, to11) = (strip(&p.toml10), strip(&p.toml11));
    let cycles: usize = std::env::var("ONEFILE_SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng::from_env("soak_launch_update_flip");
    let (mut kills, mut updates) = (0, 0);
    for cycle in 0..cycles {
        let target = if cycle % 2 == 0 { &to11 } else { &to10 };
        p.server
            .route("/1.0/update.toml", Route::file(target.clone()));
        p.server
            .route("/1.1/update.toml", Route::file(target.clone()));
        let before = fs::read(&p.exe).expect("read");
        let mut child = p.s.spawn_quiet(&p.exe, ["exit", "0"]);
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(150_000)));
            kill9(&mut child);
            kills += 1;
        } else {
            assert!(child.wait().expect("wait").success(), "cycle {cycle}");
        }
        assert_is_one_of_the_builds(&p, cycle);
        let out = p.run(&["exit", "0"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cycle {cycle}: {}",
            stderr(&out)
        );
        if fs::read(&p.exe).expect("read") != before {
            updates += 1;
        }
    }
    eprintln!("soak: {cycles} cycles, {kills} kills, {updates} updates");
    let verify = tools(["verify".as_ref(), p.exe.as_os_str()]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let builds: Vec<String> = fs::read_dir(p.s.cache().join(NAME))
        .expect("list")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(builds.len() <= 2, "cache holds {builds:?}");
    assert!(
        builds.iter().all(|b| !b.starts_with('.')),
        "temporaries left: {builds:?}"
    );
    // A last, clean launch settles any resumable partial download.
    let _ = p.run(&["exit", "0"]);
    p.assert_clean(false);
}

/// SIGKILL does not lose what the kernel has cached; power loss does. What
/// can be checked without pulling the plug is the order of the calls that
/// make data durable, so that is what this checks, with strace: the
/// download is fsynced before it is renamed over the executable, the folder
/// after; an unpacked build is synced (syncfs) before it is renamed into the
/// cache.
#[test]
fn durability_order_of_an_update_and_an_unpack() {
    if Command::new("strace").arg("-V").output().is_err() {
        skip("strace is not installed (make deps installs it)");
        return;
    }
    let p = publish(&[]);
    p.announce_11();
    let trace = p.s.path("strace.txt");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,syncfs,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(&p.exe)
        .arg("exit")
        .arg("0")
        .env("ONEFILE_CACHE_DIR", p.s.cache())
        .output()
        .expect("strace");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(&p.exe).expect("read"),
        p.v11,
        "the update happened"
    );
    let calls: Vec<String> = fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map_or(l, |(_, call)| call)
                .trim()
                .to_owned()
        })
        .collect();
    let position = |what: &dyn Fn(&str) -> bool| calls.iter().position(|c| what(c));
    let unpacked =
        position(&|c| c.starts_with("rename") && c.contains(".tmp-1.0-")).expect("cache rename");
    let synced_fs = position(&|c| c.starts_with("syncfs(")).expect("syncfs");
    assert!(synced_fs < unpacked, "{calls:#?}");
    let installed = position(&|c| c.starts_with("rename") && c.contains(".download\""))
        .expect("install rename");
    assert!(
        calls[..installed].iter().any(|c| c.starts_with("fsync(")),
        "the download is synced before the rename: {calls:#?}"
    );
    assert!(
        calls[installed + 1..]
            .iter()
            .any(|c| c.starts_with("fsync(")),
        "the folder is synced after the rename: {calls:#?}"
    );
}
