//! The tar members of one frame, read within what the metadata declares.
//!
//! - [`Bounded`] stops decompression at the frame's declared tar length: a
//!   frame that decodes to more is refused after at most one more zstd
//!   block, however much it would have decoded to; after the end of the tar
//!   stream only zero bytes may follow, up to that length.
//! - [`Members`] reads the tar stream raw (the `tar` crate's own handling of
//!   extension entries would read a long name or PAX header of any size
//!   into memory) and turns each member into a checked [`Member`]: a path
//!   that stays inside the tree and fits every filesystem; a file, a folder,
//!   a symlink whose target stays inside, or a hard link (tar type `1`)
//!   whose target is a member path, nothing else; GNU long names of
//!   at most [`MAX_PATH_LEN`] bytes, no PAX headers (`pack` writes none);
//!   folders and links carry no data, so a size field cannot make the
//!   reader skip (decode) gigabytes.
//!
//! How entries relate to each other (duplicates, a file below a symlink,
//! a file where a folder is) is [`crate::namespace`]'s concern.

use std::io::{self, Read};

use crate::paths::{MAX_PATH_LEN, check_member_path, check_symlink_target};

/// The tar block size.
const BLOCK: u64 = 512;

/// The zero blocks that end a tar stream, as the `tar` crate writes them.
pub const END_OF_ARCHIVE_LEN: u64 = 2 * BLOCK;

/// Most tar bytes one member can take besides its file data: its header and
/// the padding of its data, and a GNU long name and long link (a header and
/// up to [`MAX_PATH_LEN`] + 1 bytes, padded, each).
pub const MAX_MEMBER_OVERHEAD: u64 = BLOCK + (BLOCK - 1) + 2 * (BLOCK + long_name_blocks());

const fn long_name_blocks() -> u64 {
    (MAX_PATH_LEN as u64 + 1).div_ceil(BLOCK) * BLOCK
}

/// Why a frame's tar stream is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A member breaks a rule; `entry` is its path, as far as it is known.
    Entry { entry: String, reason: String },
    /// The stream itself is broken (bad header, cut short, too long).
    Stream(String),
}

/// What one member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// `read_only`: the mode has no owner write bit.
    File {
        size: u64,
        executable: bool,
        read_only: bool,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// Another name of the earlier regular file `target`.
    HardLink {
        target: String,
    },
}

/// One checked member: its path (relative, without a trailing `/`) and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: String,
    pub kind: MemberKind,
}

/// A decompressed frame, cut at its declared length.
#[derive(Debug)]
pub struct Bounded<R> {
    inner: R,
    declared: u64,
    read: u64,
}

/// The error [`Bounded`] reads fail with once the frame goes on past its
/// declared length.
#[derive(Debug)]
struct Overrun(u64);

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it decompresses to more than the {} bytes the index says",
            self.0
        )
    }
}

impl std::error::Error for Overrun {}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, declared: u64) -> Self {
        Bounded {
            inner,
            declared,
            read: 0,
        }
    }

    /// The decompressor, once this frame is done with.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads what follows the end of the tar stream: zero bytes up to the
    /// declared length, and then nothing.
    pub fn finish(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 8192];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
                Ok(_) => return Err("it holds data after the end of its tar stream".into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if self.read != self.declared {
            return Err(format!(
                "it decompresses to {} bytes, the index says {}",
                self.read, self.declared
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.declared - self.read;
        if left == 0 {
            // One byte past the declared length is enough to refuse the
            // frame; decoding it costs at most one zstd block.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Overrun(self.declared),
                )),
            };
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The members of one tar stream, checked one by one.
pub struct Members<'a, R: Read> {
    entries: tar::Entries<'a, R>,
}

impl<R: Read> std::fmt::Debug for Members<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").finish_non_exhaustive()
    }
}

impl<'a, R: Read> Members<'a, R> {
    pub fn new(archive: &'a mut tar::Archive<R>) -> Result<Self, Refusal> {
        let entries = archive
            .entries()
            .map_err(|e| Refusal::Stream(format!("not a tar stream ({e})")))?
            .raw(true);
        Ok(Members { entries })
    }

    /// The next member, with the reader of its data (a file's contents;
    /// nothing for the others). The data must be read, or dropped, before
    /// the next call.
    #[allow(clippy::should_implement_trait)] // fallible, unlike Iterator::next
    pub fn next(&mut self) -> Result<Option<(Member, tar::Entry<'a, R>)>, Refusal> {
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let entry = match self.entries.next() {
                None if long_name.is_some() || long_link.is_some() => {
                    return Err(Refusal::Stream("a long name with no entry after it".into()));
                }
                None => return Ok(None),
                Some(Err(e)) => return Err(Refusal::Stream(format!("bad tar entry ({e})"))),
                Some(Ok(entry)) => entry,
            };
            let header = entry.header();
            let kind = header.entry_type();
            let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
            if recognized && (kind.is_gnu_longname() || kind.is_gnu_longlink()) {
                let slot = if kind.is_gnu_longname() {
                    &mut long_name
                } else {
                    &mut long_link
                };
                if slot.is_some() {
                    return Err(Refusal::Stream("two long names for one entry".into()));
                }
                *slot = Some(read_long_name(entry)?);
                continue;
            }
            let raw_path = long_name.unwrap_or_else(|| header.path_bytes().into_owned());
            let member = check(&entry, raw_path, long_link)?;
            return Ok(Some((member, entry)));
        }
    }
}

/// Reads a GNU long name or long link, refusing one longer than a path
/// may be before reading it.
fn read_long_name<R: Read>(mut entry: tar::Entry<'_, R>) -> Result<Vec<u8>, Refusal> {
    let size = entry.size();
    // The name and its NUL.
    if size > MAX_PATH_LEN as u64 + 1 {
        return Err(Refusal::Stream(format!(
            "a long name of {size} bytes (at most {MAX_PATH_LEN} are allowed)"
        )));
    }
    let mut name = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut name)
        .map_err(|e| Refusal::Stream(format!("bad long name ({e})")))?;
    if name.last() == Some(&0) {
        name.pop();
    }
    Ok(name)
}

/// Checks one member's header against the rules of the format.
fn check<R: Read>(
    entry: &tar::Entry<'_, R>,
    raw_path: Vec<u8>,
    long_link: Option<Vec<u8>>,
) -> Result<Member, Refusal> {
    let mut path = match String::from_utf8(raw_path) {
        Ok(path) => path,
        Err(e) => {
            return Err(Refusal::Entry {
                entry: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                reason: "path is not UTF-8".into(),
            });
        }
    };
    let refuse = |reason: &str| Refusal::Entry {
        entry: path.clone(),
        reason: reason.to_owned(),
    };
    // Only a folder's trailing '/' is trimmed.
    let len = check_member_path(&path).map_err(refuse)?.len();
    path.truncate(len);
    let refuse = |reason: &str| Refusal::Entry {
        entry: path.clone(),
        reason: reason.to_owned(),
    };
    let header = entry.header();
    let size = entry.size();
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mode = header.mode().map_err(|_| refuse("bad mode field"))?;
            MemberKind::File {
                size,
                executable: mode & 0o111 != 0,
                read_only: mode & 0o200 == 0,
            }
        }
        tar::EntryType::Directory if size != 0 => {
            return Err(refuse(&format!("a folder with {size} bytes of data")));
        }
        tar::EntryType::Directory => MemberKind::Dir,
        tar::EntryType::Symlink if size != 0 => {
            return Err(refuse(&format!("a symlink with {size} bytes of data")));
        }
        tar::EntryType::Symlink => {
            let target = long_link
                .or_else(|| header.link_name_bytes().map(|t| t.into_owned()))
                .ok_or_else(|| refuse("symlink without a target"))?;
            let target =
                String::from_utf8(target).map_err(|_| refuse("symlink target is not UTF-8"))?;
            check_symlink_target(&path, &target).map_err(refuse)?;
            MemberKind::Symlink { target }
        }
        tar::EntryType::Link if size != 0 => return Err(refuse("a hard link with data")),
        tar::EntryType::Link => {
            let target = long_link
                .or_else(|| header.link_name_bytes().map(|t| t.into_owned()))
                .ok_or_else(|| refuse("hard link without a target"))?;
            let target =
                String::from_utf8(target).map_err(|_| refuse("hard link target is not UTF-8"))?;
            // A member path, as the target's own entry has: relative,
            // inside, and not a folder.
            match check_member_path(&target) {
                Ok(checked) if checked.len() == target.len() && target != path => {}
                Ok(_) => return Err(refuse("a hard link to a folder or to itself")),
                Err(reason) => return Err(refuse(reason)),
            }
            MemberKind::HardLink { target }
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            return Err(refuse("device nodes are not allowed"));
        }
        tar::EntryType::Fifo => return Err(refuse("fifos are not allowed")),
        tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
            return Err(refuse("PAX headers are not allowed"));
        }
        _ => return Err(refuse("entry type not allowed")),
    };
    Ok(Member { path, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of endless zero bytes that counts what is taken from it.
    struct Endless {
        given: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.given += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn reading_stops_at_the_declared_length() {
        let mut bounded = Bounded::new(Endless { given: 0 }, 23);
        let mut sink = Vec::new();
        let err = bounded.read_to_end(&mut sink).expect_err("refused");
        assert!(err.to_string().contains("more than the 23 bytes"), "{err}");
        assert_eq!(sink.len(), 23);
        // The declared bytes and a one-byte probe, nothing more.
        assert_eq!(bounded.inner.given, 24);
        let mut bounded = Bounded::new(Endless { given: 0 }, 4096);
        assert!(bounded.finish().is_err());
        assert_eq!(bounded.inner.given, 4097);
    }

    #[test]
    fn only_zeros_may_follow_the_tar_stream() {
        let mut bounded = Bounded::new(&[0u8; 1024][..], 1024);
        assert_eq!(bounded.finish(), Ok(()));
        let mut data = [0u8; 1024];
        data[700] = 1;
        let mut bounded = Bounded::new(&data[..], 1024);
        assert!(
            bounded
                .finish()
                .expect_err("refused")
                .contains("after the end")
        );
        let mut bounded = Bounded::new(&[0u8; 1000][..], 1024);
        assert!(
            bounded
                .finish()
                .expect_err("refused")
                .contains("1000 bytes")
        );
    }

    #[test]
    fn the_overhead_bound_covers_the_longest_names() {
        // Header, a long name and a long link of MAX_PATH_LEN bytes each
        // (with their NUL, in 512-byte blocks), and the padding of the data.
        let long = (MAX_PATH_LEN as u64 + 1).div_ceil(512) * 512;
        assert_eq!(MAX_MEMBER_OVERHEAD, 512 + 511 + 2 * (512 + long));
    }

    fn tar_of(
        build: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> Result<(), Box<dyn std::error::Error>>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder)?;
        Ok(builder.into_inner()?)
    }

    fn members(bytes: &[u8]) -> Result<Vec<Member>, Refusal> {
        let mut archive = tar::Archive::new(bytes);
        let mut members = Members::new(&mut archive)?;
        let mut out = Vec::new();
        while let Some((member, mut data)) = members.next()? {
            io::copy(&mut data, &mut io::sink())
                .map_err(|e| Refusal::Stream(format!("reading data ({e})")))?;
            out.push(member);
        }
        Ok(out)
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o755);
        h
    }

    #[test]
    fn long_names_and_links_are_read() -> Result<(), Box<dyn std::error::Error>> {
        let long = format!("{}/app", vec!["folder"; 40].join("/"));
        let target = format!("{}app", "../".repeat(40));
        let bytes = tar_of(|b| {
            let mut h = header(tar::EntryType::Regular, 3);
            b.append_data(&mut h, &long, &b"hi\n"[..])?;
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, format!("{long}-link"), &target)?;
            Ok(())
        })?;
        let got = members(&bytes).map_err(|r| format!("members: {r:?}"))?;
        assert_eq!(got[0].path, long);
        assert_eq!(
            got[0].kind,
            MemberKind::File {
                size: 3,
                executable: true,
                read_only: false,
            }
        );
        assert_eq!(got[1].kind, MemberKind::Symlink { target });
        Ok(())
    }

    #[test]
    fn a_long_name_longer_than_a_path_is_refused_unread() -> Result<(), Box<dyn std::error::Error>>
    {
        let bytes = tar_of(|b| {
            let mut h = header(tar::EntryType::GNULongName, 1 << 20);
            h.as_gnu_mut().ok_or("not a GNU header")?.name[..13].copy_from_slice(b"././@LongLink");
            h.set_cksum();
            b.append(&h, &vec![b'a'; 1 << 20][..])?;
            Ok(())
        })?;
        let err = members(&bytes).expect_err("refused");
        assert!(
            matches!(&err, Refusal::Stream(r) if r.contains("long name of 1048576")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn folders_and_symlinks_carry_no_data() -> Result<(), Box<dyn std::error::Error>> {
        for kind in [tar::EntryType::Directory, tar::EntryType::Symlink] {
            let bytes = tar_of(|b| {
                let mut h = header(kind, 4096);
                h.set_path("x")?;
                if kind == tar::EntryType::Symlink {
                    h.set_link_name("y")?;
                }
                h.set_cksum();
                b.append(&h, &[0u8; 4096][..])?;
                Ok(())
            })?;
            let err = members(&bytes).expect_err("refused");
            assert!(
                matches!(&err, Refusal::Entry { reason, .. } if reason.contains("4096 bytes of data")),
                "{err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn pax_headers_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let bytes = tar_of(|b| {
            let record = b"18 path=elsewhere\n";
            let mut h = header(tar::EntryType::XHeader, record.len() as u64);
            h.set_path("pax")?;
            h.set_cksum();
            b.append(&h, &record[..])?;
            let mut h = header(tar::EntryType::Regular, 0);
            b.append_data(&mut h, "x", io::empty())?;
            Ok(())
        })?;
        let err = members(&bytes).expect_err("refused");
        assert!(
            matches!(&err, Refusal::Entry { reason, .. } if reason.contains("PAX")),
            "{err:?}"
        );
        Ok(())
    }
}
