//! Unix: positioned reads, exclusive no-follow file creation with a mode,
//! and symlinks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}

/// Creates a new file, failing if anything (a file, a symlink) is already
/// at `path`. `executable` gives it mode 0755 rather than 0644 (before umask).
pub fn create_new_file(path: &Path, executable: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

pub fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Whether the permission bits have any execute bit set.
pub fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// Sets a file's mode bits (owner/group/other read-write-execute).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The mode bits of a file, for copying them onto its replacement.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Flushes every file of the filesystem holding `dir` to stable storage, in
/// one call: the cheap way to make a freshly extracted tree durable before
/// renaming it into place (one fsync per file would cost far more).
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    sync_fs_of(&handle)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn sync_fs_of(handle: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes a file descriptor we own and keep open for the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sync_fs_of(handle: &File) -> io::Result<()> {
    // No syncfs: a full sync is the portable equivalent.
    let _ = handle;
    // SAFETY: sync has no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

/// Makes a rename inside `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
