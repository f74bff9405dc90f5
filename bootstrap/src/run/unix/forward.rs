//! Passing signals on to a spawned app, and ending the launcher by signal
//! once the app is gone.
//!
//! - Where the app runs: with a controlling terminal it shares the
//!   launcher's process group, so that terminal keys, terminal reads and
//!   job control reach it as they would reach it started directly; keys
//!   from the terminal then already reached it (`SI_KERNEL`) and are not
//!   passed on. Without a controlling terminal (services, CI, cron, scripts
//!   under `setsid`, Linux only, where the parent-death signal stands in
//!   for a group-wide kill), the app leads a process group of its own, so a
//!   signal sent to the launcher's group (`kill -TERM -PGID`, `timeout`)
//!   reaches only the launcher, which passes it on to the app's group: the
//!   app and its children get it once, as they would started directly.
//! - Which signals: INT, TERM, HUP, QUIT, USR1, USR2, except those the
//!   launcher was started with ignored: the app inherits those ignored
//!   (`nohup`), and nothing is passed on.
//! - After the app exits: [`app_exited`] is called while the app is still
//!   an unreaped zombie (its pid cannot be reused yet), and returns once no
//!   handler can still send to it; the caller reaps it afterwards, so no
//!   signal ever reaches a process that reused the pid. From then on INT,
//!   TERM, HUP and QUIT end the launcher at once, the way the app ended:
//!   they end the wait for the update sidecar. One of them that reached
//!   the launcher while the app ran ([`stop_requested`]) means there is no
//!   wait at all; one that reached it less than [`STOP_WINDOW`] before the
//!   app exited ([`stopped_at_exit`]) also means no restart (an app that
//!   survived an earlier one, say a HUP to reload, still restarts). While
//!   the launcher waits to restart the app ([`restarting`]), they end it by
//!   the signal itself: the app's restart code would tell its caller the
//!   app asked for a restart.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::super::AppExit;

/// Signals passed on to the app.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Signals that end the launcher once the app has exited.
const ENDING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// What the handler acts on, in one word so it is read in one load: a tag
/// in bits 32-39, a pid, exit code or signal number in bits 0-31.
static STATE: AtomicU64 = AtomicU64::new(0);
const TAG_PID: u64 = 1 << 32;
const TAG_GROUP: u64 = 2 << 32;
const TAG_EXITED: u64 = 3 << 32;
const TAG_KILLED: u64 = 4 << 32;
const TAG_RESTARTING: u64 = 5 << 32;
const TAG_MASK: u64 = 0xff << 32;

/// Handlers running right now, on any thread.
static IN_HANDLER: AtomicU32 = AtomicU32::new(0);

/// One of `ENDING` reached the launcher while the app ran.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// When the last of `ENDING` reached the launcher, and when the app
/// exited: `CLOCK_MONOTONIC` in nanoseconds (0: not yet).
static LAST_STOP_NS: AtomicU64 = AtomicU64::new(0);
static EXITED_NS: AtomicU64 = AtomicU64::new(0);

/// A signal to stop counts against a restart only if the app exited this
/// soon after it: the app was ending because of it.
pub const STOP_WINDOW: Duration = Duration::from_secs(1);

/// Whether the app should lead a process group of its own (see the module
/// documentation): no controlling terminal, on a system with a
/// parent-death signal.
pub fn own_process_group() -> bool {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return false;
    }
    // SAFETY: a NUL-terminated path and plain flags; the descriptor, if
    // any, is closed at once.
    let fd = unsafe {
        libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(fd) };
        return false;
    }
    // ENXIO: no controlling terminal. Anything else (a terminal hung up,
    // no /dev/tty in a chroot): keep the app beside us, as always.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO)
}

/// The forwarded signals the launcher was not started with ignored.
pub fn handled() -> libc::sigset_t {
    // SAFETY: sigset operations on a zeroed set we own; sigaction queries
    // (null new action) into a zeroed struct.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_IGN
            {
                libc::sigaddset(&mut set, sig);
            }
        }
        set
    }
}

/// Starts passing `signals` on to the app `pid` (to its process group if
/// `group`). Called with those signals blocked: none is lost meanwhile.
pub fn begin(pid: u32, group: bool, signals: &libc::sigset_t) {
    let tag = if group { TAG_GROUP } else { TAG_PID };
    STATE.store(tag | u64::from(pid), Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: the handler only uses atomics and async-signal-safe
        // calls; the sigaction struct is fully initialised.
        unsafe {
            if libc::sigismember(signals, sig) != 1 {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Stops passing signals on to the app, which has exited but is not yet
/// reaped, and makes INT, TERM, HUP and QUIT end the launcher like `exit`.
/// Returns once no handler can still be sending to the app's pid.
pub fn app_exited(exit: AppExit) {
    let word = match exit {
        AppExit::Code(code) => TAG_EXITED | u64::from(code as u32),
        AppExit::Signal(sig) => TAG_KILLED | u64::from(sig as u32),
    };
    EXITED_NS.store(monotonic_ns(), Ordering::SeqCst);
    STATE.store(word, Ordering::SeqCst);
    // A handler that read the pid before the store may still be about to
    // send to it: the app is a zombie until the caller reaps it, so that
    // still reaches no one else. Wait for it to finish.
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Whether INT, TERM, HUP or QUIT reached the launcher while the app ran:
/// whoever sent it wants the launcher gone too, not waiting on.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Whether INT, TERM, HUP or QUIT reached the launcher at most
/// [`STOP_WINDOW`] before the app exited.
pub fn stopped_at_exit() -> bool {
    let stop = LAST_STOP_NS.load(Ordering::SeqCst);
    let exited = EXITED_NS.load(Ordering::SeqCst);
    stop != 0 && exited.saturating_sub(stop) <= STOP_WINDOW.as_nanos() as u64
}

/// From now on INT, TERM, HUP and QUIT end the launcher by that signal
/// (the app has exited, asking for a restart).
pub fn restarting() {
    STATE.store(TAG_RESTARTING, Ordering::SeqCst);
}

/// `CLOCK_MONOTONIC` in nanoseconds, never 0; async-signal-safe.
fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime fills a zeroed timespec we own; it is
    // async-signal-safe.
    let now = unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
        now
    };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
        .max(1)
}

/// `si_code` of signals the kernel sends itself, as the terminal does for
/// Ctrl-C to the whole foreground process group.
const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let saved_errno = errno();
    let state = STATE.load(Ordering::SeqCst);
    let value = state as u32;
    if ENDING.contains(&sig) {
        STOP_REQUESTED.store(true, Ordering::SeqCst);
        LAST_STOP_NS.store(monotonic_ns(), Ordering::SeqCst);
    }
    match state & TAG_MASK {
        TAG_PID => {
            // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
            // handler.
            let code = if info.is_null() {
                0
            } else {
                unsafe { (*info).si_code }
            };
            // A terminal's Ctrl-C or Ctrl-\ reached the app directly (it
            // shares our process group); passing it on would deliver it
            // twice.
            if code != SI_KERNEL {
                // SAFETY: kill() is async-signal-safe.
                unsafe { libc::kill(value as libc::pid_t, sig) };
            }
        }
        TAG_GROUP => {
            // SAFETY: kill() is async-signal-safe. The app may have moved
            // to another group of its own: then it alone gets the signal.
            unsafe {
                if libc::kill(-(value as libc::pid_t), sig) != 0 {
                    libc::kill(value as libc::pid_t, sig);
                }
            }
        }
        TAG_RESTARTING if ENDING.contains(&sig) => {
            if crate::trace::on() {
                let line = b"ONEFILE: A signal ended the wait to restart the app.\n";
                // SAFETY: write() of a static buffer is async-signal-safe.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
            }
            end_like(AppExit::Signal(sig));
        }
        TAG_EXITED | TAG_KILLED if ENDING.contains(&sig) => {
            if crate::trace::on() {
                let line = b"ONEFILE: A signal ended the wait for the update sidecar.\n";
                // SAFETY: write() of a static buffer is async-signal-safe.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
            }
            let exit = if state & TAG_MASK == TAG_EXITED {
                AppExit::Code(value as i32)
            } else {
                AppExit::Signal(value as i32)
            };
            end_like(exit);
        }
        _ => {}
    }
    set_errno(saved_errno);
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
}

/// Ends the process the way the app ended, using only async-signal-safe
/// calls: `_exit(code)`, or death by the app's signal (without a core
/// dump of the launcher's own), or 128+N for a signal that does not
/// terminate.
pub fn end_like(exit: AppExit) -> ! {
    match exit {
        // SAFETY: _exit ends the process.
        AppExit::Code(code) => unsafe { libc::_exit(code) },
        AppExit::Signal(sig) => {
            // SAFETY: plain libc calls on values we own; after raise() the
            // process normally no longer exists.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                // The app already dumped core if it was going to: the
                // launcher's own core would only be noise.
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(sig);
                libc::_exit(128 + sig)
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "emscripten"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

#[cfg(target_os = "android")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { libc::__errno() }
}

#[cfg(not(any(target_os = "linux", target_os = "emscripten", target_os = "android")))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { libc::__error() }
}

/// A handler must leave `errno` as it found it: the interrupted code may
/// be about to read it.
fn errno() -> libc::c_int {
    // SAFETY: the slot is valid for the calling thread.
    unsafe { *errno_location() }
}

fn set_errno(value: libc::c_int) {
    // SAFETY: the slot is valid for the calling thread.
    unsafe { *errno_location() = value }
}
