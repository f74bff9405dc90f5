//! Windows: the same calls as `unix.rs`, by path. Not built in CI (Linux
//! only).
//!
//! The cache lives under `%LOCALAPPDATA%`, which the profile's ACL keeps
//! private; ACLs are not inspected, and a folder is held as its path. Windows
//! does not let a folder be renamed while a file in it is open, and the
//! in-use lock file is open for as long as the app runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::DirError;
use crate::sys::FileId;

/// A folder of the cache, by path.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
}

/// Creates the cache root if missing, and returns it. The profile's ACL
/// decides who else may change it.
pub fn check_cache_root(path: &Path) -> Result<PathBuf, DirError> {
    std::fs::create_dir_all(path).map_err(|source| DirError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(path.to_owned())
}

/// Creates the folder `path` if missing; it must be a real folder, not a
/// link.
pub fn open_private_dir(path: &Path, shown: &Path) -> Result<Dir, DirError> {
    let io_error = |source| DirError::Io {
        path: shown.to_owned(),
        source,
    };
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_error(e)),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_error)?;
    if !meta.file_type().is_dir() {
        return Err(DirError::Unsafe {
            path: shown.to_owned(),
            reason: "it is not a folder (a link?)".into(),
        });
    }
    Ok(Dir {
        path: path.to_owned(),
    })
}

impl Dir {
    /// Where the folder is (Windows works by path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn open(path: &Path) -> io::Result<Dir> {
        if !std::fs::metadata(path)?.is_dir() {
            return Err(io::Error::other("not a folder"));
        }
        Ok(Dir {
            path: path.to_owned(),
        })
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            path: self.path.clone(),
        })
    }

    pub fn id(&self) -> io::Result<FileId> {
        crate::sys::path_id(&self.path)?.ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    pub fn create_new(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path.join(name))
    }

    pub fn open_private(&self, name: &str, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(self.path.join(name))
    }

    /// Who `name` is (a link itself, never what it leads to).
    pub fn stat(&self, name: &str) -> io::Result<Option<FileId>> {
        crate::sys::path_id(&self.path.join(name))
    }

    pub fn create_dir(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir(self.path.join(name))
    }

    pub fn open_file(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(name))
    }

    /// Windows does not delete open files, so the open one is the live one.
    pub fn holds(&self, _file: &File, name: &str) -> io::Result<bool> {
        Ok(self.path.join(name).exists())
    }

    pub fn exists(&self, rel: &Path) -> bool {
        std::fs::symlink_metadata(self.path.join(rel)).is_ok()
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }

    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }

    /// Windows makes a rename durable with the file system's own journal.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}
