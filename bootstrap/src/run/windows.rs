//! Windows: there is no `exec`, so the app always runs as a child and the
//! launcher takes on its exit code. Console Ctrl-C reaches every process
//! attached to the console, the app included, so nothing is forwarded.
//! The app inherits the launcher's handles and console as they were given
//! (a missing standard handle stays missing): there is no signal state or
//! closed descriptor to restore, unlike on Unix.
//! Built by `make windows` and tested under Wine by `make test-windows`
//! (docs/windows.md), not yet in CI.

use std::fs::File;
use std::io;
use std::process::{Child, Command};

use super::AppExit;

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
}

pub fn spawn(mut cmd: Command) -> io::Result<RunningApp> {
    Ok(RunningApp {
        child: cmd.spawn()?,
    })
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

    pub fn wait(&mut self) -> io::Result<AppExit> {
        let status = self.child.wait()?;
        Ok(AppExit::Code(status.code().unwrap_or(1)))
    }
}

pub fn exit_like(exit: AppExit) -> ! {
    match exit {
        AppExit::Code(code) | AppExit::Signal(code) => std::process::exit(code),
    }
}
