//! The payload's framing: a tar stream cut into independent zstd frames at
//! entry boundaries (see `docs/format.md`, "Payload").
//!
//! - [`FrameWriter`] compresses what the tar builder writes, ending a frame
//!   whenever [`FrameWriter::cut`] is called, and records the frame index.
//!   Frames of small entries are built in memory and compressed on a pool of
//!   threads, several at once, and written in order; a large file's frame is
//!   streamed through zstd's own multi-threaded compressor, never held whole
//!   in memory. Which way a frame goes depends only on its content, and
//!   neither way depends on the number of threads: the output is the same on
//!   every machine.
//! - With a dictionary ([`FrameWriter::with_dictionary`]), it is written
//!   first, as a part of its own (`crate::dictionary`), and every frame is
//!   compressed with it.
//! - [`FramePolicy`] decides where to cut: large files get frames of their
//!   own, small ones are grouped, and the cut points depend on the entries'
//!   names, not on running totals alone, so one changed file does not shift
//!   every later frame (unchanged files keep identical compressed bytes).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zstd::stream::raw::{CParameter, Encoder, InBuffer, Operation, OutBuffer};

use crate::digest::{PartHash, PartHasher};
use crate::metadata::Frame;

/// A file at least this large gets a frame of its own.
pub const LARGE_FILE: u64 = 4 * 1024 * 1024;
/// A group of small entries is never cut before this many tar bytes...
pub const MIN_FRAME: u64 = 2 * 1024 * 1024;
/// ...and always cut once it reaches this many.
pub const MAX_FRAME: u64 = 8 * 1024 * 1024;
/// Between the two, a cut follows an entry whose name hashes to 0 modulo this.
const CUT_MODULUS: u32 = 8;

/// Where frames end.
#[derive(Debug, Clone, Copy, Default)]
pub struct FramePolicy;

impl FramePolicy {
    /// Whether to end the current frame before an entry of `size` bytes.
    pub fn cut_before(&self, size: u64) -> bool {
        size >= LARGE_FILE
    }

    /// Whether to end the current frame, now holding `frame_len` tar bytes,
    /// after the entry `path` of `size` bytes.
    pub fn cut_after(&self, path: &str, size: u64, frame_len: u64) -> bool {
        size >= LARGE_FILE
            || frame_len >= MAX_FRAME
            || (frame_len >= MIN_FRAME
                && crc32fast::hash(path.as_bytes()).is_multiple_of(CUT_MODULUS))
    }
}

/// Input of one job of zstd's multi-threaded compressor, for large files
/// (zstd's minimum is 512 KiB). Fixed, so the output does not depend on
/// the number of workers.
const JOB_SIZE: u32 = 1024 * 1024;

/// Compresses written bytes into a sequence of independent zstd frames.
pub struct FrameWriter<W: Write> {
    sink: Sink<W>,
    /// The small-entry frame being built.
    pending: Vec<u8>,
    /// The large-file frame being streamed, if any, and where in the output
    /// it started.
    streaming: Option<(Encoder<'static>, u64)>,
    /// Output buffer of the streaming encoder.
    out_buf: Vec<u8>,
    level: i32,
    threads: u32,
    /// Shared by every frame's compressor.
    dictionary: Arc<[u8]>,
    pool: Pool,
    frames: Vec<Frame>,
    frame_tar_len: u64,
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
    pub compressed_len: u64,
    pub crc32: u32,
}

impl<W: Write> FrameWriter<W> {
    /// Compresses at `level` on `threads` threads (at least one).
    pub fn new(out: W, level: i32, threads: u32) -> io::Result<Self> {
        Self::with_dictionary(out, level, threads, None)
    }

    /// Like [`FrameWriter::new`]; with a dictionary, writes its part first
    /// (frame 0 of the index, 0 tar bytes) and compresses every frame with it.
    pub fn with_dictionary(
        out: W,
        level: i32,
        threads: u32,
        dictionary: Option<&[u8]>,
    ) -> io::Result<Self> {
        // Fail here, on the caller's thread, if zstd refuses the level.
        zstd::bulk::Compressor::new(level)?;
        let shared: Arc<[u8]> = Arc::from(dictionary.unwrap_or_default());
        let mut writer = FrameWriter {
            sink: Sink {
                out,
                crc: crc32fast::Hasher::new(),
                len: 0,
                hasher: PartHasher::default(),
                hashes: Vec::new(),
            },
            pending: Vec::new(),
            streaming: None,
            out_buf: vec![0u8; zstd::zstd_safe::CCtx::out_size()],
            level,
            threads: threads.max(1),
            dictionary: Arc::clone(&shared),
            pool: Pool::new(level, threads.max(1) as usize, shared),
            frames: Vec::new(),
            frame_tar_len: 0,
        };
        if let Some(dictionary) = dictionary {
            let part = crate::dictionary::encode_part(dictionary);
            writer.sink.write(&part)?;
            writer.sink.end_frame();
            writer.frames.push(Frame {
                compressed_len: part.len() as u64,
                tar_len: 0,
            });
            writer.pool.next_to_write = 1;
        }
        Ok(writer)
    }

    /// Tar bytes in the frame being written.
    pub fn frame_len(&self) -> u64 {
        self.frame_tar_len
    }

    /// Starts a frame for one large file, streamed rather than buffered.
    /// Ends the current frame first.
    pub fn begin_large_frame(&mut self) -> io::Result<()> {
        self.cut()?;
        // Everything before this frame must be out before it starts.
        self.pool.drain(&mut self.sink, &mut self.frames)?;
        // An empty dictionary is none (zstd loads nothing).
        let mut encoder = Encoder::with_dictionary(self.level, &self.dictionary)?;
        encoder.set_parameter(CParameter::ChecksumFlag(true))?;
        encoder.set_parameter(CParameter::NbWorkers(self.threads))?;
        encoder.set_parameter(CParameter::JobSize(JOB_SIZE))?;
        self.streaming = Some((encoder, self.sink.len));
        Ok(())
    }

    /// Ends the current frame, if it holds anything.
    pub fn cut(&mut self) -> io::Result<()> {
        if self.frame_tar_len == 0 {
            return Ok(());
        }
        let index = self.frames.len();
        self.frames.push(Frame {
            compressed_len: 0,
            tar_len: self.frame_tar_len,
        });
        self.frame_tar_len = 0;
        if let Some((mut encoder, before)) = self.streaming.take() {
            loop {
                let mut output = OutBuffer::around(&mut self.out_buf[..]);
                let remaining = encoder.finish(&mut output, true)?;
                let produced = output.pos();
                self.sink.write(&self.out_buf[..produced])?;
                if remaining == 0 {
                    break;
                }
            }
            self.sink.end_frame();
            self.frames[index].compressed_len = self.sink.len - before;
            // The pool drained before this frame began; its next frame
            // comes after this one.
            self.pool.next_to_write = index + 1;
            return Ok(());
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
            compressed_len: self.sink.len,
            crc32: self.sink.crc.finalize(),
        })
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.streaming {
            Some((encoder, _)) => {
                let mut input = InBuffer::around(data);
                while input.pos() < data.len() {
                    let mut output = OutBuffer::around(&mut self.out_buf[..]);
                    encoder.run(&mut input, &mut output)?;
                    let produced = output.pos();
                    self.sink.write(&self.out_buf[..produced])?;
                }
            }
            None => self.pending.extend_from_slice(data),
        }
        self.frame_tar_len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A frame is only complete at `cut`.
        Ok(())
    }
}

type Job = (usize, Vec<u8>);
type Done = (usize, io::Result<Vec<u8>>);

/// Threads compressing whole small frames, each with its own zstd context,
/// single-threaded (so the bytes do not depend on the pool's size).
struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    max_in_flight: usize,
    ready: BTreeMap<usize, Vec<u8>>,
    next_to_write: usize,
}

impl Pool {
    fn new(level: i32, threads: usize, dictionary: Arc<[u8]>) -> Pool {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                let dictionary = Arc::clone(&dictionary);
                std::thread::spawn(move || {
                    let mut compressor =
                        zstd::bulk::Compressor::with_dictionary(level, &dictionary)
                            .and_then(|mut c| c.include_checksum(true).map(|()| c));
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((index, data)) = job else { return };
                        let result = match &mut compressor {
                            Ok(c) => c.compress(&data),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        if done_tx.send((index, result)).is_err() {
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
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((index, data)).is_ok());
        if !sent {
            return Err(io::Error::other("compression threads stopped"));
        }
        self.in_flight += 1;
        while self.in_flight >= self.max_in_flight {
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
        let (index, result) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("compression threads stopped"))?;
        self.in_flight -= 1;
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
