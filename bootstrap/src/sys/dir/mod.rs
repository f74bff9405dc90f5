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
use std::time::Duration;

/// How long the launcher's writes that replace a file (records, the
/// schedule) wait for others that hold it for a moment (Windows may refuse
/// to rename over an open file: `payload_tools::sys::rename_replacing`).
pub const REPLACE_PATIENCE: Duration = Duration::from_secs(1);

impl Dir {
    /// Writes `text` as the file `name`, whole: into `temporary`, created
    /// exclusively (never through a link), synced, then renamed over
    /// `name` ([`Dir::replace`], waiting up to [`REPLACE_PATIENCE`] for
    /// readers that hold it). A failure removes the temporary and leaves
    /// `name` as it was; a kill leaves at most the temporary, which its
    /// owner's sweep knows by the name the caller chose.
    pub fn write_whole(&self, temporary: &str, name: &str, text: &str) -> io::Result<()> {
        let written = self.create_new(temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
            drop(file);
            self.replace(temporary, name, REPLACE_PATIENCE)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows may refuse to rename over a file someone has open, even one
    /// shared for deletion (Wine does), as a `stat` (an open handle there)
    /// or another launcher's read holds it for a moment: a whole write
    /// waits for them instead of losing what it writes.
    #[test]
    fn a_file_briefly_held_by_a_reader_is_still_replaced_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!("onefile-replace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)?;
        let dir = Dir::open(&path)?;
        std::fs::write(path.join("record"), "old")?;
        let reader = std::fs::File::open(path.join("record"))?;
        let held = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(reader);
        });
        let written = dir.write_whole("record.tmp", "record", "new");
        held.join().map_err(|_| "the reader's thread panicked")?;
        written?;
        assert_eq!(std::fs::read_to_string(path.join("record"))?, "new");
        assert!(!path.join("record.tmp").exists(), "the temporary is left");
        drop(dir);
        std::fs::remove_dir_all(&path)?;
        Ok(())
    }
}
