//! Signed updates, rollback and wrong-software protection, the transport
//! policy, and cache-folder hardening. Keys and signatures go through
//! `payload-tools keygen`/`sign`, and, where installed, the stock `minisign`
//! tool, to prove the formats interoperate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, expect_failure, publish_apps};

fn keygen(s: &Scratch, name: &str) -> (PathBuf, PathBuf) {
    let base = s.path(name);
    let out = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    (
        s.path(&format!("{name}.key")),
        s.path(&format!("{name}.pub")),
    )
}

/// 1.0 and 1.1 published by a build that trusts `trusted.pub`, both signed
/// with `trusted.key` in their update.toml.
fn publish_signed() -> (Published, PathBuf, PathBuf) {
    let keys = Scratch::new();
    let (secret, public) = keygen(&keys, "trusted");
    let p = publish_apps(
        &[
            "--public-key",
            public.to_str().expect("utf8"),
            "--key",
            secret.to_str().expect("utf8"),
        ],
        |_| {},
    );
    // Keep the keys with the publication; `keys` is deleted on return.
    let (kept_secret, kept_public) = (p.s.path("trusted.key"), p.s.path("trusted.pub"));
    fs::copy(&secret, &kept_secret).expect("copy key");
    fs::copy(&public, &kept_public).expect("copy key");
    (p, kept_secret, kept_public)
}

/// A manifest for `file` (served at /evil.bin, with range support when
/// `ranges`: then the updater also checks and hashes it while it arrives),
/// with an optional signature.
fn announce_served(p: &Published, file: &[u8], signature: Option<String>, ranges: bool) {
    let mut toml = format!(
        "url = \"{}\"\ncrc32 = {}\nsize = {}\n",
        p.server.url("/evil.bin"),
        crc32fast::hash(file),
        file.len()
    );
    if let Some(sig) = signature {
        toml.push_str(&format!("signature = '''\n{sig}'''\n"));
    }
    p.server.route(
        "/evil.bin",
        Route::File {
            body: file.to_vec(),
            etag: None,
            ranges,
        },
    );
    // A build with keys reads only update info signed by one of them.
    let key = p.s.path("trusted.key");
    if key.exists() {
        toml = signed_manifest(&toml, NAME, &p.server.url("/{VERSION}/update.toml"), &key);
    }
    p.server
        .route("/1.0/update.toml", Route::file(toml.into_bytes()));
}

fn announce(p: &Published, file: &[u8], signature: Option<String>) {
    announce_served(p, file, signature, false);
}

fn sign(file: &Path, key: &Path) -> String {
    let out = tools([
        "sign".as_ref(),
        file.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut sig = file.as_os_str().to_owned();
    sig.push(".minisig");
    fs::read_to_string(PathBuf::from(sig)).expect("minisig")
}

#[test]
fn a_signed_update_installs() {
    let (p, _, _) = publish_signed();
    assert!(String::from_utf8_lossy(&p.toml11).contains("signature"));
    p.announce_11();
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
}

#[test]
fn a_signed_update_served_with_ranges_is_decoded_only_after_its_signature() {
    // Hashed for its signature while it downloads; its payload is decoded
    // only once the signature holds: a server without the key cannot make
    // a keyed build decode whatever sizes a forged end declares.
    let (p, _, _) = publish_signed();
    p.announce_11();
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::File {
            body: p.v11.clone(),
            etag: None,
            ranges: true,
        },
    );
    let out = p.run(&["version"]);
    assert_updated(&out);
    let traces = update_traces(&out);
    assert!(
        !traces.contains(&"Checked the payload while it downloaded.".to_owned()),
        "{}",
        stderr(&out)
    );
    assert!(
        p.server.requests().iter().any(|r| r.is_tail()),
        "the build's end is still fetched first: {:?}",
        p.server.requests()
    );
    assert_eq!(fs::read(&p.exe).expect("read"), p.v11);
}

#[test]
fn unsigned_and_badly_signed_updates_are_refused() {
    let (p, trusted_key, _) = publish_signed();
    let v11 = p.s.path(&format!("site/1.1/{NAME}.bin"));

    let other = Scratch::new();
    let (wrong_key, _) = keygen(&other, "wrong");
    let evil_app = p.s.probe_app("evil", "evil");
    let evil = p.s.path("evil.bin");
    pack(&evil_app, &evil, &["--name", NAME, "--version", "9.9"]);
    let evil_bytes = fs::read(&evil).expect("read");
    let publisher_sig = sign(&v11, &trusted_key);
    // Served without and with ranges (hashed after, or while, downloading).
    for ranges in [false, true] {
        // No signature at all: a matching CRC-32 is not enough.
        announce_served(&p, &p.v11, None, ranges);
        expect_failure(&p, "not signed");

        // A valid signature, by a key the build does not trust.
        announce_served(&p, &p.v11, Some(sign(&v11, &wrong_key)), ranges);
        expect_failure(&p, "another key");

        // A tampered file with a valid CRC-32: the publisher's signature of
        // 1.1, an attacker's build of the same app and a newer version.
        announce_served(&p, &evil_bytes, Some(publisher_sig.clone()), ranges);
        expect_failure(&p, "does not match the file");
        p.assert_still_10();
    }

    // A signature whose trusted comment is for another version: a stock
    // minisign signature by the trusted key, claiming the wrong version.
    if Command::new("minisign").arg("-v").output().is_ok() {
        let claim = p.s.path("claim.minisig");
        let out = Command::new("minisign")
            .args(["-S", "-s"])
            .arg(&trusted_key)
            .arg("-m")
            .arg(&v11)
            .arg("-x")
            .arg(&claim)
            .args(["-t", &format!("onefile app={NAME} version=7.0")])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("minisign");
        assert!(out.status.success(), "{}", stderr(&out));
        announce(&p, &p.v11, Some(fs::read_to_string(&claim).expect("read")));
        expect_failure(&p, "but the file is");
    } else {
        skip("the stock-minisign case needs minisign (make deps installs it)");
    }
    p.assert_clean(false);
}

#[test]
fn rollback_and_wrong_software_are_refused_even_when_signed() {
    let (p, trusted_key, _) = publish_signed();
    // Serve the running 1.0's own predecessor: build 0.9, signed for real.
    let old_app = p.s.probe_app("old", "0.9");
    let old = p.s.path("old.bin");
    let spec = format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", p.server.port);
    pack(
        &old_app,
        &old,
        &[
            "--name",
            NAME,
            "--version",
            "0.9",
            "--update-url-spec",
            &spec,
        ],
    );
    announce(
        &p,
        &fs::read(&old).expect("read"),
        Some(sign(&old, &trusted_key)),
    );
    expect_failure(&p, "not newer");

    // A signed build of another app.
    let other_app = p.s.probe_app("other", "5");
    let other = p.s.path("other.bin");
    pack(
        &other_app,
        &other,
        &["--name", "OtherApp", "--version", "5.0"],
    );
    announce(
        &p,
        &fs::read(&other).expect("read"),
        Some(sign(&other, &trusted_key)),
    );
    expect_failure(&p, "not of 'AutoUpdatingTest'");
    p.assert_clean(false);
}

#[test]
fn downgrades_install_only_when_the_build_allows_them() {
    let p = publish_apps(&["--allow-downgrade"], |_| {});
    let old_app = p.s.probe_app("old", "0.9");
    let old = p.s.path("old.bin");
    pack(&old_app, &old, &["--name", NAME, "--version", "0.9"]);
    announce(&p, &fs::read(&old).expect("read"), None);
    let out = p.run(&["version"]);
    assert_updated(&out);
}

#[test]
fn keys_interoperate_with_stock_minisign() {
    if Command::new("minisign").arg("-v").output().is_err() {
        skip("minisign is not installed (make deps installs it)");
        return;
    }
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    pack(&app, &exe, &["--version", "1.0"]);
    // Our key and signature, checked by minisign.
    let (key, public) = keygen(&s, "ours");
    sign(&exe, &key);
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&public)
        .arg("-m")
        .arg(&exe)
        .output()
        .expect("minisign");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("onefile app=probeapp version=1.0"),
        "{}",
        stdout(&out)
    );
    // minisign's unencrypted key (-W), used by payload-tools.
    let theirs_key = s.path("theirs.key");
    let theirs_pub = s.path("theirs.pub");
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&theirs_pub)
        .arg("-s")
        .arg(&theirs_key)
        .output()
        .expect("minisign");
    assert!(out.status.success(), "{}", stderr(&out));
    let sig = sign(&exe, &theirs_key);
    assert!(sig.contains("trusted comment: onefile app=probeapp version=1.0"));
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&theirs_pub)
        .arg("-m")
        .arg(&exe)
        .output()
        .expect("minisign");
    assert!(out.status.success(), "{}", stderr(&out));
    // And minisign's public key as a build's trusted key.
    let spec = "http://127.0.0.1:9/{VERSION}/update.toml";
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        s.path("k.bin").as_os_str(),
        "--stub".as_ref(),
        stub().as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
        "--name".as_ref(),
        "k".as_ref(),
        "--update-url-spec".as_ref(),
        spec.as_ref(),
        "--public-key".as_ref(),
        theirs_pub.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = inspect(&s.path("k.bin"));
    assert_eq!(
        info["update"]["public_keys"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn pack_warns_when_updates_are_unauthenticated() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out = pack(
        &app,
        &s.path("a.bin"),
        &["--update-url-spec", "https://example.org/{VERSION}/u.toml"],
    );
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );
    let (_, public) = keygen(&s, "k");
    let out = pack(
        &app,
        &s.path("b.bin"),
        &[
            "--update-url-spec",
            "https://example.org/{VERSION}/u.toml",
            "--public-key",
            public.to_str().expect("utf8"),
        ],
    );
    assert!(
        !stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plain_http_is_refused_beyond_this_machine() {
    let s = Scratch::new();
    let exe = s.path("a.bin");
    // An address that must never be contacted: refused before any
    // connection. `pack` refuses such a spec, so the file is made by hand,
    // as an older payload-tools would have made it.
    crate::craft::Craft {
        name: "plainhttp".into(),
        version: "1.0".into(),
        entry: "run".into(),
        unpacked_size: 19,
        frames: vec![
            crate::craft::TarCraft::new()
                .file("run", b"#!/bin/sh\necho ran\n", 0o755)
                .finish(true),
        ],
        extra_metadata: "[update]\nurl_spec = \"http://192.0.2.1/{VERSION}/update.toml\"\n".into(),
    }
    .write(&stub(), &exe);
    let out = s.run(&exe, ["print", "ran"]);
    assert_eq!(
        stdout(&out),
        "ran
"
    );
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Refusing") && t.contains("plain http")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cache_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("a.bin");
    pack(&app, &exe, &[]);
    let app_dir = s.cache().join("probeapp");
    fs::create_dir_all(&app_dir).expect("mkdir");
    fs::set_permissions(&app_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = s.run(&exe, ["print", "must not run"]);
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    assert!(
        messages(&out)[0].contains("other users may write"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_cache_root_every_user_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("a.bin");
    pack(&app, &exe, &[]);
    let root = s.path("shared");
    fs::create_dir_all(&root).expect("mkdir");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let out = s
        .command(&exe)
        .env("ONEFILE_CACHE_DIR", &root)
        .args(["print", "must not run"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(123), "{}", stderr(&out));
    assert!(
        messages(&out)[0].contains("every user may write"),
        "{}",
        stderr(&out)
    );
}
