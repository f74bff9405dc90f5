//! Text that came from a file or a server, made safe to print: control
//! characters (a newline could forge a line of output, ESC starts terminal
//! sequences) and the characters that reorder how a terminal shows the text
//! around them are written escaped (`\n`, `\u{1b}`). The stub's traces and
//! the `payload-tools` command's messages both go through it.

use std::fmt::{self, Write};

/// Shows `text` with the characters above escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        EscapingWriter(f).write_str(self.0)
    }
}

/// A writer that escapes what is written through it into `W`.
#[derive(Debug)]
pub struct EscapingWriter<W>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if must_escape(c) => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// C0 and C1 controls and the bidirectional-formatting characters.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_whatever_the_value() {
        let shown = |text| Escaped(text).to_string();
        assert_eq!(
            shown("1.1\nAUTO UPDATE: Updated."),
            "1.1\\nAUTO UPDATE: Updated."
        );
        assert_eq!(shown("\u{1b}[2J\u{9b}x\r"), "\\u{1b}[2J\\u{9b}x\\r");
        assert_eq!(shown("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(shown("https://h/é 1.0"), "https://h/é 1.0");
    }
}
