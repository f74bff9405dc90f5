//! Windows: positioned reads, exclusive file creation, and symlinks. Built
//! by `make windows` and tested under Wine by `make test-windows`
//! (docs/windows.md), not yet in CI.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::FileExt;
use std::path::Path;

pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

pub fn create_new_file(path: &Path, _executable: bool) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

pub fn symlink(target: &str, link: &Path) -> io::Result<()> {
    let resolved = link.parent().map(|p| p.join(target));
    match resolved {
        Some(p) if p.is_dir() => std::os::windows::fs::symlink_dir(target, link),
        _ => std::os::windows::fs::symlink_file(target, link),
    }
}

/// Windows has no execute bit: every regular file counts as executable.
pub fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_readonly(mode & 0o200 == 0);
    std::fs::set_permissions(path, perms)
}

pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o555
    } else {
        0o755
    }
}

/// Windows has no syncfs; files written through the cache manager are
/// flushed with the directory handle below.
pub fn sync_filesystem(_dir: &Path) -> io::Result<()> {
    Ok(())
}

pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directory handles cannot be opened with std on Windows; NTFS journals
    // renames itself.
    Ok(())
}
