//! Unix: private directories, lock identity, the default cache root,
//! telling a full disk and a `noexec` mount from other errors, and for the
//! updater: folders held open (`Dir`: everything relative to one
//! descriptor, never through a link), who a file is (`FileId`), who may
//! write a folder, and the checked exchange that installs a new build.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Creates `path` and any missing parents with mode 0700.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

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

/// Whether this process may replace the executable `exe` (as `fstat` saw
/// the file it runs): it must be ours. Replacing a file that belongs to
/// another user (an admin's install, say) is never what that user wants,
/// even where the folder would allow it.
pub fn check_replaceable(exe: &FileId) -> Result<(), String> {
    let me = euid();
    if exe.uid != me {
        return Err(format!("it belongs to user {}, not to us ({me})", exe.uid));
    }
    Ok(())
}

/// Puts the verified (and already synced) download `new` in place of
/// `exe`, both in `dir`, provided `exe` still is the file `expected` and
/// ours; `Ok(false)`, with nothing changed, if it is not (a newer build
/// installed meanwhile must not be downgraded, nor another file replaced).
/// Linux exchanges the two names in one step and looks at what it swapped
/// out, so that nothing can slip in between the check and the rename: if
/// that is not `expected` after all, it is swapped back. Elsewhere (or on a
/// filesystem without the exchange) the check is followed by a rename. The
/// folder is synced after. A running copy of the old file keeps working: it
/// holds the old inode.
pub fn replace_executable(dir: &Dir, new: &str, exe: &str, expected: &FileId) -> io::Result<bool> {
    let is_expected = |name: &str| {
        dir.stat(name)
            .map(|id| id.is_some_and(|id| id.same_file(expected) && id.uid == expected.uid))
    };
    if !is_expected(exe)? {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    match dir.exchange(new, exe) {
        Ok(()) => {
            if !is_expected(new).unwrap_or(false) {
                dir.exchange(new, exe)?;
                return Ok(false);
            }
            // The old build, now under the download's name. Should this
            // fail, it is a leftover that the next update removes.
            let _ = dir.remove(new);
            dir.sync()?;
            return Ok(true);
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
        Err(e) => return Err(e),
    }
    dir.rename(new, exe)?;
    dir.sync()?;
    Ok(true)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Who a file is, as `fstat` sees it: enough to tell whether a name still
/// leads to the file that was checked, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub nlink: u64,
}

impl FileId {
    // The field types of `stat` differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: libc::stat) -> FileId {
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
        }
    }

    /// Whether `self` and `other` are one file.
    pub fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Whether it is a regular file.
    #[allow(clippy::unnecessary_cast)] // `mode_t` differs between platforms
    fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT as u32 == libc::S_IFREG as u32
    }
}

/// Who the open `file` is.
pub fn file_id(file: &File) -> io::Result<FileId> {
    use std::os::fd::AsRawFd;
    fstat(file.as_raw_fd())
}

fn fstat(fd: libc::c_int) -> io::Result<FileId> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat on an open descriptor fills `st` on success.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it initialised the struct.
    Ok(FileId::from_stat(unsafe { st.assume_init() }))
}

/// A folder held open: what is created, checked, renamed and removed in it
/// is found relative to this descriptor, one name at a time, never through
/// a link and never by a path looked up again.
#[derive(Debug)]
pub struct Dir {
    fd: std::os::fd::OwnedFd,
}

impl Dir {
    /// Opens the folder `path` (not through a link at its last component).
    pub fn open(path: &Path) -> io::Result<Dir> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid C string; the descriptor returned is ours to own.
        let fd = cvt(unsafe { libc::open(c_path.as_ptr(), flags) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Dir {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    fn raw(&self) -> libc::c_int {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Who the folder is.
    pub fn id(&self) -> io::Result<FileId> {
        fstat(self.raw())
    }

    /// Creates the file `name`: exclusively (never an existing file, nor
    /// through a link), private (0600 from the start), for reading and
    /// writing.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        self.open_at(name, flags)
    }

    /// Opens the file `name` for reading and writing (created 0600 if
    /// `create`), not through a link, and makes sure it is a private file
    /// of ours: a regular file that we own, with no other name (a hard
    /// link would let its other names see what we write).
    pub fn open_private(&self, name: &str, create: bool) -> io::Result<File> {
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | if create { libc::O_CREAT } else { 0 };
        let file = self.open_at(name, flags)?;
        let id = file_id(&file)?;
        if !id.is_file() || id.uid != euid() || id.nlink != 1 || id.mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a private file of ours",
            ));
        }
        Ok(file)
    }

    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        use std::os::fd::FromRawFd;
        let c_name = std::ffi::CString::new(name)?;
        let mode: libc::c_uint = 0o600;
        // SAFETY: a valid C string relative to an open folder; the
        // descriptor returned is ours to own.
        let fd = cvt(unsafe {
            libc::openat(self.raw(), c_name.as_ptr(), flags | libc::O_CLOEXEC, mode)
        })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Who `name` is (a link itself, not what it points to); `None` if
    /// nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<FileId>> {
        let c_name = std::ffi::CString::new(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid C string relative to an open folder; fstatat
        // fills `st` on success.
        let rc = unsafe {
            libc::fstatat(
                self.raw(),
                c_name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match cvt(rc) {
            // SAFETY: fstatat returned 0, so it initialised the struct.
            Ok(_) => Ok(Some(FileId::from_stat(unsafe { st.assume_init() }))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes `name` (a file or a link, never what a link points to).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c_name = std::ffi::CString::new(name)?;
        // SAFETY: a valid C string relative to an open folder.
        cvt(unsafe { libc::unlinkat(self.raw(), c_name.as_ptr(), 0) }).map(drop)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (c_from, c_to) = (std::ffi::CString::new(from)?, std::ffi::CString::new(to)?);
        // SAFETY: valid C strings relative to an open folder.
        cvt(unsafe { libc::renameat(self.raw(), c_from.as_ptr(), self.raw(), c_to.as_ptr()) })
            .map(drop)
    }

    /// Swaps the names `a` and `b` in one atomic step (Linux).
    #[cfg(target_os = "linux")]
    fn exchange(&self, a: &str, b: &str) -> io::Result<()> {
        let (c_a, c_b) = (std::ffi::CString::new(a)?, std::ffi::CString::new(b)?);
        // SAFETY: valid C strings relative to an open folder; the raw
        // system call, so that it works whatever the C library offers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                self.raw(),
                c_a.as_ptr(),
                self.raw(),
                c_b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Makes the folder's entries durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on an open descriptor.
        cvt(unsafe { libc::fsync(self.raw()) }).map(drop)
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Whether no one but us may change what the folder `dir` holds: it must
/// belong to us (or root) and be writable by no other user. Whoever else
/// may write it could rename files in it between our checks and our
/// rename. Group write is tolerated for the user's private group (the
/// convention where each user's primary group has the user's own number
/// and no one else in it), where a umask of 002 makes every folder
/// group-writable.
pub fn check_unshared_dir(dir: &FileId) -> Result<(), String> {
    let me = euid();
    if dir.uid != me && dir.uid != 0 {
        return Err(format!("it belongs to user {}", dir.uid));
    }
    // SAFETY: getegid has no preconditions and cannot fail.
    let own_group = dir.gid == me && dir.gid == unsafe { libc::getegid() };
    let mode = dir.mode & 0o7777;
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && !own_group) {
        return Err(format!("other users may write to it (mode {mode:o})"));
    }
    Ok(())
}

/// Bytes still free for us on the filesystem of `file`; `None` if unknown.
pub fn free_space(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs on an open descriptor fills `st` on success.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstatvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Nothing is left behind by a replacement on Unix.
pub fn remove_replaced_leftover(_exe: &Path) {}

/// The cache root must be ours and not writable by every user. Group write
/// is tolerated here: with a umask of 002 (user-private groups) `~/.cache`
/// is group-writable by a group of one. The app folders inside, which we
/// create 0700, are held to [`check_private_dir`].
pub fn check_cache_root(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    check_ours(&meta, 0o002, "every user")
}

/// A cache folder must be a real folder (not a link), owned by us and not
/// writable by anyone else: whoever can write it can change the app we run.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.file_type().is_dir() {
        return Err("it is not a folder (a symlink?)".into());
    }
    check_ours(&meta, 0o022, "other users")
}

/// [`check_private_dir`] for a folder held open ([`Dir::id`]).
pub fn check_private_dir_id(dir: &FileId) -> Result<(), String> {
    let me = euid();
    if dir.uid != me {
        return Err(format!("it belongs to user {}, not to us ({me})", dir.uid));
    }
    if dir.mode & 0o022 != 0 {
        return Err(format!(
            "other users may write to it (mode {:o})",
            dir.mode & 0o7777
        ));
    }
    Ok(())
}

/// The file must belong to us, and none of the `others_write` mode bits may
/// be set (`others` names who they let write, for the message).
fn check_ours(meta: &std::fs::Metadata, others_write: u32, others: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it belongs to user {}, not to us ({me})",
            meta.uid()
        ));
    }
    if meta.mode() & others_write != 0 {
        return Err(format!(
            "{others} may write to it (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

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
