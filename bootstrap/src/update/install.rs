//! Where a new build goes, and the rename that installs it.
//!
//! - [`Target::open`] holds the executable's folder open, and refuses,
//!   before anything is downloaded: an executable that is no longer the
//!   file this instance runs, one that is not ours, and a folder that
//!   others may write (they could swap names between our checks and our
//!   rename, or plant links and folders at the names we use).
//! - Each download has a file of its own ([`Target::new_download`]):
//!   `.<exe name>.<inode>.<random>.download` (decimal), created exclusively and
//!   privately, and tagged with the inode of the executable whose updater
//!   made it.
//! - [`Target::replace`] renames a verified download over the executable
//!   only if the name still leads to the file this instance runs, and ours
//!   (`sys::replace_executable`): a build installed meanwhile, by hand or by
//!   an instance of a newer build, is never downgraded or replaced.
//!   The build it replaces is kept as `.<exe name>.previous` for a
//!   rollback (`probation`).
//! - [`Target::remove_leftovers`] removes downloads that can never be
//!   installed: those of an executable no longer at the name, and, with the
//!   updater's lock held, ours except the one being resumed.

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;

use super::{RunningBuild, UpdateError};
use crate::sys::{self, FileId};

/// The executable's folder, held open, and who the executable is.
#[derive(Debug)]
pub struct Target {
    dir: sys::Dir,
    dir_path: PathBuf,
    exe: PathBuf,
    exe_name: String,
    /// The executable this instance runs.
    id: FileId,
}

impl Target {
    /// Holds the folder of `build`'s executable, `id` being the file this
    /// instance runs, after checking that an update may replace it.
    pub fn open(build: &RunningBuild, id: FileId) -> Result<Target, UpdateError> {
        let exe = &sys::long_path(&build.exe);
        let refuse = |reason: String| UpdateError::NotReplaceable {
            exe: exe.clone(),
            reason,
        };
        let exe_name = exe
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| refuse("its name is not UTF-8".into()))?
            .to_owned();
        // Held: everything after is relative to the folder's descriptor.
        let dir_path = payload_tools::persist::parent_dir(exe).to_owned();
        let opened = sys::Dir::open(&dir_path).and_then(|dir| {
            let (now, folder) = (dir.stat(&exe_name)?, dir.id()?);
            Ok((dir, now, folder))
        });
        let (dir, now, folder) = opened.map_err(UpdateError::io("open", &dir_path))?;
        if !now.is_some_and(|now| now.same_file(&id)) {
            return Err(UpdateError::AlreadyReplaced);
        }
        sys::check_replaceable(&build.packed.file, &id).map_err(refuse)?;
        sys::check_unshared_dir(&dir, &folder)
            .map_err(|reason| refuse(format!("its folder is not ours alone: {reason}")))?;
        Ok(Target {
            dir,
            dir_path,
            exe: exe.clone(),
            exe_name,
            id,
        })
    }

    pub fn dir(&self) -> &sys::Dir {
        &self.dir
    }

    /// The path of `name` in the folder, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir_path.join(name)
    }

    /// Creates a download file of our own.
    pub fn new_download(&self) -> Result<(String, File), UpdateError> {
        let mut attempts = 0;
        loop {
            // Random so that no one can guess it ahead; the exclusive
            // creation is what makes it ours.
            let random = RandomState::new().hash_one(std::process::id());
            let name = format!(".{}.{}.{random}.download", self.exe_name, self.id.ino);
            match self.dir.create_new(&name) {
                Ok(file) => return Ok((name, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(UpdateError::io("create", self.path_of(&name))(e)),
            }
        }
    }

    /// The inode tag of a download's name; `None` for other names.
    fn tag_of(&self, name: &str) -> Option<u64> {
        let (tag, random) = name
            .strip_prefix('.')?
            .strip_prefix(self.exe_name.as_str())?
            .strip_prefix('.')?
            .strip_suffix(".download")?
            .split_once('.')?;
        random.parse::<u64>().ok()?;
        tag.parse().ok()
    }

    /// Whether `name` is a download made for this executable.
    pub fn is_ours(&self, name: &str) -> bool {
        self.tag_of(name) == Some(self.id.ino)
    }

    /// Removes the build kept for a rollback (`probation`): for a caller
    /// that knows this executable is not on probation.
    pub fn remove_previous(&self) {
        self.remove(&crate::probation::previous_name(&self.exe_name));
    }

    pub fn remove(&self, name: &str) {
        let _ = self.dir.remove_file(name);
    }

    /// Removes downloads that will never be installed: those made for an
    /// executable that is no longer at the name (its updater will refuse to
    /// install them), and ours except `keep`; the caller holds the
    /// updater's lock (or knows no updater of this executable is at work).
    pub fn remove_leftovers(&self, keep: Option<&str>) {
        let Ok(listing) = std::fs::read_dir(&self.dir_path) else {
            return;
        };
        for item in listing.flatten() {
            let name = item.file_name();
            if let Some(name) = name.to_str()
                && self.tag_of(name).is_some()
                && Some(name) != keep
            {
                self.remove(name);
            }
        }
    }

    /// Renames the download `name` (open as `file`, verified and synced)
    /// over the executable, with the executable's permissions, if the
    /// executable is still the file this instance runs (`own`) and ours.
    /// `Ok(false)`: it is not, and nothing was changed. `keep_replaced`:
    /// the build replaced stays as the previous build.
    pub fn replace(
        &self,
        name: &str,
        file: &File,
        own: &File,
        keep_replaced: bool,
    ) -> Result<bool, UpdateError> {
        let io = |e| UpdateError::Replace {
            exe: self.exe.clone(),
            source: e,
        };
        let now = sys::file_id(own).map_err(io)?;
        // The mode change is metadata that the folder sync after the
        // rename makes durable with it.
        sys::copy_permissions(own, file).map_err(io)?;
        // The build replaced stays beside the new one while that is on
        // probation (`probation`): a rollback is then a rename.
        let previous = crate::probation::previous_name(&self.exe_name);
        let keep = keep_replaced.then_some(previous.as_str());
        sys::replace_executable(&self.dir, name, file, &self.exe_name, &now, keep).map_err(io)
    }
}
