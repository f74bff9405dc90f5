//! Windows: the same calls as `unix.rs`. Built by `make windows` and
//! tested under Wine by `make test-windows` (docs/windows.md), not yet in CI.

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

/// Windows ACLs decide; a failed rename reports what they refused.
pub fn check_replaceable(_exe: &Path) -> Result<(), String> {
    Ok(())
}

/// Where the running executable is moved so its name can be reused:
/// Windows cannot rename over, or delete, a running executable, but it can
/// rename it.
fn aside_path(exe: &Path) -> PathBuf {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    exe.with_file_name(format!(".{name}.old"))
}

/// Moves the running `exe` aside, moves `new` into its place, and moves the
/// old one back if that fails. The aside copy is deleted by a later start
/// ([`remove_replaced_leftover`]), once nothing runs it.
pub fn replace_executable(new: &Path, exe: &Path) -> io::Result<()> {
    let aside = aside_path(exe);
    let _ = std::fs::remove_file(&aside);
    // The download was synced when it finished (and FlushFileBuffers
    // refuses a handle opened read-only: "Access denied").
    std::fs::rename(exe, &aside)?;
    if let Err(e) = std::fs::rename(new, exe) {
        // Put the old executable back so the user is never left without one.
        let _ = std::fs::rename(&aside, exe);
        return Err(e);
    }
    Ok(())
}

/// Deletes the copy a previous update moved aside (it fails harmlessly
/// while an old instance still runs it).
pub fn remove_replaced_leftover(exe: &Path) {
    let _ = std::fs::remove_file(aside_path(exe));
}

/// Folders under the user's profile are private by default; ACLs are not
/// inspected.
pub fn check_private_dir(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// ACLs are not inspected on Windows.
pub fn check_cache_root(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// Windows has no cheap "start writing this range" call; the sync after
/// the download does all of the writing.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Helper threads keep the normal priority on Windows: the stub carries no
/// Windows API crate for `SetThreadPriority`.
pub fn lower_thread_priority() {}
