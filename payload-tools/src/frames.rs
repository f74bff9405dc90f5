//! The payload's framing: a tar stream cut into independent zstd frames
//! (see `docs/format.md`, "Payload").
//!
//! - [`FrameWriter`] compresses what the tar builder writes, ending a frame
//!   whenever [`FrameWriter::cut`] is called, or, inside a large file, where
//!   the file's content says ([`Chunker`]). It records the frame index and
//!   which frames continue the previous frame's last entry. Frames are built
//!   in memory and compressed on a pool of threads, each frame by one
//!   single-threaded zstd context, several at once, and written in order:
//!   the output does not depend on the number of threads.
//! - [`FramePolicy`] decides where frames end. Cut points follow the
//!   content (entry names and sizes, a large file's bytes), not running
//!   totals alone, so a changed, added, removed or renamed file changes only
//!   the frames around it, and an unchanged stretch of the tree gives
//!   identical compressed frames from build to build.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::digest::{PartHash, PartHasher};
use crate::metadata::Frame;

/// Sizes of the frames of a build, in tar bytes (see [`FramePolicy::for_size`]).
const GROUP_MIN: u64 = 128 * 1024;
/// Beyond its minimum, a group of small entries ends after an entry with a
/// chance of its tar length over this (so a group typically holds about
/// `GROUP_MIN + GROUP_SPREAD` bytes).
const GROUP_SPREAD: u64 = 256 * 1024;
const GROUP_MAX: u64 = 1024 * 1024;
/// A file at least this large is split inside, at content-defined points.
const SPLIT_FILE: u64 = 1024 * 1024;
const CHUNK_MIN: u64 = 256 * 1024;
/// A chunk of a split file ends, beyond its minimum, where the rolling hash
/// of the last 64 bytes matches a mask of log2 of this many bits.
const CHUNK_SPREAD: u64 = 512 * 1024;
const CHUNK_MAX: u64 = 2 * 1024 * 1024;
/// The policy keeps an app's size over the smallest group at most this many
/// frames: even if every frame were that small, their index entries and
/// hashes (about 70 bytes each) would fit in the metadata size limit, and
/// their count below [`crate::metadata::MAX_FRAMES`].
const FRAME_BUDGET: u64 = 3000;

/// The largest [`FramePolicy`] scale: it bounds the memory of frames in
/// flight (a frame is built whole), at the cost of refusing apps of
/// hundreds of GiB, whose index would not fit.
const MAX_SCALE: u64 = 32;

/// Where frames end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePolicy {
    /// Every size above is multiplied by this power of two.
    scale: u64,
}

impl FramePolicy {
    /// The policy for an app of `total_size` bytes of files: the sizes above
    /// for apps up to about 375 MiB, doubled as often as needed beyond, so
    /// that huge apps keep a bounded index (their frames then change size
    /// when the app crosses a power of two).
    pub fn for_size(total_size: u64) -> FramePolicy {
        let mut scale = 1u64;
        while total_size / (scale * GROUP_MIN) > FRAME_BUDGET && scale < MAX_SCALE {
            scale *= 2;
        }
        FramePolicy { scale }
    }

    /// Whether a file of `size` bytes is split inside (with frames of its
    /// own: the current frame ends before it and after it).
    pub fn splits(&self, size: u64) -> bool {
        size >= SPLIT_FILE * self.scale
    }

    /// Whether to end the current frame, now holding `frame_len` tar bytes,
    /// after the entry `path`, which took `entry_len` of them.
    pub fn cut_after(&self, path: &str, entry_len: u64, frame_len: u64) -> bool {
        if frame_len < GROUP_MIN * self.scale {
            return false;
        }
        if frame_len >= GROUP_MAX * self.scale {
            return true;
        }
        // A cut with a chance of entry_len / spread, decided by the path:
        // the same entry decides the same way in every build.
        let draw = u64::from(crc32fast::hash(path.as_bytes()));
        u128::from(draw) * u128::from(GROUP_SPREAD * self.scale) < u128::from(entry_len) << 32
    }

    /// The chunker for one split file.
    pub fn chunker(&self) -> Chunker {
        let bits = (CHUNK_SPREAD * self.scale).ilog2();
        Chunker {
            hash: 0,
            mask: !(u64::MAX >> bits),
            min: CHUNK_MIN * self.scale,
            max: CHUNK_MAX * self.scale,
        }
    }
}

/// Finds content-defined cut points in a large file's bytes, FastCDC-style:
/// a gear hash (each byte shifts the hash left by one and adds a random
/// value for the byte, so the top bits depend on the last 64 bytes) is
/// tested once a chunk holds its minimum; a chunk ends where its top bits
/// are all zero, or at its maximum. A change early in a file moves only
/// the cuts near it: later cuts fall on the same bytes again.
#[derive(Debug, Clone)]
pub struct Chunker {
    hash: u64,
    mask: u64,
    min: u64,
    max: u64,
}

impl Chunker {
    /// Where in `data` to end a chunk that already holds `chunk_len` bytes:
    /// the length of the prefix of `data` that completes it, if any.
    pub fn find_cut(&mut self, chunk_len: u64, data: &[u8]) -> Option<usize> {
        let mut len = chunk_len;
        for (i, &byte) in data.iter().enumerate() {
            self.hash = (self.hash << 1).wrapping_add(GEAR[usize::from(byte)]);
            len += 1;
            if len >= self.max || (len >= self.min && self.hash & self.mask == 0) {
                self.hash = 0;
                return Some(i + 1);
            }
        }
        None
    }
}

/// 256 fixed pseudo-random values (splitmix64 from 0): part of the format's
/// behaviour, since they decide where frames end.
static GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = 0u64;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// Compresses written bytes into a sequence of independent zstd frames.
pub struct FrameWriter<W: Write> {
    sink: Sink<W>,
    /// The tar bytes of the frame being built.
    pending: Vec<u8>,
    pool: Pool,
    frames: Vec<Frame>,
    /// Indexes of the frames that continue the previous frame's last entry.
    continued: Vec<u64>,
    /// While a large file is written: where its content says to cut.
    splitting: Option<Chunker>,
    /// Whether the frame being built continues the previous one.
    continues: bool,
    /// Bytes of the split file's header not written yet.
    header_left: u64,
}

/// Where compressed frames go, in order, whole: the bytes of one frame are
/// written before any byte of the next.
struct Sink<W> {
    out: W,
    crc: crc32fast::Hasher,
    len: u64,
    /// Of the frame being written.
    hasher: PartHasher,
    /// Of each frame written.
    hashes: Vec<PartHash>,
}

impl<W: Write> Sink<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc.update(bytes);
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The frame being written is complete.
    fn end_frame(&mut self) {
        let hash = self.hasher.finish();
        self.hashes.push(hash);
    }
}

impl<W: Write> std::fmt::Debug for FrameWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

/// What [`FrameWriter::finish`] hands back.
#[derive(Debug)]
pub struct FramedPayload<W> {
    pub out: W,
    pub frames: Vec<Frame>,
    /// The hash of each compressed frame, in order.
    pub frame_hashes: Vec<PartHash>,
    /// Indexes of the frames that continue the previous frame's last entry
    /// (a split file), increasing.
    pub continued: Vec<u64>,
    pub compressed_len: u64,
    pub crc32: u32,
}

impl<W: Write> FrameWriter<W> {
    /// Compresses at `level` on `threads` threads (at least one).
    pub fn new(out: W, level: i32, threads: u32) -> io::Result<Self> {
        // Fail here, on the caller's thread, if zstd refuses the level.
        zstd::bulk::Compressor::new(level)?;
        Ok(FrameWriter {
            sink: Sink {
                out,
                crc: crc32fast::Hasher::new(),
                len: 0,
                hasher: PartHasher::default(),
                hashes: Vec::new(),
            },
            pending: Vec::new(),
            pool: Pool::new(level, threads.max(1) as usize),
            frames: Vec::new(),
            continued: Vec::new(),
            splitting: None,
            continues: false,
            header_left: 0,
        })
    }

    /// The index of the frame being written.
    pub fn frame_index(&self) -> usize {
        self.frames.len()
    }

    /// Tar bytes in the frame being written.
    pub fn frame_len(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Ends the current frame; until [`FrameWriter::end_split_file`], the
    /// bytes written (one large file's entry) are cut after its first
    /// `header_len` bytes (its tar header, which holds its size: a file
    /// that grows keeps its first chunk), then where `chunker` says.
    pub fn begin_split_file(&mut self, chunker: Chunker, header_len: u64) -> io::Result<()> {
        self.cut()?;
        self.splitting = Some(chunker);
        self.header_left = header_len;
        Ok(())
    }

    /// Ends the split file's last frame.
    pub fn end_split_file(&mut self) -> io::Result<()> {
        self.cut()?;
        self.splitting = None;
        self.header_left = 0;
        // Its last cut may have fallen on its last byte.
        self.continues = false;
        Ok(())
    }

    /// Ends the current frame, if it holds anything.
    pub fn cut(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let index = self.frames.len();
        self.frames.push(Frame {
            compressed_len: 0,
            tar_len: self.pending.len() as u64,
        });
        if std::mem::take(&mut self.continues) {
            self.continued.push(index as u64);
        }
        let data = std::mem::take(&mut self.pending);
        self.pool
            .submit(index, data, &mut self.sink, &mut self.frames)
    }

    /// Ends the last frame and returns the output with the frame index.
    pub fn finish(mut self) -> io::Result<FramedPayload<W>> {
        self.cut()?;
        self.pool.drain(&mut self.sink, &mut self.frames)?;
        self.pool.stop();
        Ok(FramedPayload {
            out: self.sink.out,
            frames: self.frames,
            frame_hashes: self.sink.hashes,
            continued: self.continued,
            compressed_len: self.sink.len,
            crc32: self.sink.crc.finalize(),
        })
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while let Some(chunker) = &mut self.splitting
            && !rest.is_empty()
        {
            let end = if self.header_left > 0 {
                let take = rest
                    .len()
                    .min(usize::try_from(self.header_left).unwrap_or(usize::MAX));
                self.header_left -= take as u64;
                if self.header_left > 0 {
                    // The header goes on in the next write.
                    break;
                }
                take
            } else {
                match chunker.find_cut(self.pending.len() as u64, rest) {
                    Some(end) => end,
                    None => break,
                }
            };
            self.pending.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
            self.cut()?;
            self.continues = true;
        }
        self.pending.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A frame is only complete at `cut`.
        Ok(())
    }
}

type Job = (usize, Vec<u8>);
/// The frame's index, its tar length and its compressed bytes.
type Done = (usize, usize, io::Result<Vec<u8>>);

/// The most tar bytes of frames given to the pool and not written yet (with
/// large frames, a few frames per thread would hold too much).
const MAX_BYTES_IN_FLIGHT: usize = 128 << 20;

/// Threads compressing whole small frames, each with its own zstd context,
/// single-threaded (so the bytes do not depend on the pool's size).
struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    bytes_in_flight: usize,
    max_in_flight: usize,
    ready: BTreeMap<usize, Vec<u8>>,
    next_to_write: usize,
}

impl Pool {
    fn new(level: i32, threads: usize) -> Pool {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut compressor = zstd::bulk::Compressor::new(level)
                        .and_then(|mut c| c.include_checksum(true).map(|()| c));
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((index, data)) = job else { return };
                        let result = match &mut compressor {
                            Ok(c) => c.compress(&data),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        if done_tx.send((index, data.len(), result)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            done,
            workers,
            in_flight: 0,
            bytes_in_flight: 0,
            max_in_flight: threads * 2,
            ready: BTreeMap::new(),
            next_to_write: 0,
        }
    }

    /// Queues frame `index`; writes whatever is ready, in order, and waits
    /// while too many frames are in flight (bounding memory).
    fn submit<W: Write>(
        &mut self,
        index: usize,
        data: Vec<u8>,
        sink: &mut Sink<W>,
        frames: &mut [Frame],
    ) -> io::Result<()> {
        let len = data.len();
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((index, data)).is_ok());
        if !sent {
            return Err(io::Error::other("compression threads stopped"));
        }
        self.in_flight += 1;
        self.bytes_in_flight += len;
        while self.in_flight >= self.max_in_flight
            || (self.in_flight > 0 && self.bytes_in_flight > MAX_BYTES_IN_FLIGHT)
        {
            self.receive_one(sink, frames)?;
        }
        Ok(())
    }

    /// Waits for every queued frame and writes them all.
    fn drain<W: Write>(&mut self, sink: &mut Sink<W>, frames: &mut [Frame]) -> io::Result<()> {
        while self.in_flight > 0 {
            self.receive_one(sink, frames)?;
        }
        Ok(())
    }

    fn receive_one<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        frames: &mut [Frame],
    ) -> io::Result<()> {
        let (index, len, result) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("compression threads stopped"))?;
        self.in_flight -= 1;
        self.bytes_in_flight -= len;
        self.ready.insert(index, result?);
        while let Some(bytes) = self.ready.remove(&self.next_to_write) {
            sink.write(&bytes)?;
            sink.end_frame();
            frames[self.next_to_write].compressed_len = bytes.len() as u64;
            self.next_to_write += 1;
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunk ends of `data`, as offsets.
    fn cuts(policy: FramePolicy, data: &[u8]) -> Vec<usize> {
        let mut chunker = policy.chunker();
        let (mut at, mut chunk_len, mut out) = (0, 0u64, Vec::new());
        // Fed in uneven pieces: where cuts fall must not depend on them.
        for piece in data.chunks(100_003) {
            let mut rest = piece;
            while let Some(end) = chunker.find_cut(chunk_len, rest) {
                at += end;
                out.push(at);
                rest = &rest[end..];
                chunk_len = 0;
            }
            at += rest.len();
            chunk_len += rest.len() as u64;
        }
        out
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunk_cuts_follow_the_content() {
        let policy = FramePolicy::for_size(0);
        let data = noise(12 << 20, 7);
        let before = cuts(policy, &data);
        assert_eq!(before, cuts(policy, &data), "deterministic");
        let lens: Vec<usize> = std::iter::once(before[0])
            .chain(before.windows(2).map(|w| w[1] - w[0]))
            .collect();
        assert!(
            lens.iter()
                .all(|&l| l as u64 >= CHUNK_MIN && l as u64 <= CHUNK_MAX)
        );
        assert!((8..=30).contains(&before.len()), "{} chunks", before.len());

        // 100 bytes inserted 1 MiB in: every cut from the third on is the
        // same, 100 bytes later.
        let mut edited = data[..1 << 20].to_vec();
        edited.extend_from_slice(&noise(100, 99));
        edited.extend_from_slice(&data[1 << 20..]);
        let after = cuts(policy, &edited);
        let moved: Vec<usize> = after.iter().map(|c| c - 100).collect();
        let kept = before.iter().filter(|c| moved.contains(c)).count();
        assert!(kept + 3 >= before.len(), "{before:?} vs {moved:?}");
        // And the cuts before the edit do not move at all.
        let early: Vec<_> = before.iter().filter(|&&c| c < 1 << 20).collect();
        assert!(early.iter().all(|c| after.contains(c)));
    }

    #[test]
    fn group_cuts_depend_on_the_entry_not_on_the_total_alone() {
        let policy = FramePolicy::for_size(0);
        assert!(!policy.cut_after("a", 1 << 30, GROUP_MIN - 1));
        assert!(policy.cut_after("a", 0, GROUP_MAX));
        // An entry as large as the spread always ends a frame past the
        // minimum; tiny ones rarely; the choice is the path's.
        assert!(policy.cut_after("a", GROUP_SPREAD, GROUP_MIN));
        let cut = (0..10_000)
            .filter(|i| policy.cut_after(&format!("f{i}"), 1024, GROUP_MIN))
            .count();
        assert!((10..80).contains(&cut), "{cut}");
        assert_eq!(
            policy.cut_after("x/y", 1024, GROUP_MIN),
            policy.cut_after("x/y", 1024, GROUP_MIN + 5000)
        );
    }

    #[test]
    fn huge_apps_get_larger_frames() {
        assert_eq!(FramePolicy::for_size(300 << 20).scale, 1);
        assert_eq!(FramePolicy::for_size(10 << 30).scale, 32);
        assert_eq!(FramePolicy::for_size(5 << 30).scale, 16);
        assert!(FramePolicy::for_size(u64::MAX).scale == MAX_SCALE);
    }
}
