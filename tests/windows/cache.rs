//! The cache on Windows: where it is (`%LOCALAPPDATA%`, the `ONEFILE_*`
//! overrides), the private-folder check in Windows terms (owner and DACL,
//! read from a held handle), the folder held while the app runs, links and
//! junctions refused, concurrent first launches, and a damaged file's
//! error. What Wine cannot show is skipped with the reason.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    GetSecurityInfo, SE_FILE_OBJECT, SetSecurityInfo,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
};

use crate::support::{self, Scratch};

const EXIT_DAMAGED: i32 = 122;
const EXIT_CACHE: i32 = 123;

fn packed_probe(s: &Scratch) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probeapp.exe");
    support::pack(&app, &exe, &["--version", "1.0"]);
    exe
}

/// A command for `exe` with no cache override: the default applies.
fn without_overrides(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("ONEFILE_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("AUTO_UPDATE_DEBUG", "1")
        .stdin(Stdio::null());
    cmd
}

/// The launcher's own stderr lines (`<exe>: error: ...`, `<exe>: hint:
/// ...`), traces left out.
fn messages(out: &Output) -> Vec<String> {
    support::stderr(out)
        .lines()
        .filter(|l| !l.starts_with("ONEFILE: ") && !l.starts_with("AUTO UPDATE: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts the launcher refused with `code`, one error line containing
/// `expect` and a hint, no panic, and the app not run.
fn assert_refused(out: &Output, code: i32, expect: &str) {
    let msgs = messages(out);
    assert_eq!(out.status.code(), Some(code), "{msgs:?}");
    assert_eq!(msgs.len(), 2, "error + hint: {msgs:?}");
    assert!(msgs[0].contains(": error: "), "{msgs:?}");
    assert!(msgs[0].contains(expect), "{msgs:?}");
    assert!(msgs[1].contains(": hint: "), "{msgs:?}");
    assert!(!support::stderr(out).contains("panicked"), "{msgs:?}");
    assert_eq!(support::stdout(out), "", "the app must not run");
}

/// The names in `dir`, sorted; empty if it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let Ok(items) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = items
        .map(|i| i.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The build folders (not lock files, not leftovers) in `app_dir`.
fn builds(app_dir: &Path) -> Vec<String> {
    names(app_dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && !n.ends_with(".lock"))
        .collect()
}

#[test]
fn the_default_cache_is_under_localappdata() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let local = s.path("Local AppData");
    fs::create_dir(&local).expect("mkdir");
    let out = without_overrides(&exe)
        .env("LOCALAPPDATA", &local)
        .args(["print", "ran"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(support::stdout(&out), "ran\n");
    let built = builds(&local.join("probeapp"));
    assert_eq!(built.len(), 1, "{built:?}");
    assert!(
        local
            .join("probeapp")
            .join(&built[0])
            .join("bin/probe.exe")
            .is_file()
    );
    // XDG_CACHE_HOME, absolute, comes before it; relative, it is ignored.
    let xdg = s.path("xdg");
    let out = without_overrides(&exe)
        .env("LOCALAPPDATA", &local)
        .env("XDG_CACHE_HOME", &xdg)
        .args(["print", "ran"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(builds(&xdg.join("probeapp")).len(), 1);
    let out = without_overrides(&exe)
        .env("LOCALAPPDATA", &local)
        .env("XDG_CACHE_HOME", "relative")
        .current_dir(s.dir.path())
        .args(["print", "ran"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(!s.path("relative").exists());
}

#[test]
fn a_relative_onefile_cache_dir_is_taken_from_the_working_directory() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let work = s.path("work");
    fs::create_dir(&work).expect("mkdir");
    let out = without_overrides(&exe)
        .env("ONEFILE_CACHE_DIR", "my cache")
        .current_dir(&work)
        .args(["print", "ran"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(builds(&work.join("my cache/probeapp")).len(), 1);
}

#[test]
fn without_localappdata_the_error_names_it() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    for value in [None, Some("")] {
        let mut cmd = without_overrides(&exe);
        match value {
            None => cmd.env_remove("LOCALAPPDATA"),
            Some(v) => cmd.env("LOCALAPPDATA", v),
        };
        let out = cmd.args(["print", "ran"]).output().expect("run");
        assert_refused(&out, EXIT_CACHE, "LOCALAPPDATA");
        assert!(!messages(&out)[0].contains(" HOME"), "{:?}", messages(&out));
    }
}

#[test]
fn eight_concurrent_first_launches_unpack_once_and_all_run() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let children: Vec<_> = (0..8)
        .map(|i| {
            s.command(&exe)
                .args(["print", &format!("run {i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut cold = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{i}: {}", support::stderr(&out));
        assert_eq!(support::stdout(&out), format!("run {i}\n"));
        let traces = support::launch_traces(&out);
        cold += traces
            .iter()
            .filter(|t| t.starts_with("Cold start: unpacking"))
            .count();
    }
    assert_eq!(cold, 1, "unpacked once");
    let app_dir = s.cache().join("probeapp");
    assert_eq!(builds(&app_dir).len(), 1, "{:?}", names(&app_dir));
    let leftovers: Vec<_> = names(&app_dir)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-") || n.starts_with(".trash-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_file_fails_with_one_line_and_leaves_nothing_used() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let info = support::tools(["inspect".as_ref(), "--json".as_ref(), exe.as_os_str()]);
    assert!(info.status.success(), "{}", support::stderr(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("JSON");
    let at = |key: &str| info[key].as_u64().expect(key) as usize;
    let bytes = fs::read(&exe).expect("read");
    let middle = at("payload_offset") + at("payload_len") / 2;

    let mut flipped = bytes.clone();
    flipped[middle] ^= 0x55;
    // Cut in the payload: the trailer is gone, so "carries no app".
    let cases: [(&str, &[u8], i32, &str); 3] = [
        ("payload byte flipped", &flipped, EXIT_DAMAGED, "payload"),
        (
            "cut in the payload",
            &bytes[..middle],
            121,
            "carries no app",
        ),
        (
            "last byte cut",
            &bytes[..bytes.len() - 1],
            121,
            "carries no app",
        ),
    ];
    for (what, content, code, expect) in cases {
        let bad = s.path("bad.exe");
        fs::write(&bad, content).expect("write");
        let _ = fs::remove_dir_all(s.cache());
        let out = s.run(&bad, ["print", "must not run"]);
        assert_refused(&out, code, expect);
        let app_dir = s.cache().join("probeapp");
        let left: Vec<_> = names(&app_dir)
            .into_iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
    }
}

/// One entry of a DACL: type, flags, access mask, SID bytes.
pub(crate) type Entry = (u8, u8, u32, Vec<u8>);

/// The DACL of `path` as the test reads it: (protected, entries), or
/// `None` where it cannot be read.
pub(crate) fn dacl_of(path: &Path) -> Option<(bool, Vec<Entry>)> {
    let folder = fs::OpenOptions::new()
        .access_mode(0x0002_0000 | 0x80) // READ_CONTROL | FILE_READ_ATTRIBUTES
        .custom_flags(0x0200_0000 | 0x0020_0000) // BACKUP_SEMANTICS | OPEN_REPARSE_POINT
        .open(path)
        .ok()?;
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: an open handle; out pointers valid; sd freed below.
    let rc = unsafe {
        GetSecurityInfo(
            folder.as_raw_handle(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != ERROR_SUCCESS || dacl.is_null() {
        return None;
    }
    // SAFETY: a self-relative descriptor: its control word is at offset 2.
    let control = unsafe { *sd.cast::<u16>().add(1) };
    // SAFETY: the DACL is AclSize bytes long, inside sd.
    let bytes =
        unsafe { std::slice::from_raw_parts(dacl.cast::<u8>(), usize::from((*dacl).AclSize)) }
            .to_vec();
    // SAFETY: allocated by GetSecurityInfo, freed once.
    unsafe { LocalFree(sd as HLOCAL) };
    let count = u16::from_le_bytes([bytes[4], bytes[5]]);
    let mut entries = Vec::new();
    let mut at = 8;
    for _ in 0..count {
        let size = usize::from(u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]));
        let ace = &bytes[at..at + size];
        let mask = u32::from_le_bytes([ace[4], ace[5], ace[6], ace[7]]);
        entries.push((ace[0], ace[1], mask, ace[8..].to_vec()));
        at += size;
    }
    Some((control & 0x1000 != 0, entries)) // SE_DACL_PROTECTED
}

/// S-1-1-0.
pub(crate) const EVERYONE: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];

/// Sets the DACL of the folder `path` (protected): `None` for a NULL DACL,
/// else one entry giving Everyone `mask`. `false` if Wine refused.
pub(crate) fn set_dacl(path: &Path, everyone: Option<u32>) -> bool {
    let folder = fs::OpenOptions::new()
        .access_mode(0x0004_0000 | 0x0002_0000) // WRITE_DAC | READ_CONTROL
        .custom_flags(0x0200_0000) // BACKUP_SEMANTICS
        .open(path)
        .expect("open the folder");
    let mut acl: Vec<u32> = Vec::new();
    if let Some(mask) = everyone {
        let ace_size = 8 + EVERYONE.len();
        let size = 8 + ace_size;
        let mut bytes = vec![2u8, 0];
        bytes.extend_from_slice(&(size as u16).to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0x3]); // ACCESS_ALLOWED, OI|CI
        bytes.extend_from_slice(&(ace_size as u16).to_le_bytes());
        bytes.extend_from_slice(&mask.to_le_bytes());
        bytes.extend_from_slice(EVERYONE);
        acl = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
    }
    let dacl: *const ACL = if acl.is_empty() {
        std::ptr::null()
    } else {
        acl.as_ptr().cast()
    };
    // SAFETY: an open handle with WRITE_DAC; a well-formed ACL or NULL.
    let rc = unsafe {
        SetSecurityInfo(
            folder.as_raw_handle(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    rc == ERROR_SUCCESS
}

/// Accounts that are not one user: a folder of ours must give them nothing.
pub(crate) const SHARED: &[&[u8]] = &[
    EVERYONE,
    &[1, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0], // Authenticated Users
    &[1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x21, 2, 0, 0], // Users
];

/// Wine keeps no DACL of its own for a file: it maps the DACL to the
/// Unix mode and back (SYSTEM, the user, and Everyone for the "other"
/// bits), and drops the "protected" flag. So what Wine shows is that no
/// one else gets any access; that nothing is inherited from the parent is
/// only written.
#[test]
fn folders_the_launcher_creates_give_no_one_else_access() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let out = s.run(&exe, ["print", "ran"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    for folder in [s.cache(), s.cache().join("probeapp")] {
        let Some((_, entries)) = dacl_of(&folder) else {
            support::skip("Wine gives no DACL for a folder");
            return;
        };
        let shared: Vec<_> = entries
            .iter()
            .filter(|e| SHARED.contains(&e.3.as_slice()))
            .collect();
        assert!(shared.is_empty(), "{folder:?}: {shared:?}");
        // Full control for each, inherited by files and folders inside.
        for (kind, flags, mask, _) in &entries {
            assert_eq!((*kind, *flags & 0x3, *mask), (0, 0x3, 0x001F_01FF));
        }
    }
}

#[test]
fn an_app_folder_that_others_may_change_is_refused() {
    // Everyone may add files (Wine: mode o+w); a NULL DACL (everyone may
    // do everything; Wine shows it as Everyone with full access).
    for (what, everyone) in [
        ("Everyone add-file", Some(0x0012_0089 | 0x2)),
        ("NULL DACL", None),
    ] {
        let s = Scratch::new();
        let exe = packed_probe(&s);
        let ok = s.run(&exe, ["print", "ran"]);
        assert_eq!(ok.status.code(), Some(0), "{}", support::stderr(&ok));
        let app_dir = s.cache().join("probeapp");
        if !set_dacl(&app_dir, everyone) {
            support::skip("Wine refused SetSecurityInfo on a folder");
            return;
        }
        let kept = match dacl_of(&app_dir) {
            None => everyone.is_none(),
            Some((_, entries)) => entries
                .iter()
                .any(|e| e.3 == EVERYONE && e.0 == 0 && e.2 & 0x2 != 0),
        };
        if !kept {
            support::skip(&format!("Wine did not keep the DACL set ({what})"));
            return;
        }
        let out = s.run(&exe, ["print", "must not run"]);
        assert_refused(&out, EXIT_CACHE, "cannot use the cache folder");
        let msgs = messages(&out);
        assert!(msgs[0].contains("probeapp'"), "{msgs:?}");
        assert!(
            msgs[0].contains("S-1-1-0 (Everyone) may change it") || msgs[0].contains("NULL DACL"),
            "{what}: {msgs:?}"
        );
        assert!(msgs[1].contains("Security tab"), "{msgs:?}");
    }
}

#[test]
fn the_app_folder_cannot_be_renamed_while_the_app_runs() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let mut child = s
        .command(&exe)
        .args(["print", "started", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "started\n");
    let app_dir = s.cache().join("probeapp");
    let moved = fs::rename(&app_dir, s.cache().join("moved"));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(
        moved.is_err(),
        "the app's folder was renamed while the launcher held it"
    );
    // Released with the launcher.
    fs::rename(&app_dir, s.cache().join("moved")).expect("rename after the launcher");
}

/// Makes `link` a directory symlink, or else a junction, to `target`;
/// `None` if Wine can make neither.
fn link_dir(target: &Path, link: &Path) -> Option<&'static str> {
    if std::os::windows::fs::symlink_dir(target, link).is_ok() {
        return Some("symlink");
    }
    // A junction: `mklink /J`, from cmd.exe (no Windows API in std).
    let made = Command::new("cmd")
        .arg("/C")
        .arg("mklink")
        .arg("/J")
        .arg(link)
        .arg(target)
        .output()
        .is_ok_and(|o| o.status.success());
    made.then_some("junction")
}

#[test]
fn a_link_or_junction_in_place_of_the_app_folder_is_refused() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    fs::create_dir_all(s.cache()).expect("mkdir");
    let elsewhere = s.path("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let app_dir = s.cache().join("probeapp");
    let Some(kind) = link_dir(&elsewhere, &app_dir) else {
        support::skip("Wine 8.0 makes neither a directory symlink nor a junction");
        return;
    };
    let is_reparse = fs::symlink_metadata(&app_dir).is_ok_and(|m| {
        use std::os::windows::fs::MetadataExt;
        m.file_attributes() & 0x400 != 0
    });
    if !is_reparse {
        support::skip(&format!(
            "Wine made a {kind} but does not report it as a reparse point"
        ));
        return;
    }
    let out = s.run(&exe, ["print", "must not run"]);
    assert_refused(&out, EXIT_CACHE, "link or a junction");
    assert!(names(&elsewhere).is_empty(), "{:?}", names(&elsewhere));
}

/// The updater holds the executable's folder and reads its DACL from the
/// handle: a folder that others may write is refused before anything is
/// downloaded (they could swap names between its checks and its rename).
#[test]
fn no_update_into_a_folder_that_others_may_change() {
    let published = crate::update::publish(&["1.0", "1.1"], &[]);
    published.announce("1.0", "1.1");
    let installed = published.exe.parent().expect("folder").to_owned();
    if !set_dacl(&installed, Some(0x0012_0089 | 0x2)) {
        support::skip("Wine refused SetSecurityInfo on a folder");
        return;
    }
    let out = published.run(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(support::stdout(&out), "1.0\n");
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.starts_with("Cannot replace")
            && t.contains("its folder is not ours alone: S-1-1-0 (Everyone) may change it")),
        "{traces:?}"
    );
    assert_eq!(published.installed(), published.bytes("1.0"));
    assert_eq!(published.folder(), ["app.exe"]);
}

/// The new build gets the access rules any file put in its folder gets, as
/// the old one had: not the launcher's private ones (an executable shared
/// with other users of the machine must stay usable by them).
#[test]
fn an_updated_executable_keeps_the_access_of_its_folder() {
    let published = crate::update::publish(&["1.0", "1.1"], &[]);
    published.announce("1.0", "1.1");
    let Some(before) = dacl_of(&published.exe) else {
        support::skip("Wine gives no DACL for a file");
        return;
    };
    let out = published.run(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(published.installed(), published.bytes("1.1"));
    let after = dacl_of(&published.exe).expect("the new build's DACL");
    assert!(
        before.1.iter().any(|e| e.3 == EVERYONE),
        "the test needs a folder that lets Everyone read: {before:?}"
    );
    assert_eq!(after, before);
}
