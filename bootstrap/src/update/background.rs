//! The updater apart from the app: after the app's exit (the launcher never
//! keeps the shell for a check that hangs), and on request
//! (`ONEFILE_UPDATE`).
//!
//! - After the app's exit ([`after_app_exit`]): the launcher's stdin and
//!   stdout (and stderr, unless traces are on) become the null device at
//!   once, so a pipeline reading the app's output sees its end. The
//!   sidecar then gets the build's `exit_wait_ms`, except that a request
//!   for the manifest that has gone unanswered for [`SHORT_WAIT`] is not
//!   waited for (unless traces are on). Then, if the sidecar is still
//!   busy, the launcher starts the background updater (which resumes a
//!   download from its resume record) and exits with the app's status.
//! - The background updater (`ONEFILE_UPDATE=background`, set by the
//!   launcher only): the same executable, without the app, stdio or
//!   terminal, at a low priority. It takes the background lock of the
//!   executable (one at a time; a launch starts none while one runs), runs
//!   the updater with all its rules (schedule, backoff, trust, mirrors,
//!   resume, verify, install), and ends within [`BACKGROUND_LIMIT`],
//!   never between the two renames of an install.
//! - `ONEFILE_UPDATE=now`: the updater in the foreground, not the app,
//!   whatever the check interval and backoff say; one line of result and
//!   an exit code per class of outcome ([`code`]). `ONEFILE_UPDATE=check`:
//!   whether a newer build is announced, nothing downloaded.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use payload_tools::text::Escaped;
use payload_tools::version::is_newer;

use super::{AppState, Outcome, RunningBuild, Sidecar, UpdateError};
use crate::sys;
use crate::trace::{UPDATE, info};

/// The variable that asks a launch for the updater instead of the app. It
/// is removed from the app's environment.
pub const VAR: &str = "ONEFILE_UPDATE";

/// Its value for the background updater: internal, set by the launcher.
const BACKGROUND: &str = "background";

/// The longest the launcher waits, once the app has exited, for a host to
/// answer the request for the manifest (counted from the later of the
/// request and the exit): enough for a loopback or LAN host's answer, and
/// below what a user notices. A farther (or slower) host's answer goes to
/// the background updater, which does the same work.
const SHORT_WAIT: Duration = Duration::from_millis(25);

/// How often the exiting launcher looks whether the sidecar started or
/// stopped waiting for a host.
const POLL: Duration = Duration::from_millis(5);

/// The longest a background updater runs: longer than any download the
/// HTTP timeouts let stall, short enough that none lingers.
const BACKGROUND_LIMIT: Duration = Duration::from_secs(600);

/// How long the background updater retries while the exiting launcher
/// (or another updater) still holds the updater's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Exit codes of `ONEFILE_UPDATE=now|check` (docs/updates.md).
pub mod code {
    /// Updated, or up to date.
    pub const DONE: u8 = 0;
    /// `check`: a newer build is announced.
    pub const AVAILABLE: u8 = 100;
    /// No host answered, or a download failed.
    pub const NETWORK: u8 = 101;
    /// An answer or a build was refused (untrusted, bad signature, wrong
    /// build, held back after failed verification).
    pub const REFUSED: u8 = 102;
    /// This machine: the disk, the cache, the executable's folder.
    pub const LOCAL: u8 = 103;
    /// Another updater of this executable is at work.
    pub const BUSY: u8 = 104;
    /// Not understood: an unknown value, or a build without updates.
    pub const USAGE: u8 = 105;
}

/// What `ONEFILE_UPDATE` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Now,
    Check,
    Background,
}

/// Whether this launch is a request for the updater: `None` for a normal
/// launch (the variable unset or empty), `Err` with the value when it is
/// not understood.
pub fn requested() -> Option<Result<Request, String>> {
    let value = std::env::var_os(VAR).filter(|v| !v.is_empty())?;
    Some(match value.to_str() {
        Some("now") => Ok(Request::Now),
        Some("check") => Ok(Request::Check),
        Some(BACKGROUND) => Ok(Request::Background),
        _ => Err(value.to_string_lossy().into_owned()),
    })
}

/// Whether the schedule may be ignored: an explicit request.
static FORCED: AtomicBool = AtomicBool::new(false);

/// Whether this run was asked for explicitly (`now`, `check`): the check
/// interval and the backoff do not apply.
pub fn forced() -> bool {
    FORCED.load(Ordering::Relaxed)
}

/// Since when the sidecar has been waiting for a host to answer its
/// request for the manifest (connecting included); `None` while it is not.
static AWAITING_SINCE: Mutex<Option<Instant>> = Mutex::new(None);

/// Runs `request`, a request for the manifest, noting meanwhile that the
/// sidecar awaits an answer: a launcher whose app has exited waits for
/// that at most [`SHORT_WAIT`] more.
pub fn awaiting_answer<T>(request: impl FnOnce() -> T) -> T {
    set_awaiting(Some(Instant::now()));
    let reply = request();
    set_awaiting(None);
    reply
}

fn set_awaiting(since: Option<Instant>) {
    *AWAITING_SINCE.lock().unwrap_or_else(|p| p.into_inner()) = since;
}

fn awaiting_since() -> Option<Instant> {
    *AWAITING_SINCE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves a request for the updater: `name` and `version` are the build's,
/// `build` is `None` for a build without updates. Never returns.
pub fn serve(
    request: Result<Request, String>,
    name: &str,
    version: &str,
    build: Option<RunningBuild>,
) -> ! {
    let name = Escaped(name).to_string();
    let request = match request {
        Ok(request) => request,
        Err(value) => {
            eprintln!(
                "{name}: error: {VAR}={} is not understood (use 'now' or 'check').",
                Escaped(&value)
            );
            std::process::exit(code::USAGE.into());
        }
    };
    let Some(build) = build else {
        if request == Request::Background {
            std::process::exit(0);
        }
        eprintln!(
            "{name}: error: this build has no updates (it was packed without an update URL)."
        );
        std::process::exit(code::USAGE.into());
    };
    match request {
        Request::Background => run_in_background(&build),
        Request::Now => {
            FORCED.store(true, Ordering::Relaxed);
            info!(target: UPDATE, "Updating now, as {VAR}=now asks.");
            let outcome = super::check_and_update(&build, &exited());
            finish(&name, version, outcome.map(Report::from))
        }
        Request::Check => {
            FORCED.store(true, Ordering::Relaxed);
            info!(target: UPDATE, "Checking now, as {VAR}=check asks.");
            finish(&name, version, check_only(&build))
        }
    }
}

/// An app state that says the app has exited: nothing to wait for.
fn exited() -> AppState {
    let app = AppState::default();
    app.mark_exited();
    app
}

/// What a request came to.
enum Report {
    Updated(Option<String>),
    UpToDate,
    Available(Option<String>),
    HeldBack(Option<String>),
}

impl From<Outcome> for Report {
    fn from(outcome: Outcome) -> Report {
        match outcome {
            Outcome::Updated { version } => Report::Updated(version),
            Outcome::HeldBack { version } => Report::HeldBack(version),
            Outcome::NotDue | Outcome::UpToDate => Report::UpToDate,
        }
    }
}

/// Prints the one line of a request's result and exits with its code.
fn finish(name: &str, version: &str, report: Result<Report, UpdateError>) -> ! {
    let shown = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "a new build".to_owned(), |v| Escaped(v).to_string())
    };
    let version = Escaped(version);
    let code = match report {
        Ok(Report::Updated(new)) => {
            println!("{name}: updated from {version} to {}", shown(&new));
            code::DONE
        }
        Ok(Report::UpToDate) => {
            println!("{name}: {version} is up to date");
            code::DONE
        }
        Ok(Report::Available(new)) => {
            println!("{name}: {} is available (running {version})", shown(&new));
            code::AVAILABLE
        }
        Ok(Report::HeldBack(new)) => {
            eprintln!(
                "{name}: error: {} failed verification lately; not downloaded again for now",
                shown(&new)
            );
            code::REFUSED
        }
        Err(e) => {
            eprintln!("{name}: error: {}", Escaped(&e.to_string()));
            class(&e)
        }
    };
    std::process::exit(code.into())
}

/// The exit code of a failed request.
fn class(error: &UpdateError) -> u8 {
    use UpdateError as E;
    match error {
        E::Transport { .. } | E::Status { .. } | E::Download { .. } => code::NETWORK,
        E::Busy => code::BUSY,
        E::Io { .. }
        | E::Local { .. }
        | E::Replace { .. }
        | E::NotReplaceable { .. }
        | E::AlreadyReplaced
        | E::Format(_) => code::LOCAL,
        _ => code::REFUSED,
    }
}

/// `ONEFILE_UPDATE=check`: the check of the updater's first steps, and
/// nothing fetched beyond the manifest.
fn check_only(build: &RunningBuild) -> Result<Report, UpdateError> {
    use super::{check, http, trust};
    let agent = http::agent(build);
    let policy = http::Policy {
        allow_insecure_http: build.settings.allow_insecure_http,
    };
    let (answer, manifest) =
        match check::fetch(build, &agent, policy, |answer| trust::accept(build, answer))? {
            check::Checked::NotDue | check::Checked::Unchanged => return Ok(Report::UpToDate),
            check::Checked::Manifest(found) => *found,
        };
    let release = trust::choose(build, &manifest);
    let not_newer = release.version.as_ref().is_some_and(|announced| {
        !build.settings.allow_downgrade && !is_newer(announced, &build.version)
    });
    if not_newer || super::is_same_build(&build.packed, release.size, release.crc32)? {
        check::settled(build, &answer, &manifest);
        return Ok(Report::UpToDate);
    }
    Ok(Report::Available(release.version.clone()))
}

/// What the launcher needs to start the background updater: taken when
/// the sidecar starts, since the sidecar owns the running build.
#[derive(Debug)]
pub struct Handoff {
    exe: PathBuf,
    /// The running executable, held open: the background updater is
    /// started from it (Linux), so it is this very file even if the name
    /// was replaced since.
    file: Option<std::fs::File>,
    /// The app's cache folder, where the background lock lives.
    folder: Option<sys::Dir>,
    lock_name: Option<String>,
}

impl Handoff {
    pub fn of(build: &RunningBuild) -> Handoff {
        let file = build.packed.file.try_clone().ok();
        let lock_name = sys::file_id(&build.packed.file)
            .ok()
            .map(|id| lock_name(&id));
        Handoff {
            exe: build.exe.clone(),
            file,
            folder: build
                .cache_folder
                .as_ref()
                .and_then(|(dir, _)| dir.try_clone().ok()),
            lock_name,
        }
    }
}

/// The background lock of the executable `id`: held by its background
/// updater for its whole run.
fn lock_name(id: &sys::FileId) -> String {
    format!(".background-{}-{}", id.dev, id.ino)
}

/// Takes the background lock without waiting; `None` if it is held (or
/// cannot be had at all).
fn try_lock(folder: &sys::Dir, name: &str) -> Option<std::fs::File> {
    let file = folder.open_private(name, true).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// After the app's exit, in a launcher with a sidecar that is not about to
/// run the app again (a restart keeps stdio for it): releases stdio, gives
/// the sidecar its bound (`exit_wait_ms`, the build's), and hands what is
/// left to a background updater. `stop_requested`: the launcher was asked
/// to stop, so it does not wait at all.
pub fn after_app_exit(sidecar: Sidecar, exit_wait_ms: u64, stop_requested: bool) {
    let keep_stderr = crate::trace::on();
    if let Err(e) = sys::release_stdio(keep_stderr) {
        info!(target: UPDATE, "Cannot release stdio: {e}.");
    }
    sidecar.app.mark_exited();
    let exited = Instant::now();
    let exit_wait = if stop_requested {
        Duration::ZERO
    } else {
        Duration::from_millis(exit_wait_ms)
    };
    let give_up = exited + exit_wait;
    // Someone watching the traces wants to see the check through: with
    // traces on, an unanswered host is waited for like the rest.
    let watched = crate::trace::on();
    let finished = loop {
        let now = Instant::now();
        // A host that has not answered within the short wait is not
        // waited for: a captive portal or a dropping firewall never will.
        let deadline = match awaiting_since() {
            Some(since) if !watched => give_up.min(since.max(exited) + SHORT_WAIT),
            _ => give_up,
        };
        if now >= deadline {
            break false;
        }
        let slice = (deadline - now).min(POLL);
        match sidecar.finished.recv_timeout(slice) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    };
    // Never exit between the two renames of an install (Windows).
    sys::block_installs();
    if finished {
        return;
    }
    info!(
        target: UPDATE,
        "Still busy {} ms after the app exited; handing the rest to a background process.",
        exited.elapsed().min(exit_wait).as_millis()
    );
    hand_off(&sidecar.handoff);
}

/// Starts the background updater, unless one runs already.
fn hand_off(handoff: &Handoff) {
    let (Some(folder), Some(name), Some(file)) =
        (&handoff.folder, &handoff.lock_name, &handoff.file)
    else {
        info!(target: UPDATE, "Cannot start a background updater: the cache folder is not open.");
        return;
    };
    // Checked, then released for the new process to take: two launches at
    // the same moment may start two, and the second of them ends at once.
    if try_lock(folder, name).is_none() {
        info!(target: UPDATE, "A background updater runs already.");
        return;
    }
    match sys::spawn_background(&handoff.exe, file, VAR, BACKGROUND) {
        Ok(pid) => info!(target: UPDATE, "Started background updater {pid}."),
        Err(e) => info!(target: UPDATE, "Cannot start a background updater: {e}."),
    }
}

/// The background updater's whole run.
fn run_in_background(build: &RunningBuild) -> ! {
    info!(target: UPDATE, "Background updater started.");
    // The overall bound: the process ends then, but never between the two
    // renames of an install.
    let limit = std::thread::Builder::new()
        .name("onefile-limit".into())
        .spawn(|| {
            std::thread::sleep(BACKGROUND_LIMIT);
            sys::block_installs();
            info!(target: UPDATE, "Background updater ran too long; ending.");
            std::process::exit(0);
        });
    if limit.is_err() {
        // Without its bound it may not run at all.
        std::process::exit(0);
    }
    let own = sys::file_id(&build.packed.file).ok();
    let folder = build.cache_folder.as_ref().map(|(dir, _)| dir);
    let Some(_lock) = own
        .zip(folder)
        .and_then(|(own, folder)| try_lock(folder, &lock_name(&own)))
    else {
        info!(target: UPDATE, "Another background updater runs; ending.");
        std::process::exit(0);
    };
    let started = Instant::now();
    loop {
        match super::check_and_update(build, &exited()) {
            // The launcher that started us still holds the updater's lock
            // for a moment; another updater may hold it for longer.
            Err(UpdateError::Busy) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => {
                info!(target: UPDATE, "{e}");
                break;
            }
            Ok(outcome) => {
                info!(target: UPDATE, "Background updater done: {outcome:?}.");
                break;
            }
        }
    }
    sys::block_installs();
    std::process::exit(0)
}
