//! The cache against another local user: no one else may be able to change
//! the path the app is run from, between the launcher's checks and the
//! app's use of its files, or ever. And what must keep working: a cache
//! root that is our own symlink, a group-writable `~/.cache` whose group has
//! no other member.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::support::*;

/// Launches in the race: about 6% of them ran the other user's code before
/// the fix, so this many make a miss all but impossible (0.94^400 < 1e-10).
const RACE_LAUNCHES: usize = 400;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A packed probe app (version 1.0, exec mode) and the name of its build
/// folder in the cache.
fn packed_probe(s: &Scratch) -> (PathBuf, String) {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probe.bin");
    pack(&app, &exe, &["--version", "1.0"]);
    let crc = inspect(&exe)["payload_crc32"].as_u64().expect("crc");
    (exe, format!("1.0-{crc:08x}"))
}

/// A scratch folder the other user can reach (the scratch folders are 0700),
/// still writable only by us.
fn reachable_scratch() -> Scratch {
    let s = Scratch::new();
    chmod(s.dir.path(), 0o755);
    s
}

/// A tree of the other user's holding, at the build's place, an entry that
/// says whose code it is.
fn hostile_tree(s: &Scratch, user: &OtherUser, build: &str) -> PathBuf {
    let evil = s.path("evil");
    write_file(
        &evil.join(build).join("bin/probe"),
        b"#!/bin/sh\necho 'PWNED: the other user ran code as the victim'\n",
        true,
    );
    for path in [
        evil.clone(),
        evil.join(build),
        evil.join(build).join("bin"),
        evil.join(build).join("bin/probe"),
    ] {
        user.chown(&path);
    }
    evil
}

/// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`) in a tight
/// loop, as `user`, until the returned process is killed.
fn swap_forever(user: &OtherUser, a: &Path, b: &Path) -> Child {
    let a = CString::new(a.as_os_str().as_bytes()).expect("path");
    let b = CString::new(b.as_os_str().as_bytes()).expect("path");
    let mut cmd = user.command("sleep");
    cmd.arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: runs in the forked child before exec. It only makes raw
    // syscalls (geteuid, getpid, fork, prctl, close_range, renameat2,
    // _exit), all async-signal-safe, on memory moved into the closure.
    unsafe {
        cmd.pre_exec(move || {
            // std switches to the user before it runs these hooks.
            if libc::geteuid() == 0 {
                return Err(io::Error::other("the swapper would run as root"));
            }
            let parent = libc::getpid();
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => {
                    // Dies with the `sleep` the test kills.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != parent {
                        libc::_exit(0);
                    }
                    // Not to hold std's exec-status pipe open: spawn()
                    // waits for it to close.
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    loop {
                        libc::syscall(
                            libc::SYS_renameat2,
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        );
                    }
                }
                _ => Ok(()),
            }
        });
    }
    cmd.spawn().expect("start the swapper")
}

#[test]
fn a_group_member_swapping_the_app_folder_never_runs_their_code() {
    let Some(user) = OtherUser::get() else {
        return;
    };
    let s = reachable_scratch();
    let (exe, build) = packed_probe(&s);
    // Unpacked while the cache is still private.
    let out = s.run(&exe, ["print", "victim"]);
    assert_eq!(stdout(&out), "victim\n", "{}", stderr(&out));
    // Then the cache root becomes writable by a group the other user is in
    // (the launcher tolerated group write there, for user-private groups).
    let root = s.cache();
    std::os::unix::fs::chown(&root, None, Some(user.gid)).expect("chgrp");
    chmod(&root, 0o770);
    let evil = hostile_tree(&s, &user, &build);
    let link = root.join("evil-link");
    std::os::unix::fs::symlink(&evil, &link).expect("symlink");
    user.chown(&link);

    let mut swapper = swap_forever(&user, &root.join("probeapp"), &link);
    let runs: Vec<_> = (0..RACE_LAUNCHES)
        .map(|_| s.run(&exe, ["print", "victim"]))
        .collect();
    swapper.kill().expect("kill the swapper");
    swapper.wait().expect("wait");

    let pwned = runs.iter().filter(|o| stdout(o).contains("PWNED")).count();
    assert_eq!(
        pwned, 0,
        "the other user's code ran as the victim in {pwned} of {RACE_LAUNCHES} launches"
    );
    // Refused every time, and said why.
    let out = &runs[0];
    assert_eq!(out.status.code(), Some(123), "{}", stderr(out));
    let msgs = messages(out);
    assert!(
        msgs[0].contains("onefile-other") && msgs[0].contains("may write to it"),
        "{msgs:?}"
    );
    assert!(msgs[1].contains("hint:"), "{msgs:?}");
    assert!(runs.iter().all(|o| o.status.code() == Some(123)));
}

#[test]
fn a_cache_dir_that_is_another_users_symlink_in_a_sticky_folder_is_refused() {
    let Some(user) = OtherUser::get() else {
        return;
    };
    let s = Scratch::new();
    let (exe, _) = packed_probe(&s);
    let shared = s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    // Pointing at a folder of ours today: the other user can repoint it at
    // their own tree whenever they like.
    let ours = s.path("ours");
    fs::create_dir(&ours).expect("mkdir");
    chmod(&ours, 0o700);
    let link = shared.join("cache");
    std::os::unix::fs::symlink(&ours, &link).expect("symlink");
    user.chown(&link);

    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &link)
        .args(["print", "must not run"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(
        msgs[0].contains("is a symlink owned by user") && msgs[0].contains("onefile-other"),
        "{msgs:?}"
    );
    assert!(msgs[1].contains("ONEFILE_CACHE_DIR"), "{msgs:?}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_folder_above_the_cache_that_another_users_group_can_write_is_refused() {
    let Some(user) = OtherUser::get() else {
        return;
    };
    let s = reachable_scratch();
    let (exe, _) = packed_probe(&s);
    // The cache itself is ours and private, but the other user could rename
    // it away and put their own in its place.
    let shared = s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    std::os::unix::fs::chown(&shared, None, Some(user.gid)).expect("chgrp");
    chmod(&shared, 0o775);
    let cache = shared.join("cache");
    fs::create_dir(&cache).expect("mkdir");
    chmod(&cache, 0o700);

    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &cache)
        .args(["print", "must not run"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    let msgs = messages(&out);
    let shown = format!("may write to '{}'", shared.display());
    assert!(
        msgs[0].contains(&shown) && msgs[0].contains("onefile-other"),
        "{msgs:?}"
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_folder_above_the_cache_owned_by_another_user_is_refused() {
    let Some(user) = OtherUser::get() else {
        return;
    };
    let s = reachable_scratch();
    let (exe, _) = packed_probe(&s);
    let theirs = s.path("theirs");
    fs::create_dir(&theirs).expect("mkdir");
    chmod(&theirs, 0o755);
    user.chown(&theirs);
    let cache = theirs.join("cache");
    fs::create_dir(&cache).expect("mkdir");
    chmod(&cache, 0o700);

    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &cache)
        .args(["print", "must not run"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(
        msgs[0].contains(&format!("'{}' is owned by user", theirs.display())),
        "{msgs:?}"
    );
    assert_eq!(stdout(&out), "");
}

/// What must keep working: a cache root that is a symlink of ours in a
/// sticky shared folder, relative paths and `..` in the link included.
#[test]
fn a_cache_dir_that_is_our_own_symlink_works() {
    let s = Scratch::new();
    let (exe, build) = packed_probe(&s);
    let shared = s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let real = s.path("real/cache");
    fs::create_dir_all(&real).expect("mkdir");
    let link = shared.join("cache");
    std::os::unix::fs::symlink("../real/./cache", &link).expect("symlink");

    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &link)
        .args(["print", "runs"])
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "runs\n", "{}", stderr(&out));
    assert!(
        real.join("probeapp")
            .join(&build)
            .join("bin/probe")
            .is_file()
    );
    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &link)
        .args(["print", "warm"])
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "warm\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("Warm start"), "{}", stderr(&out));
}

/// `~/.cache` made by a umask of 002: group-writable, by the user's own
/// group of one (here root's, group 0).
#[test]
fn a_group_writable_cache_root_of_a_group_of_one_works() {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let root_group_alone = group
        .lines()
        .any(|l| l.starts_with("root:") && l.split(':').nth(3) == Some(""))
        && passwd
            .lines()
            .filter(|l| l.split(':').nth(3) == Some("0"))
            .all(|l| l.split(':').nth(2) == Some("0"));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !root_group_alone {
        skip("needs to run as root, with group 0 holding no other user");
        return;
    }
    let s = Scratch::new();
    let (exe, _) = packed_probe(&s);
    let home = s.path("home");
    fs::create_dir_all(home.join(".cache")).expect("mkdir");
    std::os::unix::fs::chown(home.join(".cache"), Some(0), Some(0)).expect("chown");
    chmod(&home.join(".cache"), 0o775);
    let out = s
        .command(&exe)
        .env_remove("ONEFILE_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .args(["print", "runs"])
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "runs\n", "{}", stderr(&out));
    assert!(home.join(".cache/probeapp").is_dir());
}
