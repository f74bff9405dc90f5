//! Property tests: for arbitrary trees, pack → open → unpack gives the tree
//! back (files, contents, exec bits, folders, inner symlinks); for arbitrary
//! field values, trailers and metadata survive encode → decode.
//!
//! The tree round trip is Unix only: it writes and compares exec bits and
//! symlinks, which Windows trees do not have (`payload-tools.exe` records
//! every file as executable). The encode → decode ones run everywhere.

#[cfg(unix)]
use std::collections::BTreeMap;
#[cfg(unix)]
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[cfg(unix)]
use payload_tools::PackedFile;
use payload_tools::Trailer;
#[cfg(unix)]
use payload_tools::digest::PartHash;
#[cfg(unix)]
use payload_tools::extract::{Sink, extract};
use payload_tools::metadata::{FormatVersion, Frame, Metadata};
#[cfg(unix)]
use payload_tools::pack::{NoProgress, PackOptions, pack};
use proptest::prelude::*;

#[cfg(unix)]
#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, bool),
    Dir(BTreeMap<String, Node>),
}

#[cfg(unix)]
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,10}".prop_filter("not . or ..", |n| {
        n != "." && n != ".." && !n.starts_with('-')
    })
}

#[cfg(unix)]
fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
    let leaf = (
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
    )
        .prop_map(|(data, exec)| Node::File(data, exec));
    let node = leaf.prop_recursive(3, 40, 6, |inner| {
        proptest::collection::btree_map(name(), inner, 0..6).prop_map(Node::Dir)
    });
    proptest::collection::btree_map(name(), node, 1..8)
}

#[cfg(unix)]
fn write(root: &Path, nodes: &BTreeMap<String, Node>) {
    for (name, node) in nodes {
        let path = root.join(name);
        match node {
            Node::File(data, exec) => {
                fs::write(&path, data).expect("write");
                let mode = if *exec { 0o755 } else { 0o644 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            }
            Node::Dir(children) => {
                fs::create_dir(&path).expect("mkdir");
                write(&path, children);
            }
        }
    }
}

#[cfg(unix)]
fn picture(root: &Path, rel: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(root).expect("list").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{rel}{}", e.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(e.path()).expect("stat");
        if meta.file_type().is_symlink() {
            out.push(format!(
                "{name} -> {}",
                fs::read_link(e.path()).expect("link").display()
            ));
        } else if meta.is_dir() {
            out.push(format!("{name}/"));
            picture(&e.path(), &format!("{name}/"), out);
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            out.push(format!(
                "{name} {} {exec}",
                crc32fast::hash(&fs::read(e.path()).expect("read"))
            ));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[cfg(unix)]
    #[test]
    fn pack_then_unpack_gives_the_tree_back(nodes in tree(), link in any::<bool>(), level in 1i32..6) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in");
        fs::create_dir(&input).expect("mkdir");
        write(&input, &nodes);
        fs::write(input.join("entry"), b"#!/bin/sh\n").expect("entry");
        if link {
            std::os::unix::fs::symlink("entry", input.join("entry-link")).expect("symlink");
        }
        let stub = dir.path().join("stub");
        fs::write(&stub, b"not really a program").expect("stub");
        let output = dir.path().join("out.bin");
        let report = pack(
            &PackOptions {
                input: input.clone(),
                output: output.clone(),
                stub,
                stub_bytes: None,
                entry: Some("entry".into()),
                name: "prop".into(),
                version: "1".into(),
                argv0: Default::default(),
                level,
                threads: 2,
                update: None,
                windows_subsystem: Default::default(),
                dictionary: Default::default(),
            },
            &mut NoProgress,
        ).expect("pack");
        let packed = PackedFile::open(&output).expect("open").expect("packed");
        prop_assert_eq!(&packed.metadata, &report.metadata);
        // The stub's and every frame's hash name their bytes in the file.
        let bytes = fs::read(&output).expect("read");
        let payload_offset = packed.trailer.payload_offset as usize;
        prop_assert_eq!(packed.metadata.stub_hash, Some(PartHash::of(&bytes[..payload_offset])));
        prop_assert_eq!(packed.metadata.frame_hashes.len(), packed.metadata.frames.len());
        let mut at = payload_offset;
        for (frame, hash) in packed.metadata.frames.iter().zip(&packed.metadata.frame_hashes) {
            let end = at + frame.compressed_len as usize;
            prop_assert_eq!(*hash, PartHash::of(&bytes[at..end]));
            at = end;
        }
        let unpacked = dir.path().join("unpacked");
        fs::create_dir(&unpacked).expect("mkdir");
        extract(&packed, Sink::Disk(&unpacked), 2).expect("extract");
        // The entry gets an exec bit from pack: compare with that applied.
        fs::set_permissions(input.join("entry"), fs::Permissions::from_mode(0o755)).expect("chmod");
        let (mut want, mut got) = (Vec::new(), Vec::new());
        picture(&input, "", &mut want);
        picture(&unpacked, "", &mut got);
        prop_assert_eq!(want, got);
    }

    #[test]
    fn trailers_round_trip(
        payload_offset in any::<u64>(), payload_len in any::<u64>(), metadata_offset in any::<u64>(),
        metadata_len in any::<u64>(), payload_crc32 in any::<u32>(), metadata_crc32 in any::<u32>(),
    ) {
        let t = Trailer { payload_offset, payload_len, metadata_offset, metadata_len, payload_crc32, metadata_crc32 };
        prop_assert_eq!(Trailer::from_bytes(&t.to_bytes()), Ok(t));
    }

    #[test]
    fn metadata_round_trips(
        name in "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,30}", version in "[0-9][a-zA-Z0-9._+-]{0,20}",
        entry in "[a-z]{1,8}(/[a-z0-9_][a-z0-9_.]{0,7}){0,3}",
        frames in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 40), 1..20),
        extra_size in 0u64..1 << 40,
    ) {
        // The frames may decode to no more than the files' bytes plus the
        // entries' headers: a declared size that allows them.
        let unpacked_size = frames.iter().map(|(_, t)| t).sum::<u64>() + extra_size;
        let m = Metadata {
            format_version: FormatVersion::V1,
            requires: vec![],
            name, version, entry, argv0: Default::default(), unpacked_size,
            entry_count: frames.len() as u64,
            frames: frames.into_iter().map(|(c, t)| Frame { compressed_len: c, tar_len: t }).collect(),
            stub_hash: None,
            frame_hashes: Vec::new(),
            continued_frames: Vec::new(),
            file_times: None,
            self_test: None,
            update: None,
        };
        prop_assert_eq!(Metadata::parse(&m.to_toml(), Path::new("x")).ok(), Some(m));
    }
}

/// Compressible pseudo-random text: words from a small vocabulary, as a
/// library's strings and code compress.
#[cfg(unix)]
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"frame ",
        b"stub ",
        b"cache\n",
        b"zstd ",
        b"tar ",
        b"0x7f3a ",
        b"update ",
        b"\x00\x01",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 8) as usize]);
        out.push((x >> 40) as u8);
    }
    out.truncate(len);
    out
}

#[cfg(unix)]
fn split_options(input: &Path, output: &Path, stub: &Path, threads: u32) -> PackOptions {
    PackOptions {
        input: input.to_owned(),
        output: output.to_owned(),
        stub: stub.to_owned(),
        stub_bytes: None,
        entry: Some("entry".into()),
        name: "split".into(),
        version: "1".into(),
        argv0: Default::default(),
        level: 3,
        threads,
        update: None,
        windows_subsystem: Default::default(),
        // Split files with a dictionary: tests/dictionary.rs.
        dictionary: payload_tools::pack::DictionaryOptions {
            enabled: false,
            previous: None,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Large files are split inside, across frames that continue each
    /// other: the build says so, the frames' hashes still name their
    /// bytes, the check accepts it, an unpack gives the tree back, and the
    /// bytes do not depend on the thread count.
    #[cfg(unix)]
    #[test]
    fn split_files_round_trip(
        // Past the largest chunk, so every one of them is split.
        sizes in proptest::collection::vec((2usize << 20) + 4096..5 << 20, 1..3),
        small in proptest::collection::vec(0usize..40_000, 0..40),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in");
        fs::create_dir_all(input.join("lib")).expect("mkdir");
        fs::write(input.join("entry"), b"#!/bin/sh\n").expect("entry");
        fs::set_permissions(input.join("entry"), fs::Permissions::from_mode(0o755)).expect("chmod");
        for (i, len) in sizes.iter().enumerate() {
            fs::write(input.join(format!("lib/big{i}.so")), text(*len, seed ^ i as u64)).expect("big");
        }
        for (i, len) in small.iter().enumerate() {
            fs::write(input.join(format!("s{i}")), text(*len, seed.wrapping_add(i as u64))).expect("small");
        }
        let stub = dir.path().join("stub");
        fs::write(&stub, b"not really a program").expect("stub");
        let output = dir.path().join("out.bin");
        let report = pack(&split_options(&input, &output, &stub, 3), &mut NoProgress).expect("pack");
        let again = dir.path().join("again.bin");
        pack(&split_options(&input, &again, &stub, 1), &mut NoProgress).expect("pack");
        let bytes = fs::read(&output).expect("read");
        prop_assert!(bytes == fs::read(&again).expect("read"), "thread count changed the output");

        let packed = PackedFile::open(&output).expect("open").expect("packed");
        prop_assert_eq!(&packed.metadata, &report.metadata);
        let m = &packed.metadata;
        prop_assert!(!m.continued_frames.is_empty());
        prop_assert!(m.requires.iter().any(|r| r == "split-files"));
        let mut at = packed.trailer.payload_offset as usize;
        for (frame, hash) in m.frames.iter().zip(&m.frame_hashes) {
            let end = at + frame.compressed_len as usize;
            prop_assert_eq!(*hash, PartHash::of(&bytes[at..end]));
            at = end;
        }
        let checked = extract(&packed, Sink::Discard, 3).expect("check");
        let unpacked = dir.path().join("unpacked");
        fs::create_dir(&unpacked).expect("mkdir");
        prop_assert_eq!(extract(&packed, Sink::Disk(&unpacked), 3).expect("extract"), checked);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        picture(&input, "", &mut want);
        picture(&unpacked, "", &mut got);
        prop_assert_eq!(want, got);
    }
}
