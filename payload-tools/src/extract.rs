//! Extraction of a payload, shared by the stub's cold start, `unpack` and
//! `verify` (which reads everything and writes nothing), and the updater's
//! check of a build while it is still downloading ([`check_arriving`]:
//! reads wait for bytes not yet written).
//!
//! 1. Runs of frames (a frame and those that continue its last entry, a
//!    split file: [`crate::metadata::Metadata::frame_runs`]) are
//!    independent, so worker threads take them in turn, each reading its
//!    run as one tar stream (`RunReader`), frame after frame, by
//!    positioned reads, CRC-ing each frame's compressed bytes on the way (no
//!    second pass over the file). Decompression of each frame stops at its
//!    declared length ([`crate::members::Bounded`]).
//! 2. Each entry is checked before anything is written, the same way in
//!    both sinks: the member on its own ([`crate::members`]: paths stay
//!    inside, only files, directories and symlinks, bounded names), then
//!    against every other entry of every frame ([`crate::namespace`]: no
//!    duplicate, nothing below a symlink, no path both a file and a folder),
//!    and against the declared entry count and unpacked size. Files are
//!    created exclusively without following links; set-id bits never exist.
//! 3. The per-frame CRCs are combined in order and compared with the
//!    trailer, and the metadata's entry must be a regular executable file
//!    of the tree ([`Error::Entry`]).
//!    Hard links are checked against the whole tree, in payload order
//!    ([`Namespace::check_hard_link`]).
//! 4. Each file gets its mode (execute bits, read-only) and its time from
//!    the metadata's table ([`crate::filetimes`]) through the handle that
//!    wrote it; the table must list exactly the files of each frame.
//! 5. Hard links are created after every file, symlinks last, so nothing
//!    is ever written through a link that the payload itself planted.
//!
//! So [`Sink::Discard`] (`verify`, the updater's check) refuses exactly what
//! [`Sink::Disk`] would; only the disk's own failures differ.
//!
//! The caller owns `dest` (a fresh private directory) and renames it into
//! place only when this returns `Ok`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::filetimes::{FileTimes, system_time};
use crate::members::{Bounded, Member, MemberKind, Members, Refusal};
use crate::metadata::{Frame, REQUIRES_HARD_LINKS};
use crate::namespace::{Conflict, Namespace, Node, Position};
use crate::packed::PackedFile;
use crate::rangeio::{Arrival, RangeReader};

type FrameDecoder<'a> = zstd::stream::read::Decoder<'static, BufReader<RangeReader<'a>>>;
use crate::sys;

/// Largest zstd window accepted (2^24 = 16 MiB). `pack` levels up to 19
/// stay below it; it bounds the memory one decoding thread can be made to use.
pub const MAX_WINDOW_LOG: u32 = 24;

/// Most decoding threads used, whatever the core count: each holds a window.
pub const MAX_THREADS: usize = 4;

/// Where extracted entries go.
#[derive(Debug, Clone, Copy)]
pub enum Sink<'a> {
    /// Into this existing, empty, private directory.
    Disk(&'a Path),
    /// Nowhere: decode and check everything, write nothing (`verify`).
    Discard,
}

/// What an extraction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractReport {
    pub frames: usize,
    pub entries: u64,
    pub bytes: u64,
    pub threads: usize,
}

/// Extracts (or, with [`Sink::Discard`], checks) the whole payload.
pub fn extract(packed: &PackedFile, sink: Sink<'_>, threads: usize) -> Result<ExtractReport> {
    run(packed, sink, threads, None)
}

/// Like [`extract`] with [`Sink::Discard`], while `packed` is still being
/// downloaded: frames are checked as their bytes arrive, so the check ends
/// soon after the download does.
pub fn check_arriving(
    packed: &PackedFile,
    threads: usize,
    arrival: &dyn Arrival,
) -> Result<ExtractReport> {
    run(packed, Sink::Discard, threads, Some(arrival))
}

fn run(
    packed: &PackedFile,
    sink: Sink<'_>,
    threads: usize,
    arrival: Option<&dyn Arrival>,
) -> Result<ExtractReport> {
    let frames = &packed.metadata.frames;
    let mut offsets = Vec::with_capacity(frames.len());
    let mut at = packed.trailer.payload_offset;
    for f in frames {
        offsets.push(at);
        at += f.compressed_len;
    }
    let runs = packed.metadata.frame_runs();
    let threads = threads.clamp(1, MAX_THREADS).min(runs.len());
    let times = match &packed.metadata.file_times {
        Some(text) => Some(
            FileTimes::decode(text, frames.len(), packed.metadata.entry_count).map_err(
                |reason| Error::Metadata {
                    path: packed.path.clone(),
                    reason,
                },
            )?,
        ),
        None => None,
    };
    let job = Job {
        packed,
        sink,
        arrival,
        offsets,
        runs,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        bytes: AtomicU64::new(0),
        entries: AtomicU64::new(0),
        crcs: Mutex::new(vec![None; frames.len()]),
        namespace: Mutex::new(Namespace::default()),
        links: Mutex::new(Vec::new()),
        hard_links: Mutex::new(frames.iter().map(|_| Vec::new()).collect()),
        hard_links_allowed: packed
            .metadata
            .requires
            .iter()
            .any(|r| r == REQUIRES_HARD_LINKS),
        times,
        first_error: Mutex::new(None),
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| job.work());
        }
        job.work();
    });
    if let Some(err) = lock(&job.first_error).take() {
        return Err(err);
    }

    let mut crc = crc32fast::Hasher::new();
    for part in lock(&job.crcs).iter() {
        match part {
            Some(h) => crc.combine(h),
            None => return Err(job.payload_error("a frame was not decoded".into())),
        }
    }
    let actual = crc.finalize();
    if actual != packed.trailer.payload_crc32 {
        return Err(Error::Checksum {
            path: packed.path.clone(),
            part: "payload",
            expected: packed.trailer.payload_crc32,
            actual,
        });
    }
    // Each frame's list is in the frame's order: payload order, unsorted.
    let hard_links: Vec<_> = std::mem::take(&mut *lock(&job.hard_links))
        .into_iter()
        .flatten()
        .collect();
    {
        let mut namespace = lock(&job.namespace);
        for (at, member, target) in &hard_links {
            namespace
                .check_hard_link(target, *at)
                .map_err(|problem| Error::UnsafeEntry {
                    path: packed.path.clone(),
                    entry: member.clone(),
                    reason: format!("{problem} ('{target}')"),
                })?;
        }
    }
    let entry = &packed.metadata.entry;
    lock(&job.namespace)
        .check_entry(entry)
        .map_err(|problem| Error::Entry {
            path: packed.path.clone(),
            entry: entry.clone(),
            problem,
        })?;

    let mut links = std::mem::take(&mut *lock(&job.links));
    links.sort();
    create_hard_links(&job, &hard_links)?;
    create_links(&job, &links)?;
    Ok(ExtractReport {
        frames: frames.len(),
        entries: job.entries.load(Ordering::Relaxed),
        bytes: job.bytes.load(Ordering::Relaxed),
        threads,
    })
}

/// Locks a mutex, recovering the data if a worker panicked while holding it
/// (the panic itself is reported by the thread scope).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Job<'a> {
    packed: &'a PackedFile,
    sink: Sink<'a>,
    arrival: Option<&'a dyn Arrival>,
    offsets: Vec<u64>,
    /// Frames decoded as one tar stream each, taken in turn by the workers.
    runs: Vec<Range<usize>>,
    next: AtomicUsize,
    failed: AtomicBool,
    bytes: AtomicU64,
    entries: AtomicU64,
    crcs: Mutex<Vec<Option<crc32fast::Hasher>>>,
    /// Every path of the tree, from every frame: the rules between entries.
    namespace: Mutex<Namespace>,
    links: Mutex<Vec<(String, String)>>,
    /// Per frame, where each hard link is, its path and its target's.
    hard_links: Mutex<Vec<Vec<(Position, String, String)>>>,
    /// Whether the metadata names [`REQUIRES_HARD_LINKS`].
    hard_links_allowed: bool,
    times: Option<FileTimes>,
    first_error: Mutex<Option<Error>>,
}

impl Job<'_> {
    fn work(&self) {
        let mut buf = vec![0u8; 256 * 1024];
        let mut made_dirs = HashSet::new();
        while !self.failed.load(Ordering::Relaxed) {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(run) = self.runs.get(index) else {
                return;
            };
            match self.run_of_frames(run.clone(), &mut buf, &mut made_dirs) {
                Ok(crcs) => {
                    let mut all = lock(&self.crcs);
                    for (slot, crc) in all[run.clone()].iter_mut().zip(crcs) {
                        *slot = Some(crc);
                    }
                }
                Err(err) => {
                    self.failed.store(true, Ordering::Relaxed);
                    lock(&self.first_error).get_or_insert(err);
                    return;
                }
            }
        }
    }

    /// Decodes the frames of `run` as one tar stream and returns the CRC of
    /// each frame's compressed bytes.
    fn run_of_frames(
        &self,
        run: Range<usize>,
        buf: &mut [u8],
        made_dirs: &mut HashSet<PathBuf>,
    ) -> Result<Vec<crc32fast::Hasher>> {
        let label = if run.len() == 1 {
            format!("frame {}", run.start)
        } else {
            format!("frames {} to {}", run.start, run.end - 1)
        };
        let bad_run = |what: String| self.payload_error(format!("{label}: {what}"));
        let mut stream = RunReader {
            job: self,
            next: run.clone(),
            current: None,
            crcs: Vec::with_capacity(run.len()),
        };
        {
            let mut archive = tar::Archive::new(&mut stream);
            let mut members = Members::new(&mut archive).map_err(|r| self.refused(&label, r))?;
            let mut place = Place {
                frames: run.clone(),
                entries: 0,
                files: 0,
            };
            while let Some((member, mut data)) =
                members.next().map_err(|r| self.refused(&label, r))?
            {
                if self.failed.load(Ordering::Relaxed) {
                    return Err(bad_run("stopped".into()));
                }
                self.entry(member, &mut data, &mut place, buf, made_dirs)
                    .map_err(|e| match e {
                        Error::Io { .. } | Error::UnsafeEntry { .. } | Error::Payload { .. } => e,
                        other => bad_run(other.to_string()),
                    })?;
                place.entries += 1;
            }
            if let Some(times) = &self.times
                && times.of_frames(run.clone()).len() != place.files
            {
                return Err(bad_run(format!(
                    "it holds {} files, the metadata's file_times {}",
                    place.files,
                    times.of_frames(run.clone()).len()
                )));
            }
        }
        // The end-of-archive blocks of the last frame still count towards
        // the frame's length; nothing else may follow them.
        stream.finish().map_err(bad_run)?;
        Ok(stream.crcs)
    }

    fn entry(
        &self,
        member: Member,
        data: &mut impl Read,
        place: &mut Place,
        buf: &mut [u8],
        made_dirs: &mut HashSet<PathBuf>,
    ) -> Result<()> {
        let Member { path: member, kind } = member;
        let unsafe_entry = |reason: &str| Error::UnsafeEntry {
            path: self.packed.path.clone(),
            entry: member.clone(),
            reason: reason.to_owned(),
        };
        let declared = self.packed.metadata.entry_count;
        if self.entries.fetch_add(1, Ordering::Relaxed) >= declared {
            return Err(self.payload_error(format!(
                "it holds more than the {declared} entries its metadata declares"
            )));
        }
        // Both are bounded: frames by MAX_FRAMES, entries by the count
        // checked above.
        let at = Position {
            frame: place.frames.start as u32,
            index: place.entries as u32,
        };
        let node = match &kind {
            MemberKind::File { executable, .. } => Node::File {
                executable: *executable,
                at,
                links: 0,
            },
            MemberKind::Dir => Node::Dir,
            MemberKind::Symlink { target } => Node::Symlink(target.as_str().into()),
            MemberKind::HardLink { .. } if !self.hard_links_allowed => {
                return Err(unsafe_entry(&format!(
                    "hard links are not allowed without '{REQUIRES_HARD_LINKS}' in the metadata's requires"
                )));
            }
            MemberKind::HardLink { target } => Node::HardLink(target.as_str().into()),
        };
        lock(&self.namespace)
            .add(&member, node)
            .map_err(|conflict| match conflict {
                Conflict::TooLarge => self.payload_error(conflict.to_string()),
                other => unsafe_entry(&other.to_string()),
            })?;
        match kind {
            MemberKind::File {
                size,
                executable,
                read_only,
            } => {
                let time = match &self.times {
                    Some(times) => match times.of_frames(place.frames.clone()).get(place.files) {
                        Some(&time) => Some(time),
                        None => {
                            return Err(self.payload_error(format!(
                                "frame {}: it holds more files than the metadata's file_times",
                                place.frames.start
                            )));
                        }
                    },
                    None => None,
                };
                place.files += 1;
                let total = self
                    .bytes
                    .fetch_add(size, Ordering::Relaxed)
                    .saturating_add(size);
                if total > self.packed.metadata.unpacked_size {
                    return Err(self.payload_error(format!(
                        "it unpacks to more than the {} bytes its metadata declares",
                        self.packed.metadata.unpacked_size
                    )));
                }
                let Sink::Disk(root) = self.sink else {
                    return copy_entry_data(data, &mut io::sink(), buf).map_err(|e| match e {
                        CopyError::Read(e) | CopyError::Write(e) => {
                            self.payload_error(format!("'{member}': {e}"))
                        }
                    });
                };
                let target = root.join(&member);
                self.make_parent(&target, made_dirs)?;
                let mut file =
                    sys::create_new_file(&target, executable, read_only).map_err(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            unsafe_entry("it appears twice")
                        } else {
                            Error::io("cannot create", &target)(e)
                        }
                    })?;
                copy_entry_data(data, &mut file, buf).map_err(|e| match e {
                    // Reading fails when the payload is bad (zstd's own
                    // checksum, a cut-short frame): that is the file's fault.
                    CopyError::Read(e) => self.payload_error(format!("'{member}': {e}")),
                    CopyError::Write(e) => Error::io("cannot write", &target)(e),
                })?;
                // Last, so that no write comes after it.
                if let Some(time) = time {
                    file.set_modified(system_time(time))
                        .map_err(Error::io("cannot set the time of", &target))?;
                }
                if read_only {
                    sys::set_read_only(&file)
                        .map_err(Error::io("cannot make read-only", &target))?;
                }
                // Through the writer's own handle, before it is closed (the
                // durability of the build before its rename: sys docs).
                sys::flush_written(&file).map_err(Error::io("cannot flush", &target))
            }
            MemberKind::Dir => {
                if let Sink::Disk(root) = self.sink {
                    let target = root.join(&member);
                    if made_dirs.insert(target.clone()) {
                        fs::create_dir_all(&target).map_err(Error::io("cannot create", &target))?;
                    }
                }
                Ok(())
            }
            MemberKind::Symlink { target } => {
                lock(&self.links).push((member, target));
                Ok(())
            }
            MemberKind::HardLink { target } => {
                if let Some(frame) = lock(&self.hard_links).get_mut(place.frames.start) {
                    frame.push((at, member, target));
                }
                Ok(())
            }
        }
    }

    fn make_parent(&self, target: &Path, made_dirs: &mut HashSet<PathBuf>) -> Result<()> {
        if let Some(parent) = target.parent()
            && !made_dirs.contains(parent)
        {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            made_dirs.insert(parent.to_owned());
        }
        Ok(())
    }

    fn payload_error(&self, reason: String) -> Error {
        Error::Payload {
            path: self.packed.path.clone(),
            reason,
        }
    }

    fn refused(&self, label: &str, refusal: Refusal) -> Error {
        match refusal {
            Refusal::Entry { entry, reason } => Error::UnsafeEntry {
                path: self.packed.path.clone(),
                entry,
                reason,
            },
            Refusal::Stream(reason) => self.payload_error(format!("{label}: {reason}")),
        }
    }
}

/// Where the worker is in its frame.
struct Place {
    /// The frames decoded as one tar stream.
    frames: Range<usize>,
    /// Entries of the run read so far.
    entries: usize,
    /// Regular files among them.
    files: usize,
}

/// Creates the hard links, checked (each names an earlier regular file of
/// the tree, and no symlink exists yet). A file system without hard links
/// (FAT, some network shares) fails the unpack with the reason: a cache
/// lives in the user's profile, where they exist, and a copy would cost
/// every stub its code for that rare case.
fn create_hard_links(job: &Job<'_>, links: &[(Position, String, String)]) -> Result<()> {
    let Sink::Disk(root) = job.sink else {
        return Ok(());
    };
    for (_, member, target) in links {
        let path = root.join(member);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        fs::hard_link(root.join(target), &path)
            .map_err(Error::io("cannot create hard link", &path))?;
    }
    Ok(())
}

/// The tar stream of a run of frames: the frames decoded one after the
/// other, each within its own bounds (its compressed bytes, its declared
/// `tar_len`, the zstd window), so a file split across frames reads as
/// one entry.
struct RunReader<'j, 'a> {
    job: &'j Job<'a>,
    /// The frames not opened yet.
    next: Range<usize>,
    current: Option<(usize, Bounded<FrameDecoder<'a>>)>,
    /// Of the frames finished so far.
    crcs: Vec<crc32fast::Hasher>,
}

impl<'a> RunReader<'_, 'a> {
    fn open(&self, index: usize) -> io::Result<Bounded<FrameDecoder<'a>>> {
        let packed = self.job.packed;
        let frame: Frame = packed.metadata.frames[index];
        let (file, start, len) = (&packed.file, self.job.offsets[index], frame.compressed_len);
        let range = match self.job.arrival {
            Some(arrival) => RangeReader::following(file, start, len, arrival),
            None => RangeReader::new(file, start, len),
        };
        let bad = |e: io::Error| frame_error(index, e.to_string());
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(128 * 1024, range))
                .map_err(bad)?
                .single_frame();
        decoder.window_log_max(MAX_WINDOW_LOG).map_err(bad)?;
        Ok(Bounded::new(decoder, frame.tar_len))
    }

    /// Checks that the frame decoded to exactly its declared length from
    /// exactly its compressed bytes, and keeps its CRC.
    fn close(&mut self, index: usize, mut frame: Bounded<FrameDecoder<'a>>) -> io::Result<()> {
        frame.finish().map_err(|e| frame_error(index, e))?;
        let buffered = frame.into_inner().finish();
        let left = buffered.buffer().len() as u64 + buffered.get_ref().remaining();
        if left != 0 {
            return Err(frame_error(
                index,
                format!("{left} compressed bytes left over after the frame"),
            ));
        }
        self.crcs.push(buffered.get_ref().crc());
        Ok(())
    }

    /// Reads what follows the end of the tar stream: zero bytes up to the
    /// end of the run, and then nothing.
    fn finish(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 8192];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
                Ok(_) => return Err("it holds data after the end of its tar stream".into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Read for RunReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (index, frame) = match &mut self.current {
                Some(current) => current,
                None => {
                    let Some(index) = self.next.next() else {
                        return Ok(0);
                    };
                    let frame = self.open(index)?;
                    self.current.insert((index, frame))
                }
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let index = *index;
            if let Some((_, frame)) = self.current.take() {
                self.close(index, frame)?;
            }
        }
    }
}

fn frame_error(index: usize, what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("frame {index}: {what}"))
}

fn create_links(job: &Job<'_>, links: &[(String, String)]) -> Result<()> {
    let Sink::Disk(root) = job.sink else {
        return Ok(());
    };
    // The namespace refused every entry below a symlink and every link at a
    // path already taken, so each link lands in a real folder, on a free name.
    for (member, target) in links {
        let unsafe_entry = |reason: &str| Error::UnsafeEntry {
            path: job.packed.path.clone(),
            entry: member.clone(),
            reason: reason.to_owned(),
        };
        let path = root.join(member);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        sys::symlink(target, &path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                // Entries below the link were unpacked as a real folder.
                unsafe_entry("another entry also uses this symlink's path")
            } else {
                Error::io("cannot create symlink", &path)(e)
            }
        })?;
    }
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry_data<R: Read, W: Write>(
    from: &mut R,
    to: &mut W,
    buf: &mut [u8],
) -> Result<(), CopyError> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}
