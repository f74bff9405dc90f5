//! Debug traces, on only when `AUTO_UPDATE_DEBUG` is set (to anything but
//! `0` or nothing): one line per event on stderr, `ONEFILE: ` for the
//! launcher and `AUTO UPDATE: ` for the updater. Off, the launcher prints
//! nothing of its own and each trace costs one load of a flag.
//!
//! Every trace is one line whatever its values hold: a URL, a version or
//! an error text from a server may carry a newline (to forge a trace line
//! such as "Updated.") or terminal escape sequences, so control and
//! bidirectional-formatting characters are written escaped (`\n`,
//! `\u{1b}`). The tracer is written here rather than taken from a crate:
//! it is all the stub needs, and every byte of the stub ships in every
//! packed file. For the same reason the stub's traces do not go through
//! the `log` crate, whose macros are compiled out of every build (the
//! workspace's `max_level_off`): the HTTP and TLS stacks' own logging was
//! never shown, and now costs no byte either.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

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
    let _ = write!(Escaped(&mut line), "{args}");
    line.push('\n');
    // One write per line, so a trace never lands in the middle of a
    // line of the app's own output.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Appends text with control and bidirectional-formatting characters
/// escaped.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                c if must_escape(c) => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// C0 and C1 controls (ESC starts terminal sequences) and the characters
/// that reorder how a terminal shows the text around them.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        let _ = Escaped(&mut out).write_str(text);
        out
    }

    #[test]
    fn one_line_whatever_the_value() {
        assert_eq!(
            escaped("1.1\nAUTO UPDATE: Updated."),
            "1.1\\nAUTO UPDATE: Updated."
        );
        assert_eq!(escaped("\u{1b}[2J\u{9b}x\r"), "\\u{1b}[2J\\u{9b}x\\r");
        assert_eq!(escaped("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escaped("https://h/é 1.0"), "https://h/é 1.0");
    }
}
