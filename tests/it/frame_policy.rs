//! Frames that change only where the content changed: two builds of a
//! 40 MB tree (a thousand small files and an 8 MB library) that differ by
//! one file, by 100 bytes inside the library, or by a file added, removed
//! or renamed share all but a few compressed frames, so an update fetches
//! a few percent of the build (what the updater fetches is every frame
//! whose hash the running build does not hold, plus the metadata and the
//! trailer; the stub is reused). And a build whose files are split across
//! frames runs, verifies and unpacks like any other.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::support::{
    Scratch, frame_bytes, inspect, pack, skip, snapshot, stderr, tools, write_file,
};

/// What a release stub weighs (it is reused by an update when unchanged,
/// but counts in the size of the build): the debug stub the tests pack
/// is three times larger and would make every share look smaller.
const RELEASE_STUB: u64 = 2_049_872;

/// What an update looks at in a build.
struct Build {
    exe: std::path::PathBuf,
    /// The compressed frames, as written: an update copies those the
    /// running build holds (it names them by their hash, `frame_hashes`).
    frames: Vec<Vec<u8>>,
    /// The metadata's text.
    metadata: String,
    /// Payload, metadata and trailer: the build without its stub.
    payload_and_after: u64,
    unpacked_size: u64,
}

impl Build {
    fn read(exe: &Path) -> Build {
        let info = inspect(exe);
        let field = |name: &str| info[name].as_u64().expect(name) as usize;
        let bytes = fs::read(exe).expect("read");
        let (offset, len) = (field("metadata_offset"), field("metadata_len"));
        let metadata = String::from_utf8(bytes[offset..offset + len].to_vec()).expect("UTF-8");
        Build {
            exe: exe.to_owned(),
            frames: frame_bytes(exe),
            metadata,
            payload_and_after: (field("file_len") - field("payload_offset")) as u64,
            unpacked_size: field("unpacked_size") as u64,
        }
    }

    /// Frames and bytes an update from `old` to this build fetches: the
    /// frames `old` does not hold, the metadata and the trailer.
    fn fetched_from(&self, old: &Build) -> (usize, u64) {
        let held: HashSet<&[u8]> = old.frames.iter().map(Vec::as_slice).collect();
        let new: Vec<u64> = self
            .frames
            .iter()
            .filter(|f| !held.contains(f.as_slice()))
            .map(|f| f.len() as u64)
            .collect();
        let frames_len: u64 = new.iter().sum();
        (new.len(), frames_len + self.metadata.len() as u64 + 64)
    }

    /// The whole build with a release stub.
    fn size(&self) -> u64 {
        RELEASE_STUB + self.payload_and_after
    }

    fn requires_split_files(&self) -> bool {
        toml_strings(&self.metadata, "requires").contains(&"split-files".to_owned())
    }
}

/// The strings of the one-line array `key = [...]` of a TOML text.
fn toml_strings(text: &str, key: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|l| l.starts_with(&format!("{key} = ["))) else {
        return Vec::new();
    };
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Deterministic text-like bytes (words of a small vocabulary, some noise),
/// compressing about as well as an app's files do.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = next();
        // 1,024 words of 3 to 10 letters, then a separator.
        let word = r % 1024;
        let letters = 3 + (word % 8) as usize;
        out.extend((0..letters).map(|i| b'a' + ((word >> i) as u8 % 26)));
        out.push(if r >> 60 == 0 { b'\n' } else { b' ' });
        if (r >> 32) % 16 == 0 {
            out.extend_from_slice(&(next() as u32).to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The library: 8 MB, half text (strings, symbols), half noise-like code.
fn library(seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 << 20);
    for block in 0..128u64 {
        let mut piece = content(64 << 10, seed ^ block);
        if block % 2 == 1 {
            for (i, b) in piece.iter_mut().enumerate() {
                *b ^= (i as u64).wrapping_mul(block + seed) as u8;
            }
        }
        out.extend_from_slice(&piece);
    }
    out
}

/// The probe app with about 40 MB more: 1,000 files of 1 to 64 KB in 40
/// folders, and `lib/libbig.so` of 8 MB.
fn big_tree(s: &Scratch) -> std::path::PathBuf {
    let app = s.probe_app("app", "1.0");
    for i in 0..1000u64 {
        let len = 1024 + (i * 7919 % 63) as usize * 1024;
        write_file(
            &app.join(format!("share/d{:02}/f{i:04}.txt", i % 40)),
            &content(len, i),
            false,
        );
    }
    write_file(&app.join("lib/libbig.so"), &library(1), false);
    app
}

fn packed(s: &Scratch, app: &Path, name: &str) -> Build {
    let exe = s.path(name);
    pack(app, &exe, &["--version", "1.0"]);
    Build::read(&exe)
}

/// Checks that the update from `old` to `new` fetches at most `most` of the
/// build, and says what it fetches.
fn assert_fetch(case: &str, old: &Build, new: &Build, most: f64) {
    let (frames, bytes) = new.fetched_from(old);
    let share = bytes as f64 / new.size() as f64;
    eprintln!(
        "{case}: {frames} of {} frames changed, {bytes} of {} bytes to fetch ({:.2}%)",
        new.frames.len(),
        new.size(),
        share * 100.0
    );
    assert!(
        share <= most,
        "{case}: {frames} frames, {bytes} bytes, {:.2}% of the build, more than {:.0}%",
        share * 100.0,
        most * 100.0
    );
    // What the updater plans (it may also fetch short stretches between
    // missing frames, to save requests) stays under the same bound.
    let out = tools([
        "inspect".as_ref(),
        new.exe.as_os_str(),
        "--against".as_ref(),
        old.exe.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let planned = plan["fetched_bytes"].as_u64().expect("fetched_bytes");
    let share = planned as f64 / new.size() as f64;
    eprintln!(
        "  the updater's plan: {planned} bytes ({:.2}%) in {} requests",
        share * 100.0,
        plan["requests"]
    );
    assert!(planned >= bytes, "{plan:#}");
    assert!(share <= most, "{case}: {plan:#}");
}

#[test]
fn an_update_fetches_only_the_frames_around_a_change() {
    let s = Scratch::new();
    let app = big_tree(&s);
    let v1 = packed(&s, &app, "v1.bin");
    assert!(
        v1.unpacked_size > 40 << 20,
        "{} bytes of files",
        v1.unpacked_size
    );

    // One 20 KB file changed (same length, other content).
    let changed = app.join("share/d23/f0503.txt");
    assert_eq!(fs::metadata(&changed).expect("stat").len(), 20 * 1024);
    write_file(&changed, &content(20 * 1024, 5000), false);
    let v2 = packed(&s, &app, "v2.bin");
    assert_fetch("one 20 KB file changed", &v1, &v2, 0.02);

    // 100 bytes inserted in the middle of the library.
    let mut lib = library(1);
    let middle = lib.len() / 2 + 12_345;
    lib.splice(middle..middle, content(100, 77));
    write_file(&app.join("lib/libbig.so"), &lib, false);
    let v3 = packed(&s, &app, "v3.bin");
    assert_fetch("100 bytes inserted in the 8 MB library", &v2, &v3, 0.05);
    assert_fetch("two releases back", &v1, &v3, 0.07);

    // 100 bytes overwritten, same length.
    lib[1 << 20..(1 << 20) + 100].copy_from_slice(&content(100, 78));
    write_file(&app.join("lib/libbig.so"), &lib, false);
    let v4 = packed(&s, &app, "v4.bin");
    assert_fetch("100 bytes overwritten in the library", &v3, &v4, 0.05);

    // A file added, one removed, one renamed.
    write_file(
        &app.join("share/d22/new-file.txt"),
        &content(20 * 1024, 9000),
        false,
    );
    let added = packed(&s, &app, "added.bin");
    assert_fetch("a 20 KB file added", &v4, &added, 0.02);
    fs::remove_file(app.join("share/d05/f0605.txt")).expect("remove");
    let removed = packed(&s, &app, "removed.bin");
    assert_fetch("a file removed", &added, &removed, 0.02);
    fs::rename(
        app.join("share/d31/f0311.txt"),
        app.join("share/d31/renamed.txt"),
    )
    .expect("rename");
    let renamed = packed(&s, &app, "renamed.bin");
    assert_fetch("a file renamed", &removed, &renamed, 0.02);
}

#[test]
fn a_build_with_split_files_runs_verifies_and_unpacks() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("lib/libbig.so"), &library(3), false);
    let exe = s.path("app.bin");
    pack(&app, &exe, &["--version", "1.0"]);
    let build = Build::read(&exe);
    assert!(build.requires_split_files(), "{}", build.metadata);
    // The library alone spans several frames (chunks of at most 2 MiB).
    assert!(build.frames.len() >= 6, "{} frames", build.frames.len());

    // The probe itself (several MB) is split too: it runs.
    let out = s.run(&exe, ["print", "split and whole"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "split and whole\n");

    let verify = tools(["verify".as_ref(), exe.as_os_str()]);
    assert!(verify.status.success(), "{}", stderr(&verify));

    let unpacked = s.path("unpacked");
    let out = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        unpacked.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let picture = |root: &Path| {
        snapshot(root)
            .into_iter()
            // pack makes the entry executable; nothing else differs.
            .filter(|(path, _)| path != "bin/probe")
            .collect::<Vec<_>>()
    };
    assert_eq!(picture(&unpacked), picture(&app));
}

/// A stub that predates split files refuses such a build, naming what it
/// lacks, instead of misreading it. Needs such a stub: `ONEFILE_OLD_STUB`.
#[test]
fn an_older_stub_refuses_a_split_build() {
    let Some(old_stub) = std::env::var_os("ONEFILE_OLD_STUB") else {
        skip("ONEFILE_OLD_STUB (a bootstrap from before split files) is not set");
        return;
    };
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        "--stub".as_ref(),
        old_stub.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
        "--name".as_ref(),
        "probeapp".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Build::read(&exe).requires_split_files());
    let out = s.run(&exe, ["print", "must not run"]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert!(err.contains("split-files"), "{err}");
}
