//! Debug traces, on only when `AUTO_UPDATE_DEBUG` is set (to anything but
//! `0` or nothing): one line per event on stderr, `ONEFILE: ` for the
//! launcher and `AUTO UPDATE: ` for the updater. Off, the launcher prints
//! nothing of its own and the `log` macros cost one comparison each.
//!
//! Every trace is one line whatever its values hold: a URL, a version or
//! an error text from a server may carry a newline (to forge a trace line
//! such as "Updated.") or terminal escape sequences, so control and
//! bidirectional-formatting characters are written escaped (`\n`,
//! `\u{1b}`: `payload_tools::text`). The logger is written here rather than taken from a crate:
//! it is all the stub needs, and every byte of the stub ships in every
//! packed file.

use std::fmt::Write as _;
use std::io::Write as _;

use payload_tools::text::EscapingWriter;

/// `log` target of the updater's traces.
pub const UPDATE: &str = "onefile_update";

/// Turns traces on if the environment asks for them.
pub fn init() {
    let wanted = std::env::var_os("AUTO_UPDATE_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    if wanted && log::set_logger(&TRACER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

struct Tracer;

static TRACER: Tracer = Tracer;

impl log::Log for Tracer {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        // Our own traces only: the HTTP client's are for its developers.
        let target = meta.target();
        meta.level() <= log::Level::Info
            && (target == UPDATE || target.starts_with(env!("CARGO_CRATE_NAME")))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = if record.target() == UPDATE {
            "AUTO UPDATE: "
        } else {
            "ONEFILE: "
        };
        let mut line = String::with_capacity(160);
        line.push_str(prefix);
        let _ = write!(EscapingWriter(&mut line), "{}", record.args());
        line.push('\n');
        // One write per line, so a trace never lands in the middle of a
        // line of the app's own output.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
