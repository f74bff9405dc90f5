//! Windows: the check of the cache root and the app's folder, and folders
//! held as handles (docs/launcher.md, "The cache on Windows").
//!
//! - A folder of the cache is held open (`FILE_FLAG_BACKUP_SEMANTICS`) with
//!   a share mode without `FILE_SHARE_DELETE`, and with read access so that
//!   the share mode counts: while it is held no one can rename or delete
//!   it, and NTFS does not rename a folder that has an open handle below
//!   it, so the whole path the app is run by stays put while the launcher
//!   runs (it waits for the app on Windows).
//! - Who may change it is read from that handle ([`acl::check_private`]):
//!   ours (or SYSTEM's or Administrators'), and a DACL that lets no one
//!   else write, add, delete, rename or re-permission anything.
//! - The cache root may be reached through a link or junction (a
//!   redirected profile); it is checked where it leads, and the cache's
//!   own work, and running the app, go by the folder's real path, read
//!   from the handle (as on Unix, where the walk resolves the root's
//!   links). The app's folder
//!   must be a real folder: a reparse point there is refused.
//! - Folders and files the launcher creates get a private DACL from the
//!   start ([`acl::Private`]); files are created without following a
//!   reparse point, and one found at a file's name is refused.
//!
//! Names inside a held folder are still looked up by path (std has no
//! handle-relative calls on Windows); holding the folder is what makes
//! that path mean the folder checked.

use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use windows_sys::Win32::Foundation::{ERROR_ALREADY_EXISTS, ERROR_PATH_NOT_FOUND};
use windows_sys::Win32::Storage::FileSystem::{
    CREATE_NEW, CreateDirectoryW, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT,
    OPEN_ALWAYS, OPEN_EXISTING,
};

use payload_tools::sys::{acl, by_handle as info, wide};

use super::DirError;
use crate::sys::FileId;

/// A folder of the cache, held open (see the module doc), and its path.
#[derive(Debug)]
pub struct Dir {
    handle: File,
    path: PathBuf,
}

/// Checks the cache root `path` (absolute), creating it and any missing
/// folder above it with a private DACL. It must be ours (or SYSTEM's or
/// Administrators') and changeable by no one else. Returns its real path
/// (links and junctions resolved), which the cache then uses.
pub fn check_cache_root(path: &Path) -> Result<PathBuf, DirError> {
    let io_error = |source| DirError::Io {
        path: path.to_owned(),
        source,
    };
    let me = current_user().map_err(io_error)?;
    let handle = match open_dir(path, true) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let private = acl::Private::new(me).map_err(io_error)?;
            create_dirs(path, &private, 0).map_err(io_error)?;
            open_dir(path, true)
        }
        opened => opened,
    }
    .map_err(io_error)?;
    check_folder(&handle, me, path)?;
    real_path(&handle).map_err(io_error)
}

/// Opens the folder `path` (not through a link or junction), creating it
/// with a private DACL if missing; it must be changeable by no one but us
/// (module doc). `shown` names it in errors.
pub fn open_private_dir(path: &Path, shown: &Path) -> Result<Dir, DirError> {
    let io_error = |source| DirError::Io {
        path: shown.to_owned(),
        source,
    };
    let me = current_user().map_err(io_error)?;
    let handle = match open_dir(path, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let private = acl::Private::new(me).map_err(io_error)?;
            match create_dir(path, &private) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => open_dir(path, false),
            }
        }
        opened => opened,
    }
    .map_err(io_error)?;
    check_folder(&handle, me, shown)?;
    Ok(Dir {
        handle,
        path: path.to_owned(),
    })
}

/// The checks on a folder held open: a real folder, private to us.
fn check_folder(handle: &File, me: &[u8], shown: &Path) -> Result<(), DirError> {
    let unsafe_dir = |reason: String| DirError::Unsafe {
        path: shown.to_owned(),
        reason,
    };
    let attributes = info(handle)
        .map_err(|source| DirError::Io {
            path: shown.to_owned(),
            source,
        })?
        .dwFileAttributes;
    if attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(unsafe_dir(
            "it is a link or a junction, not a folder".into(),
        ));
    }
    if attributes & FILE_ATTRIBUTE_DIRECTORY == 0 {
        return Err(unsafe_dir("it is not a folder".into()));
    }
    match acl::check_private(handle.as_raw_handle(), me) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(unsafe_dir(reason)),
        Err(source) => Err(DirError::Io {
            path: shown.to_owned(),
            source,
        }),
    }
}

/// Whether the open file `file` belongs to us (the updater's check of the
/// executable it would replace).
pub fn check_owned(file: &File) -> Result<(), String> {
    let me = current_user().map_err(|e| format!("cannot read who we are: {e}"))?;
    acl::check_owner(file.as_raw_handle(), me).map_err(|e| format!("cannot read its owner: {e}"))?
}

/// The SID of this process's user, read once.
fn current_user() -> io::Result<&'static [u8]> {
    static ME: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(me) = ME.get() {
        return Ok(me);
    }
    let me = acl::current_user()?;
    Ok(ME.get_or_init(|| me))
}

/// Opens the folder `path` held (module doc): no one may rename or delete
/// it while it is open; `follow` a link or junction at its last component,
/// or open that itself.
fn open_dir(path: &Path, follow: bool) -> io::Result<File> {
    payload_tools::sys::open_folder(path, follow, false)
}

/// Creates the folder `path` with the descriptor `private`.
fn create_dir(path: &Path, private: &acl::Private) -> io::Result<()> {
    let name = wide(path.as_os_str())?;
    // SAFETY: name is NUL-terminated; the attributes live in `private`.
    if unsafe { CreateDirectoryW(name.as_ptr(), private.attributes()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates `path` and the missing folders above it, each private.
fn create_dirs(path: &Path, private: &acl::Private, depth: u32) -> io::Result<()> {
    match create_dir(path, private) {
        Err(e) if e.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) => Ok(()),
        Err(e) if e.raw_os_error() == Some(ERROR_PATH_NOT_FOUND as i32) && depth < 64 => {
            let parent = path.parent().ok_or(e)?;
            create_dirs(parent, private, depth + 1)?;
            match create_dir(path, private) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                created => created,
            }
        }
        created => created,
    }
}

/// The real path of the folder open as `handle`, without the `\\?\`
/// prefix when it names a drive (apps and `cmd.exe` expect `C:\...`).
fn real_path(handle: &File) -> io::Result<PathBuf> {
    let name = crate::sys::final_path(handle)?;
    // `\\?\C:\...`: the drive path after the prefix.
    const VERBATIM: [u16; 4] = [92, 92, 63, 92];
    let name = match name.strip_prefix(&VERBATIM[..]) {
        Some(rest) if rest.get(1) == Some(&u16::from(b':')) => rest,
        _ => &name[..],
    };
    Ok(PathBuf::from(std::ffi::OsString::from_wide(name)))
}

/// Who may use a file created by [`open_regular`].
#[derive(Debug, Clone, Copy)]
enum Access {
    /// The current user, SYSTEM and Administrators only (our own files).
    Private,
    /// What the folder gives every new file in it (the executable's
    /// download, which becomes the executable: it must be usable as the
    /// old one was; the folder was checked to let no one else change what
    /// it holds, its inheritable rules included).
    Inherited,
}

/// Opens or creates the file `path` for reading and writing, private if
/// created, never through a reparse point: one at that name is opened
/// itself, and refused here.
fn open_regular(path: &Path, disposition: u32, access: Access) -> io::Result<File> {
    let private = match access {
        Access::Private => Some(acl::Private::new(current_user()?)?),
        Access::Inherited => None,
    };
    let file = payload_tools::sys::open_not_following(path, disposition, private.as_ref())?;
    let attributes = info(&file)?.dwFileAttributes;
    if attributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a link, a junction or a folder)",
        ));
    }
    Ok(file)
}

impl Dir {
    /// Where the folder is (names inside are used by path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the folder `path`, held, not through a link or junction at
    /// its last component, without checking who may change it (the updater
    /// holds the executable's folder this way).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let handle = open_dir(path, false)?;
        let attributes = info(&handle)?.dwFileAttributes;
        if attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0
            || attributes & FILE_ATTRIBUTE_DIRECTORY == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a folder (a link or a junction?)",
            ));
        }
        Ok(Dir {
            handle,
            path: path.to_owned(),
        })
    }

    /// A second handle on the same folder (for the updater's thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            handle: self.handle.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Whether no one but us (and SYSTEM and Administrators) may change
    /// what the folder holds: the updater's check of the executable's
    /// folder, from the held handle.
    pub fn check_unshared(&self) -> Result<(), String> {
        let me = current_user().map_err(|e| format!("cannot read who we are: {e}"))?;
        acl::check_private(self.handle.as_raw_handle(), me)
            .map_err(|e| format!("cannot read its access list: {e}"))?
    }

    pub fn id(&self) -> io::Result<FileId> {
        crate::sys::file_id(&self.handle)
    }

    /// Creates the file `name` inside: exclusively (`CREATE_NEW`: never an
    /// existing file, nor through a link), with the access the folder gives
    /// new files, as the executable had when it was put there: the download
    /// becomes the executable (the folder was checked first).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        open_regular(&self.path.join(name), CREATE_NEW, Access::Inherited)
    }

    /// Opens the file `name` inside (created private if `create`), not
    /// through a link, and makes sure it is a private file of ours: a
    /// regular file with no other name, that no one else may change.
    pub fn open_private(&self, name: &str, create: bool) -> io::Result<File> {
        let disposition = if create { OPEN_ALWAYS } else { OPEN_EXISTING };
        let file = open_regular(&self.path.join(name), disposition, Access::Private)?;
        let private = acl::check_private(file.as_raw_handle(), current_user()?)?;
        if private.is_err() || info(&file)?.nNumberOfLinks != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a private file of ours",
            ));
        }
        Ok(file)
    }

    /// Who `name` is (a link itself, never what it leads to).
    pub fn stat(&self, name: &str) -> io::Result<Option<FileId>> {
        crate::sys::path_id(&self.path.join(name))
    }

    /// Creates the folder `name` inside; it inherits the folder's private
    /// DACL. Fails if anything is already there.
    pub fn create_dir(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir(self.path.join(name))
    }

    /// Opens the regular file `name` inside for reading and writing,
    /// creating it private if missing, never through a link.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        open_regular(&self.path.join(name), OPEN_ALWAYS, Access::Private)
    }

    /// Opens the regular file `name` inside for reading only, never through
    /// a link, sharing reading and renaming but not writing: while the
    /// handle is held no one can change the file (the updater's self-test
    /// runs it, and its install renames it). The handle may also change the
    /// file's attributes: the install gives it the executable's read-only
    /// flag through it (`sys::copy_permissions`). Attributes are no part of
    /// sharing, so no one else gains a way to write the bytes.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::{
            FILE_FLAG_OPEN_REPARSE_POINT, FILE_GENERIC_READ, FILE_SHARE_DELETE, FILE_SHARE_READ,
            FILE_WRITE_ATTRIBUTES,
        };
        let file = std::fs::OpenOptions::new()
            .access_mode(FILE_GENERIC_READ | FILE_WRITE_ATTRIBUTES)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.path.join(name))?;
        let attributes = info(&file)?.dwFileAttributes;
        if attributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a link, a junction or a folder)",
            ));
        }
        Ok(file)
    }

    /// Whether the open `file` is the one now named `name` inside (Windows
    /// deletes an open file only once it is closed, but it can be renamed).
    pub fn holds(&self, file: &File, name: &str) -> io::Result<bool> {
        let held = crate::sys::file_id(file)?;
        Ok(self.stat(name)?.is_some_and(|there| there.same_file(&held)))
    }

    pub fn exists(&self, rel: &Path) -> bool {
        std::fs::symlink_metadata(self.path.join(rel)).is_ok()
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }

    /// Renames `from` over the file `to`, waiting up to `patience` for
    /// those who hold `to` open (`payload_tools::sys::rename_replacing`).
    pub fn replace(&self, from: &str, to: &str, patience: Duration) -> io::Result<()> {
        payload_tools::sys::rename_replacing(&self.path.join(from), &self.path.join(to), patience)
    }

    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }

    /// Windows makes a rename durable with the file system's own journal.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}
