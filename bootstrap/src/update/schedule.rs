//! When the next check for updates is due, and what the last one learnt:
//! one private file per install, `.update-check` in the app's cache folder
//! (held open), for one manifest URL (the build's first location).
//!
//! - It records when the last check ran, when the next is due (the check
//!   interval, a server's `Retry-After`, or the backoff after failures),
//!   how many checks in a row failed, which location to ask first, and the
//!   validators (`ETag`, `Last-Modified`) of the manifest that last settled
//!   a check with nothing to do, with the location they came from, the
//!   CRC-32 of the build that checked, when, and when that manifest
//!   expires: validators are sent back for at most [`MAX_VALIDATOR_AGE_S`],
//!   and never once the manifest is about to expire, so that a 304 cannot
//!   keep an install on a manifest it would no longer trust.
//! - For the release being fetched: which of its mirrors to start at, and,
//!   after it failed verification on every mirror, until when it is not
//!   downloaded again.
//! - A check writes a provisional failure before its first request: a
//!   process that ends in the middle of a stalled check (the app exited)
//!   leaves a backoff and the next location to ask, not nothing.
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
/// Validators older than this are not sent: a manifest that changed without
/// changing its validators (same size, same second) is fetched whole at
/// least this often, and the server's `ETag` is not a lasting identifier.
pub const MAX_VALIDATOR_AGE_S: u64 = 24 * 3600;
/// Validators of a manifest that expires within this are not sent: its
/// refreshed copy is fetched whole and checked.
pub const EXPIRY_MARGIN_S: u64 = 3600;
/// A check interval longer than this is taken as this.
pub const MAX_INTERVAL_S: u64 = payload_tools::metadata::MAX_CHECK_INTERVAL_S;
/// A check left unfinished (its process ended mid-request) less than this
/// ago may still be running in another launch of the same install: it
/// neither delays a check nor counts as a failure. Older, it counts as a
/// failed check.
const PENDING_S: u64 = 60;
/// A release that failed verification on every mirror is not downloaded
/// again for about this long (half to all of it).
const BAD_RELEASE_WAIT_S: u64 = 6 * 3600;

const MAGIC: &str = "onefile check 2";
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
    /// The location (index into the build's locations) to ask first.
    pub location: usize,
    /// The validators of the manifest that settled the last check.
    pub validators: Option<Validators>,
    /// The release (its announcement, `check::release_key`) that `mirror`
    /// and `bad_until` are of.
    pub release_key: u32,
    /// Its mirror (index into its de-duplicated URLs) to start at.
    pub mirror: usize,
    /// Until when it is not downloaded again (0: no such wait).
    pub bad_until: u64,
    /// Written before a request (provisional): the check has not concluded.
    pub pending: bool,
}

/// A manifest's validators, with where it came from and which build read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Validators {
    pub url: String,
    pub build_crc32: u32,
    pub etag: String,
    pub last_modified: String,
    /// When they were stored, and when the manifest expires (0: never).
    pub settled_at: u64,
    pub expires: u64,
}

impl Validators {
    /// Whether they may be sent at `now`: recent, and the manifest they
    /// stand for not about to expire.
    pub fn usable(&self, now: u64) -> bool {
        now >= self.settled_at
            && now - self.settled_at < MAX_VALIDATOR_AGE_S
            && (self.expires == 0 || now.saturating_add(EXPIRY_MARGIN_S) < self.expires)
    }
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

    /// What a check at `now` starts from: the same record, due at once,
    /// its validators, location, failures and mirrors kept.
    pub fn carried(&self, now: u64) -> Record {
        let unfinished = self.pending && !self.may_be_running(now);
        Record {
            checked_at: now,
            due_at: now,
            failures: self.failures.saturating_add(u32::from(unfinished)),
            pending: false,
            ..self.clone()
        }
    }

    /// The provisional record written before asking a location: should
    /// this check never conclude, the next launch asks `next_location`
    /// first, and a launch more than a minute later counts it as a failure
    /// and backs off.
    pub fn provisional(&self, now: u64, next_location: usize) -> Record {
        Record {
            checked_at: now,
            due_at: now + (PENDING_S + backoff_s(self.failures.saturating_add(1))).min(MAX_WAIT_S),
            location: next_location,
            pending: true,
            ..self.clone()
        }
    }

    /// Whether the unfinished check this record stands for may still run.
    fn may_be_running(&self, now: u64) -> bool {
        self.pending && (self.checked_at..self.checked_at.saturating_add(PENDING_S)).contains(&now)
    }

    /// How many seconds remain before the next check (`None`: due now),
    /// at `now`, for a build that checks every `interval_s`.
    pub fn wait(&self, now: u64, interval_s: u64) -> Option<u64> {
        let interval_s = interval_s.min(MAX_INTERVAL_S);
        if self.may_be_running(now) {
            return None;
        }
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
        let timeless = |r: &Record| Record {
            checked_at: 0,
            due_at: 0,
            ..r.clone()
        };
        let old_due_at_once = old.is_none_or(Record::is_due_at_once);
        let old = old.map_or_else(|| Record::new(&self.url, 0), timeless);
        self.is_due_at_once() && old_due_at_once && timeless(self) == old
    }

    /// One more failed check at `now`: the next one waits the backoff, or
    /// what the server asked (`Retry-After`, capped) if that is longer,
    /// plus a jitter of up to a quarter of it, so that a fleet told the
    /// same wait does not come back in the same second.
    pub fn failed(&mut self, now: u64, retry_after_s: Option<u64>) {
        self.failures = self.failures.saturating_add(1);
        self.checked_at = now;
        let backoff = backoff_s(self.failures);
        let wait = match retry_after_s {
            Some(asked) => {
                let asked = asked.min(MAX_WAIT_S);
                (asked.max(backoff) + random() % (asked / 4 + 1)).min(MAX_WAIT_S)
            }
            None => backoff,
        };
        self.due_at = now + wait;
    }

    /// Holds the release `key` ([`super::check::release_key`]) back for a while: it failed verification on
    /// every mirror.
    pub fn release_failed(&mut self, now: u64, key: u32) {
        self.release_key = key;
        self.bad_until = now + jittered(BAD_RELEASE_WAIT_S);
    }

    /// The seconds the release `key` ([`super::check::release_key`]) is still held back at `now`.
    pub fn held_back(&self, now: u64, key: u32) -> Option<u64> {
        let wait = self.bad_until.checked_sub(now).filter(|&w| w > 0)?;
        (self.release_key == key && wait <= BAD_RELEASE_WAIT_S).then_some(wait)
    }

    /// The mirror of the release `key` ([`super::check::release_key`]) to start at.
    pub fn mirror_of(&self, key: u32) -> usize {
        if self.release_key == key {
            self.mirror
        } else {
            0
        }
    }

    /// The text of the record, at most [`MAX_RECORD_LEN`] bytes: validators
    /// that would not fit are dropped (then the next check is a whole one),
    /// and a record that still does not fit is not written.
    fn to_bounded_text(&self) -> Option<String> {
        let text = self.to_text();
        if text.len() as u64 <= MAX_RECORD_LEN {
            return Some(text);
        }
        let bare = Record {
            validators: None,
            ..self.clone()
        }
        .to_text();
        (bare.len() as u64 <= MAX_RECORD_LEN).then_some(bare)
    }

    fn to_text(&self) -> String {
        let empty = Validators {
            url: String::new(),
            build_crc32: 0,
            etag: String::new(),
            last_modified: String::new(),
            settled_at: 0,
            expires: 0,
        };
        let v = self.validators.as_ref().unwrap_or(&empty);
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{END}\n",
            self.url,
            self.checked_at,
            self.due_at,
            self.failures,
            self.location,
            v.url,
            v.build_crc32,
            v.etag,
            v.last_modified,
            v.settled_at,
            v.expires,
            self.release_key,
            self.mirror,
            self.bad_until,
            u8::from(self.pending),
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
            location: next()?.parse().ok()?,
            ..Record::default()
        };
        let validators = Validators {
            url: next()?.to_owned(),
            build_crc32: next()?.parse().ok()?,
            etag: next()?.to_owned(),
            last_modified: next()?.to_owned(),
            settled_at: next()?.parse().ok()?,
            expires: next()?.parse().ok()?,
        };
        record.release_key = next()?.parse().ok()?;
        record.mirror = next()?.parse().ok()?;
        record.bad_until = next()?.parse().ok()?;
        record.pending = next()?.parse::<u8>().ok()? == 1;
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
    jittered(
        FIRST_BACKOFF_S
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(MAX_WAIT_S),
    )
}

/// A uniformly drawn share, from half to all, of `ceiling`.
fn jittered(ceiling: u64) -> u64 {
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
    let (Some((folder, _)), Some(text)) = (&build.cache_folder, record.to_bounded_text()) else {
        return;
    };
    let temporary = format!("{NAME}.{}.{:08x}.tmp", std::process::id(), random() as u32);
    let written = folder.create_new(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        drop(file);
        folder.replace(&temporary, NAME, crate::sys::REPLACE_PATIENCE)
    });
    if written.is_err() {
        let _ = folder.remove_file(&temporary);
    }
}

/// Changes the record for `url` of this install with `change` (a record
/// made afresh at `now` if there is none) and writes it.
pub fn change(build: &RunningBuild, url: &str, change: impl FnOnce(&mut Record)) {
    let old = load(build, url);
    let mut record = old.clone().unwrap_or_else(|| Record::new(url, now()));
    change(&mut record);
    save(build, old.as_ref(), &record);
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
                settled_at: 1_700_000_000,
                expires: 1_700_600_000,
            }),
            location: 2,
            release_key: 7,
            mirror: 3,
            bad_until: 1_700_001_000,
            pending: true,
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
        let mut moved = Record::new("u", 20);
        moved.location = 1;
        assert!(!moved.tells_nothing_over(Some(&old)));
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

    #[test]
    fn retry_after_never_shortens_the_backoff_and_is_jittered() {
        for asked in [0, 1] {
            let mut record = Record::new("u", 0);
            record.failed(100, Some(asked));
            assert!(record.due_at - 100 >= 30, "{asked}: {record:?}");
        }
        let waits: std::collections::BTreeSet<u64> = (0..64)
            .map(|_| {
                let mut record = Record::new("u", 0);
                record.failed(100, Some(120));
                let wait = record.due_at - 100;
                assert!((120..=150).contains(&wait), "{wait}");
                wait
            })
            .collect();
        assert!(waits.len() > 1, "a fleet told 120 s comes back spread out");
    }

    #[test]
    fn an_unfinished_check_counts_once_it_cannot_be_running() {
        let record = Record::new("u", 1000);
        let pending = record.provisional(1000, 1);
        assert!(pending.due_at >= 1090);
        // Another launch at once: due (the check may still be running), and
        // not a failure.
        assert_eq!(pending.wait(1010, 0), None);
        assert_eq!(pending.carried(1010).failures, 0);
        // A minute later: a failed check, backed off.
        assert!(pending.wait(1060, 0).is_some());
        assert_eq!(pending.carried(pending.due_at).failures, 1);
        assert_eq!(pending.carried(pending.due_at).location, 1);
    }

    #[test]
    fn an_interval_is_capped() {
        let mut record = Record::new("u", 1000);
        record.due_at = 1000 + MAX_INTERVAL_S + 1;
        assert_eq!(record.wait(1000, u64::MAX), None);
    }

    #[test]
    fn validators_age_and_expire() {
        let v = Validators {
            url: "u".into(),
            build_crc32: 1,
            etag: "\"e\"".into(),
            last_modified: String::new(),
            settled_at: 1000,
            expires: 1000 + 2 * EXPIRY_MARGIN_S,
        };
        assert!(v.usable(1000));
        assert!(!v.usable(999), "clock moved back");
        assert!(!v.usable(1000 + EXPIRY_MARGIN_S), "about to expire");
        let forever = Validators { expires: 0, ..v };
        assert!(forever.usable(1000 + MAX_VALIDATOR_AGE_S - 1));
        assert!(!forever.usable(1000 + MAX_VALIDATOR_AGE_S), "too old");
    }

    #[test]
    fn a_record_too_long_drops_its_validators_and_is_never_too_long() -> Result<(), String> {
        let mut record = Record::new(&"u".repeat(4000), 5);
        record.validators = Some(Validators {
            url: "v".repeat(4000),
            build_crc32: 1,
            etag: "e".repeat(MAX_VALIDATOR_LEN),
            last_modified: String::new(),
            settled_at: 5,
            expires: 0,
        });
        let text = record
            .to_bounded_text()
            .ok_or("the record does not fit even without its validators")?;
        assert!(text.len() as u64 <= MAX_RECORD_LEN);
        assert_eq!(Record::parse(&text).map(|r| r.validators), Some(None));
        let huge = Record::new(&"u".repeat(9000), 5);
        assert_eq!(huge.to_bounded_text(), None);
        Ok(())
    }
}
