//! File metadata through pack and unpack: modification times, read-only
//! modes and hard links come back; the check (`Sink::Discard`) and a real
//! unpack refuse the same hostile hard links with the same reason; and two
//! packs of the same files with other times differ only in the metadata's
//! `file_times` (and what covers the metadata), never in a frame.
//!
//! Unix only: modes and inodes are Unix notions (and `pack` on Windows
//! stores every name of a file as a copy).
#![cfg(unix)]

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use payload_tools::extract::{Sink, extract};
use payload_tools::metadata::{FormatVersion, Frame, Metadata};
use payload_tools::namespace::MAX_LINKS_PER_FILE;
use payload_tools::pack::{NoProgress, PackOptions, PackReport, pack};
use payload_tools::{PackedFile, Trailer};

fn set_mtime(path: &Path, seconds: u64) {
    File::open(path)
        .expect("open")
        .set_modified(UNIX_EPOCH + Duration::from_secs(seconds))
        .expect("set mtime");
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path)
        .expect("stat")
        .modified()
        .expect("mtime")
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An app: `bin/app` (the entry), `lib/data` with two more names
/// (`lib/alias`, `share/alias`), a read-only `lib/ro` and a read-only
/// executable `bin/ro-tool`, each with its own time offset from `base`.
fn app(root: &Path, base: u64) {
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    fs::create_dir_all(root.join("lib")).expect("mkdir");
    fs::create_dir_all(root.join("share")).expect("mkdir");
    fs::write(root.join("bin/app"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(root.join("bin/app"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(root.join("lib/data"), vec![7u8; 10_000]).expect("write");
    fs::hard_link(root.join("lib/data"), root.join("lib/alias")).expect("link");
    fs::hard_link(root.join("lib/data"), root.join("share/alias")).expect("link");
    fs::write(root.join("lib/ro"), b"read me only\n").expect("write");
    fs::write(root.join("bin/ro-tool"), b"#!/bin/sh\n").expect("write");
    for (name, offset) in [
        ("bin/app", 0),
        ("lib/data", 100),
        ("lib/ro", 200),
        ("bin/ro-tool", 300),
    ] {
        set_mtime(&root.join(name), base + offset);
    }
    fs::set_permissions(root.join("lib/ro"), fs::Permissions::from_mode(0o444)).expect("chmod");
    fs::set_permissions(root.join("bin/ro-tool"), fs::Permissions::from_mode(0o555))
        .expect("chmod");
}

fn pack_app(input: &Path, output: &Path) -> PackReport {
    let stub = output.with_extension("stub");
    fs::write(&stub, b"not really a program").expect("stub");
    pack(
        &PackOptions {
            input: input.into(),
            output: output.into(),
            stub,
            stub_bytes: None,
            entry: Some("bin/app".into()),
            name: "meta".into(),
            version: "1".into(),
            argv0: Default::default(),
            level: 3,
            threads: 2,
            update: None,
            windows_subsystem: Default::default(),
            dictionary: Default::default(),
        },
        &mut NoProgress,
    )
    .expect("pack")
}

#[test]
fn times_modes_and_hard_links_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    app(&input, 1_600_000_000);
    let output = dir.path().join("out.bin");
    let report = pack_app(&input, &output);
    // The data is stored once.
    assert_eq!(report.metadata.unpacked_size, 10_000 + 10 + 13 + 10);
    assert_eq!(report.metadata.requires, ["hard-links"]);

    let packed = PackedFile::open(&output).expect("open").expect("packed");
    extract(&packed, Sink::Discard, 2).expect("check");
    let out = dir.path().join("unpacked");
    fs::create_dir(&out).expect("mkdir");
    extract(&packed, Sink::Disk(&out), 2).expect("unpack");

    for (name, time) in [
        ("bin/app", 1_600_000_000),
        ("lib/data", 1_600_000_100),
        ("lib/alias", 1_600_000_100),
        ("lib/ro", 1_600_000_200),
        ("bin/ro-tool", 1_600_000_300),
    ] {
        assert_eq!(mtime(&out.join(name)), time, "{name}");
    }
    let mode = |name: &str| {
        fs::metadata(out.join(name))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("lib/ro"), 0o444);
    assert_eq!(mode("bin/ro-tool"), 0o555);
    assert_eq!(mode("lib/data") & 0o200, 0o200);
    let inode = |name: &str| fs::metadata(out.join(name)).expect("stat").ino();
    assert_eq!(inode("lib/data"), inode("lib/alias"));
    assert_eq!(inode("lib/data"), inode("share/alias"));
    assert_eq!(fs::metadata(out.join("lib/data")).expect("stat").nlink(), 3);
}

/// The parts of a packed file: stub, payload, metadata, trailer.
fn parts(path: &Path) -> (Vec<u8>, Vec<u8>, String, Vec<u8>) {
    let bytes = fs::read(path).expect("read");
    let packed = PackedFile::open(path).expect("open").expect("packed");
    let t = packed.trailer;
    let (p, m) = (t.payload_offset as usize, t.metadata_offset as usize);
    let trailer_at = bytes.len() - 64;
    (
        bytes[..p].to_vec(),
        bytes[p..m].to_vec(),
        String::from_utf8(bytes[m..trailer_at].to_vec()).expect("UTF-8"),
        bytes[trailer_at..].to_vec(),
    )
}

#[test]
fn other_times_change_the_times_table_and_no_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    app(&one, 1_600_000_000);
    app(&two, 1_700_000_000);
    let a = pack_app(&one, &dir.path().join("a.bin"));
    let b = pack_app(&two, &dir.path().join("b.bin"));
    assert_eq!(a.metadata.frame_hashes, b.metadata.frame_hashes);
    let (stub_a, payload_a, meta_a, trailer_a) = parts(&dir.path().join("a.bin"));
    let (stub_b, payload_b, meta_b, trailer_b) = parts(&dir.path().join("b.bin"));
    assert_eq!(stub_a, stub_b);
    assert_eq!(payload_a, payload_b, "the payload changed with the times");
    // The metadata differs in its `file_times` line only...
    let differing: Vec<(&str, &str)> = meta_a
        .lines()
        .zip(meta_b.lines())
        .filter(|(x, y)| x != y)
        .collect();
    assert_eq!(differing.len(), 1, "{differing:?}");
    assert!(differing[0].0.starts_with("file_times = "), "{differing:?}");
    assert_ne!(a.metadata.file_times, b.metadata.file_times);
    // ...and the trailer in what covers the metadata: its length (when
    // the table's length differs), its CRC-32, and the trailer's own CRC.
    let fields = |t: &[u8]| Trailer::from_bytes(t.try_into().expect("64 bytes")).expect("trailer");
    let (ta, tb) = (fields(&trailer_a), fields(&trailer_b));
    assert_eq!(
        (ta.payload_offset, ta.payload_len, ta.payload_crc32),
        (tb.payload_offset, tb.payload_len, tb.payload_crc32)
    );
    assert_ne!(ta.metadata_crc32, tb.metadata_crc32);
}

// Hostile hard links, crafted: the check and a real unpack agree.

enum Entry<'a> {
    File(&'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn tar_of(entries: &[Entry<'_>], last: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        match entry {
            Entry::File(path) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(3);
                b.append_data(&mut h, path, &b"hi\n"[..]).expect("file");
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty())
                    .expect("dir");
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).expect("symlink");
            }
            Entry::Hard(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                // Written raw: the tar crate refuses some of these targets.
                h.set_path(path).expect("path");
                let name = &mut h.as_gnu_mut().expect("GNU").linkname;
                name.fill(0);
                name[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, std::io::empty()).expect("hard link");
            }
        }
    }
    let mut bytes = b.into_inner().expect("tar");
    if !last {
        bytes.truncate(bytes.len() - 1024);
    }
    bytes
}

/// A packed file of `frames`, each a list of entries, running `bin/app`.
fn write_packed(out: &Path, frames: &[&[Entry<'_>]], requires: &[&str]) {
    let stub = b"stub".to_vec();
    let mut file = stub.clone();
    let mut index = Vec::new();
    let mut entries = 0;
    for (i, entry_list) in frames.iter().enumerate() {
        entries += entry_list.len() as u64;
        let tar = tar_of(entry_list, i + 1 == frames.len());
        let compressed = zstd::bulk::compress(&tar, 1).expect("compress");
        index.push(Frame {
            compressed_len: compressed.len() as u64,
            tar_len: tar.len() as u64,
        });
        file.extend_from_slice(&compressed);
    }
    let metadata = Metadata {
        format_version: FormatVersion::V1,
        requires: requires.iter().map(|r| r.to_string()).collect(),
        name: "t".into(),
        version: "1".into(),
        entry: "bin/app".into(),
        unpacked_size: 3 * entries,
        entry_count: entries,
        frames: index,
        stub_hash: None,
        frame_hashes: Vec::new(),
        continued_frames: Vec::new(),
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

/// Checks and unpacks; both verdicts must be the same. The unpacked tree's
/// folder is returned with the verdict.
fn verdict(
    frames: &[&[Entry<'_>]],
    requires: &[&str],
) -> (Result<(), String>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("packed");
    write_packed(&exe, frames, requires);
    let packed = PackedFile::open(&exe).expect("open").expect("packed");
    let checked = extract(&packed, Sink::Discard, 2)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    let unpacked = extract(&packed, Sink::Disk(&out), 2)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(checked, unpacked, "the check and the unpack disagree");
    (unpacked, out, dir)
}

fn refused(frames: &[&[Entry<'_>]], expect: &str) {
    let (result, _, _dir) = verdict(frames, &["hard-links"]);
    let err = result.expect_err("refused");
    assert!(err.contains(expect), "expected {expect:?}: {err}");
}

const APP: Entry<'static> = Entry::File("bin/app");

#[test]
fn a_hard_link_to_an_earlier_file_is_accepted_in_any_frame() {
    let (result, out, _dir) = verdict(
        &[
            &[APP, Entry::File("lib/x")],
            &[Entry::Hard("lib/y", "lib/x")],
            &[Entry::Hard("bin/other", "bin/app")],
        ],
        &["hard-links"],
    );
    result.expect("accepted");
    let inode = |name: &str| fs::metadata(out.join(name)).expect("stat").ino();
    assert_eq!(inode("lib/x"), inode("lib/y"));
    assert_eq!(inode("bin/app"), inode("bin/other"));
}

#[test]
fn hostile_hard_links_are_refused_by_the_check_and_the_unpack_alike() {
    // Missing target.
    refused(&[&[APP, Entry::Hard("l", "nothing")]], "not in the payload");
    // A later target, in the same frame and in a later one.
    refused(
        &[&[APP, Entry::Hard("l", "later"), Entry::File("later")]],
        "does not come before",
    );
    refused(
        &[&[APP, Entry::Hard("l", "later")], &[Entry::File("later")]],
        "does not come before",
    );
    // A symlink, a folder, another hard link.
    refused(
        &[&[APP, Entry::Symlink("s", "bin/app"), Entry::Hard("l", "s")]],
        "not a regular file",
    );
    refused(
        &[&[APP, Entry::Dir("d"), Entry::Hard("l", "d")]],
        "not a regular file",
    );
    refused(
        &[&[APP, Entry::Hard("l1", "bin/app"), Entry::Hard("l2", "l1")]],
        "not a regular file",
    );
    // Escaping targets, and itself.
    refused(&[&[APP, Entry::Hard("l", "../outside")]], "'..'");
    refused(&[&[APP, Entry::Hard("l", "/etc/passwd")]], "absolute");
    refused(&[&[APP, Entry::Hard("l", "bin/")]], "folder");
    refused(&[&[APP, Entry::Hard("l", "l")]], "itself");
    // A path taken twice, or a file below a link.
    refused(
        &[&[APP, Entry::Hard("l", "bin/app"), Entry::File("l")]],
        "twice",
    );
    refused(
        &[&[APP, Entry::Hard("l", "bin/app"), Entry::File("l/x")]],
        "file and a folder",
    );
    // Without the requirement in the metadata.
    let (result, ..) = verdict(&[&[APP, Entry::Hard("l", "bin/app")]], &[]);
    let err = result.expect_err("refused");
    assert!(err.contains("requires"), "{err}");
}

#[test]
fn a_file_takes_a_bounded_number_of_links() {
    let names: Vec<String> = (0..=MAX_LINKS_PER_FILE).map(|i| format!("l{i}")).collect();
    let mut entries = vec![APP];
    entries.extend(names.iter().map(|n| Entry::Hard(n, "bin/app")));
    refused(&[&entries], "more than 1023 links");
    let (result, ..) = verdict(&[&entries[..entries.len() - 1]], &["hard-links"]);
    result.expect("1023 links are accepted");
}

#[test]
fn pack_stores_names_beyond_the_link_bound_as_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    fs::create_dir_all(input.join("bin")).expect("mkdir");
    fs::create_dir_all(input.join("n")).expect("mkdir");
    fs::write(input.join("bin/app"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(input.join("bin/app"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(input.join("n/0000"), b"shared\n").expect("write");
    for i in 1..=MAX_LINKS_PER_FILE + 2 {
        fs::hard_link(input.join("n/0000"), input.join(format!("n/{i:04}"))).expect("link");
    }
    let output = dir.path().join("out.bin");
    let report = pack_app(&input, &output);
    // The file, 1,023 links to it, and two copies.
    assert_eq!(report.metadata.unpacked_size, 10 + 3 * 7);
    let packed = PackedFile::open(&output).expect("open").expect("packed");
    let out = dir.path().join("unpacked");
    fs::create_dir(&out).expect("mkdir");
    extract(&packed, Sink::Disk(&out), 2).expect("unpack");
    let nlink = |name: &str| fs::metadata(out.join(name)).expect("stat").nlink();
    assert_eq!(nlink("n/0000"), MAX_LINKS_PER_FILE as u64 + 1);
    assert_eq!(nlink(&format!("n/{:04}", MAX_LINKS_PER_FILE + 1)), 1);
    assert_eq!(
        fs::read(out.join(format!("n/{:04}", MAX_LINKS_PER_FILE + 2))).expect("read"),
        b"shared\n"
    );
}

/// A file split across frames (read as one tar stream with its neighbours)
/// and the files around it keep their times.
#[test]
fn times_survive_a_file_split_across_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    fs::create_dir_all(input.join("bin")).expect("mkdir");
    fs::write(input.join("bin/app"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(input.join("bin/app"), fs::Permissions::from_mode(0o755)).expect("chmod");
    // Incompressible, and large enough to be split inside.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let big: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(input.join("big"), &big).expect("write");
    fs::write(input.join("c-after"), b"after\n").expect("write");
    for (name, time) in [
        ("bin/app", 1_500_000_000),
        ("big", 1_600_000_000),
        ("c-after", 1_700_000_000),
    ] {
        set_mtime(&input.join(name), time);
    }
    let output = dir.path().join("out.bin");
    let report = pack_app(&input, &output);
    assert!(
        !report.metadata.continued_frames.is_empty(),
        "the big file was not split: {:?}",
        report.metadata.frames
    );
    let packed = PackedFile::open(&output).expect("open").expect("packed");
    extract(&packed, Sink::Discard, 4).expect("check");
    let out = dir.path().join("unpacked");
    fs::create_dir(&out).expect("mkdir");
    extract(&packed, Sink::Disk(&out), 4).expect("unpack");
    assert_eq!(mtime(&out.join("bin/app")), 1_500_000_000);
    assert_eq!(mtime(&out.join("big")), 1_600_000_000);
    assert_eq!(mtime(&out.join("c-after")), 1_700_000_000);
}
