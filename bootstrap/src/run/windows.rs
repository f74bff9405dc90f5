//! Windows: there is no `exec`, so the app always runs as a child and the
//! launcher takes on its exit code (all 32 bits). The app inherits the
//! launcher's handles and console as they were given (a missing standard
//! handle stays missing): there is no signal state or closed descriptor to
//! restore, unlike on Unix. docs/launcher.md ("On Windows") gives the
//! reasons for each step:
//!
//! 1. Before the app starts, the launcher puts itself in a new job object
//!    that kills everything in it when its last handle closes
//!    (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`); the app inherits the job at
//!    creation, so there is no moment when it runs outside. The launcher
//!    holds the only handle: when it is killed (TerminateProcess, Task
//!    Manager), Windows closes the handle and ends the app and what it
//!    started. `JOB_OBJECT_LIMIT_BREAKAWAY_OK` lets a program that starts
//!    a process with `CREATE_BREAKAWAY_FROM_JOB` detach it still. A job
//!    that cannot be made (Windows 7 refuses nested jobs) is traced and the
//!    app runs without one.
//! 2. Console Ctrl-C and Ctrl-Break reach every process attached to the
//!    console, the app included, so nothing is forwarded; the launcher
//!    only survives them (a handler routine that answers "handled"), keeps
//!    waiting, and exits with the app's code. The handler is a routine,
//!    not `SetConsoleCtrlHandler(NULL, TRUE)`, whose "ignore Ctrl-C" flag
//!    the app would inherit. Closing the console window (or logging off)
//!    ends the launcher once its handler returns: the handler first waits
//!    for the app, for as long as Windows allows, so that the job does not
//!    kill the app in the middle of its own clean-up.
//! 3. When the app has exited (or could not start), the job stops killing
//!    on close, so that processes the app left running on purpose live on
//!    as they would without a launcher.
//!
//! Built by `make windows` and tested under Wine by `make test-windows`
//! (docs/windows.md), which CI runs.

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicPtr, Ordering};

use windows_sys::Win32::Foundation::{DUPLICATE_SAME_ACCESS, DuplicateHandle, FALSE, HANDLE, TRUE};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    SetConsoleCtrlHandler,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT, JOB_OBJECT_LIMIT_BREAKAWAY_OK,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JobObjectExtendedLimitInformation, SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, INFINITE, WaitForSingleObject};
use windows_sys::core::BOOL;

use super::AppExit;
use crate::trace::info;

/// Windows cannot replace a process image: run the app as a child and exit
/// with its code, which is what `exec` looks like from outside.
pub fn exec(cmd: Command, _inherit: &[&File]) -> io::Error {
    match spawn(cmd).and_then(|mut app| app.wait()) {
        Ok(exit) => exit_like(exit),
        Err(e) => e,
    }
}

#[derive(Debug)]
pub struct RunningApp {
    child: Child,
    /// The job the launcher and the app are in, if one could be made.
    job: Option<Job>,
}

pub fn spawn(mut cmd: Command) -> io::Result<RunningApp> {
    let job = match Job::enter() {
        Ok(job) => Some(job),
        Err((step, e)) => {
            info!("No job object for the app ({step}: {e}): it may outlive a killed launcher.");
            None
        }
    };
    survive_console_events();
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            // The launcher exits next, by itself: see `Job::release`.
            if let Some(job) = &job {
                job.release();
            }
            return Err(e);
        }
    };
    remember_app(&child);
    Ok(RunningApp { child, job })
}

impl RunningApp {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Console Ctrl-C reaches the app directly and the launcher forwards
    /// nothing: it is never asked to stop on the app's behalf.
    pub fn stop_requested(&self) -> bool {
        false
    }

    /// Like [`RunningApp::stop_requested`]: never.
    pub fn stopped_at_exit(&self) -> bool {
        false
    }

    /// Console events never end the launcher: nothing changes.
    pub fn restarting(&self) {}

    /// Waits for the app, then releases the job (also if the wait
    /// failed: the launcher exits next either way).
    pub fn wait(&mut self) -> io::Result<AppExit> {
        let status = self.child.wait();
        if let Some(job) = &self.job {
            job.release();
        }
        Ok(AppExit::Code(status?.code().unwrap_or(1)))
    }
}

///
/// By `TerminateProcess` of the launcher itself, not `ExitProcess`: the
/// update thread may still be inside a system library (a socket, the
/// certificate store) when the launcher hands the update off, and
/// `ExitProcess` runs every library's detach code under the loader lock,
/// which a thread it has just ended may hold: the launcher then never
/// exits. Nothing is lost: the launcher's standard handles are unbuffered
/// or already released, and files close with the process.
pub fn exit_like(exit: AppExit) -> ! {
    use std::io::Write;
    use windows_sys::Win32::System::Threading::TerminateProcess;
    let (AppExit::Code(code) | AppExit::Signal(code)) = exit;
    let _ = std::io::stdout().flush();
    // SAFETY: the pseudo-handle of this process; the call ends it.
    unsafe {
        TerminateProcess(GetCurrentProcess(), code as u32);
    }
    // Only if Windows refused to end us.
    std::process::exit(code)
}

/// A job object that kills what is in it when its handle closes. The
/// handle is not inheritable, so the launcher holds the only one and it
/// closes when the launcher ends, however it ends. It is never closed
/// before: should releasing the job fail, closing it early would end the
/// launcher itself before it passes on the app's exit code.
#[derive(Debug)]
struct Job(HANDLE);

impl Job {
    /// Makes the job and puts the launcher in it, so that the app, started
    /// next, is in it from its first instruction (a process inherits its
    /// creator's job). Spawning suspended and assigning the child would do
    /// the same but needs the child's thread handle, which `Command` does
    /// not give.
    fn enter() -> Result<Job, (&'static str, io::Error)> {
        // SAFETY: no security attributes (a handle not inherited) and no
        // name (a job no one else can open).
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(("CreateJobObject", io::Error::last_os_error()));
        }
        let job = Job(handle);
        job.set_limits(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK)
            .map_err(|e| ("SetInformationJobObject", e))?;
        // SAFETY: both handles are valid: ours, and the pseudo-handle of
        // this process.
        if unsafe { AssignProcessToJobObject(job.0, GetCurrentProcess()) } == FALSE {
            return Err(("AssignProcessToJobObject", io::Error::last_os_error()));
        }
        Ok(job)
    }

    /// Stops killing on close, before the launcher exits by itself: what
    /// the app left running then lives on as without a launcher. Every
    /// path on which the launcher exits by itself after entering the job
    /// comes through here; Wine 8.0's server also crashed when a process
    /// exited by itself while it held the last handle of a kill-on-close
    /// job that it was in.
    fn release(&self) {
        if let Err(e) = self.set_limits(JOB_OBJECT_LIMIT_BREAKAWAY_OK) {
            info!(
                "Could not release the app's job ({e}): what the app left running ends with the launcher."
            );
        }
    }

    fn set_limits(&self, flags: JOB_OBJECT_LIMIT) -> io::Result<()> {
        // SAFETY: a plain-data struct of integers, all zero means "no limit".
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = flags;
        // SAFETY: the job handle is ours and open; the pointer and size
        // describe `limits`, which outlives the call.
        let ok = unsafe {
            SetInformationJobObject(
                self.0,
                JobObjectExtendedLimitInformation,
                (&raw const limits).cast::<c_void>(),
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == FALSE {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A handle of the running app's process for the console handler, which
/// runs on a thread of its own; null until the app starts. Duplicated, and
/// never closed, so it stays valid whatever happens to the `Child`.
static APP_PROCESS: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

fn remember_app(child: &Child) {
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: the child's handle is open while `child` lives; the copy is
    // ours and written to `dup`.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            child.as_raw_handle(),
            GetCurrentProcess(),
            &mut dup,
            0,
            FALSE,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok != FALSE {
        APP_PROCESS.store(dup, Ordering::SeqCst);
    }
}

fn survive_console_events() {
    // SAFETY: registers a routine that lives as long as the program. A
    // failure (no console at all) leaves the default handling, which is
    // then never called.
    unsafe { SetConsoleCtrlHandler(Some(on_console_event), TRUE) };
}

/// Runs on a thread Windows creates for the event. Ctrl-C and Ctrl-Break:
/// the app got the same event and decides; the launcher stays to take on
/// its exit code. Close, log-off, shut-down: Windows ends the launcher
/// when this returns, so it returns only once the app has ended (or when
/// Windows' own time-out ends the launcher first).
unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT => TRUE,
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => {
            let app = APP_PROCESS.load(Ordering::SeqCst);
            if !app.is_null() {
                // SAFETY: a process handle that is never closed.
                unsafe { WaitForSingleObject(app, INFINITE) };
            }
            // Windows ends the launcher when this returns: not between the
            // two renames of an install.
            crate::sys::block_installs();
            FALSE
        }
        _ => FALSE,
    }
}
