//! Hostile payloads, crafted by hand from the documented format (valid
//! checksums, so only the extraction rules stand in the way): each is
//! refused with one line, nothing runs, and nothing is left in the cache.

use std::fs;
use std::path::Path;

use tar::EntryType;

use crate::craft::{Craft, TarCraft};
use crate::support::*;

fn refused(frames: Vec<Vec<u8>>, expect: &str) {
    let s = Scratch::new();
    let exe = s.path("hostile.bin");
    Craft {
        name: "hostile".into(),
        version: "1".into(),
        entry: "bin/app".into(),
        unpacked_size: 1 << 20,
        frames,
        extra_metadata: String::new(),
    }
    .write(&stub(), &exe);
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    let msgs = messages(&out);
    assert!(msgs[0].contains(expect), "expected {expect:?}: {msgs:?}");
    // A file refused from its metadata alone never reaches the cache.
    let app_dir = s.cache().join("hostile");
    for e in fs::read_dir(&app_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".lock"), "left {name} in the cache");
    }
    assert!(!s.path("escaped").exists(), "a file escaped the cache");
    assert!(!Path::new("/tmp/onefile-escaped").exists());

    let unpack_to = s.path("unpacked");
    let out = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        unpack_to.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unpack refuses too: {}",
        stderr(&out)
    );
    assert!(!unpack_to.exists());
}

fn app() -> TarCraft {
    TarCraft::new()
        .dir("bin/")
        .file("bin/app", b"#!/bin/sh\n", 0o755)
}

#[test]
fn dot_dot_paths() {
    refused(
        vec![app().file("../../escaped", b"x", 0o644).finish(true)],
        "'..'",
    );
    refused(
        vec![app().file("bin/../../escaped", b"x", 0o644).finish(true)],
        "'..'",
    );
}

#[test]
fn absolute_paths() {
    refused(
        vec![app().file("/tmp/onefile-escaped", b"x", 0o644).finish(true)],
        "absolute",
    );
}

#[test]
fn escaping_symlinks() {
    refused(
        vec![
            app()
                .link(EntryType::Symlink, "bin/up", "../../..")
                .finish(true),
        ],
        "outside",
    );
    refused(
        vec![
            app()
                .link(EntryType::Symlink, "bin/abs", "/etc")
                .finish(true),
        ],
        "absolute",
    );
    refused(
        vec![
            app()
                .link(EntryType::Symlink, "bin/sneaky", "x/../..")
                .finish(true),
        ],
        "after a name",
    );
}

#[test]
fn writing_through_a_symlink() {
    // A link to a folder inside the tree, then a file "through" it: the
    // file would land wherever the link points once links can change.
    refused(
        vec![
            app()
                .dir("data/")
                .link(EntryType::Symlink, "lnk", "data")
                .file("lnk/file", b"x", 0o644)
                .finish(true),
        ],
        "symlink",
    );
    // The same across two frames.
    refused(
        vec![
            app().link(EntryType::Symlink, "lnk", "bin").finish(false),
            TarCraft::new()
                .link(EntryType::Symlink, "lnk/inner", "app")
                .finish(true),
        ],
        "through a symlink",
    );
}

#[test]
fn hard_links_devices_and_fifos() {
    refused(
        vec![
            app()
                .link(EntryType::Link, "bin/hard", "bin/app")
                .finish(true),
        ],
        "hard links",
    );
    refused(
        vec![app().special(EntryType::Char, "dev/null").finish(true)],
        "device",
    );
    refused(
        vec![app().special(EntryType::Block, "dev/sda").finish(true)],
        "device",
    );
    refused(
        vec![app().special(EntryType::Fifo, "fifo").finish(true)],
        "fifo",
    );
}

#[test]
fn duplicate_entries() {
    refused(
        vec![app().file("bin/app", b"again", 0o755).finish(true)],
        "twice",
    );
}

#[test]
fn more_data_than_declared() {
    let big = noise(2 << 20, 4);
    refused(
        vec![app().file("big", &big, 0o644).finish(true)],
        "more than",
    );
}

#[test]
fn setuid_bits_are_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let exe = s.path("suid.bin");
    Craft {
        name: "suid".into(),
        version: "1".into(),
        entry: "bin/probe".into(),
        unpacked_size: 1 << 30,
        frames: vec![
            TarCraft::new()
                .file("bin/probe", &fs::read(probe()).expect("probe"), 0o6755)
                .finish(true),
        ],
        extra_metadata: String::new(),
    }
    .write(&stub(), &exe);
    let out = s.run(&exe, ["print", "ok"]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let build = fs::read_dir(s.cache().join("suid"))
        .expect("list")
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("build")
        .path();
    let mode = fs::metadata(build.join("bin/probe"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "mode {mode:o}");
}
