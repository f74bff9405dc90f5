//! `pack --windows-subsystem` seen from Linux, with a stand-in Windows
//! stub (a PE header and the stub marker: `pack` reads and writes only
//! those) and the real Linux stub: the packed copy of a Windows stub gets
//! the entry's subsystem or the forced one, the stub file never changes,
//! damaged PE headers are refused with one clear line, the flag is an
//! error with a Linux stub, and `--entry` takes `\` as a separator.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;

pub(crate) const CONSOLE: u16 = 3;
const GUI: u16 = 2;
const E_LFANEW: usize = 0x80;
/// Where the subsystem field is in the headers [`pe_head`] writes.
const SUBSYSTEM_AT: usize = E_LFANEW + 24 + 68;

/// The first bytes of a 64-bit Windows program with `subsystem`.
pub(crate) fn pe_head(subsystem: u16) -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&(E_LFANEW as u32).to_le_bytes());
    b[E_LFANEW..E_LFANEW + 4].copy_from_slice(b"PE\0\0");
    b[E_LFANEW + 4..E_LFANEW + 6].copy_from_slice(&0x8664u16.to_le_bytes());
    b[E_LFANEW + 20..E_LFANEW + 22].copy_from_slice(&240u16.to_le_bytes());
    b[E_LFANEW + 24..E_LFANEW + 26].copy_from_slice(&0x20bu16.to_le_bytes());
    b[SUBSYSTEM_AT..SUBSYSTEM_AT + 2].copy_from_slice(&subsystem.to_le_bytes());
    b
}

/// The stub marker, as the real stub carries it.
fn marker() -> Vec<u8> {
    let stub = fs::read(stub()).expect("read stub");
    let at = stub
        .windows(13)
        .position(|w| w == b"ONEFILE-STUB\0")
        .expect("the stub carries its marker");
    stub[at..at + 15].to_vec()
}

/// A stand-in Windows stub: `head`, then the marker.
pub(crate) fn windows_stub(s: &Scratch, head: Vec<u8>) -> PathBuf {
    let mut bytes = head;
    bytes.extend_from_slice(&marker());
    bytes.extend_from_slice(&[0u8; 64]);
    let path = s.path("bootstrap.exe");
    fs::write(&path, bytes).expect("write stub");
    path
}

/// An app with a GUI program, a console program and a script.
fn app(s: &Scratch) -> PathBuf {
    let root = s.path("app");
    let mut gui = pe_head(GUI);
    gui.extend_from_slice(b"gui program");
    write_file(&root.join("bin/gui.exe"), &gui, true);
    let mut console = pe_head(CONSOLE);
    console.extend_from_slice(b"console program");
    write_file(&root.join("bin/console.exe"), &console, true);
    write_file(&root.join("bin/run.cmd"), b"@echo off\r\n", true);
    root
}

fn pack_with(stub: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "pack".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--stub".as_ref(),
        stub.as_os_str(),
        "--name".as_ref(),
        "winapp".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    tools(args)
}

fn subsystem_at_head(path: &Path) -> u16 {
    let bytes = fs::read(path).expect("read");
    u16::from_le_bytes([bytes[SUBSYSTEM_AT], bytes[SUBSYSTEM_AT + 1]])
}

#[test]
fn a_windows_stub_gets_the_entrys_subsystem_or_the_forced_one() {
    let s = Scratch::new();
    let stub = windows_stub(&s, pe_head(CONSOLE));
    let stub_bytes = fs::read(&stub).expect("read stub");
    let app = app(&s);
    let cases: &[(&str, &[&str], u16)] = &[
        ("bin/gui.exe", &[], GUI),
        ("bin/gui.exe", &["--windows-subsystem", "auto"], GUI),
        ("bin/console.exe", &[], CONSOLE),
        ("bin/run.cmd", &[], CONSOLE),
        ("bin/gui.exe", &["--windows-subsystem", "console"], CONSOLE),
        ("bin/run.cmd", &["--windows-subsystem", "gui"], GUI),
    ];
    for (i, (entry, flags, want)) in cases.iter().enumerate() {
        let out = s.path(&format!("out{i}.exe"));
        let mut extra = vec!["--entry", entry];
        extra.extend_from_slice(flags);
        let packed = pack_with(&stub, &app, &out, &extra);
        assert!(
            packed.status.success(),
            "{entry} {flags:?}: {}",
            stderr(&packed)
        );
        assert_eq!(subsystem_at_head(&out), *want, "{entry} {flags:?}");

        // Only the subsystem field differs from the stub file, which is
        // left as it was; the rest of the file is a sound packed file.
        let bytes = fs::read(&out).expect("read");
        let differ: Vec<usize> = (0..stub_bytes.len())
            .filter(|&j| bytes[j] != stub_bytes[j])
            .collect();
        assert!(
            differ
                .iter()
                .all(|&j| j == SUBSYSTEM_AT || j == SUBSYSTEM_AT + 1),
            "{differ:?}"
        );
        assert_eq!(fs::read(&stub).expect("read stub"), stub_bytes);
        let verified = tools(["verify".as_ref(), out.as_os_str()]);
        assert!(verified.status.success(), "{}", stderr(&verified));
        assert_eq!(inspect(&out)["entry"], *entry);
    }
}

#[test]
fn the_flag_with_a_linux_stub_is_an_error_and_auto_does_nothing() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    for which in ["gui", "console"] {
        let out = s.path(&format!("{which}.bin"));
        let packed = pack_with(
            &stub(),
            &app,
            &out,
            &["--entry", "bin/probe", "--windows-subsystem", which],
        );
        assert!(!packed.status.success(), "{which}");
        let text = stderr(&packed);
        assert!(
            text.contains("applies only to Windows stubs") && text.lines().count() <= 2,
            "{text}"
        );
        assert!(!out.exists());
    }
    let out = s.path("auto.bin");
    pack(&app, &out, &["--windows-subsystem", "auto"]);
    let stub_bytes = fs::read(stub()).expect("read stub");
    let packed = fs::read(&out).expect("read");
    assert_eq!(&packed[..stub_bytes.len()], &stub_bytes[..]);
    let run = s.run(&out, ["exit", "3"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
}

#[test]
fn damaged_pe_headers_are_refused_with_one_line() {
    let s = Scratch::new();
    let app = app(&s);
    // e_lfanew far out of the file.
    let mut hostile = pe_head(CONSOLE);
    hostile[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());

    let bad_stub = windows_stub(&s, hostile.clone());
    let out = s.path("bad-stub.exe");
    let packed = pack_with(&bad_stub, &app, &out, &["--entry", "bin/run.cmd"]);
    assert!(!packed.status.success());
    let text = stderr(&packed);
    assert!(
        text.contains("PE header") && text.lines().count() <= 2,
        "{text}"
    );
    assert!(!out.exists());

    let stub = windows_stub(&s, pe_head(CONSOLE));
    write_file(&app.join("bin/bad.exe"), &hostile, true);
    let out = s.path("bad-entry.exe");
    let packed = pack_with(&stub, &app, &out, &["--entry", "bin/bad.exe"]);
    assert!(!packed.status.success());
    let text = stderr(&packed);
    assert!(
        text.contains("starts like a Windows program")
            && text.contains("--windows-subsystem console or gui")
            && text.lines().count() <= 2,
        "{text}"
    );
    // Told which, pack does not read the entry's header.
    let packed = pack_with(
        &stub,
        &app,
        &out,
        &["--entry", "bin/bad.exe", "--windows-subsystem", "console"],
    );
    assert!(packed.status.success(), "{}", stderr(&packed));
    assert_eq!(subsystem_at_head(&out), CONSOLE);
}

#[test]
fn a_backslash_in_the_entry_is_a_separator() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out = s.path("probeapp.bin");
    pack(&app, &out, &["--entry", "bin\\probe"]);
    assert_eq!(inspect(&out)["entry"], "bin/probe");
    let run = s.run(&out, ["exit", "9"]);
    assert_eq!(run.status.code(), Some(9), "{}", stderr(&run));
}

/// The announcement and the signature of a build are made from the bytes
/// written, so they cover the changed subsystem.
#[test]
fn the_announcement_and_signature_cover_the_patched_stub() {
    let s = Scratch::new();
    let stub = windows_stub(&s, pe_head(CONSOLE));
    let app = app(&s);
    let keys = tools(["keygen".as_ref(), "-o".as_ref(), s.path("k").as_os_str()]);
    assert!(keys.status.success(), "{}", stderr(&keys));
    let (out, toml) = (s.path("signed.exe"), s.path("update.toml"));
    let (key, public) = (s.path("k.key"), s.path("k.pub"));
    let packed = pack_with(
        &stub,
        &app,
        &out,
        &[
            "--entry",
            "bin/gui.exe",
            "--update-url-spec",
            "http://127.0.0.1:9/{VERSION}/update.toml",
            "--public-key",
            public.to_str().expect("UTF-8"),
            "--key",
            key.to_str().expect("UTF-8"),
            "--auto-update-toml-file",
            toml.to_str().expect("UTF-8"),
        ],
    );
    assert!(packed.status.success(), "{}", stderr(&packed));
    assert_eq!(subsystem_at_head(&out), GUI);
    let bytes = fs::read(&out).expect("read");
    let text = fs::read_to_string(&toml).expect("read update.toml");
    assert!(
        text.contains(&format!("crc32 = {}\n", crc32fast::hash(&bytes)))
            && text.contains(&format!("size = {}\n", bytes.len())),
        "{text}"
    );
    if std::process::Command::new("minisign")
        .arg("-v")
        .output()
        .is_err()
    {
        skip("minisign is not installed (make deps installs it)");
        return;
    }
    let signature = text
        .split("signature = \"\"\"\n")
        .nth(1)
        .and_then(|rest| rest.split("\"\"\"").next())
        .expect("a signature in update.toml");
    let mut sig_path = out.clone().into_os_string();
    sig_path.push(".minisig");
    fs::write(&sig_path, signature).expect("write .minisig");
    let checked = std::process::Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&public)
        .arg("-m")
        .arg(&out)
        .output()
        .expect("minisign");
    assert!(checked.status.success(), "{}", stderr(&checked));
}
