//! Windows: positioned reads, exclusive file creation (private where a
//! mode asks it), symlinks, the flush of extracted files, renames over a
//! file that wait for its readers to let go, and folders held
//! by handle ([`Dir`]) and checked by owner and DACL ([`acl`]). Built by
//! `make windows` and tested under Wine by `make test-windows`
//! (docs/windows.md).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::{AsRawHandle, FromRawHandle, RawHandle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_INVALID_FUNCTION, ERROR_SHARING_VIOLATION, GENERIC_READ,
    GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CREATE_NEW, CreateDirectoryW, CreateFileW, FILE_ADD_FILE,
    FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_LIST_DIRECTORY, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, GetFileInformationByHandle, READ_CONTROL, SYNCHRONIZE,
};

use super::acl;

pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

pub fn create_new_file(path: &Path, _executable: bool, _read_only: bool) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Gives a file written by the extraction the read-only attribute, through
/// the writer's own handle, which keeps its write access.
pub fn set_read_only(file: &File) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    file.set_permissions(permissions)
}

/// Windows files' identities need a handle: `pack` on Windows stores every
/// name of a hard-linked file as a copy.
pub fn hard_link_identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
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

pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o555
    } else {
        0o755
    }
}

/// Flushes a file the extraction wrote (`FlushFileBuffers` on the
/// writer's own handle, which has the write access it needs, before it is
/// closed): Windows has no `syncfs`, so a build is made durable before its
/// rename file by file. Only extraction calls it: the cold path.
pub fn flush_written(file: &File) -> io::Result<()> {
    file.sync_all()
}

/// Every file of an extracted tree was flushed as it was written
/// ([`flush_written`]); what is left is the folder's own entries, flushed
/// as [`sync_dir`] does.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    sync_dir(dir)
}

/// Flushes the folder `dir` (its entries: names, sizes) through a handle
/// with write access, where the file system allows it: NTFS does;
/// Windows documents `FlushFileBuffers` for files and volumes only, so a
/// file system that refuses it for a folder is not an error (NTFS journals
/// its metadata, renames included, itself).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let folder = match OpenOptions::new()
        .access_mode(FILE_ADD_FILE | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(dir)
    {
        Ok(folder) => folder,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => return Err(e),
    };
    match folder.sync_all() {
        Err(e)
            if e.raw_os_error() == Some(ERROR_INVALID_FUNCTION as i32)
                || e.kind() == io::ErrorKind::PermissionDenied =>
        {
            Ok(())
        }
        done => done,
    }
}

/// Creates a new file, failing if anything (a file, a link) is at `path`,
/// never through a reparse point. A `mode` without group or other bits
/// (a secret: 0600) gives it the private DACL ([`acl::Private`]) in the
/// create call itself; any other mode, the folder's inherited ACL.
pub fn create_new_file_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let private = match mode & 0o077 {
        0 => Some(acl::Private::new(&acl::current_user()?)?),
        _ => None,
    };
    open_not_following(path, CREATE_NEW, private.as_ref())
}

/// Opens or creates (`disposition`: `CREATE_NEW`, `OPEN_ALWAYS`...) the file
/// `path` for reading and writing, never through a reparse point (a link
/// or junction at `path` is opened as itself, for the caller to refuse),
/// with `private`'s DACL in the create call itself if given, else the
/// folder's inherited one. The one place both binaries create files on
/// Windows.
pub fn open_not_following(
    path: &Path,
    disposition: u32,
    private: Option<&acl::Private>,
) -> io::Result<File> {
    let name = wide(path.as_os_str())?;
    let attributes = private.map_or(std::ptr::null(), acl::Private::attributes);
    // SAFETY: name is NUL-terminated; the attributes (or NULL) live in
    // `private` for the call; the handle returned is owned by the File.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            // std's sharing: a temporary file is renamed or removed while
            // open (persist.rs).
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            attributes,
            disposition,
            FILE_FLAG_OPEN_REPARSE_POINT,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle that nothing else owns.
    Ok(unsafe { File::from_raw_handle(handle as RawHandle) })
}

/// Renames `from` over the file `to`. Windows refuses that while another
/// process has `to` open: without sharing deletion always (a web server
/// serving it, Python's `open()`), and even shared for deletion where the
/// rename cannot use POSIX semantics (Wine, older Windows, other file
/// systems), which makes a `stat` (an open handle here) enough. A refusal
/// that may be such (access denied, a sharing violation) is tried again,
/// with pauses growing from 1 to 50 ms, until `patience` has passed; then
/// its error is returned.
pub fn rename_replacing(from: &Path, to: &Path, patience: Duration) -> io::Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let refused = match std::fs::rename(from, to) {
            Err(e) if may_be_held(&e) => e,
            done => return done,
        };
        let left = patience.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(refused);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether `e` may be Windows refusing a rename because the target is
/// open: access denied is also what a read-only target, a folder or a
/// missing permission gives, which waiting does not change (then the
/// rename fails after its patience).
fn may_be_held(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        code == ERROR_ACCESS_DENIED as i32 || code == ERROR_SHARING_VIOLATION as i32
    })
}

/// Windows has no umask.
pub fn umask() -> u32 {
    0
}

/// Whether another user could redirect `path` (absolute) before we use
/// it: each folder on the way that exists is opened (not through a link
/// or junction) and its DACL read from that handle. A link or junction
/// that is not ours (or SYSTEM's or Administrators') is refused, as is a
/// folder above the last one whose entries others may rename, delete or
/// re-permission ([`acl::check_unswappable`]): its next entry could be
/// swapped. Missing components end the walk: we create them. The last
/// folder is used through a held handle and may be shared.
pub fn check_path_owned(path: &Path) -> Result<(), String> {
    let me = acl::current_user().map_err(|e| format!("cannot read who we are: {e}"))?;
    let components: Vec<_> = path.components().collect();
    let mut here = PathBuf::new();
    for (i, part) in components.iter().enumerate() {
        here.push(part);
        if matches!(part, std::path::Component::Prefix(_)) {
            continue;
        }
        let handle = match open_folder(&here, false, false) {
            Ok(handle) => handle,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot check '{}': {e}", here.display())),
        };
        let attributes = info(&handle).map_err(|e| format!("'{}': {e}", here.display()))?;
        let shown = |reason: String| format!("'{}': {reason}", here.display());
        if attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            let owned = acl::check_owner_trusted(handle.as_raw_handle(), &me)
                .map_err(|e| shown(format!("cannot read its owner: {e}")))?;
            owned.map_err(|reason| {
                shown(format!(
                    "it is a link or junction that could point anywhere: {reason}"
                ))
            })?;
        }
        let last = i + 1 == components.len();
        if !last && attributes & FILE_ATTRIBUTE_DIRECTORY != 0 {
            let unswappable = acl::check_unswappable(handle.as_raw_handle(), &me)
                .map_err(|e| shown(format!("cannot read its access list: {e}")))?;
            unswappable
                .map_err(|reason| shown(format!("{reason}: what is below it could be swapped")))?;
        }
    }
    Ok(())
}

/// A folder held open by handle (`FILE_FLAG_BACKUP_SEMANTICS`), checked
/// through that handle; names inside are used by path (std has no
/// handle-relative calls on Windows), which holding makes mean the folder
/// checked. Deleting or renaming it stays possible (`FILE_SHARE_DELETE`):
/// `unpack` renames the folder it holds into place.
#[derive(Debug)]
pub struct Dir {
    handle: File,
    path: PathBuf,
}

impl Dir {
    /// Opens the folder at `path`. Links in `path` are followed: the path
    /// is the caller's choice; what matters is that it is then held.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let handle = open_folder(path, true, true)?;
        if info(&handle)? & FILE_ATTRIBUTE_DIRECTORY == 0 {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"));
        }
        Ok(Dir {
            handle,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` if nobody but us (and SYSTEM and Administrators) may change
    /// what this folder holds, read from the held handle: ours (or
    /// theirs), and a DACL that lets no one else write, add, delete,
    /// rename or re-permission anything ([`acl::check_private`]).
    pub fn check_private(&self) -> Result<(), String> {
        let me = acl::current_user().map_err(|e| format!("cannot read who we are: {e}"))?;
        acl::check_private(self.handle.as_raw_handle(), &me)
            .map_err(|e| format!("cannot read its access list: {e}"))?
    }

    /// Creates the new file `name` in this folder, failing if anything,
    /// even a link, is there; private from the start for a mode without
    /// group or other bits ([`create_new_file_with_mode`]).
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        create_new_file_with_mode(&self.path.join(plain_name(name)?), mode)
    }

    /// Creates the new folder `name` with the private DACL in the create
    /// call itself, and holds it. What is held is checked to be a real
    /// folder private to us, so a folder or link put in its place between
    /// the two calls is refused, never used.
    pub fn create_private_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let path = self.path.join(plain_name(name)?);
        let me = acl::current_user()?;
        let private = acl::Private::new(&me)?;
        let wide_path = wide(path.as_os_str())?;
        // SAFETY: NUL-terminated; the attributes live in `private`.
        if unsafe { CreateDirectoryW(wide_path.as_ptr(), private.attributes()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let handle = open_folder(&path, false, true)?;
        let attributes = info(&handle)?;
        let private = acl::check_private(handle.as_raw_handle(), &me)?;
        if attributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY)
            != FILE_ATTRIBUTE_DIRECTORY
            || private.is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "another folder was put in the place of the one just created",
            ));
        }
        Ok(Dir { handle, path })
    }

    pub fn link(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        std::fs::hard_link(
            self.path.join(plain_name(name)?),
            self.path.join(plain_name(new)?),
        )
    }

    pub fn rename(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        std::fs::rename(
            self.path.join(plain_name(name)?),
            self.path.join(plain_name(new)?),
        )
    }

    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        std::fs::remove_file(self.path.join(plain_name(name)?))
    }

    /// Windows has no mode: a folder made by [`Dir::create_private_dir`]
    /// keeps its private DACL (`unpack`'s output stays private to us).
    pub fn set_mode(&self, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    /// Flushes the folder's entries, where the file system allows it
    /// ([`sync_dir`]).
    pub fn sync(&self) -> io::Result<()> {
        sync_dir(&self.path)
    }

    pub fn held_path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether the folder now at `path` is this held one (same volume and
    /// file index).
    pub fn is_at(&self, path: &Path) -> bool {
        let Ok(there) = open_folder(path, false, true) else {
            return false;
        };
        match (identity(&there), identity(&self.handle)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// Opens the folder (or, with `follow` false, the link or junction) at
/// `path` with read access to its listing, attributes and security
/// descriptor. Without `share_delete` no one can rename or delete it while
/// it is held (the read access is what makes Windows record that share
/// mode).
pub fn open_folder(path: &Path, follow: bool, share_delete: bool) -> io::Result<File> {
    let no_follow = if follow {
        0
    } else {
        FILE_FLAG_OPEN_REPARSE_POINT
    };
    let delete = if share_delete { FILE_SHARE_DELETE } else { 0 };
    OpenOptions::new()
        .access_mode(FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | READ_CONTROL | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | delete)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | no_follow)
        .open(path)
}

/// The attributes of the open `file`.
fn info(file: &File) -> io::Result<u32> {
    Ok(by_handle(file)?.dwFileAttributes)
}

/// The volume and file index of the open `file`: who it is.
fn identity(file: &File) -> io::Result<(u32, u32, u32)> {
    let info = by_handle(file)?;
    Ok((
        info.dwVolumeSerialNumber,
        info.nFileIndexHigh,
        info.nFileIndexLow,
    ))
}

/// What `GetFileInformationByHandle` says of the open `file` (attributes,
/// volume and file index, number of names) in one call.
pub fn by_handle(file: &File) -> io::Result<BY_HANDLE_FILE_INFORMATION> {
    // SAFETY: plain data, filled by the call below.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open; info is writable.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// `name` as a NUL-terminated UTF-16 string (a NUL inside is refused).
pub fn wide(name: &OsStr) -> io::Result<Vec<u16>> {
    let mut wide: Vec<u16> = name.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    wide.push(0);
    Ok(wide)
}

/// One path component: a name with a separator, a drive or a stream
/// (`:`) would reach outside the held folder, so it is refused.
fn plain_name(name: &OsStr) -> io::Result<&OsStr> {
    let wide: Vec<u16> = name.encode_wide().collect();
    let bad = |c: &u16| [b'\\', b'/', b':', 0].iter().any(|&b| u16::from(b) == *c);
    if wide.is_empty() || wide.iter().any(bad) || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that does not let go within the patience (one that does
    /// not share deletion, which every Windows refuses to rename over):
    /// the rename gives up with Windows' refusal, and the file is left as
    /// it was.
    #[test]
    fn a_rename_over_a_file_held_longer_than_its_patience_gives_up() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (new, target) = (dir.path().join("new"), dir.path().join("target"));
        std::fs::write(&new, "new")?;
        std::fs::write(&target, "old")?;
        let reader = OpenOptions::new()
            .read(true)
            .share_mode(FILE_SHARE_READ)
            .open(&target)?;
        let refused = rename_replacing(&new, &target, Duration::from_millis(100))
            .expect_err("renamed over a file held open");
        assert!(may_be_held(&refused), "{refused}");
        drop(reader);
        assert_eq!(std::fs::read_to_string(&target)?, "old");
        rename_replacing(&new, &target, Duration::from_millis(100))?;
        assert_eq!(std::fs::read_to_string(&target)?, "new");
        Ok(())
    }
}
