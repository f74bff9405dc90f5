//! Opening a packed executable: the trailer, then the metadata it points
//! to, both checked. This reads a few KiB however large the payload is,
//! which is what keeps a warm launch independent of the app's size.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::rangeio::read_exact_at;
use crate::trailer::{TRAILER_LEN, Trailer};

/// An open packed executable with its checked trailer and metadata.
#[derive(Debug)]
pub struct PackedFile {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub trailer: Trailer,
    pub metadata: Metadata,
}

impl PackedFile {
    /// Opens `path`. `Ok(None)` if it carries no payload (a bare stub or
    /// any other file); `Err` if it carries a damaged one.
    pub fn open(path: &Path) -> Result<Option<PackedFile>> {
        let file = File::open(path).map_err(Error::io("cannot open", path))?;
        PackedFile::from_file(file, path)
    }

    /// Like [`PackedFile::open`], for a file that is already open (the
    /// updater checks the very handle it downloaded into).
    pub fn from_file(file: File, path: &Path) -> Result<Option<PackedFile>> {
        let len = file
            .metadata()
            .map_err(Error::io("cannot read the size of", path))?
            .len();
        let Some(trailer) = Trailer::read_from(&file, len, path)? else {
            return Ok(None);
        };
        let metadata = read_metadata(&file, &trailer, path)?;
        PackedFile::from_parts(file, path, len, trailer, metadata).map(Some)
    }

    /// The trailer and metadata of a file of `file_len` bytes, from `tail`,
    /// its last bytes: the updater fetches them ahead of the build, to
    /// check the build before downloading it and its payload while it
    /// downloads. `Ok(None)`: not a packed file.
    pub fn read_tail(
        path: &Path,
        file_len: u64,
        tail: &[u8],
    ) -> Result<Option<(Trailer, Metadata)>> {
        let tail_start = file_len.checked_sub(tail.len() as u64);
        let block = tail
            .len()
            .checked_sub(TRAILER_LEN)
            .and_then(|at| <&[u8; TRAILER_LEN]>::try_from(&tail[at..]).ok());
        let (Some(tail_start), Some(block)) = (tail_start, block) else {
            return Err(Error::Truncated {
                path: path.into(),
                what: "the end of the file is shorter than a trailer".into(),
            });
        };
        let Some(trailer) = Trailer::from_end_of(block, file_len, path)? else {
            return Ok(None);
        };
        let Some(bytes) = trailer
            .metadata_offset
            .checked_sub(tail_start)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| tail.get(at..tail.len() - TRAILER_LEN))
        else {
            return Err(Error::Truncated {
                path: path.into(),
                what: "the end of the file fetched does not hold the metadata".into(),
            });
        };
        let metadata = parse_metadata(bytes, &trailer, path)?;
        Ok(Some((trailer, metadata)))
    }

    /// A packed file from its parts, `file` being `len` bytes long (or
    /// growing to that length): the frame index must cover the payload.
    pub fn from_parts(
        file: File,
        path: &Path,
        len: u64,
        trailer: Trailer,
        metadata: Metadata,
    ) -> Result<PackedFile> {
        if metadata.frames_compressed_len() != trailer.payload_len {
            return Err(Error::Metadata {
                path: path.into(),
                reason: format!(
                    "the frame index covers {} bytes but the payload is {} bytes",
                    metadata.frames_compressed_len(),
                    trailer.payload_len
                ),
            });
        }
        Ok(PackedFile {
            path: path.into(),
            file,
            len,
            trailer,
            metadata,
        })
    }
}

impl PackedFile {
    /// CRC-32 of the whole file, as `update.toml` announces it, reading only
    /// the stub, the metadata and the trailer: the payload's CRC-32 comes
    /// from the trailer (checked when the payload was unpacked) and is
    /// combined in, so a 200 MB app costs as much as a 2 MB one.
    pub fn whole_file_crc32(&self) -> Result<u32> {
        let t = &self.trailer;
        let mut crc = crc32fast::Hasher::new();
        hash_range(&self.file, 0, t.payload_offset, &self.path, &mut crc)?;
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            t.payload_crc32,
            t.payload_len,
        ));
        let mut tail = crc32fast::Hasher::new();
        hash_range(
            &self.file,
            t.metadata_offset,
            self.len - t.metadata_offset,
            &self.path,
            &mut tail,
        )?;
        crc.combine(&tail);
        Ok(crc.finalize())
    }
}

fn hash_range(
    file: &File,
    start: u64,
    len: u64,
    path: &Path,
    crc: &mut crc32fast::Hasher,
) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = start;
    let end = start + len;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        read_exact_at(file, &mut buf[..n], at, path)?;
        crc.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

fn read_metadata(file: &File, trailer: &Trailer, path: &Path) -> Result<Metadata> {
    // The trailer's layout check bounded metadata_len by MAX_METADATA_LEN.
    let len = usize::try_from(trailer.metadata_len).map_err(|_| Error::Truncated {
        path: path.into(),
        what: "metadata length does not fit in memory".into(),
    })?;
    let mut bytes = vec![0u8; len];
    read_exact_at(file, &mut bytes, trailer.metadata_offset, path)?;
    parse_metadata(&bytes, trailer, path)
}

fn parse_metadata(bytes: &[u8], trailer: &Trailer, path: &Path) -> Result<Metadata> {
    let actual = crc32fast::hash(bytes);
    if actual != trailer.metadata_crc32 {
        return Err(Error::Checksum {
            path: path.into(),
            part: "metadata",
            expected: trailer.metadata_crc32,
            actual,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Metadata {
        path: path.into(),
        reason: "not UTF-8".into(),
    })?;
    Metadata::parse(text, path)
}
