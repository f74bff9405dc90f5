//! Windows: the same calls as `unix.rs`. Built by `make windows` and
//! tested under Wine by `make test-windows` (docs/windows.md), which CI runs.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::process::Command;

use windows_sys::Win32::Storage::FileSystem::{
    DELETE, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES,
    FILE_RENAME_INFO, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FileRenameInfo,
    GetDiskFreeSpaceExW, GetFinalPathNameByHandleW, GetLongPathNameW, SYNCHRONIZE,
    SetFileInformationByHandle,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_LOWEST,
};

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

/// Puts the verified (and already synced) download `new` in place of
/// `exe`, both in `dir`, provided `exe` still is the file `expected`;
/// `Ok(false)`, with nothing changed, if it is not. Windows cannot rename
/// over, or delete, a running executable, but it can rename it:
///
/// 1. check that the folder is still the one the updater holds (`dir`),
///    open `exe` (never through a link) with the right to rename it, and
///    check through that handle that it is `expected`; open the download
///    `new` the same way and check that it is the verified `download`;
/// 2. rename that very handle aside, to a fresh `.<exe>.<random>.old` that
///    nothing else holds (a rename that never replaces: a stale copy an old
///    instance still runs, or anything planted at a name, is left alone);
/// 3. rename the download to `exe`'s name, again never replacing;
/// 4. if that fails, rename the aside handle back, never replacing either:
///    whatever took the name meanwhile is kept, and the error says where
///    the old build is.
///
/// The aside copy is deleted by a later start ([`remove_replaced_leftover`])
/// once nothing runs it; with `keep`, it is renamed to that name instead
/// (an older copy there removed first), for a rollback, and stays. NTFS
/// journals renames, so there is no folder sync to make.
pub fn replace_executable(
    dir: &Dir,
    new: &str,
    download: &File,
    exe: &str,
    expected: &FileId,
    keep: Option<&str>,
) -> io::Result<bool> {
    // Held until both renames are done: a launcher that exits meanwhile
    // waits for them (see `block_installs`).
    let _installing = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let folder = open_folder(dir.path())?;
    // The folder renamed into is the one the updater checked and holds,
    // not whatever its path leads to now.
    if !file_id(&folder)?.same_file(&dir.id()?) {
        return Ok(false);
    }
    let old = match open_for_rename(&dir.path().join(exe)) {
        Ok(old) => old,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !file_id(&old)?.same_file(expected) {
        return Ok(false);
    }
    // The file to move into place is the one verified, opened before
    // anything moves.
    let verified = file_id(download)?;
    let incoming = open_for_rename(&dir.path().join(new))?;
    if !file_id(&incoming)?.same_file(&verified) {
        return Ok(false);
    }
    let aside = rename_aside(&old, &folder, exe)?;
    if let Err(e) = rename_handle(&incoming, &folder, exe) {
        // Never replacing: after a failed swap back the old build stays at
        // the aside name, and whatever holds `exe` is kept.
        if let Err(back) = rename_handle(&old, &folder, exe) {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}; the old build is kept as '{}' ({back})",
                    dir.path().join(&aside).display()
                ),
            ));
        }
        return Err(e);
    }
    if let Some(keep) = keep {
        // An old instance may still run the build at `keep`: Windows cannot
        // delete a running image, but can rename it, to an aside name that
        // a later start removes. Should a step fail, the aside copy of the
        // replaced build is such a leftover, and there is no previous build
        // to roll back to.
        if let Ok(kept) = open_for_rename(&dir.path().join(keep)) {
            let _ = rename_aside(&kept, &folder, exe);
        }
        let _ = rename_handle(&old, &folder, keep);
    }
    Ok(true)
}

/// A command that executes the file `name` in the held folder `dir`, open
/// as `file`: by its path (Windows executes nothing by handle). The
/// caller checked that the name holds `file`, which is open without
/// write sharing, so no one can change its bytes meanwhile; the folder
/// lets no one else rename anything in it. No console window is shown. It
/// gets this process's environment plus `var`.
pub fn command_for_held_file(
    dir: &Dir,
    name: &str,
    _file: &File,
    var: (&str, &str),
) -> io::Result<Command> {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;
    let mut cmd = Command::new(dir.path().join(name));
    cmd.creation_flags(CREATE_NO_WINDOW).env(var.0, var.1);
    Ok(cmd)
}

/// Whose fault it is that a self-test could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The build's: Windows cannot execute it (another format or
    /// architecture, a missing DLL...).
    Build,
    /// This machine's, for now: no memory or handles to be had, or the
    /// file is still open by someone who shares it with no executing.
    Later,
    /// This machine cannot run a self-test at all.
    Unsupported,
}

/// Sorts the error of a self-test's start ([`SpawnFailure`]); what is not
/// known to be this machine's is the build's.
pub fn spawn_failure(e: &io::Error) -> SpawnFailure {
    use windows_sys::Win32::Foundation::{
        ERROR_NO_SYSTEM_RESOURCES, ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY,
        ERROR_SHARING_VIOLATION, ERROR_TOO_MANY_OPEN_FILES,
    };
    match e.raw_os_error().map(|code| code as u32) {
        Some(
            ERROR_NOT_ENOUGH_MEMORY
            | ERROR_OUTOFMEMORY
            | ERROR_NO_SYSTEM_RESOURCES
            | ERROR_TOO_MANY_OPEN_FILES
            | ERROR_SHARING_VIOLATION,
        ) => SpawnFailure::Later,
        _ if e.kind() == io::ErrorKind::Unsupported => SpawnFailure::Unsupported,
        _ => SpawnFailure::Build,
    }
}

/// Runs `spawn` (the self-test's start) with Windows' error dialogs off,
/// which the child inherits: a build the loader cannot start (a DLL or an
/// entry point missing on this Windows) then fails at once with the
/// loader's status as its exit code, and one that crashes just ends,
/// instead of showing the user a system message box about an update they
/// never asked for and hanging until it is answered. The mode is
/// restored after.
pub fn without_error_dialogs<T>(spawn: impl FnOnce() -> T) -> T {
    use windows_sys::Win32::System::Diagnostics::Debug::{
        GetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SEM_NOOPENFILEERRORBOX,
        SetErrorMode,
    };
    // SAFETY: both only read or set this process's error mode flags.
    let before = unsafe { GetErrorMode() };
    // SAFETY: as above.
    unsafe {
        SetErrorMode(
            before | SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX,
        )
    };
    let spawned = spawn();
    // SAFETY: as above.
    unsafe { SetErrorMode(before) };
    spawned
}

/// Makes `child` (a self-test) end when this process ends, however it
/// ends: a job of its own that kills what is in it when its last handle
/// closes, and the one handle, which the caller holds while it waits for
/// the child. (The launcher's own job stops killing on close before the
/// launcher exits by itself, so that the app's children live on; a
/// self-test must not.) `None` if Windows refuses: the caller's time limit
/// still kills the child while this process runs.
pub fn end_with_us(child: &std::process::Child) -> Option<std::os::windows::io::OwnedHandle> {
    use std::os::windows::io::FromRawHandle;
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
        SetInformationJobObject,
    };
    // SAFETY: no security attributes (a handle not inherited) and no name.
    let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: a new handle that nothing else owns: closed when dropped.
    let job = unsafe { std::os::windows::io::OwnedHandle::from_raw_handle(handle) };
    // SAFETY: a plain-data struct of integers, all zero means "no limit".
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: the job handle is open; the pointer and size describe
    // `limits`, which outlives the call; the child's handle is open.
    let done = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            std::ptr::from_ref(&limits).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        ) != 0
            && AssignProcessToJobObject(job.as_raw_handle(), child.as_raw_handle()) != 0
    };
    done.then_some(job)
}

/// `exe` with its short (8.3) names spelled out: the name the executable
/// is started by may be `MYAPP~1.EXE`, and an update must put the new
/// build at the file's own name (`MyApplication.exe`), not turn the alias
/// into its name. Only the spelling changes (no link is resolved), and the
/// updater checks the file's identity at that name before using it; `exe`
/// as it is when Windows cannot say.
pub fn long_path(exe: &Path) -> PathBuf {
    use std::os::windows::ffi::OsStringExt;
    let Ok(name) = payload_tools::sys::wide(exe.as_os_str()) else {
        return exe.to_owned();
    };
    // SAFETY: `name` is NUL-terminated; `wide_string` passes a buffer
    // writable for the length it gives.
    match wide_string(|buf, len| unsafe { GetLongPathNameW(name.as_ptr(), buf, len) }) {
        Ok(long) => PathBuf::from(std::ffi::OsString::from_wide(&long)),
        Err(_) => exe.to_owned(),
    }
}

/// Taken by an install for its two renames.
static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Called by a launcher about to exit: waits for an install in progress to
/// finish its renames (milliseconds) and keeps any later one from
/// starting. Ending the process between the two renames would leave the
/// executable's name empty (the old build at its aside name), which no
/// launch can start; a rename is not interruptible, a thread between two
/// of them is.
pub fn block_installs() {
    let held = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Never released: the process ends next.
    std::mem::forget(held);
}

/// Removes a build's folder and everything in it, read-only files
/// included. std deletes those itself where Windows offers POSIX delete
/// semantics (NTFS on Windows 10 1809 and later); elsewhere their
/// attribute is cleared first, file by file, without following links
/// (a link is removed as itself), and the removal tried again.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    clear_read_only(dir);
    std::fs::remove_dir_all(dir)
}

/// Clears the read-only attribute of every file below `dir`, as far as it
/// can: what it cannot change, the removal reports.
fn clear_read_only(dir: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for item in listing.flatten() {
        let Ok(meta) = item.metadata() else { continue };
        let kind = meta.file_type();
        if kind.is_dir() {
            clear_read_only(&item.path());
        } else if kind.is_file() && meta.permissions().readonly() {
            let mut permissions = meta.permissions();
            // Windows: this clears the read-only attribute and nothing else.
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            let _ = std::fs::set_permissions(item.path(), permissions);
        }
    }
}

/// Copies what Windows keeps of a file's permissions in its attributes,
/// the read-only flag, from the executable to its replacement (its access
/// rules come from the folder, as the download was created there). The
/// other attributes (hidden, compressed, archive...) are the file's own.
/// Nothing is written when the flag already matches, the usual case.
pub fn copy_permissions(from: &File, to: &File) -> io::Result<()> {
    let mut permissions = to.metadata()?.permissions();
    let readonly = from.metadata()?.permissions().readonly();
    if permissions.readonly() == readonly {
        return Ok(());
    }
    permissions.set_readonly(readonly);
    to.set_permissions(permissions)
}

/// Whether `name` is one of the aside copies of the executable named
/// `exe`: `.<exe>.<number>.old`, or `.<exe>.old`, the name earlier builds
/// used.
fn is_aside_of(name: &str, exe: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_prefix(exe))
        .and_then(|n| n.strip_suffix(".old"))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Renames `old` (the executable, open) to a fresh aside name in `folder`,
/// never replacing anything; returns the name.
fn rename_aside(old: &File, folder: &File, exe: &str) -> io::Result<String> {
    let mut attempts = 0;
    loop {
        // Random so that no one can plant a file at it ahead; the rename
        // that never replaces is what makes it ours.
        let random = RandomState::new().hash_one(std::process::id());
        let aside = format!(".{exe}.{random}.old");
        match rename_handle(old, folder, &aside) {
            Ok(()) => return Ok(aside),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Opens `path` (a link itself, never what it leads to) with the right to
/// rename it, sharing everything: a running executable stays renamable.
fn open_for_rename(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// Opens the folder `path` itself: the renames name their targets by the
/// path this handle has.
fn open_folder(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// Renames the open `file` to `name` in `folder`, failing (AlreadyExists)
/// rather than replacing a file of that name. The target is the folder's
/// full path as its handle gives it, in NT form (`\??\C:\…`), which both
/// Windows (that passes it on as is) and Wine (that converts DOS paths)
/// take; a name relative to a `RootDirectory` handle is refused by Wine.
fn rename_handle(file: &File, folder: &File, name: &str) -> io::Result<()> {
    let mut wide = nt_path_of(folder)?;
    wide.push(u16::from(b'\\'));
    wide.extend(name.encode_utf16());
    let name_bytes = wide.len() * 2;
    let head = std::mem::offset_of!(FILE_RENAME_INFO, FileName);
    // Room for a final NUL, which Wine reads.
    let size = head + name_bytes + 2;
    let size_u32 = u32::try_from(size).map_err(|_| io::Error::other("path too long"))?;
    let name_len = u32::try_from(name_bytes).map_err(|_| io::Error::other("path too long"))?;
    // u64 words: zeroed, and aligned for the struct's handle field.
    let mut buf = vec![0u64; size.div_ceil(8)];
    let info = buf.as_mut_ptr().cast::<FILE_RENAME_INFO>();
    // SAFETY: `buf` is zeroed, 8-byte aligned and holds `size` bytes: the
    // struct's head and the name written right after it, inside `buf`.
    unsafe {
        (*info).Anonymous.ReplaceIfExists = false;
        (*info).RootDirectory = std::ptr::null_mut();
        (*info).FileNameLength = name_len;
        std::ptr::copy_nonoverlapping(
            wide.as_ptr(),
            std::ptr::addr_of_mut!((*info).FileName).cast::<u16>(),
            wide.len(),
        );
    }
    // SAFETY: the handle is open; `info` points at `size_u32` bytes of a
    // FILE_RENAME_INFO that live until the call returns.
    let ok = unsafe {
        SetFileInformationByHandle(
            file.as_raw_handle(),
            FileRenameInfo,
            info.cast_const().cast(),
            size_u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The full path of the open `file` in NT form: `\??\C:\…` or
/// `\??\UNC\server\share\…`, without a trailing separator.
fn nt_path_of(file: &File) -> io::Result<Vec<u16>> {
    let mut path = final_path(file)?;
    // `\\?\` (what the call gives) becomes `\??\`.
    if path.len() < 4 || path[..4] != [92, 92, 63, 92] {
        return Err(io::Error::other("the folder has no drive or share path"));
    }
    path[1] = u16::from(b'?');
    while path.last() == Some(&u16::from(b'\\')) {
        path.pop();
    }
    Ok(path)
}

/// The path of the open `file` as `GetFinalPathNameByHandleW` gives it
/// (`\\?\C:\…`), without the final NUL.
pub fn final_path(file: &File) -> io::Result<Vec<u16>> {
    // SAFETY: the handle is open; `wide_string` passes a buffer writable
    // for the length it gives.
    wide_string(|buf, len| unsafe { GetFinalPathNameByHandleW(file.as_raw_handle(), buf, len, 0) })
}

/// Runs `fill`, a Windows call that writes a UTF-16 string into a buffer
/// and returns its length, or the size it needs (its NUL included) when
/// the buffer is too small, or 0 on failure, with a buffer that grows until
/// the string fits, up to 32,768 units (the longest path Windows has).
fn wide_string(mut fill: impl FnMut(*mut u16, u32) -> u32) -> io::Result<Vec<u16>> {
    const LONGEST: usize = 32_768;
    let mut buf = vec![0u16; 512];
    loop {
        // The buffer never exceeds LONGEST + 1 units: it fits a u32.
        let n = fill(buf.as_mut_ptr(), buf.len() as u32) as usize;
        match n {
            0 => return Err(io::Error::last_os_error()),
            n if n < buf.len() => {
                buf.truncate(n);
                return Ok(buf);
            }
            n if n <= LONGEST => buf.resize(n + 1, 0),
            _ => return Err(io::Error::other("path too long")),
        }
    }
}

/// Who a file is: the volume's serial number and the file's index on it
/// (NTFS and ReFS keep it for the file's life; Wine takes it from the
/// inode), its attributes and its number of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// The file's attributes (`FILE_ATTRIBUTE_*`).
    pub mode: u32,
    pub nlink: u64,
}

impl FileId {
    pub fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Who the open `file` is.
pub fn file_id(file: &File) -> io::Result<FileId> {
    let info = payload_tools::sys::by_handle(file)?;
    Ok(FileId {
        dev: u64::from(info.dwVolumeSerialNumber),
        ino: u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow),
        uid: 0,
        gid: 0,
        mode: info.dwFileAttributes,
        nlink: u64::from(info.nNumberOfLinks),
    })
}

/// Who the file or folder at `path` is (a link itself, never what it leads
/// to); `None` if nothing is there. For `Dir::stat` and `Dir::id`.
pub fn path_id(path: &Path) -> io::Result<Option<FileId>> {
    let opened = OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path);
    match opened {
        Ok(file) => file_id(&file).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether no one but us may change what the folder `dir` holds: ours
/// (or SYSTEM's or Administrators'), and a DACL that lets no one else
/// write, add, delete or rename there, read from the held handle.
pub fn check_unshared_dir(dir: &Dir, _id: &FileId) -> Result<(), String> {
    dir.check_unshared()
}

/// Bytes still free for us on the volume of `file` (its folder, as
/// `GetDiskFreeSpaceExW` wants it: quotas included); `None` if unknown.
pub fn free_space(file: &File) -> Option<u64> {
    let mut path = final_path(file).ok()?;
    // The folder, with the trailing backslash a UNC path needs.
    let cut = path.iter().rposition(|&c| c == u16::from(b'\\'))?;
    path.truncate(cut + 1);
    path.push(0);
    let mut free = 0u64;
    // SAFETY: `path` is NUL-terminated; the other pointers are either null
    // or point to a writable u64.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            path.as_ptr(),
            &mut free,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(free)
}

/// Deletes the copies earlier updates moved aside (`.<exe>.<number>.old`,
/// and `.<exe>.old` of earlier builds). One that an old instance still
/// runs cannot be deleted: it stays until a later start, and the next
/// update moves the executable to a fresh name beside it.
pub fn remove_replaced_leftover(exe: &Path) {
    let (Some(folder), Some(name)) = (exe.parent(), exe.file_name().and_then(|n| n.to_str()))
    else {
        return;
    };
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let Ok(listing) = std::fs::read_dir(folder) else {
        return;
    };
    for item in listing.flatten() {
        let aside = item.file_name();
        // `remove_file` deletes a link itself, never what it leads to, and
        // refuses a folder.
        if aside.to_str().is_some_and(|aside| is_aside_of(aside, name)) {
            let _ = std::fs::remove_file(item.path());
        }
    }
}

/// Whether the process `pid` still exists (one we may not open counts:
/// it exists).
pub fn process_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, GetLastError};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    const STILL_ACTIVE: u32 = 259;
    // SAFETY: OpenProcess takes no pointers; a null handle means failure.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // SAFETY: reads the calling thread's last error.
        return unsafe { GetLastError() } == ERROR_ACCESS_DENIED;
    }
    let mut code = 0u32;
    // SAFETY: an open process handle and a u32 we own; closed once.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) };
    unsafe { CloseHandle(handle) };
    ok != 0 && code == STILL_ACTIVE
}

/// Windows has no signals: crashes are exit codes ([`is_crash_code`]).
pub fn is_crash_signal(_signal: i32) -> bool {
    false
}

/// Whether an exit code is an exception's NTSTATUS (access violation
/// 0xC0000005, stack buffer overrun 0xC0000409, illegal instruction
/// 0xC000001D, division by zero 0xC0000094, breakpoint 0x80000003...):
/// a crash. Only severity error with facility 0 (0xC000xxxx): `exit(-1)`
/// and other negative codes an app returns to report an ordinary failure
/// are not crashes. Ctrl-C's 0xC000013A is a request to stop.
pub fn is_crash_code(code: i32) -> bool {
    let status = code as u32;
    (status & 0xFFFF_0000 == 0xC000_0000 && status != 0xC000_013A) || status == 0x8000_0003
}

/// Writes all of `buf`, the next bytes of a file written in order, at
/// `offset`. Not at the cursor: Windows moves the cursor of a positioned
/// read, which handles cloned from `file` share, so a writer that relied
/// on it would write where a reader last read.
pub fn append_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Windows has no cheap "start writing this range" call; the sync after
/// the download does all of the writing.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// The process id a launcher that restarted this one put in its marker
/// (`restart`): our parent's, which runs us as its child and waits. `None`
/// if it cannot be found.
pub fn restarter_pid() -> Option<u32> {
    use std::os::windows::io::{FromRawHandle, OwnedHandle};
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW,
        TH32CS_SNAPPROCESS,
    };
    let own = std::process::id();
    // SAFETY: a snapshot handle, checked, owned (and so closed) at once;
    // the entry is zeroed with its size set, as Process32*W require.
    unsafe {
        let raw = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        if raw == INVALID_HANDLE_VALUE || raw.is_null() {
            return None;
        }
        let snapshot = OwnedHandle::from_raw_handle(raw);
        let mut entry: PROCESSENTRY32W = std::mem::zeroed();
        entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
        let mut more = Process32FirstW(snapshot.as_raw_handle(), &mut entry) != 0;
        while more {
            if entry.th32ProcessID == own {
                return Some(entry.th32ParentProcessID);
            }
            more = Process32NextW(snapshot.as_raw_handle(), &mut entry) != 0;
        }
        None
    }
}

/// Lowers the priority of the calling thread (each Windows thread has its
/// own), so that helpers use only the CPU the download leaves idle.
pub fn lower_thread_priority() {
    // SAFETY: GetCurrentThread returns a pseudo handle that needs no
    // closing. Failing to lower the priority only costs speed, so the
    // result is ignored.
    unsafe {
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_LOWEST);
    }
}

/// Closes the launcher's standard handles (stderr only unless
/// `keep_stderr`) and leaves them empty, so that whoever reads the app's
/// output sees its end although the launcher runs on for a moment; std
/// writes to an empty handle as to nowhere.
pub fn release_stdio(keep_stderr: bool) -> io::Result<()> {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Console::{
        GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle,
    };
    let mut which = vec![STD_INPUT_HANDLE, STD_OUTPUT_HANDLE];
    if !keep_stderr {
        which.push(STD_ERROR_HANDLE);
    }
    for std_handle in which {
        // SAFETY: the handle is ours, taken out of the process's table
        // before it is closed, so nothing in this process uses it after.
        unsafe {
            let handle = GetStdHandle(std_handle);
            SetStdHandle(std_handle, std::ptr::null_mut());
            if !handle.is_null() && handle != INVALID_HANDLE_VALUE {
                CloseHandle(handle);
            }
        }
    }
    Ok(())
}

/// Starts `exe` with the variables `env` as the background updater:
/// detached from the console (no window, no Ctrl-C of the console's
/// group), out of the launcher's job where the job lets it go, below
/// normal priority, and inheriting no handle at all (`bInheritHandles`
/// FALSE: std's `Command` always passes TRUE, which hands every
/// inheritable handle of the launcher, a parent's pipe among them, to a
/// process that may run for minutes). With no standard handles, std in
/// the child writes to nowhere. Returns its process id; nobody waits for
/// it. Windows has no path to an open file to start: the background
/// updater checks that the name still holds the launcher's file before it
/// does anything.
pub fn spawn_background(
    exe: &Path,
    _file: &File,
    env: &[(&str, &std::ffi::OsStr)],
) -> io::Result<u32> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{
        BELOW_NORMAL_PRIORITY_CLASS, CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP,
        CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, CreateProcessW, DETACHED_PROCESS,
        PROCESS_INFORMATION, STARTUPINFOW,
    };
    let flags = DETACHED_PROCESS
        | CREATE_NEW_PROCESS_GROUP
        | CREATE_NO_WINDOW
        | BELOW_NORMAL_PRIORITY_CLASS
        | CREATE_UNICODE_ENVIRONMENT;
    let application: Vec<u16> = exe.as_os_str().encode_wide().chain(Some(0)).collect();
    // The program's name, quoted (a Windows path holds no quote), and no
    // argument.
    let mut command_line: Vec<u16> = std::iter::once(u16::from(b'"'))
        .chain(exe.as_os_str().encode_wide())
        .chain([u16::from(b'"'), 0])
        .collect();
    let block = environment_block(env);
    // SAFETY: plain data, valid zeroed.
    let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
    startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
    // SAFETY: plain data, valid zeroed.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    let mut start = |flags: u32| {
        // SAFETY: NUL-terminated strings and an environment block that live
        // through the call; the command line is writable as the call
        // requires; the structures are initialised.
        unsafe {
            CreateProcessW(
                application.as_ptr(),
                command_line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                flags,
                block.as_ptr().cast(),
                std::ptr::null(),
                &startup,
                &mut info,
            ) != 0
        }
    };
    // A job of someone else's that forbids breaking away refuses the
    // flag: then the process stays in it.
    if !start(flags | CREATE_BREAKAWAY_FROM_JOB) && !start(flags) {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handles the call returned, ours to close.
    unsafe {
        CloseHandle(info.hThread);
        CloseHandle(info.hProcess);
    }
    Ok(info.dwProcessId)
}

/// The launcher's environment with `env` set, as `CreateProcessW` takes
/// it: `NAME=value` strings, each NUL-terminated, sorted by name as
/// Windows wants, then a final NUL.
fn environment_block(env: &[(&str, &std::ffi::OsStr)]) -> Vec<u16> {
    use std::ffi::OsString;
    use std::os::windows::ffi::OsStrExt;
    let set = |name: &OsString| {
        env.iter()
            .any(|(ours, _)| name.to_string_lossy().eq_ignore_ascii_case(ours))
    };
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| !set(name))
        .chain(env.iter().map(|(name, value)| (name.into(), value.into())))
        .collect();
    vars.sort_by_key(|(name, _)| name.to_string_lossy().to_uppercase());
    let mut block = Vec::new();
    for (name, value) in &vars {
        block.extend(name.encode_wide());
        block.push(u16::from(b'='));
        block.extend(value.encode_wide());
        block.push(0);
    }
    block.push(0);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_names_are_recognised_exactly() {
        for ours in [".app.exe.old", ".app.exe.0.old", ".app.exe.123456789.old"] {
            assert!(is_aside_of(ours, "app.exe"), "{ours}");
        }
        for other in [
            "app.exe",
            ".app.exe..old",
            ".app.exe.1x.old",
            ".app.exe.1.old.txt",
            ".other.exe.1.old",
            ".app.exe.1.2.download",
        ] {
            assert!(!is_aside_of(other, "app.exe"), "{other}");
        }
    }

    #[test]
    fn only_exceptions_are_crashes() {
        for crash in [
            0xC000_0005_u32,
            0xC000_001D,
            0xC000_0094,
            0xC000_00FD,
            0xC000_0374,
            0xC000_0409,
            0x8000_0003,
        ] {
            assert!(is_crash_code(crash as i32), "{crash:#X}");
        }
        for ordinary in [
            0_i32,
            1,
            127,
            -1,
            -2,
            -100,
            0xBFFF_FFFF_u32 as i32,
            0xC000_013A_u32 as i32,
            0xC001_0001_u32 as i32,
            0xE06D_7363_u32 as i32,
        ] {
            assert!(!is_crash_code(ordinary), "{ordinary}");
        }
    }

    #[test]
    fn identities_tell_files_apart_and_free_space_is_known()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir();
        let (a, b) = (
            dir.join(format!("onefile-id-a-{}", std::process::id())),
            dir.join(format!("onefile-id-b-{}", std::process::id())),
        );
        let (file_a, file_b) = (File::create(&a)?, File::create(&b)?);
        let (id_a, id_b) = (file_id(&file_a)?, file_id(&file_b)?);
        assert!(!id_a.same_file(&id_b), "{id_a:?} {id_b:?}");
        let found = path_id(&a)?.ok_or("the file just created is not found")?;
        assert!(id_a.same_file(&found));
        assert_eq!(path_id(&dir.join("onefile-id-none"))?, None);
        assert!(free_space(&file_a).is_some_and(|free| free > 0));
        drop((file_a, file_b));
        let _ = (std::fs::remove_file(a), std::fs::remove_file(b));
        Ok(())
    }
}
