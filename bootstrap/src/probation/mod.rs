//! Probation and rollback: a newly installed build proves that it starts
//! before the build it replaced is let go.
//!
//! 1. The updater that installs a build writes, before its rename, a
//!    record keyed by the new executable's file identity in the app's
//!    private cache folder ([`begin`]; the files are in `record`), and
//!    keeps the replaced build beside the new one as
//!    `.<exe name>.previous` (`update::install`).
//! 2. A launch of a build that has a record ([`watch`]) runs the app as a
//!    child (even with updates turned off), enters its own pid as pending,
//!    gives the first launch `ONEFILE_FIRST_RUN=1` and
//!    `ONEFILE_PREVIOUS_VERSION`, and names a health file
//!    (`ONEFILE_HEALTH_FILE`) that the app may create. A pending launcher
//!    whose process is gone never reported: it counts as a failed start.
//! 3. Healthy (the app ran `healthy_after_ms`, created the health file, or
//!    exited without a crash): the record and the previous build go.
//! 4. Failed (the build cannot be unpacked or executed, the app died of a
//!    crash signal or exception, or exited with a code listed unhealthy):
//!    counted. After `rollback_after` failures in a row the previous build
//!    is renamed back over the executable, if the name still holds the bad
//!    build (`sys::replace_executable`); the bad build is remembered
//!    (`.rolled-back`: the updater does not install it again while it is
//!    announced, [`refuses`]); the restored executable runs this launch,
//!    with `ONEFILE_ROLLED_BACK_FROM`. The rollback's report is left
//!    pending for the next updater run (`update::report`), which claims it.
//!
//! A record changes only under its lock file, and is replaced whole, so
//! concurrent launches count each start once and only one rolls back.

mod record;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use payload_tools::PackedFile;
use payload_tools::manifest::Release;
use payload_tools::metadata::UpdateSettings;

use crate::cache::Cache;
use crate::error::LaunchError;
use crate::run::{self, AppExit};
use crate::sys::{self, Dir, FileId};
use crate::trace::{UPDATE, info};
use crate::update::RunningBuild;
use crate::update::report::{self, Reason};
use record::{Pending, Record};

/// Set for the app on the first launch of a newly installed build.
const FIRST_RUN: &str = "ONEFILE_FIRST_RUN";
/// The version the newly installed build replaced, with [`FIRST_RUN`].
const PREVIOUS_VERSION: &str = "ONEFILE_PREVIOUS_VERSION";
/// A path the app may create to say it is healthy.
const HEALTH_FILE: &str = "ONEFILE_HEALTH_FILE";
/// The version a rollback left, for the restored executable's app. The
/// launcher that rolled back sets it to `<its pid>:<version>` for the
/// restored launcher (the same process on Unix, which `exec`s; its child on
/// Windows): any other value, inherited by a process the app started, is
/// ignored and never passed on.
pub const ROLLED_BACK_FROM: &str = "ONEFILE_ROLLED_BACK_FROM";

/// How often a launch on probation looks for the health file.
const HEALTH_POLL: Duration = Duration::from_millis(200);

/// The outcome of this process's launch is decided once, whoever decides
/// it (the health timer, the app's exit, a failure to start).
static CONCLUDED: Mutex<bool> = Mutex::new(false);

/// The hidden name the replaced build keeps beside the executable `exe_name`.
pub fn previous_name(exe_name: &str) -> String {
    format!(".{exe_name}.previous")
}

/// A probation record written for a download about to be installed;
/// removed again when dropped, unless [`Candidate::installed`].
#[derive(Debug)]
pub struct Candidate {
    written: Option<(Dir, String)>,
    /// The running build's own record, when it is itself on probation and
    /// the last healthy build is kept: that one stays the previous build,
    /// and this record goes once the new build is in.
    unproven: Option<(Dir, String, String)>,
}

/// Step 1: writes the probation record of the verified download `new`
/// (its whole file's CRC-32 `crc32`), which replaces `build`.
pub fn begin(build: &RunningBuild, new: &PackedFile, crc32: u32) -> Candidate {
    let none = Candidate {
        written: None,
        unproven: None,
    };
    let (Some((folder, _)), Ok(id)) = (&build.cache_folder, sys::file_id(&new.file)) else {
        return none;
    };
    let version = &new.metadata.version;
    // A build without update settings has no probation settings either.
    if new.metadata.update.is_none()
        || !record::is_storable(version)
        || !record::is_storable(&build.version)
    {
        return none;
    }
    let (name, _) = record::names(&id);
    let mut record = Record {
        payload_crc32: new.trailer.payload_crc32,
        size: new.len,
        crc32,
        version: version.clone(),
        previous_version: build.version.clone(),
        previous_payload_crc32: build.packed.trailer.payload_crc32,
        previous_size: build.packed.len,
        first_run_claimed: false,
        failures: 0,
        last_failure: String::new(),
        pending: Vec::new(),
    };
    let unproven = unproven_with_previous(build, folder);
    if let Some((_, _, running)) = &unproven {
        record.previous_version = running.previous_version.clone();
        record.previous_payload_crc32 = running.previous_payload_crc32;
        record.previous_size = running.previous_size;
        info!(
            target: UPDATE,
            "{} is itself on probation: {} stays the previous build.",
            build.version,
            record.previous_version
        );
    }
    let unproven = unproven.map(|(dir, name, _)| {
        let lock = record::names_lock(&name);
        (dir, name, lock)
    });
    match folder.try_clone() {
        Ok(dir) if record::store(&dir, &name, &record).is_ok() => Candidate {
            written: Some((dir, name)),
            unproven,
        },
        _ => {
            info!(target: UPDATE, "Cannot write the probation record; {version} is installed without.");
            none
        }
    }
}

/// The running build's probation record, if it is on probation and the
/// build kept before it (`.previous`) is still there.
fn unproven_with_previous(build: &RunningBuild, folder: &Dir) -> Option<(Dir, String, Record)> {
    let own = sys::file_id(&build.packed.file).ok()?;
    let (name, _) = record::names(&own);
    let running = record::load(folder, &name)?;
    if running.payload_crc32 != build.packed.trailer.payload_crc32
        || running.size != build.packed.len
    {
        return None;
    }
    let exe = sys::long_path(&build.exe);
    let exe_dir = Dir::open(payload_tools::persist::parent_dir(&exe)).ok()?;
    exe_dir.stat(&previous_name(&file_name(&exe))).ok()??;
    Some((folder.try_clone().ok()?, name, running))
}

impl Candidate {
    /// Whether the build the install replaces is kept as the previous
    /// build: not when it is itself unproven and a healthy one is kept.
    pub fn keeps_replaced(&self) -> bool {
        self.unproven.is_none()
    }

    /// The build was installed: its record stays. Without one, nothing
    /// can roll back, and the previous build kept beside it goes.
    pub fn installed(mut self, build: &RunningBuild) {
        let exe = sys::long_path(&build.exe);
        let previous = previous_name(&file_name(&exe));
        if let Some((dir, name, lock)) = self.unproven.take() {
            let _ = dir.remove_file(&name);
            let _ = dir.remove_file(&lock);
        }
        if let Some((dir, name)) = self.written.take() {
            let kept = record::load(&dir, &name).map(|r| r.previous_version);
            info!(
                target: UPDATE,
                "On probation until it starts well; '{previous}' keeps {} for a rollback.",
                kept.as_deref().unwrap_or(&build.version)
            );
        } else if let Ok(dir) = Dir::open(payload_tools::persist::parent_dir(&exe)) {
            let _ = dir.remove_file(&previous);
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if let Some((dir, name)) = &self.written {
            let _ = dir.remove_file(name);
        }
    }
}

/// Whether the executable `own` of `build` is on probation (its record
/// exists); `true` when that cannot be told, which keeps its previous
/// build.
pub fn is_on_probation(build: &RunningBuild, own: &FileId) -> bool {
    let Some((folder, _)) = &build.cache_folder else {
        return true;
    };
    let (name, _) = record::names(own);
    !matches!(folder.stat(&name), Ok(None))
}

/// Whether the updater must not install `release`: this app rolled back
/// from that very build. A different build announced ends the memory.
pub fn refuses(build: &RunningBuild, release: &Release) -> bool {
    let Some((folder, _)) = &build.cache_folder else {
        return false;
    };
    let Some(bad) = record::load_bad(folder) else {
        return false;
    };
    if bad.crc32 == release.crc32 && release.size.is_none_or(|size| size == bad.size) {
        info!(
            target: UPDATE,
            "Not installing {}: rolled back from it after failed starts (CRC32 {:08x}).",
            bad.version,
            bad.crc32
        );
        return true;
    }
    info!(target: UPDATE, "A build other than the rolled-back {} is announced.", bad.version);
    let _ = folder.remove_file(record::BAD_NAME);
    false
}

/// A launch on probation, observing its app.
#[derive(Debug)]
pub struct Watch {
    probe: Probe,
    health: String,
}

/// What a launch knows of its probation record.
#[derive(Debug)]
struct Probe {
    /// The app's cache folder, held (from `Cache::folder`): the record, its
    /// lock and the health file are looked up through it, and its path
    /// names the health file for the app.
    dir: Dir,
    folder: PathBuf,
    exe: PathBuf,
    own: FileId,
    app: String,
    payload_crc32: u32,
    size: u64,
    settings: UpdateSettings,
    record: String,
    lock: String,
}

/// How a launch on probation ended.
enum Outcome {
    Healthy(String),
    Failed(String),
    /// Neither: the app was stopped (a signal that is not a crash).
    Stopped(String),
}

/// Step 2, at launch: if the running build is on probation, sets the app's
/// variables in `cmd`, enters this launch as pending and starts the health
/// timer. Rolls back first if failed starts that never reported (killed
/// launchers) reached the limit: then it does not return unless running
/// the restored executable failed. The probation variables the launcher
/// itself was given are never passed on.
pub fn watch(
    exe: &Path,
    packed: &PackedFile,
    cache: &Cache,
    cmd: &mut Command,
) -> Result<Option<Watch>, LaunchError> {
    for name in [FIRST_RUN, PREVIOUS_VERSION, HEALTH_FILE, ROLLED_BACK_FROM] {
        cmd.env_remove(name);
    }
    if let Some(from) = crate::launch::rolled_back_from() {
        cmd.env(ROLLED_BACK_FROM, from);
    }
    let Some(probe) = Probe::find(exe, packed, cache) else {
        return Ok(None);
    };
    let Some((lock, mut record)) = probe.lock_record(true)? else {
        return Ok(None);
    };
    let settings = &probe.settings;
    let (alive, gone): (Vec<Pending>, Vec<Pending>) =
        (record.pending.iter()).partition(|pending| sys::process_alive(pending.pid));
    record.pending = alive;
    let unstarted = gone.iter().filter(|pending| !pending.started).count();
    if unstarted > 0 {
        record.failures = record.failures.saturating_add(unstarted as u32);
        record.last_failure = "a launcher that never started the app".into();
        info!(
            target: UPDATE,
            "{unstarted} start(s) of {} never reached the app: failed.",
            record.version
        );
    }
    if gone.len() > unstarted {
        info!(
            target: UPDATE,
            "{} start(s) of {} ended unobserved (launcher killed after the app started): not counted.",
            gone.len() - unstarted,
            record.version
        );
    }
    if settings.rollback_after > 0 && record.failures >= settings.rollback_after {
        return match probe.roll_back(lock, record, true) {
            Some(failed) => Err(failed),
            None => Ok(None),
        };
    }
    if !record.first_run_claimed {
        record.first_run_claimed = true;
        cmd.env(FIRST_RUN, "1")
            .env(PREVIOUS_VERSION, &record.previous_version);
        info!(target: UPDATE, "First run of {} after {}.", record.version, record.previous_version);
    }
    let pid = std::process::id();
    if record.pending.len() < record::MAX_PENDING {
        record.pending.push(Pending {
            pid,
            started: false,
        });
    }
    probe.store(&record);
    drop(lock);
    let health = {
        use std::hash::{BuildHasher, RandomState};
        let random = RandomState::new().hash_one(pid);
        format!(".health-{pid}-{random:016x}")
    };
    cmd.env(HEALTH_FILE, probe.folder.join(&health));
    info!(
        target: UPDATE,
        "{} is on probation: {} failed start(s) so far, healthy after {} ms.",
        record.version,
        record.failures,
        settings.healthy_after_ms
    );
    let watch = Watch { probe, health };
    watch.start_timer();
    Ok(Some(watch))
}

/// The report's class of how the last failed start ended, from the text
/// this module stored for it ([`Watch::app_exited`], [`start_failed`],
/// [`watch`]).
fn rollback_reason(last_failure: &str) -> Reason {
    if last_failure.starts_with("killed by signal") || last_failure.starts_with("exception") {
        Reason::Crash
    } else if last_failure.starts_with("exit code") {
        Reason::ExitCode
    } else {
        Reason::Start
    }
}

/// Step 4 for a launch that could not unpack or execute its build: a failed
/// start, if the build is on probation. Returns unless it rolled back.
pub fn start_failed(exe: &Path, packed: &PackedFile, cache: &Cache, err: &LaunchError) {
    if let Some(probe) = Probe::find(exe, packed, cache)
        && let Err(e) = probe.conclude(
            Outcome::Failed(record::storable(&format!("cannot start: {err}"))),
            false,
        )
    {
        info!(target: UPDATE, "{e}");
    }
}

/// The app of the launch `watch` (if on probation) was spawned: from now
/// on, a kill of this launcher is no failed start.
pub fn started(watch: Option<&Watch>) {
    let Some(watch) = watch else {
        return;
    };
    let probe = &watch.probe;
    if let Ok(Some((_lock, mut record))) = probe.lock_record(false) {
        let pid = std::process::id();
        for pending in record.pending.iter_mut().filter(|p| p.pid == pid) {
            pending.started = true;
        }
        probe.store(&record);
    }
}

impl Watch {
    /// Steps 3 and 4, at the app's exit.
    pub fn app_exited(self, exit: AppExit) -> Result<(), LaunchError> {
        let dir = &self.probe.dir;
        let said_healthy = dir.stat(&self.health).ok().flatten().is_some();
        if said_healthy {
            let _ = dir.remove_file(&self.health);
        }
        let unhealthy = &self.probe.settings.unhealthy_exit_codes;
        let outcome = match exit {
            _ if said_healthy => Outcome::Healthy("it created its health file".into()),
            AppExit::Signal(signal) if sys::is_crash_signal(signal) => {
                Outcome::Failed(format!("killed by signal {signal}"))
            }
            AppExit::Signal(signal) => Outcome::Stopped(format!("stopped by signal {signal}")),
            AppExit::Code(code) if unhealthy.contains(&code) => {
                Outcome::Failed(format!("exit code {code}, listed unhealthy"))
            }
            AppExit::Code(code) if sys::is_crash_code(code) => {
                Outcome::Failed(format!("exception 0x{:08X}", code as u32))
            }
            AppExit::Code(code) => Outcome::Healthy(format!("it exited with code {code}")),
        };
        self.probe.conclude(outcome, true)
    }

    /// Healthy after `healthy_after_ms` of running, or once the health file
    /// exists, whichever comes first.
    fn start_timer(&self) {
        let probe = match self.probe.try_clone() {
            Ok(probe) => probe,
            Err(e) => {
                info!(target: UPDATE, "Cannot start the probation timer ({e}); the app's exit decides.");
                return;
            }
        };
        let health = self.health.clone();
        let after = Duration::from_millis(probe.settings.healthy_after_ms);
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("onefile-probation".into())
            .spawn(move || {
                loop {
                    let left = after.saturating_sub(started.elapsed());
                    let said = probe.dir.stat(&health).ok().flatten().is_some();
                    if said || left.is_zero() {
                        let why = match said {
                            true => "it created its health file".to_owned(),
                            false => format!("it ran {} ms", after.as_millis()),
                        };
                        // A healthy outcome never rolls back.
                        let _ = probe.conclude(Outcome::Healthy(why), true);
                        return;
                    }
                    std::thread::sleep(left.min(HEALTH_POLL));
                }
            });
        if let Err(e) = spawned {
            info!(target: UPDATE, "Cannot start the probation timer ({e}); the app's exit decides.");
        }
    }
}

impl Probe {
    /// The probation record of the running build, if there is one: a
    /// `stat` in the cache folder for a build that is not on probation.
    fn find(exe: &Path, packed: &PackedFile, cache: &Cache) -> Option<Probe> {
        let settings = packed.metadata.update.clone()?;
        let (folder, folder_path) = cache.folder().ok()?;
        let own = sys::file_id(&packed.file).ok()?;
        let (record, lock) = record::names(&own);
        folder.stat(&record).ok()??;
        Some(Probe {
            dir: folder,
            folder: folder_path,
            exe: sys::long_path(exe),
            own,
            app: packed.metadata.name.clone(),
            payload_crc32: packed.trailer.payload_crc32,
            size: packed.len,
            settings,
            record,
            lock,
        })
    }

    /// Takes the record's lock and reads it. `None` when there is no record
    /// of this build any more; if meanwhile another launch rolled back
    /// (the executable's name holds another file), a launch (`at_launch`)
    /// runs that instead.
    fn lock_record(&self, at_launch: bool) -> Result<Option<(File, Record)>, LaunchError> {
        let dir = &self.dir;
        let Ok(lock) = sys::lock_file(dir, &self.lock, true) else {
            return Ok(None);
        };
        match record::load(dir, &self.record) {
            Some(record)
                if record.payload_crc32 == self.payload_crc32 && record.size == self.size =>
            {
                Ok(Some((lock, record)))
            }
            Some(_) => {
                // Another file had this identity once.
                self.forget();
                Ok(None)
            }
            None => {
                // Probation ended while this launch waited; the lock file
                // it re-created goes too.
                self.forget();
                drop(lock);
                if at_launch && !self.name_holds_own() {
                    info!(target: UPDATE, "The executable was replaced meanwhile; running it.");
                    return Err(self.run_restored(None));
                }
                Ok(None)
            }
        }
    }

    /// Decides this launch's outcome, once per process. `app_ran`: a
    /// rollback restores the previous build without running it again (the
    /// app had this launch's stdio and arguments).
    fn conclude(&self, outcome: Outcome, app_ran: bool) -> Result<(), LaunchError> {
        let mut concluded = CONCLUDED.lock().unwrap_or_else(|p| p.into_inner());
        if *concluded {
            return Ok(());
        }
        *concluded = true;
        let Some((lock, mut record)) = self.lock_record(false)? else {
            return Ok(());
        };
        let pid = std::process::id();
        record.pending.retain(|p| p.pid != pid);
        let limit = self.settings.rollback_after;
        match outcome {
            Outcome::Healthy(why) => {
                self.forget();
                // Only beside this build: once another replaced it, the
                // previous build is that one's.
                if self.name_holds_own()
                    && let Some((exe_dir, exe_name)) = self.exe_dir()
                {
                    remove_previous_of(&exe_dir, &self.exe, &exe_name, &record);
                }
                info!(
                    target: UPDATE,
                    "{} is healthy ({why}); the previous build ({}) is removed.",
                    record.version,
                    record.previous_version
                );
                Ok(())
            }
            Outcome::Stopped(why) => {
                info!(target: UPDATE, "{} was {why}: neither healthy nor failed.", record.version);
                self.store(&record);
                Ok(())
            }
            Outcome::Failed(why) => {
                record.failures = record.failures.saturating_add(1);
                record.last_failure = record::storable(&why);
                info!(
                    target: UPDATE,
                    "Failed start {} of {} ({why}).",
                    record.failures,
                    record.version
                );
                if limit > 0 && record.failures >= limit {
                    return self.roll_back(lock, record, !app_ran).map_or(Ok(()), Err);
                }
                self.store(&record);
                Ok(())
            }
        }
    }

    /// Renames the previous build back over the executable, remembers the
    /// bad one, and (`run`) runs the restored executable; returns an error
    /// only if that could not run. If there is nothing to roll back to, or
    /// the restored build is not to run now, `None` says to go on.
    fn roll_back(&self, lock: File, record: Record, run: bool) -> Option<LaunchError> {
        let restored = self.restore_previous(&record);
        // Decided: the launches waiting for the lock may go on (the
        // restored executable may run for long).
        self.forget();
        drop(lock);
        let restored = match restored {
            Ok(version) => version,
            Err(Refusal::Replaced) => {
                info!(target: UPDATE, "Not rolling back: the executable was replaced meanwhile.");
                return None;
            }
            Err(Refusal::Cannot(why)) => {
                info!(
                    target: UPDATE,
                    "Cannot roll back from {} ({why}); it stays, no longer on probation.",
                    record.version
                );
                return None;
            }
        };
        info!(
            target: UPDATE,
            "Rolled back from {} to {restored} after {} failed starts (last: {}).",
            record.version,
            record.failures,
            record.last_failure
        );
        let reason = rollback_reason(&record.last_failure);
        let left = report::leave_rollback(
            &self.dir,
            &self.folder,
            &self.settings,
            &record.version,
            &restored,
            reason,
        );
        match left {
            Ok(true) => {
                info!(target: UPDATE, "The rollback's report is left for the next update check.")
            }
            Ok(false) => {}
            Err(e) => info!(target: UPDATE, "Cannot leave the rollback's report: {e}."),
        }
        if !run {
            eprintln!(
                "{}: {} failed to start {} times; {restored} was restored and runs from the next launch",
                self.app, record.version, record.failures
            );
            return None;
        }
        Some(self.run_restored(Some(&record.version)))
    }

    fn restore_previous(&self, record: &Record) -> Result<String, Refusal> {
        let cannot = |why: &str| Refusal::Cannot(why.to_owned());
        let (exe_dir, exe_name) = self
            .exe_dir()
            .ok_or_else(|| cannot("its folder cannot be opened"))?;
        let now = exe_dir
            .stat(&exe_name)
            .map_err(|e| Refusal::Cannot(e.to_string()))?;
        if !now.is_some_and(|now| now.same_file(&self.own)) {
            return Err(Refusal::Replaced);
        }
        let folder = exe_dir.id().map_err(|e| Refusal::Cannot(e.to_string()))?;
        sys::check_unshared_dir(&exe_dir, &folder)
            .map_err(|why| Refusal::Cannot(format!("its folder is not ours alone: {why}")))?;
        let previous = previous_name(&exe_name);
        let path = payload_tools::persist::parent_dir(&self.exe).join(&previous);
        let kept = exe_dir
            .stat(&previous)
            .ok()
            .flatten()
            .ok_or_else(|| cannot("no previous build is kept"))?;
        // The file checked is the file opened (not a link to elsewhere),
        // ours, and a build of this app.
        let opened = PackedFile::open(&path)
            .ok()
            .flatten()
            .ok_or_else(|| cannot("the previous build is not a packed build"))?;
        let id = sys::file_id(&opened.file).map_err(|e| Refusal::Cannot(e.to_string()))?;
        if !id.same_file(&kept) || opened.metadata.name != self.app {
            return Err(cannot("the previous build is not one of this app"));
        }
        if !record.is_previous(&opened) {
            return Err(cannot("the previous build is not the one replaced"));
        }
        sys::check_replaceable(&opened.file, &id).map_err(Refusal::Cannot)?;
        // Remembered first: should the process end right after the rename,
        // the restored build's updater already knows.
        let bad = record::Bad {
            crc32: record.crc32,
            size: record.size,
            version: record.version.clone(),
        };
        if let Err(e) = record::store_bad(&self.dir, &bad) {
            return Err(Refusal::Cannot(format!(
                "cannot remember the bad build: {e}"
            )));
        }
        match sys::replace_executable(
            &exe_dir,
            &previous,
            &opened.file,
            &exe_name,
            &self.own,
            None,
        ) {
            Ok(true) => Ok(opened.metadata.version.clone()),
            Ok(false) => Err(Refusal::Replaced),
            Err(e) => Err(Refusal::Cannot(e.to_string())),
        }
    }

    /// Runs what the executable's name holds, with this launch's arguments,
    /// telling it the version rolled back from, if any.
    fn run_restored(&self, rolled_back_from: Option<&str>) -> LaunchError {
        let mut args = std::env::args_os();
        let argv0: OsString = args
            .next()
            .unwrap_or_else(|| self.exe.clone().into_os_string());
        let mut cmd = Command::new(&self.exe);
        cmd.args(args);
        match rolled_back_from {
            Some(version) => cmd.env(
                ROLLED_BACK_FROM,
                format!("{}:{version}", std::process::id()),
            ),
            None => cmd.env_remove(ROLLED_BACK_FROM),
        };
        set_argv0(&mut cmd, argv0);
        let source = run::exec(cmd, &[]);
        LaunchError::CannotExecute {
            path: self.exe.clone(),
            noexec_mount: false,
            source,
        }
    }

    /// Replaces the record (under its lock). A record that cannot be
    /// written loses what this launch adds to it (a pending start, that
    /// the app started, a failure): said, as that can delay or hasten a
    /// rollback by one start.
    fn store(&self, record: &Record) {
        if let Err(e) = record::store(&self.dir, &self.record, record) {
            info!(
                target: UPDATE,
                "Cannot write the probation record of {} ({e}).",
                record.version
            );
        }
    }

    /// Removes the record and its lock: probation is over.
    fn forget(&self) {
        let _ = self.dir.remove_file(&self.record);
        let _ = self.dir.remove_file(&self.lock);
    }

    /// A second handle on the same record, for the health timer's thread.
    fn try_clone(&self) -> std::io::Result<Probe> {
        Ok(Probe {
            dir: self.dir.try_clone()?,
            folder: self.folder.clone(),
            exe: self.exe.clone(),
            own: self.own,
            app: self.app.clone(),
            payload_crc32: self.payload_crc32,
            size: self.size,
            settings: self.settings.clone(),
            record: self.record.clone(),
            lock: self.lock.clone(),
        })
    }

    fn exe_dir(&self) -> Option<(Dir, String)> {
        let dir = Dir::open(payload_tools::persist::parent_dir(&self.exe)).ok()?;
        Some((dir, file_name(&self.exe)))
    }

    fn name_holds_own(&self) -> bool {
        self.exe_dir().is_some_and(|(dir, name)| {
            dir.stat(&name)
                .ok()
                .flatten()
                .is_some_and(|now| now.same_file(&self.own))
        })
    }
}

/// Removes `.previous` beside the executable `exe` if it is the build
/// `record` replaced: an install by another instance meanwhile put the
/// healthy build there, and that one stays.
fn remove_previous_of(exe_dir: &Dir, exe: &Path, exe_name: &str, record: &Record) {
    let previous = previous_name(exe_name);
    let path = payload_tools::persist::parent_dir(exe).join(&previous);
    let Ok(Some(opened)) = PackedFile::open(&path) else {
        return;
    };
    let same = (sys::file_id(&opened.file).ok())
        .zip(exe_dir.stat(&previous).ok().flatten())
        .is_some_and(|(opened, now)| opened.same_file(&now));
    if same && record.is_previous(&opened) {
        let _ = exe_dir.remove_file(&previous);
    }
}

/// A record no launch has touched for this long is abandoned (its
/// executable deleted, replaced by hand, or never started again): removing
/// it only ends a probation, it never rolls back.
const ABANDONED_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Removes from the app's cache folder `dir` (at `path`) what probation
/// leaves behind when a process is killed or a build vanishes: health
/// files of launchers that are gone, and records (with their locks and
/// temporaries) untouched for [`ABANDONED_AFTER`]. Sees at most `listing`.
pub fn remove_abandoned(dir: &Dir, path: &Path, listing: &[String]) {
    for name in listing {
        let abandoned = if let Some(rest) = name.strip_prefix(".health-") {
            let pid = rest.split('-').next().and_then(|pid| pid.parse().ok());
            pid.is_some_and(|pid| !sys::process_alive(pid))
        } else if name.starts_with(".probation-") {
            std::fs::symlink_metadata(path.join(name))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > ABANDONED_AFTER)
        } else {
            false
        };
        if abandoned {
            info!(target: UPDATE, "Removed '{name}', left by probation.");
            let _ = dir.remove_file(name);
        }
    }
}

/// Why a rollback did not happen.
enum Refusal {
    /// The executable's name no longer holds the bad build.
    Replaced,
    Cannot(String),
}

fn file_name(exe: &Path) -> String {
    exe.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(unix)]
fn set_argv0(cmd: &mut Command, argv0: OsString) {
    use std::os::unix::process::CommandExt;
    cmd.arg0(argv0);
}

#[cfg(not(unix))]
fn set_argv0(_cmd: &mut Command, _argv0: OsString) {}
