//! Platform calls of the launcher, one implementation per platform with
//! the same names, so the rest of the stub never sees a `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

pub use payload_tools::sys::sync_filesystem;

mod dir;
pub use dir::{Dir, DirError, REPLACE_PATIENCE, check_cache_root, open_private_dir};

use std::fs::File;
use std::io;

/// Opens (creating it if needed) and locks the file `name` in `dir`, shared
/// or exclusive, waiting for the lock. Makes sure the file locked is still
/// the one named so: a cleaner may delete a lock file between our open and
/// our lock.
pub fn lock_file(dir: &Dir, name: &str, exclusive: bool) -> io::Result<File> {
    loop {
        let file = dir.open_file(name)?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        if dir.holds(&file, name)? {
            return Ok(file);
        }
    }
}

/// Like [`lock_file`] exclusive, but gives up at once (`Ok(None)`) if
/// someone else holds a lock on it.
pub fn try_lock_file(dir: &Dir, name: &str) -> io::Result<Option<File>> {
    let file = dir.open_file(name)?;
    match file.try_lock() {
        Ok(()) if dir.holds(&file, name)? => Ok(Some(file)),
        Ok(()) | Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
