//! Debug traces, on only when `AUTO_UPDATE_DEBUG` is set (to anything but
//! `0` or nothing): one line per event on stderr, `ONEFILE: ` for the
//! launcher and `AUTO UPDATE: ` for the updater. Off, the launcher prints
//! nothing of its own and each trace costs one load of a flag.
//!
//! Every trace is one line whatever its values hold: a URL, a version or
//! an error text from a server may carry a newline (to forge a trace line
//! such as "Updated.") or terminal escape sequences, so control and
//! bidirectional-formatting characters are written escaped (`\n`,
//! `\u{1b}`: `payload_tools::text`). The tracer is written here rather than taken from a crate:
//! it is all the stub needs, and every byte of the stub ships in every
//! packed file. For the same reason the stub's traces do not go through
//! the `log` crate, whose macros are compiled out of every build (the
//! workspace's `max_level_off`): the HTTP and TLS stacks' own logging was
//! never shown, and now costs no byte either.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use payload_tools::text::EscapingWriter;

/// What starts the launcher's traces.
pub const LAUNCH: &str = "ONEFILE: ";
/// What starts the updater's traces: `info!(target: UPDATE, ...)`.
pub const UPDATE: &str = "AUTO UPDATE: ";

/// Whether traces are on; set once, before any thread starts.
static ON: AtomicBool = AtomicBool::new(false);

/// Turns traces on if the environment asks for them.
pub fn init() {
    let wanted = std::env::var_os("AUTO_UPDATE_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    ON.store(wanted, Ordering::Relaxed);
}

/// Whether traces are on. One atomic load: safe in a signal handler.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Traces one event when traces are on: `info!("...", args)` for the
/// launcher, `info!(target: UPDATE, "...", args)` for the updater (the
/// syntax of the `log` crate's macro that it replaces).
macro_rules! info {
    (target: $prefix:expr, $($arg:tt)+) => {
        if $crate::trace::on() {
            $crate::trace::line($prefix, format_args!($($arg)+));
        }
    };
    ($($arg:tt)+) => {
        $crate::trace::info!(target: $crate::trace::LAUNCH, $($arg)+)
    };
}
pub(crate) use info;

/// Writes one trace line: `prefix`, then `args` escaped.
pub fn line(prefix: &str, args: fmt::Arguments<'_>) {
    let mut line = String::with_capacity(160);
    line.push_str(prefix);
    let _ = write!(EscapingWriter(&mut line), "{args}");
    line.push('\n');
    if let Some(file) = FILE.get() {
        append(file, line.as_bytes());
        return;
    }
    // One write per line, so a trace never lands in the middle of a
    // line of the app's own output.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The file traces go to instead of stderr (the background updater's,
/// which has none).
static FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// A trace file is emptied when it is found longer than this, and written
/// no further than twice this.
pub const FILE_LIMIT: u64 = 1 << 20;

/// Sends the traces to `file` (opened privately by the caller) from now
/// on, emptying it first if it is over [`FILE_LIMIT`].
pub fn to_file(file: std::fs::File) {
    if file.metadata().is_ok_and(|m| m.len() > FILE_LIMIT) {
        let _ = file.set_len(0);
    }
    let _ = FILE.set(file);
}

fn append(mut file: &std::fs::File, line: &[u8]) {
    use std::io::{Seek, SeekFrom};
    let Ok(end) = file.seek(SeekFrom::End(0)) else {
        return;
    };
    if end < 2 * FILE_LIMIT {
        let _ = file.write_all(line);
    }
}
