//! Restart to update: an app that exits with its build's restart code
//! (`pack --restart-exit-code N`) is started again, once, by a launcher
//! that first gave the update under way its chance to install.
//!
//! 1. The app exits with the code (and no INT, TERM, HUP or QUIT reached
//!    the launcher just before: the app was ending because of it).
//! 2. The launcher waits for the sidecar: at most [`INSTALL_WAIT`] when it
//!    last reported a build downloading or ready (the download goes on,
//!    and what is ready is installed now that the app has exited), else
//!    the build's ordinary exit wait (a check gets no more time).
//! 3. The launcher starts the executable's path again (the new build if it
//!    was installed, else the same one) with the same arguments and
//!    environment, plus [`MARKER`] set to its process id: Unix replaces
//!    the launcher (`exec`, same pid), Windows runs it as a child and
//!    passes its exit code on (`run::exec`). On Windows a sidecar still
//!    busy after the wait would live on in the waiting parent, holding the
//!    updater's lock against the restarted launch: then the launcher exits
//!    with the code instead.
//! 4. A launcher started with [`MARKER`] naming the launcher that
//!    restarted it (itself on Unix, its parent on Windows) never restarts:
//!    the same code from the restarted app ends it with that code. The
//!    marker is never passed on as such: the app gets
//!    `ONEFILE_RESTARTED=1` when it matched, so a packed app it starts is
//!    not taken for a restart.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use payload_tools::metadata::UpdateSettings;

use crate::run::{self, AppExit, RunningApp};
use crate::sys;
use crate::trace::info;

/// Set for the restarted launcher to the restarting one's process id, and
/// to `1` for the app of a restarted launch.
pub const MARKER: &str = "ONEFILE_RESTARTED";

/// How long the launcher waits for an update to install before restarting.
pub const INSTALL_WAIT: Duration = Duration::from_secs(60);

/// The exit code this launch restarts on: the build's, unless this launch
/// is itself a restart (traced).
pub fn exit_code(settings: Option<&UpdateSettings>) -> Option<i32> {
    let code = settings?.restart_exit_code?;
    let offered = offered(settings?);
    if offered.is_none() {
        info!("Started by a restart: exit code {code} ends this launch like any other.");
    }
    offered
}

/// Like [`exit_code`], untraced: what the app is told the code is.
pub fn offered(settings: &UpdateSettings) -> Option<i32> {
    settings.restart_exit_code.filter(|_| !restarted())
}

/// Whether this launch is a restart: [`MARKER`] names the launcher that
/// restarted it. Any other value (inherited by an app's child, or left in
/// a shell) is not obeyed.
pub fn restarted() -> bool {
    let Some(value) = std::env::var_os(MARKER) else {
        return false;
    };
    value.to_str().is_some_and(is_for_this_launch)
}

/// Whether a marker's process id (`ONEFILE_RESTARTED`, the pid part of
/// `ONEFILE_ROLLED_BACK_FROM`) names the launcher that set it for this
/// one: ourselves on Unix (`exec` keeps the pid), our parent on Windows
/// (it runs us as its child). A marker inherited by a process an app
/// started names someone else.
pub fn is_for_this_launch(pid: &str) -> bool {
    pid.parse::<u32>()
        .ok()
        .is_some_and(|pid| Some(pid) == sys::restarter_pid())
}

/// Whether the app's `exit` asks for the restart `code`: not when a signal
/// to stop reached the launcher just before (traced).
pub fn asked(exit: AppExit, code: Option<i32>, app: &RunningApp) -> bool {
    let Some(code) = code.filter(|&code| exit == AppExit::Code(code)) else {
        return false;
    };
    if app.stopped_at_exit() {
        info!("Asked to stop: the restart code {code} ends this launch.");
        return false;
    }
    info!("The app exited with the restart code {code}: restarting once the update is in.");
    app.restarting();
    true
}

/// How long to wait for the sidecar before restarting: for an install
/// only when a build is downloading or ready, else the build's exit wait.
pub fn install_wait(exit_wait_ms: u64) -> Duration {
    let exit_wait = Duration::from_millis(exit_wait_ms);
    if crate::update::status::install_coming() {
        info!(
            "Waiting at most {} ms for the update to install.",
            INSTALL_WAIT.as_millis()
        );
        return INSTALL_WAIT;
    }
    info!(
        "No update downloading: waiting at most {} ms for the updater, then restarting.",
        exit_wait.as_millis()
    );
    exit_wait
}

/// Starts `exe` again with our arguments (`argv[0]` included) and
/// environment, plus [`MARKER`]; `finished`: whether the sidecar
/// finished. Returns only if that failed.
pub fn run_again(exe: &Path, finished: bool, exit: AppExit) -> io::Error {
    if cfg!(windows) && !finished {
        info!(
            "The updater is still busy: exiting with the restart code rather than restarting beside it."
        );
        run::exit_like(exit);
    }
    let mut args = std::env::args_os();
    let argv0: OsString = args.next().unwrap_or_else(|| exe.as_os_str().to_owned());
    let mut cmd = Command::new(exe);
    // A restart is no rollback: the restarted launcher must not tell its
    // app that one happened.
    cmd.args(args)
        .env(MARKER, std::process::id().to_string())
        .env_remove("ONEFILE_ROLLED_BACK_FROM");
    crate::launch::set_argv0(&mut cmd, argv0);
    info!("Restarting '{}'.", exe.display());
    run::exec(cmd, &[])
}
