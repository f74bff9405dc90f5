//! The payload's zstd dictionary (`docs/format.md`, "Dictionary"): what it
//! looks like in the file, how a reader takes it out safely, and how `pack`
//! trains one from the app's files or keeps the previous build's.
//!
//! Small independent frames each start with an empty history, which costs
//! ratio; a dictionary trained on the app's own files gives every frame a
//! history to start from. It is stored once, as the payload's first part
//! (a zstd skippable frame with its own entry in the frame index and its
//! own part hash), so an updater can copy it like any other part, and a
//! build that keeps the previous build's dictionary keeps the compressed
//! bytes of its unchanged frames.

use std::io;

/// Most bytes a trained dictionary takes (zstd's own default, 110 KiB, is
/// about the same; measured in docs/benchmarks.md, "Packed size").
pub const DICTIONARY_LEN: usize = 112 * 1024;

/// Most bytes of dictionary a reader accepts, checked from the frame index
/// before a byte of it is read: each decoding thread holds it.
pub const MAX_DICTIONARY_LEN: u64 = 1024 * 1024;

/// The dictionary part's header: a zstd skippable frame's magic
/// (0x184D2A50, little-endian) and the length of what follows (u32 LE).
pub const PART_HEADER_LEN: u64 = 8;
const SKIPPABLE_MAGIC: [u8; 4] = 0x184D_2A50u32.to_le_bytes();

/// A zstd dictionary (not raw content) starts with this magic (0xEC30A437).
const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();

/// The smallest dictionary zstd can hold: magic, ID and entropy tables
/// alone take more.
const MIN_DICTIONARY_LEN: u64 = 8;

/// Samples the training reads: zstd advises about 100 times the
/// dictionary's size; more only slows training down.
pub const SAMPLE_BUDGET: u64 = 100 * DICTIONARY_LEN as u64;

/// At most this much of one file is a sample: dictionaries help the start
/// of a frame, and files this large are not many small frames.
pub const MAX_SAMPLE_LEN: u64 = 128 * 1024;

/// A dictionary is only trained from at least this many sample bytes: on
/// less, its own size outweighs what it saves.
pub const MIN_TRAINING_BYTES: u64 = 16 * DICTIONARY_LEN as u64;

/// The previous build's dictionary is kept while the samples compressed
/// with it take at most this many per mille more bytes than with a fresh
/// one: a new dictionary changes every frame, so every update would fetch
/// the whole build again.
pub const KEEP_PREVIOUS_PER_MILLE: u64 = 1030;

/// The level the dictionaries are compared at: a ranking, not the output.
const SCORE_LEVEL: i32 = 3;

/// Most sample bytes the trial of [`pays`] compresses (twice).
const TRIAL_BUDGET: u64 = 4 * 1024 * 1024;

/// The dictionary part's bytes for `dictionary`.
pub fn encode_part(dictionary: &[u8]) -> Vec<u8> {
    let mut part = Vec::with_capacity(dictionary.len() + PART_HEADER_LEN as usize);
    part.extend_from_slice(&SKIPPABLE_MAGIC);
    // `pack` only writes dictionaries of at most DICTIONARY_LEN bytes.
    part.extend_from_slice(
        &u32::try_from(dictionary.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    part.extend_from_slice(dictionary);
    part
}

/// Whether a part of `len` bytes can hold a dictionary a reader accepts:
/// checked from the frame index, before the part is read.
pub fn check_part_len(len: u64) -> Result<(), String> {
    let Some(content) = len.checked_sub(PART_HEADER_LEN) else {
        return Err(format!("its dictionary part of {len} bytes is too short"));
    };
    if content < MIN_DICTIONARY_LEN {
        return Err(format!("its dictionary of {content} bytes is too short"));
    }
    if content > MAX_DICTIONARY_LEN {
        return Err(format!(
            "its dictionary of {content} bytes is larger than the {MAX_DICTIONARY_LEN} bytes a reader accepts"
        ));
    }
    Ok(())
}

/// The dictionary inside a dictionary part, checked: the skippable frame's
/// header, its length, zstd's dictionary magic, and that zstd can load it.
pub fn decode_part(part: &[u8]) -> Result<&[u8], String> {
    check_part_len(part.len() as u64)?;
    let (header, dictionary) = part.split_at(PART_HEADER_LEN as usize);
    if header[..4] != SKIPPABLE_MAGIC {
        return Err("its dictionary part does not start with a skippable frame's magic".into());
    }
    let declared = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if u64::from(declared) != dictionary.len() as u64 {
        return Err(format!(
            "its dictionary part declares {declared} bytes of dictionary, and holds {}",
            dictionary.len()
        ));
    }
    if dictionary[..4] != DICTIONARY_MAGIC {
        return Err("its dictionary is not a zstd dictionary".into());
    }
    zstd::stream::raw::Decoder::with_dictionary(dictionary)
        .map_err(|e| format!("its dictionary is damaged: {e}"))?;
    Ok(dictionary)
}

/// Sample data for training, one sample per file.
#[derive(Debug, Default)]
pub struct Samples {
    pub data: Vec<u8>,
    pub sizes: Vec<usize>,
}

impl Samples {
    pub fn total(&self) -> u64 {
        self.data.len() as u64
    }

    /// Every other sample, and the others.
    fn halves(&self) -> (Samples, Samples) {
        let mut halves = (Samples::default(), Samples::default());
        for (i, sample) in self.iter().enumerate() {
            let half = if i % 2 == 0 {
                &mut halves.0
            } else {
                &mut halves.1
            };
            half.data.extend_from_slice(sample);
            half.sizes.push(sample.len());
        }
        halves
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        self.sizes.iter().map(move |&size| {
            let sample = &self.data[at..at + size];
            at += size;
            sample
        })
    }
}

/// Which files to sample, given each file's size in tree order: the first
/// [`MAX_SAMPLE_LEN`] bytes of every `stride`-th file, the stride chosen so
/// the samples fit in [`SAMPLE_BUDGET`]. Depends only on the sizes.
pub fn sample_plan(sizes: &[u64]) -> Vec<(usize, u64)> {
    let lens: Vec<u64> = sizes.iter().map(|&s| s.min(MAX_SAMPLE_LEN)).collect();
    let total: u64 = lens.iter().sum();
    let stride = total.div_ceil(SAMPLE_BUDGET).max(1) as usize;
    lens.into_iter()
        .enumerate()
        .filter(|&(i, len)| i % stride == 0 && len > 0)
        .collect()
}

/// A dictionary trained on `samples`, or `None` when there is too little to
/// train on or zstd finds nothing worth a dictionary. Single-threaded:
/// the same samples give the same bytes everywhere.
pub fn train(samples: &Samples) -> Option<Vec<u8>> {
    if samples.total() < MIN_TRAINING_BYTES {
        return None;
    }
    zstd::dict::from_continuous(&samples.data, &samples.sizes, DICTIONARY_LEN).ok()
}

/// Bytes the samples take compressed one by one with `dictionary`.
pub fn score(dictionary: &[u8], samples: &Samples) -> io::Result<u64> {
    let mut compressor = zstd::bulk::Compressor::with_dictionary(SCORE_LEVEL, dictionary)?;
    let mut total = 0u64;
    for sample in samples.iter() {
        total += compressor.compress(sample)?.len() as u64;
    }
    Ok(total)
}

/// Whether `dictionary` saves more than twice its own size on a payload of
/// `payload_len` tar bytes cut into frames of about `frame_len`: pieces of
/// the samples that long are compressed at `level` with and without it,
/// and the saving scaled to the payload. Measured, not assumed: a
/// dictionary helps frames of 1 MiB and less much (a new frame has no
/// history), and can cost frames of several MiB at high levels.
pub fn pays(
    dictionary: &[u8],
    samples: &Samples,
    level: i32,
    frame_len: u64,
    payload_len: u64,
) -> io::Result<bool> {
    let data = &samples.data;
    let piece = usize::try_from(frame_len.max(1))
        .unwrap_or(usize::MAX)
        .min(data.len());
    if piece == 0 {
        return Ok(false);
    }
    let count = (TRIAL_BUDGET / piece as u64).clamp(1, (data.len() / piece) as u64) as usize;
    let pieces: Vec<&[u8]> = (0..count)
        .map(|i| {
            let start = i * (data.len() - piece) / count;
            &data[start..start + piece]
        })
        .collect();
    let compress_all = |dictionary: &[u8]| -> io::Result<u64> {
        let mut compressor = zstd::bulk::Compressor::with_dictionary(level, dictionary)?;
        let mut total = 0u64;
        for piece in &pieces {
            total += compressor.compress(piece)?.len() as u64;
        }
        Ok(total)
    };
    let (with, without) = std::thread::scope(|scope| {
        let without = scope.spawn(|| compress_all(&[]));
        let with = compress_all(dictionary);
        (with, without.join())
    });
    let without = without.map_err(|_| io::Error::other("a trial compression failed"))??;
    let saved = without.saturating_sub(with?);
    let trial_len = (piece * count) as u64;
    let saved_in_payload = u128::from(saved) * u128::from(payload_len) / u128::from(trial_len);
    // Twice its size: a build with a dictionary needs a stub that reads
    // one, which a saving of a few bytes does not justify.
    Ok(saved_in_payload > 2 * dictionary.len() as u128)
}

/// What [`choose`] picked.
#[derive(Debug)]
pub struct Choice {
    pub dictionary: Vec<u8>,
    /// Whether it is the previous build's.
    pub kept_previous: bool,
}

/// The payload a dictionary is chosen for, to see whether it [`pays`].
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    pub level: i32,
    /// About how many tar bytes a frame of small files holds.
    pub frame_len: u64,
    /// About how many tar bytes the frames of small entries hold.
    pub tar_len: u64,
}

/// The dictionary a build uses: the previous build's while it compresses
/// the samples within [`KEEP_PREVIOUS_PER_MILLE`] of a fresh one, else the
/// fresh one; `None` if there is too little to train on or the chosen one
/// does not [`pay`](pays).
pub fn choose(
    previous: Option<Vec<u8>>,
    samples: &Samples,
    payload: Payload,
) -> io::Result<Option<Choice>> {
    let Some(fresh) = train(samples) else {
        return Ok(None);
    };
    let mut choice = Choice {
        dictionary: fresh,
        kept_previous: false,
    };
    if let Some(previous) = previous {
        // A dictionary scores best on the very samples it was trained on
        // (it holds pieces of them), so the fresh rival is trained on half
        // of the samples and both are scored on the other half.
        let (training, held_out) = samples.halves();
        let (rival, scored) = match train(&training) {
            Some(rival) => (rival, &held_out),
            None => (choice.dictionary.clone(), samples),
        };
        let kept = score(&previous, scored)?;
        let trained = score(&rival, scored)?;
        if kept.saturating_mul(1000) <= trained.saturating_mul(KEEP_PREVIOUS_PER_MILLE) {
            choice = Choice {
                dictionary: previous,
                kept_previous: true,
            };
        }
    }
    let paying = pays(
        &choice.dictionary,
        samples,
        payload.level,
        payload.frame_len,
        payload.tar_len,
    )?;
    Ok(paying.then_some(choice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_round_trips_and_damage_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| {
                format!("def function_{}(x): return x * {}\n", i % 97, i % 13).into_bytes()
            })
            .collect();
        let sizes = vec![text.len() / 200; 200];
        let used: usize = sizes.iter().sum();
        let dict = zstd::dict::from_continuous(&text[..used], &sizes, 4096)?;
        let part = encode_part(&dict);
        assert_eq!(decode_part(&part)?, &dict[..]);

        let mut wrong_magic = part.clone();
        wrong_magic[0] ^= 1;
        assert!(
            decode_part(&wrong_magic)
                .expect_err("refused")
                .contains("skippable")
        );
        let mut wrong_len = part.clone();
        wrong_len[4] ^= 1;
        assert!(
            decode_part(&wrong_len)
                .expect_err("refused")
                .contains("declares")
        );
        let mut raw = part.clone();
        raw[8] ^= 1;
        assert!(
            decode_part(&raw)
                .expect_err("refused")
                .contains("not a zstd dictionary")
        );
        let mut tables = part.clone();
        for b in &mut tables[16..48] {
            *b = 0xff;
        }
        assert!(
            decode_part(&tables)
                .expect_err("refused")
                .contains("damaged")
        );
        assert!(check_part_len(PART_HEADER_LEN + MAX_DICTIONARY_LEN + 1).is_err());
        assert!(check_part_len(3).is_err());
        Ok(())
    }

    #[test]
    fn the_sample_plan_fits_the_budget_and_depends_only_on_sizes() {
        let sizes = vec![MAX_SAMPLE_LEN * 4; 1000];
        let plan = sample_plan(&sizes);
        let total: u64 = plan.iter().map(|&(_, len)| len).sum();
        assert!(total <= SAMPLE_BUDGET, "{total}");
        assert_eq!(plan, sample_plan(&sizes));
        assert_eq!(sample_plan(&[0, 5]), vec![(1, 5)]);
    }
}
