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

pub use payload_tools::sys::{sync_dir, sync_filesystem};

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Opens (creating it if needed) and locks `path`, shared or exclusive,
/// waiting for the lock. Makes sure the file locked is still the one at
/// `path`: a cleaner may delete a lock file between our open and our lock.
pub fn lock_file(path: &Path, exclusive: bool) -> io::Result<File> {
    loop {
        let file = open_lock_file(path)?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        if is_same_file(&file, path)? {
            return Ok(file);
        }
    }
}

/// Like [`lock_file`] exclusive, but gives up at once (`Ok(None)`) if
/// someone else holds a lock on it.
pub fn try_lock_file(path: &Path) -> io::Result<Option<File>> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) if is_same_file(&file, path)? => Ok(Some(file)),
        Ok(()) | Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}
