//! File metadata on Windows (issue 12): a file packed read-only comes out
//! with the read-only attribute and its modification time, and a later
//! build's launch still removes the build that holds it (Windows refuses
//! to delete a read-only file until its attribute is cleared).

use std::fs::{self, File};
use std::time::{Duration, UNIX_EPOCH};

use crate::support::{self, Scratch};

#[test]
fn a_read_only_file_keeps_its_attribute_and_time_and_its_build_is_still_removed() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1");
    let read_only = app.join("bin/read-only.txt");
    fs::write(&read_only, b"do not change\n").expect("write");
    let packed_time = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    File::options()
        .write(true)
        .open(&read_only)
        .expect("open")
        .set_modified(packed_time)
        .expect("set the time");
    let mut permissions = fs::metadata(&read_only).expect("stat").permissions();
    permissions.set_readonly(true);
    fs::set_permissions(&read_only, permissions).expect("make read-only");

    let v1 = s.path("v1.exe");
    support::pack(&app, &v1, &["--version", "1"]);
    let out = s.run(&v1, ["exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let build = fs::read_dir(s.cache().join("probeapp"))
        .expect("the app's cache")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("1-"))
        })
        .expect("build 1 in the cache");
    let meta = fs::metadata(build.join("bin/read-only.txt")).expect("stat");
    assert!(meta.permissions().readonly(), "not read-only");
    assert_eq!(meta.modified().expect("time"), packed_time);

    let v2 = s.path("v2.exe");
    support::pack(&app, &v2, &["--version", "2"]);
    let out = s.run(&v2, ["exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(
        !build.exists(),
        "build 1 is still there: {}",
        support::stderr(&out)
    );
}
