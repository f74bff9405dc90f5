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

/// The file offset of the PE image `pe`'s entry point.
fn entry_offset(pe: &[u8]) -> usize {
    let u16_at = |at: usize| u16::from_le_bytes(pe[at..at + 2].try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(pe[at..at + 4].try_into().expect("4 bytes"));
    let optional = optional_header(pe);
    let (sections, optional_len) = (u16_at(optional - 18), u16_at(optional - 4));
    let entry = u32_at(optional + 16);
    let table = optional + optional_len as usize;
    for i in 0..sections as usize {
        let section = table + i * 40;
        let (size, address) = (u32_at(section + 8), u32_at(section + 12));
        let raw = u32_at(section + 20);
        if (address..address + size).contains(&entry) {
            return (entry - address + raw) as usize;
        }
    }
    panic!("no section holds the entry point {entry:#x}");
}

#[test]
fn a_build_that_never_answers_is_stopped_and_refused() {
    // 1.0 waits long enough for the self-test's 10 s; 1.1's first
    // instruction jumps to itself.
    let p = publish(&["1.0", "1.1"], &["--update-exit-wait", "60"]);
    let mut build = p.bytes("1.1").to_vec();
    let entry = entry_offset(&build);
    build[entry..entry + 2].copy_from_slice(&[0xeb, 0xfe]);
    announce_bytes(&p, build);
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with(FAILED) && t.contains("did not answer within 10 s")),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(p.installed(), p.bytes("1.0"));
    p.assert_later_start_runs("1.0");
}
