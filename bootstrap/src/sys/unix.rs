//! Unix: file identity, the default cache root, telling a full disk and a
//! `noexec` mount from other errors, and replacing the executable. The
//! cache's folders are in `dir/`.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether the open `file` is the file now at `path`.
pub fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `~/.cache`.
pub fn default_cache_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".cache"))
}

/// Errors that mean "no room left": disk full, quota, file-size limit.
pub fn is_disk_full(errno: i32) -> bool {
    errno == libc::ENOSPC || errno == libc::EDQUOT || errno == libc::EFBIG
}

/// Whether `dir` is on a filesystem mounted `noexec`.
pub fn is_noexec_mount(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stats points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stats = unsafe { stats.assume_init() };
    stats.f_flag & libc::ST_NOEXEC != 0
}

/// Whether this process may replace `exe`: it must be ours. Replacing a
/// file that belongs to another user (an admin's install, say) is never
/// what that user wants, even where the folder would allow it.
pub fn check_replaceable(exe: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(exe).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it belongs to user {}, not to us ({me})",
            meta.uid()
        ));
    }
    Ok(())
}

/// Renames the verified (and already synced) download `new` over `exe`:
/// same permissions as the old file, renamed in one atomic step, folder
/// synced. A running
/// copy of the old file keeps working: it holds the old inode.
pub fn replace_executable(new: &Path, exe: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(exe)?.permissions().mode() & 0o7777;
    std::fs::set_permissions(new, std::fs::Permissions::from_mode(mode))?;
    // The download was synced when it finished; the mode change is
    // metadata that the directory sync below makes durable with the rename.
    std::fs::rename(new, exe)?;
    let dir = payload_tools::persist::parent_dir(exe);
    super::sync_dir(dir)
}

/// Nothing is left behind by a replacement on Unix.
pub fn remove_replaced_leftover(_exe: &Path) {}

/// Starts writing `len` bytes of `file` at `offset` to disk, without
/// waiting for the disk (Linux); elsewhere the final sync does all of it.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: a syscall on an open descriptor, sharing no memory. Its
        // result is ignored on purpose: the sync after the download is
        // what must succeed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Lowers the priority of the calling thread (Linux, where each thread has
/// its own nice value); elsewhere the call would lower the whole process,
/// so it does nothing.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: a syscall on the calling thread, sharing no memory. Failing to
    // lower the priority only costs speed, so its result is ignored.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}
