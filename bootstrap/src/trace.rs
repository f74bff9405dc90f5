//! Debug traces, on only when `AUTO_UPDATE_DEBUG` is set (to anything but
//! `0` or nothing): one line per event on stderr, `ONEFILE: ` for the
//! launcher and `AUTO UPDATE: ` for the updater. Off, the launcher prints
//! nothing of its own and the `log` macros cost one comparison each.
//!
//! Every trace is one line whatever its values hold: a URL, a version or
//! an error text from a server may carry a newline (to forge a trace line
//! such as "Updated.") or terminal escape sequences, so control and
//! bidirectional-formatting characters are written escaped (`\n`,
//! `\u{1b}`). The logger is written here rather than taken from a crate:
//! it is all the stub needs, and every byte of the stub ships in every
//! packed file.

use std::fmt::{self, Write as _};
use std::io::Write as _;

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
        let _ = write!(Escaped(&mut line), "{}", record.args());
        line.push('\n');
        // One write per line, so a trace never lands in the middle of a
        // line of the app's own output.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
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
