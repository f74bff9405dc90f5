//! Unix: `exec` the app, or spawn it and stand in for it.
//!
//! As a child, the app gets the launcher's arguments, stdio, environment and
//! working directory; signals a user sends the launcher (INT, TERM, HUP,
//! QUIT, USR1, USR2) are passed on, once ([`forward`]); the app dies with
//! the launcher (Linux: parent-death signal); and the launcher exits with
//! the app's code, or dies of the app's signal. In both modes the app gets
//! the stdio and signal state the launcher was started with ([`inherited`]).

mod forward;
mod inherited;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};

use super::AppExit;

/// Replaces the launcher by the app; returns only if that failed. `inherit`
/// stay open in the app (the cache's in-use lock must outlive the launcher).
pub fn exec(mut cmd: Command, inherit: &[&File]) -> io::Error {
    for file in inherit {
        if let Err(e) = clear_close_on_exec(file) {
            return e;
        }
    }
    let mask = inherited::mask();
    // SAFETY: the closure only calls async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || inherited::restore_in_app(&mask));
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
    let own_group = forward::own_process_group();
    if own_group {
        cmd.process_group(0);
    }
    let signals = forward::handled();
    // Signals that arrive between the spawn and the handlers' installation
    // wait, blocked, and are forwarded once they are in place.
    let mask = block(&signals);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (signal, sigprocmask, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            inherited::restore_in_app(&mask)?;
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
    let spawned = cmd.spawn();
    if let Ok(child) = &spawned {
        forward::begin(child.id(), own_group, &signals);
    }
    set_mask(&mask);
    Ok(RunningApp { child: spawned? })
}

impl RunningApp {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the app to end. Signals stop going to its pid before it is
    /// reaped (so never to a process that reused the pid), and from then on
    /// INT, TERM, HUP and QUIT end the launcher like the app ended.
    pub fn wait(&mut self) -> io::Result<AppExit> {
        let exit = self.wait_unreaped()?;
        forward::app_exited(exit);
        let status = self.child.wait()?;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => AppExit::Code(code),
            (None, Some(sig)) => AppExit::Signal(sig),
            (None, None) => AppExit::Code(1),
        })
    }

    /// Whether the launcher was asked to stop (INT, TERM, HUP or QUIT) while
    /// the app ran: then it does not wait for the update sidecar.
    pub fn stop_requested(&self) -> bool {
        forward::stop_requested()
    }

    /// Whether INT, TERM, HUP or QUIT reached the launcher shortly before
    /// the app exited (see `forward::STOP_WINDOW`): the app ended because
    /// of it, and a restart code then asks for nothing.
    pub fn stopped_at_exit(&self) -> bool {
        forward::stopped_at_exit()
    }

    /// The app exited asking for a restart: INT, TERM, HUP and QUIT now end
    /// the launcher by that signal, not with the app's code.
    pub fn restarting(&self) {
        forward::restarting();
    }

    /// Waits until the app has exited, leaving it a zombie.
    fn wait_unreaped(&self) -> io::Result<AppExit> {
        loop {
            // SAFETY: waitid fills a zeroed siginfo_t we own; WNOWAIT
            // leaves the child to be reaped by `Child::wait`.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.child.id() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: waitid succeeded for an exited child: the status
            // field is set.
            let status = unsafe { info.si_status() };
            return Ok(match info.si_code {
                libc::CLD_EXITED => AppExit::Code(status),
                _ => AppExit::Signal(status),
            });
        }
    }
}

/// Ends the launcher the way the app ended.
pub fn exit_like(exit: AppExit) -> ! {
    match exit {
        AppExit::Code(code) => std::process::exit(code),
        AppExit::Signal(_) => forward::end_like(exit),
    }
}

/// Blocks `signals` in the calling thread; returns the mask before.
fn block(signals: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: pthread_sigmask with a valid set and a zeroed set we own.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, signals, &mut old);
        old
    }
}

fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: a valid set; a null old-set pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
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
