//! `payload-tools.exe keygen` and `unpack` on Windows (docs/security.md,
//! items 1 and 3): the secret key and unpack's staging folder get a
//! private DACL in the create call itself; a folder others may change is
//! refused for the key, and above the output for unpack. Wine maps a DACL
//! to the Unix mode and back (docs/windows.md, "What Wine cannot show"):
//! what a mode cannot carry is skipped with the reason.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cache::{EVERYONE, SHARED, dacl_of, set_dacl};
use crate::support::{self, Scratch};

/// FILE_ALL_ACCESS.
const FULL: u32 = 0x001F_01FF;
/// Read, list and add a file: what Wine keeps of "Everyone may add files"
/// (mode o+w).
const ADD_FILE: u32 = 0x0012_0089 | 0x2;

/// The lines of `out`'s stderr.
fn messages(out: &Output) -> Vec<String> {
    support::stderr(out).lines().map(str::to_owned).collect()
}

/// Whether the DACL of `path` gives accounts that are not one user
/// (Everyone, Authenticated Users, Users) any access; `None` if Wine gave
/// no DACL.
fn shared_access(path: &Path) -> Option<Vec<crate::cache::Entry>> {
    let (_, entries) = dacl_of(path)?;
    Some(
        entries
            .into_iter()
            .filter(|e| e.0 == 0 && SHARED.contains(&e.3.as_slice()))
            .collect(),
    )
}

/// Sets the DACL of `path` to Everyone `mask` and tells whether Wine kept
/// an Everyone entry with at least `shown` (else the test is skipped).
fn share(path: &Path, everyone: Option<u32>, shown: u32) -> bool {
    if !set_dacl(path, everyone) {
        support::skip("Wine refused SetSecurityInfo on a folder");
        return false;
    }
    let kept = match dacl_of(path) {
        None => everyone.is_none(),
        Some((_, entries)) => entries
            .iter()
            .any(|e| e.3 == EVERYONE && e.0 == 0 && e.2 & shown == shown),
    };
    if !kept {
        support::skip(&format!(
            "Wine did not keep the DACL set (Everyone {everyone:x?}, access {shown:#x} not shown)"
        ));
    }
    kept
}

#[test]
fn keygen_gives_the_secret_key_a_private_dacl() {
    let s = Scratch::new();
    let keys = s.path("keys");
    fs::create_dir(&keys).expect("mkdir");
    let base = keys.join("release");
    let out = support::tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let secret = keys.join("release.key");
    let Some(shared) = shared_access(&secret) else {
        support::skip("Wine gives no DACL for a file");
        return;
    };
    assert!(
        shared.is_empty(),
        "others may use the secret key: {shared:?}"
    );
    let (_, entries) = dacl_of(&secret).expect("DACL");
    for (kind, _, mask, sid) in &entries {
        assert_eq!((*kind, *mask), (0, FULL), "{sid:?}");
    }
    // The public key is for everyone: it keeps the folder's access.
    assert!(keys.join("release.pub").is_file());
    let left: Vec<_> = fs::read_dir(&keys).expect("ls").flatten().collect();
    assert_eq!(left.len(), 2, "no temporary file is left: {left:?}");
}

#[test]
fn keygen_refuses_a_folder_others_can_change() {
    for (what, everyone, shown) in [
        ("Everyone add-file", Some(ADD_FILE), 0x2),
        ("Everyone full control", Some(FULL), 0x2),
        ("NULL DACL", None, 0),
    ] {
        let s = Scratch::new();
        let dir = s.path("shared");
        fs::create_dir(&dir).expect("mkdir");
        if !share(&dir, everyone, shown) {
            return;
        }
        let out = support::tools([
            "keygen".as_ref(),
            "-o".as_ref(),
            dir.join("release").as_os_str(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {}",
            support::stderr(&out)
        );
        let msgs = messages(&out);
        assert!(
            msgs.len() == 2
                && msgs[0].contains("not a private folder")
                && (msgs[0].contains("S-1-1-0 (Everyone) may change it")
                    || msgs[0].contains("NULL DACL"))
                && msgs[1].starts_with("payload-tools: hint:")
                && msgs[1].contains("Security tab"),
            "{what}: {msgs:?}"
        );
        assert_eq!(
            fs::read_dir(&dir).expect("ls").count(),
            0,
            "{what}: wrote something"
        );
    }
}

/// The probe, packed.
fn packed_probe(s: &Scratch) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    let exe = s.path("probeapp.exe");
    support::pack(&app, &exe, &["--version", "1.0"]);
    exe
}

fn unpack(exe: &Path, out: &Path) -> Output {
    support::tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
}

/// Item 3: the output's own folder may be shared (it is used through a
/// held handle); the staging folder, created private in the create call,
/// never inherits the others' access, and is what becomes the output.
#[test]
fn unpack_into_a_shared_folder_stays_private() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let shared = s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    if !share(&shared, Some(FULL), 0x2) {
        return;
    }
    let out_dir = shared.join("out");
    let run = unpack(&exe, &out_dir);
    assert!(run.status.success(), "{}", support::stderr(&run));
    assert!(out_dir.join("bin/probe.exe").is_file(), "unpacked");
    let Some(others) = shared_access(&out_dir) else {
        support::skip("Wine gives no DACL for a folder");
        return;
    };
    assert!(
        others.is_empty(),
        "the unpacked folder gives others access: {others:?}"
    );
    let names: Vec<String> = fs::read_dir(&shared)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out"], "no staging folder is left");
}

/// Item 3, one level up: a folder on the way to the output whose entries
/// others may rename or delete could have the next one swapped: refused,
/// nothing written.
#[test]
fn unpack_refuses_an_output_below_a_folder_others_can_change() {
    let s = Scratch::new();
    let exe = packed_probe(&s);
    let open = s.path("open");
    let sub = open.join("sub");
    fs::create_dir_all(&sub).expect("mkdir");
    // FILE_DELETE_CHILD is the right that lets others swap `sub`.
    if !share(&open, Some(FULL), 0x40) {
        return;
    }
    let run = unpack(&exe, &sub.join("out"));
    assert_eq!(run.status.code(), Some(1), "{}", support::stderr(&run));
    let msgs = messages(&run);
    assert!(
        msgs.len() == 2
            && msgs[0].contains("will not unpack into")
            && msgs[0].contains("S-1-1-0 (Everyone) may change it")
            && msgs[0].contains("could be swapped")
            && msgs[1].starts_with("payload-tools: hint:"),
        "{msgs:?}"
    );
    assert_eq!(
        fs::read_dir(&sub).expect("ls").count(),
        0,
        "nothing is written below it"
    );
}
