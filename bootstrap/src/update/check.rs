//! Asking the host for `update.toml`: whether to ask at all, where, and at
//! what cost.
//!
//! 1. The schedule record ([`schedule`]) says whether a check is due: the
//!    build's check interval, a server's `Retry-After`, or the backoff
//!    after failed checks. Not due: no request at all.
//! 2. The build's locations are asked in order (its update URL spec, then
//!    its fallback specs, each expanded for this build): a connection
//!    error, a timeout, an error status, a body that is not a manifest or
//!    a manifest this install does not trust (`trust::accept`: expired,
//!    replayed, badly signed) moves on to the next; a trusted manifest or a
//!    304 ends the walk. Every install asks the same URL.
//!    The location that answered last is asked first.
//! 3. A location whose manifest last settled a check of this very build
//!    with nothing to do is asked conditionally (`If-None-Match`,
//!    `If-Modified-Since`), unless those validators are older than a day
//!    or the manifest expires within the hour: a 304 ends the check.
//! 4. Before each request a provisional record is written, so that a
//!    process ending mid-check (a stalled host, the app exited) leaves the
//!    next launch to ask the next location first; an unfinished check more
//!    than a minute old counts as a failed one.
//!    When every location failed, the next check backs off (`Retry-After`
//!    never shortens it), keeping the validators; when one answered with a
//!    manifest that was not trusted, the host is up: the next check is due
//!    as usual. A trusted manifest leaves the next check due at once until
//!    the check concludes ([`settled`], [`concluded`]).

use payload_tools::manifest::{Release, UpdateManifest, expand_url_spec, unix_seconds};
use payload_tools::metadata::MAX_FALLBACK_URL_SPECS;
use ureq::Agent;

use super::http::{self, ManifestReply};
use super::schedule::{self, Record, Validators};
use super::{RunningBuild, UpdateError};
use crate::trace::{UPDATE, info};

/// The manifest's text as the host served it, and the URL it came from.
#[derive(Debug)]
pub struct Answer {
    pub url: String,
    pub text: String,
    /// The response's `ETag` and `Last-Modified`, kept if the check settles.
    etag: Option<String>,
    last_modified: Option<String>,
}

/// The build's manifest locations, expanded: its update URL spec, then its
/// fallback specs.
fn locations(build: &RunningBuild) -> Vec<String> {
    let settings = &build.settings;
    std::iter::once(&settings.url_spec)
        .chain(
            settings
                .fallback_url_specs
                .iter()
                .take(MAX_FALLBACK_URL_SPECS),
        )
        .map(|spec| expand_url_spec(spec, &build.name, &build.version))
        .collect()
}

/// The URL the schedule record of `build` is kept for (its first location).
fn record_url(build: &RunningBuild) -> String {
    expand_url_spec(&build.settings.url_spec, &build.name, &build.version)
}

/// Fetches the manifest and has `accept` decide whether it is used; `None`
/// when there is nothing to look at (no check due, or the manifest did not
/// change since it settled the last one).
/// What a check found.
#[derive(Debug)]
pub enum Checked {
    /// No check was due (the interval, or a backoff after failures).
    NotDue,
    /// The manifest that last settled a check has not changed (`304`).
    Unchanged,
    /// A manifest, fetched whole and trusted.
    Manifest(Box<(Answer, UpdateManifest)>),
}

pub fn fetch(
    build: &RunningBuild,
    agent: &Agent,
    policy: http::Policy,
    accept: impl Fn(&Answer) -> Result<UpdateManifest, UpdateError>,
) -> Result<Checked, UpdateError> {
    let interval_s = interval_s(build);
    let urls = locations(build);
    let now = schedule::now();
    let old = schedule::load(build, &urls[0]);
    if let Some(old) = &old
        && !super::background::forced()
        && let Some(wait) = old.wait(now, interval_s)
    {
        info!(
            target: UPDATE,
            "Checked {} s ago; the next check is due in {wait} s.",
            now - old.checked_at
        );
        return Ok(Checked::NotDue);
    }
    let own_crc32 = build.packed.whole_file_crc32().ok();
    let mut record = old
        .as_ref()
        .map_or_else(|| Record::new(&urls[0], now), |old| old.carried(now));
    // Kept only while they may be sent: stale ones are dropped at once.
    record.validators = record.validators.filter(|v| v.usable(now));
    // The location that answered last is asked first; then the others in
    // their order.
    let first = record.location % urls.len();
    let mut on_disk = old;
    let mut retry_after_s = None;
    let mut last_error = None;
    let mut refused = None;
    for i in (0..urls.len()).map(|k| (first + k) % urls.len()) {
        let url = &urls[i];
        if i == 0 {
            info!(target: UPDATE, "Expanded info URL to '{url}'.");
        } else {
            info!(target: UPDATE, "Location {} of {}: '{url}'.", i + 1, urls.len());
        }
        // Should this process end before the answer (a stalled host, the
        // app exited), the next launch backs off, then asks the next
        // location first.
        let provisional = record.provisional(now, (i + 1) % urls.len());
        schedule::save(build, on_disk.as_ref(), &provisional);
        on_disk = Some(provisional);
        let known = record
            .validators
            .as_ref()
            .filter(|v| v.url == *url && Some(v.build_crc32) == own_crc32);
        let mut headers = Vec::new();
        if let Some(known) = known {
            if !known.etag.is_empty() {
                headers.push(("If-None-Match", known.etag.as_str()));
            }
            if !known.last_modified.is_empty() {
                headers.push(("If-Modified-Since", known.last_modified.as_str()));
            }
        }
        let reply = super::background::awaiting_answer(|| {
            http::fetch_manifest(agent, url, policy, &headers)
        });
        let error = match reply {
            Ok(ManifestReply::NotModified) if known.is_some() => {
                info!(target: UPDATE, "update.toml not modified since the last check.");
                record.location = i;
                record.failures = 0;
                record.due_at = now.saturating_add(interval_s);
                schedule::save(build, on_disk.as_ref(), &record);
                return Ok(Checked::Unchanged);
            }
            Ok(ManifestReply::NotModified) => UpdateError::Status {
                url: url.clone(),
                status: 304,
            },
            Ok(ManifestReply::Fresh {
                text,
                etag,
                last_modified,
            }) => {
                let answer = Answer {
                    url: url.clone(),
                    text,
                    etag,
                    last_modified,
                };
                match accept(&answer) {
                    Ok(manifest) => {
                        // Due again at once until the check concludes
                        // ([`settled`], [`concluded`]): an update that
                        // fails or is cut short is taken up at the next
                        // launch. The manifest is remembered only if it
                        // settles the check.
                        record.location = i;
                        record.failures = 0;
                        record.validators = None;
                        schedule::save(build, on_disk.as_ref(), &record);
                        return Ok(Checked::Manifest(Box::new((answer, manifest))));
                    }
                    // This machine's own record failed: no other host
                    // would do better, and no server is to back off from
                    // (the check stays due, not pending).
                    Err(e @ UpdateError::Local { .. }) => {
                        schedule::save(build, on_disk.as_ref(), &record);
                        return Err(e);
                    }
                    Err(e @ UpdateError::Untrusted { .. }) => {
                        if urls.len() > 1 {
                            info!(target: UPDATE, "Location {} of {}: {e}", i + 1, urls.len());
                        }
                        refused.get_or_insert(e);
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Ok(ManifestReply::Refused {
                status,
                retry_after,
            }) => {
                if matches!(status, 429 | 503) {
                    let asked = retry_after.and_then(|value| parse_retry_after(&value, now));
                    retry_after_s = retry_after_s.max(asked);
                }
                UpdateError::Status {
                    url: url.clone(),
                    status,
                }
            }
            Err(e) => e,
        };
        if urls.len() > 1 {
            info!(target: UPDATE, "Location {} of {} failed: {error}", i + 1, urls.len());
        }
        last_error = Some(error);
    }
    if let Some(refused) = refused {
        // A host answered: not a failure to back off from. The refusal was
        // traced where it happened.
        record.failures = 0;
        record.due_at = now.saturating_add(interval_s);
        schedule::save(build, on_disk.as_ref(), &record);
        return Err(refused);
    }
    // The validators, location and mirrors are kept: a host that recovers
    // is asked conditionally again.
    record.failed(now, retry_after_s);
    info!(
        target: UPDATE,
        "Check failed ({} in a row); the next check is due in {} s.",
        record.failures,
        record.due_at - now
    );
    schedule::save(build, on_disk.as_ref(), &record);
    // There is always a first location: `last_error` is set.
    Err(last_error.unwrap_or_else(|| UpdateError::Manifest {
        url: urls[0].clone(),
        reason: "no location to ask".into(),
    }))
}

/// Tells the schedule that `answer` (whose manifest is `manifest`) settled
/// the check with nothing to do (the build it offers runs already, or is
/// not newer, or is held back): the next check is due after the interval
/// and asks for it conditionally, while its validators are young and it is
/// not about to expire. A manifest that led to an update, or to a failed or
/// refused one, is not remembered.
pub fn settled(build: &RunningBuild, answer: &Answer, manifest: &UpdateManifest) {
    let keep = |value: &Option<String>| {
        value
            .clone()
            .filter(|value| schedule::is_storable(value))
            .unwrap_or_default()
    };
    let (etag, last_modified) = (keep(&answer.etag), keep(&answer.last_modified));
    let build_crc32 = build.packed.whole_file_crc32().ok();
    let expires = manifest
        .expires_at()
        .ok()
        .flatten()
        .map(|at| u64::try_from(at).unwrap_or(0).max(1));
    let now = schedule::now();
    let interval_s = interval_s(build);
    schedule::change(build, &record_url(build), |record| {
        record.checked_at = now;
        record.due_at = now.saturating_add(interval_s);
        record.validators = build_crc32
            .filter(|_| !(etag.is_empty() && last_modified.is_empty()))
            .map(|build_crc32| Validators {
                url: answer.url.clone(),
                build_crc32,
                etag,
                last_modified,
                settled_at: now,
                expires: expires.unwrap_or(0),
            })
            .filter(|v| v.usable(now));
    });
}

/// The build's check interval, within the stub's own cap.
fn interval_s(build: &RunningBuild) -> u64 {
    build
        .settings
        .check_interval_s
        .min(schedule::MAX_INTERVAL_S)
}

/// Tells the schedule that the check concluded with an update installed:
/// the next check is due after the interval.
pub fn concluded(build: &RunningBuild) {
    let now = schedule::now();
    let interval_s = interval_s(build);
    schedule::change(build, &record_url(build), |record| {
        record.checked_at = now;
        record.due_at = now.saturating_add(interval_s);
    });
}

/// The release as announced, in 32 bits: its CRC-32, size, signatures and
/// URLs. What the schedule remembers of a release (its mirror, a hold after
/// it failed everywhere) is for that announcement: the same build announced
/// again with another signature or other mirrors (a publisher's fix) is
/// tried afresh.
pub fn release_key(release: &Release) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&release.crc32.to_le_bytes());
    hasher.update(&release.size.unwrap_or(0).to_le_bytes());
    for text in release.all_signatures().chain(release.urls()) {
        hasher.update(text.as_bytes());
        hasher.update(b"\0");
    }
    hasher.finalize()
}

/// The release `key`'s mirror to start at, of `count`.
pub fn first_mirror(build: &RunningBuild, key: u32, count: usize) -> usize {
    schedule::load(build, &record_url(build)).map_or(0, |r| r.mirror_of(key)) % count.max(1)
}

/// Records which mirror of the release `key` the next launch starts at:
/// the one after the mirror about to be asked (should this process end in
/// the middle), or the one that delivered.
pub fn start_next_at_mirror(build: &RunningBuild, key: u32, mirror: usize) {
    schedule::change(build, &record_url(build), |record| {
        if record.release_key != key {
            record.bad_until = 0;
        }
        record.release_key = key;
        record.mirror = mirror;
    });
}

/// The seconds the release `key` is still held back after it failed
/// verification on every mirror.
pub fn held_back(build: &RunningBuild, key: u32) -> Option<u64> {
    schedule::load(build, &record_url(build))?.held_back(schedule::now(), key)
}

/// Holds the release `key` back: it failed verification on every mirror.
/// Returns the wait.
pub fn release_failed(build: &RunningBuild, key: u32) -> u64 {
    let now = schedule::now();
    let mut wait = 0;
    schedule::change(build, &record_url(build), |record| {
        record.release_failed(now, key);
        wait = record.bad_until - now;
    });
    wait
}

/// The seconds a `Retry-After` value asks to wait at `now`: delta-seconds or
/// an HTTP-date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_retry_after(value: &str, now: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let (_, date) = value.split_once(", ")?;
    let mut parts = date.split(' ');
    let day: u8 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = 1 + [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u8;
    let year: u16 = parts.next()?.parse().ok()?;
    let mut time = parts.next()?.split(':').map(|n| n.parse::<u8>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if parts.next()? != "GMT" || hour > 23 || minute > 59 || second > 60 || !(1..=31).contains(&day)
    {
        return None;
    }
    let at = toml::value::Datetime {
        date: Some(toml::value::Date { year, month, day }),
        time: Some(toml::value::Time {
            hour,
            minute,
            second: Some(second),
            nanosecond: None,
        }),
        offset: Some(toml::value::Offset::Z),
    };
    let at = u64::try_from(unix_seconds(&at)?).ok()?;
    Some(at.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_700),
            Some(77)
        );
        // A date already past: no wait.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_800),
            Some(0)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
    }
}
