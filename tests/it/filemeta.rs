//! File metadata that apps rely on (issue 12): a packed app finds its
//! files with the modification times, the read-only modes and the hard
//! links they were packed with; the cache still cleans up builds holding
//! read-only files; and stubs that predate hard links refuse a build that
//! has them, by name.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::support::*;

/// An app whose entry, `bin/run`, prints `NAME MTIME MODE INODE` for each
/// file of its `lib/` folder, as the app itself sees them.
fn stat_app(root: &Path) {
    write_file(
        &root.join("bin/run"),
        b"#!/bin/sh\ncd \"$(dirname \"$0\")/../lib\" && stat -c '%n %Y %a %i' *\n",
        true,
    );
}

fn set_mtime(path: &Path, seconds: u64) {
    File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .expect("open")
        .set_modified(UNIX_EPOCH + Duration::from_secs(seconds))
        .expect("set mtime");
}

/// Runs the packed stat app; its lines, by file name.
fn stat_in_app(s: &Scratch, exe: &Path) -> Vec<(String, u64, String, u64)> {
    let out = s.run(exe, [] as [&str; 0]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 4, "{line}");
            (
                f[0].to_owned(),
                f[1].parse().expect("mtime"),
                f[2].to_owned(),
                f[3].parse().expect("inode"),
            )
        })
        .collect()
}

fn pack_stat_app(input: &Path, output: &Path, version: &str) {
    pack(
        input,
        output,
        &["--entry", "bin/run", "--name", "meta", "--version", version],
    );
}

#[test]
fn a_packed_app_sees_its_files_times() {
    let s = Scratch::new();
    let app = s.path("app");
    stat_app(&app);
    write_file(&app.join("lib/old"), b"old\n", false);
    write_file(&app.join("lib/new"), b"new\n", false);
    set_mtime(&app.join("lib/old"), 1_000_000_000);
    set_mtime(&app.join("lib/new"), 1_700_000_123);
    let exe = s.path("app.bin");
    pack_stat_app(&app, &exe, "1");
    let seen = stat_in_app(&s, &exe);
    let time_of = |name: &str| {
        seen.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, t, ..)| *t)
            .expect("listed")
    };
    assert_eq!(time_of("old"), 1_000_000_000, "{seen:?}");
    assert_eq!(time_of("new"), 1_700_000_123, "{seen:?}");
}

#[test]
fn python_runs_the_shipped_bytecode_without_recompiling() {
    let s = Scratch::new();
    let app = s.path("app");
    let lib = app.join("lib");
    fs::create_dir_all(&lib).expect("mkdir");
    // The bytecode is compiled from a source that says "pyc"; the source
    // shipped says "src", with the same size and time. Python runs the
    // bytecode only if the source's time is the one it was compiled from;
    // otherwise it compiles the source again (and, with
    // PYTHONDONTWRITEBYTECODE, at every launch): the app's output says
    // which one ran, no timer needed.
    let source = lib.join("mark.py");
    fs::write(&source, "MARK = 'pyc'\n").expect("write");
    set_mtime(&source, 1_650_000_000);
    let compiled = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True, \
             invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)",
        )
        .arg(&source)
        .env_remove("SOURCE_DATE_EPOCH")
        .status();
    match compiled {
        Ok(status) => assert!(status.success(), "py_compile failed"),
        Err(_) => return skip("python3 is not installed"),
    }
    fs::write(&source, "MARK = 'src'\n").expect("write");
    set_mtime(&source, 1_650_000_000);
    let cached: Vec<PathBuf> = fs::read_dir(lib.join("__pycache__"))
        .expect("__pycache__")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    write_file(
        &app.join("bin/run"),
        b"#!/bin/sh\nexport PYTHONDONTWRITEBYTECODE=1\nexec python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import mark; print(mark.MARK)' \"$(dirname \"$0\")/../lib\"\n",
        true,
    );
    let exe = s.path("py.bin");
    pack(
        &app,
        &exe,
        &["--entry", "bin/run", "--name", "py", "--version", "1"],
    );
    for launch in ["cold", "warm"] {
        let out = s.run(&exe, [] as [&str; 0]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            "pyc",
            "{launch} launch: Python recompiled the source, so it saw another time"
        );
    }
}

#[test]
fn a_read_only_file_stays_read_only_and_its_build_is_still_removed() {
    let s = Scratch::new();
    let app = s.path("app");
    stat_app(&app);
    write_file(&app.join("lib/ro"), b"do not change\n", false);
    write_file(&app.join("lib/rw"), b"change me\n", false);
    fs::set_permissions(app.join("lib/ro"), fs::Permissions::from_mode(0o444)).expect("chmod");
    let v1 = s.path("v1.bin");
    pack_stat_app(&app, &v1, "1");
    let seen = stat_in_app(&s, &v1);
    let mode_of = |name: &str| {
        seen.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, _, m, _)| m.clone())
            .expect("listed")
    };
    assert_eq!(mode_of("ro"), "444", "{seen:?}");
    assert_eq!(mode_of("rw"), "644", "{seen:?}");
    let builds = |prefix: &str| -> Vec<String> {
        fs::read_dir(s.cache().join("meta"))
            .expect("app cache")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && !n.ends_with(".lock"))
            .collect()
    };
    assert_eq!(builds("1-").len(), 1);

    // A later build's launch removes the first build, read-only file and
    // all, once nothing holds it.
    let v2 = s.path("v2.bin");
    pack_stat_app(&app, &v2, "2");
    let out = s.run(&v2, [] as [&str; 0]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Removed unused build '1-"),
        "{}",
        stderr(&out)
    );
    assert_eq!(builds("1-"), Vec::<String>::new());
    assert!(builds(".trash-").is_empty(), "{:?}", builds(".trash-"));
}

#[test]
fn hard_links_come_out_as_one_file() {
    let s = Scratch::new();
    let app = s.path("app");
    stat_app(&app);
    let data = noise(64 * 1024, 12);
    write_file(&app.join("lib/one"), &data, false);
    fs::hard_link(app.join("lib/one"), app.join("lib/two")).expect("link");
    fs::hard_link(app.join("lib/one"), app.join("lib/three")).expect("link");
    write_file(&app.join("lib/copy"), &data, false);
    let exe = s.path("links.bin");
    pack_stat_app(&app, &exe, "1");
    // Stored once: the payload holds the data once, not three times.
    let info = inspect(&exe);
    let script = fs::metadata(app.join("bin/run")).expect("stat").len();
    assert_eq!(
        info["unpacked_size"].as_u64(),
        Some(script + 2 * data.len() as u64), // the file and its copy
        "{info}"
    );
    let seen = stat_in_app(&s, &exe);
    let inode_of = |name: &str| {
        seen.iter()
            .find(|(n, ..)| n == name)
            .map(|(.., i)| *i)
            .expect("listed")
    };
    assert_eq!(inode_of("one"), inode_of("two"), "{seen:?}");
    assert_eq!(inode_of("one"), inode_of("three"), "{seen:?}");
    assert_ne!(inode_of("one"), inode_of("copy"), "{seen:?}");
    let build = fs::read_dir(s.cache().join("meta"))
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("the build");
    let meta = fs::metadata(build.join("lib/two")).expect("stat");
    assert_eq!(meta.nlink(), 3);
    assert_eq!(fs::read(build.join("lib/three")).expect("read"), data);
}

/// The `requires` of a packed file's metadata.
fn requires(exe: &Path) -> Vec<String> {
    let info = inspect(exe);
    let offset = info["metadata_offset"].as_u64().expect("offset") as usize;
    let len = info["metadata_len"].as_u64().expect("len") as usize;
    let bytes = fs::read(exe).expect("read");
    let text = std::str::from_utf8(&bytes[offset..offset + len]).expect("UTF-8");
    // `pack` writes it on one line of quoted names: `requires = ["a", "b"]`.
    text.lines()
        .find_map(|l| l.strip_prefix("requires = ["))
        .map(|rest| {
            rest.trim_end_matches(']')
                .split(',')
                .map(|n| n.trim().trim_matches('"').to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A build with hard links names the feature in `requires`, so that a stub
/// that predates it refuses the build by that name (its updater, the new
/// build before installing it); a build without them does not, and stays
/// readable by every older stub. `ONEFILE_OLD_STUB`, if set, names such a
/// stub (a `bootstrap` built before hard links), run for real.
#[test]
fn a_build_with_hard_links_requires_them_by_name() {
    let s = Scratch::new();
    let app = s.path("app");
    stat_app(&app);
    write_file(&app.join("lib/one"), b"one\n", false);
    let plain = s.path("plain.bin");
    pack_stat_app(&app, &plain, "1");
    assert_eq!(requires(&plain), Vec::<String>::new());

    fs::hard_link(app.join("lib/one"), app.join("lib/two")).expect("link");
    let linked = s.path("linked.bin");
    pack_stat_app(&app, &linked, "1");
    assert_eq!(requires(&linked), ["hard-links"]);

    let Some(old_stub) = std::env::var_os("ONEFILE_OLD_STUB") else {
        return;
    };
    let old = s.path("old-stub.bin");
    let packed = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        old.as_os_str(),
        "--stub".as_ref(),
        old_stub.as_os_str(),
        "--entry".as_ref(),
        "bin/run".as_ref(),
        "--name".as_ref(),
        "meta".as_ref(),
    ]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    let out = s.run(&old, [] as [&str; 0]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    assert!(
        messages(&out)[0].contains("'hard-links'"),
        "{}",
        stderr(&out)
    );
}
