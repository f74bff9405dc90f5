//! Running the app as if it had been started directly: file-size limits in
//! an ordinary shell, closed stdio, the signal state it inherits, signals
//! sent to its process group, and signals during the launcher's wait for
//! the updater after the app has exited.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::launch::wait_for_pid;
use crate::support::*;
use crate::update::{Published, publish};

/// Update settings pointing at a port nobody listens on: the launcher then
/// stays as the app's parent (spawn mode) and the sidecar fails quietly.
const SPAWN_MODE: &[&str] = &[
    "--update-url-spec",
    "http://127.0.0.1:9/{VERSION}/update.toml",
];

/// Both ways the launcher runs the app: `exec` (no update settings) and as
/// its parent (update settings).
const MODES: [(&str, &[&str]); 2] = [("exec", &[]), ("spawn", SPAWN_MODE)];

fn packed_probe(s: &Scratch, name: &str, extra: &[&str]) -> PathBuf {
    let app = s.probe_app(&format!("app-{name}"), "1.0");
    let exe = s.path(&format!("{name}.bin"));
    let mut args = vec!["--name", name];
    args.extend_from_slice(extra);
    pack(&app, &exe, &args);
    exe
}

/// `exe ARGS` started by `sh` the way a user's shell starts it after
/// `ulimit -f BLOCKS`: SIGXFSZ at its default disposition, not ignored.
fn in_shell_with_file_limit(s: &Scratch, exe: &Path, blocks: u64, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(args)
        .env("ONEFILE_CACHE_DIR", s.cache())
        .env("AUTO_UPDATE_DEBUG", "1")
        .env_remove("AUTO_UPDATE_DISABLE")
        .stdin(Stdio::null());
    // SAFETY: signal() is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// `ulimit -f` counts 512-byte blocks in dash and POSIX shells, 1 KiB in
/// bash: 2048 blocks is 1 or 2 MiB, below every file the tests make too big.
const ONE_OR_TWO_MIB: u64 = 2048;

#[test]
fn file_size_limit_in_an_ordinary_shell_is_a_full_disk_not_a_death() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("data/big"), &noise(4 << 20, 7), false);
    let exe = s.path("probe.bin");
    pack(&app, &exe, &[]);
    let out = in_shell_with_file_limit(&s, &exe, ONE_OR_TWO_MIB, &["print", "must not run"])
        .output()
        .expect("run sh");
    assert_eq!(
        out.status.signal(),
        None,
        "the launcher died of signal {:?}: {}",
        out.status.signal(),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(msgs[0].contains("disk is full"), "{msgs:?}");
    assert_eq!(stdout(&out), "");
    let out = s.run(&exe, ["print", "fine"]);
    assert_eq!(stdout(&out), "fine\n", "{}", stderr(&out));
}

#[test]
fn file_size_limit_in_an_ordinary_shell_spares_the_app_during_a_download() {
    let p = publish(&[]);
    p.announce_11();
    assert!(
        p.v11.len() > 2 << 20,
        "the download must pass the limit: {}",
        p.v11.len()
    );
    let warm =
        p.s.command(&p.exe)
            .args(["exit", "0"])
            .env("AUTO_UPDATE_DISABLE", "1")
            .status()
            .expect("run");
    assert!(warm.success());
    // The app is still running while the download passes the limit.
    let out = in_shell_with_file_limit(&p.s, &p.exe, ONE_OR_TWO_MIB, &["version", "2"])
        .output()
        .expect("run sh");
    assert_eq!(
        out.status.signal(),
        None,
        "the launcher died of signal {:?}: {}",
        out.status.signal(),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "1.0\n",
        "the app was cut short: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("File too large")),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
}

/// The `name=value` lines `probe state` printed, launcher traces left out.
fn state(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| {
            ["fd", "ignored=", "blocked="]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// `probe state` started with descriptor `closed` closed.
fn state_with_closed(s: &Scratch, program: &Path, closed: libc::c_int) -> Output {
    let mut cmd = s.command(program);
    cmd.arg("state").stderr(Stdio::piped());
    if closed != 1 {
        cmd.stdout(Stdio::piped());
    }
    // SAFETY: close() is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(closed);
            Ok(())
        });
    }
    cmd.output().expect("run")
}

#[test]
fn closed_stdin_or_stdout_reaches_the_app_closed() {
    let s = Scratch::new();
    for (mode, extra) in MODES {
        let exe = packed_probe(&s, mode, extra);
        for closed in [0, 1] {
            let direct = state(&state_with_closed(&s, &probe(), closed));
            assert!(direct.contains(&format!("fd{closed}=closed")), "{direct:?}");
            let out = state_with_closed(&s, &exe, closed);
            assert!(out.status.success(), "{}", stderr(&out));
            let packed = state(&out);
            assert_eq!(
                packed[..3],
                direct[..3],
                "{mode} mode, fd {closed} closed: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn closed_stdin_never_becomes_one_of_the_launchers_files() {
    // The launcher, while it stays the app's parent, holds /dev/null where
    // it was given nothing: none of its own files (its executable, the
    // cache lock, a download) ever lands on descriptor 0.
    let s = Scratch::new();
    let exe = packed_probe(&s, "spawn", SPAWN_MODE);
    let pidfile = s.path("pid");
    let mut cmd = s.command(&exe);
    cmd.args(["sleep", "30", pidfile.to_str().expect("utf8")])
        .stderr(Stdio::null());
    // SAFETY: close() is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    wait_for_pid(&pidfile);
    let launcher_stdin = fs::read_link(format!("/proc/{}/fd/0", child.id()));
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        launcher_stdin.expect("launcher fd 0"),
        Path::new("/dev/null")
    );
}

/// `probe state` started with SIGPIPE and SIGHUP ignored, SIGXFSZ at its
/// default, and SIGUSR1 and SIGTERM blocked.
fn state_with_signal_state(s: &Scratch, program: &Path) -> Output {
    let mut cmd = s.command(program);
    cmd.arg("state");
    // SAFETY: signal() and sigprocmask() are async-signal-safe; they run
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.output().expect("run")
}

#[test]
fn inherited_signal_state_reaches_the_app() {
    let s = Scratch::new();
    let direct = state(&state_with_signal_state(&s, &probe()));
    let bit = |sig: i32| 1u64 << (sig - 1);
    let expect_ignored = bit(libc::SIGPIPE) | bit(libc::SIGHUP);
    assert!(
        direct.contains(&format!("ignored={expect_ignored:016x}")),
        "{direct:?}"
    );
    for (mode, extra) in MODES {
        let exe = packed_probe(&s, mode, extra);
        let out = state_with_signal_state(&s, &exe);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(state(&out), direct, "{mode} mode: {}", stderr(&out));
    }
}

/// A spawn-mode launcher started in a session of its own, as a service or
/// `setsid` starts it: no controlling terminal, leading its process group.
fn start_without_terminal(s: &Scratch, exe: &Path, args: &[&str]) -> Child {
    let mut cmd = s.command(exe);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setsid() is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn")
}

#[test]
fn a_sigterm_to_the_process_group_reaches_the_app_once() {
    let s = Scratch::new();
    let exe = packed_probe(&s, "spawn", SPAWN_MODE);
    // Each launch twice: once with the group as the target (`kill -TERM
    // -PGID`, what `timeout` and job control do), once the launcher alone.
    let mut counts = Vec::new();
    for trial in 0..24 {
        let to_group = trial % 3 != 2;
        let pidfile = s.path(&format!("pid-{trial}"));
        let child =
            start_without_terminal(&s, &exe, &["count-term", pidfile.to_str().expect("utf8")]);
        wait_for_pid(&pidfile);
        let launcher = child.id() as libc::pid_t;
        let target = if to_group { -launcher } else { launcher };
        // SAFETY: signalling our own child, or the process group it leads.
        assert_eq!(unsafe { libc::kill(target, libc::SIGTERM) }, 0);
        let out = child.wait_with_output().expect("wait");
        counts.push((to_group, stdout(&out).trim().to_owned()));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let wrong: Vec<_> = counts.iter().filter(|(_, c)| c != "TERM 1").collect();
    assert!(
        wrong.is_empty(),
        "(to the group, what the app got): {wrong:?}"
    );
}

/// The process group and session the probe reported.
fn ids(out: &Output) -> (i32, i32) {
    let text = stderr(out);
    let field = |name: &str| -> i32 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("pgid="), field("sid="))
}

#[test]
fn with_a_terminal_the_app_shares_the_launchers_process_group() {
    // Terminal keys, terminal reads and job control need the app in the
    // terminal's foreground group, which the launcher leads; without a
    // terminal it leads a group of its own.
    let s = Scratch::new();
    let exe = packed_probe(&s, "spawn", SPAWN_MODE);

    let child = start_without_terminal(&s, &exe, &["state"]);
    let launcher = child.id() as i32;
    let out = child.wait_with_output().expect("wait");
    let (pgid, sid) = ids(&out);
    assert_eq!(sid, launcher, "{}", stderr(&out));
    assert_ne!(pgid, launcher, "without a terminal: {}", stderr(&out));

    // SAFETY: posix_openpt and friends on a descriptor we own.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if master < 0 {
        skip("no pseudo-terminal available");
        return;
    }
    // SAFETY: as above; ptsname's buffer is copied before any other call.
    let pts = unsafe {
        if libc::grantpt(master) != 0 || libc::unlockpt(master) != 0 {
            libc::close(master);
            skip("cannot unlock a pseudo-terminal");
            return;
        }
        std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned()
    };
    let mut cmd = s.command(&exe);
    cmd.arg("state")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid, open and ioctl are async-signal-safe; they run
    // between fork and exec. Opening the terminal as a session leader
    // makes it the controlling terminal.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(pts.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    let launcher = child.id() as i32;
    let out = child.wait_with_output().expect("wait");
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(master) };
    let (pgid, _) = ids(&out);
    assert_eq!(pgid, launcher, "with a terminal: {}", stderr(&out));
}

/// A build whose launcher waits after its app exits: 1.0 gives its
/// updater 30 s after the exit, and the 1.1 announced hangs in its
/// self-test (a local step, which the launcher waits for rather than hand
/// it off) until the self-test's 10 s limit.
#[cfg(target_arch = "x86_64")]
fn build_that_waits_after_exit() -> Published {
    crate::selftest::publish_a_hanging_build("30")
}

/// Starts `p`'s build and returns once its app has exited and been reaped
/// and the launcher waits for its updater: the self-test of 1.1 runs. The
/// app lives 2 s, so that the download is over by its exit and nothing is
/// left on the network that the launcher would hand off.
#[cfg(target_arch = "x86_64")]
fn start_and_let_the_app_exit(p: &Published, pidfile: &Path) -> (Child, u32) {
    let mut child =
        p.s.spawn_piped(&p.exe, &["sleep", "2", pidfile.to_str().expect("utf8")]);
    let app = wait_for_pid(pidfile);
    let folder = p.exe.parent().expect("folder");
    let deadline = Instant::now() + Duration::from_secs(30);
    let self_testing = || {
        crate::selftest::running_in(folder)
            .iter()
            .any(|exe| Path::new(exe) != p.exe)
    };
    while Path::new(&format!("/proc/{app}")).exists() || !self_testing() {
        assert!(
            Instant::now() < deadline,
            "the app never ended, or the self-test never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the launcher did not wait for its updater"
    );
    (child, app)
}

/// Waits up to `limit` for `child`; kills it if it is still running.
fn wait_at_most(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let _ = child.kill();
    (child.wait_with_output().expect("wait"), took)
}

#[test]
#[cfg(target_arch = "x86_64")]
fn int_or_term_ends_the_wait_for_the_updater_at_once() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let p = build_that_waits_after_exit();
        let pidfile = p.s.path(&format!("pid-{sig}"));
        let (child, _) = start_and_let_the_app_exit(&p, &pidfile);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let (out, took) = wait_at_most(child, Duration::from_secs(3));
        assert!(
            took < Duration::from_secs(2),
            "signal {sig} ignored for {took:?}: {}",
            stderr(&out)
        );
        // The app's own status, which the signal did not change.
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_term_passed_on_to_the_app_is_not_followed_by_the_wait() {
    // Whoever stops the app through the launcher (a service manager, a
    // user's `kill`) wants the launcher gone with it, not 30 s later.
    let p = build_that_waits_after_exit();
    let pidfile = p.s.path("pid");
    let child =
        p.s.spawn_piped(&p.exe, &["wait-signal", pidfile.to_str().expect("utf8")]);
    wait_for_pid(&pidfile);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (out, took) = wait_at_most(child, Duration::from_secs(3));
    assert_eq!(stdout(&out).trim(), "got 15", "{}", stderr(&out));
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
#[cfg(target_arch = "x86_64")]
fn no_signal_reaches_a_process_that_reused_the_apps_pid() {
    let p = build_that_waits_after_exit();
    let (launcher, app) = start_and_let_the_app_exit(&p, &p.s.path("pid"));
    // Let the next process take the app's pid.
    let mut victim = None;
    for _ in 0..200 {
        if fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", app - 1)).is_err() {
            break;
        }
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        if sleeper.id() == app {
            victim = Some(sleeper);
            break;
        }
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    let Some(mut victim) = victim else {
        let _ = wait_at_most(launcher, Duration::ZERO);
        skip("cannot give a new process the app's pid (needs root, /proc/sys/kernel/ns_last_pid)");
        return;
    };
    // Signals the launcher passed on while the app ran.
    for sig in [libc::SIGUSR1, libc::SIGTERM] {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(launcher.id() as i32, sig) };
        std::thread::sleep(Duration::from_millis(300));
    }
    let alive = victim.try_wait().expect("try_wait").is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    let (out, _) = wait_at_most(launcher, Duration::from_secs(3));
    assert!(
        alive,
        "the process that reused the app's pid {app} was signalled: {}",
        stderr(&out)
    );
}
