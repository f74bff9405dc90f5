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
//! 3. A location whose manifest last settled a check of this very build
//!    with nothing to do is asked conditionally (`If-None-Match`,
//!    `If-Modified-Since`): a 304 ends the check.
//! 4. When every location failed, the next check backs off; when one
//!    answered with a manifest that was not trusted, the host is up: the
//!    next check is due as usual.

use payload_tools::manifest::{UpdateManifest, expand_url_spec, unix_seconds};
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

/// Fetches the manifest and has `accept` decide whether it is used; `None`
/// when there is nothing to look at (no check due, or the manifest did not
/// change since it settled the last one).
pub fn fetch(
    build: &RunningBuild,
    agent: &Agent,
    policy: http::Policy,
    accept: impl Fn(&Answer) -> Result<UpdateManifest, UpdateError>,
) -> Result<Option<(Answer, UpdateManifest)>, UpdateError> {
    let settings = &build.settings;
    let urls: Vec<String> = std::iter::once(&settings.url_spec)
        .chain(
            settings
                .fallback_url_specs
                .iter()
                .take(MAX_FALLBACK_URL_SPECS),
        )
        .map(|spec| expand_url_spec(spec, &build.name, &build.version))
        .collect();
    let now = schedule::now();
    let old = schedule::load(build, &urls[0]);
    if let Some(old) = &old
        && let Some(wait) = old.wait(now, settings.check_interval_s)
    {
        info!(
            target: UPDATE,
            "Checked {} s ago; the next check is due in {wait} s.",
            now - old.checked_at
        );
        return Ok(None);
    }
    let own_crc32 = build.packed.whole_file_crc32().ok();
    let mut record = Record::new(&urls[0], now);
    let mut retry_after_s = None;
    let mut last_error = None;
    let mut refused = None;
    for (i, url) in urls.iter().enumerate() {
        if i == 0 {
            info!(target: UPDATE, "Expanded info URL to '{url}'.");
        } else {
            info!(target: UPDATE, "Location {} of {}: '{url}'.", i + 1, urls.len());
        }
        let known = old
            .as_ref()
            .and_then(|old| old.validators.as_ref())
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
        let error = match http::fetch_manifest(agent, url, policy, &headers) {
            Ok(ManifestReply::NotModified) if known.is_some() => {
                info!(target: UPDATE, "update.toml not modified since the last check.");
                record.due_at = now.saturating_add(settings.check_interval_s);
                record.validators = known.cloned();
                schedule::save(build, old.as_ref(), &record);
                return Ok(None);
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
                        record.due_at = now.saturating_add(settings.check_interval_s);
                        schedule::save(build, old.as_ref(), &record);
                        return Ok(Some((answer, manifest)));
                    }
                    // This machine's own record failed: no other host
                    // would do better, and no server is to back off from.
                    Err(e @ UpdateError::Local { .. }) => return Err(e),
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
        record.due_at = now.saturating_add(settings.check_interval_s);
        schedule::save(build, old.as_ref(), &record);
        return Err(refused);
    }
    let failures = old.as_ref().map_or(0, |old| old.failures);
    record.failures = failures;
    record.failed(now, retry_after_s);
    info!(
        target: UPDATE,
        "Check failed ({} in a row); the next check is due in {} s.",
        record.failures,
        record.due_at - now
    );
    schedule::save(build, old.as_ref(), &record);
    // There is always a first location: `last_error` is set.
    Err(last_error.unwrap_or_else(|| UpdateError::Manifest {
        url: urls[0].clone(),
        reason: "no location to ask".into(),
    }))
}

/// Tells the schedule that `answer` settled the check with nothing to do
/// (the build it offers runs already, or is not newer, or is not offered to
/// this install): the next check asks for it conditionally. A manifest that
/// led to an update, or to a failed or refused one, is not remembered.
pub fn settled(build: &RunningBuild, answer: &Answer) {
    let keep = |value: &Option<String>| {
        value
            .clone()
            .filter(|value| schedule::is_storable(value))
            .unwrap_or_default()
    };
    let (etag, last_modified) = (keep(&answer.etag), keep(&answer.last_modified));
    if etag.is_empty() && last_modified.is_empty() {
        return;
    }
    let Ok(build_crc32) = build.packed.whole_file_crc32() else {
        return;
    };
    let url = expand_url_spec(&build.settings.url_spec, &build.name, &build.version);
    let old = schedule::load(build, &url);
    let mut record = old
        .clone()
        .unwrap_or_else(|| Record::new(&url, schedule::now()));
    record.validators = Some(Validators {
        url: answer.url.clone(),
        build_crc32,
        etag,
        last_modified,
    });
    schedule::save(build, old.as_ref(), &record);
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
