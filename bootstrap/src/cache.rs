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
//! - [`Cache::prepare`] is the launch path: a warm start costs a shared lock
//!   and one `stat`, whatever the app's size; a cold start unpacks into a
//!   temporary sibling, syncs it, and renames it into place, under the
//!   app's exclusive lock so that concurrent first launches unpack once.
//! - [`Cache::remove_unused_versions`] deletes other builds of the app that
//!   no running launcher holds, and leftovers of killed unpackings.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use log::info;
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

/// The cache folder of one app.
#[derive(Debug)]
pub struct Cache {
    app_dir: PathBuf,
    build: String,
}

impl Cache {
    /// Locates (without touching the disk) the cache of `packed`.
    pub fn for_app(packed: &PackedFile) -> Result<Cache, LaunchError> {
        let root = cache_root()?;
        let build = format!(
            "{}-{:08x}",
            packed.metadata.version, packed.trailer.payload_crc32
        );
        Ok(Cache {
            app_dir: root.join(&packed.metadata.name),
            build,
        })
    }

    pub fn build_dir(&self) -> PathBuf {
        self.app_dir.join(&self.build)
    }

    /// Makes sure the build is unpacked and holds it in use.
    pub fn prepare(&self, packed: &PackedFile) -> Result<Prepared, LaunchError> {
        let dir = self.build_dir();
        info!("Cache directory '{}'.", dir.display());
        let entry = dir.join(&packed.metadata.entry);
        let lock_path = self.app_dir.join(format!("{}.lock", self.build));
        let created = sys::create_private_dir_all(&self.app_dir);
        if self.app_dir.exists() {
            let root = self.app_dir.parent().unwrap_or(&self.app_dir);
            sys::check_cache_root(root).map_err(|reason| LaunchError::Cache {
                path: root.to_owned(),
                reason,
            })?;
            sys::check_private_dir(&self.app_dir).map_err(|reason| LaunchError::Cache {
                path: self.app_dir.clone(),
                reason,
            })?;
        }
        let locked = created.and_then(|()| sys::lock_file(&lock_path, false));
        let in_use = match locked {
            Ok(lock) => Some(lock),
            // A read-only cache (a locked-down machine, a cache unpacked
            // ahead of time) still runs what it holds; nothing can delete
            // it under us there either.
            Err(e) if fs::symlink_metadata(&entry).is_ok() => {
                info!(
                    "Cannot lock '{}' ({e}); using the cache read-only.",
                    lock_path.display()
                );
                None
            }
            Err(e) => return Err(cache_error(&self.app_dir, e)),
        };
        if fs::symlink_metadata(&entry).is_ok() {
            info!("Warm start: already unpacked.");
            return Ok(Prepared { dir, in_use });
        }
        self.unpack(packed, &dir, &entry)?;
        Ok(Prepared { dir, in_use })
    }

    /// A cold start, or the repair of a damaged build directory.
    fn unpack(&self, packed: &PackedFile, dir: &Path, entry: &Path) -> Result<(), LaunchError> {
        let _app_lock = sys::lock_file(&self.app_dir.join(".lock"), true)
            .map_err(|e| cache_error(&self.app_dir, e))?;
        // Another launcher may have finished while we waited for the lock.
        if fs::symlink_metadata(entry).is_ok() {
            info!("Warm start: unpacked meanwhile by another launch.");
            return Ok(());
        }
        if dir.exists() {
            info!("Repairing '{}': its entry is missing.", dir.display());
            self.discard(dir);
        }
        self.remove_stale_temporaries();
        let staging = self
            .app_dir
            .join(format!(".tmp-{}-{}", self.build, std::process::id()));
        sys::create_private_dir_all(&staging).map_err(|e| cache_error(&staging, e))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        info!(
            "Cold start: unpacking {} frame(s), {} bytes, into '{}'.",
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
                fs::rename(&staging, dir).map_err(|e| cache_error(dir, e))?;
                Ok(report)
            });
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let _ = sys::sync_dir(&self.app_dir);
        info!(
            "Unpacked {} entries ({} bytes) on {} thread(s) in {:.1} ms.",
            report.entries,
            report.bytes,
            report.threads,
            started.elapsed().as_secs_f64() * 1e3
        );
        if fs::symlink_metadata(entry).is_err() {
            return Err(LaunchError::EntryMissing(entry.to_owned()));
        }
        Ok(())
    }

    /// The app's cache folder, held open for files that only this user may
    /// open (the updater's lock): it must be a real folder of ours that no
    /// one else may write, checked through the very descriptor returned.
    pub fn private_dir(&self) -> io::Result<sys::Dir> {
        let dir = sys::Dir::open(&self.app_dir)?;
        sys::check_private_dir_id(&dir.id()?)
            .map_err(|reason| io::Error::new(io::ErrorKind::PermissionDenied, reason))?;
        Ok(dir)
    }

    pub fn app_dir(&self) -> &Path {
        &self.app_dir
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
        for item in listing.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".tmp-") || name.starts_with(".trash-") {
                leftovers = true;
            } else if let Some(build) = name.strip_suffix(".lock")
                && build != self.build
                && !build.is_empty()
                && !build.starts_with('.')
            {
                others.push(build.to_owned());
            }
        }
        if others.is_empty() && !leftovers {
            return;
        }
        let Ok(Some(_app_lock)) = sys::try_lock_file(&self.app_dir.join(".lock")) else {
            return;
        };
        if leftovers {
            self.remove_stale_temporaries();
        }
        for build in others {
            let lock_path = self.app_dir.join(format!("{build}.lock"));
            // Held by a running launcher of that build: leave it.
            let Ok(Some(lock)) = sys::try_lock_file(&lock_path) else {
                continue;
            };
            self.discard(&self.app_dir.join(&build));
            // Removed while held, so that a launcher that opens it later
            // gets a fresh file (lock_file checks it locked the live one).
            let _ = fs::remove_file(&lock_path);
            drop(lock);
            info!("Removed unused build '{build}'.");
        }
    }

    /// Removes a build directory: renamed aside first, so that a launcher
    /// never sees it half deleted.
    fn discard(&self, dir: &Path) {
        let trash = self.app_dir.join(format!(
            ".trash-{}-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
            std::process::id()
        ));
        if fs::rename(dir, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
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
                let _ = fs::remove_dir_all(item.path());
            }
        }
    }
}

/// The cache root: `$ONEFILE_CACHE_DIR`, `$XDG_CACHE_HOME`, or `~/.cache`.
fn cache_root() -> Result<PathBuf, LaunchError> {
    let non_empty = |key| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = non_empty("ONEFILE_CACHE_DIR") {
        // Relative to where the user started the app, once and for all.
        return std::path::absolute(&dir).map_err(|e| cache_error(&dir, e));
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir);
    }
    sys::default_cache_root().ok_or(LaunchError::NoCacheRoot(
        "neither ONEFILE_CACHE_DIR, XDG_CACHE_HOME nor HOME is set",
    ))
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
