//! All-or-nothing file writes: write a temporary sibling, make it durable,
//! rename it over the final name, make the rename durable. A file at the
//! final name is therefore always complete, and a failed or killed write
//! leaves at most a temporary file that its `Drop` (or a later run) removes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// A temporary file next to the file it will become.
#[derive(Debug)]
pub struct TempSibling {
    path: PathBuf,
    file: File,
    persisted: bool,
}

/// The prefix of temporary files written next to a target, so that stale
/// ones are recognisable: `.<target name>.tmp-<pid>`.
pub fn temp_sibling_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

impl TempSibling {
    /// Creates the temporary sibling of `target`, replacing a stale one of
    /// the same process id.
    pub fn create(target: &Path) -> Result<TempSibling> {
        let path = temp_sibling_path(target);
        let _ = fs::remove_file(&path);
        let file = sys::create_new_file(&path, false).map_err(Error::io("cannot create", &path))?;
        Ok(TempSibling {
            path,
            file,
            persisted: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the file, gives it `mode`, renames it to `target` and syncs the
    /// directory.
    pub fn persist(mut self, target: &Path, mode: u32) -> Result<()> {
        sys::set_mode(&self.path, mode)
            .map_err(Error::io("cannot set permissions of", &self.path))?;
        self.file
            .sync_all()
            .map_err(Error::io("cannot flush", &self.path))?;
        fs::rename(&self.path, target).map_err(Error::io("cannot rename into", target))?;
        self.persisted = true;
        let dir = parent_dir(target);
        sys::sync_dir(dir).map_err(Error::io("cannot flush directory", dir))?;
        Ok(())
    }
}

impl Drop for TempSibling {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `target` all-or-nothing.
pub fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut tmp = TempSibling::create(target)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file()
        .write_all(bytes)
        .map_err(Error::io("cannot write", &tmp_path))?;
    tmp.persist(target, mode)
}
