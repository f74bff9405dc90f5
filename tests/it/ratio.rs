//! Builds whose frames share a zstd dictionary (docs/format.md,
//! "Dictionary"): the packed app runs, an update from one dictionary build
//! to the next installs, `--previous` keeps the dictionary part and the
//! frames of unchanged files, and a stub that predates dictionaries refuses
//! such a build by its `requires`.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::nginx::Nginx;
use crate::support::*;
use crate::update::{NAME, pack_version};

/// Files a dictionary pays for: each holds a common 100 KiB block (which
/// every frame would otherwise store once) and 16 KiB of its own; file
/// `changed` has other bytes of its own.
fn add_shared_files(app: &Path, changed: Option<u64>) {
    let common = noise(100 * 1024, 1);
    fs::create_dir_all(app.join("lib")).expect("mkdir");
    for i in 0..120u64 {
        let mut data = common.clone();
        let seed = if changed == Some(i) { 1000 + i } else { 10 + i };
        data.extend(noise(16 * 1024, seed));
        fs::write(app.join(format!("lib/part{i:03}.dat")), data).expect("write");
    }
}

fn frame_hashes(exe: &Path) -> Vec<String> {
    inspect(exe)["frame_hashes"]
        .as_array()
        .expect("frame_hashes")
        .iter()
        .map(|h| h.as_str().expect("hash").to_owned())
        .collect()
}

fn requires(exe: &Path) -> Vec<String> {
    inspect(exe)["requires"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|f| f.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_dictionary_build_runs_and_updates_to_the_next_one() {
    let s = Scratch::new();
    let site = s.path("site");
    fs::create_dir_all(&site).expect("mkdir");
    let Some(nginx) = Nginx::start(&site, &s.path("nginx")) else {
        return skip("nginx is not installed (make deps installs it)");
    };
    let level = ["--level", "3"];
    let (v10, _) = pack_version(&s, nginx.port, "1.0", &level, |app| {
        add_shared_files(app, None)
    });
    let site10 = s.path(&format!("site/1.0/{NAME}.bin"));
    let previous = site10.to_str().expect("utf8");
    let (v11, _) = pack_version(
        &s,
        nginx.port,
        "1.1",
        &["--level", "3", "--previous", previous],
        |app| add_shared_files(app, Some(70)),
    );
    let site11 = s.path(&format!("site/1.1/{NAME}.bin"));
    // The probe, a large file, is split too (`split-files`): its chunks
    // are compressed with the dictionary like every other frame.
    for exe in [&site10, &site11] {
        assert_eq!(
            requires(exe),
            ["split-files", "zstd-dictionary"],
            "{}",
            exe.display()
        );
    }
    // 1.1 keeps 1.0's dictionary part and every frame but the two that
    // changed: bin/version.txt's and lib/part070.dat's.
    let (old, new) = (frame_hashes(&site10), frame_hashes(&site11));
    assert_eq!(old[0], new[0], "the dictionary part changed");
    let old: HashSet<_> = old.into_iter().collect();
    let changed = new.iter().filter(|h| !old.contains(*h)).count();
    assert_eq!(changed, 2, "{new:?}");

    let exe = s.path(&format!("user/{NAME}.bin"));
    write_file(&exe, &v10, true);

    // The app runs from a dictionary build (cold start, then warm).
    for _ in 0..2 {
        let out = s.run(&exe, ["version"]);
        assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    }
    let unpacked = fs::read_dir(s.cache().join(NAME))
        .expect("cache")
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("the unpacked build")
        .path();
    assert_eq!(
        fs::read(unpacked.join("lib/part070.dat")).expect("read"),
        fs::read(s.path("app-1.0/lib/part070.dat")).expect("read")
    );

    // The updater checks the new dictionary build while it arrives, and
    // installs it.
    crate::checks::announce_11(&site);
    let out = s.run(&exe, ["version"]);
    assert_updated(&out);
    assert_eq!(fs::read(&exe).expect("read"), v11);
    // Incrementally: the stub, the dictionary part and every unchanged
    // frame are copied from the running build; the two changed frames
    // are fetched.
    let plan = update_traces(&out)
        .into_iter()
        .find_map(|t| {
            let rest = t.strip_prefix("Incremental update: ")?.to_owned();
            let (copied, rest) = rest.split_once(" of ")?;
            let parts = rest.split_once(' ')?.0;
            Some((copied.parse::<usize>().ok()?, parts.parse::<usize>().ok()?))
        })
        .unwrap_or_else(|| panic!("no incremental update:\n{}", stderr(&out)));
    assert_eq!(plan.0 + 2, plan.1, "{plan:?}");
    let out = s.run(&exe, ["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
}

/// A stub made before dictionaries existed (`$ONEFILE_OLD_STUB`, e.g. the
/// last release's `bootstrap`) refuses a dictionary build by its
/// `requires`, and runs nothing.
#[test]
fn an_old_stub_refuses_a_dictionary_build_by_its_requires() {
    let Some(old_stub) = std::env::var_os("ONEFILE_OLD_STUB") else {
        return skip("ONEFILE_OLD_STUB (a bootstrap from before dictionaries) is not set");
    };
    let old_stub = Path::new(&old_stub).to_path_buf();
    let s = Scratch::new();
    // A script, not the probe: a file that large would be split, and the
    // build would need `split-files` too, which such a stub may not know.
    let app = s.path("app");
    write_file(&app.join("bin/probe"), b"#!/bin/sh\necho 1.0\n", true);
    add_shared_files(&app, None);
    let pack_behind_old_stub = |out: &Path, extra: &[&str]| {
        let mut args = vec!["pack", app.to_str().expect("utf8"), "-o"];
        args.push(out.to_str().expect("utf8"));
        args.extend(["--stub", old_stub.to_str().expect("utf8")]);
        args.extend(["--entry", "bin/probe", "--name", "probeapp", "--level", "3"]);
        args.extend_from_slice(extra);
        let done = tools(&args);
        assert!(done.status.success(), "{}", stderr(&done));
    };
    let exe = s.path("app.bin");
    pack_behind_old_stub(&exe, &[]);
    assert_eq!(requires(&exe), ["zstd-dictionary"]);
    let out = s.run(&exe, ["version"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(err.contains("zstd-dictionary"), "{err}");
    let unpacked = fs::read_dir(s.cache().join("probeapp")).map_or(0, |d| d.count());
    assert_eq!(unpacked, 0, "something was unpacked");

    // The same app without a dictionary is what that stub can run.
    let plain = s.path("plain.bin");
    pack_behind_old_stub(&plain, &["--no-dictionary"]);
    assert!(requires(&plain).is_empty());
    let out = s.run(&plain, ["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
}
