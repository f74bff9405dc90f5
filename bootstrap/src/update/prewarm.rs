//! Preparing the new build's cache folder while the app still runs, so
//! that the first launch after an update starts warm instead of unpacking
//! the whole payload.
//!
//! 1. Only a download that passed every check ([`super::verify`]) is
//!    prepared: its payload was decoded already, nothing of it is trusted
//!    before.
//! 2. A thread of its own, at low priority, unpacks it into the app's
//!    cache folder by the cache's own protocol (`Cache::prepare_ahead`:
//!    the build's "in use" lock, the app's exclusive lock, a private
//!    temporary sibling renamed into place only when whole), so that
//!    launches of either build never see a half-built folder.
//! 3. The install does not wait for it: when the app exits the executable
//!    is replaced at once, and the launcher gives the preparation what is
//!    left of the exit wait. If the process ends first, the temporary
//!    folder it leaves is removed by the next launch's cleanup, like that
//!    of a killed cold start.
//! 4. The build's "in use" lock is held until the process ends, so that no
//!    other launcher's cleanup removes the folder before the new build's
//!    first launch; if that launch never comes (the install failed), the
//!    folder is an unused build that cleanups remove.

use std::thread::Scope;

use crate::cache::Cache;
use crate::sys;
use crate::trace::{UPDATE, info};
use payload_tools::PackedFile;

use super::RunningBuild;

/// Starts preparing `new`'s cache folder on a thread of `scope`.
pub fn start<'scope>(
    scope: &'scope Scope<'scope, '_>,
    build: &RunningBuild,
    new: &'scope PackedFile,
) {
    let Some((folder, path)) = &build.cache_folder else {
        info!(target: UPDATE, "No cache folder: the new build unpacks at its first launch.");
        return;
    };
    let folder = match folder.try_clone() {
        Ok(folder) => folder,
        Err(e) => {
            info!(target: UPDATE, "Cannot prepare the new build ({e}): it unpacks at its first launch.");
            return;
        }
    };
    let cache = Cache::for_build((folder, path.clone()), new);
    info!(
        target: UPDATE,
        "Preparing '{}' beside the app.",
        cache.build_dir().display()
    );
    let spawned = std::thread::Builder::new()
        .name("onefile-prewarm".into())
        .spawn_scoped(scope, move || {
            sys::lower_thread_priority();
            match cache.prepare_ahead(new) {
                Ok(in_use) => {
                    info!(
                        target: UPDATE,
                        "Prepared '{}': the new build's first launch starts warm.",
                        cache.build_dir().display()
                    );
                    // Held until the process ends (step 4).
                    std::mem::forget(in_use);
                }
                Err(e) => info!(
                    target: UPDATE,
                    "Cannot prepare the new build ({e}): it unpacks at its first launch."
                ),
            }
        });
    if let Err(e) = spawned {
        info!(target: UPDATE, "Cannot start the preparing thread ({e}): the new build unpacks at its first launch.");
    }
}
