//! All-or-nothing file writes: write a temporary sibling, make it durable,
//! rename it over the final name, make the rename durable. A file at the
//! final name is therefore always complete, and a failed write leaves at
//! most a temporary file that its `Drop` removes (a killed one leaves a
//! `.<name>.tmp-…` file behind).
//!
//! - The temporary file is created exclusively, without following links,
//!   under a fresh unpredictable name, and **with its final mode in the
//!   `open` call**: it is never readable by more users than the final file.
//! - [`write_new_secret`]: a secret (a signing key) is written only into a
//!   folder nobody else can write, entirely through the held folder, and
//!   never over an existing file.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// How many fresh names to try before giving up (each clash is a file
/// someone else made at a random name: more than a few means mischief).
const NAME_ATTEMPTS: usize = 16;

/// How long a rename waits for others that hold the file it replaces
/// (Windows refuses to rename over an open file: a web server serving
/// `update.toml`, an app reading its config): a moment, then the error.
const REPLACE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// A temporary file next to the file it will become.
#[derive(Debug)]
pub struct TempSibling {
    path: PathBuf,
    file: File,
    mode: u32,
    persisted: bool,
}

impl TempSibling {
    /// Creates a temporary sibling of `target` that has `mode`, the final
    /// file's permissions, from the moment it exists.
    pub fn create(target: &Path, mode: u32) -> Result<TempSibling> {
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let path = target.with_file_name(temp_name(target.file_name()));
            match sys::create_new_file_with_mode(&path, mode) {
                Ok(file) => {
                    return Ok(TempSibling {
                        path,
                        file,
                        mode,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(Error::io("cannot create", path)(e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| (target.to_owned(), io::ErrorKind::Other.into()));
        Err(Error::io("cannot create", path)(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the file, renames it to `target` (replacing what is there) and
    /// syncs the directory.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        self.finish()?;
        sys::rename_replacing(&self.path, target, REPLACE_PATIENCE)
            .map_err(Error::io("cannot rename into", target))?;
        self.persisted = true;
        let dir = parent_dir(target);
        sys::sync_dir(dir).map_err(Error::io("cannot flush directory", dir))?;
        Ok(())
    }

    /// Like [`TempSibling::persist`], but fails if `target` exists by the
    /// time the file gets its name: a hard link, which never replaces.
    pub fn persist_new(mut self, target: &Path) -> Result<()> {
        self.finish()?;
        fs::hard_link(&self.path, target).map_err(Error::io("cannot create", target))?;
        let _ = fs::remove_file(&self.path);
        self.persisted = true;
        let dir = parent_dir(target);
        sys::sync_dir(dir).map_err(Error::io("cannot flush directory", dir))?;
        Ok(())
    }

    /// Sets the exact mode (through the open file, so the umask cannot
    /// leave it narrower than asked; it was never wider) and syncs.
    fn finish(&mut self) -> Result<()> {
        set_file_mode(&self.file, self.mode)
            .map_err(Error::io("cannot set permissions of", &self.path))?;
        self.file
            .sync_all()
            .map_err(Error::io("cannot flush", &self.path))
    }
}

impl Drop for TempSibling {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(unix)]
fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_file_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// `.<target name>.tmp-<pid>-<random>`: recognisable as ours, and not
/// guessable in advance by someone who would like to plant it.
pub fn temp_name(target_name: Option<&OsStr>) -> OsString {
    let mut name = OsString::from(".");
    name.push(target_name.unwrap_or(OsStr::new("out")));
    name.push(format!(".tmp-{}-{:016x}", std::process::id(), random_u64()));
    name
}

/// 64 unpredictable bits, from the randomly keyed hasher of the standard
/// library (seeded by the operating system's generator), with no crate.
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `target` all-or-nothing, with `mode`.
pub fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp = TempSibling::create(target, mode)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file()
        .write_all(bytes)
        .map_err(Error::io("cannot write", &tmp_path))?;
    tmp.persist(target)
}

/// Like [`write_atomically`], with the new file's modification time at
/// least one whole second after that of the file it replaces (and not
/// before now): servers that derive validators from the time in seconds
/// (nginx's `ETag` and `Last-Modified`) then see every rewrite as a
/// change, however quickly rewrites follow each other and whatever their
/// sizes, and never answer `304 Not Modified` for a new manifest.
pub fn write_atomically_newer(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let replaced = fs::symlink_metadata(target).and_then(|m| m.modified()).ok();
    let mut tmp = TempSibling::create(target, mode)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file()
        .write_all(bytes)
        .map_err(Error::io("cannot write", &tmp_path))?;
    let now = std::time::SystemTime::now();
    let at = replaced
        .and_then(|old| {
            let whole = old.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(whole + 1))
        })
        .map_or(now, |next| next.max(now));
    tmp.file()
        .set_modified(at)
        .map_err(Error::io("cannot set the time of", &tmp_path))?;
    tmp.persist(target)
}

/// Writes `bytes` to the new file `target` (mode 0644), all-or-nothing,
/// failing if `target` exists.
pub fn write_new(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = TempSibling::create(target, 0o644)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file()
        .write_all(bytes)
        .map_err(Error::io("cannot write", &tmp_path))?;
    tmp.persist_new(target)
}

/// Writes the secret `bytes` to the new file `target`, mode 0600, or fails:
///
/// 1. the folder is opened and held, and must be writable by nobody but us
///    (else [`Error::NotPrivate`]): in a folder others can write, they could
///    swap names under us;
/// 2. the temporary file is created in the held folder, mode 0600 in the
///    `open` call, exclusively, without following links;
/// 3. it is written, synced, and linked to its final name, which fails if
///    anything is there (a secret is never written over a file);
/// 4. the temporary name is removed and the folder synced.
pub fn write_new_secret(target: &Path, bytes: &[u8]) -> Result<()> {
    let folder = parent_dir(target);
    let name = target.file_name().ok_or_else(|| Error::InvalidValue {
        what: "file name",
        value: target.display().to_string(),
        reason: "it names no file",
    })?;
    let dir = sys::Dir::open(folder).map_err(Error::io("cannot open folder", folder))?;
    dir.check_private().map_err(|reason| Error::NotPrivate {
        path: folder.to_owned(),
        reason,
    })?;
    let mut attempt = 0;
    let (tmp_name, mut file) = loop {
        let tmp_name = temp_name(Some(name));
        match dir.create_file(&tmp_name, 0o600) {
            Ok(file) => break (tmp_name, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < NAME_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(Error::io("cannot create", folder.join(&tmp_name))(e)),
        }
    };
    let tmp_path = folder.join(&tmp_name);
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("cannot write", &tmp_path))
        .and_then(|()| {
            dir.link(&tmp_name, name)
                .map_err(Error::io("cannot create", target))
        });
    let _ = dir.remove_file(&tmp_name);
    written?;
    dir.sync()
        .map_err(Error::io("cannot flush directory", folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_differ_and_stay_siblings() {
        let a = temp_name(Some(OsStr::new("app.bin")));
        let b = temp_name(Some(OsStr::new("app.bin")));
        assert_ne!(a, b);
        let a = a.to_string_lossy();
        assert!(a.starts_with(".app.bin.tmp-"), "{a}");
        assert!(!a.contains('/'));
    }

    /// Windows may refuse to rename over a file anyone has open (a web
    /// server serving `update.toml`): the write waits for the reader to let
    /// go.
    #[test]
    fn a_file_briefly_held_by_a_reader_is_still_replaced() -> Result<()> {
        let dir = tempfile::tempdir().map_err(Error::io("cannot create", "a temporary folder"))?;
        let target = dir.path().join("update.toml");
        write_atomically(&target, b"old", 0o644)?;
        let reader = File::open(&target).map_err(Error::io("cannot open", &target))?;
        let held = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            drop(reader);
        });
        let written = write_atomically(&target, b"new", 0o644);
        let _ = held.join();
        written?;
        assert_eq!(
            fs::read(&target).map_err(Error::io("cannot read", &target))?,
            b"new"
        );
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn files_have_their_final_mode_and_secrets_are_never_overwritten()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let public = dir.path().join("k.pub");
        write_new(&public, b"public")?;
        let mode =
            |p: &Path| -> io::Result<u32> { Ok(fs::metadata(p)?.permissions().mode() & 0o777) };
        assert_eq!(mode(&public)?, 0o644);
        assert!(write_new(&public, b"again").is_err());
        let secret = dir.path().join("k.key");
        write_new_secret(&secret, b"secret")?;
        assert_eq!(mode(&secret)?, 0o600);
        assert!(write_new_secret(&secret, b"other").is_err());
        assert_eq!(fs::read(&secret)?, b"secret");
        let left: Vec<_> = fs::read_dir(dir.path())?.collect();
        assert_eq!(left.len(), 2, "no temporary file is left");
        Ok(())
    }
}
