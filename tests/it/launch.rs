//! The launcher: arguments, stdio, environment, exit status, signals, the
//! cache (cold, warm, concurrent, repaired), and every failure's message.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// A packed probe app, in exec mode (no update settings) unless `extra`
/// says otherwise.
fn packed_probe(s: &Scratch, extra: &[&str]) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probe.bin");
    pack(&app, &exe, extra);
    exe
}

/// Update settings pointing at a port nobody listens on: the launcher then
/// stays as the app's parent (spawn mode) and the sidecar fails quietly.
const SPAWN_MODE: &[&str] = &[
    "--update-url-spec",
    "http://127.0.0.1:9/{VERSION}/update.toml",
];

#[test]
fn arguments_reach_the_app_unchanged_with_argv0() {
    let s = Scratch::new();
    for extra in [&[][..], SPAWN_MODE] {
        let exe = packed_probe(&s, extra);
        let args = ["args", "with space", "ünïcødé ✓", "", "--flag=x", "*"];
        let out = s.run(&exe, args);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        assert_eq!(
            lines[0],
            exe.to_string_lossy(),
            "argv[0] is the packed file"
        );
        assert_eq!(&lines[1..], &args[..]);
    }
}

#[test]
fn stdin_and_working_directory_pass_through() {
    let s = Scratch::new();
    for extra in [&[][..], SPAWN_MODE] {
        let exe = packed_probe(&s, extra);
        let mut child = s
            .command(&exe)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let data = noise(300_000, 7);
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || stdin.write_all(&data))
        };
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("writer").expect("write stdin");
        assert!(out.status.success());
        assert_eq!(out.stdout, data);

        let out = s
            .command(&exe)
            .arg("cwd")
            .current_dir(s.path("app"))
            .output()
            .expect("run");
        assert_eq!(
            stdout(&out).trim(),
            s.path("app")
                .canonicalize()
                .expect("canon")
                .to_string_lossy()
        );
    }
}

#[test]
fn exit_codes_pass_through() {
    let s = Scratch::new();
    for extra in [&[][..], SPAWN_MODE] {
        let exe = packed_probe(&s, extra);
        for code in [0, 1, 42, 255] {
            let out = s.run(&exe, ["exit", &code.to_string()]);
            assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        }
    }
}

#[test]
fn environment_describes_the_packed_app() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &["--version", "2.5"]);
    let out = s
        .command(&exe)
        .args([
            "env",
            "ONEFILE_EXE",
            "ONEFILE_DIR",
            "ONEFILE_NAME",
            "ONEFILE_VERSION",
            "KEEP_ME",
        ])
        .env("KEEP_ME", "kept")
        .output()
        .expect("run");
    let text = stdout(&out);
    let crc = inspect(&exe)["payload_crc32"].as_u64().expect("crc");
    let dir = s.cache().join(format!("probeapp/2.5-{crc:08x}"));
    assert!(
        text.contains(&format!("ONEFILE_EXE={}\n", exe.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ONEFILE_DIR={}\n", dir.display())),
        "{text}"
    );
    assert!(text.contains("ONEFILE_NAME=probeapp\n"), "{text}");
    assert!(text.contains("ONEFILE_VERSION=2.5\n"), "{text}");
    assert!(text.contains("KEEP_ME=kept\n"), "{text}");
}

#[test]
fn exec_mode_leaves_no_launcher_process() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let pidfile = s.path("pid");
    let mut child = s
        .command(&exe)
        .args(["sleep", "5", pidfile.to_str().expect("utf8")])
        .spawn()
        .expect("spawn");
    let app_pid = wait_for_pid(&pidfile);
    assert_eq!(
        app_pid,
        child.id(),
        "the app replaced the launcher (same pid)"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn app_death_by_signal_is_the_launchers_too() {
    let s = Scratch::new();
    for extra in [&[][..], SPAWN_MODE] {
        let exe = packed_probe(&s, extra);
        for sig in [libc::SIGKILL, libc::SIGSEGV, libc::SIGTERM] {
            let out = s.run(&exe, ["die", &sig.to_string()]);
            assert_eq!(out.status.signal(), Some(sig), "{}", stderr(&out));
        }
    }
}

#[test]
fn signals_sent_to_the_launcher_reach_the_app() {
    let s = Scratch::new();
    let exe = packed_probe(&s, SPAWN_MODE);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        let pidfile = s.path(&format!("pid-{sig}"));
        let child = s
            .command(&exe)
            .args(["wait-signal", pidfile.to_str().expect("utf8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let app_pid = wait_for_pid(&pidfile);
        assert_ne!(app_pid, child.id(), "spawn mode: the app is a child");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            stdout(&out).trim(),
            format!("got {sig}"),
            "{}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn killing_the_launcher_kills_the_app() {
    let s = Scratch::new();
    let exe = packed_probe(&s, SPAWN_MODE);
    let pidfile = s.path("pid");
    let mut child = s
        .command(&exe)
        .args(["sleep", "30", pidfile.to_str().expect("utf8")])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let app_pid = wait_for_pid(&pidfile);
    child.kill().expect("kill -9 the launcher");
    child.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{app_pid}")).exists() && !is_zombie(app_pid) {
        assert!(
            Instant::now() < deadline,
            "app {app_pid} outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cold_then_warm_start() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let first = s.run(&exe, ["print", "hi"]);
    assert_eq!(stdout(&first), "hi\n");
    assert!(
        stderr(&first).contains("ONEFILE: Cold start"),
        "{}",
        stderr(&first)
    );
    let second = s.run(&exe, ["print", "hi"]);
    assert_eq!(stdout(&second), "hi\n");
    assert!(
        stderr(&second).contains("ONEFILE: Warm start"),
        "{}",
        stderr(&second)
    );
    assert!(!stderr(&second).contains("Cold start"));
}

#[test]
fn without_debug_the_launcher_prints_nothing() {
    let s = Scratch::new();
    let exe = packed_probe(&s, SPAWN_MODE);
    let out = s
        .command(&exe)
        .args(["print", "only this"])
        .env_remove("AUTO_UPDATE_DEBUG")
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "only this\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn cache_layout_is_private_and_versioned() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &["--version", "3.1"]);
    assert!(s.run(&exe, ["exit", "0"]).status.success());
    let crc = inspect(&exe)["payload_crc32"].as_u64().expect("crc");
    let app_dir = s.cache().join("probeapp");
    let build = app_dir.join(format!("3.1-{crc:08x}"));
    assert!(build.join("bin/probe").is_file());
    for dir in [&app_dir, &build] {
        let mode = fs::metadata(dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn concurrent_cold_launches_unpack_once_and_all_run() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("data/blob"), &noise(8 << 20, 3), false);
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            s.command(&exe)
                .args(["print", &format!("run {i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut unpacked = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("run {i}\n"));
        unpacked += stderr(&out).matches("ONEFILE: Unpacked").count();
    }
    assert_eq!(unpacked, 1, "exactly one launch unpacks");
    let leftovers: Vec<_> = fs::read_dir(s.cache().join("probeapp"))
        .expect("list")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn deleted_or_damaged_cache_is_repaired() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    assert!(s.run(&exe, ["exit", "0"]).status.success());
    let crc = inspect(&exe)["payload_crc32"].as_u64().expect("crc");
    let build = s.cache().join(format!("probeapp/0.0.0-{crc:08x}"));

    fs::remove_file(build.join("bin/probe")).expect("damage");
    let out = s.run(&exe, ["print", "repaired"]);
    assert_eq!(stdout(&out), "repaired\n", "{}", stderr(&out));

    fs::remove_dir_all(s.cache()).expect("delete cache");
    let out = s.run(&exe, ["print", "again"]);
    assert_eq!(stdout(&out), "again\n", "{}", stderr(&out));
}

#[test]
fn old_builds_are_removed_unless_in_use() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let v1 = s.path("v1.bin");
    let v2 = s.path("v2.bin");
    pack(&app, &v1, &["--version", "1"]);
    pack(&app, &v2, &["--version", "2"]);
    let pidfile = s.path("pid");
    // A running 1 holds its build (exec mode: the app inherits the lock).
    let mut running = s
        .command(&v1)
        .args(["sleep", "30", pidfile.to_str().expect("utf8")])
        .spawn()
        .expect("spawn");
    wait_for_pid(&pidfile);
    assert!(s.run(&v2, ["exit", "0"]).status.success());
    let builds = |prefix: &str| {
        fs::read_dir(s.cache().join("probeapp"))
            .expect("list")
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(prefix) && !n.ends_with(".lock")
            })
            .count()
    };
    assert_eq!(builds("1-"), 1, "in use: kept");
    running.kill().expect("kill");
    running.wait().expect("wait");
    assert!(s.run(&v2, ["exit", "0"]).status.success());
    assert_eq!(builds("1-"), 0, "unused: removed");
    assert_eq!(builds("2-"), 1);
}

#[test]
fn bare_stub_says_it_carries_no_app() {
    let s = Scratch::new();
    let out = s.run(&stub(), ["x"]);
    assert_eq!(out.status.code(), Some(121));
    let msgs = messages(&out);
    assert!(msgs[0].contains("carries no app"), "{msgs:?}");
    assert!(msgs.iter().all(|l| !l.contains("panicked")));
}

#[test]
fn truncated_file_is_refused_with_one_line() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let bytes = fs::read(&exe).expect("read");
    let info = inspect(&exe);
    let at = |key: &str| info[key].as_u64().expect(key) as usize;
    // Cuts inside the stub itself are the kernel's to report (its loader
    // cannot map a cut-short program): only the appended parts are ours.
    for keep in [
        bytes.len() - 1,
        bytes.len() - 64,
        at("metadata_offset") + 2,
        at("payload_offset") + at("payload_len") / 2,
        at("payload_offset"),
    ] {
        let cut = s.path("cut.bin");
        write_file(&cut, &bytes[..keep], true);
        let out = s.run(&cut, ["exit", "0"]);
        assert_eq!(
            out.status.code(),
            Some(121),
            "cut at {keep}: {}",
            stderr(&out)
        );
        assert_eq!(messages(&out).len(), 2, "error + hint: {}", stderr(&out));
    }
}

#[test]
fn corruption_is_detected_before_anything_runs() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let info = inspect(&exe);
    let at = |key: &str| info[key].as_u64().expect(key) as usize;
    for (what, offset, expect) in [
        // zstd's frame checksum usually speaks before the payload CRC-32.
        (
            "payload",
            at("payload_offset") + at("payload_len") / 2,
            "payload in",
        ),
        ("metadata", at("metadata_offset") + 3, "CRC-32 of metadata"),
        ("trailer", at("file_len") - 40, "CRC-32 of trailer"),
    ] {
        let mut bytes = fs::read(&exe).expect("read");
        bytes[offset] ^= 0x55;
        let bad = s.path("bad.bin");
        write_file(&bad, &bytes, true);
        let cache = s.cache();
        let _ = fs::remove_dir_all(&cache);
        let out = s.run(&bad, ["print", "must not run"]);
        assert_eq!(out.status.code(), Some(122), "{what}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{what}: the app must not run");
        let msgs = messages(&out);
        assert!(msgs[0].contains(expect), "{what}: {msgs:?}");
        // Nothing half-unpacked is left for a later launch to trust.
        let app_dir = cache.join("probeapp");
        if app_dir.exists() {
            for e in fs::read_dir(&app_dir).expect("list").flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    name.ends_with(".lock") || name == ".lock",
                    "{what}: left {name}"
                );
            }
        }
    }
}

#[test]
fn unusable_cache_folder_is_reported() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let file = s.path("not-a-dir");
    write_file(&file, b"x", false);
    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &file)
        .args(["exit", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(msgs[0].contains("cannot use the cache folder"), "{msgs:?}");
    assert!(msgs[1].contains("ONEFILE_CACHE_DIR"), "{msgs:?}");
}

#[test]
fn file_size_limit_during_unpacking_is_a_full_disk() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("data/big"), &noise(4 << 20, 9), false);
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let mut cmd = s.command(&exe);
    cmd.args(["print", "must not run"]);
    limit_file_size(&mut cmd, 1 << 20);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(msgs[0].contains("disk is full"), "{msgs:?}");
    assert_eq!(stdout(&out), "");
    // No partial tree left behind; the next, unlimited, launch works.
    let out = s.run(&exe, ["print", "fine"]);
    assert_eq!(stdout(&out), "fine\n", "{}", stderr(&out));
}

#[test]
fn noexec_cache_mount_is_explained() {
    let s = Scratch::new();
    let exe = packed_probe(&s, &[]);
    let mnt = s.path("noexec");
    fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=64m,mode=0700", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        skip("cannot mount a tmpfs here (needs root)");
        return;
    }
    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &mnt)
        .args(["exit", "0"])
        .output()
        .expect("run");
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(msgs[1].contains("noexec"), "{msgs:?}");
}

#[test]
fn ten_thousand_files_run() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    for i in 0..10_000 {
        write_file(
            &app.join(format!("many/d{}/f{i}.txt", i % 100)),
            format!("file {i}\n").as_bytes(),
            false,
        );
    }
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let out = s.run(&exe, ["print", "ok"]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let dir = s.cache().join("probeapp");
    let build = fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("build dir")
        .path();
    assert_eq!(
        fs::read_to_string(build.join("many/d42/f9942.txt")).expect("read"),
        "file 9942\n"
    );
}

pub fn wait_for_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
