//! The app knows about its updates: the status file `ONEFILE_UPDATE_STATUS`
//! names, watched by the app through a real update (1.0 to 1.1 over a
//! throttled loopback server), a current build, failures; read by the
//! Python and Node examples of docs/updates.md where those run; private,
//! per launch, gone with its launcher. And restart to update
//! (`pack --restart-exit-code`): the app that exits with the code comes
//! back once, on the new build if one was ready, else on the same one.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, publish, publish_apps};

/// The restart code the tests' builds are packed with.
const RESTART: &str = "75";

/// Serves `body` slowly: in about 20 pieces, `delay_ms` apart.
fn drip(body: &[u8], delay_ms: u64) -> Route {
    Route::Drip {
        body: body.to_vec(),
        chunk: body.len() / 20 + 1,
        delay_ms,
    }
}

/// Announces 1.1 slowly: `checking` lasts about 0.4 s and `downloading`
/// about 2 s, so that an app polling the file sees both.
fn announce_11_slowly(p: &Published) {
    p.server.route("/1.0/update.toml", drip(&p.toml11, 20));
    p.server
        .route(&format!("/1.1/{NAME}.bin"), drip(&p.v11, 100));
}

/// Runs 1.0 with `probe watch-status`; returns the launcher's output and
/// every state the app saw, parsed.
fn watch(p: &Published, launcher: &mut Command) -> (Output, Vec<serde_json::Value>) {
    let record = p.s.path("seen.txt");
    let _ = fs::remove_file(&record);
    let out = launcher
        .args(["watch-status", record.to_str().expect("utf8"), "30"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = fs::read_to_string(&record).expect("the app's record");
    assert_ne!(text.trim(), "unset", "no status file: {}", stderr(&out));
    let seen = text
        .lines()
        .map(|line| {
            assert!(!line.trim().is_empty(), "an empty read: {text}");
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    (out, seen)
}

fn state(record: &serde_json::Value) -> &str {
    record["state"].as_str().expect("a state")
}

fn states(seen: &[serde_json::Value]) -> Vec<&str> {
    seen.iter().map(state).collect()
}

/// The app saw `failed` last, and before it at most `checking`: a check that
/// fails at once may be over before the app first looks.
fn assert_checked_then_failed(seen: &[serde_json::Value]) {
    let states = states(seen);
    assert!(
        states == ["checking", "failed"] || states == ["failed"],
        "{seen:#?}"
    );
}

/// Every state written bears a higher sequence than the one before.
fn assert_sequence_rises(seen: &[serde_json::Value]) {
    let sequences: Vec<u64> = seen
        .iter()
        .map(|r| r["sequence"].as_u64().expect("a sequence"))
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

/// The status files of the test app's launchers in the cache.
fn status_files(p: &Published) -> Vec<String> {
    fs::read_dir(p.s.cache().join(NAME))
        .expect("the app's cache folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".status-"))
        .collect()
}

#[test]
fn the_app_watches_a_whole_update() {
    let p = publish(&[]);
    announce_11_slowly(&p);
    let started = Instant::now();
    let (out, seen) = watch(&p, &mut p.s.command(&p.exe));
    let elapsed = started.elapsed();
    let names = states(&seen);
    assert_eq!(names.first(), Some(&"checking"), "{seen:#?}");
    assert_eq!(names.last(), Some(&"ready"), "{seen:#?}");
    assert!(
        names[1..names.len() - 1]
            .iter()
            .all(|s| *s == "downloading"),
        "{seen:#?}"
    );
    let progress: Vec<u64> = seen
        .iter()
        .filter(|r| state(r) == "downloading")
        .map(|r| {
            assert_eq!(r["total"].as_u64(), Some(p.v11.len() as u64), "{r}");
            r["done"].as_u64().expect("done")
        })
        .collect();
    assert!(progress.len() >= 3, "{seen:#?}");
    // About 20 pieces 100 ms apart: progress is rewritten at most every
    // 250 ms, not on every piece.
    let most = elapsed.as_millis() / 250 + 2;
    assert!(
        progress.len() as u128 <= most,
        "{} progress records in {elapsed:?}: {progress:?}",
        progress.len()
    );
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(progress.iter().all(|&done| done <= p.v11.len() as u64));
    let ready = seen.last().expect("ready");
    assert_eq!(ready["version"], "1.1");
    assert!(ready.get("restart_exit_code").is_none(), "{ready}");
    assert_sequence_rises(&seen);
    // Installed at the exit; the launcher's files are gone with it.
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
    assert_eq!(status_files(&p), Vec::<String>::new());
}

#[test]
fn a_current_build_is_up_to_date_and_a_check_not_due_says_so() {
    let p = publish(&["--update-check-interval", "1h"]);
    let (_, seen) = watch(&p, &mut p.s.command(&p.exe));
    assert_eq!(states(&seen).last(), Some(&"up-to-date"), "{seen:#?}");
    assert_eq!(seen.last().expect("a state")["version"], "1.0");
    assert_sequence_rises(&seen);
    // Checked a moment ago: no check now, and the app is not left
    // believing one runs.
    let (out, seen) = watch(&p, &mut p.s.command(&p.exe));
    assert_eq!(states(&seen).last(), Some(&"not-due"), "{seen:#?}");
    assert!(
        !update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Expanded info URL")),
        "{}",
        stderr(&out)
    );
    assert_eq!(status_files(&p), Vec::<String>::new());
}

#[test]
fn a_server_that_is_down_is_a_failure_with_its_reason() {
    let p = publish(&[]);
    p.server.route("/1.0/update.toml", Route::Hangup);
    let (_, seen) = watch(&p, &mut p.s.command(&p.exe));
    assert_checked_then_failed(&seen);
    let reason = seen[seen.len() - 1]["reason"].as_str().expect("a reason");
    assert!(reason.contains("/1.0/update.toml"), "{reason}");
    assert!(!reason.contains('\n'), "{reason:?}");
    p.assert_still_10();
}

#[test]
fn a_bad_signature_is_a_failure_with_its_reason() {
    let keys = Scratch::new();
    let base = keys.path("trusted");
    let made = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let (secret, public) = (keys.path("trusted.key"), keys.path("trusted.pub"));
    let p = publish_apps(
        &[
            "--public-key",
            public.to_str().expect("utf8"),
            "--key",
            secret.to_str().expect("utf8"),
        ],
        |_| {},
    );
    // The signed update info of 1.1, changed after it was signed.
    let text = String::from_utf8(p.toml11.clone()).expect("utf8");
    let crc_line = text
        .lines()
        .find(|l| l.starts_with("crc32"))
        .expect("crc32 line");
    let tampered = text.replace(crc_line, "crc32 = 12345");
    p.server
        .route("/1.0/update.toml", Route::file(tampered.into_bytes()));
    let (_, seen) = watch(&p, &mut p.s.command(&p.exe));
    assert_checked_then_failed(&seen);
    let reason = seen[seen.len() - 1]["reason"].as_str().expect("a reason");
    assert!(reason.contains("signature"), "{reason}");
    p.assert_still_10();
}

#[test]
fn a_rolled_back_launch_tells_the_app_first() {
    let p = publish(&[]);
    // The launcher that rolled back tags the marker with its process id,
    // which `exec` keeps: as this shell does.
    let mut launcher = p.s.command(Path::new("sh"));
    launcher.args([
        "-c",
        "export ONEFILE_ROLLED_BACK_FROM=\"$$:1.1 \\\"bad\\\"\"; exec \"$0\" \"$@\"",
        p.exe.to_str().expect("utf8"),
    ]);
    let (_, seen) = watch(&p, &mut launcher);
    assert_eq!(state(&seen[0]), "rolled-back", "{seen:#?}");
    assert_eq!(seen[0]["from"], "1.1 \"bad\"");
    assert_eq!(seen[0]["to"], "1.0");
    assert_eq!(states(&seen).last(), Some(&"up-to-date"), "{seen:#?}");
    assert_sequence_rises(&seen);

    // Inherited by a launch no rollback started (a process of another
    // app's, say): no rollback to tell of.
    for inherited in ["1.1", "1:1.1"] {
        let mut launcher = p.s.command(&p.exe);
        launcher.env("ONEFILE_ROLLED_BACK_FROM", inherited);
        let (_, seen) = watch(&p, &mut launcher);
        assert_eq!(state(&seen[0]), "checking", "{seen:#?}");
    }
}

#[test]
fn the_file_is_private_per_launch_and_stale_ones_are_removed() {
    let p = publish(&[]);
    // Without updates the launcher steps aside: no file to name.
    let off =
        p.s.command(&p.exe)
            .args(["env", "ONEFILE_UPDATE_STATUS"])
            .env("AUTO_UPDATE_DISABLE", "1")
            // Another packed app's, inherited: not passed on.
            .env("ONEFILE_UPDATE_STATUS", "/elsewhere")
            .output()
            .expect("run");
    assert_eq!(stdout(&off), "ONEFILE_UPDATE_STATUS unset\n");

    // Left by launchers that were killed: a lock no one holds.
    let folder = p.s.cache().join(NAME);
    p.run(&["version"]);
    let dead = ".status-1-0000dead";
    fs::write(folder.join(dead), "{}\n").expect("plant");
    fs::write(folder.join(format!("{dead}.lock")), "").expect("plant");
    fs::write(folder.join(format!("{dead}.new")), "").expect("plant");
    // Left without its lock: a launcher that could not remove its status
    // file (on Windows, while the app held it open) removed the lock.
    fs::write(folder.join(".status-3-0000cafe"), "{}\n").expect("plant");
    fs::write(folder.join(".status-4-0000f00d.new"), "").expect("plant");
    // A live launcher's: its lock is held.
    let live = ".status-2-0000beef";
    fs::write(folder.join(live), "{}\n").expect("plant");
    let held = fs::File::create(folder.join(format!("{live}.lock"))).expect("plant");
    held.lock().expect("lock");
    let_time_pass(&p.s.cache());

    let pidfile = p.s.path("app.pid");
    let mut launcher = p.s.command(&p.exe);
    launcher
        .args(["sleep", "1.5", pidfile.to_str().expect("utf8")])
        .env("ONEFILE_UPDATE_STATUS", "/elsewhere")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut running = launcher.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The app's environment names this launcher's file.
    let app_pid = fs::read_to_string(&pidfile).expect("pid");
    let environ = fs::read(format!("/proc/{app_pid}/environ")).expect("environ");
    let named = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"ONEFILE_UPDATE_STATUS="))
        .map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()))
        .expect("ONEFILE_UPDATE_STATUS in the app's environment");
    let launcher_pid = running.id();
    let name = named
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!(".status-{launcher_pid}-")),
        "{name}"
    );
    assert_eq!(
        named.parent().map(Path::to_path_buf),
        Some(fs::canonicalize(&folder).expect("canonical"))
    );
    let meta = fs::symlink_metadata(&named).expect("the status file");
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert_eq!(meta.nlink(), 1);

    assert!(running.wait().expect("wait").success());
    let mut left = status_files(&p);
    left.sort();
    assert_eq!(
        left,
        [live.to_owned(), format!("{live}.lock")],
        "the dead launcher's files and this one's remain"
    );
}

/// The Python and Node examples of docs/updates.md, as printed there.
fn doc_example(language: &str) -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/updates.md");
    let text = fs::read_to_string(doc).expect("docs/updates.md");
    let section = text
        .split_once("## The app knows about its updates")
        .expect("the section")
        .1;
    let fence = format!("```{language}\n");
    let start = section.find(&fence).expect("the example") + fence.len();
    let len = section[start..].find("```").expect("its end");
    section[start..start + len].to_owned()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_python_and_node_examples_read_a_whole_update() {
    let runners: Vec<(&str, &str, &str)> = [
        ("python3", "python", "status.py"),
        ("node", "js", "status.js"),
    ]
    .into_iter()
    .filter(|(program, _, _)| {
        let found = have(program);
        if !found {
            skip(&format!(
                "{program} is not installed: its example is not run"
            ));
        }
        found
    })
    .collect();
    if runners.is_empty() {
        return;
    }
    let mut script = String::from("#!/bin/sh\nhere=$(dirname \"$0\")\n");
    for (program, _, file) in &runners {
        script.push_str(&format!(
            "{program} \"$here/{file}\" > \"$1/{file}.out\" 2>&1 &\n"
        ));
    }
    script.push_str("wait\n");
    let p = publish_apps(&["--entry", "bin/watch.sh"], |app| {
        fs::write(app.join("bin/watch.sh"), &script).expect("write");
        fs::set_permissions(app.join("bin/watch.sh"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for (_, language, file) in &runners {
            fs::write(app.join("bin").join(file), doc_example(language)).expect("write");
        }
    });
    // Slower than elsewhere: the interpreters start, then poll every 250 ms.
    p.server.route("/1.0/update.toml", drip(&p.toml11, 60));
    p.server
        .route(&format!("/1.1/{NAME}.bin"), drip(&p.v11, 150));
    let outputs = p.s.path("outputs");
    fs::create_dir(&outputs).expect("mkdir");
    let out = p.run(&[outputs.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_updated(&out);
    for (program, _, file) in &runners {
        let printed = fs::read_to_string(outputs.join(format!("{file}.out"))).expect("output");
        // Each line: the sequence, the state, the record.
        let seen: Vec<serde_json::Value> = printed
            .lines()
            .map(|line| {
                let mut fields = line.splitn(3, ' ');
                let sequence: u64 = fields.next().and_then(|s| s.parse().ok()).expect(line);
                let state = fields.next().expect(line).to_owned();
                let record: serde_json::Value =
                    serde_json::from_str(fields.next().expect(line)).expect(line);
                assert_eq!(record["sequence"].as_u64(), Some(sequence), "{line}");
                assert_eq!(record["state"].as_str(), Some(state.as_str()), "{line}");
                record
            })
            .collect();
        let names = states(&seen);
        assert_eq!(names.first(), Some(&"checking"), "{program}: {printed}");
        assert!(names.contains(&"downloading"), "{program}: {printed}");
        assert_eq!(names.last(), Some(&"ready"), "{program}: {printed}");
        assert_eq!(seen.last().expect("ready")["version"], "1.1");
        assert_sequence_rises(&seen);
    }
}

// ---- Restart to update ----------------------------------------------------

/// Runs the user's executable as `probe log-exit LOG CODE [CODE_IF_RESTARTED]`
/// with a mark in its environment; returns the launcher's output and the
/// lines the app logged, one per start.
fn run_logging(p: &Published, codes: &[&str], env: &[(&str, &str)]) -> (Output, Vec<String>) {
    let log = p.s.path("starts.log");
    let _ = fs::remove_file(&log);
    let mut launcher = p.s.command(&p.exe);
    launcher
        .args(["log-exit", log.to_str().expect("utf8")])
        .args(codes)
        .env("PROBE_MARK", "kept")
        .current_dir(p.s.dir.path());
    for (name, value) in env {
        launcher.env(name, value);
    }
    let out = launcher.output().expect("run");
    let text = fs::read_to_string(&log).unwrap_or_default();
    (out, text.lines().map(str::to_owned).collect())
}

/// What `probe log-exit` logs for a start of `version`.
fn start_line(
    p: &Published,
    version: &str,
    restarted: bool,
    status: bool,
    codes: &[&str],
) -> String {
    let log = p.s.path("starts.log");
    format!(
        "version={version} restarted={} mark=kept status={} cwd={} args={} log-exit {} {}",
        if restarted { "1" } else { "unset" },
        if status { "set" } else { "unset" },
        p.s.dir.path().display(),
        p.exe.display(),
        log.display(),
        codes.join(" ")
    )
}

#[test]
fn restart_to_update_starts_the_new_build_once_with_the_same_arguments() {
    let p = publish(&["--restart-exit-code", RESTART]);
    p.announce_11();
    let codes = [RESTART, "0"];
    let (out, starts) = run_logging(&p, &codes, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.1", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
    assert_eq!(status_files(&p), Vec::<String>::new());
}

#[test]
fn restart_waits_for_a_download_under_way_and_tells_the_code_when_ready() {
    let p = publish(&["--restart-exit-code", RESTART]);
    announce_11_slowly(&p);
    // The app learns the update is ready, and the code that installs it.
    let (_, seen) = watch(&p, &mut p.s.command(&p.exe));
    let ready = seen.last().expect("a state");
    assert_eq!(state(ready), "ready", "{seen:#?}");
    assert_eq!(ready["restart_exit_code"], 75);
    assert_eq!(p.version_now(), "1.1");
    // A launch that is itself a restart (marked with its own pid, as a
    // restarting launcher's exec leaves it) does not restart again: the
    // code is not offered.
    write_file(&p.exe, &p.v10, true);
    let_time_pass(&p.s.cache());
    let mut restarted = p.s.command(&probe());
    restarted.arg("exec-marked").arg(&p.exe);
    let (_, seen) = watch(&p, &mut restarted);
    let ready = seen.last().expect("a state");
    assert_eq!(state(ready), "ready", "{seen:#?}");
    assert!(ready.get("restart_exit_code").is_none(), "{ready}");
    // 1.0 again, now asking for its restart in the middle of the slow
    // download: the launcher waits for the install, then restarts.
    write_file(&p.exe, &p.v10, true);
    let_time_pass(&p.s.cache());
    let codes = [RESTART, "0"];
    let (out, starts) = run_logging(&p, &codes, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.1", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn restart_without_an_update_starts_the_same_version_once() {
    let p = publish(&["--restart-exit-code", RESTART]);
    let codes = [RESTART, "0"];
    let (out, starts) = run_logging(&p, &codes, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.0", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
    // Updates off: the same, without a status file.
    let (out, starts) = run_logging(&p, &codes, &[("AUTO_UPDATE_DISABLE", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, false, &codes),
            start_line(&p, "1.0", true, false, &codes),
        ]
    );
}

#[test]
fn the_restarted_app_asking_again_ends_the_launcher_with_that_code() {
    let p = publish(&["--restart-exit-code", RESTART]);
    p.announce_11();
    let codes = [RESTART];
    let (out, starts) = run_logging(&p, &codes, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.1", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
    // Other codes, and builds without a restart code, never restart.
    let (out, starts) = run_logging(&p, &["3"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(starts.len(), 1, "{starts:?}");
    let plain = publish(&[]);
    let (out, starts) = run_logging(&plain, &[RESTART], &[]);
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(starts.len(), 1, "{starts:?}");
}

/// 1.0 and 1.1 of the test app with `bin/t.sh` (`script`, run by `/bin/sh`
/// with the log's path as `$1`) as their entry, packed with `extra`.
fn publish_script(extra: &[&str], script: &str) -> Published {
    let mut args = vec!["--restart-exit-code", RESTART, "--entry", "bin/t.sh"];
    args.extend_from_slice(extra);
    publish_apps(&args, |app| {
        let text = format!("#!/bin/sh\nversion=$(cat \"${{0%/*}}/version.txt\")\n{script}");
        write_file(&app.join("bin/t.sh"), text.as_bytes(), true);
    })
}

/// Starts `p`'s executable with the log as its argument; returns the
/// launcher and the log's path once the app logged its first line.
fn start_script(p: &Published) -> (std::process::Child, PathBuf) {
    let log = p.s.path("script.log");
    let _ = fs::remove_file(&log);
    let child =
        p.s.command(&p.exe)
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, log)
}

fn lines_of(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

fn send(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: kill() on the pid of our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

#[test]
fn a_signal_the_app_survived_long_before_does_not_cancel_its_restart() {
    // Reloads on HUP, then, well after it, asks for its restart.
    let p = publish_script(
        &[],
        r#"trap 'echo got-hup >> "$1"' HUP
echo "start $version restarted=${ONEFILE_RESTARTED:-unset}" >> "$1"
[ -n "$ONEFILE_RESTARTED" ] && exit 0
sleep 1; sleep 3; echo exiting-75 >> "$1"; exit 75
"#,
    );
    let (child, log) = start_script(&p);
    std::thread::sleep(Duration::from_millis(300));
    send(&child, libc::SIGHUP);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        lines_of(&log),
        [
            "start 1.0 restarted=unset",
            "got-hup",
            "exiting-75",
            "start 1.0 restarted=1"
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stop_signal_the_app_ends_on_means_no_restart_and_no_wait() {
    let p = publish_script(
        &[],
        // The sleep starts before the line the test waits for: a signal
        // sent before it existed would leave it holding stderr 20 s.
        r#"trap 'echo got-term >> "$1"; exit 75' TERM
sleep 20 &
echo "start $version restarted=${ONEFILE_RESTARTED:-unset}" >> "$1"
wait
"#,
    );
    // The update check stalls: a wait for it would show.
    p.server.route("/1.0/update.toml", Route::Stall);
    let (child, log) = start_script(&p);
    let sent = Instant::now();
    send(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(
        lines_of(&log),
        ["start 1.0 restarted=unset", "got-term"],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("ONEFILE: Asked to stop: the restart code 75 ends this launch."),
        "{}",
        stderr(&out)
    );
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn a_restart_never_waits_for_a_stalled_check() {
    let p = publish(&["--restart-exit-code", RESTART, "--update-exit-wait", "1"]);
    p.server.route("/1.0/update.toml", Route::Stall);
    let codes = [RESTART, "0"];
    let started = Instant::now();
    let (out, starts) = run_logging(&p, &codes, &[]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.0", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
    // Well before the server's 20 s read timeout.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        stderr(&out).contains("No update downloading: waiting at most 1000 ms"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stop_signal_during_the_restart_wait_ends_the_launcher_by_that_signal() {
    use std::os::unix::process::ExitStatusExt;
    let p = publish_script(
        &[],
        r#"echo "start $version restarted=${ONEFILE_RESTARTED:-unset}" >> "$1"
exit 75
"#,
    );
    // The check stalls: the launcher waits its 5 s for it, then restarts.
    p.server.route("/1.0/update.toml", Route::Stall);
    let (child, log) = start_script(&p);
    std::thread::sleep(Duration::from_secs(1));
    send(&child, libc::SIGINT);
    let out = child.wait_with_output().expect("wait");
    // Not 75: its caller must not take it for the app asking to restart.
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{}", stderr(&out));
    assert_eq!(lines_of(&log), ["start 1.0 restarted=unset"]);
}

#[test]
fn a_packed_app_started_by_a_restarted_app_still_restarts() {
    // The restarted app's children inherit ONEFILE_RESTARTED=1: a packed
    // app among them is no restart, and restarts on its own code.
    let p = publish(&["--restart-exit-code", RESTART]);
    let codes = [RESTART, "0"];
    let (out, starts) = run_logging(&p, &codes, &[("ONEFILE_RESTARTED", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        starts,
        [
            start_line(&p, "1.0", false, true, &codes),
            start_line(&p, "1.0", true, true, &codes),
        ],
        "{}",
        stderr(&out)
    );
    // And it offers its code when an update is ready.
    announce_11_slowly(&p);
    let mut inherited = p.s.command(&p.exe);
    inherited.env("ONEFILE_RESTARTED", "1");
    let (_, seen) = watch(&p, &mut inherited);
    let ready = seen.last().expect("a state");
    assert_eq!(state(ready), "ready", "{seen:#?}");
    assert_eq!(ready["restart_exit_code"], 75);
}

#[test]
fn a_restart_is_no_rollback() {
    let p = publish_script(
        &["--update-exit-wait", "1"],
        r#"if [ -n "$ONEFILE_RESTARTED" ]; then head -n 1 "$ONEFILE_UPDATE_STATUS" >> "$1"; exit 0; fi
echo "start $version" >> "$1"
exit 75
"#,
    );
    // The check stalls: the first state stays.
    p.server.route("/1.0/update.toml", Route::Stall);
    let log = p.s.path("script.log");
    let out =
        p.s.command(&p.exe)
            .arg(&log)
            .env("ONEFILE_ROLLED_BACK_FROM", "1.1")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = lines_of(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "start 1.0");
    // What the restarted launch wrote first: never `rolled-back` (the
    // restarted launch may already have found no check due).
    let first: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
    assert!(
        ["checking", "not-due"].contains(&state(&first)),
        "{first}: {}",
        stderr(&out)
    );
}

#[test]
fn a_restart_that_cannot_start_is_one_error_line() {
    // The app removes the executable before asking for its restart.
    let p = publish_script(
        &[],
        r#"echo "start $version" >> "$1"
rm -f "$ONEFILE_EXE"
exit 75
"#,
    );
    let log = p.s.path("script.log");
    let mut cmd = p.s.command(&p.exe);
    cmd.arg(&log).env_remove("AUTO_UPDATE_DEBUG");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot start the app again after its restart request"),
        "{err}"
    );
    assert_eq!(lines_of(&log), ["start 1.0"]);
}

#[test]
fn stale_files_are_found_past_many_live_launchers() {
    let p = publish(&[]);
    p.run(&["version"]);
    let folder = p.s.cache().join(NAME);
    // More live launchers than one launch removes dead ones for, then one
    // dead launcher's files.
    let mut held = Vec::new();
    for i in 0..200 {
        let name = format!(".status-{}-{i:08x}", 100_000 + i);
        fs::write(folder.join(&name), "{}\n").expect("plant");
        let lock = fs::File::create(folder.join(format!("{name}.lock"))).expect("plant");
        lock.lock().expect("lock");
        held.push(lock);
    }
    let dead = ".status-1-0000dead";
    fs::write(folder.join(dead), "{}\n").expect("plant");
    fs::write(folder.join(format!("{dead}.lock")), "").expect("plant");
    let_time_pass(&p.s.cache());
    let out = p.run(&["version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = status_files(&p);
    assert!(
        !left.iter().any(|n| n.starts_with(dead)),
        "{}",
        stderr(&out)
    );
    assert_eq!(left.len(), 400);
}

#[test]
fn a_restart_code_an_app_cannot_exit_with_is_refused() {
    // Unix passes on the low 8 bits only: 256 would arrive as 0.
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out_path = s.path("app.bin");
    for (flag, code) in [
        ("--restart-exit-code", "256"),
        ("--restart-exit-code", "-1"),
        ("--unhealthy-exit-code", "300"),
    ] {
        let out = tools([
            "pack".as_ref(),
            app.as_os_str(),
            "-o".as_ref(),
            out_path.as_os_str(),
            "--stub".as_ref(),
            stub().as_os_str(),
            "--entry".as_ref(),
            "bin/probe".as_ref(),
            "--name".as_ref(),
            NAME.as_ref(),
            "--update-url-spec".as_ref(),
            "http://127.0.0.1:9/{VERSION}/update.toml".as_ref(),
            "--allow-insecure-http".as_ref(),
            std::ffi::OsStr::new(&format!("{flag}={code}")),
        ]);
        assert!(!out.status.success(), "{flag} {code} accepted");
        assert!(
            stderr(&out).contains(&format!("{flag} {code}: an exit code is from 1 to 255")),
            "{}",
            stderr(&out)
        );
    }
}
