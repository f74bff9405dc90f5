//! The files of probation in the app's private cache folder, each read with
//! a bound and replaced whole (a private temporary sibling, synced, then
//! renamed over), with a first line naming the format and a last line `end`:
//! a record cut short is not used.
//!
//! - `.probation-<device>-<inode>` (the new executable's): the build on
//!   probation ([`Record`]); `.probation-<device>-<inode>.lock` serialises
//!   its changes.
//! - `.rolled-back`: the build this app last rolled back from ([`Bad`]).
//!
//! (A rollback's report is a pending report of `update::report`.)

use std::io::Read;

use crate::sys::{Dir, FileId};

/// A record is written by us, but read with a bound all the same.
const MAX_RECORD_LEN: u64 = 4096;
/// Launches of one build on probation entered as pending at most: more at
/// once are not counted, which can only delay a rollback.
pub const MAX_PENDING: usize = 64;
/// Longest version or failure text stored.
const MAX_TEXT_LEN: usize = 128;

const MAGIC: &str = "onefile probation 2";
const BAD_MAGIC: &str = "onefile rolled back 1";
const END: &str = "end";
pub const BAD_NAME: &str = ".rolled-back";

/// A build on probation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The new build as its trailer and size say: a record whose key (an
    /// inode) was reused by another file does not match it.
    pub payload_crc32: u32,
    pub size: u64,
    /// The whole file's CRC-32, as the manifest announced and the download
    /// was checked against: what a rollback remembers.
    pub crc32: u32,
    pub version: String,
    pub previous_version: String,
    /// The replaced build as its trailer and size said (0, 0: unknown): a
    /// rollback restores only that build.
    pub previous_payload_crc32: u32,
    pub previous_size: u64,
    pub first_run_claimed: bool,
    /// Failed starts in a row, and how the last one failed.
    pub failures: u32,
    pub last_failure: String,
    /// Launchers that started the build and have not reported yet.
    pub pending: Vec<Pending>,
}

/// A launch of the build on probation that has not reported yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub pid: u32,
    /// Whether it started the app: a launcher gone before that never
    /// reported a start it could not make; one gone after it was killed
    /// with its app, which says nothing against the build.
    pub started: bool,
}

/// The build a rollback left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub crc32: u32,
    pub size: u64,
    pub version: String,
}

/// The names of the record of the executable `id`, and of its lock.
pub fn names(id: &FileId) -> (String, String) {
    let name = format!(".probation-{}-{}", id.dev, id.ino);
    let lock = names_lock(&name);
    (name, lock)
}

/// The lock's name of the record `name`.
pub fn names_lock(name: &str) -> String {
    format!("{name}.lock")
}

/// Whether `text` may be stored: bounded, one line.
pub fn is_storable(text: &str) -> bool {
    text.len() <= MAX_TEXT_LEN && !text.contains(['\n', '\r'])
}

/// `text` cut to what may be stored.
pub fn storable(text: &str) -> String {
    let mut cut: String = text.replace(['\n', '\r'], " ");
    while cut.len() > MAX_TEXT_LEN {
        cut.pop();
    }
    cut
}

impl Record {
    fn to_text(&self) -> String {
        let pending: Vec<String> = self
            .pending
            .iter()
            .map(|p| format!("{}:{}", p.pid, u8::from(p.started)))
            .collect();
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{END}\n",
            self.payload_crc32,
            self.size,
            self.crc32,
            self.version,
            self.previous_version,
            self.previous_payload_crc32,
            self.previous_size,
            u8::from(self.first_run_claimed),
            self.failures,
            self.last_failure,
            pending.join(" "),
        )
    }

    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.split('\n');
        let mut next = || lines.next();
        if next()? != MAGIC {
            return None;
        }
        let text = |line: &str| is_storable(line).then(|| line.to_owned());
        let record = Record {
            payload_crc32: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            crc32: next()?.parse().ok()?,
            version: text(next()?)?,
            previous_version: text(next()?)?,
            previous_payload_crc32: next()?.parse().ok()?,
            previous_size: next()?.parse().ok()?,
            first_run_claimed: match next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            failures: next()?.parse().ok()?,
            last_failure: text(next()?)?,
            pending: {
                let line = next()?;
                let pids: Option<Vec<Pending>> =
                    line.split_whitespace().map(Pending::parse).collect();
                let pids = pids?;
                (pids.len() <= MAX_PENDING).then_some(pids)?
            },
        };
        (next()? == END && next() == Some("")).then_some(record)
    }
}

impl Record {
    /// Whether `packed` is the build this one replaced.
    pub fn is_previous(&self, packed: &payload_tools::PackedFile) -> bool {
        packed.trailer.payload_crc32 == self.previous_payload_crc32
            && packed.len == self.previous_size
    }
}

impl Pending {
    fn parse(text: &str) -> Option<Pending> {
        let (pid, started) = text.split_once(':')?;
        let started = match started {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Pending {
            pid: pid.parse().ok()?,
            started,
        })
    }
}

impl Bad {
    fn to_text(&self) -> String {
        format!(
            "{BAD_MAGIC}\n{}\n{}\n{}\n{END}\n",
            self.crc32, self.size, self.version
        )
    }

    fn parse(text: &str) -> Option<Bad> {
        let mut lines = text.split('\n');
        let mut next = || lines.next();
        if next()? != BAD_MAGIC {
            return None;
        }
        let bad = Bad {
            crc32: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            version: Some(next()?).filter(|v| is_storable(v))?.to_owned(),
        };
        (next()? == END && next() == Some("")).then_some(bad)
    }
}

/// The record `name` in `dir`, if there is one that reads back whole.
pub fn load(dir: &Dir, name: &str) -> Option<Record> {
    Record::parse(&read(dir, name)?)
}

pub fn store(dir: &Dir, name: &str, record: &Record) -> std::io::Result<()> {
    write(dir, name, &record.to_text())
}

pub fn load_bad(dir: &Dir) -> Option<Bad> {
    Bad::parse(&read(dir, BAD_NAME)?)
}

pub fn store_bad(dir: &Dir, bad: &Bad) -> std::io::Result<()> {
    write(dir, BAD_NAME, &bad.to_text())
}

/// A private file of ours (`Dir::open_private`: no link, no other name),
/// at most [`MAX_RECORD_LEN`] of it.
fn read(dir: &Dir, name: &str) -> Option<String> {
    let file = dir.open_private(name, false).ok()?;
    let mut text = String::new();
    file.take(MAX_RECORD_LEN).read_to_string(&mut text).ok()?;
    Some(text)
}

fn write(dir: &Dir, name: &str, text: &str) -> std::io::Result<()> {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::process::id()) as u32;
    let temporary = format!("{name}.{}.{random:08x}.tmp", std::process::id());
    dir.write_whole(&temporary, name, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_cut_one_is_ignored() {
        let record = Record {
            payload_crc32: 4_000_000_000,
            size: 1 << 40,
            crc32: 7,
            version: "1.1".into(),
            previous_version: "1.0".into(),
            previous_payload_crc32: 9,
            previous_size: 10,
            first_run_claimed: true,
            failures: 2,
            last_failure: "killed by signal 11".into(),
            pending: vec![
                Pending {
                    pid: 1,
                    started: false,
                },
                Pending {
                    pid: 4_000_000,
                    started: true,
                },
            ],
        };
        let text = record.to_text();
        assert_eq!(Record::parse(&text), Some(record.clone()));
        for cut in 0..text.len() {
            assert_eq!(Record::parse(&text[..cut]), None, "{cut}");
        }
        let bare = Record {
            pending: Vec::new(),
            last_failure: String::new(),
            ..record
        };
        assert_eq!(Record::parse(&bare.to_text()), Some(bare));
        let bad = Bad {
            crc32: 1,
            size: 2,
            version: "1.1".into(),
        };
        let text = bad.to_text();
        assert_eq!(Bad::parse(&text), Some(bad));
        for cut in 0..text.len() {
            assert_eq!(Bad::parse(&text[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn hostile_records_are_refused() {
        let too_many = vec!["1:0"; MAX_PENDING + 1].join(" ");
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        for text in [
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n0\n0\n\n{too_many}\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n{long}\n1.0\n0\n0\n0\n0\n\n\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n2\n0\n\n\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n0\n-1\n\n\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n0\n0\n\nx\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n0\n0\n\n7\n{END}\n"),
            format!("{MAGIC}\n1\n2\n3\n1.1\n1.0\n0\n0\n0\n0\n\n7:2\n{END}\n"),
        ] {
            assert_eq!(Record::parse(&text), None, "{text}");
        }
        assert_eq!(storable(&long).len(), MAX_TEXT_LEN);
        assert_eq!(storable("a\nb"), "a b");
    }
}
