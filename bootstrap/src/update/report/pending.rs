//! Pending reports: every report is first a small private file in the
//! app's cache folder, so that one whose sender ends before it is sent is
//! not lost (docs/updates.md, "Reports").
//!
//! - Left ([`leave`]): written whole under a name of its own
//!   (`.report-<unix seconds>-<pid>-<random>`, created exclusively as a
//!   temporary sibling, then renamed), bounded: at most [`MAX_PENDING`],
//!   the oldest dropped.
//! - Claimed ([`claim`]): renamed to `<name>.<pid>.claimed`, one rename
//!   wins, so no two processes send it; removed by its claimer once
//!   attempted, whatever came of it ([`done`]), or renamed back for a
//!   background updater when its launcher ends first ([`unclaim`]).
//! - Cleaned ([`list`]): claims and temporary files of processes that
//!   are gone, and anything older than [`STALE`].

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Event, Reason};
use crate::sys::{self, Dir};

const PREFIX: &str = ".report-";
const CLAIMED: &str = ".claimed";
const TEMPORARY: &str = ".tmp";
const MAGIC: &str = "onefile report 1";
const END: &str = "end";
/// Reports pending at once, at most.
pub const MAX_PENDING: usize = 4;
/// A report this old is no longer news.
const STALE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A report's file holds a URL (2 KiB at most) and a few short words.
const MAX_LEN: u64 = 4096;
/// Longest version stored.
const MAX_TEXT_LEN: usize = 128;
/// Entries of the cache folder looked at, at most.
const MAX_ENTRIES: usize = 4096;

/// A report to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where to, as the concluding run resolved it; `None`: resolved by
    /// the sender (a rollback, decided by a launcher that trusted no
    /// manifest).
    pub url: Option<String>,
    pub event: Event,
    pub from: String,
    pub to: Option<String>,
}

impl Report {
    fn to_text(&self) -> String {
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{}\n{}\n{END}\n",
            self.url.as_deref().unwrap_or_default(),
            self.event.name(),
            self.event.reason().map_or("", Reason::as_str),
            self.from,
            self.to.as_deref().unwrap_or_default(),
        )
    }

    fn parse(text: &str) -> Option<Report> {
        let mut lines = text.split('\n');
        let mut next = || lines.next();
        if next()? != MAGIC {
            return None;
        }
        let url = Some(next()?).filter(|u| !u.is_empty()).map(str::to_owned);
        let event = Event::parse(next()?, next()?)?;
        let from = next()?;
        let to = next()?;
        let short = |v: &str| v.len() <= MAX_TEXT_LEN;
        if !short(from) || from.is_empty() || !short(to) {
            return None;
        }
        let report = Report {
            url,
            event,
            from: from.to_owned(),
            to: Some(to).filter(|t| !t.is_empty()).map(str::to_owned),
        };
        (next()? == END && next() == Some("")).then_some(report)
    }
}

/// Leaves `report` pending in `dir` (the folder at `path`); returns its
/// name. Versions too long or not on one line are not stored.
pub fn leave(dir: &Dir, path: &Path, report: &Report) -> std::io::Result<String> {
    let one_line = |v: &str| v.len() <= MAX_TEXT_LEN && !v.contains(['\n', '\r']);
    let url_ok = report
        .url
        .as_deref()
        .is_none_or(|u| !u.contains(['\n', '\r']));
    if !one_line(&report.from) || !report.to.as_deref().is_none_or(one_line) || !url_ok {
        return Err(std::io::Error::other(
            "a version or URL that cannot be stored",
        ));
    }
    let pending = list(dir, path);
    for old in pending.iter().rev().skip(MAX_PENDING - 1) {
        let _ = dir.remove_file(old);
    }
    let name = format!("{PREFIX}{}-{}", now(), unique());
    write_whole(dir, &name, &report.to_text()).map(|()| name)
}

/// Writes `text` as the file `name` of `dir`, whole (`<name>.<pid>.tmp`
/// meanwhile, which [`list`] sweeps once its process is gone).
pub fn write_whole(dir: &Dir, name: &str, text: &str) -> std::io::Result<()> {
    let temporary = format!("{name}.{}{TEMPORARY}", std::process::id());
    dir.write_whole(&temporary, name, text)
}

/// The private file `name` of `dir` (no link, no other name), at most
/// [`MAX_LEN`] of it.
pub fn read_bounded(dir: &Dir, name: &str) -> Option<String> {
    let file = dir.open_private(name, false).ok()?;
    let mut text = String::new();
    file.take(MAX_LEN).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Claims the pending report `name` for this process alone: its claimed
/// name and what it says, or `None` if another process took it first (or
/// it does not read back whole: then it is removed).
pub fn claim(dir: &Dir, name: &str) -> Option<(String, Report)> {
    let claimed = format!("{name}.{}{CLAIMED}", std::process::id());
    dir.rename(name, &claimed).ok()?;
    let report = read_bounded(dir, &claimed).and_then(|text| Report::parse(&text));
    match report {
        Some(report) => Some((claimed, report)),
        None => {
            let _ = dir.remove_file(&claimed);
            None
        }
    }
}

/// The claimed report was attempted: it goes, answered or not.
pub fn done(dir: &Dir, claimed: &str) {
    let _ = dir.remove_file(claimed);
}

/// Puts the claimed report back, unsent, for another process.
pub fn unclaim(dir: &Dir, claimed: &str) -> bool {
    claimed
        .strip_suffix(CLAIMED)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(name, _)| dir.rename(claimed, name).is_ok())
}

/// The names of the reports pending in `dir` (the folder at `path`),
/// oldest first, after removing stale ones and what processes that are
/// gone left behind.
pub fn list(dir: &Dir, path: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let now = now();
    let mut pending = Vec::new();
    for entry in entries.take(MAX_ENTRIES).flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let (base, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let created = base.split('-').next().and_then(|s| s.parse::<u64>().ok());
        let Some(created) = created else {
            continue;
        };
        // A pid as the owner of a claim or of a temporary file.
        let owner = tail
            .strip_suffix(CLAIMED)
            .or_else(|| tail.strip_suffix(TEMPORARY))
            .map(|pid| pid.parse::<u32>().ok());
        let stale = now.saturating_sub(created) > STALE.as_secs();
        let orphan = match owner {
            None if tail.is_empty() => false,
            Some(Some(pid)) => !sys::process_alive(pid),
            // Not a name of ours.
            _ => continue,
        };
        if stale || orphan {
            let _ = dir.remove_file(&name);
        } else if owner.is_none() {
            pending.push((created, name));
        }
    }
    pending.sort();
    pending.into_iter().map(|(_, name)| name).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `<pid>-<random>`: a name no other process picks.
fn unique() -> String {
    use std::hash::{BuildHasher, RandomState};
    let pid = std::process::id();
    let random = RandomState::new().hash_one(pid) as u32;
    format!("{pid}-{random:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_a_cut_one_is_ignored() {
        let report = Report {
            url: Some("https://h/r?c=1".into()),
            event: Event::RolledBack(Reason::Crash),
            from: "1.1".into(),
            to: Some("1.0".into()),
        };
        let text = report.to_text();
        assert_eq!(Report::parse(&text), Some(report.clone()));
        for cut in 0..text.len() {
            assert_eq!(Report::parse(&text[..cut]), None, "{cut}");
        }
        let bare = Report {
            url: None,
            event: Event::Updated,
            to: None,
            ..report
        };
        assert_eq!(Report::parse(&bare.to_text()), Some(bare));
        for hostile in [
            format!("{MAGIC}\n\nupdated\ncrash\n1.0\n\n{END}\n"),
            format!("{MAGIC}\n\nfailed\ncrash\n1.0\n\n{END}\n"),
            format!("{MAGIC}\n\nsent\n\n1.0\n\n{END}\n"),
            format!("{MAGIC}\n\nupdated\n\n{}\n\n{END}\n", "x".repeat(200)),
        ] {
            assert_eq!(Report::parse(&hostile), None, "{hostile}");
        }
    }
}
