//! Windows: there is no `exec`, so the app always runs as a child and the
//! launcher takes on its exit code. Console Ctrl-C reaches every process
//! attached to the console, the app included, so nothing is forwarded.
//! Not built in CI (Linux only).

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
