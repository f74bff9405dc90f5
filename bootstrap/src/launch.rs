//! One launch, from the packed file to the running app.
//!
//! 1. Open our own executable; read its trailer and metadata (a few KiB,
//!    whatever the app's size).
//! 2. Make sure the build is unpacked in the cache (warm: a lock and a
//!    `stat`; cold: unpack once) and hold it in use.
//! 3. Remove builds of the app that nothing uses any more.
//! 4. Run the entry with our arguments, stdio, environment and working
//!    directory, plus `ONEFILE_*` variables: by `exec` when nothing needs
//!    the launcher afterwards, else as a child whose exit we take on while
//!    the update sidecar (`update`) works beside it.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::trace::info;
use payload_tools::PackedFile;
use payload_tools::metadata::Argv0;

use crate::cache::Cache;
use crate::error::LaunchError;
use crate::probation;
use crate::restart;
use crate::run;
use crate::sys;
use crate::update;

/// Runs the app. Returns only if the launcher itself failed.
pub fn launch() -> LaunchError {
    match try_launch() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn try_launch() -> Result<Never, LaunchError> {
    let started = Instant::now();
    // A background updater updates the executable it was handed, by name.
    let exe = match update::background::target_exe() {
        Some(exe) => exe,
        None => std::env::current_exe().map_err(LaunchError::SelfPath)?,
    };
    let packed = PackedFile::open(&exe)?.ok_or_else(|| LaunchError::NoPayload(exe.clone()))?;
    let meta = &packed.metadata;
    info!(
        "Running '{}' ({} {}: compressed payload of {} bytes, {} bytes unpacked).",
        exe.display(),
        meta.name,
        meta.version,
        packed.trailer.payload_len,
        meta.unpacked_size
    );
    let cache = Cache::for_app(&packed)?;
    if let Some(request) = update::background::requested() {
        let (name, version) = (meta.name.clone(), meta.version.clone());
        let settings = meta.update.clone();
        let build = settings.map(|settings| running_build(&exe, packed, settings, &cache));
        update::background::serve(request, &name, &version, build);
    }
    let prepared = match cache.prepare(&packed) {
        Ok(prepared) => prepared,
        Err(e) => return Err(rescue(e, &exe, packed, &cache)),
    };
    let entry = prepared.dir.join(&meta.entry);
    let mut cmd = app_command(&entry, &exe, &prepared.dir, &packed);
    let probation = probation::watch(&exe, &packed, &cache, &mut cmd)?;

    let updates = meta.update.clone().filter(|_| !update::disabled_by_env());
    // A build that restarts on an exit code needs the launcher after the
    // app, updates or not; so does a build on probation, to see how it
    // starts.
    let restart_code = restart::exit_code(meta.update.as_ref());
    if updates.is_some() || restart_code.is_some() || probation.is_some() {
        let status = updates.as_ref().and_then(|_| {
            let from = rolled_back_from();
            update::status::open(&mut cmd, cache.folder(), &meta.version, from.as_deref())
        });
        // The app starts first: nothing the network does may delay it.
        let mut app = match run::spawn(cmd) {
            Ok(app) => app,
            Err(e) => {
                return Err(rescue(
                    cannot_execute(&entry, &prepared.dir, e),
                    &exe,
                    packed,
                    &cache,
                ));
            }
        };
        probation::started(probation.as_ref());
        info!(
            "Started '{}' as process {} after {:.2} ms.",
            entry.display(),
            app.id(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let exit_wait_ms = updates.as_ref().map_or(0, |s| s.exit_wait_ms);
        let sidecar = updates.map(|s| update::start(running_build(&exe, packed, s, &cache)));
        // Earlier builds' folders go on a thread of their own, at a low
        // priority, and the exit never waits for it: removing the build an
        // update replaced took the first launch after it 180 ms (1,569
        // files). A removal cut short by the exit leaves a `.trash-` folder
        // that a later launch removes.
        let removing = std::thread::Builder::new()
            .name("onefile-cleanup".into())
            .spawn(move || {
                sys::lower_thread_priority();
                cache.remove_unused_versions();
            });
        if let Err(e) = removing {
            info!("Cannot start the clean-up thread ({e}); earlier builds stay for now.");
        }
        let exit = app.wait().map_err(LaunchError::Wait)?;
        // Decided before the updater may install at the exit: the build
        // that is healthy or rolled back is the one that ran.
        if let Some(probation) = probation {
            probation.app_exited(exit)?;
        }
        let restarting = restart::asked(exit, restart_code, &app);
        // A restart keeps stdio for the restarted app and hands nothing to
        // a background updater: the restarted launch has its own sidecar.
        let mut finished = true;
        if let Some(sidecar) = sidecar {
            if restarting {
                let budget = restart::install_wait(exit_wait_ms);
                finished = sidecar.finish_after_exit(budget);
            } else {
                // Asked to stop (a signal passed on to the app): no wait.
                update::background::after_app_exit(sidecar, exit_wait_ms, app.stop_requested());
            }
        }
        drop(status);
        drop(prepared);
        if restarting {
            return Err(LaunchError::Restart(restart::run_again(
                &exe, finished, exit,
            )));
        }
        run::exit_like(exit);
    }

    // With nothing to do after the app starts, the launcher steps aside.
    cache.remove_unused_versions();
    info!(
        "Executing '{}' after {:.2} ms.",
        entry.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let inherit: Vec<&std::fs::File> = prepared.in_use.iter().collect();
    let err = run::exec(cmd, &inherit);
    Err(cannot_execute(&entry, &prepared.dir, err))
}

/// A launch that failed before the app ran, in a way a new build can fix
/// (a damaged build, its entry missing or not runnable), gives the updater
/// its chance first: otherwise such a build could never update itself out
/// of it.
fn rescue(err: LaunchError, exe: &Path, packed: PackedFile, cache: &Cache) -> LaunchError {
    use crate::error::exit_code::{CANNOT_EXECUTE, DAMAGED, ENTRY_MISSING};
    let fixable = matches!(err.exit_code(), DAMAGED | CANNOT_EXECUTE | ENTRY_MISSING);
    if fixable {
        probation::start_failed(exe, &packed, cache, &err);
    }
    if fixable
        && let Some(settings) = packed.metadata.update.clone()
        && !update::disabled_by_env()
    {
        update::rescue(running_build(exe, packed, settings, cache));
    }
    err
}

/// What the updater needs to know of this launch.
fn running_build(
    exe: &Path,
    packed: PackedFile,
    settings: payload_tools::metadata::UpdateSettings,
    cache: &Cache,
) -> update::RunningBuild {
    update::RunningBuild {
        exe: exe.to_owned(),
        name: packed.metadata.name.clone(),
        version: packed.metadata.version.clone(),
        settings,
        packed,
        cache_folder: cache.folder().ok(),
    }
}

/// The app's command line: our arguments, with our own `argv[0]` so the app
/// sees the name it was started by, or, when the build asks for it
/// (`pack --argv0 entry`), the entry's real path in the cache.
fn app_command(entry: &Path, exe: &Path, dir: &Path, packed: &PackedFile) -> Command {
    let mut args = std::env::args_os();
    let ours = args.next();
    let argv0: OsString = match packed.metadata.argv0 {
        Argv0::Entry => dir.join(&packed.metadata.entry).into_os_string(),
        Argv0::Packed => ours.unwrap_or_else(|| exe.as_os_str().to_owned()),
    };
    let mut cmd = Command::new(entry);
    cmd.args(args);
    // Every variable the launcher sets for its app is first removed: set
    // below, later (the status file), or only when this launch has it,
    // never another launch's. Instructions to a launcher never reach the
    // app as such.
    let instructions = [
        crate::self_test::VAR,
        update::background::VAR,
        update::background::EXE_VAR,
        update::background::EXE_ID_VAR,
    ];
    for name in SET_FOR_THE_APP.iter().chain(&instructions) {
        cmd.env_remove(name);
    }
    cmd.env("ONEFILE_EXE", exe)
        .env("ONEFILE_DIR", dir)
        .env("ONEFILE_NAME", &packed.metadata.name)
        .env("ONEFILE_VERSION", &packed.metadata.version);
    if restart::restarted() {
        cmd.env(restart::MARKER, "1");
    }
    set_argv0(&mut cmd, argv0);
    cmd
}

/// The `ONEFILE_*` variables the launcher sets for its app.
const SET_FOR_THE_APP: [&str; 6] = [
    "ONEFILE_EXE",
    "ONEFILE_DIR",
    "ONEFILE_NAME",
    "ONEFILE_VERSION",
    update::status::VARIABLE,
    restart::MARKER,
];

/// The version this launch's build replaced after it failed to start, when
/// the launcher that rolled back started this one: the only reader of
/// `ONEFILE_ROLLED_BACK_FROM`, which that launcher sets to `<its pid>:<bad
/// version>` (`probation`). The pid must be ours (Unix: `exec` keeps it)
/// or our parent's (Windows: it runs us as its child); any other value,
/// inherited by a process an app started, is ignored.
pub fn rolled_back_from() -> Option<String> {
    let value = std::env::var(probation::ROLLED_BACK_FROM).ok()?;
    let (pid, version) = value.split_once(':')?;
    let ours = restart::is_for_this_launch(pid);
    let bounded = !version.is_empty() && version.len() <= 128 && !version.contains(['\n', '\r']);
    (ours && bounded).then(|| version.to_owned())
}

#[cfg(unix)]
pub fn set_argv0(cmd: &mut Command, argv0: OsString) {
    use std::os::unix::process::CommandExt;
    cmd.arg0(argv0);
}

#[cfg(not(unix))]
pub fn set_argv0(_cmd: &mut Command, _argv0: OsString) {}

fn cannot_execute(entry: &Path, dir: &Path, err: io::Error) -> LaunchError {
    if err.kind() == io::ErrorKind::NotFound {
        return LaunchError::EntryMissing(entry.to_owned());
    }
    LaunchError::CannotExecute {
        path: PathBuf::from(entry),
        noexec_mount: err.kind() == io::ErrorKind::PermissionDenied && sys::is_noexec_mount(dir),
        source: err,
    }
}
