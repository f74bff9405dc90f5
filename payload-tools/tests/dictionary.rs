//! Payloads whose frames share a zstd dictionary: pack, unpack, verify and
//! the updater's check agree; a damaged or oversized dictionary is refused
//! with a clear error; packing stays deterministic; `--previous` keeps the
//! previous build's dictionary and so the frames of unchanged files.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use payload_tools::PackedFile;
use payload_tools::dictionary::{MAX_DICTIONARY_LEN, PART_HEADER_LEN};
use payload_tools::extract::{Sink, check_arriving, dictionary, extract};
use payload_tools::metadata::{Frame, Metadata, REQUIRES_SPLIT_FILES, REQUIRES_ZSTD_DICTIONARY};
use payload_tools::pack::{DictionaryOptions, NoProgress, PackOptions, PackReport, pack};
use payload_tools::rangeio::Arrival;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

const FILES: usize = 120;

/// An app whose files share what a dictionary holds and frames do not:
/// 120 files of 116 KiB (several frames), each a common 100 KiB block
/// (from `common_seed`), which every frame would otherwise store once, and
/// 16 KiB of its own. File `changed` gets other bytes of its own.
fn write_app(root: &Path, common_seed: u64, changed: Option<usize>) {
    let common = noise(common_seed, 100 * 1024);
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    fs::create_dir_all(root.join("lib")).expect("mkdir");
    fs::write(root.join("bin/app"), b"#!/bin/sh\necho hi\n").expect("write");
    for i in 0..FILES {
        let seed = if changed == Some(i) { 1000 + i } else { 10 + i } as u64;
        let mut data = common.clone();
        data.extend(noise(seed, 16 * 1024));
        fs::write(root.join(format!("lib/part{i:02}.dat")), data).expect("write");
    }
}

fn options(input: &Path, output: &Path, stub: &Path, threads: u32) -> PackOptions {
    PackOptions {
        input: input.into(),
        output: output.into(),
        stub: stub.into(),
        stub_bytes: None,
        entry: Some("bin/app".into()),
        name: "dict".into(),
        version: "1".into(),
        argv0: Default::default(),
        level: 3,
        threads,
        update: None,
        windows_subsystem: Default::default(),
        dictionary: DictionaryOptions::default(),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    app: PathBuf,
    stub: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let app = root.join("app");
    write_app(&app, 1, None);
    let stub = root.join("stub");
    fs::write(&stub, vec![1u8; 5000]).expect("write");
    Setup {
        _dir: dir,
        root,
        app,
        stub,
    }
}

fn pack_to(
    setup: &Setup,
    name: &str,
    opts: impl FnOnce(&mut PackOptions),
) -> (PathBuf, PackReport) {
    let output = setup.root.join(name);
    let mut o = options(&setup.app, &output, &setup.stub, 2);
    opts(&mut o);
    let report = pack(&o, &mut NoProgress).expect("pack");
    (output, report)
}

/// A file that is already complete, seen through the updater's reader.
struct Complete(u64);

impl Arrival for Complete {
    fn wait_beyond(&self, offset: u64) -> io::Result<u64> {
        if offset < self.0 {
            Ok(self.0)
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "ended"))
        }
    }
}

fn check_all(path: &Path) -> payload_tools::Result<u64> {
    let packed = PackedFile::open(path)?.expect("packed");
    extract(&packed, Sink::Discard, 2)?;
    let len = fs::metadata(path).expect("stat").len();
    Ok(check_arriving(&packed, 2, &Complete(len))?.bytes)
}

#[test]
fn a_dictionary_build_round_trips_and_is_smaller() {
    let setup = setup();
    let (with, report) = pack_to(&setup, "with.bin", |_| {});
    let (without, plain) = pack_to(&setup, "without.bin", |o| o.dictionary.enabled = false);

    let used = report.dictionary.expect("a dictionary pays for this app");
    assert!(!used.kept_previous);
    let m = &report.metadata;
    assert_eq!(m.requires, vec![REQUIRES_ZSTD_DICTIONARY.to_owned()]);
    assert_eq!(m.frames[0].tar_len, 0);
    assert_eq!(
        m.frames[0].compressed_len,
        used.len as u64 + PART_HEADER_LEN
    );
    assert!(m.frames.len() >= 4, "{:?}", m.frames);
    assert!(plain.dictionary.is_none() && plain.metadata.requires.is_empty());
    assert!(
        report.trailer.payload_len < plain.trailer.payload_len,
        "{} with a dictionary, {} without",
        report.trailer.payload_len,
        plain.trailer.payload_len
    );

    // The dictionary is a part of its own: its hash is the first frame hash.
    let bytes = fs::read(&with).expect("read");
    let start = report.trailer.payload_offset as usize;
    let part = &bytes[start..start + m.frames[0].compressed_len as usize];
    assert_eq!(m.frame_hashes[0], payload_tools::digest::PartHash::of(part));

    for path in [&with, &without] {
        assert_eq!(
            check_all(path).expect("checks"),
            FILES as u64 * 116 * 1024 + 18
        );
        let out = setup.root.join(format!("{}.out", path.display()));
        fs::create_dir(&out).expect("mkdir");
        let packed = PackedFile::open(path).expect("open").expect("packed");
        extract(&packed, Sink::Disk(&out), 3).expect("unpack");
        for i in [0, 31, FILES - 1] {
            let name = format!("lib/part{i:02}.dat");
            assert_eq!(
                fs::read(out.join(&name)).expect("read"),
                fs::read(setup.app.join(&name)).expect("read")
            );
        }
    }
}

#[test]
fn packing_with_a_dictionary_is_deterministic_on_any_thread_count() {
    let setup = setup();
    let (one, _) = pack_to(&setup, "one.bin", |o| o.threads = 1);
    let (three, _) = pack_to(&setup, "three.bin", |o| o.threads = 3);
    assert_eq!(fs::read(one).expect("read"), fs::read(three).expect("read"));
}

/// Damages `path` at `offset` (the CRCs then disagree too; the dictionary
/// is checked, and refused, before them).
fn damage(path: &Path, offset: usize, bytes: &[u8]) {
    let mut data = fs::read(path).expect("read");
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).expect("write");
}

#[test]
fn a_damaged_dictionary_is_refused_with_a_clear_error() {
    let setup = setup();
    let (good, report) = pack_to(&setup, "good.bin", |_| {});
    let start = report.trailer.payload_offset as usize;
    let cases: [(&str, usize, &[u8], &str); 3] = [
        ("magic", start, b"\0", "skippable frame"),
        ("length", start + 4, b"\x07", "declares"),
        (
            "dictionary",
            start + 8,
            b"\0\0\0\0",
            "not a zstd dictionary",
        ),
    ];
    for (what, offset, bytes, expected) in cases {
        let bad = setup.root.join(format!("bad-{what}.bin"));
        fs::copy(&good, &bad).expect("copy");
        damage(&bad, offset, bytes);
        let err = check_all(&bad).expect_err(what).to_string();
        assert!(err.contains(expected), "{what}: {err}");
        assert!(!err.contains('\n'), "{err}");
        let packed = PackedFile::open(&bad).expect("open").expect("packed");
        assert!(dictionary(&packed).is_err());
    }
}

/// Both features at once: the dictionary part is frame 0, a large file is
/// split into frames that continue each other, compressed with the
/// dictionary like every other frame, and the runs never include the
/// dictionary part.
#[test]
fn a_split_file_and_a_dictionary_work_together() {
    let setup = setup();
    let big = noise(77, 3 << 20);
    fs::write(setup.app.join("lib/big.so"), &big).expect("write");
    let (path, report) = pack_to(&setup, "split.bin", |_| {});
    let (again, _) = pack_to(&setup, "split-again.bin", |o| o.threads = 1);
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes, fs::read(again).expect("read"));

    report.dictionary.expect("a dictionary pays for this app");
    let m = &report.metadata;
    assert_eq!(
        m.requires,
        vec![
            REQUIRES_SPLIT_FILES.to_owned(),
            REQUIRES_ZSTD_DICTIONARY.to_owned()
        ]
    );
    assert_eq!(m.frames[0].tar_len, 0);
    assert!(m.continued_frames.len() >= 2, "{:?}", m.continued_frames);
    assert!(m.continued_frames.iter().all(|&i| i >= 2));
    let runs = m.frame_runs();
    assert_eq!(runs.first().map(|r| r.start), Some(1));
    assert_eq!(runs.last().map(|r| r.end), Some(m.frames.len()));
    assert!(runs.iter().any(|r| r.len() > 2), "{runs:?}");

    // Every part, the dictionary's and the split file's chunks, is named
    // by its hash; the chunks need the dictionary to decode.
    let mut at = report.trailer.payload_offset as usize;
    for (frame, hash) in m.frames.iter().zip(&m.frame_hashes) {
        let end = at + frame.compressed_len as usize;
        assert_eq!(*hash, payload_tools::digest::PartHash::of(&bytes[at..end]));
        at = end;
    }
    let chunk = m.continued_frames[0] as usize;
    let start = report.trailer.payload_offset
        + m.frames[..chunk]
            .iter()
            .map(|f| f.compressed_len)
            .sum::<u64>();
    let compressed = &bytes[start as usize..][..m.frames[chunk].compressed_len as usize];
    assert!(zstd::stream::decode_all(compressed).is_err());

    assert_eq!(
        check_all(&path).expect("checks"),
        FILES as u64 * 116 * 1024 + 18 + big.len() as u64
    );
    let out = setup.root.join("split.out");
    fs::create_dir(&out).expect("mkdir");
    let packed = PackedFile::open(&path).expect("open").expect("packed");
    extract(&packed, Sink::Disk(&out), 3).expect("unpack");
    assert!(fs::read(out.join("lib/big.so")).expect("read") == big);
}

fn metadata_with_dictionary_part(len: u64) -> Metadata {
    let text = format!(
        "format_version = 1\nrequires = [\"zstd-dictionary\"]\nname = \"a\"\nversion = \"1\"\nentry = \"a\"\nunpacked_size = 10\nentry_count = 1\nframes = [[{len}, 0], [100, 1536]]\n"
    );
    Metadata::parse(&text, Path::new("x")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_oversized_or_misplaced_dictionary_is_refused_from_the_metadata() {
    let most = PART_HEADER_LEN + MAX_DICTIONARY_LEN;
    let ok = metadata_with_dictionary_part(most);
    assert_eq!(
        ok.frames[0],
        Frame {
            compressed_len: most,
            tar_len: 0
        }
    );

    let mut text = ok.to_toml();
    text = text.replace(&format!("[{most}, 0]"), &format!("[{}, 0]", most + 1));
    let err = Metadata::parse(&text, Path::new("x"))
        .expect_err("too large")
        .to_string();
    assert!(err.contains("larger than"), "{err}");

    // The first frame must be the dictionary, and something must follow it.
    for frames in ["[[100, 0]]", "[[100, 1536], [100, 0]]"] {
        let text = ok
            .to_toml()
            .replace(&format!("[[{most}, 0], [100, 1536]]"), frames);
        let err = Metadata::parse(&text, Path::new("x"))
            .expect_err(frames)
            .to_string();
        assert!(err.contains("first frame must be the dictionary"), "{err}");
    }

    // The first frame of tar, after the dictionary part, continues nothing.
    let three = ok.to_toml().replace(
        &format!("[[{most}, 0], [100, 1536]]"),
        &format!("[[{most}, 0], [100, 1024], [100, 512]]"),
    );
    let split = |continued: &str| {
        let text = three.replace(
            "requires = [\"zstd-dictionary\"]",
            &format!(
                "requires = [\"split-files\", \"zstd-dictionary\"]\ncontinued_frames = {continued}"
            ),
        );
        Metadata::parse(&text, Path::new("x"))
    };
    assert_eq!(
        split("[2]")
            .expect("frame 2 continues frame 1")
            .frame_runs(),
        vec![1..3]
    );
    for bad in ["[1]", "[0]", "[3]"] {
        let err = split(bad).expect_err(bad).to_string();
        assert!(err.contains("from 2 to 2"), "{bad}: {err}");
    }
}

fn frame_hashes(report: &PackReport) -> Vec<String> {
    report
        .metadata
        .frame_hashes
        .iter()
        .map(|h| h.to_string())
        .collect()
}

#[test]
fn previous_keeps_the_dictionary_and_the_frames_of_unchanged_files() {
    let setup = setup();
    let (old, v1) = pack_to(&setup, "v1.bin", |_| {});
    // One file changes.
    write_app(&setup.app, 1, Some(45));
    let (_, kept) = pack_to(&setup, "v2.bin", |o| {
        o.dictionary.previous = Some(old.clone())
    });

    assert!(kept.dictionary.expect("dictionary").kept_previous);
    let old_hashes: HashSet<String> = frame_hashes(&v1).into_iter().collect();
    let reused = |r: &PackReport| {
        frame_hashes(r)
            .iter()
            .filter(|h| old_hashes.contains(*h))
            .count()
    };
    let kept_frames = kept.metadata.frames.len();
    // Every frame but the one holding the changed file is the same bytes,
    // the dictionary part included.
    assert_eq!(frame_hashes(&kept)[0], frame_hashes(&v1)[0]);
    assert_eq!(reused(&kept), kept_frames - 1, "{kept_frames} frames");

    // The dictionary of an app whose content has moved on is replaced.
    let other = setup.root.join("other");
    write_app(&other, 2, None);
    let (unrelated, _) = pack_to(&setup, "other.bin", |o| o.input = other.clone());
    let (_, replaced) = pack_to(&setup, "v2-replaced.bin", |o| {
        o.dictionary.previous = Some(unrelated.clone())
    });
    assert!(!replaced.dictionary.expect("dictionary").kept_previous);
    // ...which changes every frame: what keeping it avoids.
    assert_eq!(reused(&replaced), 0);

    // A previous build that is not a packed file is refused.
    let err = pack(
        &PackOptions {
            dictionary: DictionaryOptions {
                enabled: true,
                previous: Some(setup.stub.clone()),
            },
            ..options(&setup.app, &setup.root.join("v3.bin"), &setup.stub, 1)
        },
        &mut NoProgress,
    )
    .expect_err("not a packed file")
    .to_string();
    assert!(err.contains("previous build"), "{err}");
}
