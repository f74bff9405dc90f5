//! Windows: positioned reads, exclusive file creation, symlinks, and
//! folders worked in by path ([`Dir`]). Built by `make windows` and tested
//! under Wine by `make test-windows` (docs/windows.md).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::FileExt;
use std::path::{Path, PathBuf};

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

/// Windows has no Unix mode: files get the folder's inherited ACL, which
/// `create_new` cannot narrow; the mode is ignored.
pub fn create_new_file_with_mode(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Windows has no umask.
pub fn umask() -> u32 {
    0
}

/// The profile's ACLs decide on Windows; nothing is checked here.
pub fn check_path_owned(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// A folder, worked in by path: std opens no folder handles on Windows,
/// and a folder holding open files cannot be renamed there. Same names as
/// the Unix `Dir`, which holds a descriptor.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
}

impl Dir {
    pub fn open(path: &Path) -> io::Result<Dir> {
        if !std::fs::metadata(path)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"));
        }
        Ok(Dir {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folder ACLs are not inspected yet: a documented no-op.
    pub fn check_private(&self) -> Result<(), String> {
        Ok(())
    }

    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        create_new_file_with_mode(&self.path.join(name), mode)
    }

    pub fn create_private_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let path = self.path.join(name);
        std::fs::create_dir(&path)?;
        Ok(Dir { path })
    }

    pub fn link(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        std::fs::hard_link(self.path.join(name), self.path.join(new))
    }

    pub fn rename(&self, name: &OsStr, new: &OsStr) -> io::Result<()> {
        std::fs::rename(self.path.join(name), self.path.join(new))
    }

    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }

    pub fn set_mode(&self, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    pub fn held_path(&self) -> PathBuf {
        self.path.clone()
    }

    pub fn is_at(&self, path: &Path) -> bool {
        path == self.path
    }
}
