//! Reports: one small `GET` telling the publisher's host what became of an
//! update, so that its access log counts updates, rollbacks, refusals and
//! failures (docs/updates.md, "Reports"; docs/security.md says what is
//! sent). Off unless the build was packed with `--report-url` or a
//! trusted `update.toml` names a `report` URL.
//!
//! 1. Where: the `report` of the manifest this run trusted ([`trusted`];
//!    empty turns reports off), else the build's `report_url`; checked
//!    like at pack time (`manifest::check_report_url`) and by the
//!    transport policy.
//! 2. What: `app`, `from`, `to` (when known), `event` and, for all events
//!    but `updated`, `reason`: nothing else (the User-Agent is the
//!    updater's usual one).
//! 3. When: at the end of an updater's run ([`after`]), by the process
//!    that ran it; a rollback, decided by a launcher, is left pending in
//!    the cache ([`crate::probation`]) and sent by the next run, which
//!    claims it so that only one sends it.
//! 4. Bounded: at most one report per event per process, a 2 s timeout,
//!    never retried; the exiting launcher waits for one no longer than for
//!    any network step that stalls (25 ms) and never hands one off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use payload_tools::manifest::{UpdateManifest, check_report_url};

use super::{Outcome, RunningBuild, UpdateError, background, http};
use crate::trace::{UPDATE, info};

/// The whole request, connecting included.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What happened, as the contract's words say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Updated,
    RolledBack(Reason),
    Refused(Reason),
    Failed(Reason),
}

/// Why, for the events that say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Signature,
    Expired,
    Replay,
    Identity,
    SelfTest,
    Network,
    Disk,
    Verify,
    Crash,
    ExitCode,
    Start,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signature => "signature",
            Reason::Expired => "expired",
            Reason::Replay => "replay",
            Reason::Identity => "identity",
            Reason::SelfTest => "self-test",
            Reason::Network => "network",
            Reason::Disk => "disk",
            Reason::Verify => "verify",
            Reason::Crash => "crash",
            Reason::ExitCode => "exit-code",
            Reason::Start => "start",
        }
    }

    /// The reason a rolled-back report's stored word names.
    pub fn of_rollback(word: &str) -> Option<Reason> {
        [Reason::Crash, Reason::ExitCode, Reason::Start]
            .into_iter()
            .find(|r| r.as_str() == word)
    }
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Updated => "updated",
            Event::RolledBack(_) => "rolled-back",
            Event::Refused(_) => "refused",
            Event::Failed(_) => "failed",
        }
    }

    fn reason(self) -> Option<Reason> {
        match self {
            Event::Updated => None,
            Event::RolledBack(r) | Event::Refused(r) | Event::Failed(r) => Some(r),
        }
    }
}

/// What this run learned from a trusted manifest: its `report` (if it
/// names one) and the version it offers.
#[derive(Debug, Default)]
struct Learned {
    report: Option<String>,
    offered: Option<String>,
}

static LEARNED: Mutex<Option<Learned>> = Mutex::new(None);

/// Events reported by this process: one each at most.
static SENT: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Whether a report is in flight: the exiting launcher does not hand it to
/// a background updater.
static IN_FLIGHT: AtomicBool = AtomicBool::new(false);

/// Notes the manifest this run trusted and the version it offers this
/// install: its `report` takes the place of the build's.
pub fn trusted(manifest: &UpdateManifest, offered: Option<&str>) {
    *LEARNED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Learned {
        report: manifest.report.clone(),
        offered: offered.map(str::to_owned),
    });
}

/// Whether a report is being sent now.
pub fn in_flight() -> bool {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// At the end of an updater's run: sends a rollback left pending by a
/// launcher (unless `exiting`: a launcher whose app has exited would most
/// likely drop it, so it is left for a run with time), then the report of
/// how the run ended, if it has one.
pub fn after(build: &RunningBuild, outcome: &Result<Outcome, UpdateError>, exiting: bool) {
    if !exiting
        && let Some((dir, _)) = &build.cache_folder
        && let Some((from, to, reason)) = crate::probation::claim_rollback_report(dir)
    {
        send(build, Event::RolledBack(reason), &from, Some(&to));
    }
    let (had_manifest, offered) = match &*LEARNED.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(learned) => (true, learned.offered.clone()),
        None => (false, None),
    };
    let event = match outcome {
        Ok(Outcome::Updated { version }) => {
            send(build, Event::Updated, &build.version, version.as_deref());
            return;
        }
        Ok(_) => return,
        Err(e) => match event_of(e, had_manifest) {
            Some(event) => event,
            None => return,
        },
    };
    send(build, event, &build.version, offered.as_deref());
}

/// The report an updater's error makes, if any. A network failure counts
/// only once a manifest was trusted (a download, not a check: a host that
/// cannot be reached at all is the access log's silence).
fn event_of(error: &UpdateError, had_manifest: bool) -> Option<Event> {
    use UpdateError as E;
    Some(match error {
        E::Untrusted { class, .. } => Event::Refused(*class),
        E::BadSignature { .. } | E::Unsigned { .. } => Event::Refused(Reason::Signature),
        E::OtherApp { .. } | E::OtherPlatform { .. } => Event::Refused(Reason::Identity),
        E::SelfTest { .. } => Event::Refused(Reason::SelfTest),
        E::Crc { .. } | E::Size { .. } | E::NotPacked { .. } | E::SameWrongBuild { .. } => {
            Event::Failed(Reason::Verify)
        }
        E::Transport { .. } | E::Status { .. } | E::Download { .. } if had_manifest => {
            Event::Failed(Reason::Network)
        }
        E::Io { .. } | E::Replace { .. } => Event::Failed(Reason::Disk),
        _ => return None,
    })
}

/// The URL reports go to, if any: the trusted manifest's, else the build's.
fn report_url(build: &RunningBuild) -> Option<String> {
    let from_manifest = LEARNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|l| l.report.clone());
    let url = from_manifest.or_else(|| build.settings.report_url.clone())?;
    if url.is_empty() {
        info!(target: UPDATE, "Reports are turned off by the update info.");
        return None;
    }
    if let Err(e) = check_report_url(&url, build.settings.allow_insecure_http) {
        info!(target: UPDATE, "Not reporting: the report URL cannot be used: {e}.");
        return None;
    }
    Some(url)
}

/// Sends one report of `event` from `from` to `to`, once per process.
fn send(build: &RunningBuild, event: Event, from: &str, to: Option<&str>) {
    {
        let mut sent = SENT.lock().unwrap_or_else(|p| p.into_inner());
        if sent.contains(&event.name()) {
            return;
        }
        sent.push(event.name());
    }
    let Some(base) = report_url(build) else {
        return;
    };
    let url = with_query(&base, &build.name, from, to, event);
    let agent = http::agent(build);
    let policy = http::Policy {
        allow_insecure_http: build.settings.allow_insecure_http,
    };
    let versions = format!("{from} -> {}", to.unwrap_or("?"));
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    IN_FLIGHT.store(true, Ordering::Relaxed);
    let sent = background::network(|| http::get(&agent, &url, policy, &[], Some(TIMEOUT)));
    IN_FLIGHT.store(false, Ordering::Relaxed);
    match sent {
        Ok(_) => info!(target: UPDATE, "Reported '{}' ({versions}) to {host}.", event.name()),
        Err(e) => info!(target: UPDATE, "Could not report '{}' ({versions}): {e}", event.name()),
    }
}

/// `base` with the report's query appended.
fn with_query(base: &str, app: &str, from: &str, to: Option<&str>, event: Event) -> String {
    let mut url = String::from(base);
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("app=");
    encode(&mut url, app);
    url.push_str("&from=");
    encode(&mut url, from);
    if let Some(to) = to {
        url.push_str("&to=");
        encode(&mut url, to);
    }
    url.push_str("&event=");
    url.push_str(event.name());
    if let Some(reason) = event.reason() {
        url.push_str("&reason=");
        url.push_str(reason.as_str());
    }
    url
}

/// Percent-encodes `value` into `out`: RFC 3986's unreserved characters
/// as they are, every other byte as `%XX`.
fn encode(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_the_contracts() {
        let url = with_query(
            "https://h/r",
            "My App",
            "1.0",
            Some("1.1+b/2"),
            Event::Updated,
        );
        assert_eq!(
            url,
            "https://h/r?app=My%20App&from=1.0&to=1.1%2Bb%2F2&event=updated"
        );
        let url = with_query(
            "https://h/r?c=beta",
            "a",
            "1.1",
            None,
            Event::Refused(Reason::SelfTest),
        );
        assert_eq!(
            url,
            "https://h/r?c=beta&app=a&from=1.1&event=refused&reason=self-test"
        );
    }

    #[test]
    fn rollback_reasons_read_back() {
        for reason in [Reason::Crash, Reason::ExitCode, Reason::Start] {
            assert_eq!(Reason::of_rollback(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::of_rollback("network"), None);
    }
}
