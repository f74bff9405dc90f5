//! `probe`: the app the end-to-end tests pack. A real native program (not a
//! script, whose interpreter would hide `argv[0]`) that reports what it was
//! given and behaves as told: `probe COMMAND [ARGS]`. It builds for
//! Windows too (the Windows tests pack it), where `wait-signal` and
//! `state` do not exist, and `exit N` takes any 32-bit code (an NTSTATUS
//! as a negative number).
//!
//! - `args`: prints argv, one per line, `argv[0]` first
//! - `env NAME...`: prints `NAME=value` (or `NAME unset`)
//! - `cwd`: prints the working directory
//! - `cat`: copies stdin to stdout
//! - `exit N`: exits with code N
//! - `print TEXT [SECONDS]`: prints TEXT, then sleeps
//! - `die SIGNAL`: kills itself with SIGNAL
//! - `wait-signal PIDFILE`: writes its pid, waits for INT/TERM/HUP/QUIT,
//!   prints `got N` and exits 0
//! - `sleep SECONDS [PIDFILE]`: writes its pid, sleeps, ignoring SIGTERM
//! - `version [SECONDS]`: sleeps, then prints `version.txt` from next to
//!   the program
//! - `state`: prints on stderr (stdout may be closed) what it was started
//!   with, as recorded before Rust's runtime changed any of it: `fd0=`,
//!   `fd1=`, `fd2=` (`open` or `closed`), `ignored=` and `blocked=` (the
//!   ignored and blocked signals, hex, bit N-1 for signal N, as in
//!   `/proc/PID/status`), `pgid=` and `sid=`
//! - `count-term PIDFILE`: writes its pid, counts SIGTERMs; half a second
//!   after the first, prints `TERM n` and exits 0
//! - `wait-ctrl PIDFILE` (Windows): writes its pid, waits up to 20 s for
//!   a console Ctrl-C or Ctrl-Break, prints `got ctrl-c` or
//!   `got ctrl-break` and exits 42 (3 if none came)
//! - `ctrl-send PID c|break` (Windows): attaches to the console of process
//!   PID and sends Ctrl-C or Ctrl-Break to every process on it (itself
//!   ignoring it); exits 0, or 1 with the failed call on stderr
//! - `spawn-sleep SECONDS PIDFILE`: starts `probe sleep SECONDS PIDFILE`
//!   and exits 0 without waiting for it
//! - `watch-status OUT SECONDS`: reads the file `ONEFILE_UPDATE_STATUS`
//!   names every 2 ms and appends each content that differs from the last
//!   to OUT, until a final state (`ready`, `up-to-date`, `failed`,
//!   `not-due`) or SECONDS; writes `unset` if the variable is not set
//! - `hold-status SECONDS`: opens the file `ONEFILE_UPDATE_STATUS` names
//!   and keeps it open for SECONDS; on Windows without `FILE_SHARE_DELETE`,
//!   as Python's `open()` does, so that it cannot be renamed over meanwhile
//! - `log-exit LOG CODE [CODE_IF_RESTARTED]`: appends one line to LOG
//!   (`version.txt`, `ONEFILE_RESTARTED`, `PROBE_MARK`, whether
//!   `ONEFILE_UPDATE_STATUS` is set, the working directory, then argv),
//!   and exits with CODE, or
//!   with CODE_IF_RESTARTED when `ONEFILE_RESTARTED` is set
//! - `exec-marked PROGRAM [ARGS]` (Unix): replaces itself with PROGRAM,
//!   with `ONEFILE_RESTARTED` set to its own process id, as a launcher
//!   that restarts does

use std::io::{Read, Write};
use std::sync::atomic::{AtomicI32, Ordering};
#[cfg(unix)]
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::{Duration, Instant};

#[cfg(unix)]
static GOT: AtomicI32 = AtomicI32::new(0);
static TERMS: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn record(sig: libc::c_int) {
    GOT.store(sig, Ordering::SeqCst);
}

extern "C" fn count_term(_: libc::c_int) {
    TERMS.fetch_add(1, Ordering::SeqCst);
}

/// What the process was started with, recorded by `snapshot` before Rust's
/// runtime ignores SIGPIPE and fills closed stdio with /dev/null.
#[cfg(unix)]
static STARTED_IGNORED: AtomicU64 = AtomicU64::new(0);
#[cfg(unix)]
static STARTED_BLOCKED: AtomicU64 = AtomicU64::new(0);
#[cfg(unix)]
static STARTED_CLOSED: AtomicU8 = AtomicU8::new(0);

#[cfg(unix)]
#[used]
#[unsafe(link_section = ".init_array")]
static SNAPSHOT_AT_START: extern "C" fn() = snapshot;

#[cfg(unix)]
extern "C" fn snapshot() {
    let (mut ignored, mut blocked, mut closed) = (0u64, 0u64, 0u8);
    // SAFETY: queries only, into zeroed structs we own; fcntl(F_GETFD) on
    // a descriptor number that may be closed (then it fails, EBADF).
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                ignored |= 1 << (sig - 1);
            }
            if libc::sigismember(&mask, sig) == 1 {
                blocked |= 1 << (sig - 1);
            }
        }
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                closed |= 1 << fd;
            }
        }
    }
    STARTED_IGNORED.store(ignored, Ordering::SeqCst);
    STARTED_BLOCKED.store(blocked, Ordering::SeqCst);
    STARTED_CLOSED.store(closed, Ordering::SeqCst);
}

fn write_pid(path: Option<&String>) {
    if let Some(path) = path {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, std::process::id().to_string()).expect("write pid");
        std::fs::rename(&tmp, path).expect("publish pid");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).map(String::as_str).unwrap_or("args");
    let rest = &args[args.len().min(2)..];
    let mut out = std::io::stdout().lock();
    match command {
        "args" => {
            for a in &args {
                writeln!(out, "{a}").expect("stdout");
            }
        }
        "env" => {
            for name in rest {
                match std::env::var(name) {
                    Ok(v) => writeln!(out, "{name}={v}"),
                    Err(_) => writeln!(out, "{name} unset"),
                }
                .expect("stdout");
            }
        }
        "cwd" => {
            let cwd = std::env::current_dir().expect("cwd");
            writeln!(out, "{}", cwd.display()).expect("stdout");
        }
        "cat" => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).expect("stdin");
            out.write_all(&input).expect("stdout");
        }
        "exit" => std::process::exit(rest[0].parse().expect("exit code")),
        "print" => {
            writeln!(out, "{}", rest[0]).expect("stdout");
            out.flush().expect("stdout");
            if let Some(secs) = rest.get(1) {
                std::thread::sleep(Duration::from_secs_f64(secs.parse().expect("seconds")));
            }
        }
        "die" => {
            let sig: i32 = rest[0].parse().expect("signal");
            // SAFETY: resetting a disposition and raising a signal.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        #[cfg(unix)]
        "wait-signal" => {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                // SAFETY: the handler only stores to an atomic.
                unsafe {
                    libc::signal(sig, record as *const () as libc::sighandler_t);
                }
            }
            write_pid(rest.first());
            for _ in 0..1000 {
                let sig = GOT.load(Ordering::SeqCst);
                if sig != 0 {
                    writeln!(out, "got {sig}").expect("stdout");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            std::process::exit(3);
        }
        "sleep" => {
            // SAFETY: ignoring a signal.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            write_pid(rest.get(1));
            std::thread::sleep(Duration::from_secs_f64(rest[0].parse().expect("seconds")));
        }
        "version" => {
            if let Some(secs) = rest.first() {
                std::thread::sleep(Duration::from_secs_f64(secs.parse().expect("seconds")));
            }
            let me = std::env::current_exe().expect("exe");
            let text =
                std::fs::read_to_string(me.with_file_name("version.txt")).expect("version.txt");
            write!(out, "{text}").expect("stdout");
        }
        #[cfg(unix)]
        "state" => {
            let closed = STARTED_CLOSED.load(Ordering::SeqCst);
            let mut text = String::new();
            for fd in 0..3 {
                let open = if closed & (1 << fd) != 0 {
                    "closed"
                } else {
                    "open"
                };
                text.push_str(&format!("fd{fd}={open}\n"));
            }
            // SAFETY: getpgrp and getsid(0) have no preconditions.
            let (pgid, sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
            text.push_str(&format!(
                "ignored={:016x}\nblocked={:016x}\npgid={pgid}\nsid={sid}\n",
                STARTED_IGNORED.load(Ordering::SeqCst),
                STARTED_BLOCKED.load(Ordering::SeqCst),
            ));
            std::io::stderr()
                .write_all(text.as_bytes())
                .expect("stderr");
        }
        "count-term" => {
            // SAFETY: the handler only adds to an atomic.
            unsafe {
                libc::signal(libc::SIGTERM, count_term as *const () as libc::sighandler_t);
            }
            write_pid(rest.first());
            let deadline = Instant::now() + Duration::from_secs(20);
            while TERMS.load(Ordering::SeqCst) == 0 {
                if Instant::now() > deadline {
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(500));
            writeln!(out, "TERM {}", TERMS.load(Ordering::SeqCst)).expect("stdout");
        }
        #[cfg(windows)]
        "wait-ctrl" => {
            let got = console::wait_for_ctrl(rest.first());
            match got {
                Some(name) => writeln!(out, "got {name}").expect("stdout"),
                None => std::process::exit(3),
            }
            out.flush().expect("stdout");
            std::process::exit(42);
        }
        #[cfg(windows)]
        "ctrl-send" => {
            let pid: u32 = rest[0].parse().expect("pid");
            if let Err(e) = console::send_ctrl(pid, rest[1] == "break") {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        "spawn-sleep" => {
            let me = std::env::current_exe().expect("exe");
            #[allow(
                clippy::zombie_processes,
                reason = "left running on purpose: the test watches it outlive us"
            )]
            let _left = std::process::Command::new(me)
                .args(["sleep", &rest[0], &rest[1]])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn sleep");
        }
        #[cfg(unix)]
        "exec-marked" => {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(&rest[0])
                .args(&rest[1..])
                .env("ONEFILE_RESTARTED", std::process::id().to_string())
                .exec();
            eprintln!("probe: cannot exec {}: {err}", rest[0]);
            std::process::exit(2);
        }
        "watch-status" => watch_status(&rest[0], rest[1].parse().expect("seconds")),
        "hold-status" => {
            let path = std::env::var_os("ONEFILE_UPDATE_STATUS").expect("ONEFILE_UPDATE_STATUS");
            let mut options = std::fs::OpenOptions::new();
            options.read(true);
            #[cfg(windows)]
            {
                use std::os::windows::fs::OpenOptionsExt;
                options.share_mode(windows_sys::Win32::Storage::FileSystem::FILE_SHARE_READ);
            }
            let held = options.open(path).expect("open the status file");
            std::thread::sleep(Duration::from_secs_f64(rest[0].parse().expect("seconds")));
            drop(held);
        }
        "log-exit" => {
            let me = std::env::current_exe().expect("exe");
            let version =
                std::fs::read_to_string(me.with_file_name("version.txt")).expect("version.txt");
            let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "unset".into());
            let restarted = std::env::var_os("ONEFILE_RESTARTED").is_some();
            let status = if std::env::var_os("ONEFILE_UPDATE_STATUS").is_some() {
                "set"
            } else {
                "unset"
            };
            let line = format!(
                "version={} restarted={} mark={} status={status} cwd={} args={}\n",
                version.trim(),
                var("ONEFILE_RESTARTED"),
                var("PROBE_MARK"),
                std::env::current_dir().expect("cwd").display(),
                args.join(" ")
            );
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rest[0])
                .expect("open log");
            log.write_all(line.as_bytes()).expect("write log");
            let code = match rest.get(2) {
                Some(code) if restarted => code,
                _ => &rest[1],
            };
            std::process::exit(code.parse().expect("exit code"));
        }
        other => {
            eprintln!("probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}

/// `watch-status OUT SECONDS`: records every state of the update status
/// file as the app sees it.
fn watch_status(out: &str, seconds: f64) {
    let mut record = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("open record");
    let Some(path) = std::env::var_os("ONEFILE_UPDATE_STATUS") else {
        record.write_all(b"unset\n").expect("write record");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut last = String::new();
    while Instant::now() < deadline {
        // Missing for a moment is an error of the launcher's: recorded.
        let now = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("unreadable: {e}\n"));
        if now != last {
            record.write_all(now.as_bytes()).expect("write record");
            last = now;
            let last_state = ["ready", "up-to-date", "failed", "not-due"]
                .iter()
                .any(|state| last.contains(&format!("\"state\":\"{state}\"")));
            if last_state {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Console control events, on Windows.
#[cfg(windows)]
mod console {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use windows_sys::Win32::Foundation::{FALSE, TRUE};
    use windows_sys::Win32::System::Console::{
        AttachConsole, CTRL_BREAK_EVENT, CTRL_C_EVENT, FreeConsole, GenerateConsoleCtrlEvent,
        SetConsoleCtrlHandler,
    };
    use windows_sys::core::BOOL;

    /// The event received, plus one; 0 while none has come.
    static GOT: AtomicU32 = AtomicU32::new(0);

    unsafe extern "system" fn record(event: u32) -> BOOL {
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            GOT.store(event + 1, Ordering::SeqCst);
            return TRUE;
        }
        FALSE
    }

    pub fn wait_for_ctrl(pidfile: Option<&String>) -> Option<&'static str> {
        // SAFETY: a handler that only stores to an atomic. The "ignore
        // Ctrl-C" flag is cleared too: a process group created with
        // CREATE_NEW_PROCESS_GROUP starts with it set.
        unsafe {
            SetConsoleCtrlHandler(None, FALSE);
            SetConsoleCtrlHandler(Some(record), TRUE);
        }
        super::write_pid(pidfile);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match GOT.load(Ordering::SeqCst) {
                0 => std::thread::sleep(Duration::from_millis(10)),
                n if n == CTRL_C_EVENT + 1 => return Some("ctrl-c"),
                _ => return Some("ctrl-break"),
            }
        }
        None
    }

    pub fn send_ctrl(pid: u32, brk: bool) -> Result<(), String> {
        let fail = |call: &str| format!("{call}: {}", std::io::Error::last_os_error());
        // SAFETY: console calls without pointers; this process ignores the
        // event it sends (it starts no process that could inherit that).
        unsafe {
            FreeConsole();
            if AttachConsole(pid) == FALSE {
                return Err(fail("AttachConsole"));
            }
            SetConsoleCtrlHandler(None, TRUE);
            let event = if brk { CTRL_BREAK_EVENT } else { CTRL_C_EVENT };
            if GenerateConsoleCtrlEvent(event, 0) == FALSE {
                return Err(fail("GenerateConsoleCtrlEvent"));
            }
        }
        Ok(())
    }
}
