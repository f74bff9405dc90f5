//! Unix: `exec` the app, or spawn it and stand in for it.
//!
//! As a child, the app gets the launcher's arguments, stdio, environment and
//! working directory; signals a user sends the launcher (INT, TERM, HUP,
//! QUIT, USR1, USR2) are passed on; the app dies with the launcher (Linux:
//! parent-death signal); and the launcher exits with the app's code, or
//! dies of the app's signal.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

use super::AppExit;

/// Signals passed on to the app.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Pid of the running app, read by the signal handler.
static APP_PID: AtomicI32 = AtomicI32::new(0);

/// Replaces the launcher by the app; returns only if that failed. `inherit`
/// stay open in the app (the cache's in-use lock must outlive the launcher).
pub fn exec(mut cmd: Command, inherit: &[&File]) -> io::Error {
    for file in inherit {
        if let Err(e) = clear_close_on_exec(file) {
            return e;
        }
    }
    cmd.exec()
}

/// A spawned app.
#[derive(Debug)]
pub struct RunningApp {
    child: Child,
}

/// Starts the app as a child and begins forwarding signals to it.
pub fn spawn(mut cmd: Command) -> io::Result<RunningApp> {
    let launcher = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (sigprocmask, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            set_forwarded_blocked(libc::SIG_UNBLOCK);
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher died before prctl took effect: don't run on.
                if libc::getppid() != launcher {
                    return Err(io::Error::other("launcher exited"));
                }
            }
            let _ = launcher;
            Ok(())
        });
    }
    // Signals that arrive between the spawn and the handler's installation
    // wait, blocked, and are forwarded once it is in place.
    set_forwarded_blocked(libc::SIG_BLOCK);
    let spawned = cmd.spawn();
    if let Ok(child) = &spawned {
        APP_PID.store(child.id() as i32, Ordering::SeqCst);
        install_forwarding();
    }
    set_forwarded_blocked(libc::SIG_UNBLOCK);
    Ok(RunningApp { child: spawned? })
}

impl RunningApp {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the app to end.
    pub fn wait(&mut self) -> io::Result<AppExit> {
        let status = self.child.wait()?;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => AppExit::Code(code),
            (None, Some(sig)) => AppExit::Signal(sig),
            (None, None) => AppExit::Code(1),
        })
    }
}

/// Ends the launcher the way the app ended.
pub fn exit_like(exit: AppExit) -> ! {
    match exit {
        AppExit::Code(code) => std::process::exit(code),
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
            }
            // A signal whose default is not to terminate: the shell convention.
            std::process::exit(128 + sig)
        }
    }
}

fn set_forwarded_blocked(how: libc::c_int) {
    // SAFETY: sigset operations on a local set; pthread_sigmask with a valid
    // set pointer and a null old-set pointer. All async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: the handler only loads an atomic and calls kill(), both
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// `si_code` of signals the kernel sends itself, as the terminal does for
/// Ctrl-C to the whole foreground process group.
const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let pid = APP_PID.load(Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    // A terminal's Ctrl-C or Ctrl-\ reached the app directly (it shares our
    // process group); passing it on would deliver it twice.
    if code == SI_KERNEL {
        return;
    }
    // SAFETY: kill() is async-signal-safe.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn clear_close_on_exec(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor owned by `file`, which outlives the call.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
