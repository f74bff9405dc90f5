//! The update sidecar: a thread that runs beside the app and, where the
//! published build differs from the running one, installs it for the next
//! launch. It never delays the app and prints nothing but `AUTO UPDATE:`
//! traces (with `AUTO_UPDATE_DEBUG`).
//!
//! 1. When a check is due ([`schedule`]), fetch `update.toml` from the
//!    build's locations in turn, conditionally ([`check`], [`http`]).
//!    Use it only if it is signed by a trusted key (for a build with
//!    keys), not expired and not older than one this install accepted;
//!    take the rollout's release if it offers it to this install's
//!    bucket, else the top-level one ([`trust`], [`install_record`]).
//! 2. Compare its `crc32` with our own executable's: equal, nothing to do.
//!    A `version` that is not newer than ours: nothing to do either.
//! 3. Take the updater's lock of our executable, a private file in the
//!    app's cache ([`state`]): one updater at a time. Hold the executable's
//!    folder open and refuse an executable that changed, is not ours, or
//!    sits in a folder others may write ([`install`]). Fetch the new
//!    build's trailer and metadata ([`tail`]): a build of another app or an
//!    older version is refused before it is downloaded.
//! 4. Download the new build into a file of its own next to the
//!    executable, from its URL or else its mirrors in turn, resuming an
//!    interrupted download, even one from another mirror ([`download`]);
//!    meanwhile its payload is checked as it arrives, and the disk writes
//!    it out.
//! 5. Check size, CRC-32, signature, and that it is a well-formed packed
//!    build of the same app whose payload unpacks ([`verify`]): the
//!    payload check made during the download counts only if the finished
//!    file has the trailer and metadata it was made with. Then run it in
//!    its stub's self-test mode: a build that does not start on this
//!    machine is refused and held back ([`self_test`]).
//! 6. Meanwhile, unpack the verified build into its cache folder at low
//!    priority, so that its first launch starts warm ([`prewarm`]); it
//!    never delays the install.
//! 7. Wait until the app has exited, then rename the download over the
//!    executable if it still is the file this instance runs
//!    ([`install`], `sys::replace_executable`).
//!
//! 8. At the end of the run, when the publisher turned reports on, send
//!    one bounded report of what it came to (updated, refused, failed),
//!    and a rollback's report left pending ([`report`]).
//!
//! Any failure is traced and leaves the executable untouched. Each step
//! is told to the app through its status file ([`status`]).

pub mod background;
mod check;
mod download;
mod error;
mod http;
mod incremental;
mod install;
mod install_record;
mod minisig;
mod prewarm;
pub mod report;
mod schedule;
mod self_test;
mod state;
pub mod status;
mod tail;
mod trust;
mod verify;

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::trace::info;
use payload_tools::PackedFile;
use payload_tools::delta::Plan;
use payload_tools::manifest::Release;
use payload_tools::metadata::UpdateSettings;
use payload_tools::version::is_newer;

use crate::probation;
use crate::sys;
use crate::trace::UPDATE;
use download::{Download, Fetched, Progress};
use install::Target;
use minisig::FileDigest;
use state::State;
use tail::Layout;
use ureq::Agent;

pub use error::UpdateError;

/// What the sidecar needs to know about the running build.
#[derive(Debug)]
pub struct RunningBuild {
    pub exe: PathBuf,
    pub name: String,
    pub version: String,
    pub settings: UpdateSettings,
    /// The running executable as the launcher opened it: the sidecar reads
    /// its CRC-32 and who it is (device and inode) without opening and
    /// parsing it again.
    pub packed: PackedFile,
    /// The app's private cache folder, held open, and its path (for
    /// messages): the updater's lock and resume record live there.
    pub cache_folder: Option<(crate::sys::Dir, PathBuf)>,
}

/// Whether the user turned updates off for this run.
pub fn disabled_by_env() -> bool {
    std::env::var_os("AUTO_UPDATE_DISABLE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Handle of the running sidecar, kept by the launcher's main thread.
#[derive(Debug)]
pub struct Sidecar {
    app: Arc<AppState>,
    finished: mpsc::Receiver<()>,
    handoff: background::Handoff,
}

#[derive(Debug, Default)]
struct AppState {
    exited: Mutex<bool>,
    changed: Condvar,
}

impl AppState {
    fn mark_exited(&self) {
        *self.exited.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    fn has_exited(&self) -> bool {
        *self.exited.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until the app has exited, tracing whether it had to wait.
    fn wait_for_exit(&self) {
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        if !*exited {
            info!(target: UPDATE, "May not yet update.");
            while !*exited {
                exited = self.changed.wait(exited).unwrap_or_else(|p| p.into_inner());
            }
        }
        info!(target: UPDATE, "May update.");
    }
}

/// Starts the sidecar thread.
pub fn start(build: RunningBuild) -> Sidecar {
    let app = Arc::new(AppState::default());
    let (done, finished) = mpsc::channel::<()>();
    let thread_app = Arc::clone(&app);
    let handoff = background::Handoff::of(&build);
    let spawned = std::thread::Builder::new()
        .name("onefile-update".into())
        .spawn(move || {
            // Dropped when the thread ends, however it ends: that is the
            // signal the main thread waits for.
            let _done = done;
            info!(target: UPDATE, "Thread started.");
            status::remove_stale();
            let outcome = check_and_update(&build, &thread_app);
            if let Err(e) = &outcome {
                info!(target: UPDATE, "{e}");
            }
            tell_the_app(&build, &outcome);
            report::after(&build, &outcome, thread_app.has_exited());
        });
    if let Err(e) = spawned {
        info!(target: UPDATE, "Cannot start the update thread: {e}.");
        let reason = format!("cannot start the update thread: {e}");
        status::report(status::Report::Failed { reason: &reason });
    }
    Sidecar {
        app,
        finished,
        handoff,
    }
}

/// How long the launcher waits for the updater when the app cannot start.
const RESCUE_WAIT: Duration = Duration::from_secs(30);

/// Runs the updater in the foreground, for at most [`RESCUE_WAIT`]: for a
/// launch that failed before the app could run, so that a fixed build can
/// still arrive.
pub fn rescue(build: RunningBuild) {
    info!(target: UPDATE, "The app cannot start; looking for a fixed build before exiting.");
    start(build).finish_after_exit(RESCUE_WAIT);
}

impl Sidecar {
    /// Tells the sidecar the app has exited, then gives it at most `budget`
    /// to finish. Returns whether it finished. The process ends next, and
    /// the sidecar with it, but never in the middle of an install: one
    /// under way finishes first, and none starts after.
    pub fn finish_after_exit(self, budget: Duration) -> bool {
        self.app.mark_exited();
        let finished = self.finished.recv_timeout(budget);
        sys::block_installs();
        match finished {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => {
                info!(
                    target: UPDATE,
                    "Still busy {} ms after the app exited; leaving the rest for the next launch.",
                    budget.as_millis()
                );
                false
            }
        }
    }
}

/// What one run of the updater came to, when nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No check was due (the check interval, or a backoff).
    NotDue,
    /// The running build is the one announced, or nothing newer is.
    UpToDate,
    /// A build is announced that is not installed for now: it failed
    /// verification on every mirror lately.
    HeldBack { version: Option<String> },
    /// The announced build is installed: the next launch runs it.
    Updated { version: Option<String> },
}

/// Tells the app how this run ended. An installed update says nothing
/// more: `ready` was told before the install, which waits for the app's
/// exit.
fn tell_the_app(build: &RunningBuild, outcome: &Result<Outcome, UpdateError>) {
    use status::Report;
    let reason;
    status::report(match outcome {
        Ok(Outcome::Updated { .. }) => return,
        Ok(Outcome::NotDue) => Report::NotDue,
        Ok(Outcome::UpToDate) => Report::UpToDate {
            version: &build.version,
        },
        Ok(Outcome::HeldBack { version }) => {
            reason = format!(
                "build {} failed verification or its self-test lately; it is not downloaded again for now",
                version.as_deref().unwrap_or("announced")
            );
            Report::Failed { reason: &reason }
        }
        Err(e) => {
            reason = e.to_string();
            Report::Failed { reason: &reason }
        }
    });
}

fn check_and_update(build: &RunningBuild, app: &AppState) -> Result<Outcome, UpdateError> {
    sys::remove_replaced_leftover(&build.exe);

    let agent = http::agent(build);
    let policy = http::Policy {
        allow_insecure_http: build.settings.allow_insecure_http,
    };
    let (answer, manifest) =
        match check::fetch(build, &agent, policy, |answer| trust::accept(build, answer))? {
            check::Checked::NotDue => return Ok(Outcome::NotDue),
            check::Checked::Unchanged => return Ok(Outcome::UpToDate),
            check::Checked::Manifest(found) => *found,
        };
    let release = trust::choose(build, &manifest);
    report::trusted(build, &manifest, release.version.as_deref());

    let own = &build.packed.file;
    let own_id = sys::file_id(own).map_err(UpdateError::io("read", &build.exe))?;
    if is_same_build(&build.packed, release.size, release.crc32)? {
        info!(target: UPDATE, "CRC32 {} matches already.", release.url);
        forget_downloads(build, &own_id);
        check::settled(build, &answer, &manifest);
        return Ok(Outcome::UpToDate);
    }
    if let Some(announced) = &release.version
        && !build.settings.allow_downgrade
        && !is_newer(announced, &build.version)
    {
        info!(
            target: UPDATE,
            "Version '{announced}' is not newer than the running '{}'; not updating.",
            build.version
        );
        check::settled(build, &answer, &manifest);
        return Ok(Outcome::UpToDate);
    }
    let release_key = check::release_key(&release);
    if let Some(wait) = check::held_back(build, release_key) {
        info!(
            target: UPDATE,
            "Build {:08x} failed its self-test or failed verification on every mirror; not downloaded again for {wait} s.",
            release.crc32
        );
        check::settled(build, &answer, &manifest);
        return Ok(Outcome::HeldBack {
            version: release.version.clone(),
        });
    }
    if probation::refuses(build, &release) {
        check::settled(build, &answer, &manifest);
        return Ok(Outcome::HeldBack {
            version: release.version.clone(),
        });
    }
    info!(target: UPDATE, "URL to check '{}'.", release.url);

    // One updater at a time per executable, by a lock only this user can
    // take; then the executable's folder, held open, and its checks.
    let state = State::lock(build, &own_id)?;
    let target = match Target::open(build, own_id) {
        Ok(target) => target,
        Err(e) => {
            if let UpdateError::AlreadyReplaced = e {
                // Its key is dead: no updater will use it again.
                state.remove();
            }
            return Err(e);
        }
    };
    let download = Download {
        target: &target,
        state: &state,
    };
    let resumable = state.record().map(|info| info.file);
    target.remove_leftovers(resumable.as_deref());

    let (fetched, new) = match self_test::kept(&download, &release, build) {
        Some(kept) => kept,
        None => fetch_from_mirrors(&download, &agent, &release, release_key, policy, build)?,
    };
    let path = target.path_of(&fetched.name);
    info!(target: UPDATE, "Downloaded to '{}'.", path.display());
    // Reported ready only once it has passed.
    let (name, new) = self_test::check(&download, fetched, new, &release, build, release_key)?;
    status::report(status::Report::Ready {
        version: &new.metadata.version,
        restart_exit_code: crate::restart::offered(&build.settings),
    });

    // The new build's cache folder is prepared beside the app and the
    // install; the scope ends when both have.
    std::thread::scope(|scope| {
        prewarm::start(scope, build, &new);
        let installed = (name.as_str(), &new, release.crc32);
        install_after_exit(app, build, state, &target, installed)
    })?;
    Ok(Outcome::Updated {
        version: release.version.clone(),
    })
}

/// Step 6: once the app has exited, renames the verified download `name`
/// (open as `new`, its whole file's CRC-32 `crc32`) over the executable,
/// on probation (`probation`).
fn install_after_exit(
    app: &AppState,
    build: &RunningBuild,
    state: State,
    target: &Target,
    (name, new, crc32): (&str, &PackedFile, u32),
) -> Result<(), UpdateError> {
    let file = &new.file;
    app.wait_for_exit();
    // Complete and verified: nothing is left to resume. Forgotten before the
    // rename, so that no step after the rename leaves a record behind.
    state.clear();
    let download_id = sys::file_id(file).ok();
    let probation = probation::begin(build, new, crc32);
    let replaced = target.replace(name, file, &build.packed.file, probation.keeps_replaced());
    let download = Download {
        target,
        state: &state,
    };
    match replaced {
        Ok(true) => {
            // The key of the executable just replaced is dead.
            state.remove();
            check::concluded(build);
            info!(target: UPDATE, "Updated.");
            probation.installed(build);
            Ok(())
        }
        Ok(false) => {
            download.discard(name);
            Err(UpdateError::NotReplaceable {
                exe: build.exe.clone(),
                reason: "it was replaced while the app ran".into(),
            })
        }
        Err(e) => {
            // Removed only if the name still holds our download: after a
            // failed swap back, another build may be there.
            let still_ours = target
                .dir()
                .stat(name)
                .ok()
                .flatten()
                .zip(download_id)
                .is_some_and(|(now, ours)| now.same_file(&ours));
            if still_ours {
                download.discard(name);
            }
            Err(e)
        }
    }
}

/// The running build is the announced one: nothing downloaded for this
/// executable will be installed. Its downloads are removed, unless another
/// updater of it is at work (then the lock is held: it cleans up itself),
/// and so is a previous build kept beside it once it is off probation.
fn forget_downloads(build: &RunningBuild, own_id: &sys::FileId) {
    let Ok(state) = State::lock_existing(build, own_id) else {
        return;
    };
    if let Ok(target) = Target::open(build, *own_id) {
        target.remove_leftovers(None);
        if !probation::is_on_probation(build, own_id) {
            target.remove_previous();
        }
    }
    if let Some(state) = state {
        state.remove();
    }
}

/// URLs of a build tried at most (its url and mirrors): the manifest is
/// not trusted to name an unbounded number.
const MAX_URLS: usize = 8;

/// Fetches and checks the build `release` names from its URLs (its url,
/// then its mirrors), each at most once, starting at the one that
/// delivered last (`release_key` names the release in the schedule): a
/// mirror that fails on the network or serves other bytes hands over to
/// the next, which resumes what the last one left. The last mirror's
/// error, or one that is not the server's fault, ends it.
fn fetch_from_mirrors(
    download: &Download<'_>,
    agent: &Agent,
    release: &Release,
    release_key: u32,
    policy: http::Policy,
    build: &RunningBuild,
) -> Result<(Fetched, PackedFile), UpdateError> {
    let mut urls: Vec<&str> = Vec::new();
    for url in release.urls() {
        if !urls.contains(&url) && urls.len() < MAX_URLS {
            urls.push(url);
        }
    }
    let count = urls.len();
    let first = check::first_mirror(build, release_key, count);
    let mut wrong_tails = Vec::new();
    let mut all_wrong = true;
    for k in 0..count {
        let i = (first + k) % count;
        let more = k + 1 < count;
        let url = urls[i];
        if count > 1 {
            info!(target: UPDATE, "Mirror {} of {count}: '{url}'.", i + 1);
            // Should this process end in the middle (a stalled mirror, the
            // app exited), the next launch starts at the next mirror.
            check::start_next_at_mirror(build, release_key, (i + 1) % count);
        }
        let at = Release {
            url: url.to_owned(),
            ..release.clone()
        };
        let tried = Mirror {
            more,
            wrong_tails: &mut wrong_tails,
        };
        let e = match fetch_from(download, agent, &at, policy, build, tried) {
            Ok(done) => {
                if count > 1 {
                    check::start_next_at_mirror(build, release_key, i);
                }
                return Ok(done);
            }
            Err(e) => e,
        };
        all_wrong &= is_wrong_build(&e);
        if !more && all_wrong {
            trace_held_back(release, check::release_failed(build, release_key));
        }
        if !more || !is_the_servers_fault(&e) {
            if matches!(
                e,
                UpdateError::OtherApp { .. } | UpdateError::NotNewer { .. }
            ) {
                // Refused, not failed: asking again before the interval
                // would only be refused again.
                check::concluded(build);
            }
            return Err(e);
        }
        info!(target: UPDATE, "Mirror {} of {count} failed: {e}", i + 1);
    }
    // The release's own url is always among `urls`: the last one returned.
    Err(UpdateError::Download {
        url: release.url.clone(),
        reason: "no URL to fetch it from".into(),
    })
}

/// Traces that the release failed verification on every mirror and is
/// not downloaded again for `wait` seconds.
fn trace_held_back(release: &Release, wait: u64) {
    info!(
        target: UPDATE,
        "Build {:08x} failed verification on every mirror; not downloaded again for {wait} s.",
        release.crc32
    );
}

/// What the mirror loop tells [`fetch_from`] about the other mirrors.
struct Mirror<'a> {
    /// Whether another mirror follows: then a network failure moves on to
    /// it at once, rather than retrying this one another way.
    more: bool,
    /// The ends (trailer and metadata) of builds that failed verification
    /// on earlier mirrors: a mirror serving the same end serves the same
    /// wrong build, and is not downloaded from.
    wrong_tails: &'a mut Vec<Vec<u8>>,
}

/// Fetches and checks the build `release` names from its `url`: its end
/// first when the server serves ranges (a build that would be refused is
/// not downloaded at all), then only what changed when the running build
/// holds enough of it, else (or if that fails) all of it.
fn fetch_from(
    download: &Download<'_>,
    agent: &Agent,
    release: &Release,
    policy: http::Policy,
    build: &RunningBuild,
    mirror: Mirror<'_>,
) -> Result<(Fetched, PackedFile), UpdateError> {
    let layout =
        match background::network(|| tail::fetch(agent, &release.url, policy, release.size)) {
            Err(e) if mirror.more => return Err(e),
            Err(_) => None,
            Ok(layout) => layout,
        };
    if layout.is_none() {
        info!(
            target: UPDATE,
            "The server sent no end of the build (no range support?); downloading it whole."
        );
    }
    if let Some(layout) = &layout {
        if let Err(e) = verify::check_identity(&layout.metadata, build, &release.url) {
            download.forget();
            return Err(e);
        }
        if mirror.wrong_tails.contains(&layout.tail) {
            return Err(UpdateError::SameWrongBuild {
                url: release.url.clone(),
            });
        }
        let platform = background::network(|| {
            verify::check_platform_ahead(agent, policy, release, layout, build)
        });
        if let Err(e) = platform {
            download.forget();
            return Err(e);
        }
    }
    let plan = layout
        .as_ref()
        .and_then(|layout| incremental::plan(layout, &build.packed));
    let attempt = |how: How<'_>| {
        fetch_and_check(
            download,
            agent,
            release,
            policy,
            build,
            layout.as_ref(),
            how,
        )
    };
    let fetched = match (&plan, &layout) {
        (Some(plan), Some(layout)) => attempt(How::Assemble(layout, plan)).or_else(|e| {
            // A complete build that failed verification, or a network that
            // failed while another mirror waits: not downloaded again here.
            if is_wrong_build(&e) || (mirror.more && is_network_failure(&e)) {
                return Err(e);
            }
            info!(target: UPDATE, "Incremental update failed: {e} Downloading the whole build.");
            attempt(How::Whole)
        }),
        _ => attempt(How::Whole),
    };
    if let (Err(e), Some(layout)) = (&fetched, &layout)
        && is_wrong_build(e)
    {
        mirror.wrong_tails.push(layout.tail.clone());
    }
    fetched
}

/// Whether `error` says a complete download is not the announced build
/// (size, CRC-32, signature, or not a packed build).
fn is_wrong_build(error: &UpdateError) -> bool {
    matches!(
        error,
        UpdateError::Crc { .. }
            | UpdateError::Size { .. }
            | UpdateError::BadSignature { .. }
            | UpdateError::Unsigned { .. }
            | UpdateError::NotPacked { .. }
            | UpdateError::SameWrongBuild { .. }
    )
}

/// Whether `error` is the network's: a connection, a timeout, a transfer
/// cut short, an error status.
fn is_network_failure(error: &UpdateError) -> bool {
    matches!(
        error,
        UpdateError::Transport { .. } | UpdateError::Download { .. } | UpdateError::Status { .. }
    )
}

/// Whether `error` comes from what a server answered (or did not), so that
/// another mirror may do better; not from this machine.
fn is_the_servers_fault(error: &UpdateError) -> bool {
    !matches!(
        error,
        UpdateError::Busy
            | UpdateError::AlreadyReplaced
            | UpdateError::NotReplaceable { .. }
            | UpdateError::Replace { .. }
            | UpdateError::Io { .. }
            | UpdateError::Format(_)
    )
}

/// How a build is fetched.
#[derive(Clone, Copy)]
enum How<'a> {
    /// Downloaded whole.
    Whole,
    /// Assembled from the running build and the parts that changed.
    Assemble(&'a Layout, &'a Plan),
}

/// Fetches the announced build (resuming a partial one) and checks it;
/// returns it synced, verified, and open as a packed build. Whatever fails
/// is discarded, unless kept for resuming.
fn fetch_and_check(
    download: &Download<'_>,
    agent: &Agent,
    release: &Release,
    policy: http::Policy,
    build: &RunningBuild,
    layout: Option<&Layout>,
    how: How<'_>,
) -> Result<(Fetched, PackedFile), UpdateError> {
    let helped = background::network(|| {
        download_with_helpers(download, agent, release, policy, build, layout, how)
    });
    let fetched = helped.fetched?;
    // The disk writes the download out while the CPU checks it: the two
    // costs overlap, and both must succeed before anything is replaced.
    let (synced, checked) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| fetched.file.sync_all());
        let checked = verify::check(
            &fetched,
            release,
            build,
            helped.payload_checked,
            helped.hashed,
        );
        let synced = sync
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread failed")));
        (synced, checked)
    });
    let path = download.target.path_of(&fetched.name);
    if let Err(e) = synced {
        download.discard(&fetched.name);
        return Err(UpdateError::io("flush", path)(e));
    }
    match checked {
        Ok(new) => Ok((fetched, new)),
        Err(e) => {
            download.discard(&fetched.name);
            Err(e)
        }
    }
}

/// What [`download_with_helpers`] brings back.
struct Helped<'a> {
    fetched: Result<Fetched, UpdateError>,
    /// The layout the payload was checked against while it downloaded.
    payload_checked: Option<&'a Layout>,
    /// The length and hash of what was hashed for the signature.
    hashed: Option<(u64, FileDigest)>,
}

/// Downloads the new build with helpers beside it: one writes it out to
/// disk as it arrives; when its end (`layout`) was fetched and the build
/// takes unsigned updates, one checks its payload as it arrives; for a
/// build that only installs signed updates, one hashes it for the
/// signature. Without the helpers the same work
/// happens after the download; they run at a low priority, so that they
/// use the CPU the download leaves idle instead of slowing it down.
fn download_with_helpers<'a>(
    download: &Download<'_>,
    agent: &Agent,
    release: &Release,
    policy: http::Policy,
    build: &RunningBuild,
    layout: Option<&'a Layout>,
    how: How<'_>,
) -> Helped<'a> {
    let progress = Progress::of(release.size);
    std::thread::scope(|scope| {
        let helper = |name: &str| std::thread::Builder::new().name(name.into());
        let _ = helper("onefile-writeback").spawn_scoped(scope, || {
            sys::lower_thread_priority();
            download::write_back(&progress);
        });
        // A build that installs only signed updates decodes nothing of a
        // download before its signature is checked (a server without the
        // key could otherwise make it decode whatever sizes it declares):
        // its payload is checked after the signature, in `verify::check`.
        let keyed = !build.settings.public_keys.is_empty();
        let checker = layout.filter(|_| !keyed).and_then(|layout| {
            helper("onefile-check")
                .spawn_scoped(scope, || {
                    sys::lower_thread_priority();
                    verify::check_while_downloading(layout, &progress)
                })
                .ok()
        });
        let hasher = keyed
            .then(|| {
                helper("onefile-hash")
                    .spawn_scoped(scope, || {
                        sys::lower_thread_priority();
                        verify::hash_while_downloading(&progress)
                    })
                    .ok()
            })
            .flatten();
        let max_len = build.settings.max_download_size;
        let hash = checker.is_none();
        let fetched = match how {
            How::Whole => download.fetch(agent, release, policy, max_len, &progress, hash),
            How::Assemble(layout, plan) => download.assemble(
                agent,
                release,
                policy,
                max_len,
                layout,
                plan,
                &build.packed,
                &progress,
                hash,
            ),
        };
        progress.end();
        let checked = checker.is_some_and(|checker| checker.join().unwrap_or(false));
        Helped {
            fetched,
            payload_checked: layout.filter(|_| checked),
            hashed: hasher.and_then(|hasher| hasher.join().ok().flatten()),
        }
    })
}

/// Whether our executable is the announced build. Different sizes settle it
/// at once; otherwise the CRC-32 is assembled from the stub, metadata and
/// trailer and the payload CRC-32 the trailer records, never by reading
/// the whole (possibly large) file at every launch.
fn is_same_build(packed: &PackedFile, size: Option<u64>, crc32: u32) -> Result<bool, UpdateError> {
    if size.is_some_and(|size| size != packed.len) {
        return Ok(false);
    }
    Ok(packed.whole_file_crc32().map_err(UpdateError::Format)? == crc32)
}
