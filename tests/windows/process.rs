//! How the Windows launcher runs the app as a process: the app does not
//! outlive a killed launcher (a job object), what the app leaves running
//! on purpose outlives a launcher that exits normally, exit codes still
//! pass through, and console Ctrl-C and Ctrl-Break reach the app while
//! the launcher waits for it (docs/launcher.md, "On Windows").

use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    CREATE_NEW_CONSOLE, DETACHED_PROCESS, OpenProcess, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    TerminateProcess, WaitForSingleObject,
};

use crate::support::{self, Scratch};

fn packed_probe(s: &Scratch) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probeapp.exe");
    support::pack(&app, &exe, &["--version", "1.0"]);
    exe
}

/// Waits (20 s at most) for `probe` to publish its pid in `path`; fails
/// early if `launcher` exits first.
fn wait_for_pid(path: &Path, mut launcher: Option<&mut Child>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.trim().parse().expect("pid");
        }
        if let Some(status) = launcher
            .as_mut()
            .and_then(|l| l.try_wait().expect("try_wait"))
        {
            panic!("the launcher exited ({status}) before the app wrote its pid");
        }
        assert!(Instant::now() < deadline, "no pid file after 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process, watched through a handle opened while it runs (so a later
/// process with the same id is never mistaken for it).
struct Watched(HANDLE);

impl Watched {
    fn open(pid: u32) -> Watched {
        // SAFETY: no pointers; a null handle is checked.
        let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE | PROCESS_TERMINATE, 0, pid) };
        assert!(
            !h.is_null(),
            "cannot open process {pid}: {}",
            std::io::Error::last_os_error()
        );
        Watched(h)
    }

    /// Whether it ended within `within`.
    fn ends_within(&self, within: Duration) -> bool {
        // SAFETY: our open handle.
        let r = unsafe { WaitForSingleObject(self.0, within.as_millis() as u32) };
        assert!(r == WAIT_OBJECT_0 || r == WAIT_TIMEOUT, "wait: {r:#x}");
        r == WAIT_OBJECT_0
    }

    fn terminate(&self) {
        // SAFETY: our open handle.
        unsafe { TerminateProcess(self.0, 1) };
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // SAFETY: our open handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

#[test]
fn a_killed_launcher_takes_the_app_with_it() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let pidfile = s.path("app.pid");
    // The traces go to a file: a pipe would stay open in the app, and
    // reading it to its end would wait for the app.
    let trace_file = s.path("traces.txt");
    let mut launcher = s
        .command(&exe)
        .args(["sleep".as_ref(), "60".as_ref(), pidfile.as_os_str()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&trace_file).expect("create trace file"))
        .spawn()
        .expect("start the launcher");
    let app = Watched::open(wait_for_pid(&pidfile, Some(&mut launcher)));

    launcher.kill().expect("TerminateProcess the launcher");
    launcher.wait().expect("wait");
    let ended = app.ends_within(Duration::from_secs(20));
    if !ended {
        app.terminate();
    }
    let text = std::fs::read_to_string(&trace_file).expect("read traces");
    let traces: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ONEFILE: "))
        .collect();
    if let Some(no_job) = traces.iter().find(|t| t.starts_with("No job object")) {
        support::skip(&format!("the launcher could not make a job here: {no_job}"));
        return;
    }
    assert!(
        ended,
        "the app still ran 20 s after its launcher was killed; traces: {traces:?}"
    );
}

#[test]
fn what_the_app_leaves_running_outlives_a_launcher_that_exits() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let pidfile = s.path("left.pid");
    let mut launcher = s
        .command(&exe)
        .args(["spawn-sleep".as_ref(), "30".as_ref(), pidfile.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the launcher");
    let status = launcher.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let left = Watched::open(wait_for_pid(&pidfile, None));
    let ended = left.ends_within(Duration::from_secs(2));
    left.terminate();
    assert!(
        !ended,
        "the process the app left running ended with the launcher"
    );
}

#[test]
fn the_exit_code_passes_through_the_job() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    for code in [0, 7, -1_073_741_510] {
        let out = s.run(&exe, ["exit", &code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "{}", support::stderr(&out));
        let traces = support::launch_traces(&out);
        assert!(
            !traces.iter().any(|t| t.starts_with("No job object")),
            "{traces:?}"
        );
    }
}

/// Starts the packed probe waiting for a console event, in a console of
/// its own, sends it `event` ("c" or "break") from a helper attached to
/// that console, and returns the launcher's output; `None` (the test
/// skipped) if this system cannot deliver the event.
fn deliver_console_event(event: &str) -> Option<std::process::Output> {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let pidfile = s.path("app.pid");
    let mut launcher = s
        .command(&exe)
        .args(["wait-ctrl".as_ref(), pidfile.as_os_str()])
        .creation_flags(CREATE_NEW_CONSOLE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the launcher");
    let _app = wait_for_pid(&pidfile, Some(&mut launcher));
    let sent = std::process::Command::new(support::probe())
        .args(["ctrl-send", &launcher.id().to_string(), event])
        .creation_flags(DETACHED_PROCESS)
        .stdin(Stdio::null())
        .output()
        .expect("run the sender");
    if !sent.status.success() {
        let _ = launcher.kill();
        let _ = launcher.wait();
        // Wine 8.0's server sends only Ctrl-C: for Ctrl-Break its
        // GenerateConsoleCtrlEvent fails.
        support::skip(&format!(
            "this system cannot send the console event ({}; Wine 8.0 implements only Ctrl-C)",
            support::stderr(&sent).trim()
        ));
        return None;
    }
    let out = launcher.wait_with_output().expect("wait");
    if out.status.code() == Some(3) {
        support::skip("the console event was sent but reached no process (Wine)");
        return None;
    }
    Some(out)
}

#[test]
fn ctrl_c_reaches_the_app_and_the_launcher_waits_for_it() {
    let Some(out) = deliver_console_event("c") else {
        return;
    };
    assert_eq!(
        (out.status.code(), support::stdout(&out).trim()),
        (Some(42), "got ctrl-c"),
        "{}",
        support::stderr(&out)
    );
}

#[test]
fn ctrl_break_reaches_the_app_and_the_launcher_waits_for_it() {
    let Some(out) = deliver_console_event("break") else {
        return;
    };
    assert_eq!(
        (out.status.code(), support::stdout(&out).trim()),
        (Some(42), "got ctrl-break"),
        "{}",
        support::stderr(&out)
    );
}
