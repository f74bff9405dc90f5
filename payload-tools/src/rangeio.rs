//! Positioned reads of a byte range of a file, so that several threads can
//! read different frames of one open file without sharing a cursor, and so
//! that reading the trailer never touches the payload.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// Fills `buf` from `offset`, or fails with an error naming `path`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, path: &Path) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match sys::read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(Error::Truncated {
                    path: path.into(),
                    what: format!("unexpected end of file at offset {}", offset + done as u64),
                });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read", path)(e)),
        }
    }
    Ok(())
}

/// A file that is still being written (a download): readers of it wait
/// for the bytes they need instead of finding the end of the file.
pub trait Arrival: Sync {
    /// Blocks until the file holds more than `offset` bytes and returns how
    /// many it holds; fails if the writer stopped before that.
    fn wait_beyond(&self, offset: u64) -> io::Result<u64>;
}

/// A [`Read`] over `[start, start + len)` of a file, hashing what it reads.
pub struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    crc: crc32fast::Hasher,
    arrival: Option<&'a dyn Arrival>,
}

impl std::fmt::Debug for RangeReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .field("following", &self.arrival.is_some())
            .finish()
    }
}

impl<'a> RangeReader<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        RangeReader {
            file,
            pos: start,
            end: start.saturating_add(len),
            crc: crc32fast::Hasher::new(),
            arrival: None,
        }
    }

    /// Like [`RangeReader::new`], for a file still being written: each read
    /// waits until `arrival` says the bytes are there.
    pub fn following(file: &'a File, start: u64, len: u64, arrival: &'a dyn Arrival) -> Self {
        RangeReader {
            arrival: Some(arrival),
            ..RangeReader::new(file, start, len)
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The CRC-32 state of everything read so far.
    pub fn crc(&self) -> crc32fast::Hasher {
        self.crc.clone()
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let want = match self.arrival {
            Some(arrival) => {
                let have = arrival.wait_beyond(self.pos)?;
                want.min(usize::try_from(have - self.pos).unwrap_or(usize::MAX))
            }
            None => want,
        };
        let n = sys::read_at(self.file, &mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended inside the payload",
            ));
        }
        self.crc.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// CRC-32 and length of a whole open file, read in large blocks from the
/// start (the file's cursor is not used).
pub fn file_crc32(file: &File, path: &Path) -> Result<(u64, u32)> {
    let len = file
        .metadata()
        .map_err(Error::io("cannot read the size of", path))?
        .len();
    let mut reader = RangeReader::new(file, 0, len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read", path)(e)),
        }
    }
    Ok((len, reader.crc().finalize()))
}
