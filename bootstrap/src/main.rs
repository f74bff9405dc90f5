//! The onefile stub. It sits in front of a payload in a packed executable;
//! when run, it unpacks the payload once into a per-user cache and runs the
//! app inside (see `launch`). This file is the one place that turns a
//! failure of the launcher into what the user reads: one `error:` line, a
//! `hint:` line, and a documented exit code.

mod alert;
mod cache;
mod error;
mod launch;
mod probation;
mod restart;
mod run;
mod self_test;
mod sys;
mod trace;
mod update;

use std::process::ExitCode;

use payload_tools::text::Escaped;

/// The marker that makes this program a onefile stub in the eyes of
/// `payload-tools pack` and `verify` (`payload_tools::stub`): kept in the
/// binary although nothing reads it at run time.
#[used]
static STUB_MARKER: [u8; payload_tools::stub::MARKER_LEN] = payload_tools::stub::MARKER;

fn main() -> ExitCode {
    if let Some(code) = self_test::run_if_requested() {
        return code;
    }
    trace::init();
    let err = launch::launch();
    let name = std::env::args_os()
        .next()
        .as_deref()
        .and_then(|p| {
            std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "onefile".to_owned());
    // Paths and entry names come from the packed file: one line each,
    // whatever they hold.
    let program = Escaped(&name);
    eprintln!("{program}: error: {}", Escaped(&err.to_string()));
    if let Some(hint) = err.hint() {
        eprintln!("{program}: hint: {}", Escaped(&hint));
    }
    alert::if_stderr_is_missing(&name, &err);
    ExitCode::from(err.exit_code())
}
