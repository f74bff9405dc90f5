//! The payload's framing: a tar stream cut into independent zstd frames at
//! entry boundaries (see `docs/format.md`, "Payload").
//!
//! - [`FrameWriter`] compresses what the tar builder writes, ending a frame
//!   whenever [`FrameWriter::cut`] is called, and records the frame index.
//! - [`FramePolicy`] decides where to cut: large files get frames of their
//!   own, small ones are grouped, and the cut points depend on the entries'
//!   names, not on running totals alone, so one changed file does not shift
//!   every later frame (unchanged files keep identical compressed bytes).

use std::io::{self, Write};

use zstd::stream::raw::{CParameter, Encoder, InBuffer, Operation, OutBuffer};

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

/// Compresses written bytes into a sequence of independent zstd frames.
pub struct FrameWriter<W: Write> {
    out: W,
    encoder: Encoder<'static>,
    buf: Vec<u8>,
    frames: Vec<Frame>,
    frame_tar_len: u64,
    frame_compressed_len: u64,
    crc: crc32fast::Hasher,
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
    pub compressed_len: u64,
    pub crc32: u32,
}

impl<W: Write> FrameWriter<W> {
    /// `threads` above 0 lets zstd compress each frame on that many worker
    /// threads; the output does not depend on the number, only on the level.
    pub fn new(out: W, level: i32, threads: u32) -> io::Result<Self> {
        let mut encoder = Encoder::new(level)?;
        encoder.set_parameter(CParameter::ChecksumFlag(true))?;
        // Always at least one worker: zstd's multi-threaded mode gives the same
        // bytes whatever the worker count, but not the same as single-threaded.
        encoder.set_parameter(CParameter::NbWorkers(threads.max(1)))?;
        Ok(FrameWriter {
            out,
            encoder,
            buf: vec![0u8; zstd::zstd_safe::CCtx::out_size()],
            frames: Vec::new(),
            frame_tar_len: 0,
            frame_compressed_len: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Tar bytes in the frame being written.
    pub fn frame_len(&self) -> u64 {
        self.frame_tar_len
    }

    /// Ends the current frame, if it holds anything.
    pub fn cut(&mut self) -> io::Result<()> {
        if self.frame_tar_len == 0 {
            return Ok(());
        }
        loop {
            let mut output = OutBuffer::around(&mut self.buf[..]);
            let remaining = self.encoder.finish(&mut output, true)?;
            let produced = output.pos();
            self.emit(produced)?;
            if remaining == 0 {
                break;
            }
        }
        self.frames.push(Frame {
            compressed_len: self.frame_compressed_len,
            tar_len: self.frame_tar_len,
        });
        self.frame_tar_len = 0;
        self.frame_compressed_len = 0;
        self.encoder.reinit()
    }

    /// Ends the last frame and returns the output with the frame index.
    pub fn finish(mut self) -> io::Result<FramedPayload<W>> {
        self.cut()?;
        let compressed_len = self.frames.iter().map(|f| f.compressed_len).sum();
        Ok(FramedPayload {
            out: self.out,
            frames: self.frames,
            compressed_len,
            crc32: self.crc.finalize(),
        })
    }

    fn emit(&mut self, produced: usize) -> io::Result<()> {
        let bytes = &self.buf[..produced];
        self.out.write_all(bytes)?;
        self.crc.update(bytes);
        self.frame_compressed_len += produced as u64;
        Ok(())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let mut output = OutBuffer::around(&mut self.buf[..]);
            self.encoder.run(&mut input, &mut output)?;
            let produced = output.pos();
            self.emit(produced)?;
        }
        self.frame_tar_len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A frame is only complete at `cut`; flushing mid-frame would just
        // force zstd to emit a smaller block.
        Ok(())
    }
}
