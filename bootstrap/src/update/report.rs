//! Reports: one small `GET` telling the publisher's host what became of an
//! update, so that its access log counts updates, rollbacks, refusals and
//! failures (docs/updates.md, "Reports"; docs/security.md says what is
//! sent). Off unless the build was packed with `--report-url` or a
//! trusted `update.toml` names a `report` URL.
//!
//! 1. Where: the `report` of the manifest this run trusted ([`trusted`];
//!    empty turns reports off; remembered in the cache folder for the
//!    runs that fetch none), else the build's `report_url`; checked
//!    like at pack time (`manifest::check_report_url`) and by the
//!    transport policy.
//! 2. What: `app`, `from`, `to` (when known), `event` and, for all events
//!    but `updated`, `reason`: nothing else (the User-Agent is the
//!    updater's usual one).
//! 3. When: an event the updater concludes ([`after`]; a rollback,
//!    decided by a launcher, in `crate::probation`) is first left pending
//!    in the app's cache folder ([`pending`]), then sent by a process
//!    that claims it: the concluding one while its app runs (or when it
//!    has no app), else the background updater its launcher starts at
//!    the end ([`background`] hands pending reports off, and puts back
//!    the one in flight); the next updater run sends what is still left.
//! 4. Bounded: at most one report per event per process, one request (no
//!    redirect followed) of a 2 s timeout, one attempt (answered or not, it goes), a few pending at most,
//!    none older than a week.

pub mod pending;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use payload_tools::manifest::{UpdateManifest, check_report_url};
use payload_tools::metadata::UpdateSettings;

use super::{Outcome, RunningBuild, UpdateError, background, http};
use crate::sys::Dir;
use crate::trace::{UPDATE, info};
use pending::Report;

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

    /// The reason `word` names, if one of `reasons`.
    fn of(word: &str, reasons: &[Reason]) -> Option<Reason> {
        reasons.iter().copied().find(|r| r.as_str() == word)
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

    /// The event `name` with the reason `word` names, as the contract
    /// pairs them; `None` for any other pair.
    fn parse(name: &str, word: &str) -> Option<Event> {
        use Reason as R;
        Some(match name {
            "updated" if word.is_empty() => Event::Updated,
            "rolled-back" => {
                Event::RolledBack(Reason::of(word, &[R::Crash, R::ExitCode, R::Start])?)
            }
            "refused" => Event::Refused(Reason::of(
                word,
                &[
                    R::Signature,
                    R::Expired,
                    R::Replay,
                    R::Identity,
                    R::SelfTest,
                ],
            )?),
            "failed" => Event::Failed(Reason::of(word, &[R::Network, R::Disk, R::Verify])?),
            _ => return None,
        })
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

/// The claimed name of the report this process is sending, if any: whoever
/// takes it out (the sender when done, or the exiting launcher handing it
/// back, [`hand_back`]) owns the file.
static IN_FLIGHT: Mutex<Option<String>> = Mutex::new(None);

/// Set by the exiting launcher ([`hand_back`]): this process claims no
/// more reports, since it ends before it could send them.
static ENDING: AtomicBool = AtomicBool::new(false);

/// Where the `report` of the last manifest trusted is remembered (absent:
/// it named none), for the runs that fetch no manifest (not due, 304) and
/// for a launcher that rolls back.
const REMEMBERED: &str = ".reports-to";
const REMEMBERED_MAGIC: &str = "onefile reports to 1";

/// Notes the manifest this run trusted and the version it offers this
/// install: its `report` takes the place of the build's, in this run and,
/// remembered, in the next ones.
pub fn trusted(build: &RunningBuild, manifest: &UpdateManifest, offered: Option<&str>) {
    *LEARNED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Learned {
        report: manifest.report.clone(),
        offered: offered.map(str::to_owned),
    });
    let Some((dir, _)) = &build.cache_folder else {
        return;
    };
    if remembered(dir) == manifest.report {
        return;
    }
    let kept = match &manifest.report {
        Some(url) if !url.contains(['\n', '\r']) => {
            let text = format!("{REMEMBERED_MAGIC}\n{url}\nend\n");
            pending::write_whole(dir, REMEMBERED, &text)
        }
        _ => dir.remove_file(REMEMBERED),
    };
    if let Err(e) = kept {
        info!(target: UPDATE, "Cannot remember the update info's report URL: {e}.");
    }
}

/// The `report` of the last manifest trusted, as remembered in `dir`.
fn remembered(dir: &Dir) -> Option<String> {
    let text = pending::read_bounded(dir, REMEMBERED)?;
    let mut lines = text.split('\n');
    if lines.next()? != REMEMBERED_MAGIC {
        return None;
    }
    let url = lines.next()?;
    (lines.next()? == "end" && lines.next() == Some("")).then(|| url.to_owned())
}

/// At the launcher's end: puts the report in flight (if any) back among
/// the pending ones of `folder`, for the background updater (or, when the
/// launcher was asked to stop, the next run).
pub fn hand_back(folder: &Dir) {
    let claimed = {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        ENDING.store(true, Ordering::Relaxed);
        in_flight.take()
    };
    if let Some(claimed) = claimed
        && pending::unclaim(folder, &claimed)
    {
        info!(target: UPDATE, "The report in flight is put back, unsent.");
    }
}

/// Whether reports are pending in the app's cache folder.
pub fn any_pending(folder: &Dir, path: &std::path::Path) -> bool {
    !pending::list(folder, path).is_empty()
}

/// Sends the reports pending in the app's cache folder, oldest first, each
/// claimed by this process alone.
pub fn send_pending(build: &RunningBuild) {
    let Some((dir, path)) = &build.cache_folder else {
        return;
    };
    for name in pending::list(dir, path) {
        if ENDING.load(Ordering::Relaxed) {
            return;
        }
        if let Some((claimed, report)) = pending::claim(dir, &name) {
            send(build, dir, &claimed, &report);
        }
    }
}

/// At the end of an updater's run: sends the reports left pending (unless
/// `exiting`: the app has exited, and the background updater the launcher
/// starts sends them), then concludes how the run ended, if it makes a
/// report.
pub fn after(build: &RunningBuild, outcome: &Result<Outcome, UpdateError>, exiting: bool) {
    if !exiting {
        send_pending(build);
    }
    let (had_manifest, offered) = match &*LEARNED.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(learned) => (true, learned.offered.clone()),
        None => (false, None),
    };
    let (event, to) = match outcome {
        Ok(Outcome::Updated { version }) => (Event::Updated, version.clone()),
        Ok(_) => return,
        Err(e) => match event_of(e, had_manifest) {
            Some(event) => (event, offered),
            None => return,
        },
    };
    conclude(build, event, to, exiting);
}

/// Concludes `event` (from the running version to `to`): left pending,
/// then sent by this process unless `exiting`. Once per event per process.
fn conclude(build: &RunningBuild, event: Event, to: Option<String>, exiting: bool) {
    {
        let mut sent = SENT.lock().unwrap_or_else(|p| p.into_inner());
        if sent.contains(&event.name()) {
            return;
        }
        sent.push(event.name());
    }
    let Some(url) = report_url(build) else {
        return;
    };
    let report = Report {
        url: Some(url),
        event,
        from: build.version.clone(),
        to,
    };
    let Some((dir, path)) = &build.cache_folder else {
        // Nowhere to leave it: sent now or never.
        if !exiting {
            send_now(build, &report);
        }
        return;
    };
    let left = match pending::leave(dir, path, &report) {
        Ok(name) => name,
        Err(e) => {
            info!(target: UPDATE, "Cannot leave the report of '{}': {e}.", event.name());
            if !exiting {
                send_now(build, &report);
            }
            return;
        }
    };
    if exiting || ENDING.load(Ordering::Relaxed) {
        info!(target: UPDATE, "The report of '{}' is left for the background updater.", event.name());
    } else if let Some((claimed, report)) = pending::claim(dir, &left) {
        send(build, dir, &claimed, &report);
    }
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

/// The URL reports go to, if any: the trusted manifest's (this run's, else
/// the one remembered), else the build's.
fn report_url(build: &RunningBuild) -> Option<String> {
    let learned = LEARNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|l| l.report.clone());
    let from_manifest = match learned {
        Some(report) => report,
        None => build
            .cache_folder
            .as_ref()
            .and_then(|(dir, _)| remembered(dir)),
    };
    resolve(from_manifest, &build.settings)
}

/// The URL of a manifest's `report` (if it names one), else of the
/// build's `settings`, if it may be used.
fn resolve(from_manifest: Option<String>, settings: &UpdateSettings) -> Option<String> {
    let url = from_manifest.or_else(|| settings.report_url.clone())?;
    if url.is_empty() {
        info!(target: UPDATE, "Reports are turned off by the update info.");
        return None;
    }
    usable(settings, url)
}

/// `url` if it may be used: checked as at pack time (a pending report's
/// too: the file is ours, but read like any other).
fn usable(settings: &UpdateSettings, url: String) -> Option<String> {
    if let Err(e) = check_report_url(&url, settings.allow_insecure_http) {
        info!(target: UPDATE, "Not reporting: the report URL cannot be used: {e}.");
        return None;
    }
    Some(url)
}

/// Sends the report claimed as `claimed` in `dir`, then removes it,
/// answered or not, unless the exiting launcher handed it back meanwhile.
fn send(build: &RunningBuild, dir: &Dir, claimed: &str, report: &Report) {
    {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        if ENDING.load(Ordering::Relaxed) {
            // Claimed as the launcher ended: back, unsent.
            pending::unclaim(dir, claimed);
            return;
        }
        *in_flight = Some(claimed.to_owned());
    }
    send_now(build, report);
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
    if in_flight.take().is_some() {
        pending::done(dir, claimed);
    }
}

/// One `GET` of `report`, traced.
fn send_now(build: &RunningBuild, report: &Report) {
    let base = match report.url.clone() {
        Some(url) => usable(&build.settings, url),
        None => report_url(build),
    };
    let Some(base) = base else {
        return;
    };
    let event = report.event;
    let to = report.to.as_deref();
    let url = with_query(&base, &build.name, &report.from, to, event);
    let agent = http::agent(build);
    let policy = http::Policy {
        allow_insecure_http: build.settings.allow_insecure_http,
    };
    let versions = format!("{} -> {}", report.from, to.unwrap_or("?"));
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    // No redirect is followed: its answer is the record, and a report
    // goes nowhere else.
    let sent =
        background::network(|| http::get_once(&agent, &url, false, policy, &[], Some(TIMEOUT)));
    match sent {
        Ok(_) => info!(target: UPDATE, "Reported '{}' ({versions}) to {host}.", event.name()),
        Err(e) => info!(target: UPDATE, "Could not report '{}' ({versions}): {e}", event.name()),
    }
}

/// Leaves the report of a rollback from `from` to `to` for `reason`
/// pending in `dir` (the folder at `path`), to the URL the last trusted
/// manifest named, else the build's (`settings`): none, no report.
pub fn leave_rollback(
    dir: &Dir,
    path: &std::path::Path,
    settings: &UpdateSettings,
    from: &str,
    to: &str,
    reason: Reason,
) -> std::io::Result<bool> {
    let Some(url) = resolve(remembered(dir), settings) else {
        return Ok(false);
    };
    let report = Report {
        url: Some(url),
        event: Event::RolledBack(reason),
        from: from.to_owned(),
        to: Some(to.to_owned()),
    };
    pending::leave(dir, path, &report).map(|_| true)
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
    fn events_read_back_with_their_own_reasons_only() {
        use Reason as R;
        for event in [
            Event::Updated,
            Event::RolledBack(R::Crash),
            Event::RolledBack(R::ExitCode),
            Event::RolledBack(R::Start),
            Event::Refused(R::Signature),
            Event::Refused(R::Expired),
            Event::Refused(R::Replay),
            Event::Refused(R::Identity),
            Event::Refused(R::SelfTest),
            Event::Failed(R::Network),
            Event::Failed(R::Disk),
            Event::Failed(R::Verify),
        ] {
            let word = event.reason().map_or("", Reason::as_str);
            assert_eq!(Event::parse(event.name(), word), Some(event));
        }
        assert_eq!(Event::parse("rolled-back", "network"), None);
        assert_eq!(Event::parse("updated", "crash"), None);
        assert_eq!(Event::parse("failed", ""), None);
    }
}
