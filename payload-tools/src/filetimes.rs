//! The modification times of the app's files, kept out of the frames.
//!
//! Tar headers carry mtime 0, so a file whose bytes did not change gives
//! the same frame whenever it was last touched (updates reuse unchanged
//! frames by hash). The real times (whole seconds) travel in one small
//! table, the metadata key `file_times`, which changes from build to build
//! anyway; the unpack gives each regular file its time through the
//! writer's own handle, before closing it (`docs/format.md`, "File
//! times").
//!
//! - [`TimesBuilder`] (`pack`) records each regular file's time with the
//!   index of the frame holding its header, and encodes the table.
//! - [`FileTimes::decode`] (every reader) decodes it within bounds set by
//!   the metadata (frame and entry counts), refusing anything else.
//!
//! The table: for each frame in payload order, a LEB128 count of the
//! regular files whose header is in that frame, then their times as runs,
//! each a zigzag LEB128 difference in seconds from the previous file's time
//! (0 before the first file) and a LEB128 count of the files after it with
//! the same time; runs stay within their frame. Then base64 (RFC 4648,
//! standard alphabet, padded). Files written together share their second,
//! so a table is a few bytes per burst of files; no general compressor
//! (zstd's one-shot decoder would cost the stub 5 KiB).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// Latest time kept, in seconds after 1970 (2^35 s, in the year 3058):
/// every file system the cache can be on represents it. Earlier times
/// are kept as 1970, later ones as this.
pub const MAX_FILE_TIME: u64 = 1 << 35;

/// Most bytes one frame's count or one time difference takes in the table
/// (a zigzag difference of at most 2^36 needs 6 LEB128 bytes).
const MAX_VARINT_LEN: usize = 6;

/// The times of a payload's regular files, per frame, as readers use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTimes {
    /// Seconds after 1970, in payload order.
    times: Vec<u64>,
    /// Where each frame's files start in `times`; one more entry than
    /// frames, the last being `times.len()`.
    starts: Vec<usize>,
}

impl FileTimes {
    /// Decodes the `file_times` text of a payload of `frames` frames and at
    /// most `entry_count` entries. The error says what is wrong.
    pub fn decode(text: &str, frames: usize, entry_count: u64) -> Result<FileTimes, String> {
        let fault = |what: &str| format!("file_times {what}");
        let entries = usize::try_from(entry_count).unwrap_or(usize::MAX);
        // Bounded by the metadata's size, checked before it was read.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| fault("is not base64"))?;
        let mut at = &raw[..];
        let mut times = Vec::new();
        let mut starts = Vec::with_capacity(frames + 1);
        let mut previous: u64 = 0;
        for _ in 0..frames {
            starts.push(times.len());
            let count = read_varint(&mut at).ok_or_else(|| fault("is cut short"))?;
            if count > (entries - times.len()) as u64 {
                return Err(fault("lists more files than the payload has entries"));
            }
            // Both bounded by the entry count: no run is materialised
            // beyond the files its frame declares.
            let mut left = count;
            while left > 0 {
                let delta = read_varint(&mut at).ok_or_else(|| fault("is cut short"))?;
                let same = read_varint(&mut at).ok_or_else(|| fault("is cut short"))?;
                if same >= left {
                    return Err(fault("has a run longer than its frame"));
                }
                let time = previous
                    .checked_add_signed(unzigzag(delta))
                    .filter(|t| *t <= MAX_FILE_TIME)
                    .ok_or_else(|| fault("holds a time outside 0 to 2^35"))?;
                times.extend(std::iter::repeat_n(time, same as usize + 1));
                previous = time;
                left -= same + 1;
            }
        }
        if !at.is_empty() {
            return Err(fault("holds more than its frames"));
        }
        starts.push(times.len());
        Ok(FileTimes { times, starts })
    }

    /// The times of the files of frame `index`, in payload order (empty for
    /// a frame the table does not have).
    pub fn of_frame(&self, index: usize) -> &[u64] {
        self.of_frames(index..index + 1)
    }

    /// The times of the files of `frames`, in payload order: those of a
    /// run of frames decoded as one tar stream (a file split across them
    /// counts in the frame holding its header).
    pub fn of_frames(&self, frames: std::ops::Range<usize>) -> &[u64] {
        match (self.starts.get(frames.start), self.starts.get(frames.end)) {
            (Some(&from), Some(&to)) if from <= to => &self.times[from..to],
            _ => &[],
        }
    }
}

/// A time of the table as the file system takes it.
pub fn system_time(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.min(MAX_FILE_TIME))
}

/// The table's time for a file modified at `modified`: whole seconds,
/// within 0 to [`MAX_FILE_TIME`].
pub fn table_time(modified: SystemTime) -> u64 {
    modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(MAX_FILE_TIME))
}

/// Builds the table while `pack` writes the payload.
#[derive(Debug, Default)]
pub struct TimesBuilder {
    /// Per frame, the times of its regular files.
    frames: Vec<Vec<u64>>,
}

impl TimesBuilder {
    /// Records a regular file whose header is in frame `frame`.
    pub fn push(&mut self, frame: usize, time: u64) {
        if self.frames.len() <= frame {
            self.frames.resize_with(frame + 1, Vec::new);
        }
        self.frames[frame].push(time.min(MAX_FILE_TIME));
    }

    /// The `file_times` text for a payload of `frames` frames.
    pub fn encode(&self, frames: usize) -> String {
        let mut raw = Vec::new();
        let mut previous = 0u64;
        for index in 0..frames {
            let times = self.frames.get(index).map_or(&[][..], Vec::as_slice);
            write_varint(&mut raw, times.len() as u64);
            for run in times.chunk_by(|a, b| a == b) {
                // Both are at most 2^35: the difference fits in an i64.
                write_varint(&mut raw, zigzag(run[0] as i64 - previous as i64));
                write_varint(&mut raw, run.len() as u64 - 1);
                previous = run[0];
            }
        }
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// At most [`MAX_VARINT_LEN`] bytes; `None` if cut short or longer.
fn read_varint(at: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let (&byte, rest) = at.split_first()?;
        *at = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(frames: &[&[u64]]) -> String {
        let mut b = TimesBuilder::default();
        for (i, times) in frames.iter().enumerate() {
            for &t in *times {
                b.push(i, t);
            }
        }
        b.encode(frames.len())
    }

    #[test]
    fn round_trip() -> Result<(), String> {
        let frames: &[&[u64]] = &[&[1_700_000_000, 1_700_000_000, 5], &[], &[MAX_FILE_TIME, 0]];
        let table = FileTimes::decode(&build(frames), 3, 10)?;
        for (i, times) in frames.iter().enumerate() {
            assert_eq!(table.of_frame(i), *times);
        }
        assert_eq!(table.of_frame(3), &[] as &[u64]);
        Ok(())
    }

    /// The example of docs/format.md, "File times", byte for byte.
    #[test]
    fn the_documented_example() -> Result<(), Box<dyn std::error::Error>> {
        let text = build(&[
            &[1_700_000_000, 1_700_000_000, 1_700_000_002],
            &[1_699_999_999],
        ]);
        let raw = base64::engine::general_purpose::STANDARD.decode(&text)?;
        assert_eq!(
            raw,
            [
                0x03, 0x80, 0xc4, 0x9f, 0xd5, 0x0c, 0x01, 0x04, 0x00, 0x01, 0x05, 0x00
            ]
        );
        assert_eq!(text, "A4DEn9UMAQQAAQUA");
        Ok(())
    }

    fn hand_made(raw: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn bounds_are_enforced() {
        let text = build(&[&[1, 2, 3]]);
        // More files than entries, fewer frames than the table has, more.
        assert!(FileTimes::decode(&text, 1, 2).is_err());
        assert!(FileTimes::decode(&text, 2, 10).is_err());
        assert!(FileTimes::decode(&build(&[&[1], &[]]), 1, 10).is_err());
        assert!(FileTimes::decode("not base64!", 1, 10).is_err());
        // A time beyond the bound.
        let mut raw = vec![1];
        write_varint(&mut raw, zigzag(MAX_FILE_TIME as i64 + 1));
        raw.push(0);
        assert!(FileTimes::decode(&hand_made(&raw), 1, 10).is_err());
        // A run longer than its frame, however long it claims to be.
        assert!(FileTimes::decode(&hand_made(&[2, 2, 2]), 1, 10).is_err());
        let mut raw = vec![2, 2];
        write_varint(&mut raw, 1 << 34);
        assert!(FileTimes::decode(&hand_made(&raw), 1, 10).is_err());
        // Cut short, and a varint longer than 6 bytes.
        assert!(FileTimes::decode(&hand_made(&[2, 2, 0]), 1, 10).is_err());
        let raw = [1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0];
        assert!(FileTimes::decode(&hand_made(&raw), 1, 10).is_err());
    }

    #[test]
    fn many_files_of_one_install_take_little() {
        let times: Vec<u64> = (0..10_000).map(|i| 1_700_000_000 + i / 1000).collect();
        let text = build(&[&times]);
        assert!(text.len() < 100, "{} bytes", text.len());
    }
}
