//! When the next check for updates is due, and what the last one learnt:
//! one private file per install, `.update-check` in the app's cache folder
//! (held open), for one manifest URL (the build's first location).
//!
//! - It records when the last check ran, when the next is due (the check
//!   interval, a server's `Retry-After`, or the backoff after failures),
//!   how many checks in a row failed, and the validators (`ETag`,
//!   `Last-Modified`) of the manifest that last settled a check with
//!   nothing to do, with the location they came from and the CRC-32 of the
//!   build that checked.
//! - It is replaced whole: written under a new private name, then renamed
//!   over the old one. It is read with a bound; a damaged one, or one for
//!   another manifest URL, is ignored (and replaced by the next write).
//! - A clock that moved back (a check recorded in the future) or a due time
//!   further away than any rule sets makes a check due.

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};

use super::RunningBuild;

/// The record's name in the cache folder.
const NAME: &str = ".update-check";
/// The record is written by us, but read with a bound all the same.
const MAX_RECORD_LEN: u64 = 8 * 1024;
/// A validator longer than this is not kept (nor sent back).
pub const MAX_VALIDATOR_LEN: usize = 1024;
/// Neither `Retry-After` nor the backoff waits longer than this.
pub const MAX_WAIT_S: u64 = 24 * 3600;
/// The first failure waits about this long; each next one twice as long.
const FIRST_BACKOFF_S: u64 = 60;

const MAGIC: &str = "onefile check 1";
const END: &str = "end";

/// What the last checks left for the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The manifest URL (first location) this record is about.
    pub url: String,
    /// Seconds since the epoch of the last check, and of the next one due.
    pub checked_at: u64,
    pub due_at: u64,
    /// Checks in a row that failed.
    pub failures: u32,
    /// The validators of the manifest that settled the last check.
    pub validators: Option<Validators>,
}

/// A manifest's validators, with where it came from and which build read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Validators {
    pub url: String,
    pub build_crc32: u32,
    pub etag: String,
    pub last_modified: String,
}

impl Record {
    /// A fresh record for `url` after a check at `now`.
    pub fn new(url: &str, now: u64) -> Record {
        Record {
            url: url.to_owned(),
            checked_at: now,
            due_at: now,
            ..Record::default()
        }
    }

    /// How many seconds remain before the next check (`None`: due now),
    /// at `now`, for a build that checks every `interval_s`.
    pub fn wait(&self, now: u64, interval_s: u64) -> Option<u64> {
        if now < self.checked_at || self.due_at <= now {
            return None;
        }
        let wait = self.due_at - now;
        // Longer than any rule sets: a damaged record, or a clock that was
        // far ahead when it was written.
        (wait <= interval_s.max(MAX_WAIT_S)).then_some(wait)
    }

    /// Whether the next launch may check at once.
    fn is_due_at_once(&self) -> bool {
        self.due_at <= self.checked_at
    }

    /// Whether writing `self` over `old` would tell the next launch nothing
    /// new: neither records a wait, and the rest is the same (then a build
    /// that checks at every launch does not write at every launch).
    fn tells_nothing_over(&self, old: Option<&Record>) -> bool {
        let (failures, validators) =
            old.map_or((0, None), |old| (old.failures, old.validators.as_ref()));
        self.is_due_at_once()
            && old.is_none_or(Record::is_due_at_once)
            && self.failures == failures
            && self.validators.as_ref() == validators
    }

    /// One more failed check at `now`: the next one waits `retry_after_s`
    /// (capped) if the server said so, else the backoff.
    pub fn failed(&mut self, now: u64, retry_after_s: Option<u64>) {
        self.failures = self.failures.saturating_add(1);
        self.checked_at = now;
        self.due_at =
            now + retry_after_s.map_or_else(|| backoff_s(self.failures), |s| s.min(MAX_WAIT_S));
    }

    fn to_text(&self) -> String {
        let (vurl, crc, etag, last_modified) = match &self.validators {
            Some(v) => (
                v.url.as_str(),
                v.build_crc32,
                v.etag.as_str(),
                v.last_modified.as_str(),
            ),
            None => ("", 0, "", ""),
        };
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{}\n{vurl}\n{crc}\n{etag}\n{last_modified}\n{END}\n",
            self.url, self.checked_at, self.due_at, self.failures
        )
    }

    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.split('\n');
        let mut next = || lines.next();
        if next()? != MAGIC {
            return None;
        }
        let mut record = Record {
            url: next()?.to_owned(),
            checked_at: next()?.parse().ok()?,
            due_at: next()?.parse().ok()?,
            failures: next()?.parse().ok()?,
            validators: None,
        };
        let validators = Validators {
            url: next()?.to_owned(),
            build_crc32: next()?.parse().ok()?,
            etag: next()?.to_owned(),
            last_modified: next()?.to_owned(),
        };
        if next()? != END {
            return None;
        }
        if !validators.url.is_empty() {
            record.validators = Some(validators);
        }
        Some(record)
    }
}

/// Failure `n` (from 1) waits a uniformly drawn share, from half to all, of
/// `min(24 h, 60 s × 2^(n-1))`: "full jitter" above a floor, so that a
/// fleet that failed together does not come back together, and no install
/// comes back at once.
pub fn backoff_s(failures: u32) -> u64 {
    let ceiling = FIRST_BACKOFF_S
        .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
        .min(MAX_WAIT_S);
    ceiling / 2 + random() % (ceiling / 2 + 1)
}

/// A random number: the standard library's per-process random hash keys
/// (no crate for it in the stub).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Seconds since the epoch now (0 for a clock set before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The record for `url` of this install, if one reads back whole.
pub fn load(build: &RunningBuild, url: &str) -> Option<Record> {
    let (folder, _) = build.cache_folder.as_ref()?;
    let file = folder.open_private(NAME, false).ok()?;
    let mut text = String::new();
    file.take(MAX_RECORD_LEN).read_to_string(&mut text).ok()?;
    Record::parse(&text).filter(|record| record.url == url)
}

/// Replaces the record `old` with `record`, unless that tells nothing new.
/// Failing to write only costs the next launch an earlier or a whole check.
pub fn save(build: &RunningBuild, old: Option<&Record>, record: &Record) {
    if record.tells_nothing_over(old) {
        return;
    }
    let Some((folder, _)) = &build.cache_folder else {
        return;
    };
    let temporary = format!("{NAME}.{}.{:08x}.tmp", std::process::id(), random() as u32);
    let written = folder.create_new(&temporary).and_then(|mut file| {
        file.write_all(record.to_text().as_bytes())?;
        drop(file);
        folder.rename(&temporary, NAME)
    });
    if written.is_err() {
        let _ = folder.remove_file(&temporary);
    }
}

/// Whether `value` may be stored and sent back: bounded, one line.
pub fn is_storable(value: &str) -> bool {
    value.len() <= MAX_VALIDATOR_LEN && !value.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_a_cut_one_is_ignored() {
        let record = Record {
            url: "https://h/app/update.toml".into(),
            checked_at: 1_700_000_000,
            due_at: 1_700_003_600,
            failures: 3,
            validators: Some(Validators {
                url: "https://mirror/app/update.toml".into(),
                build_crc32: 4_000_000_000,
                etag: "\"65a-5e2\"".into(),
                last_modified: "Tue, 24 Nov 2026 07:00:00 GMT".into(),
            }),
        };
        let text = record.to_text();
        assert_eq!(Record::parse(&text), Some(record.clone()));
        for cut in 0..text.len() - 1 {
            assert_eq!(Record::parse(&text[..cut]), None, "{cut}");
        }
        let bare = Record::new("u", 5);
        assert_eq!(Record::parse(&bare.to_text()), Some(bare));
    }

    #[test]
    fn waits_follow_the_record_and_distrust_the_clock() {
        let mut record = Record::new("u", 1000);
        record.due_at = 4600;
        assert_eq!(record.wait(1000, 3600), Some(3600));
        assert_eq!(record.wait(4600, 3600), None);
        // The clock moved back: due.
        assert_eq!(record.wait(999, 3600), None);
        // Further away than any rule: due.
        record.due_at = 1000 + MAX_WAIT_S + 1;
        assert_eq!(record.wait(1000, 3600), None);
    }

    #[test]
    fn a_build_that_checks_at_every_launch_writes_only_news() {
        let old = Record::new("u", 10);
        let mut record = Record::new("u", 20);
        assert!(record.tells_nothing_over(None));
        assert!(record.tells_nothing_over(Some(&old)));
        record.failed(20, None);
        assert!(!record.tells_nothing_over(Some(&old)));
        // A success after failures clears them: written.
        assert!(!old.tells_nothing_over(Some(&record)));
        let mut waiting = Record::new("u", 20);
        waiting.due_at = 3620;
        assert!(!waiting.tells_nothing_over(None));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_day() {
        for n in 1..40 {
            let ceiling = (60u64 << (n - 1).min(20)).min(MAX_WAIT_S);
            let wait = backoff_s(n);
            assert!((ceiling / 2..=ceiling).contains(&wait), "{n}: {wait}");
        }
        let mut record = Record::new("u", 0);
        record.failed(100, Some(10 * MAX_WAIT_S));
        assert_eq!((record.failures, record.due_at), (1, 100 + MAX_WAIT_S));
    }
}
