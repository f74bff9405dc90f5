//! What an update from one build to another must fetch, and what it can
//! copy from the old build instead: the plan shared by the updater (which
//! carries it out, `bootstrap/src/update/frames.rs`) and `payload-tools
//! inspect --against` (which shows its cost before a release).
//!
//! A packed file is a sequence of parts: the stub, each compressed frame,
//! and the tail (metadata and trailer). The metadata names the stub and
//! every frame by a [`PartHash`]; a part of the new build whose hash the
//! old build also has (with the same length) can be copied from the old
//! file, everything else is fetched. The tail is always fetched (the
//! updater has it already: it reads the new build's end first).
//!
//! Fetches are plain single-range requests, in file order: adjacent parts
//! to fetch are one request, a short run of copyable parts between two
//! fetches is fetched too when that saves a request, and the number of
//! requests is bounded ([`MAX_REQUESTS`]) by fetching the shortest runs
//! in between until it fits. No multi-range request: GitHub answers them
//! with 501 and some servers with 400.

use crate::digest::PartHash;
use crate::metadata::Metadata;
use crate::trailer::Trailer;

/// Most range requests one update makes (the repairs of copied parts that
/// turn out damaged included): a request costs a round trip, and a build
/// that would need more is rather fetched in fewer, larger pieces.
pub const MAX_REQUESTS: usize = 64;

/// A run of copyable bytes shorter than this between two fetched runs is
/// fetched with them: one request fewer is worth more than these bytes.
pub const MERGE_GAP: u64 = 64 * 1024;

/// An incremental update that would fetch at least this share of the
/// build (in percent) is not worth its requests: the whole build is
/// downloaded in one instead.
pub const WORTH_PERCENT: u64 = 90;

/// Bytes of a build's end the updater asks for first (`Range: bytes=-N`):
/// the trailer and the metadata of real builds, with room to spare. A
/// larger metadata block costs one more request, for the whole end.
pub const END_REQUEST_LEN: u64 = 64 * 1024;

/// What an update from one build to another costs, as the updater does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Whether the updater assembles the build (else it downloads it whole).
    pub incremental: bool,
    /// Bytes fetched, the build's end included.
    pub fetched_bytes: u64,
    /// Requests for the build, the end's included.
    pub requests: usize,
    /// Parts copied from the old build, and all parts but the end.
    pub copied_parts: usize,
    pub parts: usize,
    pub copied_bytes: u64,
    /// Length of the new build.
    pub file_len: u64,
}

/// One part of a packed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub offset: u64,
    pub len: u64,
    /// `None` when the build does not say (made before part hashes).
    pub hash: Option<PartHash>,
}

impl Part {
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The stub and the frames of a build, in file order (the tail left out).
/// They tile `0..metadata_offset` only if the frame index covers the
/// payload (`Metadata::frames_compressed_len() == payload_len`), which
/// every reader checks before it plans anything from them.
pub fn parts(trailer: &Trailer, metadata: &Metadata) -> Vec<Part> {
    let mut parts = Vec::with_capacity(metadata.frames.len() + 1);
    parts.push(Part {
        offset: 0,
        len: trailer.payload_offset,
        hash: metadata.stub_hash,
    });
    let mut at = trailer.payload_offset;
    for (i, frame) in metadata.frames.iter().enumerate() {
        parts.push(Part {
            offset: at,
            len: frame.compressed_len,
            hash: metadata.frame_hashes.get(i).copied(),
        });
        at = at.saturating_add(frame.compressed_len);
    }
    parts
}

/// Where one part of the new build comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the old file, at this offset; only if its bytes there hash to
    /// the part's hash, else it is fetched after all.
    Old { offset: u64 },
    /// Fetched, in the request that covers it.
    Fetch,
}

/// One step of building the new file: a part and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub part: Part,
    pub source: Source,
}

/// A range of the new build to fetch with one request: bytes
/// `start..end` (a `Range: bytes=start-(end-1)` request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub start: u64,
    pub end: u64,
}

/// How to build the new file from the old one and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every part of the new build but the tail, in file order.
    pub steps: Vec<Step>,
    /// The requests for the parts to fetch, in file order, disjoint.
    pub requests: Vec<Request>,
    /// Where the tail starts (`metadata_offset`) and the file's length.
    pub tail_start: u64,
    pub file_len: u64,
}

impl Plan {
    /// The plan for building `new` from `old`. `old_parts` may carry hashes
    /// the old build's metadata lacks (computed from its bytes).
    pub fn new(new_trailer: &Trailer, new_meta: &Metadata, old_parts: &[Part]) -> Plan {
        let new_parts = parts(new_trailer, new_meta);
        let mut steps: Vec<Step> = new_parts
            .iter()
            .map(|&part| Step {
                part,
                source: find_in_old(&part, old_parts)
                    .map_or(Source::Fetch, |offset| Source::Old { offset }),
            })
            .collect();
        let requests = requests_for(&mut steps);
        Plan {
            steps,
            requests,
            tail_start: new_trailer.metadata_offset,
            file_len: new_trailer.file_len(),
        }
    }

    /// Bytes fetched by the plan's requests (the tail not included).
    pub fn fetched_bytes(&self) -> u64 {
        self.requests.iter().map(|r| r.end - r.start).sum()
    }

    /// Bytes copied from the old file.
    pub fn copied_bytes(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| matches!(s.source, Source::Old { .. }))
            .map(|s| s.part.len)
            .sum()
    }

    /// Parts copied from the old file, and all parts (the tail not included).
    pub fn copied_parts(&self) -> (usize, usize) {
        let copied = self
            .steps
            .iter()
            .filter(|s| matches!(s.source, Source::Old { .. }))
            .count();
        (copied, self.steps.len())
    }

    /// What the update costs: the end fetched first, then either the
    /// plan's requests or the whole build.
    pub fn cost(&self) -> Cost {
        let tail_len = self.file_len - self.tail_start;
        let (mut fetched_bytes, mut requests) = (self.file_len.min(END_REQUEST_LEN), 1);
        if tail_len > END_REQUEST_LEN {
            fetched_bytes += tail_len;
            requests += 1;
        }
        let (copied_parts, parts) = self.copied_parts();
        let incremental = self.is_worth_it();
        if incremental {
            fetched_bytes += self.fetched_bytes();
            requests += self.requests.len();
        } else {
            fetched_bytes += self.file_len;
            requests += 1;
        }
        Cost {
            incremental,
            fetched_bytes,
            requests,
            copied_parts: if incremental { copied_parts } else { 0 },
            parts,
            copied_bytes: if incremental { self.copied_bytes() } else { 0 },
            file_len: self.file_len,
        }
    }

    /// Whether fetching only part of the build pays: something is copied
    /// and less than [`WORTH_PERCENT`] of the file is fetched.
    pub fn is_worth_it(&self) -> bool {
        let tail = self.file_len - self.tail_start;
        self.copied_bytes() > 0
            && (self.fetched_bytes() + tail).saturating_mul(100)
                < self.file_len.saturating_mul(WORTH_PERCENT)
    }
}

/// The offset in the old file of a part with the same length and hash,
/// preferring the same offset (the usual case for the stub). An old part
/// without a hash matches by length alone: its bytes are hashed when they
/// are copied, and fetched if they differ.
fn find_in_old(part: &Part, old_parts: &[Part]) -> Option<u64> {
    let hash = part.hash?;
    let matches = |old: &&Part| old.len == part.len && old.hash.is_none_or(|h| h == hash);
    let mut candidates = old_parts.iter().filter(matches);
    let first = candidates.clone().next()?;
    // A known hash beats a guess by length.
    let known = candidates
        .clone()
        .find(|old| old.hash == Some(hash) && old.offset == part.offset)
        .or_else(|| candidates.find(|old| old.hash == Some(hash)));
    Some(known.unwrap_or(first).offset)
}

/// The requests for the parts marked [`Source::Fetch`]; copyable parts
/// inside a short gap (or the shortest gaps, while there are too many
/// requests) are turned into fetches.
fn requests_for(steps: &mut [Step]) -> Vec<Request> {
    // Runs of consecutive steps to fetch, as index ranges.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.source != Source::Fetch {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    let gap_len = |steps: &[Step], a: (usize, usize), b: (usize, usize)| {
        steps[b.0].part.offset - steps[a.1 - 1].part.end()
    };
    // Merge short gaps, then the shortest ones while there are too many.
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
    for run in runs {
        match merged.last_mut() {
            Some(last) if gap_len(steps, *last, run) < MERGE_GAP => last.1 = run.1,
            _ => merged.push(run),
        }
    }
    while merged.len() > MAX_REQUESTS / 2 {
        // Half the budget: the other half is for repairs of copied parts.
        let Some(shortest) = (1..merged.len()).min_by_key(|&i| {
            let gap = gap_len(steps, merged[i - 1], merged[i]);
            (gap, i)
        }) else {
            break;
        };
        merged[shortest - 1].1 = merged[shortest].1;
        merged.remove(shortest);
    }
    for &(first, end) in &merged {
        for step in &mut steps[first..end] {
            step.source = Source::Fetch;
        }
    }
    merged
        .iter()
        .map(|&(first, end)| Request {
            start: steps[first].part.offset,
            end: steps[end - 1].part.end(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{FormatVersion, Frame};

    /// A build of a 100-byte stub and frames of the given (length, content
    /// tag) pairs; the tag stands for the frame's bytes.
    fn build(frames: &[(u64, u8)]) -> (Trailer, Metadata) {
        let payload_len: u64 = frames.iter().map(|f| f.0).sum();
        let metadata = Metadata {
            format_version: FormatVersion::V1,
            requires: vec![],
            name: "a".into(),
            version: "1".into(),
            entry: "a".into(),
            argv0: Default::default(),
            unpacked_size: 1 << 40,
            entry_count: 1,
            frames: frames
                .iter()
                .map(|&(len, _)| Frame {
                    compressed_len: len,
                    tar_len: len,
                })
                .collect(),
            stub_hash: Some(PartHash::of(b"stub")),
            frame_hashes: frames
                .iter()
                .map(|&(_, tag)| PartHash::of(&[tag]))
                .collect(),
            continued_frames: vec![],
            file_times: None,
            self_test: None,
            update: None,
        };
        let trailer = Trailer {
            payload_offset: 100,
            payload_len,
            metadata_offset: 100 + payload_len,
            metadata_len: 10,
            payload_crc32: 0,
            metadata_crc32: 0,
        };
        (trailer, metadata)
    }

    fn plan_of(old: &[(u64, u8)], new: &[(u64, u8)]) -> Plan {
        let (old_trailer, old_meta) = build(old);
        let (trailer, meta) = build(new);
        Plan::new(&trailer, &meta, &parts(&old_trailer, &old_meta))
    }

    const BIG: u64 = 1 << 20;

    #[test]
    fn unchanged_parts_are_copied_and_changed_ones_fetched_in_one_request_each() {
        let plan = plan_of(
            &[(BIG, 1), (BIG, 2), (BIG, 3), (BIG, 4)],
            &[(BIG, 1), (BIG, 9), (BIG, 3), (BIG + 5, 8)],
        );
        assert_eq!(plan.copied_parts(), (3, 5));
        assert_eq!(
            plan.requests,
            vec![
                Request {
                    start: 100 + BIG,
                    end: 100 + 2 * BIG
                },
                Request {
                    start: 100 + 3 * BIG,
                    end: 100 + 4 * BIG + 5
                },
            ]
        );
        assert_eq!(plan.fetched_bytes(), 2 * BIG + 5);
        assert!(plan.is_worth_it());
    }

    #[test]
    fn moved_frames_are_found_where_they_are() {
        // A file added at the front shifts every frame: all are still found.
        let plan = plan_of(&[(BIG, 1), (BIG, 2)], &[(7, 5), (BIG, 1), (BIG, 2)]);
        assert_eq!(plan.steps[2].source, Source::Old { offset: 100 });
        assert_eq!(plan.steps[3].source, Source::Old { offset: 100 + BIG });
        assert_eq!(plan.fetched_bytes(), 7);
    }

    #[test]
    fn short_gaps_are_fetched_and_requests_are_bounded() {
        // Changed, unchanged (small), changed: one request.
        let plan = plan_of(
            &[(BIG, 1), (10, 2), (BIG, 3)],
            &[(BIG, 7), (10, 2), (BIG, 8)],
        );
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.steps[2].source, Source::Fetch);
        assert!(!plan.is_worth_it(), "nothing is left to copy");

        // Every other frame changed: never more than half the budget.
        let old: Vec<(u64, u8)> = (0..200).map(|i| (BIG, i as u8)).collect();
        let new: Vec<(u64, u8)> = (0..200)
            .map(|i| (BIG, if i % 2 == 0 { i as u8 } else { 255 }))
            .collect();
        let plan = plan_of(&old, &new);
        assert!(
            plan.requests.len() <= MAX_REQUESTS / 2,
            "{}",
            plan.requests.len()
        );
        assert!(plan.requests.windows(2).all(|w| w[0].end < w[1].start));
        let fetched: u64 = plan
            .steps
            .iter()
            .filter(|s| s.source == Source::Fetch)
            .map(|s| s.part.len)
            .sum();
        assert_eq!(fetched, plan.fetched_bytes());
    }

    #[test]
    fn a_build_without_hashes_is_matched_by_length_and_checked_on_copy() {
        let (old_trailer, mut old_meta) = build(&[(BIG, 1), (BIG, 2)]);
        old_meta.frame_hashes.clear();
        old_meta.stub_hash = None;
        let (trailer, meta) = build(&[(BIG, 1), (BIG + 1, 2)]);
        let plan = Plan::new(&trailer, &meta, &parts(&old_trailer, &old_meta));
        assert_eq!(plan.steps[0].source, Source::Old { offset: 0 });
        assert_eq!(plan.steps[1].source, Source::Old { offset: 100 });
        assert_eq!(plan.steps[2].source, Source::Fetch);

        // A new build without hashes: nothing can be matched safely.
        let (trailer, mut meta) = build(&[(BIG, 1)]);
        meta.frame_hashes.clear();
        meta.stub_hash = None;
        let plan = Plan::new(&trailer, &meta, &parts(&old_trailer, &old_meta));
        assert_eq!(plan.copied_parts().0, 0);
    }
}
