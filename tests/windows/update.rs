//! Self-update on Windows: a running executable cannot be replaced but
//! can be renamed, so the new build takes its name and the old one moves
//! aside to `.<name>.old`, which a later start removes.

use std::path::Path;

use crate::server::FileServer;
use crate::support::{self, Scratch};

/// Packs the probe as version `version` into `site/<version>/app.exe`,
/// looking for updates on `server`; returns the file.
fn pack_version(s: &Scratch, server: &FileServer, version: &str) -> std::path::PathBuf {
    let app = s.probe_app(&format!("app-{version}"), version);
    let dir = s.path(&format!("site/{version}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let exe = dir.join("app.exe");
    let toml = dir.join("update.toml");
    let spec = server.url("{VERSION}/update.toml");
    support::pack(
        &app,
        &exe,
        &[
            "--version",
            version,
            "--update-url-spec",
            &spec,
            "--auto-update-toml-file",
            toml.to_str().expect("UTF-8 path"),
        ],
    );
    exe
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read") == std::fs::read(b).expect("read")
}

#[test]
fn seed_update_renames_the_running_exe_aside_and_a_later_start_removes_it() {
    let s = Scratch::new();
    let server = FileServer::start(&s.path("site"));
    let old = pack_version(&s, &server, "1.0");
    let new = pack_version(&s, &server, "1.1");
    // Tell 1.0 users about 1.1.
    std::fs::copy(
        s.path("site/1.1/update.toml"),
        s.path("site/1.0/update.toml"),
    )
    .expect("publish");
    let exe = s.path("installed/app.exe");
    std::fs::create_dir_all(s.path("installed")).expect("mkdir");
    std::fs::copy(&old, &exe).expect("install 1.0");

    let first = s.run(&exe, ["version"]);
    assert_eq!(first.status.code(), Some(0), "{}", support::stderr(&first));
    assert_eq!(support::stdout(&first), "1.0\n");
    let traces = support::update_traces(&first);
    assert!(
        traces.iter().any(|t| t == "Updated."),
        "no update installed:\n{}",
        support::stderr(&first)
    );
    assert!(same_bytes(&exe, &new), "app.exe is not the 1.1 build");
    let aside = s.path("installed/.app.exe.old");
    assert!(same_bytes(&aside, &old), "the 1.0 build is not aside");

    let second = s.run(&exe, ["version"]);
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        support::stderr(&second)
    );
    assert_eq!(support::stdout(&second), "1.1\n");
    assert!(!aside.exists(), "the aside copy is still there");
    let mut left: Vec<String> = std::fs::read_dir(s.path("installed"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["app.exe"], "files left beside the executable");
}
