//! Property test: the payload check (`Sink::Discard`, what `verify` and the
//! updater run) and a real unpack (`Sink::Disk`) give the same verdict, with
//! the same reason, for arbitrary payloads of files, folders and symlinks
//! over a few names (so duplicates, clashes, links with entries below them
//! and missing or unusable entries are frequent), and hard links to any of
//! them (earlier, later, missing, folders, symlinks), cut into frames
//! anywhere.
//! When they accept, the unpacked entry is an executable regular file.
//! The same for payloads cut at any byte, inside entries, with any frames
//! marked as continuing the previous one (split files), rightly or not.
//!
//! Unix only: the payloads hold symlinks and exec bits, whose unpacking is
//! Unix behaviour (Windows has no exec bit, and its symlinks need a
//! privilege).
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use payload_tools::extract::{Sink, extract};
use payload_tools::metadata::{FormatVersion, Frame, Metadata, REQUIRES_SPLIT_FILES};
use payload_tools::{PackedFile, Trailer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Kind {
    File(bool),
    Dir,
    Link(&'static str),
    Hard(&'static str),
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..4).prop_map(|parts| parts.join("/"))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        any::<bool>().prop_map(Kind::File),
        Just(Kind::Dir),
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("c"),
            Just("../a"),
            Just("a/b"),
            Just(".")
        ]
        .prop_map(Kind::Link),
        prop_oneof![Just("a"), Just("b"), Just("a/b"), Just("c/a")].prop_map(Kind::Hard),
    ]
}

fn tar_of(entries: &[(String, Kind)], last: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind) in entries {
        let mut h = tar::Header::new_gnu();
        match kind {
            Kind::File(exec) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(3);
                builder
                    .append_data(&mut h, path, &b"hi\n"[..])
                    .expect("file");
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{path}/"), std::io::empty())
                    .expect("dir");
            }
            Kind::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                builder.append_link(&mut h, path, target).expect("link");
            }
            Kind::Hard(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                builder.append_link(&mut h, path, target).expect("link");
            }
        }
    }
    let mut bytes = builder.into_inner().expect("tar");
    if !last {
        bytes.truncate(bytes.len() - 1024);
    }
    bytes
}

/// Writes a packed file of `entries` cut at `cuts`, running `entry`.
fn write_packed(out: &Path, entries: &[(String, Kind)], cuts: &[usize], entry: &str) {
    write_frames(
        out,
        &frames_at_entries(entries, cuts),
        entries.len(),
        &[],
        entry,
    );
}

/// The tar streams of `entries` cut into frames at `cuts` (entry indexes).
fn frames_at_entries(entries: &[(String, Kind)], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (entries.len() + 1)).collect();
    bounds.extend([0, entries.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let pieces: Vec<_> = bounds.windows(2).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, w)| tar_of(&entries[w[0]..w[1]], i + 1 == pieces.len()))
        .collect()
}

/// Writes a packed file whose frames hold `tars`, with `continued` as
/// its `continued_frames`.
fn write_frames(out: &Path, tars: &[Vec<u8>], entry_count: usize, continued: &[u64], entry: &str) {
    let stub = b"stub".to_vec();
    let mut file = stub.clone();
    let mut frames = Vec::new();
    for tar in tars {
        let compressed = zstd::bulk::compress(tar, 1).expect("compress");
        frames.push(Frame {
            compressed_len: compressed.len() as u64,
            tar_len: tar.len() as u64,
        });
        file.extend_from_slice(&compressed);
    }
    let metadata = Metadata {
        format_version: FormatVersion::V1,
        requires: if continued.is_empty() {
            vec!["hard-links".into()]
        } else {
            vec![REQUIRES_SPLIT_FILES.into(), "hard-links".into()]
        },
        name: "t".into(),
        version: "1".into(),
        entry: entry.into(),
        unpacked_size: 3 * entry_count as u64,
        entry_count: entry_count as u64,
        frames,
        stub_hash: None,
        frame_hashes: Vec::new(),
        continued_frames: continued.to_vec(),
        file_times: None,
        self_test: None,
        update: None,
        argv0: Default::default(),
    }
    .to_toml();
    let payload = &file[stub.len()..];
    let trailer = Trailer {
        payload_offset: stub.len() as u64,
        payload_len: payload.len() as u64,
        metadata_offset: file.len() as u64,
        metadata_len: metadata.len() as u64,
        payload_crc32: crc32fast::hash(payload),
        metadata_crc32: crc32fast::hash(metadata.as_bytes()),
    };
    file.extend_from_slice(metadata.as_bytes());
    file.extend_from_slice(&trailer.to_bytes());
    fs::write(out, file).expect("write");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_check_and_a_real_unpack_agree(
        entries in proptest::collection::vec((path(), kind()), 1..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..3),
        entry in path(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("packed");
        write_packed(&exe, &entries, &cuts, &entry);
        let packed = PackedFile::open(&exe).expect("open").expect("packed");
        let checked = extract(&packed, Sink::Discard, 1).map_err(|e| e.to_string());
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        let unpacked = extract(&packed, Sink::Disk(&dest), 1).map_err(|e| e.to_string());
        prop_assert_eq!(&checked, &unpacked);
        if unpacked.is_ok() {
            let meta = fs::metadata(dest.join(&entry)).expect("the entry is there");
            prop_assert!(meta.is_file());
            prop_assert!(meta.permissions().mode() & 0o111 != 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_check_and_a_real_unpack_agree_on_split_frames(
        entries in proptest::collection::vec((path(), kind()), 1..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..5),
        continued in proptest::collection::vec(any::<bool>(), 5),
        entry in path(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("packed");
        let tar = tar_of(&entries, true);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (tar.len() + 1)).collect();
        bounds.extend([0, tar.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let tars: Vec<Vec<u8>> = bounds.windows(2).map(|w| tar[w[0]..w[1]].to_vec()).collect();
        let marked: Vec<u64> = (1..tars.len())
            .filter(|&i| continued[i - 1])
            .map(|i| i as u64)
            .collect();
        write_frames(&exe, &tars, entries.len(), &marked, &entry);
        let packed = PackedFile::open(&exe).expect("open").expect("packed");
        let checked = extract(&packed, Sink::Discard, 1).map_err(|e| e.to_string());
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        let unpacked = extract(&packed, Sink::Disk(&dest), 1).map_err(|e| e.to_string());
        prop_assert_eq!(&checked, &unpacked);
        // Frames that all continue each other are the plain tar stream:
        // read that way, they give the same verdict as one frame.
        let all: Vec<u64> = (1..tars.len() as u64).collect();
        if marked == all {
            let whole = dir.path().join("whole");
            write_frames(&whole, std::slice::from_ref(&tar), entries.len(), &[], &entry);
            let packed = PackedFile::open(&whole).expect("open").expect("packed");
            let one = extract(&packed, Sink::Discard, 1).map(|r| r.entries).map_err(|_| ());
            prop_assert_eq!(checked.as_ref().map(|r| r.entries).map_err(|_| ()), one);
        }
        if unpacked.is_ok() {
            let meta = fs::metadata(dest.join(&entry)).expect("the entry is there");
            prop_assert!(meta.is_file());
            prop_assert!(meta.permissions().mode() & 0o111 != 0);
        }
    }
}
