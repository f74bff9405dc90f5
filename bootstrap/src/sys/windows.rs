//! Windows: the same calls as `unix.rs`. Built by `make windows` and
//! tested under Wine by `make test-windows` (docs/windows.md), not yet in CI.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::Dir;

/// `%LOCALAPPDATA%`.
pub fn default_cache_root() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Why there is no cache root when [`default_cache_root`] finds none.
pub const NO_CACHE_ROOT: &str = "neither ONEFILE_CACHE_DIR, XDG_CACHE_HOME nor LOCALAPPDATA is set";

/// The hint for a cache folder that other users could change.
pub const UNSAFE_CACHE_HINT: &str = "other users could change the app run from it: take away \
    their access (the folder's Properties, Security tab), or set ONEFILE_CACHE_DIR to a folder \
    that only you can change";

/// ERROR_DISK_FULL (112) and ERROR_HANDLE_DISK_FULL (39).
pub fn is_disk_full(errno: i32) -> bool {
    errno == 112 || errno == 39
}

pub fn is_noexec_mount(_dir: &Path) -> bool {
    false
}

/// Whether this process may replace the executable open as `exe`: it
/// must be ours (its owner, read from the handle), as on Unix.
pub fn check_replaceable(exe: &File, _id: &FileId) -> Result<(), String> {
    super::dir::check_owned(exe)
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
/// ([`remove_replaced_leftover`]), once nothing runs it. `expected` is not
/// compared ([`FileId`] has no identity here); the running executable
/// cannot be replaced on Windows while this instance runs it, only renamed.
pub fn replace_executable(dir: &Dir, new: &str, exe: &str, _expected: &FileId) -> io::Result<bool> {
    let (new, exe) = (dir.path().join(new), dir.path().join(exe));
    let aside = aside_path(&exe);
    let _ = std::fs::remove_file(&aside);
    // The download was synced when it finished (and FlushFileBuffers
    // refuses a handle opened read-only: "Access denied").
    std::fs::rename(&exe, &aside)?;
    if let Err(e) = std::fs::rename(&new, &exe) {
        // Put the old executable back so the user is never left without one.
        let _ = std::fs::rename(&aside, &exe);
        return Err(e);
    }
    Ok(true)
}

/// Who a file is. The standard library does not yet expose Windows file
/// indexes, so every file looks the same: the checks that compare
/// identities pass, and the updater's lock is one per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub nlink: u64,
}

impl FileId {
    pub fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

pub fn file_id(_file: &File) -> io::Result<FileId> {
    Ok(FileId::default())
}

/// Whether no one but us may change what the folder `dir` holds: ours
/// (or SYSTEM's or Administrators'), and a DACL that lets no one else
/// write, add, delete or rename there, read from the held handle.
pub fn check_unshared_dir(dir: &Dir, _id: &FileId) -> Result<(), String> {
    dir.check_unshared()
}

/// Unknown on Windows without a Windows API crate: partial downloads are
/// kept as if the rest fitted.
pub fn free_space(_file: &File) -> Option<u64> {
    None
}

/// Deletes the copy a previous update moved aside (it fails harmlessly
/// while an old instance still runs it).
pub fn remove_replaced_leftover(exe: &Path) {
    let _ = std::fs::remove_file(aside_path(exe));
}

/// Windows has no cheap "start writing this range" call; the sync after
/// the download does all of the writing.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Helper threads keep the normal priority on Windows: the stub carries no
/// Windows API crate for `SetThreadPriority`.
pub fn lower_thread_priority() {}
