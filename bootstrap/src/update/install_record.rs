//! The install's own record: who this install is (16 random bytes, drawn
//! on first need) and the highest manifest sequence it has accepted. One
//! private file, `.install`, in the app's private cache folder, so two
//! cache folders or two users are two installs. The identity never leaves
//! the machine: only its rollout bucket is ever computed from it.
//!
//! - Every read and write happens under an exclusive lock (`.install.lock`,
//!   held for a few file operations): two launches creating the identity
//!   at once end with one, and a sequence is never lowered by a launch
//!   that read an older one.
//! - Written all-or-nothing: into `.install.new` (created exclusively,
//!   private), synced, renamed over `.install`: a kill mid-write never
//!   loses the identity.
//! - Read with a bound; a record that is damaged, cut short or not a
//!   private file of ours is replaced (traced), never trusted half-read.

use std::fs::File;
use std::io::{Read, Write};

use ring::rand::{SecureRandom, SystemRandom};

use super::{RunningBuild, UpdateError};
use crate::sys::{self, Dir};
use crate::trace::{UPDATE, info};

const RECORD: &str = ".install";
const NEW_RECORD: &str = ".install.new";
const LOCK: &str = ".install.lock";

/// A real record is under 100 bytes.
const MAX_RECORD_LEN: u64 = 1024;

/// First line of a record; its last line is [`END`].
const MAGIC: &str = "onefile install 1";
const END: &str = "end";

/// Bytes of an install's identity.
pub const ID_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: [u8; ID_LEN],
    highest_sequence: Option<u64>,
}

/// The install's identity, created (and persisted) if it has none yet.
pub fn install_id(build: &RunningBuild) -> Result<[u8; ID_LEN], UpdateError> {
    let held = Held::lock(build)?;
    match held.read() {
        Some(record) => Ok(record.id),
        None => {
            let record = Record {
                id: new_id()?,
                highest_sequence: None,
            };
            held.write(&record)?;
            Ok(record.id)
        }
    }
}

/// Admits a manifest of `sequence`: `Err(highest)` if this install has
/// accepted a higher one (a replay, or a stale copy); otherwise records
/// `sequence` as the highest seen when it is higher. Call it only once
/// every other check of the manifest passed.
pub fn admit_sequence(build: &RunningBuild, sequence: u64) -> Result<Result<(), u64>, UpdateError> {
    let held = Held::lock(build)?;
    let record = held.read();
    let highest = record.as_ref().and_then(|r| r.highest_sequence);
    if let Some(highest) = highest {
        if sequence < highest {
            return Ok(Err(highest));
        }
        if sequence == highest {
            return Ok(Ok(()));
        }
    }
    let id = match record {
        Some(record) => record.id,
        None => new_id()?,
    };
    held.write(&Record {
        id,
        highest_sequence: Some(sequence),
    })?;
    Ok(Ok(()))
}

fn new_id() -> Result<[u8; ID_LEN], UpdateError> {
    let mut id = [0u8; ID_LEN];
    SystemRandom::new().fill(&mut id).map_err(|_| {
        UpdateError::io("draw", "the install's identity")(std::io::Error::other(
            "no random bytes from the system",
        ))
    })?;
    Ok(id)
}

/// The cache folder, with the record's lock held.
struct Held<'a> {
    dir: &'a Dir,
    path: &'a std::path::Path,
    _lock: File,
}

impl<'a> Held<'a> {
    fn lock(build: &'a RunningBuild) -> Result<Held<'a>, UpdateError> {
        let Some((dir, path)) = &build.cache_folder else {
            let no_folder = std::io::Error::other("the cache folder is not open");
            return Err(UpdateError::io("open", RECORD)(no_folder));
        };
        let lock =
            sys::lock_file(dir, LOCK, true).map_err(UpdateError::io("lock", path.join(LOCK)))?;
        Ok(Held {
            dir,
            path,
            _lock: lock,
        })
    }

    /// The record, if there is one that reads back whole.
    fn read(&self) -> Option<Record> {
        let file = match self.dir.open_private(RECORD, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return self.damaged(&e.to_string()),
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_RECORD_LEN + 1).read_to_end(&mut bytes) {
            return self.damaged(&e.to_string());
        }
        if bytes.len() as u64 > MAX_RECORD_LEN {
            return self.damaged("it is too long");
        }
        match std::str::from_utf8(&bytes).ok().and_then(Record::parse) {
            Some(record) => Some(record),
            None => self.damaged("it does not read back whole"),
        }
    }

    fn damaged(&self, reason: &str) -> Option<Record> {
        info!(
            target: UPDATE,
            "The install record '{}' is damaged ({reason}); replacing it.",
            self.path.join(RECORD).display()
        );
        None
    }

    /// Replaces the record, all or nothing.
    fn write(&self, record: &Record) -> Result<(), UpdateError> {
        let failed = UpdateError::io("write", self.path.join(RECORD));
        // Left by a kill mid-write: only a holder of the lock writes it.
        let _ = self.dir.remove_file(NEW_RECORD);
        let written = self.dir.create_new(NEW_RECORD).and_then(|mut file| {
            file.write_all(record.to_text().as_bytes())?;
            file.sync_all()
        });
        let renamed = written
            .and_then(|()| self.dir.rename(NEW_RECORD, RECORD))
            .and_then(|()| self.dir.sync());
        if let Err(e) = renamed {
            let _ = self.dir.remove_file(NEW_RECORD);
            return Err(failed(e));
        }
        Ok(())
    }
}

impl Record {
    fn to_text(&self) -> String {
        let id: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        let sequence = self
            .highest_sequence
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        format!("{MAGIC}\n{id}\n{sequence}\n{END}\n")
    }

    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.split('\n');
        if lines.next()? != MAGIC {
            return None;
        }
        let hex = lines.next()?;
        if hex.len() != ID_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        let highest_sequence = match lines.next()? {
            "-" => None,
            n => Some(n.parse().ok()?),
        };
        (lines.next()? == END && lines.next()?.is_empty() && lines.next().is_none()).then_some(
            Record {
                id,
                highest_sequence,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cut_ones_are_refused() {
        for highest_sequence in [None, Some(0), Some(u64::MAX)] {
            let record = Record {
                id: [0xa5; ID_LEN],
                highest_sequence,
            };
            let text = record.to_text();
            assert_eq!(Record::parse(&text), Some(record));
            for cut in 0..text.len() {
                assert_eq!(Record::parse(&text[..cut]), None, "{cut}");
            }
        }
        for bad in [
            "onefile install 1\nzz00000000000000000000000000000\n-\nend\n",
            "onefile install 1\n+0a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5\n-\nend\n",
            "onefile install 1\na5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5\n-1\nend\n",
            "onefile install 1\na5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5\n-\nend\nmore\n",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad}");
        }
    }
}
