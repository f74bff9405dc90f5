//! The install's own record: who this install is (16 random bytes, drawn
//! on first need) and, per update URL spec (a channel), the highest
//! manifest sequence it has accepted. One private file, `.install`, in the
//! app's private cache folder, so two cache folders or two users are two
//! installs. The identity never leaves the machine: only its rollout
//! bucket is ever computed from it.
//!
//! - Every read and write happens under an exclusive lock (`.install.lock`,
//!   held for a few file operations): two launches creating the identity
//!   at once end with one, and a sequence is never lowered by a launch
//!   that read an older one.
//! - Written all-or-nothing: into `.install.new` (created exclusively,
//!   private; another name if something that is not a file is in the
//!   way), synced, renamed over `.install`: a kill mid-write never loses
//!   the identity.
//! - Read with a bound; a record that is damaged, cut short or not a
//!   private file of ours is replaced (traced), never trusted half-read. A
//!   record of a newer format (a newer stub shares the cache folder) is
//!   left alone: this run then has no identity and keeps no sequence. A
//!   record that cannot be opened for another reason (no memory, no
//!   descriptors) is an error: nothing is replaced.
//! - A stored sequence further ahead than [`MAX_AHEAD_S`] of the clock is
//!   damage (it would refuse every genuine manifest): that one is dropped,
//!   the identity kept.

use std::fs::File;
use std::io::{Read, Write};

use blake2::Digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::{RunningBuild, UpdateError};
use crate::sys::{self, Dir};
use crate::trace::{UPDATE, info};

const RECORD: &str = ".install";
const NEW_RECORD: &str = ".install.new";
const LOCK: &str = ".install.lock";

/// A real record is under 700 bytes ([`MAX_CHANNELS`] lines of 38).
const MAX_RECORD_LEN: u64 = 1024;

/// Channels (URL specs) whose sequence is kept; the oldest goes first.
const MAX_CHANNELS: usize = 16;

/// First line of a record, before its format version; its last line is
/// [`END`].
const MAGIC: &str = "onefile install ";
const FORMAT: &str = "1";
const END: &str = "end";

/// Bytes of an install's identity.
pub const ID_LEN: usize = 16;

/// Sequences are the publisher's clock at signing: one further ahead of
/// this machine's clock than this (clocks disagree, but not by a month)
/// is refused, and a stored one is dropped.
pub const MAX_AHEAD_S: i64 = 30 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: [u8; ID_LEN],
    /// (channel key, highest sequence), oldest first.
    sequences: Vec<(String, u64)>,
}

/// What reading the record found.
enum Found {
    Missing,
    Ours(Record),
    /// Of a newer format: left alone.
    Newer,
}

/// Why a manifest's sequence is refused.
pub enum Refusal {
    /// Lower than the highest this install accepted on its channel.
    Lower(u64),
    /// None given, when this install accepted one on its channel.
    Missing(u64),
}

/// The install's identity, created (and persisted) if it has none yet.
pub fn install_id(build: &RunningBuild) -> Result<[u8; ID_LEN], UpdateError> {
    let held = Held::lock(build)?;
    match held.read()? {
        Found::Ours(record) => Ok(record.id),
        Found::Missing => {
            let record = Record {
                id: new_id(&held)?,
                sequences: Vec::new(),
            };
            held.write(&record)?;
            Ok(record.id)
        }
        Found::Newer => Err(held.newer()),
    }
}

/// Admits a manifest of `sequence` on this build's channel (its main URL
/// spec): a [`Refusal`] if this install accepted a higher one there (a
/// replay, or a stale copy) or gives none after it accepted one;
/// otherwise records `sequence` as the channel's highest when it is
/// higher. Call it only once every other check of the manifest passed.
pub fn admit_sequence(
    build: &RunningBuild,
    sequence: Option<u64>,
    now: i64,
) -> Result<Result<(), Refusal>, UpdateError> {
    let held = Held::lock(build)?;
    let mut record = match held.read()? {
        Found::Ours(record) => Some(record),
        Found::Missing => None,
        Found::Newer => {
            info!(target: UPDATE, "{}", held.newer());
            return Ok(Ok(()));
        }
    };
    let channel = channel_key(&build.settings.url_spec);
    let latest_allowed = u64::try_from(now.saturating_add(MAX_AHEAD_S)).unwrap_or(0);
    let stored = record.as_mut().and_then(|record| {
        let at = record.sequences.iter().position(|(c, _)| *c == channel)?;
        let highest = record.sequences[at].1;
        if highest > latest_allowed {
            held.damaged(&format!("its sequence {highest} is from the future"));
            record.sequences.remove(at);
            return None;
        }
        Some(highest)
    });
    match (stored, sequence) {
        (Some(highest), None) => return Ok(Err(Refusal::Missing(highest))),
        (Some(highest), Some(sequence)) if sequence < highest => {
            return Ok(Err(Refusal::Lower(highest)));
        }
        (Some(highest), Some(sequence)) if sequence == highest => return Ok(Ok(())),
        (None, None) => return Ok(Ok(())),
        _ => {}
    }
    let mut record = match record {
        Some(record) => record,
        None => Record {
            id: new_id(&held)?,
            sequences: Vec::new(),
        },
    };
    record.sequences.retain(|(c, _)| *c != channel);
    if record.sequences.len() >= MAX_CHANNELS {
        record.sequences.remove(0);
    }
    record.sequences.extend(sequence.map(|s| (channel, s)));
    held.write(&record)?;
    Ok(Ok(()))
}

/// The record's name for a channel: a hash of its URL spec, so the record
/// stays small and holds no URL.
fn channel_key(url_spec: &str) -> String {
    let mut hasher = blake2::Blake2b512::new();
    hasher.update(b"onefile channel\0");
    hasher.update(url_spec.as_bytes());
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_id(held: &Held<'_>) -> Result<[u8; ID_LEN], UpdateError> {
    let mut id = [0u8; ID_LEN];
    SystemRandom::new().fill(&mut id).map_err(|_| {
        held.local(
            "draw",
            std::io::Error::other("no random bytes from the system"),
        )
    })?;
    Ok(id)
}

/// Whether opening the record failed because of what is there (replace
/// it), not because of a passing shortage.
fn is_damage(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    matches!(
        e.kind(),
        PermissionDenied | IsADirectory | NotADirectory | InvalidData
    )
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
            return Err(UpdateError::Local {
                action: "open",
                path: RECORD.into(),
                source: std::io::Error::other("the cache folder is not open"),
            });
        };
        let lock = sys::lock_file(dir, LOCK, true).map_err(|source| UpdateError::Local {
            action: "lock",
            path: path.join(LOCK),
            source,
        })?;
        Ok(Held {
            dir,
            path,
            _lock: lock,
        })
    }

    fn local(&self, action: &'static str, source: std::io::Error) -> UpdateError {
        UpdateError::Local {
            action,
            path: self.path.join(RECORD),
            source,
        }
    }

    fn newer(&self) -> UpdateError {
        self.local(
            "use",
            std::io::Error::other("it is of a newer format, left to the stub that wrote it"),
        )
    }

    /// The record, unless there is none or it does not read back whole.
    fn read(&self) -> Result<Found, UpdateError> {
        let file = match self.dir.open_private(RECORD, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) if is_damage(&e) => return Ok(self.damaged(&e.to_string())),
            Err(e) => return Err(self.local("open", e)),
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_RECORD_LEN + 1).read_to_end(&mut bytes) {
            return Err(self.local("read", e));
        }
        if bytes.len() as u64 > MAX_RECORD_LEN {
            return Ok(self.damaged("it is too long"));
        }
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        if let Some(format) = text
            .split('\n')
            .next()
            .and_then(|line| line.strip_prefix(MAGIC))
            && format != FORMAT
            && !format.is_empty()
            && format.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Found::Newer);
        }
        Ok(match Record::parse(text) {
            Some(record) => Found::Ours(record),
            None => self.damaged("it does not read back whole"),
        })
    }

    fn damaged(&self, reason: &str) -> Found {
        info!(
            target: UPDATE,
            "The install record '{}' is damaged ({reason}); replacing it.",
            self.path.join(RECORD).display()
        );
        Found::Missing
    }

    /// Replaces the record, all or nothing.
    fn write(&self, record: &Record) -> Result<(), UpdateError> {
        // Left by a kill mid-write: only a holder of the lock writes it.
        let _ = self.dir.remove_file(NEW_RECORD);
        let (name, mut file) = match self.dir.create_new(NEW_RECORD) {
            Ok(file) => (NEW_RECORD.to_owned(), file),
            // Something that is not a file (a folder) is in the way.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut suffix = [0u8; 4];
                let _ = SystemRandom::new().fill(&mut suffix);
                let name = format!("{NEW_RECORD}-{:08x}", u32::from_le_bytes(suffix));
                let file = self
                    .dir
                    .create_new(&name)
                    .map_err(|e| self.local("write", e))?;
                (name, file)
            }
            Err(e) => return Err(self.local("write", e)),
        };
        let renamed = file
            .write_all(record.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| self.dir.replace(&name, RECORD, sys::REPLACE_PATIENCE))
            .and_then(|()| self.dir.sync());
        if let Err(e) = renamed {
            let _ = self.dir.remove_file(&name);
            return Err(self.local("write", e));
        }
        Ok(())
    }
}

impl Record {
    fn to_text(&self) -> String {
        let id: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        let mut text = format!("{MAGIC}{FORMAT}\n{id}\n");
        for (channel, sequence) in &self.sequences {
            text.push_str(&format!("{channel} {sequence}\n"));
        }
        text.push_str(END);
        text.push('\n');
        text
    }

    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.split('\n');
        if lines.next()?.strip_prefix(MAGIC)? != FORMAT {
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
        let mut sequences = Vec::new();
        loop {
            let line = lines.next()?;
            if line == END {
                break;
            }
            let (channel, sequence) = line.split_once(' ')?;
            let is_hex = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
            let is_number = !sequence.is_empty() && sequence.bytes().all(|b| b.is_ascii_digit());
            if !is_hex(channel) || !is_number || sequences.len() >= MAX_CHANNELS {
                return None;
            }
            sequences.push((channel.to_owned(), sequence.parse().ok()?));
        }
        (lines.next()?.is_empty() && lines.next().is_none()).then_some(Record { id, sequences })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cut_ones_are_refused() {
        let channel = channel_key("https://h/{VERSION}/update.toml");
        for sequences in [
            vec![],
            vec![(channel.clone(), 0)],
            vec![(channel, u64::MAX)],
        ] {
            let record = Record {
                id: [0xa5; ID_LEN],
                sequences,
            };
            let text = record.to_text();
            assert_eq!(Record::parse(&text), Some(record));
            for cut in 0..text.len() {
                assert_eq!(Record::parse(&text[..cut]), None, "{cut}");
            }
        }
        let id = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";
        for bad in [
            "onefile install 1\nzz00000000000000000000000000000\nend\n".to_owned(),
            "onefile install 1\n+0a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5\nend\n".to_owned(),
            format!("onefile install 1\n{id}\n0123456789abcdef -1\nend\n"),
            format!("onefile install 1\n{id}\n0123456789abcdef +1\nend\n"),
            format!("onefile install 1\n{id}\n0123456789abcdef 1 \nend\n"),
            format!("onefile install 1\n{id}\n0123456789abcde 1\nend\n"),
            format!("onefile install 1\n{id}\nend\nmore\n"),
            format!("onefile install 2\n{id}\nend\n"),
        ] {
            assert_eq!(Record::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn channels_have_distinct_keys() {
        let stable = channel_key("https://h/stable/update.toml");
        assert_eq!(stable.len(), 16);
        assert_ne!(stable, channel_key("https://h/beta/update.toml"));
        assert_eq!(stable, channel_key("https://h/stable/update.toml"));
    }
}
