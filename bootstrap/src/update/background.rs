//! The updater apart from the app: after the app's exit (the launcher never
//! keeps the shell for a check that hangs), and on request
//! (`ONEFILE_UPDATE`).
//!
//! - After the app's exit ([`after_app_exit`]): the launcher's stdin and
//!   stdout (and stderr, unless traces are on) become the null device at
//!   once, so a pipeline reading the app's output sees its end. The
//!   sidecar then gets the build's `exit_wait_ms`, except that a network
//!   step (the manifest, the build's end, the download) that has received
//!   nothing for [`SHORT_WAIT`] is not waited for (traces on or off);
//!   local steps (verify, self-test, install) finish. Then, if the sidecar is still
//!   busy or reports are pending (`update::report`: the one in flight is
//!   put back), the launcher starts the background updater (which resumes
//!   a download from its resume record) and exits with the app's status.
//! - The background updater (`ONEFILE_UPDATE=background`, set by the
//!   launcher only, with the executable's path and identity): the same
//!   executable, without the app, stdio or terminal, at a low priority. It
//!   works on that path only while it holds that very file (a launcher
//!   whose executable was replaced hands off only pending reports, which
//!   are the app's; one asked to stop hands nothing off). It takes the background lock of the app's cache folder
//!   (one at a time; a launch starts none while one runs), sends the
//!   pending reports, runs the updater with all its rules (schedule, backoff, trust, mirrors,
//!   resume, verify, install), and ends within [`BACKGROUND_LIMIT`]
//!   (then a failed check, backed off from), never between the two
//!   renames of an install. With traces on they go to [`TRACE_FILE`].
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

/// Internal, beside [`BACKGROUND`]: the path of the executable the
/// background updater updates (the launcher's, never what the started
/// file's name has become since) ...
pub const EXE_VAR: &str = "ONEFILE_UPDATE_EXE";

/// ... and who that executable was (`<device>:<inode>`) when the launcher
/// handed off: the background updater works on the path only while it
/// still names that very file.
pub const EXE_ID_VAR: &str = "ONEFILE_UPDATE_EXE_ID";

/// The longest the launcher waits, once the app has exited, for a network
/// step that receives nothing (counted from the later of its last
/// progress and the exit): enough for a loopback or LAN host's answer, and
/// below what a user notices. A farther (or slower) host's answer goes to
/// the background updater, which does the same work.
const SHORT_WAIT: Duration = Duration::from_millis(25);

/// The background updater's trace file in the app's cache folder, when
/// traces are on (it has no stderr): appended to, emptied when over
/// [`crate::trace::FILE_LIMIT`].
const TRACE_FILE: &str = "background-updater.log";

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

/// The executable a background updater was asked to update; `None` in
/// any other launch (which runs its own executable).
pub fn target_exe() -> Option<PathBuf> {
    let background = std::env::var_os(VAR).is_some_and(|v| v == BACKGROUND);
    background
        .then(|| std::env::var_os(EXE_VAR).map(PathBuf::from))
        .flatten()
}

/// Whether the executable open as `build.packed` is the one the launcher
/// handed off, by the identity it passed.
fn is_handed_off(build: &RunningBuild) -> bool {
    let passed = std::env::var(EXE_ID_VAR).ok().and_then(|id| {
        let (dev, ino) = id.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    });
    let own = sys::file_id(&build.packed.file).ok();
    matches!((passed, own), (Some(passed), Some(own)) if passed == (own.dev, own.ino))
}

/// Whether the schedule may be ignored: an explicit request.
static FORCED: AtomicBool = AtomicBool::new(false);

/// Whether this run was asked for explicitly (`now`, `check`): the check
/// interval and the backoff do not apply.
pub fn forced() -> bool {
    FORCED.load(Ordering::Relaxed)
}

/// While the sidecar is in a network step (the manifest, the build's end,
/// the download): when it last made progress (the step began, or bytes
/// came); `None` during local work (verify, self-test, install), which is
/// never cut short.
static NETWORK_PROGRESS: Mutex<Option<Instant>> = Mutex::new(None);

/// Runs `step`, a network step: a launcher whose app has exited waits for
/// it only while it makes progress, at most [`SHORT_WAIT`] without.
pub fn network<T>(step: impl FnOnce() -> T) -> T {
    set_network_progress(Some(Instant::now()));
    let done = step();
    set_network_progress(None);
    done
}

/// Notes that the network step under way received bytes (or did the
/// local part of its work).
pub fn progress() {
    let mut last = NETWORK_PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some() {
        *last = Some(Instant::now());
    }
}

fn set_network_progress(at: Option<Instant>) {
    *NETWORK_PROGRESS.lock().unwrap_or_else(|p| p.into_inner()) = at;
}

fn network_progress() -> Option<Instant> {
    *NETWORK_PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
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
    if request == Request::Background && crate::trace::on() {
        trace_to_file(&build);
    }
    match request {
        Request::Background if !is_handed_off(&build) => {
            // An install replaced it since (or the name is gone): a build
            // that is no longer the executable has nothing to update, and
            // whatever its name became (a kept previous build) is not ours.
            info!(
                target: UPDATE,
                "Background updater: '{}' is no longer the executable handed off; sending what reports are pending, and nothing else.",
                build.exe.display()
            );
            super::report::send_pending(&build);
            std::process::exit(0);
        }
        Request::Background => run_in_background(&build),
        Request::Now => {
            FORCED.store(true, Ordering::Relaxed);
            info!(target: UPDATE, "Updating now, as {VAR}=now asks.");
            let outcome = super::check_and_update(&build, &exited());
            let shown = outcome.as_ref().map(|o| Report::from(o.clone()));
            let code = print_result(&name, version, shown.as_ref().map_err(|e| *e));
            // The answer is out, and its reader sees the end: the report
            // delays nobody.
            if let Err(e) = sys::release_stdio(crate::trace::on()) {
                info!(target: UPDATE, "Cannot release stdio: {e}.");
            }
            super::report::after(&build, &outcome, false);
            std::process::exit(code.into())
        }
        Request::Check => {
            FORCED.store(true, Ordering::Relaxed);
            info!(target: UPDATE, "Checking now, as {VAR}=check asks.");
            let checked = check_only(&build);
            std::process::exit(print_result(&name, version, checked.as_ref()).into())
        }
    }
}

/// Sends the background updater's traces to [`TRACE_FILE`], created
/// privately (never through a link, never a file with another name).
fn trace_to_file(build: &RunningBuild) {
    if let Some((folder, _)) = &build.cache_folder
        && let Ok(file) = folder.open_private(TRACE_FILE, true)
    {
        crate::trace::to_file(file);
        info!(target: UPDATE, "Background updater {} started.", std::process::id());
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
    /// Announced, not installed for now: why.
    HeldBack(Option<String>, &'static str),
}

/// Why a build is held back: it failed verification on every mirror lately.
const FAILED_VERIFICATION: &str = "failed verification lately; not downloaded again for now";
/// ... or this machine rolled back from it.
const ROLLED_BACK_FROM: &str =
    "was rolled back from; not installed again until a different build is announced";
/// ... either (the updater's outcome does not say which).
const HELD_BACK: &str =
    "is held back (it failed verification lately, or was rolled back from); not installed for now";

impl From<Outcome> for Report {
    fn from(outcome: Outcome) -> Report {
        match outcome {
            Outcome::Updated { version } => Report::Updated(version),
            Outcome::HeldBack { version } => Report::HeldBack(version, HELD_BACK),
            Outcome::NotDue | Outcome::UpToDate => Report::UpToDate,
        }
    }
}

/// Prints the one line of a request's result; returns its exit code.
fn print_result(name: &str, version: &str, report: Result<&Report, &UpdateError>) -> u8 {
    let shown = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "a new build".to_owned(), |v| Escaped(v).to_string())
    };
    let version = Escaped(version);
    let code = match report {
        Ok(Report::Updated(new)) => {
            println!("{name}: updated from {version} to {}", shown(new));
            code::DONE
        }
        Ok(Report::UpToDate) => {
            println!("{name}: {version} is up to date");
            code::DONE
        }
        Ok(Report::Available(new)) => {
            println!("{name}: {} is available (running {version})", shown(new));
            code::AVAILABLE
        }
        Ok(Report::HeldBack(new, why)) => {
            eprintln!("{name}: error: {} {why}", shown(new));
            code::REFUSED
        }
        Err(e) => {
            eprintln!("{name}: error: {}", Escaped(&e.to_string()));
            class(e)
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    code
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
    // What `now` would not install is not "available".
    let version = release.version.clone();
    if check::held_back(build, check::release_key(&release)).is_some() {
        return Ok(Report::HeldBack(version, FAILED_VERIFICATION));
    }
    if crate::probation::refuses(build, &release) {
        return Ok(Report::HeldBack(version, ROLLED_BACK_FROM));
    }
    Ok(Report::Available(version))
}

/// What the launcher needs to start the background updater: taken when
/// the sidecar starts, since the sidecar owns the running build.
#[derive(Debug)]
pub struct Handoff {
    exe: PathBuf,
    /// Who the running executable is.
    id: Option<sys::FileId>,
    /// The running executable, held open: the background updater's code
    /// is started from it (Linux), the build that ran.
    file: Option<std::fs::File>,
    /// The app's cache folder, where the background lock lives.
    folder: Option<sys::Dir>,
    /// Where the background updater's traces go.
    trace_file: Option<PathBuf>,
    /// The app's cache folder's path, where pending reports are listed.
    folder_path: Option<PathBuf>,
}

impl Handoff {
    pub fn of(build: &RunningBuild) -> Handoff {
        let file = build.packed.file.try_clone().ok();
        let id = sys::file_id(&build.packed.file).ok();
        Handoff {
            exe: build.exe.clone(),
            id,
            file,
            folder: build
                .cache_folder
                .as_ref()
                .and_then(|(dir, _)| dir.try_clone().ok()),
            trace_file: build
                .cache_folder
                .as_ref()
                .map(|(_, path)| path.join(TRACE_FILE)),
            folder_path: build.cache_folder.as_ref().map(|(_, path)| path.clone()),
        }
    }

    fn reports_pending(&self) -> bool {
        match (&self.folder, &self.folder_path) {
            (Some(folder), Some(path)) => super::report::any_pending(folder, path),
            _ => false,
        }
    }
}

/// The background lock, one per app cache folder (so one file, never a
/// pile of them): held by a background updater for its whole run. Copies
/// of the app that share the folder take turns: one background updater
/// for the app at a time.
const LOCK: &str = ".background.lock";

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
/// to stop, so it neither waits nor hands off.
pub fn after_app_exit(sidecar: Sidecar, exit_wait_ms: u64, stop_requested: bool) {
    let keep_stderr = crate::trace::on();
    if let Err(e) = sys::release_stdio(keep_stderr) {
        info!(target: UPDATE, "Cannot release stdio: {e}.");
    }
    sidecar.app.mark_exited();
    if stop_requested {
        // Whoever stops the launch (a terminal's hang-up, `timeout`, a
        // service manager) means the update work too: nothing may escape
        // the signal into a session of its own.
        sys::block_installs();
        if let Some(folder) = &sidecar.handoff.folder {
            super::report::hand_back(folder);
        }
        info!(target: UPDATE, "Asked to stop; the update is left for the next launch.");
        return;
    }
    let exited = Instant::now();
    let exit_wait = Duration::from_millis(exit_wait_ms);
    let give_up = exited + exit_wait;
    let finished = loop {
        let now = Instant::now();
        // A network step that has received nothing for the short wait is
        // not waited for: a captive portal, a dropping firewall or a
        // stalled host may never answer. One that receives may take the
        // exit wait, and the background updater resumes what is left.
        let deadline = match network_progress() {
            Some(last) => give_up.min(last.max(exited) + SHORT_WAIT),
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
    let handoff = &sidecar.handoff;
    if finished {
        if !handoff.reports_pending() {
            return;
        }
        info!(target: UPDATE, "Reports are pending; handing them to a background process.");
    } else {
        if let Some(folder) = &handoff.folder {
            super::report::hand_back(folder);
        }
        info!(
            target: UPDATE,
            "Still busy {} ms after the app exited; handing the rest to a background process.",
            exited.elapsed().min(exit_wait).as_millis()
        );
    }
    hand_off(handoff);
}

/// Starts the background updater, unless one runs already.
fn hand_off(handoff: &Handoff) {
    let (Some(folder), Some(file), Some(id)) = (&handoff.folder, &handoff.file, &handoff.id) else {
        info!(target: UPDATE, "Cannot start a background updater: the cache folder is not open.");
        return;
    };
    // Replaced meanwhile (an update installed by another process): the new
    // build is not ours to update, and ours now has another name.
    let still_ours =
        sys::path_id(&handoff.exe).is_ok_and(|now| now.is_some_and(|now| now.same_file(id)));
    // Its reports are the app's, whichever build sends them.
    if !still_ours && !handoff.reports_pending() {
        info!(
            target: UPDATE,
            "'{}' is no longer this build; no background updater.",
            handoff.exe.display()
        );
        return;
    }
    // Checked, then released for the new process to take: two launches at
    // the same moment may start two, and the second of them ends at once.
    if try_lock(folder, LOCK).is_none() {
        info!(target: UPDATE, "A background updater runs already.");
        return;
    }
    let exe_id = format!("{}:{}", id.dev, id.ino);
    let env = [
        (VAR, std::ffi::OsStr::new(BACKGROUND)),
        (EXE_VAR, handoff.exe.as_os_str()),
        (EXE_ID_VAR, std::ffi::OsStr::new(&exe_id)),
    ];
    match sys::spawn_background(&handoff.exe, file, &env) {
        Ok(pid) => {
            info!(target: UPDATE, "Started background updater {pid}.");
            if let Some(path) = &handoff.trace_file {
                info!(target: UPDATE, "Its traces go to '{}'.", path.display());
            }
        }
        Err(e) => info!(target: UPDATE, "Cannot start a background updater: {e}."),
    }
}

/// The background updater's whole run.
fn run_in_background(build: &RunningBuild) -> ! {
    std::thread::scope(|scope| {
        // The overall bound: the process ends then, but never between the
        // two renames of an install; the check counts as failed.
        let limit = std::thread::Builder::new()
            .name("onefile-limit".into())
            .spawn_scoped(scope, || {
                std::thread::sleep(BACKGROUND_LIMIT);
                super::check::timed_out(build);
                sys::block_installs();
                info!(target: UPDATE, "Background updater ran too long; ending (a failed check).");
                std::process::exit(0);
            });
        if limit.is_err() {
            // Without its bound it may not run at all.
            std::process::exit(0);
        }
        update_in_background(build)
    })
}

/// The background updater's work, under its limit.
fn update_in_background(build: &RunningBuild) -> ! {
    let folder = build.cache_folder.as_ref().map(|(dir, _)| dir);
    let Some(_lock) = folder.and_then(|folder| try_lock(folder, LOCK)) else {
        info!(target: UPDATE, "Another background updater runs; ending.");
        std::process::exit(0);
    };
    super::report::send_pending(build);
    let started = Instant::now();
    let outcome = loop {
        match super::check_and_update(build, &exited()) {
            // The launcher that started us still holds the updater's lock
            // for a moment; another updater may hold it for longer.
            Err(UpdateError::Busy) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => {
                info!(target: UPDATE, "{e}");
                break Err(e);
            }
            Ok(outcome) => {
                info!(target: UPDATE, "Background updater done: {outcome:?}.");
                break Ok(outcome);
            }
        }
    };
    super::report::after(build, &outcome, false);
    sys::block_installs();
    std::process::exit(0)
}
