//! `pack`: turns an app (a directory or one file) and a stub into one
//! packed executable.
//!
//! 1. Scan the input and check everything (names, entry, links) first.
//! 2. Set the subsystem of a Windows stub's copy to the entry's (console
//!    or GUI: [`WindowsSubsystem`]).
//! 3. Write the stub, then the payload as framed zstd of a deterministic
//!    tar stream (every mtime 0: the real times go in the metadata's
//!    `file_times`, so that a frame changes only with its files' bytes,
//!    modes and names), then the metadata and the trailer, into a
//!    temporary sibling of the output.
//! 4. It has the stub's permissions plus exec bits from its creation;
//!    sync, rename into place.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::dictionary;
use crate::digest::PartHash;
use crate::error::{Error, Result};
use crate::extract;
use crate::filetimes::TimesBuilder;
use crate::frames::{FramePolicy, FrameWriter};
use crate::metadata::{
    Argv0, FormatVersion, Metadata, REQUIRES_HARD_LINKS, REQUIRES_SIGNED_UPDATES,
    REQUIRES_SPLIT_FILES, REQUIRES_ZSTD_DICTIONARY, UpdateSettings, check_entry_path,
    check_safe_name,
};
use crate::packed::PackedFile;
use crate::pe;
use crate::persist::{TempSibling, parent_dir};
use crate::sys;
use crate::trailer::{MAX_METADATA_LEN, Trailer};
use crate::tree::{EntryKind, InputTree};

/// The default zstd level: a good ratio at a pack speed fit for every build.
pub const DEFAULT_LEVEL: i32 = 9;

/// Everything `pack` needs to know.
#[derive(Debug, Clone)]
pub struct PackOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The stub's file; with `stub_bytes`, only the name errors give it.
    pub stub: PathBuf,
    /// The stub itself, when it comes from no file: one embedded in the
    /// `payload-tools` command. The packed file is then mode 0755.
    pub stub_bytes: Option<Vec<u8>>,
    /// Entry path inside a directory input; `None` picks the file named
    /// like the app at the top of the tree.
    pub entry: Option<String>,
    pub name: String,
    pub version: String,
    /// What the app will see as `argv[0]`.
    pub argv0: Argv0,
    pub level: i32,
    /// zstd worker threads (0: one per core).
    pub threads: u32,
    pub update: Option<UpdateSettings>,
    /// Whether a Windows stub starts with a console window.
    pub windows_subsystem: WindowsSubsystem,
    /// Whether and how the frames share a zstd dictionary.
    pub dictionary: DictionaryOptions,
}

/// `--no-dictionary` and `--previous`: whether the frames share a zstd
/// dictionary trained from the app (when it pays: `crate::dictionary`),
/// and the previous build, whose dictionary is kept while it still
/// compresses well, so that unchanged files keep identical frames.
#[derive(Debug, Clone)]
pub struct DictionaryOptions {
    pub enabled: bool,
    pub previous: Option<PathBuf>,
}

impl Default for DictionaryOptions {
    fn default() -> Self {
        DictionaryOptions {
            enabled: true,
            previous: None,
        }
    }
}

/// The dictionary a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryUse {
    pub len: usize,
    /// Whether it is the `--previous` build's.
    pub kept_previous: bool,
}

/// `--windows-subsystem`: whether the packed file, with a Windows stub, is
/// a console program (Windows opens a console window for it when it is
/// not started from one) or a GUI program (no window of its own, no
/// console). Only the packed file's copy of the stub changes, never the
/// stub file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WindowsSubsystem {
    /// The entry's own: GUI if the entry is a Windows GUI program, else
    /// console. Nothing at all with a stub that is not a Windows program.
    #[default]
    Auto,
    Console,
    Gui,
}

/// What `pack` wrote.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub metadata: Metadata,
    pub trailer: Trailer,
    /// Length of the whole packed file.
    pub file_len: u64,
    /// CRC-32 of the whole packed file (what `update.toml` announces).
    pub file_crc32: u32,
    /// The files' times did not fit in the metadata's size limit and were
    /// left out: the app's files unpack with the time of the unpacking.
    pub file_times_left_out: bool,
    /// `None`: no dictionary (disabled, or it would not pay).
    pub dictionary: Option<DictionaryUse>,
}

/// Progress of a pack, for a progress bar.
pub trait Progress {
    fn start(&mut self, total_bytes: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// Packs `opts.input` into `opts.output`.
pub fn pack(opts: &PackOptions, progress: &mut dyn Progress) -> Result<PackReport> {
    check_safe_name("name", &opts.name)?;
    check_safe_name("version", &opts.version)?;
    refuse_output_inside_input(opts)?;
    refuse_output_over_an_input(opts)?;
    let tree = InputTree::scan(&opts.input)?;
    let entry = choose_entry(opts, &tree)?;

    let (mut stub_bytes, stub_mode) = match &opts.stub_bytes {
        Some(bytes) => (bytes.clone(), 0o755),
        None => read_stub(&opts.stub)?,
    };

    set_stub_subsystem(opts, &tree, &entry, &mut stub_bytes)?;
    let dictionary = choose_dictionary(opts, &tree)?;

    // The output's final mode is known before it exists: it has that mode
    // from its creation on.
    let mode = stub_mode | 0o111;
    let mut tmp = TempSibling::create(&opts.output, mode)?;
    let tmp_path = tmp.path().to_owned();
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp.file()));
    out.write_all(&stub_bytes)
        .map_err(Error::io("cannot write", &tmp_path))?;
    let payload_offset = stub_bytes.len() as u64;

    progress.start(tree.total_size);
    let (framed, times) = write_payload(
        &tree,
        &entry,
        &mut out,
        opts,
        dictionary.as_ref().map(|c| &c.dictionary[..]),
        progress,
    )?;
    progress.finish();

    let mut requires = Vec::new();
    if opts
        .update
        .as_ref()
        .is_some_and(|u| !u.public_keys.is_empty())
    {
        requires.push(REQUIRES_SIGNED_UPDATES.to_owned());
    }
    // Only a build that really split a file needs a reader that knows how.
    if !framed.continued.is_empty() {
        requires.push(REQUIRES_SPLIT_FILES.to_owned());
    }
    // Only builds that have hard links name them: the others stay
    // readable by every older stub.
    if tree
        .entries
        .iter()
        .any(|e| matches!(e.kind, EntryKind::HardLink { .. }))
    {
        requires.push(REQUIRES_HARD_LINKS.to_owned());
    }
    if dictionary.is_some() {
        requires.push(REQUIRES_ZSTD_DICTIONARY.to_owned());
    }
    let file_times = times.encode(framed.frames.len());
    let mut metadata = Metadata {
        format_version: FormatVersion::V1,
        requires,
        name: opts.name.clone(),
        version: opts.version.clone(),
        entry,
        argv0: opts.argv0,
        unpacked_size: tree.total_size,
        entry_count: tree.entries.len() as u64,
        frames: framed.frames,
        stub_hash: Some(PartHash::of(&stub_bytes)),
        frame_hashes: framed.frame_hashes,
        continued_frames: framed.continued,
        file_times: Some(file_times),
        self_test: crate::stub::self_test_version_in_bytes(&stub_bytes),
        update: opts.update.clone(),
    };
    let mut metadata_text = metadata.to_toml();
    // Only an app of tens of thousands of files with scattered times
    // needs this much: better its times lost than no build at all.
    let file_times_left_out = metadata_text.len() as u64 > MAX_METADATA_LEN;
    if file_times_left_out {
        metadata.file_times = None;
        metadata_text = metadata.to_toml();
    }
    check_readable(&metadata_text, opts)?;
    let trailer = Trailer {
        payload_offset,
        payload_len: framed.compressed_len,
        metadata_offset: payload_offset + framed.compressed_len,
        metadata_len: metadata_text.len() as u64,
        payload_crc32: framed.crc32,
        metadata_crc32: crc32fast::hash(metadata_text.as_bytes()),
    };
    out.write_all(metadata_text.as_bytes())
        .map_err(Error::io("cannot write", &tmp_path))?;
    out.write_all(&trailer.to_bytes())
        .map_err(Error::io("cannot write", &tmp_path))?;
    out.flush().map_err(Error::io("cannot write", &tmp_path))?;
    let file_len = out.len;
    let file_crc32 = out.crc.clone().finalize();
    drop(out);
    debug_assert_eq!(file_len, trailer.file_len());

    tmp.persist(&opts.output)?;
    Ok(PackReport {
        metadata,
        trailer,
        file_len,
        file_crc32,
        file_times_left_out,
        dictionary: dictionary.map(|c| DictionaryUse {
            len: c.dictionary.len(),
            kept_previous: c.kept_previous,
        }),
    })
}

/// The dictionary this build's frames share, if any: trained from samples
/// of the app's files, or the previous build's (`crate::dictionary::choose`).
fn choose_dictionary(opts: &PackOptions, tree: &InputTree) -> Result<Option<dictionary::Choice>> {
    if !opts.dictionary.enabled {
        return Ok(None);
    }
    let previous = match &opts.dictionary.previous {
        None => None,
        Some(path) => match PackedFile::open(path)? {
            Some(packed) => extract::dictionary(&packed)?,
            None => {
                return Err(Error::Input {
                    path: path.clone(),
                    reason: "the previous build carries no payload: pass the packed file the last release published".into(),
                });
            }
        },
    };
    let files: Vec<(&Path, u64)> = tree
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { size, .. } => Some((e.source.as_path(), size)),
            _ => None,
        })
        .collect();
    let sizes: Vec<u64> = files.iter().map(|&(_, size)| size).collect();
    let mut samples = dictionary::Samples::default();
    for (index, len) in dictionary::sample_plan(&sizes) {
        let path = files[index].0;
        let file = File::open(path).map_err(Error::io("cannot read", path))?;
        let before = samples.data.len();
        file.take(len)
            .read_to_end(&mut samples.data)
            .map_err(Error::io("cannot read", path))?;
        samples.sizes.push(samples.data.len() - before);
    }
    let policy = FramePolicy::for_size(tree.total_size);
    let payload = dictionary::Payload {
        level: opts.level,
        frame_len: policy.typical_group_len(),
        // The files grouped into frames of small entries, like the samples
        // (the starts of files): the chunks of a split file are not
        // counted, so the saving is not overstated.
        tar_len: sizes
            .iter()
            .filter(|&&size| !policy.splits(size))
            .map(|size| size + 512)
            .sum(),
    };
    dictionary::choose(previous, &samples, payload)
        .map_err(Error::io("cannot compare dictionaries for", &opts.input))
}

/// `pack` never writes a file that readers refuse: its metadata must parse
/// within the readers' bounds (size, frame count, entry count).
fn check_readable(metadata_text: &str, opts: &PackOptions) -> Result<()> {
    let too_big = |reason: String| Error::Input {
        path: opts.input.clone(),
        reason,
    };
    if metadata_text.len() as u64 > MAX_METADATA_LEN {
        return Err(too_big(format!(
            "its metadata would take {} bytes, more than the {MAX_METADATA_LEN} a packed file may have",
            metadata_text.len()
        )));
    }
    match Metadata::parse(metadata_text, &opts.output) {
        Ok(_) => Ok(()),
        Err(Error::Metadata { reason, .. }) => Err(too_big(reason)),
        Err(other) => Err(other),
    }
}

fn refuse_output_inside_input(opts: &PackOptions) -> Result<()> {
    let (Ok(input), Ok(out_dir)) = (
        opts.input.canonicalize(),
        parent_dir(&opts.output).canonicalize(),
    ) else {
        // A missing input is reported by the scan, a missing output folder by
        // the write, each with its own message.
        return Ok(());
    };
    if input.is_dir() && out_dir.starts_with(&input) {
        return Err(Error::Input {
            path: opts.output.clone(),
            reason: "the output would be inside the input folder; write it elsewhere".into(),
        });
    }
    Ok(())
}

/// The bare stub in the file at `path`, and its mode.
fn read_stub(path: &Path) -> Result<(Vec<u8>, u32)> {
    if PackedFile::open(path)?.is_some() {
        return Err(Error::Input {
            path: path.to_owned(),
            reason:
                "this stub already carries a payload; pass the bare 'bootstrap' binary with --stub"
                    .into(),
        });
    }
    let bytes = std::fs::read(path).map_err(Error::io("cannot read stub", path))?;
    let meta = std::fs::metadata(path).map_err(Error::io("cannot read stub", path))?;
    Ok((bytes, sys::mode_of(&meta)))
}

/// The output replaces the file at its name: never the program being
/// packed, nor the stub.
fn refuse_output_over_an_input(opts: &PackOptions) -> Result<()> {
    let Ok(output) = opts.output.canonicalize() else {
        return Ok(()); // nothing there yet
    };
    for (input, what) in [(&opts.input, "the input program"), (&opts.stub, "the stub")] {
        if input.canonicalize().is_ok_and(|i| i == output) {
            return Err(Error::Input {
                path: opts.output.clone(),
                reason: format!(
                    "the output is {what} itself, which packing would replace; write it elsewhere"
                ),
            });
        }
    }
    Ok(())
}

fn choose_entry(opts: &PackOptions, tree: &InputTree) -> Result<String> {
    // `bin\run.cmd` is how a Windows user writes the path, on any system
    // that packs it: `\` is a separator here, never part of a name (the
    // format's entry uses `/` only, and readers refuse `\`).
    let given = opts.entry.as_deref().map(|e| e.replace('\\', "/"));
    if let Some(single) = &tree.single_file {
        return match &given {
            Some(e) if e != single => Err(Error::InvalidValue {
                what: "entry",
                value: e.clone(),
                reason: "the input is a single file, which is the entry itself; leave --entry out",
            }),
            _ => Ok(single.clone()),
        };
    }
    let entry = match &given {
        Some(e) => e.trim_start_matches("./").to_owned(),
        None if tree.find(&opts.name).is_some() => opts.name.clone(),
        None => {
            return Err(Error::Input {
                path: opts.input.clone(),
                reason: format!(
                    "no file named '{}' at its top; pass --entry with the path of the program to run",
                    opts.name
                ),
            });
        }
    };
    check_entry_path(&entry)?;
    let resolved = opts.input.join(&entry);
    match tree.find(&entry).map(|e| &e.kind) {
        // Another name of a file: pack makes the file executable.
        Some(EntryKind::File { .. } | EntryKind::HardLink { .. }) => Ok(entry),
        // A link's target keeps its own mode (only the entry itself is
        // made executable), and readers refuse an entry that is not.
        Some(EntryKind::Symlink { .. }) if resolved.is_file() => {
            match std::fs::metadata(&resolved) {
                Ok(meta) if sys::is_executable(&meta) => Ok(entry),
                _ => Err(Error::Input {
                    path: resolved,
                    reason: "the entry links to a file without execute permission".into(),
                }),
            }
        }
        Some(_) => Err(Error::Input {
            path: resolved,
            reason: "the entry must be a file (or a link to one inside the app)".into(),
        }),
        None => Err(Error::Input {
            path: resolved,
            reason: "the entry does not exist in the input".into(),
        }),
    }
}

/// Gives the stub's copy in `stub` the subsystem `opts` asks for (see
/// [`WindowsSubsystem`]).
fn set_stub_subsystem(
    opts: &PackOptions,
    tree: &InputTree,
    entry: &str,
    stub: &mut [u8],
) -> Result<()> {
    // `Input`, not an error variant of its own: the stub links this
    // crate's error type, and every variant costs its bytes.
    let stub_err = |e: pe::PeError| Error::Input {
        path: opts.stub.clone(),
        reason: format!("the stub starts like a Windows program, but {e}"),
    };
    let windows_stub = pe::read_subsystem(stub).map_err(stub_err)?.is_some();
    let wanted = match opts.windows_subsystem {
        WindowsSubsystem::Auto if !windows_stub => return Ok(()),
        WindowsSubsystem::Console | WindowsSubsystem::Gui if !windows_stub => {
            return Err(Error::InvalidValue {
                what: "windows-subsystem",
                value: if opts.windows_subsystem == WindowsSubsystem::Gui {
                    "gui".into()
                } else {
                    "console".into()
                },
                reason: "it applies only to Windows stubs (bootstrap.exe), and this stub is not a Windows program",
            });
        }
        WindowsSubsystem::Auto => match entry_subsystem(tree, entry)? {
            Some(pe::SUBSYSTEM_GUI) => pe::SUBSYSTEM_GUI,
            _ => pe::SUBSYSTEM_CONSOLE,
        },
        WindowsSubsystem::Console => pe::SUBSYSTEM_CONSOLE,
        WindowsSubsystem::Gui => pe::SUBSYSTEM_GUI,
    };
    pe::set_subsystem(stub, wanted).map_err(stub_err)?;
    Ok(())
}

/// The subsystem of the entry if it is a Windows program (`None` for a
/// script, a Linux program...), from its first bytes only.
fn entry_subsystem(tree: &InputTree, entry: &str) -> Result<Option<u16>> {
    let Some(item) = tree.find(entry) else {
        return Ok(None);
    };
    let file = File::open(&item.source).map_err(Error::io("cannot read", &item.source))?;
    let mut head = Vec::with_capacity(pe::MAX_HEADER_LEN);
    file.take(pe::MAX_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(Error::io("cannot read", &item.source))?;
    pe::read_subsystem(&head).map_err(|e| Error::Input {
        path: item.source.clone(),
        reason: format!(
            "the entry starts like a Windows program, but {e}; pass --windows-subsystem console or gui"
        ),
    })
}

/// Writes the framed tar stream of `tree` and returns its frame index and
/// its files' times.
fn write_payload<'o, W: Write>(
    tree: &InputTree,
    entry: &str,
    out: &'o mut W,
    opts: &PackOptions,
    dictionary: Option<&[u8]>,
    progress: &mut dyn Progress,
) -> Result<(crate::frames::FramedPayload<&'o mut W>, TimesBuilder)> {
    let output_err = |e: io::Error| Error::io("cannot write", &opts.output)(e);
    let frames =
        FrameWriter::with_dictionary(out, opts.level, opts.threads, dictionary).map_err(|e| {
            Error::InvalidValue {
                what: "level",
                value: opts.level.to_string(),
                reason: if e.kind() == io::ErrorKind::Other {
                    "zstd refused it; use 1 to 22"
                } else {
                    "zstd could not start"
                },
            }
        })?;
    let policy = FramePolicy::for_size(tree.total_size);
    // The entry runs: if it is another name of a file, that file is made
    // executable.
    let entry_file = match tree.find(entry).map(|e| &e.kind) {
        Some(EntryKind::HardLink { target }) => target.as_str(),
        _ => entry,
    };
    let mut times = TimesBuilder::default();
    let mut builder = tar::Builder::new(frames);
    builder.mode(tar::HeaderMode::Deterministic);
    for item in &tree.entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let size = match item.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        };
        let split = policy.splits(size);
        let len_before = builder.get_mut().frame_len();
        match &item.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{}/", item.member), io::empty())
                    .map_err(output_err)?;
            }
            EntryKind::File {
                size,
                executable,
                read_only,
                mtime,
            } => {
                let file =
                    File::open(&item.source).map_err(Error::io("cannot read", &item.source))?;
                header.set_entry_type(tar::EntryType::Regular);
                let mode = if *read_only { 0o444 } else { 0o644 };
                header.set_mode(if *executable || item.member == entry_file {
                    mode | 0o111
                } else {
                    mode
                });
                header.set_size(*size);
                if split {
                    let header_len = header_len(&header, &item.member).map_err(output_err)?;
                    builder
                        .get_mut()
                        .begin_split_file(policy.chunker(), header_len)
                        .map_err(output_err)?;
                }
                // The frame the header goes to, once any cut before it.
                times.push(builder.get_mut().frame_index(), *mtime);
                let mut reader = ExactReader {
                    inner: file,
                    left: *size,
                    path: &item.source,
                    progress: &mut *progress,
                };
                builder
                    .append_data(&mut header, &item.member, &mut reader)
                    .map_err(|e| classify_append_error(e, &item.source, &opts.output))?;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &item.member, target)
                    .map_err(output_err)?;
            }
            EntryKind::HardLink { target } => {
                // The mode is the file's own; readers ignore this one.
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                header.set_size(0);
                builder
                    .append_link(&mut header, &item.member, target)
                    .map_err(output_err)?;
            }
        }
        let frames = builder.get_mut();
        if split {
            frames.end_split_file().map_err(output_err)?;
        } else if policy.cut_after(
            &item.member,
            frames.frame_len().saturating_sub(len_before),
            frames.frame_len(),
        ) {
            frames.cut().map_err(output_err)?;
        }
    }
    let frames = builder.into_inner().map_err(output_err)?;
    Ok((frames.finish().map_err(output_err)?, times))
}

/// The tar bytes that come before the data of the entry `path` with
/// `header`: its header block, and GNU long-name entries for a long path.
fn header_len(header: &tar::Header, path: &str) -> io::Result<u64> {
    let mut probe = tar::Builder::new(Vec::new());
    let mut empty = header.clone();
    empty.set_size(0);
    probe.append_data(&mut empty, path, io::empty())?;
    Ok(probe.get_ref().len() as u64)
}

/// Reads exactly the size the scan saw: a file that grows or shrinks while
/// it is packed would otherwise corrupt the tar stream.
struct ExactReader<'a> {
    inner: File,
    left: u64,
    path: &'a Path,
    progress: &'a mut dyn Progress,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                ChangedWhilePacking(self.path.to_path_buf()),
            ));
        }
        self.left -= n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[derive(Debug)]
struct ChangedWhilePacking(PathBuf);

impl std::fmt::Display for ChangedWhilePacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' shrank while it was being packed", self.0.display())
    }
}

impl std::error::Error for ChangedWhilePacking {}

fn classify_append_error(e: io::Error, source: &Path, output: &Path) -> Error {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<ChangedWhilePacking>())
    {
        return Error::Input {
            path: source.into(),
            reason: "the file changed while it was being packed; pack again".into(),
        };
    }
    Error::io("cannot write", output)(e)
}

/// Counts and hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    len: u64,
    crc: crc32fast::Hasher,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            len: 0,
            crc: crc32fast::Hasher::new(),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
