//! Windows: the same calls as `unix.rs`. Not built in CI (Linux only).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Windows folders under the user's profile are private by default.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Windows does not delete open lock files, so the open one is the live one.
pub fn is_same_file(_file: &File, path: &Path) -> io::Result<bool> {
    Ok(path.exists())
}

/// `%LOCALAPPDATA%`.
pub fn default_cache_root() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// ERROR_DISK_FULL (112) and ERROR_HANDLE_DISK_FULL (39).
pub fn is_disk_full(errno: i32) -> bool {
    errno == 112 || errno == 39
}

pub fn is_noexec_mount(_dir: &Path) -> bool {
    false
}
