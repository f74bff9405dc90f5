//! The new build's cache folder prepared by the update sidecar while the
//! app still runs: the first launch after an update starts warm, the
//! folder is private and complete, an app that exits mid-way delays
//! nothing and leaves nothing half-built, a launch of the new build during
//! the preparation gets a whole folder, a build that fails its checks is
//! not prepared, and one prepared but not installed is removed by the
//! cache's clean-up like any unused build.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;

use crate::support::*;
use crate::update::{NAME, Published, publish, publish_apps};

/// What the sidecar traces when it starts preparing the new build (before
/// it waits for the app), when it starts decoding, and when it is done.
const PREPARING: &str = "Preparing '";
const DECODING: &str = "Preparing the new build: unpacking";
const PREPARED: &str = "Prepared '";

/// Runs the user's executable (1.0) with an app that lives until its stdin
/// closes, and closes it once the `AUTO UPDATE: ` traces so far satisfy
/// `until` (or once the sidecar waits for the app without having started a
/// preparation: a launcher that prepares nothing). Returns every trace line
/// (both prefixes kept) and whether the launcher exited 0.
fn run_10_until(p: &Published, until: impl Fn(&[String]) -> bool) -> (Vec<String>, bool) {
    let mut child =
        p.s.command(&p.exe)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let stderr_pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take();
    let mut lines = Vec::new();
    let mut updates = Vec::new();
    while let Ok(line) = rx.recv() {
        if let Some(trace) = line.strip_prefix("AUTO UPDATE: ") {
            updates.push(trace.to_owned());
        }
        lines.push(line);
        let idle = updates.last().is_some_and(|t| t == "May not yet update.")
            && !updates.iter().any(|t| t.starts_with(PREPARING));
        if stdin.is_some() && (until(&updates) || idle) {
            // The app reads its stdin to the end, then exits.
            stdin = None;
        }
    }
    drop(stdin);
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    (lines, status.success())
}

fn update_lines(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("AUTO UPDATE: "))
        .collect()
}

fn has(lines: &[String], part: &str) -> bool {
    lines.iter().any(|l| l.contains(part))
}

fn done_preparing(traces: &[String]) -> bool {
    traces
        .iter()
        .any(|t| t.starts_with(PREPARED) || t.starts_with("Cannot prepare"))
}

/// The folder of build `version` in the test app's cache, if there is one.
fn build_dir(p: &Published, version: &str) -> Option<PathBuf> {
    let app = p.s.cache().join(NAME);
    fs::read_dir(&app)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("{version}-")) && !n.ends_with(".lock"))
        .map(|n| app.join(n))
}

/// Names in the test app's cache folder starting with `prefix`.
fn cache_names(p: &Published, prefix: &str) -> Vec<String> {
    fs::read_dir(p.s.cache().join(NAME))
        .map(|listing| {
            listing
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `payload-tools unpack` of `build` (bytes of a packed file), as a tree.
fn unpacked(p: &Published, build: &[u8], tag: &str) -> Vec<(String, String)> {
    let exe = p.s.path(&format!("reference-{tag}.bin"));
    let out_dir = p.s.path(&format!("reference-{tag}"));
    fs::write(&exe, build).expect("write");
    let out = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert!(out.status.success(), "unpack: {}", stderr(&out));
    snapshot(&out_dir)
}

/// 1.0 and 1.1 with `files` files of `size` bytes of noise each besides
/// the probe: a payload whose unpacking takes a while.
fn publish_large(files: usize, size: usize, extra: &[&str]) -> Published {
    publish_apps(extra, |app: &Path| {
        let version = fs::read_to_string(app.join("bin/version.txt")).expect("version");
        let seed = if version.trim() == "1.0" { 1 } else { 2 };
        for i in 0..files {
            write_file(
                &app.join(format!("data/{:02}/{i}.bin", i % 32)),
                &noise(size, seed * 100_000 + i as u64),
                false,
            );
        }
    })
}

#[test]
fn the_first_launch_after_an_update_is_warm() {
    let p = publish(&[]);
    p.announce_11();
    let (lines, ok) = run_10_until(&p, done_preparing);
    assert!(ok, "{lines:#?}");
    assert!(has(&lines, "AUTO UPDATE: Updated."), "{lines:#?}");

    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    let traces = stderr(&out);
    assert!(!traces.contains("Cold start"), "{traces}");
    assert!(
        traces.contains("ONEFILE: Warm start: already unpacked."),
        "{traces}"
    );
    assert!(
        update_lines(&lines).iter().any(|t| t.starts_with(PREPARED)),
        "{lines:#?}"
    );
}

#[test]
fn the_prepared_folder_is_private_and_complete() {
    let p = publish_apps(&[], |app: &Path| {
        write_file(&app.join("share/notes.txt"), b"notes\n", false);
        write_file(&app.join("share/deep/more.bin"), &noise(70_000, 7), false);
        std::os::unix::fs::symlink("deep/more.bin", app.join("share/link")).expect("symlink");
    });
    p.announce_11();
    let checked = std::cell::RefCell::new(None);
    // Looked at while the app still runs: nothing but the preparation has
    // touched the folder.
    let (lines, ok) = run_10_until(&p, |traces| {
        let done = traces.iter().any(|t| t.starts_with(PREPARED));
        if done && checked.borrow().is_none() {
            let dir = build_dir(&p, "1.1").expect("no folder of 1.1");
            let mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
            *checked.borrow_mut() = Some((mode, snapshot(&dir)));
        }
        done || traces.iter().any(|t| t.starts_with("Cannot prepare"))
    });
    assert!(ok, "{lines:#?}");
    let (mode, tree) = checked
        .into_inner()
        .unwrap_or_else(|| panic!("the new build was not prepared: {lines:#?}"));
    assert_eq!(mode, 0o700, "mode {mode:o}");
    assert_eq!(tree, unpacked(&p, &p.v11, "11"));
    assert!(cache_names(&p, ".tmp-").is_empty());
}

#[test]
fn an_app_that_exits_while_the_preparation_waits_is_not_delayed() {
    let p = publish(&["--update-exit-wait", "0.2"]);
    p.announce_11();
    // 1.0 unpacked first, so that its launch needs no lock.
    let warm_up =
        p.s.command(&p.exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
    assert_eq!(stdout(&warm_up), "1.0\n", "{}", stderr(&warm_up));
    // The app's lock, held as an unpacking launcher would for as long as
    // this test wants: the preparation is certainly unfinished when the app
    // exits.
    let lock = fs::File::open(p.s.cache().join(NAME).join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    let (lines, ok) = run_10_until(&p, |traces| traces.iter().any(|t| t.starts_with(PREPARING)));
    drop(lock);
    assert!(ok, "{lines:#?}");
    let updates = update_lines(&lines);
    assert!(
        updates.iter().any(|t| t.starts_with(PREPARING)),
        "{lines:#?}"
    );
    assert!(updates.contains(&"Updated."), "{lines:#?}");
    assert!(
        updates.iter().any(|t| t.starts_with("Still busy")),
        "{lines:#?}"
    );
    assert!(
        !updates.iter().any(|t| t.starts_with(PREPARED)),
        "{lines:#?}"
    );
    assert_eq!(build_dir(&p, "1.1"), None);

    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("Cold start"), "{}", stderr(&out));
}

#[test]
fn an_app_that_exits_mid_unpacking_leaves_nothing_half_built() {
    let p = publish_large(1500, 16 * 1024, &["--update-exit-wait", "0.05"]);
    p.announce_11();
    let (lines, ok) = run_10_until(&p, |traces| {
        traces.iter().any(|t| t.starts_with(DECODING)) || done_preparing(traces)
    });
    assert!(ok, "{lines:#?}");
    let updates = update_lines(&lines);
    assert!(
        updates.iter().any(|t| t.starts_with(DECODING)),
        "{lines:#?}"
    );
    assert!(updates.contains(&"Updated."), "{lines:#?}");
    let finished = updates.iter().any(|t| t.starts_with(PREPARED));
    let stopped = updates.iter().any(|t| t.starts_with("Still busy"));
    // The preparation finished within the exit wait, or the launcher left
    // it unfinished.
    assert!(finished || stopped, "{lines:#?}");
    // A folder at the build's name is whole, whenever the process ended.
    let prepared = build_dir(&p, "1.1");
    assert!(prepared.is_some() || !finished, "{lines:#?}");
    if let Some(dir) = &prepared {
        assert_eq!(snapshot(dir), unpacked(&p, &p.v11, "11"));
    }

    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    let traces = stderr(&out);
    if prepared.is_some() {
        assert!(traces.contains("Warm start: already unpacked."), "{traces}");
    } else {
        assert!(traces.contains("Cold start"), "{traces}");
    }
    // The next launch's cleanup removed whatever the stopped preparation
    // left, and the folder it used is whole.
    assert!(cache_names(&p, ".tmp-").is_empty(), "{traces}");
    let dir = build_dir(&p, "1.1").expect("folder of 1.1");
    assert_eq!(snapshot(&dir), unpacked(&p, &p.v11, "11-again"));
}

#[test]
fn a_launch_of_the_new_build_during_the_preparation_gets_a_whole_folder() {
    let p = publish_large(1000, 16 * 1024, &[]);
    p.announce_11();
    let other = p.s.path("elsewhere/copy-of-1.1.bin");
    write_file(&other, &p.v11, true);
    let launched = std::cell::RefCell::new(None);
    let (lines, ok) = run_10_until(&p, |traces| {
        if traces.iter().any(|t| t.starts_with(DECODING)) && launched.borrow().is_none() {
            let out =
                p.s.command(&other)
                    .arg("version")
                    .env("AUTO_UPDATE_DISABLE", "1")
                    .output()
                    .expect("run");
            *launched.borrow_mut() = Some(out);
        }
        done_preparing(traces)
    });
    assert!(ok, "{lines:#?}");
    let out = launched
        .into_inner()
        .unwrap_or_else(|| panic!("no preparation to launch beside: {lines:#?}"));
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = build_dir(&p, "1.1").expect("folder of 1.1");
    assert_eq!(snapshot(&dir), unpacked(&p, &p.v11, "11"));
    assert!(cache_names(&p, ".tmp-").is_empty());
}

#[test]
fn a_build_that_fails_its_checks_is_not_prepared() {
    let p = publish(&[]);
    p.announce_11_with_a_wrong_crc();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(traces.iter().any(|t| t.contains("CRC32 of")), "{traces:#?}");
    assert!(
        !traces.iter().any(|t| t.starts_with(PREPARING)),
        "{traces:#?}"
    );
    assert_eq!(build_dir(&p, "1.1"), None);
    assert!(cache_names(&p, "1.1-").is_empty());
    p.assert_still_10();
}

#[test]
fn a_prepared_build_that_is_not_installed_is_cleaned_up_like_any_other() {
    let p = publish(&[]);
    p.announce_11();
    // Once 1.1 is prepared, the user puts a copy of 1.0 in place by hand:
    // the updater must keep it, and 1.1 is not installed.
    let (lines, ok) = run_10_until(&p, |traces| {
        let done = done_preparing(traces);
        if done {
            let by_hand = p.s.path("by-hand.bin");
            write_file(&by_hand, &p.v10, true);
            fs::rename(&by_hand, &p.exe).expect("replace by hand");
        }
        done
    });
    assert!(ok, "{lines:#?}");
    assert!(has(&lines, "replaced while the app ran"), "{lines:#?}");
    assert!(
        update_lines(&lines).iter().any(|t| t.starts_with(PREPARED)),
        "{lines:#?}"
    );
    let prepared = build_dir(&p, "1.1").expect("folder of 1.1");

    // The next launch (1.0) finds 1.1 unused, and removes it.
    let out =
        p.s.command(&p.exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Removed unused build '1.1-"),
        "{}",
        stderr(&out)
    );
    assert!(!prepared.exists());
    assert!(cache_names(&p, "1.1-").is_empty());
}
