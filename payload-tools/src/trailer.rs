//! The fixed-size trailer at the very end of a packed executable, mirrored
//! field by field from `docs/format.md`.
//!
//! - [`Trailer::read_from`] finds it by reading the last bytes of the file,
//!   never by scanning: `Ok(None)` when the file carries no payload at all
//!   (a bare stub), `Err` when it carries one that is damaged.
//! - [`Trailer::to_bytes`] / [`Trailer::from_bytes`] convert with explicit
//!   little-endian reads and writes, no pointer casts.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::rangeio::read_exact_at;

/// The eight bytes that end every packed executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Magic(pub [u8; 8]);

impl Magic {
    /// `ONEFILE` followed by a NUL byte.
    pub const ONEFILE: Magic = Magic(*b"ONEFILE\0");
}

/// The packed-file format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Size of the version-1 trailer in bytes.
pub const TRAILER_LEN: usize = 64;

/// Largest metadata block a reader accepts (256 KiB), checked before it is
/// read: parsing TOML takes up to about 80 times its size in memory.
/// Real blocks are a few KiB to a hundred: a few hundred bytes of settings
/// and, per frame, about 20 bytes of index and 22 of hash (and a few more
/// for a chunk of a split file, in `continued_frames`), so 6,000 frames take
/// about 250 KiB; `pack` plans for at most about 3,000
/// (`frames::FramePolicy`).
pub const MAX_METADATA_LEN: u64 = 256 * 1024;

/// The decoded trailer. Offsets are from the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub payload_offset: u64,
    pub payload_len: u64,
    pub metadata_offset: u64,
    pub metadata_len: u64,
    pub payload_crc32: u32,
    pub metadata_crc32: u32,
}

// Byte offsets of the fields inside the trailer (docs/format.md, table 2).
const OFF_TRAILER_CRC: usize = 0;
const OFF_FLAGS: usize = 4;
const OFF_PAYLOAD_OFFSET: usize = 8;
const OFF_PAYLOAD_LEN: usize = 16;
const OFF_METADATA_OFFSET: usize = 24;
const OFF_METADATA_LEN: usize = 32;
const OFF_PAYLOAD_CRC: usize = 40;
const OFF_METADATA_CRC: usize = 44;
const OFF_RESERVED: usize = 48;
const OFF_VERSION: usize = 52;
const OFF_TRAILER_LEN: usize = 54;
const OFF_MAGIC: usize = 56;

/// Why a 64-byte block is not a valid trailer; [`Trailer::read_from`] turns
/// it into an [`Error`] naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailerFault {
    NoMagic,
    Version(u16),
    Length(u16),
    Checksum { expected: u32, actual: u32 },
    Flags(u32),
    Reserved(u32),
}

impl Trailer {
    /// Encodes the trailer; the trailer CRC is computed here.
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        put_u32(&mut b, OFF_FLAGS, 0);
        put_u64(&mut b, OFF_PAYLOAD_OFFSET, self.payload_offset);
        put_u64(&mut b, OFF_PAYLOAD_LEN, self.payload_len);
        put_u64(&mut b, OFF_METADATA_OFFSET, self.metadata_offset);
        put_u64(&mut b, OFF_METADATA_LEN, self.metadata_len);
        put_u32(&mut b, OFF_PAYLOAD_CRC, self.payload_crc32);
        put_u32(&mut b, OFF_METADATA_CRC, self.metadata_crc32);
        put_u32(&mut b, OFF_RESERVED, 0);
        b[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[OFF_TRAILER_LEN..OFF_TRAILER_LEN + 2]
            .copy_from_slice(&(TRAILER_LEN as u16).to_le_bytes());
        b[OFF_MAGIC..].copy_from_slice(&Magic::ONEFILE.0);
        let crc = crc32fast::hash(&b[OFF_FLAGS..]);
        put_u32(&mut b, OFF_TRAILER_CRC, crc);
        b
    }

    /// Decodes and checks a trailer block: magic, version, length, its own
    /// CRC and the reserved fields. Offsets are checked against the file by
    /// [`Trailer::read_from`].
    pub fn from_bytes(b: &[u8; TRAILER_LEN]) -> Result<Trailer, TrailerFault> {
        if b[OFF_MAGIC..] != Magic::ONEFILE.0 {
            return Err(TrailerFault::NoMagic);
        }
        // Version and length sit next to the magic so that a future trailer
        // of another size is still recognised as "newer", not as "damaged".
        let version = u16::from_le_bytes([b[OFF_VERSION], b[OFF_VERSION + 1]]);
        if version != FORMAT_VERSION {
            return Err(TrailerFault::Version(version));
        }
        let len = u16::from_le_bytes([b[OFF_TRAILER_LEN], b[OFF_TRAILER_LEN + 1]]);
        if usize::from(len) != TRAILER_LEN {
            return Err(TrailerFault::Length(len));
        }
        let expected = get_u32(b, OFF_TRAILER_CRC);
        let actual = crc32fast::hash(&b[OFF_FLAGS..]);
        if expected != actual {
            return Err(TrailerFault::Checksum { expected, actual });
        }
        let flags = get_u32(b, OFF_FLAGS);
        if flags != 0 {
            return Err(TrailerFault::Flags(flags));
        }
        let reserved = get_u32(b, OFF_RESERVED);
        if reserved != 0 {
            return Err(TrailerFault::Reserved(reserved));
        }
        Ok(Trailer {
            payload_offset: get_u64(b, OFF_PAYLOAD_OFFSET),
            payload_len: get_u64(b, OFF_PAYLOAD_LEN),
            metadata_offset: get_u64(b, OFF_METADATA_OFFSET),
            metadata_len: get_u64(b, OFF_METADATA_LEN),
            payload_crc32: get_u32(b, OFF_PAYLOAD_CRC),
            metadata_crc32: get_u32(b, OFF_METADATA_CRC),
        })
    }

    /// Reads the trailer of an open file of `file_len` bytes.
    ///
    /// `Ok(None)`: the file does not end with the magic, so it carries no
    /// payload. `Err`: it ends with the magic but something is wrong.
    pub fn read_from(file: &File, file_len: u64, path: &Path) -> Result<Option<Trailer>> {
        if file_len < Magic::ONEFILE.0.len() as u64 {
            return Ok(None);
        }
        let mut block = [0u8; TRAILER_LEN];
        if file_len < TRAILER_LEN as u64 {
            let mut magic = [0u8; 8];
            read_exact_at(file, &mut magic, file_len - 8, path)?;
            if magic != Magic::ONEFILE.0 {
                return Ok(None);
            }
            return Err(truncated(path, "the file is shorter than its trailer"));
        }
        read_exact_at(file, &mut block, file_len - TRAILER_LEN as u64, path)?;
        Trailer::from_end_of(&block, file_len, path)
    }

    /// Decodes `block`, the last 64 bytes of a file of `file_len` bytes
    /// named `path`, and checks the layout against that length: the part of
    /// [`Trailer::read_from`] that needs no file (the updater also reads a
    /// trailer fetched before the download).
    pub fn from_end_of(
        block: &[u8; TRAILER_LEN],
        file_len: u64,
        path: &Path,
    ) -> Result<Option<Trailer>> {
        let trailer = match Trailer::from_bytes(block) {
            Ok(t) => t,
            Err(TrailerFault::NoMagic) => return Ok(None),
            Err(TrailerFault::Version(v)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.into(),
                    found: u32::from(v),
                    supported: u32::from(FORMAT_VERSION),
                });
            }
            Err(TrailerFault::Checksum { expected, actual }) => {
                return Err(Error::Checksum {
                    path: path.into(),
                    part: "trailer",
                    expected,
                    actual,
                });
            }
            Err(fault) => return Err(truncated(path, &format!("bad trailer ({fault:?})"))),
        };
        trailer.check_layout(file_len, path)?;
        Ok(Some(trailer))
    }

    /// The sections must tile the file exactly: stub, payload, metadata,
    /// trailer, with nothing between and nothing after.
    fn check_layout(&self, file_len: u64, path: &Path) -> Result<()> {
        let trailer_start = file_len - TRAILER_LEN as u64;
        let payload_end = self.payload_offset.checked_add(self.payload_len);
        let metadata_end = self.metadata_offset.checked_add(self.metadata_len);
        if payload_end != Some(self.metadata_offset) || metadata_end != Some(trailer_start) {
            return Err(truncated(
                path,
                &format!(
                    "the trailer describes payload {}+{} and metadata {}+{}, but the file is {} bytes long",
                    self.payload_offset,
                    self.payload_len,
                    self.metadata_offset,
                    self.metadata_len,
                    file_len
                ),
            ));
        }
        if self.metadata_len > MAX_METADATA_LEN {
            return Err(truncated(
                path,
                &format!(
                    "metadata of {} bytes is over the limit of {MAX_METADATA_LEN}",
                    self.metadata_len
                ),
            ));
        }
        Ok(())
    }

    /// Total length of the packed file this trailer belongs to.
    pub fn file_len(&self) -> u64 {
        self.metadata_offset + self.metadata_len + TRAILER_LEN as u64
    }
}

fn truncated(path: &Path, what: &str) -> Error {
    Error::Truncated {
        path: path.into(),
        what: what.to_owned(),
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8; TRAILER_LEN], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn get_u64(b: &[u8; TRAILER_LEN], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trailer {
        Trailer {
            payload_offset: 0x1000,
            payload_len: 0x2345,
            metadata_offset: 0x3345,
            metadata_len: 0x80,
            payload_crc32: 0x1a2b_3c4d,
            metadata_crc32: 0xdead_beef,
        }
    }

    #[test]
    fn round_trip() {
        let t = sample();
        assert_eq!(Trailer::from_bytes(&t.to_bytes()), Ok(t));
    }

    /// The checked-in golden trailer: if this fails, the byte layout
    /// changed, and FORMAT_VERSION must change with it.
    #[test]
    fn golden_bytes() {
        let golden = include_bytes!("../tests/fixtures/trailer-v1.bin");
        assert_eq!(&sample().to_bytes(), golden);
        assert_eq!(Trailer::from_bytes(golden), Ok(sample()));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let good = sample().to_bytes();
        for byte in 0..TRAILER_LEN {
            for bit in 0..8 {
                let mut bad = good;
                bad[byte] ^= 1 << bit;
                assert!(Trailer::from_bytes(&bad).is_err(), "flip at {byte}.{bit}");
            }
        }
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let mut b = sample().to_bytes();
        b[OFF_VERSION] = 2;
        assert_eq!(Trailer::from_bytes(&b), Err(TrailerFault::Version(2)));
    }
}
