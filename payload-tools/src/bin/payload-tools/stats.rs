//! `payload-tools stats LOG...`: what a static host's access logs say about
//! a fleet (docs/publishing.md), and the exact count `rollout
//! --halt-if-rollbacks` decides on:
//!
//! - each log is read as a stream, one line at a time (a gzip file, found
//!   by its magic bytes, through a streaming decoder), lines longer than
//!   `accesslog::MAX_LINE` skipped without being held;
//! - each line becomes a record (`payload_tools::accesslog`) or a skip,
//!   counted by reason;
//! - each record is a report (a `GET` by an onefile updater of the app the
//!   query names, the query carrying `app` and `event`: the contract), a
//!   check (a `*.toml` fetched by an onefile updater, answered 200 or 304)
//!   or a build fetch (another `GET` by one, answered 200 or 206); other
//!   statuses are counted apart as errors, report-shaped queries that break
//!   the contract as ignored, added to its day's counters;
//! - the counters are small maps whose number of keys is capped, checks
//!   (whose versions any client can choose) apart from reports and days;
//!   what comes after a cap is counted as overflow and said loudly, so
//!   memory stays bounded whatever the logs hold;
//! - then one table per day, or the same as JSON (`"format": 1`), written
//!   as it is serialized;
//! - [`HaltCount`]: the latest release's installs and rollbacks in two
//!   plain counters, never capped, for the halt.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use payload_tools::accesslog::{self, Agent, Day, MAX_AGENT_FIELD, MAX_LINE, Record};
use payload_tools::text::Escaped;
use payload_tools::version::compare_versions;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::Failure;

/// Most distinct versions named by checks' User-Agents, over all days.
pub const MAX_CHECK_KEYS: usize = 10_000;
/// Most distinct (version, version or reason) keys of reports, over all days.
pub const MAX_REPORT_KEYS: usize = 10_000;
/// Most distinct days (over 27 years).
pub const MAX_DAYS: usize = 10_000;

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
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &Json(&tally))
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        tally.write_tables(&mut out)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the report: {e}"))?;
    if tally.skipped_total() > 0 {
        eprintln!(
            "payload-tools: note: skipped {} line(s) that are no `combined` log line: {}",
            tally.skipped_total(),
            tally.skipped_summary()
        );
    }
    if tally.overflow.any() {
        eprintln!(
            "payload-tools: warning: {}: those events are in no count above",
            tally.overflow
        );
    }
    Ok(())
}

/// A count per key, its keys drawn from a budget shared with other maps.
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

    /// The entries in the project's version order.
    fn by_version(&self) -> Vec<(&String, &u64)> {
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort_by(|(a, _), (b, _)| version_order(a, b));
        entries
    }
}

impl Counter<(String, String)> {
    /// The entries by their first version, then their second (a version or
    /// a reason), in the project's version order.
    fn by_version(&self) -> Vec<(&(String, String), &u64)> {
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort_by(|((a1, a2), _), ((b1, b2), _)| {
            version_order(a1, b1).then_with(|| version_order(a2, b2))
        });
        entries
    }
}

/// The project's version order; versions it takes as equal (`1.1`,
/// `1.1.0`) by their text, so that the order is total.
fn version_order(a: &str, b: &str) -> Ordering {
    compare_versions(a, b).then_with(|| a.cmp(b))
}

/// One day's counters.
#[derive(Debug, Default)]
pub struct DayTally {
    /// Manifest fetches answered 200 or 304, by the version in the
    /// User-Agent.
    pub checks: Counter<String>,
    /// Manifest fetches answered 304.
    pub not_modified: u64,
    /// Manifest fetches by onefile updaters answered otherwise, by status.
    pub manifest_errors: BTreeMap<u16, u64>,
    /// Build fetches by onefile updaters answered neither 200 nor 206, by
    /// status.
    pub build_errors: BTreeMap<u16, u64>,
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

/// Events counted in no map, by the cap that was reached.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overflow {
    pub checks: u64,
    pub reports: u64,
    pub days: u64,
}

impl Overflow {
    fn any(&self) -> bool {
        self.checks + self.reports + self.days > 0
    }
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the logs hold more distinct keys than counted: {} check(s) beyond the {MAX_CHECK_KEYS}-version cap, {} report(s) beyond the {MAX_REPORT_KEYS}-key cap, {} event(s) beyond the {MAX_DAYS}-day cap",
            self.checks, self.reports, self.days
        )
    }
}

/// What is left of each cap.
#[derive(Debug)]
struct Budget {
    checks: usize,
    reports: usize,
    days: usize,
}

/// Everything counted from the logs.
#[derive(Debug)]
pub struct Tally {
    pub days: BTreeMap<Day, DayTally>,
    pub lines: u64,
    /// Lines skipped, by why.
    skipped: BTreeMap<&'static str, u64>,
    /// Requests not by an onefile updater (browsers, crawlers, curl).
    other_clients: u64,
    /// Report-shaped queries that are no report by the contract: not a
    /// `GET`, not by an onefile updater, or by one of another app.
    ignored_reports: u64,
    overflow: Overflow,
    budget: Budget,
}

/// What a report says (values bounded and plain, or it is not one).
pub struct Report<'a> {
    pub app: Cow<'a, str>,
    pub event: Cow<'a, str>,
    pub from: Cow<'a, str>,
    pub to: Cow<'a, str>,
    pub reason: Cow<'a, str>,
}

/// What a record is, by the shared contract.
enum Kind<'r, 'a> {
    /// A report by an onefile updater of the app it names.
    Report(Report<'r>),
    /// A report-shaped query that breaks the contract (any sender can
    /// write one): counted apart, never as a report.
    IgnoredReport,
    /// Another request by an onefile updater.
    Fetch(Agent<'a>),
    /// A request by anything else.
    OtherClient,
}

/// Sorts `record` by the contract: a report is a `GET` with an onefile
/// User-Agent whose app is the report's `app`. The versions counted come
/// from the query, never from the User-Agent: a report left pending by a
/// launcher is sent later by the new build, with its version.
fn kind<'r, 'a>(record: &'r Record<'a>) -> Kind<'r, 'a> {
    match (report_of(record.query), record.agent) {
        (Some(report), Some(agent)) if record.method == "GET" && agent.app == report.app => {
            Kind::Report(report)
        }
        (Some(_), _) => Kind::IgnoredReport,
        (None, Some(agent)) => Kind::Fetch(agent),
        (None, None) => Kind::OtherClient,
    }
}

impl Tally {
    fn new() -> Tally {
        Tally {
            days: BTreeMap::new(),
            lines: 0,
            skipped: BTreeMap::new(),
            other_clients: 0,
            ignored_reports: 0,
            overflow: Overflow::default(),
            budget: Budget {
                checks: MAX_CHECK_KEYS,
                reports: MAX_REPORT_KEYS,
                days: MAX_DAYS,
            },
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
        match kind(record) {
            Kind::Report(report) => {
                if app.is_none_or(|a| a == report.app) {
                    self.add_report(record.day, &report);
                }
            }
            Kind::IgnoredReport => {
                self.ignored_reports += 1;
                if record.agent.is_none() {
                    self.other_clients += 1;
                }
            }
            Kind::Fetch(agent) => {
                if app.is_none_or(|a| a == agent.app) {
                    self.add_fetch(record, &agent);
                }
            }
            Kind::OtherClient => self.other_clients += 1,
        }
    }

    fn add_report(&mut self, day: Day, report: &Report<'_>) {
        let Some(tally) = day_of(&mut self.days, &mut self.budget, &mut self.overflow, day) else {
            return;
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let budget = &mut self.budget.reports;
        let counted = match &*report.event {
            "updated" => tally.updated.add(pair(&report.from, &report.to), budget),
            "rolled-back" => tally
                .rolled_back
                .add(pair(&report.from, &report.reason), budget),
            "refused" => tally
                .refused
                .add(pair(&report.from, &report.reason), budget),
            "failed" => tally.failed.add(pair(&report.from, &report.reason), budget),
            _ => {
                *self.skipped.entry("unknown_event").or_default() += 1;
                true
            }
        };
        if !counted {
            self.overflow.reports += 1;
        }
    }

    fn add_fetch(&mut self, record: &Record<'_>, agent: &Agent<'_>) {
        if record.method != "GET" {
            // The updater only GETs; a HEAD (a person's curl -I) is no check.
            return;
        }
        let Some(tally) = day_of(
            &mut self.days,
            &mut self.budget,
            &mut self.overflow,
            record.day,
        ) else {
            return;
        };
        // A status outside HTTP's range is one key, not up to 65,536.
        let status = if (100..=599).contains(&record.status) {
            record.status
        } else {
            0
        };
        if record.is_manifest() {
            if !matches!(record.status, 200 | 304) {
                *tally.manifest_errors.entry(status).or_default() += 1;
                return;
            }
            tally.manifest_bytes += record.bytes;
            if record.status == 304 {
                tally.not_modified += 1;
            }
            if !tally.checks.add_str(agent.version, &mut self.budget.checks) {
                self.overflow.checks += 1;
            }
        } else {
            match record.status {
                206 => tally.range_bytes += record.bytes,
                200 => tally.build_bytes += record.bytes,
                _ => *tally.build_errors.entry(status).or_default() += 1,
            }
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

    /// The highest version, by the project's version order, that onefile
    /// updaters checked with (answered 200 or 304). Reports are not
    /// considered: any client can name any version in one.
    pub fn latest_version(&self) -> Option<&str> {
        let mut latest: Option<&str> = None;
        for day in self.days.values() {
            for version in day.checks.map.keys().filter(|v| !v.is_empty()) {
                if latest.is_none_or(|l| version_order(version, l).is_gt()) {
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
        let on_latest = tally.checks.map.get(latest).copied().unwrap_or(0);
        Some((*day, on_latest, tally.checks.total()))
    }

    /// Installs of `version` (`updated` reports to it) and its rollbacks
    /// (`rolled-back` reports from it), over every day, the version string
    /// matched exactly: what the stub reports is the manifest's text.
    pub fn installs_and_rollbacks(&self, version: &str) -> (u64, u64) {
        let mut installs = 0;
        let mut rollbacks = 0;
        for day in self.days.values() {
            installs += day
                .updated
                .map
                .iter()
                .filter(|((_, to), _)| to == version)
                .map(|(_, n)| n)
                .sum::<u64>();
            rollbacks += day
                .rolled_back
                .map
                .iter()
                .filter(|((from, _), _)| from == version)
                .map(|(_, n)| n)
                .sum::<u64>();
        }
        (installs, rollbacks)
    }

    fn write_tables(&self, out: &mut impl Write) -> io::Result<()> {
        for (day, t) in &self.days {
            writeln!(out, "{day}")?;
            let checks = t.checks.total();
            let versions = t
                .checks
                .by_version()
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
            for (label, errors) in [
                ("manifest errors", &t.manifest_errors),
                ("build errors", &t.build_errors),
            ] {
                if !errors.is_empty() {
                    let by_status = errors
                        .iter()
                        .map(|(status, n)| format!("{status}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    writeln!(out, "  {label:<13} {by_status}")?;
                }
            }
            for ((from, to), n) in t.updated.by_version() {
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
                for ((version, reason), n) in counter.by_version() {
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
            "{} line(s), {} skipped, {} from other clients, {} report(s) ignored (not a GET by an onefile updater of that app)",
            self.lines,
            self.skipped_total(),
            self.other_clients,
            self.ignored_reports,
        )?;
        if self.overflow.any() {
            writeln!(out, "WARNING: {}", self.overflow)?;
        }
        Ok(())
    }
}

/// The tally as JSON, serialized straight to the writer: nothing but a
/// sorted list of references per map is built on the side.
struct Json<'a>(&'a Tally);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let latest = t.latest_version().map(|version| {
            let (day, on_latest, checks) = match t.progress(version) {
                Some((day, on, all)) => (Some(day.to_string()), on, all),
                None => (None, 0, 0),
            };
            let (installs, rollbacks) = t.installs_and_rollbacks(version);
            serde_json::json!({
                "version": version,
                "day": day,
                "checks": on_latest,
                "checks_that_day": checks,
                "installs": installs,
                "rollbacks": rollbacks,
            })
        });
        let overflow = t.overflow;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("format", &FORMAT)?;
        map.serialize_entry("lines", &t.lines)?;
        map.serialize_entry("skipped", &t.skipped)?;
        map.serialize_entry("other_clients", &t.other_clients)?;
        map.serialize_entry("ignored_reports", &t.ignored_reports)?;
        map.serialize_entry(
            "overflow",
            &(overflow.checks + overflow.reports + overflow.days),
        )?;
        map.serialize_entry(
            "overflow_by_cap",
            &serde_json::json!({
                "checks": overflow.checks,
                "reports": overflow.reports,
                "days": overflow.days,
            }),
        )?;
        map.serialize_entry("latest", &latest)?;
        map.serialize_entry("days", &Days(&t.days))?;
        map.end()
    }
}

struct Days<'a>(&'a BTreeMap<Day, DayTally>);

impl Serialize for Days<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(day, t)| DayJson(*day, t)))
    }
}

struct DayJson<'a>(Day, &'a DayTally);

impl Serialize for DayJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let DayJson(day, t) = self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("day", &day.to_string())?;
        map.serialize_entry("checks", &t.checks.map)?;
        map.serialize_entry("checks_total", &t.checks.total())?;
        map.serialize_entry("not_modified", &t.not_modified)?;
        map.serialize_entry("manifest_errors", &t.manifest_errors)?;
        map.serialize_entry("build_errors", &t.build_errors)?;
        map.serialize_entry(
            "bytes",
            &serde_json::json!({
                "manifests": t.manifest_bytes,
                "builds": t.build_bytes,
                "ranges": t.range_bytes,
            }),
        )?;
        map.serialize_entry("updated", &Pairs(&t.updated, "from", "to"))?;
        map.serialize_entry("rolled_back", &Pairs(&t.rolled_back, "version", "reason"))?;
        map.serialize_entry("refused", &Pairs(&t.refused, "version", "reason"))?;
        map.serialize_entry("failed", &Pairs(&t.failed, "version", "reason"))?;
        map.end()
    }
}

/// A pair counter as a list of `{first, second, count}`, in version order.
struct Pairs<'a>(&'a Counter<(String, String)>, &'static str, &'static str);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Pairs(counter, first, second) = *self;
        s.collect_seq(
            counter
                .by_version()
                .into_iter()
                .map(|((a, b), n)| Pair(first, a, second, b, *n)),
        )
    }
}

struct Pair<'a>(&'static str, &'a str, &'static str, &'a str, u64);

impl Serialize for Pair<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry(self.0, self.1)?;
        map.serialize_entry(self.2, self.3)?;
        map.serialize_entry("count", &self.4)?;
        map.end()
    }
}

/// The halt's count: one app's installs of one version (`updated` reports
/// to it) and its rollbacks (`rolled-back` reports from it), by the
/// contract, in two plain counters that no number of other keys can cap.
#[derive(Debug, Default)]
pub struct HaltCount {
    pub lines: u64,
    pub installs: u64,
    pub rollbacks: u64,
    /// Report-shaped queries of the app not counted (not a GET by its
    /// updater).
    pub ignored: u64,
}

impl HaltCount {
    /// Counts `logs`. A log that cannot be opened is an error; one that
    /// breaks off while read (a damaged or half-copied rotated `.gz`) is
    /// counted up to there and named on standard error: one bad old
    /// rotation must not keep a safety job from deciding for good.
    pub fn read(logs: &[PathBuf], app: &str, version: &str) -> Result<HaltCount, Failure> {
        let mut count = HaltCount::default();
        for log in logs {
            let reader = open_log(log)?;
            let before = count.lines;
            let read = each_line(reader, |line| {
                count.lines += 1;
                if let Some(Ok(record)) = line.map(Record::parse) {
                    count.add(&record, app, version);
                }
            });
            if let Err(e) = read {
                eprintln!(
                    "payload-tools: warning: '{}' breaks off after {} line(s) ({e}): counted what was read",
                    log.display(),
                    count.lines - before
                );
            }
        }
        Ok(count)
    }

    fn add(&mut self, record: &Record<'_>, app: &str, version: &str) {
        match kind(record) {
            Kind::Report(report) if report.app == app => match &*report.event {
                "updated" if report.to == version => self.installs += 1,
                "rolled-back" if report.from == version => self.rollbacks += 1,
                _ => {}
            },
            Kind::IgnoredReport if report_of(record.query).is_some_and(|r| r.app == app) => {
                self.ignored += 1;
            }
            _ => {}
        }
    }
}

/// The counters of `day`; `None` (counted as overflow) when it is new and
/// the day cap is reached.
fn day_of<'a>(
    days: &'a mut BTreeMap<Day, DayTally>,
    budget: &mut Budget,
    overflow: &mut Overflow,
    day: Day,
) -> Option<&'a mut DayTally> {
    if !days.contains_key(&day) {
        if budget.days == 0 {
            overflow.days += 1;
            return None;
        }
        budget.days -= 1;
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
    let not_a_file = || Failure::from(format!("'{}' is not a file", path.display()));
    // Opening a FIFO or a device can block for good: refuse them before
    // opening (a swap in between is the caller's own folder), and again on
    // what was opened.
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(not_a_file());
    }
    let file = File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(not_a_file());
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
fn lines_of(r: impl io::Read) -> io::Result<Vec<Option<Vec<u8>>>> {
    let mut lines = Vec::new();
    each_line(BufReader::with_capacity(16, r), |l| {
        lines.push(l.map(<[u8]>::to_vec))
    })?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_buffers_and_too_long_ones() -> Result<(), Box<dyn std::error::Error>> {
        let long = vec![b'x'; MAX_LINE + 1];
        let mut input = b"one\ntwo-spans-buffers-of-16-bytes\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        assert_eq!(
            lines_of(&input[..])?,
            vec![
                Some(b"one".to_vec()),
                Some(b"two-spans-buffers-of-16-bytes".to_vec()),
                None,
                Some(b"last".to_vec())
            ]
        );
        let exact = vec![b'y'; MAX_LINE];
        assert_eq!(lines_of(&exact[..])?, vec![Some(exact.clone())]);
        Ok(())
    }

    #[test]
    fn reports_are_plain_queries_with_app_and_event() -> Result<(), Box<dyn std::error::Error>> {
        let r = report_of("app=demo&from=1.0&to=1.1&event=updated")
            .ok_or("no report read from the query")?;
        assert_eq!(
            (&*r.app, &*r.from, &*r.to, &*r.event),
            ("demo", "1.0", "1.1", "updated")
        );
        assert!(report_of("from=1.0&event=updated").is_none());
        assert!(report_of("app=demo&from=1.0").is_none());
        assert!(report_of("app=de%20mo&event=updated").is_none());
        let r = report_of("app=demo&from=1.0%2Bb7&to=1.1&event=updated")
            .ok_or("no report read from the query")?;
        assert_eq!((&*r.from, &*r.to), ("1.0+b7", "1.1"));
        assert!(report_of(&format!("app=demo&event=failed&reason={}", "x".repeat(65))).is_none());
        Ok(())
    }

    #[test]
    fn the_check_cap_bounds_the_maps_and_leaves_reports_and_the_halt_alone()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut tally = Tally::new();
        tally.budget.checks = 2;
        let mut halt = HaltCount::default();
        let mut add = |line: String| -> Result<(), String> {
            tally.add_line(Some(line.as_bytes()), None, None);
            let record = Record::parse(line.as_bytes()).map_err(|e| format!("parses: {e}"))?;
            halt.add(&record, "demo", "1.1");
            Ok(())
        };
        for v in 0..10 {
            add(format!(
                r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET /u.toml HTTP/1.1" 200 1 "-" "onefile/0.1.0 demo/1.{v} (linux; x86_64)""#
            ))?;
        }
        add(
            r#"127.0.0.1 - - [24/Nov/2026:14:20:11 +0000] "GET /r?app=demo&from=1.1&to=1.0&event=rolled-back&reason=crash HTTP/1.1" 404 1 "-" "onefile/0.1.0 demo/1.0 (linux; x86_64)""#
            .to_owned(),
        )?;
        // Two versions counted, eight beyond the cap; the report has its own.
        let day = tally.days.values().next().ok_or("no day tallied")?;
        assert_eq!(day.checks.total(), 2);
        assert_eq!(day.rolled_back.total(), 1);
        assert_eq!(tally.overflow.checks, 8);
        assert_eq!(tally.overflow.reports, 0);
        assert_eq!((halt.installs, halt.rollbacks), (0, 1));
        Ok(())
    }

    #[test]
    fn only_a_get_by_the_apps_updater_is_a_report() -> Result<(), Box<dyn std::error::Error>> {
        let line = |request: &str, agent: &str| {
            format!(
                r#"203.0.113.7 - - [24/Nov/2026:10:00:00 +0000] "{request}" 404 153 "-" "{agent}""#
            )
        };
        let query = "/r?app=demo&from=1.1&to=1.0&event=rolled-back&reason=crash";
        let updater = "onefile/0.1.0 demo/1.0 (linux; x86_64)";
        let cases = [
            (line(&format!("GET {query} HTTP/1.1"), updater), 1),
            (line(&format!("GET {query} HTTP/1.1"), "curl/8.5.0"), 0),
            (line(&format!("HEAD {query} HTTP/1.1"), updater), 0),
            (line(&format!("POST {query} HTTP/1.1"), updater), 0),
            (
                line(
                    &format!("GET {query} HTTP/1.1"),
                    "onefile/0.1.0 other/1.0 (linux; x86_64)",
                ),
                0,
            ),
        ];
        for (text, counted) in cases {
            let mut tally = Tally::new();
            tally.add_line(Some(text.as_bytes()), None, None);
            let mut halt = HaltCount::default();
            halt.add(&Record::parse(text.as_bytes())?, "demo", "1.1");
            let rolled = tally
                .days
                .values()
                .map(|d| d.rolled_back.total())
                .sum::<u64>();
            assert_eq!((rolled, halt.rollbacks), (counted, counted), "{text}");
            assert_eq!(tally.ignored_reports, 1 - counted, "{text}");
        }
        Ok(())
    }

    #[test]
    fn checks_are_200_and_304_and_versions_sort_as_versions()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut tally = Tally::new();
        for (method, status, version) in [
            ("GET", 200, "1.9"),
            ("GET", 304, "1.10"),
            ("GET", 404, "9.0"),
            ("GET", 500, "9.0"),
            ("HEAD", 200, "9.0"),
        ] {
            let line = format!(
                r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "{method} /u.toml HTTP/1.1" {status} 100 "-" "onefile/0.1.0 demo/{version} (linux; x86_64)""#
            );
            tally.add_line(Some(line.as_bytes()), None, None);
        }
        let day = tally.days.values().next().ok_or("no day tallied")?;
        assert_eq!(tally.days.len(), 1);
        assert_eq!(day.checks.total(), 2);
        assert_eq!(day.manifest_bytes, 200);
        assert_eq!(
            day.manifest_errors.iter().collect::<Vec<_>>(),
            [(&404, &1), (&500, &1)]
        );
        assert_eq!(tally.latest_version(), Some("1.10"));
        let order: Vec<_> = day
            .checks
            .by_version()
            .into_iter()
            .map(|(v, _)| v.as_str())
            .collect();
        assert_eq!(order, ["1.9", "1.10"]);
        Ok(())
    }
}
