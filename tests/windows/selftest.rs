//! The self-test before install on Windows: the updater runs the verified
//! download (reopened read-only, without write sharing, and executed by
//! its path in the held folder, no console window) in the stub's
//! self-test mode. A healthy build still installs; one whose stub cannot
//! run is refused and the running build stays.

use crate::server::Route;
use crate::support;
use crate::update::{Published, publish};

const PASSED: &str = "The new build passed its self-test.";
const FAILED: &str = "The new build failed its self-test: ";

#[test]
fn a_healthy_update_passes_its_self_test_and_installs() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    let at = |trace: &str| traces.iter().position(|t| t.starts_with(trace));
    let (passed, updated) = (at(PASSED), at("Updated."));
    assert!(
        passed.is_some() && passed < updated,
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.1"));
    p.assert_later_start_runs("1.1");
}

/// Where the PE image `pe`'s optional header starts.
fn optional_header(pe: &[u8]) -> usize {
    let nt = u32::from_le_bytes(pe[0x3c..0x40].try_into().expect("4 bytes")) as usize;
    assert_eq!(&pe[nt..nt + 4], b"PE\0\0");
    nt + 24
}

/// Announces `build` as 1.1 to users of 1.0.
fn announce_bytes(p: &Published, build: Vec<u8>) {
    let toml = format!(
        "url = \"{}\"\ncrc32 = {}\nsize = {}\nversion = \"1.1\"\n",
        p.server.url("/crafted.exe"),
        crc32fast::hash(&build),
        build.len()
    );
    p.server.route("/crafted.exe", Route::file(build));
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
}

#[test]
fn a_build_whose_stub_cannot_run_is_refused() {
    let p = publish(&["1.0", "1.1"], &[]);
    // x86_64 by its COFF header, so that the platform checks let it
    // through, but with a 32-bit optional header (magic 0x10b): the loader
    // refuses to start it (a crash would do, but Wine's crash handler takes
    // seconds to end the process).
    let mut build = p.bytes("1.1").to_vec();
    let magic = optional_header(&build);
    build[magic..magic + 2].copy_from_slice(&0x10bu16.to_le_bytes());
    announce_bytes(&p, build);
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.starts_with(FAILED)),
        "{}",
        support::stderr(&out)
    );
    assert!(!traces.iter().any(|t| t == "Updated."), "{traces:#?}");
    assert_eq!(p.installed(), p.bytes("1.0"));
    p.assert_later_start_runs("1.0");
}
