//! Unix: positioned reads, exclusive no-follow file creation with a mode,
//! symlinks, and folders held by descriptor ([`Dir`]) for work in folders
//! that other users can write.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Renames `from` over the file `to`: at once here, where an open file can
/// be replaced (`patience` is for Windows, where it cannot).
pub fn rename_replacing(from: &Path, to: &Path, _patience: Duration) -> io::Result<()> {
    std::fs::rename(from, to)
}

pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}

/// Creates a new file, failing if anything (a file, a symlink) is already
/// at `path`: mode 0644, with the execute bits if `executable`, without
/// the write bit if `read_only` (before umask). The file is open for
/// writing whatever its mode.
pub fn create_new_file(path: &Path, executable: bool, read_only: bool) -> io::Result<File> {
    let mode = if read_only { 0o444 } else { 0o644 };
    create_new_file_with_mode(path, if executable { mode | 0o111 } else { mode })
}

/// Nothing: the file has had its mode since [`create_new_file`].
#[inline]
pub fn set_read_only(_file: &File) -> io::Result<()> {
    Ok(())
}

/// The identity (device, inode) of a file with more than one name, by
/// which `pack` stores it once.
pub fn hard_link_identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

pub fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Whether the permission bits have any execute bit set.
pub fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
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

/// Nothing: one [`sync_filesystem`] after the extraction flushes every
/// file it wrote, far cheaper than one fsync per file.
#[inline]
pub fn flush_written(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Makes a rename inside `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new file with `mode` from the start (before umask), failing if
/// anything (a file, a symlink) is already at `path`: the file is never,
/// even for an instant, more open than its final mode.
pub fn create_new_file_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    // Readable too, as on Windows: a writer may check what it wrote
    // through the same descriptor (publish signs the copy it made).
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The process's file-creation mask, read without changing it for longer
/// than the two calls that read it (callers read it before starting threads).
#[allow(clippy::useless_conversion)] // mode_t is u16 on macOS
pub fn umask() -> u32 {
    // SAFETY: umask cannot fail; the mask is put back at once.
    unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        u32::from(mask)
    }
}

/// Whether another user could redirect `path` (absolute) to somewhere else
/// before we use it: a symlink on the way that another user (not root)
/// owns, or a folder on the way, above the last one, that every user may
/// write without the sticky bit (its next entry could be swapped for a
/// link). Missing components end the walk: we create them. The last
/// folder itself is used through a held descriptor, so it may be shared.
pub fn check_path_owned(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = euid();
    let components: Vec<_> = path.components().collect();
    let mut here = PathBuf::new();
    for (i, part) in components.iter().enumerate() {
        here.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&here) else {
            return Ok(());
        };
        let last = i + 1 == components.len();
        if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "'{}' is a link that user {} owns and could point anywhere",
                here.display(),
                meta.uid()
            ));
        }
        let shared = meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0;
        if meta.is_dir() && shared && !last {
            return Err(format!(
                "every user may write '{}' (mode {:o}): what is below it could be swapped",
                here.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// A folder held open by descriptor. Everything done through it happens in
/// that very folder, whatever is renamed, replaced or linked at its path
/// meanwhile: the way to work in a folder that other users can write.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

impl Dir {
    /// Opens the folder at `path`. Links in `path` are followed: the path
    /// is the caller's choice; what matters is that it is then held.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Dir {
            file,
            path: path.to_owned(),
        })
    }

    /// The path it was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` if nobody but us (and root) can write into this folder: it
    /// belongs to us or to root, and neither its group nor others may write.
    pub fn check_private(&self) -> Result<(), String> {
        let meta = self.file.metadata().map_err(|e| e.to_string())?;
        let me = euid();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "it belongs to user {}, not to us ({me})",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "other users may write to it (mode {:o})",
                meta.mode() & 0o7777
            ));
        }
        Ok(())
    }

    /// Creates the new file `name` in this folder with `mode` from the
    /// start (before umask), failing if anything, even a dangling link, is
    /// there already.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let name = c_name(name)?;
        // SAFETY: a valid descriptor and NUL-terminated name; the result is
        // checked before it is wrapped.
        let fd = unsafe {
            libc::openat(
                self.file.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates the new folder `name` (mode 0700) and holds it. What is held
    /// is checked to be a private folder of ours, so a folder or link put
    /// in its place between the two calls is refused, never used.
    pub fn create_private_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let c = c_name(name)?;
        // SAFETY: a valid descriptor and NUL-terminated name.
        if unsafe { libc::mkdirat(self.file.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; the result is checked before it is wrapped.
        let fd = unsafe {
            libc::openat(
                self.file.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "another folder was put in the place of the one just created",
            ));
        }
        Ok(Dir {
            file,
            path: self.path.join(name),
        })
    }

    /// Gives the file `name` the second name `new` in this folder, failing
    /// if `new` exists: an all-or-nothing rename that never replaces.
    pub fn link(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(name)?, c_name(new)?);
        let fd = self.file.as_raw_fd();
        // SAFETY: valid descriptors and NUL-terminated names. Flags 0: a
        // link at `name` is linked itself, never followed.
        check(unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) })
    }

    /// Renames `name` to `new` in this folder (replacing a file, or an
    /// empty folder when `name` is a folder, as rename(2) does).
    pub fn rename(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(name)?, c_name(new)?);
        let fd = self.file.as_raw_fd();
        // SAFETY: valid descriptors and NUL-terminated names.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Removes the file (or link) `name` from this folder.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: a valid descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.file.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// Sets the mode of the held folder itself.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Makes renames and links in this folder durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// A path naming this very folder for as long as it is held, for code
    /// that works by path: `/proc/self/fd/N` on Linux (the kernel resolves
    /// it to the held folder, wherever it has been moved), else the path it
    /// was opened by.
    pub fn held_path(&self) -> PathBuf {
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        let same = match (std::fs::metadata(&proc_path), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same { proc_path } else { self.path.clone() }
    }

    /// Whether the folder now at `path` is this held one.
    pub fn is_at(&self, path: &Path) -> bool {
        match (std::fs::symlink_metadata(path), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// One path component as a C string: a name with a `/` (or a NUL) would
/// reach outside the held folder, so it is refused.
fn c_name(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes == b"." || bytes == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
