//! Folders of the cache, held open, and the check that no other user can
//! change the path the app is run by.
//!
//! - [`check_cache_root`] walks the cache root's path from `/`, one folder
//!   at a time, top down, symlinks included (sshd's `StrictModes`, applied
//!   to every folder of the path): no other user may be able to rename,
//!   replace or redirect any of them, and the root itself must be writable
//!   by nobody else. This is what makes the paths the app is executed by,
//!   and loads its own files by, safe: once every folder above the app is
//!   ours, or root's, no other user can swap anything in that path between
//!   our checks and the app's use.
//! - [`open_private_dir`] opens the app's folder, checked on its descriptor;
//!   a [`Dir`] is a folder held open: everything the cache creates, checks,
//!   locks or renames inside it goes through the handle (Unix: `openat`,
//!   `mkdirat`, `renameat`, `fstat` of the object itself), never a path
//!   looked up twice.
//!
//! Windows (`windows.rs`, with `payload_tools::sys::acl`) decides from owners and DACLs read
//! from held handles, and holds the app's folder so that no one can rename
//! anything on its path while the app runs, instead of walking from the
//! top (docs/launcher.md, "The cache on Windows").

#[cfg(unix)]
mod accounts;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

use std::io::{self, Write};
use std::path::PathBuf;

impl Dir {
    /// Writes `text` as the file `name`, whole: into `temporary`, created
    /// exclusively (never through a link), synced, then renamed over
    /// `name`. A failure removes the temporary and leaves `name` as it was;
    /// a kill leaves at most the temporary, which its owner's sweep knows
    /// by the name the caller chose.
    pub fn write_whole(&self, temporary: &str, name: &str, text: &str) -> io::Result<()> {
        let written = self.create_new(temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
            drop(file);
            self.rename(temporary, name)
        });
        if written.is_err() {
            let _ = self.remove_file(temporary);
        }
        written
    }
}

/// Why a folder of the cache cannot be used.
#[derive(Debug)]
pub enum DirError {
    /// The system refused: missing and not creatable, not a folder, no
    /// permission.
    Io { path: PathBuf, source: io::Error },
    /// Another user could change it, or what it leads to.
    Unsafe { path: PathBuf, reason: String },
}
