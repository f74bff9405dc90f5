//! The per-user cache of unpacked apps.
//!
//! Layout, under the cache root (`$ONEFILE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME`, else `~/.cache`):
//!
//! ```text
//! <name>/                       0700
//!   .lock                       exclusive while unpacking or cleaning
//!   <version>-<crc32>/          one unpacked build, complete by construction
//!   <version>-<crc32>.lock      shared by every launcher running that build
//!   .tmp-<version>-<crc32>-<pid>/   an unpacking in progress (or a killed one)
//! ```
//!
//! - [`Cache::for_app`] checks the root and every folder of its path (no
//!   other user may be able to change any: `sys::check_cache_root`), and
//!   opens the app's folder inside, which must be ours and private. That
//!   folder is held open: everything in it is created, checked, locked and
//!   renamed through it. The app is then run, and reads its own files, by
//!   path, which the check of the path makes safe.
//! - [`Cache::prepare`] is the launch path: a warm start costs a shared lock
//!   and one `stat`, whatever the app's size; a cold start unpacks into a
//!   temporary sibling, syncs it, and renames it into place, under the
//!   app's exclusive lock so that concurrent first launches unpack once.
//! - [`Cache::remove_unused_versions`] deletes other builds of the app that
//!   no running launcher holds, and leftovers of killed unpackings
//!   (`sys::remove_tree`: read-only files included, on Windows too).
//! - [`Cache::folder`] hands the app's folder, held open, to the updater,
//!   which keeps its private files there (named `.update-*` and
//!   `.install*`, which no build's name or the cache's own files can be).
//! - [`Cache::for_build`] and [`Cache::prepare_ahead`] let the updater
//!   unpack a verified new build while the app still runs, so that its
//!   first launch starts warm: the same locks, temporary sibling and rename
//!   as a cold start, on one thread at low priority.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::trace::{LAUNCH, UPDATE, info};
use payload_tools::PackedFile;
use payload_tools::extract::{Sink, extract};

use crate::error::LaunchError;
use crate::sys;

/// An app's build in the cache, held in use for as long as this lives.
#[derive(Debug)]
pub struct Prepared {
    /// The unpacked tree.
    pub dir: PathBuf,
    /// The shared "in use" lock; kept open (and inherited by an exec'd app)
    /// so that no other launcher deletes the tree under the app. `None` in
    /// a read-only cache.
    pub in_use: Option<File>,
}

/// Entries of the app's cache folder looked at by one clean-up at most:
/// the folder is private, but a clean-up must end.
const MAX_LISTED: usize = 10_000;

/// The cache folder of one app, held open.
#[derive(Debug)]
pub struct Cache {
    /// `<root>/<name>`, the root's links resolved: the path the app is run
    /// by.
    app_dir: PathBuf,
    /// The same folder, open.
    app: sys::Dir,
    build: String,
}

/// Who unpacks a build: what it may use and how it traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unpacker {
    /// A launch that needs the build now: every core it has.
    Launch,
    /// The updater, ahead of the build's first launch while the app runs:
    /// one thread (the caller's, at low priority), as the app comes first.
    Updater,
}

impl Unpacker {
    fn trace_prefix(self) -> &'static str {
        match self {
            Unpacker::Launch => LAUNCH,
            Unpacker::Updater => UPDATE,
        }
    }

    fn threads(self) -> usize {
        match self {
            Unpacker::Launch => std::thread::available_parallelism().map_or(1, |n| n.get()),
            // Decoding threads that extract spawns would not inherit the
            // caller's lowered priority on Windows.
            Unpacker::Updater => 1,
        }
    }
}

/// The name of a build's folder in its app's cache folder.
fn build_name(packed: &PackedFile) -> String {
    format!(
        "{}-{:08x}",
        packed.metadata.version, packed.trailer.payload_crc32
    )
}

impl Cache {
    /// Opens the cache of `packed`: the root (created if missing, refused
    /// if another user could change it or any folder above it) and the
    /// app's folder inside (created 0700 if missing, refused unless ours
    /// and private).
    pub fn for_app(packed: &PackedFile) -> Result<Cache, LaunchError> {
        let root_path = cache_root()?;
        let name = &packed.metadata.name;
        // The root as checked: links and junctions on the way resolved, so
        // that what runs is what was checked, not wherever a link
        // somebody else may change leads by the time the app starts.
        let root = sys::check_cache_root(&root_path).map_err(dir_error)?;
        let app_dir = root.join(name);
        let app = sys::open_private_dir(&app_dir, &app_dir).map_err(dir_error)?;
        Ok(Cache {
            app_dir,
            app,
            build: build_name(packed),
        })
    }

    /// The cache of `packed`, another build of the app whose folder
    /// `folder` (from [`Cache::folder`]: checked and held open) is: for
    /// the updater, whose new build has the running build's name.
    pub fn for_build(folder: (sys::Dir, PathBuf), packed: &PackedFile) -> Cache {
        let (app, app_dir) = folder;
        Cache {
            app_dir,
            app,
            build: build_name(packed),
        }
    }

    pub fn build_dir(&self) -> PathBuf {
        self.app_dir.join(&self.build)
    }

    /// Makes sure the build is unpacked and holds it in use.
    pub fn prepare(&self, packed: &PackedFile) -> Result<Prepared, LaunchError> {
        let dir = self.build_dir();
        info!("Cache directory '{}'.", dir.display());
        let entry = Path::new(&self.build).join(&packed.metadata.entry);
        let lock_name = format!("{}.lock", self.build);
        let in_use = match sys::lock_file(&self.app, &lock_name, false) {
            Ok(lock) => Some(lock),
            // A read-only cache (a locked-down machine, a cache unpacked
            // ahead of time) still runs what it holds; nothing can delete
            // it under us there either.
            Err(e) if self.app.exists(&entry) => {
                info!(
                    "Cannot lock '{}' ({e}); using the cache read-only.",
                    self.app_dir.join(&lock_name).display()
                );
                None
            }
            Err(e) => return Err(cache_error(&self.app_dir, e)),
        };
        if self.app.exists(&entry) {
            info!("Warm start: already unpacked.");
            return Ok(Prepared { dir, in_use });
        }
        self.unpack(packed, &dir, &entry, Unpacker::Launch)?;
        Ok(Prepared { dir, in_use })
    }

    /// Unpacks the build, if it is not yet, for the updater: the calling
    /// thread does all the decoding (the caller lowers its priority).
    /// Returns the build's "in use" lock, which keeps every launcher's
    /// cleanup from removing the folder while it is held; the lock file it
    /// creates is what lets a cleanup find and remove the folder later, if
    /// no launch of the build ever comes.
    pub fn prepare_ahead(&self, packed: &PackedFile) -> Result<File, LaunchError> {
        let dir = self.build_dir();
        let entry = Path::new(&self.build).join(&packed.metadata.entry);
        let lock_name = format!("{}.lock", self.build);
        let in_use = sys::lock_file(&self.app, &lock_name, false)
            .map_err(|e| cache_error(&self.app_dir.join(&lock_name), e))?;
        if self.app.exists(&entry) {
            info!(target: UPDATE, "'{}' is unpacked already.", dir.display());
            return Ok(in_use);
        }
        self.unpack(packed, &dir, &entry, Unpacker::Updater)?;
        Ok(in_use)
    }

    /// A cold start, the repair of a damaged build directory, or the
    /// updater's unpacking ahead of a build's first launch. `entry` is
    /// relative to the app's folder.
    fn unpack(
        &self,
        packed: &PackedFile,
        dir: &Path,
        entry: &Path,
        by: Unpacker,
    ) -> Result<(), LaunchError> {
        let prefix = by.trace_prefix();
        let _app_lock =
            sys::lock_file(&self.app, ".lock", true).map_err(|e| cache_error(&self.app_dir, e))?;
        // Another launcher may have finished while we waited for the lock.
        if self.app.exists(entry) {
            match by {
                Unpacker::Launch => info!("Warm start: unpacked meanwhile by another launch."),
                Unpacker::Updater => {
                    info!(target: UPDATE, "'{}' was unpacked meanwhile by a launch.", dir.display());
                }
            }
            return Ok(());
        }
        if self.app.exists(Path::new(&self.build)) {
            info!(target: prefix, "Repairing '{}': its entry is missing.", dir.display());
            self.discard(&self.build);
        }
        self.remove_stale_temporaries();
        let staging_name = format!(".tmp-{}-{}", self.build, std::process::id());
        let staging = self.app_dir.join(&staging_name);
        self.app
            .create_dir(&staging_name)
            .map_err(|e| cache_error(&staging, e))?;
        let threads = by.threads();
        let what = match by {
            Unpacker::Launch => "Cold start: unpacking",
            Unpacker::Updater => "Preparing the new build: unpacking",
        };
        info!(
            target: prefix,
            "{what} {} frame(s), {} bytes unpacked, into '{}'.",
            packed.metadata.frames.len(),
            packed.metadata.unpacked_size,
            staging.display()
        );
        let started = Instant::now();
        let result = extract(packed, Sink::Disk(&staging), threads)
            .map_err(|e| unpack_error(&staging, packed, e))
            .and_then(|report| {
                sys::sync_filesystem(&staging).map_err(|e| cache_error(&staging, e))?;
                Ok(report)
            })
            .and_then(|report| {
                self.app
                    .rename(&staging_name, &self.build)
                    .map_err(|e| cache_error(dir, e))?;
                Ok(report)
            });
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                let _ = sys::remove_tree(&staging);
                return Err(e);
            }
        };
        let _ = self.app.sync();
        info!(
            target: prefix,
            "Unpacked {} entries ({} bytes) on {} thread(s) in {:.1} ms.",
            report.entries,
            report.bytes,
            report.threads,
            started.elapsed().as_secs_f64() * 1e3
        );
        if !self.app.exists(entry) {
            return Err(LaunchError::EntryMissing(self.app_dir.join(entry)));
        }
        Ok(())
    }

    /// The app's cache folder: a second handle on the folder the cache
    /// checked and holds, and its path (for messages). The updater keeps its
    /// private files there (`update::state`).
    pub fn folder(&self) -> io::Result<(sys::Dir, PathBuf)> {
        Ok((self.app.try_clone()?, self.app_dir.clone()))
    }

    /// Deletes other builds of this app that no launcher holds, and the
    /// leftovers of killed unpackings. Never blocks: if another launcher is
    /// unpacking or cleaning, this one leaves the work to it.
    pub fn remove_unused_versions(&self) {
        let Ok(listing) = fs::read_dir(&self.app_dir) else {
            return;
        };
        let mut others = Vec::new();
        let mut leftovers = false;
        let mut probation = Vec::new();
        for item in listing.flatten().take(MAX_LISTED) {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".probation-") || name.starts_with(".health-") {
                probation.push(name.to_owned());
            } else if name.starts_with(".tmp-") || name.starts_with(".trash-") {
                leftovers = true;
            } else if let Some(build) = name.strip_suffix(".lock")
                && build != self.build
                && !build.is_empty()
                && !build.starts_with('.')
            {
                others.push(build.to_owned());
            }
        }
        crate::probation::remove_abandoned(&self.app, &self.app_dir, &probation);
        if others.is_empty() && !leftovers {
            return;
        }
        let Ok(Some(_app_lock)) = sys::try_lock_file(&self.app, ".lock") else {
            return;
        };
        if leftovers {
            self.remove_stale_temporaries();
        }
        for build in others {
            let lock_name = format!("{build}.lock");
            // Held by a running launcher of that build: leave it.
            let Ok(Some(lock)) = sys::try_lock_file(&self.app, &lock_name) else {
                continue;
            };
            self.discard(&build);
            // Removed while held, so that a launcher that opens it later
            // gets a fresh file (lock_file checks it locked the live one).
            let _ = self.app.remove_file(&lock_name);
            drop(lock);
            info!("Removed unused build '{build}'.");
        }
    }

    /// Removes the build folder `build`: renamed aside first, so that a
    /// launcher never sees it half deleted.
    fn discard(&self, build: &str) {
        let trash = format!(".trash-{build}-{}", std::process::id());
        if self.app.rename(build, &trash).is_ok() {
            let _ = sys::remove_tree(&self.app_dir.join(&trash));
        }
    }

    /// Temporaries of unpackings that were killed. Only called with the
    /// app's exclusive lock held, when no unpacking can be running.
    fn remove_stale_temporaries(&self) {
        let Ok(listing) = fs::read_dir(&self.app_dir) else {
            return;
        };
        for item in listing.flatten() {
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") || name.starts_with(".trash-") {
                info!("Removing leftover '{name}'.");
                let _ = sys::remove_tree(&item.path());
            }
        }
    }
}

/// The cache root: `$ONEFILE_CACHE_DIR`, `$XDG_CACHE_HOME`, or `~/.cache`,
/// made absolute.
fn cache_root() -> Result<PathBuf, LaunchError> {
    let non_empty = |key| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = non_empty("ONEFILE_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").filter(|d| d.is_absolute()))
        .or_else(sys::default_cache_root)
        .ok_or(LaunchError::NoCacheRoot(sys::NO_CACHE_ROOT))?;
    // Relative to where the user started the app, once and for all.
    std::path::absolute(&dir).map_err(|e| cache_error(&dir, e))
}

fn dir_error(e: sys::DirError) -> LaunchError {
    match e {
        sys::DirError::Io { path, source } => cache_error(&path, source),
        sys::DirError::Unsafe { path, reason } => LaunchError::UnsafeCache { path, reason },
    }
}

fn cache_error(path: &Path, e: io::Error) -> LaunchError {
    LaunchError::Cache {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn unpack_error(staging: &Path, packed: &PackedFile, e: payload_tools::Error) -> LaunchError {
    if e.raw_os_error().is_some_and(sys::is_disk_full) {
        return LaunchError::DiskFull {
            path: staging.parent().unwrap_or(staging).to_owned(),
            needed: packed.metadata.unpacked_size,
        };
    }
    match e {
        payload_tools::Error::Io { .. } => LaunchError::Unpack {
            path: staging.to_owned(),
            source: e,
        },
        other => LaunchError::Format(other),
    }
}
