//! `payload-tools stats LOG...`: what a static host's access logs say about
//! a fleet (docs/publishing.md), and the tally `rollout
//! --halt-if-rollbacks` decides on:
//!
//! - each log is read as a stream, one line at a time (a gzip file, found
//!   by its magic bytes, through a streaming decoder), lines longer than
//!   `accesslog::MAX_LINE` skipped without being held;
//! - each line becomes a record (`payload_tools::accesslog`) or a skip,
//!   counted by reason;
//! - each record is a report (a query with `app` and `event`), a check (a
//!   `*.toml` fetched by an onefile updater) or a build fetch (another
//!   request by one), added to its day's counters;
//! - the counters are small maps whose number of keys is capped as a whole
//!   ([`MAX_KEYS`]); what comes after the cap is counted as overflow, so
//!   memory stays bounded whatever the logs hold;
//! - then one table per day, or the same as JSON (`"format": 1`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use payload_tools::accesslog::{self, Agent, Day, MAX_AGENT_FIELD, MAX_LINE, Record};
use payload_tools::text::Escaped;
use payload_tools::version::compare_versions;
use serde_json::json;

use crate::Failure;

/// Most distinct keys (days, versions, pairs, reasons) kept in all.
pub const MAX_KEYS: usize = 100_000;

/// The JSON output's format: a change that breaks a reader bumps it.
const FORMAT: u32 = 1;

/// `payload-tools stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Access logs in nginx's `combined` format, plain or gzip-compressed.
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Count only this app's requests (as its User-Agent or report names it).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Count only days from this one on (YYYY-MM-DD, the host's local time).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Print JSON (schema in docs/publishing.md) instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn stats(args: StatsArgs) -> Result<(), Failure> {
    let since = args
        .since
        .as_deref()
        .map(|text| {
            Day::parse_iso(text).ok_or_else(|| Failure {
                message: format!("--since '{text}' is not a date"),
                hint: Some("give it as YYYY-MM-DD".into()),
            })
        })
        .transpose()?;
    let tally = Tally::read(&args.logs, args.app.as_deref(), since)?;
    let mut out = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &tally.to_json())
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        tally.write_tables(&mut out)
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    if tally.skipped_total() > 0 {
        eprintln!(
            "payload-tools: note: skipped {} line(s) that are no `combined` log line: {}",
            tally.skipped_total(),
            tally.skipped_summary()
        );
    }
    Ok(())
}

/// A count per key, its keys drawn from the budget every map shares.
#[derive(Debug)]
pub struct Counter<K> {
    pub map: BTreeMap<K, u64>,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Counter<K> {
    /// Adds one to `key`; false when the key is new and the budget spent.
    fn add(&mut self, key: K, budget: &mut usize) -> bool {
        if let Some(n) = self.map.get_mut(&key) {
            *n += 1;
            return true;
        }
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        self.map.insert(key, 1);
        true
    }

    fn total(&self) -> u64 {
        self.map.values().sum()
    }
}

impl Counter<String> {
    /// [`Counter::add`] without allocating for a key already there.
    fn add_str(&mut self, key: &str, budget: &mut usize) -> bool {
        match self.map.get_mut(key) {
            Some(n) => {
                *n += 1;
                true
            }
            None => self.add(key.to_owned(), budget),
        }
    }
}

/// One day's counters.
#[derive(Debug, Default)]
pub struct DayTally {
    /// Manifest fetches by the version in the User-Agent.
    pub checks: Counter<String>,
    /// Manifest fetches answered 304.
    pub not_modified: u64,
    pub manifest_bytes: u64,
    pub build_bytes: u64,
    pub range_bytes: u64,
    /// `updated` reports by (from, to).
    pub updated: Counter<(String, String)>,
    /// `rolled-back` reports by (from, reason).
    pub rolled_back: Counter<(String, String)>,
    /// `refused` reports by (from, reason).
    pub refused: Counter<(String, String)>,
    /// `failed` reports by (from, reason).
    pub failed: Counter<(String, String)>,
}

/// Everything counted from the logs.
#[derive(Debug)]
pub struct Tally {
    pub days: BTreeMap<Day, DayTally>,
    pub lines: u64,
    /// Lines skipped, by why.
    skipped: BTreeMap<&'static str, u64>,
    /// Requests not by an onefile updater (browsers, crawlers).
    other_clients: u64,
    /// Events counted in no map: their key came after the budget was spent.
    overflow: u64,
    budget: usize,
}

/// What a report says (values bounded and plain, or it is not one).
struct Report<'a> {
    app: Cow<'a, str>,
    event: Cow<'a, str>,
    from: Cow<'a, str>,
    to: Cow<'a, str>,
    reason: Cow<'a, str>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            days: BTreeMap::new(),
            lines: 0,
            skipped: BTreeMap::new(),
            other_clients: 0,
            overflow: 0,
            budget: MAX_KEYS,
        }
    }

    /// Counts every line of `logs`, in order; `app` and `since` filter.
    pub fn read(logs: &[PathBuf], app: Option<&str>, since: Option<Day>) -> Result<Tally, Failure> {
        let mut tally = Tally::new();
        for log in logs {
            let reader = open_log(log)?;
            each_line(reader, |line| tally.add_line(line, app, since))
                .map_err(|e| format!("cannot read '{}': {e}", log.display()))?;
        }
        Ok(tally)
    }

    fn add_line(&mut self, line: Option<&[u8]>, app: Option<&str>, since: Option<Day>) {
        self.lines += 1;
        let record = match line.map(Record::parse) {
            None => Err(accesslog::Error::TooLong),
            Some(r) => r,
        };
        match record {
            Ok(record) => self.add(&record, app, since),
            Err(e) => *self.skipped.entry(skip_name(e)).or_default() += 1,
        }
    }

    fn add(&mut self, record: &Record<'_>, app: Option<&str>, since: Option<Day>) {
        if since.is_some_and(|since| record.day < since) {
            return;
        }
        if let Some(report) = report_of(record.query) {
            if app.is_none_or(|a| a == report.app) {
                self.add_report(record.day, &report);
            }
            return;
        }
        let Some(agent) = record.agent else {
            self.other_clients += 1;
            return;
        };
        if app.is_some_and(|a| a != agent.app) {
            return;
        }
        self.add_fetch(record, &agent);
    }

    fn add_report(&mut self, day: Day, report: &Report<'_>) {
        let Some(tally) = day_of(&mut self.days, &mut self.budget, &mut self.overflow, day) else {
            return;
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let counted = match &*report.event {
            "updated" => tally
                .updated
                .add(pair(&report.from, &report.to), &mut self.budget),
            "rolled-back" => tally
                .rolled_back
                .add(pair(&report.from, &report.reason), &mut self.budget),
            "refused" => tally
                .refused
                .add(pair(&report.from, &report.reason), &mut self.budget),
            "failed" => tally
                .failed
                .add(pair(&report.from, &report.reason), &mut self.budget),
            _ => {
                *self.skipped.entry("unknown_event").or_default() += 1;
                true
            }
        };
        if !counted {
            self.overflow += 1;
        }
    }

    fn add_fetch(&mut self, record: &Record<'_>, agent: &Agent<'_>) {
        let Some(tally) = day_of(
            &mut self.days,
            &mut self.budget,
            &mut self.overflow,
            record.day,
        ) else {
            return;
        };
        if record.method != "GET" {
            // The updater only GETs; a HEAD (a person's curl -I) is no check.
            return;
        }
        if record.is_manifest() {
            tally.manifest_bytes += record.bytes;
            if record.status == 304 {
                tally.not_modified += 1;
            }
            if !tally.checks.add_str(agent.version, &mut self.budget) {
                self.overflow += 1;
            }
        } else if record.status == 206 {
            tally.range_bytes += record.bytes;
        } else if record.status == 200 {
            tally.build_bytes += record.bytes;
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn skipped_summary(&self) -> String {
        self.skipped
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The highest version any check or report names, by the project's
    /// version order.
    pub fn latest_version(&self) -> Option<&str> {
        let mut latest: Option<&str> = None;
        for day in self.days.values() {
            let named = day
                .checks
                .map
                .keys()
                .map(String::as_str)
                .chain(
                    day.updated
                        .map
                        .keys()
                        .flat_map(|(f, t)| [f, t].map(String::as_str)),
                )
                .chain(day.rolled_back.map.keys().map(|(v, _)| v.as_str()))
                .chain(day.refused.map.keys().map(|(v, _)| v.as_str()))
                .chain(day.failed.map.keys().map(|(v, _)| v.as_str()));
            for version in named.filter(|v| !v.is_empty()) {
                if latest.is_none_or(|l| compare_versions(version, l).is_gt()) {
                    latest = Some(version);
                }
            }
        }
        latest
    }

    /// The latest release's checks on the last day with checks, and all
    /// that day's checks.
    fn progress(&self, latest: &str) -> Option<(Day, u64, u64)> {
        let (day, tally) = self.days.iter().rev().find(|(_, t)| t.checks.total() > 0)?;
        let on_latest = tally
            .checks
            .map
            .iter()
            .filter(|(v, _)| compare_versions(v, latest).is_eq())
            .map(|(_, n)| n)
            .sum();
        Some((*day, on_latest, tally.checks.total()))
    }

    /// Installs of `version` (`updated` reports to it) and its rollbacks
    /// (`rolled-back` reports from it), over every day.
    pub fn installs_and_rollbacks(&self, version: &str) -> (u64, u64) {
        let same = |v: &str| compare_versions(v, version).is_eq();
        let mut installs = 0;
        let mut rollbacks = 0;
        for day in self.days.values() {
            installs += day
                .updated
                .map
                .iter()
                .filter(|((_, to), _)| same(to))
                .map(|(_, n)| n)
                .sum::<u64>();
            rollbacks += day
                .rolled_back
                .map
                .iter()
                .filter(|((from, _), _)| same(from))
                .map(|(_, n)| n)
                .sum::<u64>();
        }
        (installs, rollbacks)
    }

    fn to_json(&self) -> serde_json::Value {
        let pairs = |c: &Counter<(String, String)>, first: &str, second: &str| {
            c.map
                .iter()
                .map(|((a, b), n)| json!({ first: a, second: b, "count": n }))
                .collect::<Vec<_>>()
        };
        let days: Vec<_> = self
            .days
            .iter()
            .map(|(day, t)| {
                json!({
                    "day": day.to_string(),
                    "checks": t.checks.map,
                    "checks_total": t.checks.total(),
                    "not_modified": t.not_modified,
                    "bytes": {
                        "manifests": t.manifest_bytes,
                        "builds": t.build_bytes,
                        "ranges": t.range_bytes,
                    },
                    "updated": pairs(&t.updated, "from", "to"),
                    "rolled_back": pairs(&t.rolled_back, "version", "reason"),
                    "refused": pairs(&t.refused, "version", "reason"),
                    "failed": pairs(&t.failed, "version", "reason"),
                })
            })
            .collect();
        let latest = self.latest_version().map(|version| {
            let (day, on_latest, checks) = match self.progress(version) {
                Some((day, on, all)) => (Some(day.to_string()), on, all),
                None => (None, 0, 0),
            };
            let (installs, rollbacks) = self.installs_and_rollbacks(version);
            json!({
                "version": version,
                "day": day,
                "checks": on_latest,
                "checks_that_day": checks,
                "installs": installs,
                "rollbacks": rollbacks,
            })
        });
        json!({
            "format": FORMAT,
            "lines": self.lines,
            "skipped": self.skipped,
            "other_clients": self.other_clients,
            "overflow": self.overflow,
            "latest": latest,
            "days": days,
        })
    }

    fn write_tables(&self, out: &mut impl Write) -> io::Result<()> {
        for (day, t) in &self.days {
            writeln!(out, "{day}")?;
            let checks = t.checks.total();
            let versions = t
                .checks
                .map
                .iter()
                .map(|(v, n)| format!("{}: {n}", Escaped(v)))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "  checks        {checks} ({}), {} answered 304",
                if versions.is_empty() { "-" } else { &versions },
                percent(t.not_modified, checks)
            )?;
            writeln!(
                out,
                "  bytes         manifests {}, builds {}, ranges {}",
                t.manifest_bytes, t.build_bytes, t.range_bytes
            )?;
            for ((from, to), n) in &t.updated.map {
                writeln!(
                    out,
                    "  updated       {} -> {}: {n}",
                    Escaped(from),
                    Escaped(to)
                )?;
            }
            for (label, counter) in [
                ("rolled back", &t.rolled_back),
                ("refused", &t.refused),
                ("failed", &t.failed),
            ] {
                for ((version, reason), n) in &counter.map {
                    writeln!(
                        out,
                        "  {label:<13} {} ({}): {n}",
                        Escaped(version),
                        Escaped(reason)
                    )?;
                }
            }
        }
        if let Some(latest) = self.latest_version() {
            let (installs, rollbacks) = self.installs_and_rollbacks(latest);
            match self.progress(latest) {
                Some((day, on, all)) => writeln!(
                    out,
                    "latest release {}: {} of the checks on {day} ({on} of {all}); {installs} install(s), {rollbacks} rollback(s)",
                    Escaped(latest),
                    percent(on, all)
                )?,
                None => writeln!(
                    out,
                    "latest release {}: no checks; {installs} install(s), {rollbacks} rollback(s)",
                    Escaped(latest)
                )?,
            }
        }
        writeln!(
            out,
            "{} line(s), {} skipped, {} from other clients{}",
            self.lines,
            self.skipped_total(),
            self.other_clients,
            if self.overflow > 0 {
                format!(", {} beyond the {MAX_KEYS}-key cap", self.overflow)
            } else {
                String::new()
            }
        )
    }
}

/// The counters of `day`; `None` (counted as overflow) when it is new and
/// the budget is spent.
fn day_of<'a>(
    days: &'a mut BTreeMap<Day, DayTally>,
    budget: &mut usize,
    overflow: &mut u64,
    day: Day,
) -> Option<&'a mut DayTally> {
    if !days.contains_key(&day) {
        if *budget == 0 {
            *overflow += 1;
            return None;
        }
        *budget -= 1;
    }
    Some(days.entry(day).or_default())
}

/// The report a query carries: `app` and a known-shape `event`, every value
/// plain and short. `None` for any other query.
fn report_of(query: &str) -> Option<Report<'_>> {
    if query.is_empty() {
        return None;
    }
    let mut report = Report {
        app: Cow::Borrowed(""),
        event: Cow::Borrowed(""),
        from: Cow::Borrowed(""),
        to: Cow::Borrowed(""),
        reason: Cow::Borrowed(""),
    };
    // Values arrive percent-encoded (a version's `+` as `%2B`): they are
    // checked once decoded.
    for (name, value) in accesslog::query_pairs(query) {
        let slot = match &*name {
            "app" => &mut report.app,
            "event" => &mut report.event,
            "from" => &mut report.from,
            "to" => &mut report.to,
            "reason" => &mut report.reason,
            _ => continue,
        };
        if !plain(&value) {
            return None;
        }
        *slot = value;
    }
    (!report.app.is_empty() && !report.event.is_empty()).then_some(report)
}

fn plain(value: &str) -> bool {
    value.len() <= MAX_AGENT_FIELD
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b'~'))
}

fn skip_name(e: accesslog::Error) -> &'static str {
    match e {
        accesslog::Error::TooLong => "too_long",
        accesslog::Error::NotUtf8 => "not_utf8",
        accesslog::Error::Truncated => "truncated",
        accesslog::Error::Time => "bad_time",
        accesslog::Error::Request => "bad_request",
        accesslog::Error::Number => "bad_number",
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    // Counts of log lines: far below 2^52, exact as f64.
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// A log opened for reading: gzip (by its magic bytes) through a streaming
/// decoder. Refused when its first bytes hold a NUL: no text log does.
fn open_log(path: &Path) -> Result<Box<dyn BufRead>, Failure> {
    let cannot = |e: io::Error| Failure::from(format!("cannot read '{}': {e}", path.display()));
    let file = File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(format!("'{}' is not a file", path.display()).into());
    }
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let gzip = file.fill_buf().map_err(cannot)?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    };
    let head = reader.fill_buf().map_err(cannot)?;
    if head.contains(&0) {
        return Err(Failure {
            message: format!("'{}' is not a text access log", path.display()),
            hint: Some("give nginx access logs (`combined` format), plain or .gz".into()),
        });
    }
    Ok(reader)
}

/// Calls `each` with every line of `reader` (without its `\n`), or `None`
/// for a line longer than `MAX_LINE`, which is skipped without being held.
fn each_line(mut reader: impl BufRead, mut each: impl FnMut(Option<&[u8]>)) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if too_long {
                each(None);
            } else if !pending.is_empty() {
                each(Some(&pending));
            }
            return Ok(());
        }
        let (taken, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(end) => (end, true),
            None => (buf.len(), false),
        };
        if too_long || pending.len() + taken > MAX_LINE {
            too_long = true;
            pending.clear();
        } else if complete && pending.is_empty() {
            each(Some(&buf[..taken]));
        } else {
            pending.extend_from_slice(&buf[..taken]);
        }
        if complete {
            if too_long {
                each(None);
            } else if !pending.is_empty() {
                each(Some(&pending));
            }
            pending.clear();
            too_long = false;
            reader.consume(taken + 1);
        } else {
            reader.consume(taken);
        }
    }
}

/// Reads `r` to the end as lines, for the tests.
#[cfg(test)]
fn lines_of(r: impl io::Read) -> Vec<Option<Vec<u8>>> {
    let mut lines = Vec::new();
    each_line(BufReader::with_capacity(16, r), |l| {
        lines.push(l.map(<[u8]>::to_vec))
    })
    .expect("reads");
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_buffers_and_too_long_ones() {
        let long = vec![b'x'; MAX_LINE + 1];
        let mut input = b"one\ntwo-spans-buffers-of-16-bytes\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        assert_eq!(
            lines_of(&input[..]),
            vec![
                Some(b"one".to_vec()),
                Some(b"two-spans-buffers-of-16-bytes".to_vec()),
                None,
                Some(b"last".to_vec())
            ]
        );
        let exact = vec![b'y'; MAX_LINE];
        assert_eq!(lines_of(&exact[..]), vec![Some(exact.clone())]);
    }

    #[test]
    fn reports_are_plain_queries_with_app_and_event() {
        let r = report_of("app=demo&from=1.0&to=1.1&event=updated").expect("report");
        assert_eq!(
            (&*r.app, &*r.from, &*r.to, &*r.event),
            ("demo", "1.0", "1.1", "updated")
        );
        assert!(report_of("from=1.0&event=updated").is_none());
        assert!(report_of("app=demo&from=1.0").is_none());
        assert!(report_of("app=de%20mo&event=updated").is_none());
        let r = report_of("app=demo&from=1.0%2Bb7&to=1.1&event=updated").expect("report");
        assert_eq!((&*r.from, &*r.to), ("1.0+b7", "1.1"));
        assert!(report_of(&format!("app=demo&event=failed&reason={}", "x".repeat(65))).is_none());
    }

    #[test]
    fn the_key_budget_bounds_the_maps() {
        let mut tally = Tally::new();
        tally.budget = 3;
        for v in 0..10 {
            let line = format!(
                r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET /u.toml HTTP/1.1" 200 1 "-" "onefile/0.1.0 demo/1.{v} (linux; x86_64)""#
            );
            tally.add_line(Some(line.as_bytes()), None, None);
        }
        // One key for the day, two versions, eight beyond the cap.
        assert_eq!(
            tally.days.values().next().map(|d| d.checks.total()),
            Some(2)
        );
        assert_eq!(tally.overflow, 8);
    }
}
