//! Unix: file identity (`FileId`), the default cache root, telling a full
//! disk and a `noexec` mount from other errors, who may write a folder, and
//! the checked exchange that installs a new build. Folders held open
//! (`Dir`) and the cache path's check are in `dir/`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Dir;

/// `~/.cache`.
pub fn default_cache_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".cache"))
}

/// Why there is no cache root when [`default_cache_root`] finds none.
pub const NO_CACHE_ROOT: &str = "neither ONEFILE_CACHE_DIR, XDG_CACHE_HOME nor HOME is set";

/// The hint for a cache folder that other users could change.
pub const UNSAFE_CACHE_HINT: &str = "other users could change the app run from it: take away \
    their write access (chmod go-w), or set ONEFILE_CACHE_DIR to a folder that only you can change";

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
/// even where the folder would allow it. (`_file` is the same file open:
/// Windows reads the owner from it.)
pub fn check_replaceable(_file: &File, exe: &FileId) -> Result<(), String> {
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
/// holds the old inode. (`_download` is `new` open: Windows checks that the
/// file it renames is that one.) With `keep`, the replaced build stays in
/// the folder under that name (replacing whatever had it), for a rollback;
/// without, it is removed.
pub fn replace_executable(
    dir: &Dir,
    new: &str,
    _download: &File,
    exe: &str,
    expected: &FileId,
    keep: Option<&str>,
) -> io::Result<bool> {
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
            let _ = match keep {
                Some(keep) => dir.rename(new, keep),
                None => dir.remove_file(new),
            };
            dir.sync()?;
            return Ok(true);
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
        Err(e) => return Err(e),
    }
    if let Some(keep) = keep {
        // A second name for the old build before the rename drops its
        // first; the executable's own name never goes missing.
        let _ = dir.remove_file(keep);
        let _ = dir.hard_link(exe, keep);
    }
    dir.rename(new, exe)?;
    dir.sync()?;
    Ok(true)
}

/// A command that executes the file held open as `file` (named `name` in
/// `dir`), not whatever the name leads to by then: Linux executes the
/// descriptor itself (`execveat` with `AT_EMPTY_PATH`; on a kernel without
/// it, or a sandbox that refuses it, `/proc/self/fd/N`, the same open
/// file), which also never hands a file the kernel cannot execute to
/// `/bin/sh`, as `execvp` would. It is made executable by us alone when its
/// owner cannot already execute it (the install gives it the executable's
/// mode). It is killed when the thread that starts it ends, which the
/// launcher ending does too: a self-test that hangs must not outlive it.
/// It gets this process's environment plus `var` (std's `Command::env`
/// would not reach an exec of our own). `file` must stay open until the
/// command is spawned. `Unsupported` elsewhere, and where the file cannot
/// be made executable (a file system such as FAT refuses the mode).
pub fn command_for_held_file(
    _dir: &Dir,
    _name: &str,
    file: &File,
    var: (&str, &str),
) -> io::Result<Command> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        use std::os::unix::process::CommandExt;
        let unsupported = |e: io::Error| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("cannot make it executable: {e}"),
            )
        };
        let meta = file.metadata()?;
        if meta.mode() & libc::S_IXUSR == 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(unsupported)?;
        }
        let fd = file.as_raw_fd();
        let envp = Environment::ours_with(var)?;
        let by_proc = format!("/proc/self/fd/{fd}");
        // Whether the fallback leads to this very file, checked before the
        // fork (the child may not allocate).
        let proc_works = std::fs::metadata(&by_proc)
            .is_ok_and(|seen| seen.dev() == meta.dev() && seen.ino() == meta.ino());
        let by_proc = std::ffi::CString::new(by_proc)?;
        // Named for messages only: the closure below executes `fd`.
        let mut cmd = Command::new(format!("/proc/self/fd/{fd}"));
        // SAFETY: getpid has no preconditions and cannot fail.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the forked child before exec and only
        // calls async-signal-safe functions (prctl, getppid, execveat,
        // execve) on memory it does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher ended before prctl took effect: don't run on.
                // (No message: the child may not allocate.)
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                let argv = [c"onefile-self-test".as_ptr(), std::ptr::null()];
                libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                // Only a failed exec returns.
                let failed = io::Error::last_os_error();
                if proc_works && matches!(failed.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                    libc::execve(by_proc.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    return Err(io::Error::last_os_error());
                }
                Err(failed)
            });
        }
        Ok(cmd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, var);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no way to execute an open file here",
        ))
    }
}

/// Whose fault it is that a self-test could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The build's: the system cannot execute it (another format or
    /// architecture, a missing interpreter...).
    Build,
    /// This machine's, for now: no process, memory or descriptor to be
    /// had, or the file is still open for writing somewhere.
    Later,
    /// This machine cannot run a self-test at all (no way to execute a
    /// held file: no `execveat`, no `/proc`, a sandbox that forbids it).
    Unsupported,
}

/// Sorts the error of a self-test's start ([`SpawnFailure`]); what is not
/// known to be this machine's is the build's.
pub fn spawn_failure(e: &io::Error) -> SpawnFailure {
    match e.raw_os_error() {
        Some(
            libc::EAGAIN
            | libc::EMFILE
            | libc::ENFILE
            | libc::ENOMEM
            | libc::ETXTBSY
            | libc::EINTR
            | libc::ESRCH,
        ) => SpawnFailure::Later,
        Some(libc::ENOSYS | libc::EPERM) => SpawnFailure::Unsupported,
        _ => SpawnFailure::Build,
    }
}

/// An environment for `execveat`: its strings, and the NULL-terminated
/// array of pointers to them, made before the fork (the child may not
/// allocate).
#[cfg(target_os = "linux")]
struct Environment {
    _strings: Vec<std::ffi::CString>,
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the pointers lead into `_strings`, owned alongside and never
// changed: the whole is as shareable as the strings themselves.
#[cfg(target_os = "linux")]
unsafe impl Send for Environment {}
// SAFETY: as above; nothing is ever written through the pointers.
#[cfg(target_os = "linux")]
unsafe impl Sync for Environment {}

#[cfg(target_os = "linux")]
impl Environment {
    /// This process's environment, with `var` (name, value) in place of
    /// any variable of that name.
    fn ours_with(var: (&str, &str)) -> io::Result<Environment> {
        use std::os::unix::ffi::OsStrExt;
        let mut strings: Vec<std::ffi::CString> = std::env::vars_os()
            .filter(|(name, _)| name.as_bytes() != var.0.as_bytes())
            .filter_map(|(name, value)| {
                let mut entry = name.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                // No NUL inside: the environment came as C strings.
                std::ffi::CString::new(entry).ok()
            })
            .collect();
        strings.push(std::ffi::CString::new(format!("{}={}", var.0, var.1))?);
        Ok(Environment::new(strings))
    }

    fn new(strings: Vec<std::ffi::CString>) -> Environment {
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Environment {
            _strings: strings,
            pointers,
        }
    }

    /// The array `execveat` takes. (A method, so that a closure captures
    /// the whole `Environment`, not the field alone.)
    fn as_ptr(&self) -> *const *const libc::c_char {
        self.pointers.as_ptr()
    }
}

/// Runs `spawn`: Unix shows no error dialogs.
pub fn without_error_dialogs<T>(spawn: impl FnOnce() -> T) -> T {
    spawn()
}

/// Nothing to hold on Unix: the child ends with the thread that started
/// it (`command_for_held_file`).
pub fn end_with_us(_child: &std::process::Child) -> Option<()> {
    Some(())
}

/// `exe` as it is: Unix has no short names.
pub fn long_path(exe: &Path) -> PathBuf {
    exe.to_owned()
}

/// Nothing to wait for: on Linux the install is one exchange of names
/// (elsewhere one rename), and a process that ends between two steps
/// leaves the executable's name in place either way.
pub fn block_installs() {}

/// Removes a build's folder and everything in it. Read-only files are no
/// obstacle: removing a name needs write access to its folder only, and
/// the cache writes every folder 0755.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(dir)
}

/// The executable's mode, for its replacement.
pub fn copy_permissions(from: &File, to: &File) -> io::Result<()> {
    to.set_permissions(from.metadata()?.permissions())
}

pub(crate) fn euid() -> u32 {
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
    pub(crate) fn from_stat(st: libc::stat) -> FileId {
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
    pub(crate) fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT as u32 == libc::S_IFREG as u32
    }
}

/// Who the file at `path` is (a link itself, never what it leads to);
/// `None` if nothing is there.
pub fn path_id(path: &Path) -> io::Result<Option<FileId>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
            nlink: m.nlink(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
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
/// group-writable. (`_held` is the same folder open: Windows reads the
/// owner and DACL from it.)
pub fn check_unshared_dir(_held: &Dir, dir: &FileId) -> Result<(), String> {
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

/// Writes all of `buf`, the next bytes of a file written in order, which
/// belong at `offset`: at the cursor, which is there (the positioned reads
/// of handles cloned from `file` leave it alone on Unix).
pub fn append_at(file: &File, buf: &[u8], _offset: u64) -> io::Result<()> {
    io::Write::write_all(&mut &*file, buf)
}

/// Whether the process `pid` still exists (a process of another user
/// counts: it exists).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether dying of `signal` is a crash (a bad build), not a user's or the
/// system's request to stop.
pub fn is_crash_signal(signal: i32) -> bool {
    [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGABRT,
        libc::SIGFPE,
    ]
    .contains(&signal)
}

/// Unix reports crashes as signals, never as exit codes.
pub fn is_crash_code(_code: i32) -> bool {
    false
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

/// The process id a launcher that restarted this one put in its marker
/// (`restart`): our own, as `exec` keeps it.
pub fn restarter_pid() -> Option<u32> {
    Some(std::process::id())
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

/// Points the launcher's stdin and stdout (and stderr unless `keep_stderr`)
/// at the null device, so that whoever reads the app's output sees its end
/// although the launcher runs on for a moment.
pub fn release_stdio(keep_stderr: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let last = if keep_stderr { 1 } else { 2 };
    for fd in 0..=last {
        // SAFETY: dup2 onto the standard descriptors, from one we own.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Starts `exe` (open as `file`) with the variables `env` as the background
/// updater: stdio on the null device, a session of its own (no controlling
/// terminal, no signal from the terminal), a low priority, no descriptor
/// of ours (std opens all of them close-on-exec), its working directory
/// the root (it keeps no mount busy). Returns its pid; nobody waits for it.
///
/// Linux starts the held file through `/proc/self/fd`: the very build this
/// launcher runs, even if the executable's name was replaced meanwhile.
pub fn spawn_background(
    exe: &Path,
    file: &File,
    env: &[(&str, &std::ffi::OsStr)],
) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    #[cfg(target_os = "linux")]
    let program = {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    #[cfg(not(target_os = "linux"))]
    let program = {
        let _ = file;
        exe.to_owned()
    };
    let _ = exe;
    let mut cmd = Command::new(program);
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe functions (setsid, setpriority,
    // sigemptyset, pthread_sigmask, close_range, fcntl).
    unsafe {
        cmd.pre_exec(|| {
            close_inherited_on_exec();
            cvt(libc::setsid())?;
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    // Reaped by init once the launcher has exited: a zombie only while
    // the launcher lives, which is a moment.
    Ok(cmd.spawn()?.id())
}

/// Marks every descriptor above stderr close-on-exec, those the launcher
/// inherited from whoever started it included (a build tool's jobserver
/// pipe, a shell's extra redirection): the background updater outlives
/// the launch and must keep none of them open. Marked, not closed, so
/// that `/proc/self/fd/N` still names the executable when `exec` opens it.
///
/// # Safety
/// Async-signal-safe: for a forked child before `exec`.
unsafe fn close_inherited_on_exec() {
    #[cfg(target_os = "linux")]
    // SAFETY: a syscall with plain integer arguments.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
    };
    #[cfg(not(target_os = "linux"))]
    let done = false;
    if !done {
        // Kernels before 5.11: one by one, up to a bound (descriptors
        // above it are rare, and harmless beyond keeping a pipe open).
        for fd in 3..4096 {
            // SAFETY: fcntl on a number that may not be open fails
            // harmlessly (EBADF).
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}
