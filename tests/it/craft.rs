//! Building packed files by hand from `docs/format.md`, independent of
//! `payload-tools`: the stub, a payload of zstd frames of whatever tar
//! bytes a test wants (including ones `pack` would refuse to write), a
//! metadata block and a trailer.

use std::path::Path;

/// One frame's tar bytes.
pub type TarBytes = Vec<u8>;

/// What goes into a crafted file.
pub struct Craft {
    pub name: String,
    pub version: String,
    pub entry: String,
    pub unpacked_size: u64,
    pub frames: Vec<TarBytes>,
    /// Extra TOML lines appended to the metadata.
    pub extra_metadata: String,
}

impl Craft {
    /// Writes `[stub][frames][metadata][trailer]` to `out`, with the entry
    /// count of the frames' tar streams.
    pub fn write(&self, stub: &Path, out: &Path) {
        let frames: Vec<(Vec<u8>, u64)> = self
            .frames
            .iter()
            .map(|tar| {
                let frame = zstd::bulk::compress(tar, 3).expect("compress");
                (frame, tar.len() as u64)
            })
            .collect();
        self.write_compressed(stub, out, &frames, count_members(&self.frames));
    }

    /// Like [`Craft::write`], with the frames given already compressed,
    /// each with the tar length the index declares for it (which need not
    /// be what it decodes to), and `entry_count` as declared; `self.frames`
    /// is not used.
    pub fn write_compressed(
        &self,
        stub: &Path,
        out: &Path,
        frames: &[(Vec<u8>, u64)],
        entry_count: u64,
    ) {
        let mut file = std::fs::read(stub).expect("read stub");
        let payload_offset = file.len() as u64;
        let mut index = Vec::new();
        for (frame, tar_len) in frames {
            index.push(format!("[{}, {tar_len}]", frame.len()));
            file.extend_from_slice(frame);
        }
        let payload_len = file.len() as u64 - payload_offset;
        let payload_crc = crc32fast::hash(&file[payload_offset as usize..]);
        let metadata = format!(
            "format_version = 1\nname = \"{}\"\nversion = \"{}\"\nentry = \"{}\"\nunpacked_size = {}\nentry_count = {entry_count}\nframes = [{}]\n{}",
            self.name,
            self.version,
            self.entry,
            self.unpacked_size,
            index.join(", "),
            self.extra_metadata
        );
        let metadata_offset = file.len() as u64;
        file.extend_from_slice(metadata.as_bytes());
        let trailer = trailer(
            payload_offset,
            payload_len,
            metadata_offset,
            metadata.len() as u64,
            payload_crc,
            crc32fast::hash(metadata.as_bytes()),
        );
        file.extend_from_slice(&trailer);
        super::support::write_file(out, &file, true);
    }
}

/// The members of tar streams as a reader counts them (long names merged),
/// up to the first bad one; at least 1, the smallest count the format allows.
pub fn count_members(frames: &[TarBytes]) -> u64 {
    let mut count = 0;
    for tar in frames {
        let mut archive = tar::Archive::new(&tar[..]);
        if let Ok(entries) = archive.entries() {
            count += entries.take_while(Result::is_ok).count() as u64;
        }
    }
    count.max(1)
}

/// A piece of a hand-made zstd frame.
pub enum Part<'a> {
    /// Bytes stored as they are.
    Bytes(&'a [u8]),
    /// This many zero bytes, in run-length blocks of 4 bytes per 128 KiB:
    /// gigabytes of decoded data from a few kilobytes of file.
    Zeros(u64),
}

/// A zstd frame built block by block from the zstd format (RFC 8878): no
/// content size, no checksum, a 128 KiB window, raw and RLE blocks.
pub fn zstd_frame(parts: &[Part<'_>]) -> Vec<u8> {
    const MAX_BLOCK: u64 = 128 * 1024;
    let mut blocks: Vec<(u8, u32, &[u8])> = Vec::new(); // (type, size, content)
    for part in parts {
        match part {
            Part::Bytes(bytes) => {
                for chunk in bytes.chunks(MAX_BLOCK as usize) {
                    blocks.push((0, chunk.len() as u32, chunk));
                }
            }
            &Part::Zeros(mut n) => {
                while n > 0 {
                    let size = n.min(MAX_BLOCK);
                    blocks.push((1, size as u32, &[0u8][..]));
                    n -= size;
                }
            }
        }
    }
    if blocks.is_empty() {
        blocks.push((0, 0, &[]));
    }
    // Magic, a descriptor with no optional fields, window log 17.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let last = blocks.len() - 1;
    for (i, (kind, size, content)) in blocks.into_iter().enumerate() {
        let header = u32::from(i == last) | u32::from(kind) << 1 | size << 3;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(content);
    }
    frame
}

/// One 512-byte tar header of any type and size field, for streams built
/// by hand around gigabytes of data that should never be held in memory.
pub fn header_block(kind: tar::EntryType, path: &str, size: u64, mode: u32) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    set_raw_path(&mut h, path);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The 64-byte version-1 trailer, field by field as in docs/format.md.
pub fn trailer(
    payload_offset: u64,
    payload_len: u64,
    metadata_offset: u64,
    metadata_len: u64,
    payload_crc: u32,
    metadata_crc: u32,
) -> [u8; 64] {
    let mut t = [0u8; 64];
    t[8..16].copy_from_slice(&payload_offset.to_le_bytes());
    t[16..24].copy_from_slice(&payload_len.to_le_bytes());
    t[24..32].copy_from_slice(&metadata_offset.to_le_bytes());
    t[32..40].copy_from_slice(&metadata_len.to_le_bytes());
    t[40..44].copy_from_slice(&payload_crc.to_le_bytes());
    t[44..48].copy_from_slice(&metadata_crc.to_le_bytes());
    t[52..54].copy_from_slice(&1u16.to_le_bytes());
    t[54..56].copy_from_slice(&64u16.to_le_bytes());
    t[56..64].copy_from_slice(b"ONEFILE\0");
    let crc = crc32fast::hash(&t[4..]);
    t[0..4].copy_from_slice(&crc.to_le_bytes());
    t
}

/// A tar stream writer that allows what `pack` refuses.
pub struct TarCraft {
    builder: tar::Builder<Vec<u8>>,
}

impl TarCraft {
    pub fn new() -> TarCraft {
        TarCraft {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h
    }

    /// A regular file; `path` is written raw, so `..` and `/abs` get through.
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, mode);
        set_raw_path(&mut h, path);
        h.set_cksum();
        self.builder.append(&h, data).expect("append");
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
        set_raw_path(&mut h, path);
        h.set_cksum();
        self.builder.append(&h, std::io::empty()).expect("append");
        self
    }

    pub fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0, 0o777);
        set_raw_path(&mut h, path);
        h.set_link_name_literal(target).expect("link name");
        h.set_cksum();
        self.builder.append(&h, std::io::empty()).expect("append");
        self
    }

    /// An entry of any type whose size field says `data.len()`, with that
    /// data: a folder or a symlink that carries bytes.
    pub fn with_data(mut self, kind: tar::EntryType, path: &str, data: &[u8]) -> Self {
        let mut h = Self::header(kind, data.len() as u64, 0o755);
        set_raw_path(&mut h, path);
        h.set_cksum();
        self.builder.append(&h, data).expect("append");
        self
    }

    pub fn special(mut self, kind: tar::EntryType, path: &str) -> Self {
        let mut h = Self::header(kind, 0, 0o644);
        set_raw_path(&mut h, path);
        h.set_cksum();
        self.builder.append(&h, std::io::empty()).expect("append");
        self
    }

    /// The tar bytes, with the end-of-archive blocks when `last`.
    pub fn finish(self, last: bool) -> TarBytes {
        let mut bytes = self.builder.into_inner().expect("tar");
        if !last {
            // into_inner wrote the two zero blocks; a middle frame has none.
            bytes.truncate(bytes.len() - 1024);
        }
        bytes
    }
}

fn set_raw_path(h: &mut tar::Header, path: &str) {
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}
