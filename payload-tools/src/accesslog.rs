//! One line of a static host's access log, in nginx's default `combined`
//! format, as a typed record: what `payload-tools stats` and `rollout
//! --halt-if-rollbacks` count (docs/publishing.md).
//!
//! `$remote_addr - $remote_user [$time_local] "$request" $status
//! $body_bytes_sent "$http_referer" "$http_user_agent"`
//!
//! The log is written from what clients send, so every line is hostile:
//! - a line longer than [`MAX_LINE`] is refused before it is looked at;
//! - quoted fields end at the next `"`: nginx writes a `"` inside a value
//!   as `\x22` (and any byte outside printable ASCII as `\xHH`), so a
//!   client cannot close a field early;
//! - anything that is not the format (invalid UTF-8, a truncated line, a
//!   date that is no date, a status that is no number) is an [`Error`],
//!   never a guess and never a panic;
//! - a User-Agent is onefile's only when it has exactly the updater's shape
//!   with short, plain fields ([`Agent::parse`]); anything else is
//!   somebody else's (or a spoof that says nothing onefile would).

use std::borrow::Cow;
use std::fmt;

/// Longest line looked at, in bytes: real lines are a few hundred.
pub const MAX_LINE: usize = 8 * 1024;

/// Longest field of an onefile User-Agent (tool, app, version, os, arch).
pub const MAX_AGENT_FIELD: usize = 64;

/// Why a line is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Longer than [`MAX_LINE`].
    #[error("line too long")]
    TooLong,
    /// Not UTF-8 (nginx escapes such bytes, so something else wrote it).
    #[error("not UTF-8")]
    NotUtf8,
    /// Ends before the user agent's closing quote.
    #[error("truncated line")]
    Truncated,
    /// `[$time_local]` is not `dd/Mon/yyyy:hh:mm:ss +zzzz`.
    #[error("bad time")]
    Time,
    /// `"$request"` is not `METHOD TARGET PROTOCOL`.
    #[error("bad request line")]
    Request,
    /// `$status` or `$body_bytes_sent` is not a number.
    #[error("bad status or size")]
    Number,
}

/// A calendar day as the log gives it (the host's local time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Day {
    /// `YYYY-MM-DD`, as `--since` takes it.
    pub fn parse_iso(text: &str) -> Option<Day> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let day = Day {
            year: digits(&b[0..4])?.try_into().ok()?,
            month: digits(&b[5..7])?.try_into().ok()?,
            day: digits(&b[8..10])?.try_into().ok()?,
        };
        day.valid().then_some(day)
    }

    fn valid(&self) -> bool {
        (1..=12).contains(&self.month) && (1..=31).contains(&self.day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// One request as the log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub day: Day,
    pub method: &'a str,
    /// The target's path, without the query, as sent (not decoded).
    pub path: &'a str,
    /// The target's query after `?`, empty without one ([`query_pairs`]).
    pub query: &'a str,
    pub status: u16,
    pub bytes: u64,
    /// The User-Agent when it is an onefile updater's.
    pub agent: Option<Agent<'a>>,
}

impl<'a> Record<'a> {
    /// Parses one line (without its `\n`).
    pub fn parse(line: &'a [u8]) -> Result<Record<'a>, Error> {
        if line.len() > MAX_LINE {
            return Err(Error::TooLong);
        }
        let line = std::str::from_utf8(line).map_err(|_| Error::NotUtf8)?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        // `$remote_user` is escaped like any value, so the first ` [` opens
        // the time.
        let (_, rest) = line.split_once(" [").ok_or(Error::Truncated)?;
        let (time, rest) = rest.split_once("] \"").ok_or(Error::Truncated)?;
        let day = parse_time(time)?;
        let (request, rest) = rest.split_once("\" ").ok_or(Error::Truncated)?;
        let (numbers, rest) = rest.split_once(" \"").ok_or(Error::Truncated)?;
        let (_referer, rest) = rest.split_once("\" \"").ok_or(Error::Truncated)?;
        let (agent, _) = rest.split_once('"').ok_or(Error::Truncated)?;
        let mut numbers = numbers.split(' ');
        let status = numbers
            .next()
            .and_then(|s| (s.len() == 3).then(|| s.parse::<u16>().ok()).flatten())
            .ok_or(Error::Number)?;
        let bytes = numbers
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Error::Number)?;
        if numbers.next().is_some() {
            return Err(Error::Number);
        }
        let mut parts = request.split(' ');
        let (Some(method), Some(target), Some(_protocol), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Request);
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Request);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Record {
            day,
            method,
            path,
            query,
            status,
            bytes,
            agent: Agent::parse(agent),
        })
    }

    /// Whether the path's last segment names an `update.toml` (any
    /// `*.toml`): a manifest fetch, the updater's check.
    pub fn is_manifest(&self) -> bool {
        self.path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.ends_with(".toml"))
    }
}

/// The updater's User-Agent, `onefile/<tool> <app>/<version> (<os>; <arch>)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent<'a> {
    pub tool: &'a str,
    pub app: &'a str,
    pub version: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
}

impl<'a> Agent<'a> {
    /// The agent when `text` has exactly the updater's shape, each field
    /// 1 to [`MAX_AGENT_FIELD`] plain characters; `None` otherwise.
    pub fn parse(text: &'a str) -> Option<Agent<'a>> {
        let rest = text.strip_prefix("onefile/")?;
        let (tool, rest) = rest.split_once(' ')?;
        let (app_version, rest) = rest.split_once(" (")?;
        let (app, version) = app_version.rsplit_once('/')?;
        let (os, arch) = rest.strip_suffix(')')?.split_once("; ")?;
        let agent = Agent {
            tool,
            app,
            version,
            os,
            arch,
        };
        [tool, app, version, os, arch]
            .iter()
            .all(|f| plain_field(f))
            .then_some(agent)
    }
}

/// Short, and only characters names and versions use: no spaces, quotes,
/// slashes or escapes that could make one field look like another.
fn plain_field(field: &str) -> bool {
    (1..=MAX_AGENT_FIELD).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b'~'))
}

/// The `name=value` pairs of a query, percent-decoded (`+` stays `+`: the
/// reports encode a space as `%20`). A pair whose decoding is not UTF-8 is
/// left out.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(name)?, percent_decode(value)?))
        })
}

fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // from_str_radix alone would take `%+A`.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// `24/Nov/2026:14:03:06 +0000` → its day.
fn parse_time(time: &str) -> Result<Day, Error> {
    let b = time.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return Err(Error::Time);
    }
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| *m == &b[3..6])
        .ok_or(Error::Time)?;
    let day = Day {
        year: digits(&b[7..11])
            .and_then(|y| y.try_into().ok())
            .ok_or(Error::Time)?,
        // At most 12, from the table's index.
        month: u8::try_from(month + 1).map_err(|_| Error::Time)?,
        day: digits(&b[0..2])
            .and_then(|d| d.try_into().ok())
            .ok_or(Error::Time)?,
    };
    day.valid().then_some(day).ok_or(Error::Time)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines nginx 1.22.1 wrote with `access_log ... combined` for an
    /// updater's check, its conditional check, a range, a report, a
    /// browser (by hand: a referer), a spoofed agent, bytes that are not
    /// UTF-8, and a TLS handshake sent to a plain-HTTP port.
    const CHECK: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /update.toml HTTP/1.1" 200 4 "-" "onefile/0.1.0 demo/1.0 (linux; x86_64)""#;
    const NOT_MODIFIED: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /update.toml HTTP/1.1" 304 0 "-" "onefile/0.1.0 demo/1.0 (linux; x86_64)""#;
    const RANGE: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /demo.bin HTTP/1.1" 206 1000 "-" "onefile/0.1.0 demo/1.0 (linux; x86_64)""#;
    const REPORT: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /report?app=demo&from=1.0&to=1.1&event=updated HTTP/1.1" 404 153 "-" "onefile/0.1.0 demo/1.1 (linux; x86_64)""#;
    const BROWSER: &str = r#"203.0.113.9 - - [01/Dec/2026:00:00:01 +0100] "GET / HTTP/1.1" 200 615 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0""#;
    const SPOOFED: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /update.toml HTTP/1.1" 200 4 "-" "x\x22 200 9 \x22-\x22 \x22onefile/0.1.0 demo/9.9 (linux; x86_64)""#;
    const ESCAPED: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "GET /a%22b HTTP/1.1" 404 153 "-" "\xFF\xFE""#;
    const GARBAGE: &str = r#"127.0.0.1 - - [24/Nov/2026:14:06:56 +0000] "\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03\xE9+\x06\x97T\xB34%M\x8F\x81\xD9\x9C\xBD-\xAA\xE7B8\xB1%Q\xDA\xBB\xD2-\xA0\xD9\xE9\x03\x83\x16 \x9D\x86\x8C\xBBES\x92_ M7r Y\xBF\x089\xCB0X\xE5\x5C\xE8\xA0\xDE\xC2\xEA\xAB,\x15\x09\xBC\x00>\x13\x02\x13\x03\x13\x01\xC0,\xC00\x00\x9F\xCC\xA9\xCC\xA8\xCC\xAA\xC0+\xC0/\x00\x9E\xC0$\xC0(\x00k\xC0#\xC0'\x00g\xC0" 400 157 "-" "-""#;

    #[test]
    fn a_check() -> Result<(), Box<dyn std::error::Error>> {
        let r = Record::parse(CHECK.as_bytes())?;
        assert_eq!(
            r.day,
            Day {
                year: 2026,
                month: 11,
                day: 24
            }
        );
        assert_eq!(r.day.to_string(), "2026-11-24");
        assert_eq!((r.method, r.path, r.query), ("GET", "/update.toml", ""));
        assert_eq!((r.status, r.bytes), (200, 4));
        assert!(r.is_manifest());
        assert_eq!(
            r.agent,
            Some(Agent {
                tool: "0.1.0",
                app: "demo",
                version: "1.0",
                os: "linux",
                arch: "x86_64"
            })
        );
        let r = Record::parse(NOT_MODIFIED.as_bytes())?;
        assert_eq!((r.status, r.bytes), (304, 0));
        Ok(())
    }

    #[test]
    fn a_range_and_a_report() -> Result<(), Box<dyn std::error::Error>> {
        let r = Record::parse(RANGE.as_bytes())?;
        assert_eq!((r.status, r.bytes, r.is_manifest()), (206, 1000, false));
        let r = Record::parse(REPORT.as_bytes())?;
        assert_eq!((r.path, r.status), ("/report", 404));
        let pairs: Vec<(String, String)> = query_pairs(r.query)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("app", "demo"),
                ("from", "1.0"),
                ("to", "1.1"),
                ("event", "updated")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(r.agent.map(|a| a.version), Some("1.1"));
        Ok(())
    }

    #[test]
    fn other_clients_and_garbage() -> Result<(), Box<dyn std::error::Error>> {
        let r = Record::parse(BROWSER.as_bytes())?;
        assert_eq!(r.agent, None);
        assert_eq!(r.day.to_string(), "2026-12-01");
        assert_eq!(Record::parse(GARBAGE.as_bytes()), Err(Error::Request));
        Ok(())
    }

    #[test]
    fn escaped_quotes_cannot_forge_fields() -> Result<(), Box<dyn std::error::Error>> {
        // The client sent `x" 200 9 "-" "onefile/0.1.0 demo/9.9 (linux; x86_64)`
        // as its User-Agent; nginx escaped the quotes.
        let r = Record::parse(SPOOFED.as_bytes())?;
        assert_eq!((r.status, r.bytes, r.agent), (200, 4, None));
        // Bytes that are not UTF-8 in the agent, escaped by nginx.
        let r = Record::parse(ESCAPED.as_bytes())?;
        assert_eq!((r.path, r.agent), ("/a%22b", None));
        // The same in the path.
        let line = r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET /a\x22b.toml HTTP/1.1" 404 0 "-" "-""#;
        assert_eq!(
            Record::parse(line.as_bytes()).map(|r| r.path),
            Ok(r"/a\x22b.toml")
        );
        Ok(())
    }

    #[test]
    fn spoofed_and_odd_agents() -> Result<(), Box<dyn std::error::Error>> {
        for agent in [
            "onefile/0.1.0 demo/1.0 (linux; x86_64) extra",
            "onefile/0.1.0 demo/1.0(linux; x86_64)",
            "onefile/0.1.0  demo/1.0 (linux; x86_64)",
            "onefile/ demo/1.0 (linux; x86_64)",
            "onefile/0.1.0 demo/ (linux; x86_64)",
            "onefile/0.1.0 de mo/1.0 (linux; x86_64)",
            "onefile/0.1.0 demo/1.0 (linux; x86_64; extra)",
            "onefile/0.1.0 demo/1.0\\x22 (linux; x86_64)",
            "Onefile/0.1.0 demo/1.0 (linux; x86_64)",
            "",
        ] {
            assert_eq!(Agent::parse(agent), None, "{agent}");
        }
        let long = format!("onefile/0.1.0 demo/{} (linux; x86_64)", "1".repeat(65));
        assert_eq!(Agent::parse(&long), None);
        let a = Agent::parse("onefile/0.2.0-rc.1 my_app.x/1.0+b7 (windows; aarch64)")
            .ok_or("the agent is not read as onefile's")?;
        assert_eq!((a.app, a.version, a.os), ("my_app.x", "1.0+b7", "windows"));
        Ok(())
    }

    #[test]
    fn hostile_lines_are_errors() {
        assert_eq!(Record::parse(b""), Err(Error::Truncated));
        assert_eq!(Record::parse(&[b'a'; MAX_LINE + 1]), Err(Error::TooLong));
        let mut bad_utf8 = CHECK.as_bytes().to_vec();
        bad_utf8[60] = 0xff;
        assert_eq!(Record::parse(&bad_utf8), Err(Error::NotUtf8));
        // Every prefix of a good line is an error, not a panic or a record.
        for end in 0..CHECK.len() - 1 {
            assert!(Record::parse(&CHECK.as_bytes()[..end]).is_err(), "{end}");
        }
        for line in [
            r#"127.0.0.1 - - [24/Foo/2026:14:20:11 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
            r#"127.0.0.1 - - [32/Nov/2026:14:20:11 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
            r#"127.0.0.1 - - [2/Nov/2026:14:20:11 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET / HTTP/1.1" 2000 1 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET / HTTP/1.1" 200 -1 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET / HTTP/1.1" 200 99999999999999999999999 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "-" 400 0 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "get / HTTP/1.1" 200 1 "-" "-""#,
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET /  HTTP/1.1" 200 1 "-" "-""#,
        ] {
            assert!(Record::parse(line.as_bytes()).is_err(), "{line}");
        }
    }

    #[test]
    fn queries_decode_or_drop() {
        let pairs: Vec<_> = query_pairs("a=%31%2e0&b=%zz&c&&d=%ff&e=x%20y&f=%+A&g=%-1").collect();
        assert_eq!(
            pairs,
            [("a", "1.0"), ("c", ""), ("e", "x y")].map(|(k, v)| (Cow::from(k), Cow::from(v)))
        );
    }

    #[test]
    fn since_dates() {
        assert_eq!(
            Day::parse_iso("2026-11-24").map(|d| d.to_string()),
            Some("2026-11-24".into())
        );
        for bad in [
            "2026-13-01",
            "2026-1-01",
            "20261124",
            "2026-11-24x",
            "２０２６-11-24",
        ] {
            assert_eq!(Day::parse_iso(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any bytes, and a real line with any bytes spliced in anywhere:
        /// a record or an error, never a panic; a record's fields lie
        /// inside the line.
        #[test]
        fn no_line_panics(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            at in 0..CHECK.len(),
            cut in 0..CHECK.len(),
        ) {
            let _ = Record::parse(&noise);
            let mut spliced = CHECK.as_bytes()[..at].to_vec();
            spliced.extend_from_slice(&noise);
            spliced.extend_from_slice(&CHECK.as_bytes()[at.max(cut)..]);
            if let Ok(r) = Record::parse(&spliced) {
                proptest::prop_assert!(r.path.len() < spliced.len());
            }
            let _ = query_pairs(std::str::from_utf8(&noise).unwrap_or("")).count();
        }
    }
}
