//! The updater's private file, one per executable, in the app's private
//! cache folder (`.update-<device>-<inode>`, the executable's): only the
//! user can open it.
//!
//! - It is locked (`flock`, exclusive, never waited for) while this
//!   process updates that executable: one updater at a time. A lock on the
//!   executable itself could be held forever by anyone who may read it.
//! - Its content is the resume record of a partial download: the build it
//!   is of (announced CRC-32 and size, not a URL: any of the build's
//!   mirrors may continue it), the URL it came from and that server's
//!   validator, and the download's name and inode in the executable's
//!   folder, so that only a file this updater made is ever continued.
//! - It is removed once the executable is replaced (its key is then dead),
//!   and when the running build is found current.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use payload_tools::rangeio::read_exact_at;

use super::{RunningBuild, UpdateError};
use crate::sys::{self, FileId};

/// The record is written by us, but read with a bound all the same.
const MAX_RECORD_LEN: u64 = 64 * 1024;

/// First line of a resume record; its last line is [`END`]: a record cut
/// short by a kill mid-write lacks it, and is not used.
const MAGIC: &str = "onefile resume 2";
const END: &str = "end";

/// The updater's file of one executable, locked.
#[derive(Debug)]
pub struct State {
    dir: sys::Dir,
    name: String,
    file: File,
}

/// What a later launch needs to continue a partial download.
#[derive(Debug, PartialEq)]
pub struct ResumeInfo {
    /// The URL the download came from: its validator is that server's.
    pub url: String,
    /// The build, as announced: its CRC-32 and its size (0: not announced).
    pub crc32: u32,
    pub size: u64,
    /// The download's name in the executable's folder, and its inode.
    pub file: String,
    pub ino: u64,
    /// The server's validator: a strong ETag, else Last-Modified.
    pub validator: String,
}

impl State {
    /// Takes the lock of the executable `exe` without waiting: `Busy` if
    /// another updater holds it.
    pub fn lock(build: &RunningBuild, exe: &FileId) -> Result<State, UpdateError> {
        State::open(build, exe, true)?.ok_or(UpdateError::Busy)
    }

    /// Like [`State::lock`], but `Ok(None)` when there is no such file:
    /// then no updater is at work on that executable.
    pub fn lock_existing(build: &RunningBuild, exe: &FileId) -> Result<Option<State>, UpdateError> {
        State::open(build, exe, false)
    }

    fn open(
        build: &RunningBuild,
        exe: &FileId,
        create: bool,
    ) -> Result<Option<State>, UpdateError> {
        let name = format!(".update-{}-{}", exe.dev, exe.ino);
        let Some((folder, folder_path)) = &build.cache_folder else {
            let no_folder = std::io::Error::other("the cache folder is not open");
            return Err(UpdateError::io("lock", &build.exe)(no_folder));
        };
        let opened = folder
            .try_clone()
            .and_then(|dir| Ok((dir.open_private(&name, create)?, dir)));
        let (file, dir) = match opened {
            Ok(opened) => opened,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(UpdateError::io("lock", folder_path.join(&name))(e)),
        };
        // Taken only if no one holds it and it is still the live file: a
        // holder removes it once it replaced the executable, and a file
        // locked after that is not the one later updaters open.
        let locked = file.try_lock().is_ok() && {
            let live = dir.stat(&name).ok().flatten();
            sys::file_id(&file).is_ok_and(|id| live.is_some_and(|live| live.same_file(&id)))
        };
        if !locked {
            return Err(UpdateError::Busy);
        }
        Ok(Some(State { dir, name, file }))
    }

    /// The resume record, if one was written and reads back whole.
    pub fn record(&self) -> Option<ResumeInfo> {
        let len = self.file.metadata().ok()?.len().min(MAX_RECORD_LEN);
        let mut bytes = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut bytes, 0, std::path::Path::new("")).ok()?;
        ResumeInfo::parse(std::str::from_utf8(&bytes).ok()?)
    }

    /// Replaces the resume record. Written in place, not through a
    /// temporary file: a kill mid-write leaves a record without its last
    /// line, and the next attempt simply starts over.
    pub fn write(&self, info: &ResumeInfo) -> std::io::Result<()> {
        let mut file = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(info.to_text().as_bytes())
    }

    /// Forgets the resume record.
    pub fn clear(&self) {
        let _ = self.file.set_len(0);
    }

    /// Removes the file, still locked: a later updater of this executable
    /// (there is none once it is replaced) would make a fresh one.
    pub fn remove(self) {
        let _ = self.dir.remove_file(&self.name);
    }
}

impl ResumeInfo {
    /// One value per line. None of them can hold a line break: the URL
    /// parsed as one, header values cannot, the name is ours. This costs
    /// the stub far fewer bytes than a TOML (de)serialiser for the record.
    fn to_text(&self) -> String {
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{}\n{}\n{}\n{END}\n",
            self.url, self.crc32, self.size, self.file, self.ino, self.validator
        )
    }

    fn parse(text: &str) -> Option<ResumeInfo> {
        let mut lines = text.split('\n');
        let mut next = || lines.next();
        if next()? != MAGIC {
            return None;
        }
        let info = ResumeInfo {
            url: next()?.to_owned(),
            crc32: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            file: next()?.to_owned(),
            ino: next()?.parse().ok()?,
            validator: next()?.to_owned(),
        };
        (next()? == END).then_some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_info_round_trips() {
        let info = ResumeInfo {
            url: "https://h/a b?x=\"1\"&y=\\".into(),
            crc32: 4_000_000_000,
            size: 1 << 40,
            file: ".app.bin.42.1234.download".into(),
            ino: u64::MAX,
            validator: "\"tab\there\"".into(),
        };
        let text = info.to_text();
        assert_eq!(ResumeInfo::parse(&text), Some(info));
        // Cut short by a kill mid-write: not used.
        for cut in 0..text.len() - 1 {
            assert_eq!(ResumeInfo::parse(&text[..cut]), None, "{cut}");
        }
    }
}
