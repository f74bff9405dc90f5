//! Hardening of the updater (issue 10): the install checks the executable
//! again right before the rename, downloads are files of their own, the
//! download is capped by the build, not by what the server announces, a
//! build that cannot start still updates itself, the updater's lock is
//! private, a folder others may write is refused, and the signature check
//! is traced. Real binaries, a real server on 127.0.0.1, a second local
//! user where one is needed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::craft::{Craft, TarCraft};
use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, announce_route, is_download, pack_version, publish};

/// A packed executable running in the background, its stderr read line by
/// line as it comes.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    fn start(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a line of stderr that contains `part`.
    fn wait_for(&mut self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(part)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {part:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the process to end; its status and every stderr line.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait");
        self.seen.extend(self.lines.iter());
        (status, self.seen)
    }
}

fn traces(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("AUTO UPDATE: "))
        .map(str::to_owned)
        .collect()
}

/// Packs `version` of the test app (its update URL on `p`'s server), with
/// `extra` flags; returns its bytes.
fn build(p: &Published, version: &str, extra: &[&str]) -> Vec<u8> {
    let (bytes, _) = pack_version(&p.s, p.server.port, version, extra, |_| {});
    p.server.route(
        &format!("/{version}/{NAME}.bin"),
        Route::file(bytes.clone()),
    );
    bytes
}

/// The `update.toml` that announces `version` (written by [`build`]).
fn manifest_of(p: &Published, version: &str) -> Vec<u8> {
    fs::read(p.s.path(&format!("site/{version}/update.toml"))).expect("read")
}

/// Installs `bytes` at `exe` the way `install` or `mv` do: a new file
/// renamed over the old name.
fn install_by_hand(exe: &Path, bytes: &[u8]) {
    let staging = exe.with_file_name("by-hand.new");
    write_file(&staging, bytes, true);
    fs::rename(&staging, exe).expect("rename");
}

fn downloads_left(exe: &Path) -> Vec<String> {
    fs::read_dir(exe.parent().expect("dir"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_download(n))
        .collect()
}

fn verify(exe: &Path) -> bool {
    tools(["verify".as_ref(), exe.as_os_str()]).status.success()
}

/// Issue 10, item 4: while 1.0 waits for its app to exit with 1.1
/// downloaded, the user installs 1.2 by hand. 1.0 must not downgrade it.
#[test]
fn a_build_installed_by_hand_while_the_app_runs_is_not_downgraded() {
    let p = publish(&[]);
    p.announce_11();
    let v12 = build(&p, "1.2", &[]);
    let mut old = Watched::start({
        let mut cmd = p.s.command(&p.exe);
        cmd.args(["version", "3"]);
        cmd
    });
    old.wait_for("May not yet update.");
    install_by_hand(&p.exe, &v12);
    let (status, lines) = old.finish();
    assert!(status.success(), "{lines:#?}");
    let traces = traces(&lines);
    assert!(!traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert!(
        traces
            .iter()
            .any(|t| t.contains("it was replaced while the app ran")),
        "{traces:#?}"
    );
    assert_eq!(fs::read(&p.exe).expect("read"), v12, "1.2 was replaced");
    assert_eq!(p.version_now(), "1.2");
    assert_eq!(downloads_left(&p.exe), Vec::<String>::new());
}

/// Issue 10, item 4: an instance of a newer build (1.2, installed by hand)
/// starts its own download (1.3, which stalls halfway) while an instance
/// of 1.0 waits with 1.1 downloaded. Each download is a file of its own:
/// 1.0 never installs 1.2's half-written one (which segfaulted forever),
/// nor replaces 1.2.
#[test]
fn an_instance_of_a_newer_build_racing_never_gets_a_half_download_installed() {
    let p = publish(&[]);
    p.announce_11();
    let v12 = build(&p, "1.2", &["--update-exit-wait", "1"]);
    let v13 = build(&p, "1.3", &[]);
    p.server
        .route("/1.2/update.toml", Route::file(manifest_of(&p, "1.3")));
    let v13_path = format!("/1.3/{NAME}.bin");
    p.server.route(
        &v13_path,
        Route::StallAfter {
            body: v13.clone(),
            send: v13.len() / 2,
        },
    );

    let mut old = Watched::start({
        let mut cmd = p.s.command(&p.exe);
        cmd.args(["version", "6"]);
        cmd
    });
    old.wait_for("May not yet update.");
    install_by_hand(&p.exe, &v12);
    let mut newer = Watched::start({
        let mut cmd = p.s.command(&p.exe);
        cmd.args(["version", "30"]);
        cmd
    });
    newer.wait_for("URL to check");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p
        .server
        .requests()
        .iter()
        .any(|r| r.path == v13_path && !r.is_tail())
    {
        assert!(Instant::now() < deadline, "1.2 never started its download");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Half of 1.3 is on its way into 1.2's download.
    std::thread::sleep(Duration::from_millis(500));

    let (status, lines) = old.finish();
    assert!(status.success(), "{lines:#?}");
    let after_old = fs::read(&p.exe).expect("read");
    let _ = newer.child.kill();
    let (_, newer_lines) = newer.finish();
    assert!(
        after_old == v12,
        "1.0 replaced 1.2 (with {} bytes; 1.1 is {}, 1.3 {}):\n{}\n{}",
        after_old.len(),
        p.v11.len(),
        v13.len(),
        lines.join("\n"),
        newer_lines.join("\n")
    );
    assert!(
        !traces(&lines).contains(&"Updated.".to_owned()),
        "{lines:#?}"
    );
    assert!(verify(&p.exe));
    assert_eq!(p.version_now(), "1.2");
}

/// Issue 10, item 5: the unsigned `size` of `update.toml` may lower the
/// build's `--max-download-size`, never raise it. Such a build is refused
/// without being downloaded.
#[test]
fn the_announced_size_never_raises_the_download_cap() {
    let cap = 200_000;
    let p = publish(&["--max-download-size", &cap.to_string()]);
    assert!(p.v11.len() > cap, "1.1 is {} bytes", p.v11.len());
    p.announce_11();
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.ends_with(&format!(
            "is {} bytes, {cap} expected; discarded.",
            p.v11.len()
        ))),
        "{traces:#?}"
    );
    assert!(!traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    p.assert_still_10();
    p.assert_clean(false);
    let downloaded = p
        .server
        .requests()
        .iter()
        .any(|r| r.path.ends_with(".bin") && !r.is_tail());
    assert!(!downloaded, "the build was downloaded anyway");
}

/// Issue 10, item 5: a download cut off (with a validator: resumable) once
/// it has filled the executable's filesystem is not kept "for resuming":
/// the rest of it could never fit.
#[test]
fn a_partial_download_whose_rest_cannot_fit_is_not_kept() {
    let p = publish(&[]);
    let dir = p.exe.parent().expect("dir").to_owned();
    let junk = noise(4 << 20, 7);
    announce_route(
        &p,
        &junk,
        Route::CutShort {
            body: junk.clone(),
            etag: Some("\"junk\"".into()),
            send: 1 << 20,
        },
    );
    // Room for the old executable and a bit more than what is sent.
    let room = (p.v10.len() as u64 + (1 << 20) + (256 << 10)) / 1024;
    if !remount(&dir, false, room) {
        return;
    }
    let out = p.run(&["version"]);
    let left = downloads_left(&p.exe);
    unmount(&dir);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("bytes (discarded)")),
        "{traces:#?}"
    );
    assert_eq!(left, Vec::<String>::new(), "{traces:#?}");
}

fn keygen(s: &Scratch) -> (PathBuf, PathBuf) {
    let base = s.path("release");
    let out = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    (s.path("release.key"), s.path("release.pub"))
}

/// 1.0 and 1.1 of a build that installs only updates signed by a key of
/// its own, 1.1 signed; the key's id, as minisign shows it.
fn publish_signed() -> (Published, String) {
    let keys = Scratch::new();
    let (secret, public) = keygen(&keys);
    let p = publish(&[
        "--public-key",
        public.to_str().expect("utf8"),
        "--key",
        secret.to_str().expect("utf8"),
    ]);
    let id = fs::read_to_string(&public)
        .expect("read")
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("key id")
        .to_owned();
    // Kept with the publication, for manifests the tests sign.
    fs::copy(&secret, p.s.path("release.key")).expect("copy key");
    (p, id)
}

/// Issue 10, item 5: a download whose metadata block is far larger than a
/// real build's (1 MiB here; 16 MiB made the updater peak at 1.6 GB) is
/// refused from its trailer, before its metadata is parsed or its
/// signature checked.
#[test]
fn oversized_metadata_in_a_download_is_refused_before_it_is_parsed() {
    let (p, _) = publish_signed();
    let crafted = p.s.path("crafted.bin");
    let tar = TarCraft::new()
        .file("bin/probe", b"#!/bin/sh\n", 0o755)
        .finish(true);
    Craft {
        name: NAME.into(),
        version: "1.1".into(),
        entry: "bin/probe".into(),
        unpacked_size: 10,
        frames: vec![tar],
        extra_metadata: format!("# {}\n", "x".repeat(1 << 20)),
    }
    .write(&stub(), &crafted);
    let crafted = fs::read(&crafted).expect("read");
    announce_route(&p, &crafted, Route::file(crafted.clone()));
    let toml = format!(
        "url = \"{}\"\ncrc32 = {}\nsize = {}\nversion = \"1.1\"\n",
        p.server.url("/other.bin"),
        crc32fast::hash(&crafted),
        crafted.len()
    );
    let signed = signed_manifest(
        &toml,
        NAME,
        &p.server.url("/{VERSION}/update.toml"),
        &p.s.path("release.key"),
    );
    p.server
        .route("/1.0/update.toml", Route::file(signed.into_bytes()));
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("metadata of 1048") && t.contains("over the limit of 262144")),
        "{traces:#?}"
    );
    p.assert_still_10();
    p.assert_clean(false);
}

/// Issue 10, item 23: the signature check says which key signed and how
/// it went.
#[test]
fn the_signature_check_is_traced() {
    let (p, id) = publish_signed();
    p.announce_11();
    let out = p.run(&["version"]);
    assert_updated(&out);
    let traces = update_traces(&out);
    assert!(
        traces.contains(&format!("Good signature by trusted key {id}.")),
        "{id}: {traces:#?}"
    );
}

/// Issue 10, item 6: 1.1 passed every update check but cannot start (its
/// entry is missing). When 1.2 is published, the next launch of 1.1 still
/// fails with its exit code, but installs 1.2 first; the launch after that
/// runs 1.2.
#[test]
fn a_build_that_cannot_start_still_updates_itself() {
    let p = publish(&[]);
    let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", p.server.port);
    let broken = p.s.path("broken.bin");
    let tar = TarCraft::new().file("other", b"x", 0o755).finish(true);
    Craft {
        name: NAME.into(),
        version: "1.1".into(),
        entry: "bin/probe".into(),
        unpacked_size: 1,
        frames: vec![tar],
        extra_metadata: format!("[update]\nurl_spec = \"{spec}\"\n"),
    }
    .write(&stub(), &broken);
    write_file(&p.exe, &fs::read(&broken).expect("read"), true);
    let out = p.run(&["version"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));

    let v12 = build(&p, "1.2", &[]);
    p.server
        .route("/1.1/update.toml", Route::file(manifest_of(&p, "1.2")));
    let out = p.run(&["version"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_updated(&out);
    assert_eq!(fs::read(&p.exe).expect("read"), v12);
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.2\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
}

/// Lets other users reach (read, run) the files below the test's scratch
/// folder, which is private.
fn open_scratch(p: &Published) {
    fs::set_permissions(p.s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Issue 10, item 8: another user who may read the executable holds a lock
/// on it, shared or exclusive (the updater's only lock was `flock` on the
/// executable): updates go on.
#[test]
fn another_user_locking_the_executable_does_not_stop_updates() {
    let Some(other) = OtherUser::get() else {
        return;
    };
    let p = publish(&[]);
    open_scratch(&p);
    p.announce_11();
    for mode in ["--shared", "--exclusive"] {
        write_file(&p.exe, &p.v10, true);
        let mut holder = other
            .command("flock")
            .args([mode, "--no-fork"])
            .arg(&p.exe)
            .args(["sleep", "60"])
            .spawn()
            .expect("flock");
        // Held once a lock of our own cannot be had.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("flock")
            .args(["--nonblock", "--exclusive"])
            .arg(&p.exe)
            .arg("true")
            .status()
            .expect("flock")
            .success()
        {
            assert!(Instant::now() < deadline, "the other user has no lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = p.run(&["version"]);
        let _ = holder.kill();
        let _ = holder.wait();
        assert_updated(&out);
        assert_eq!(p.version_now(), "1.1", "{mode}");
    }
}

/// The names earlier versions downloaded to, beside `exe`.
fn old_names(exe: &Path) -> (PathBuf, PathBuf) {
    (
        exe.with_file_name(format!(".{NAME}.bin.download")),
        exe.with_file_name(format!(".{NAME}.bin.download.toml")),
    )
}

/// Issue 10, item 9: an executable in a sticky folder every user may
/// write, where another user planted a link (to a file of the victim's)
/// and a folder at the names downloads used to have. The updater refuses
/// to update there, says why, and touches nothing.
#[test]
fn a_folder_other_users_may_write_is_not_updated_in() {
    let Some(other) = OtherUser::get() else {
        return;
    };
    let p = publish(&[]);
    open_scratch(&p);
    p.announce_11();
    let shared = p.s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let exe = shared.join(format!("{NAME}.bin"));
    write_file(&exe, &p.v10, true);
    let precious = p.s.path("precious");
    fs::write(&precious, "mine\n").expect("write");
    let (link, folder) = old_names(&exe);
    let planted = other
        .command("ln")
        .arg("-s")
        .arg(&precious)
        .arg(&link)
        .status()
        .expect("ln");
    assert!(planted.success());
    assert!(
        other
            .command("mkdir")
            .arg(&folder)
            .status()
            .expect("mkdir")
            .success()
    );

    let out = p.s.run(&exe, ["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    let traces = update_traces(&out);
    assert_eq!(
        fs::read(&precious).expect("read"),
        b"mine\n",
        "written through the other user's link: {traces:#?}"
    );
    assert_eq!(fs::read(&exe).expect("read"), p.v10, "{traces:#?}");
    assert!(
        traces.iter().any(|t| t.starts_with("Cannot replace")
            && t.contains("its folder is not ours alone: other users may write to it (mode 1777)")),
        "{traces:#?}"
    );
    assert!(fs::symlink_metadata(&link).expect("link").is_symlink());
    assert!(fs::symlink_metadata(&folder).expect("folder").is_dir());
    let mut names: Vec<String> = fs::read_dir(&shared)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!(".{NAME}.bin.download"),
            format!(".{NAME}.bin.download.toml"),
            format!("{NAME}.bin"),
        ]
    );
}

/// Issue 10, item 9: a link and a folder at the names downloads used to
/// have (in the user's own folder) neither redirect a download into
/// another file nor block updates: downloads have names of their own.
#[test]
fn links_and_folders_at_the_old_download_names_change_nothing() {
    let p = publish(&[]);
    p.announce_11();
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::File {
            body: p.v11.clone(),
            etag: Some("\"v11\"".into()),
            ranges: true,
        },
    );
    let precious = p.s.path("precious");
    fs::write(&precious, "mine\n").expect("write");
    let (link, folder) = old_names(&p.exe);
    std::os::unix::fs::symlink(&precious, &link).expect("symlink");
    fs::create_dir(&folder).expect("mkdir");
    let out = p.run(&["version"]);
    assert_eq!(
        fs::read(&precious).expect("read"),
        b"mine\n",
        "written through the link: {}",
        stderr(&out)
    );
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
    assert_eq!(downloads_left(&p.exe), Vec::<String>::new());
}

/// Issue 10, item 9: a folder its group may write is refused too, unless
/// that group is the user's private one (the user's own number, as with a
/// umask of 002 under the user-private-group convention).
#[test]
fn a_folder_another_group_may_write_is_not_updated_in() {
    let p = publish(&[]);
    p.announce_11();
    let dir = p.exe.parent().expect("dir").to_owned();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).expect("chmod");
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if gid != uid {
        skip("needs a user whose primary group has the user's own number");
        return;
    }
    std::os::unix::fs::chown(&dir, None, Some(65534)).expect("chgrp");
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.starts_with("Cannot replace")
            && t.contains("other users may write to it (mode 775)")),
        "{traces:#?}"
    );
    p.assert_still_10();
    // The user's own group: tolerated.
    std::os::unix::fs::chown(&dir, None, Some(gid)).expect("chgrp");
    assert_updated(&p.run(&["version"]));
}
