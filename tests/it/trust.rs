//! Whether an install uses the `update.toml` it fetched, and which release
//! it takes: signed manifests (keys, rotation, smuggled fields), expiry
//! (freeze), sequence (replay), the install's identity and its rollout
//! bucket (share, halt, critical, salt). Every manifest is written and
//! signed here, so each test says exactly what the host serves.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use minisign::{KeyPair, SecretKey};
use payload_tools::manifest::{
    Release, Rollout, UpdateManifest, datetime_from_unix, manifest_trusted_comment,
    trusted_comment, with_signatures,
};

use crate::nginx::Nginx;
use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, expect_failure, publish};
use crate::windows_pe;

/// A minisign key pair; the public key written where `pack` reads it.
struct Key {
    secret: SecretKey,
    public: PathBuf,
}

fn key(keys: &Scratch, name: &str) -> Key {
    let pair = KeyPair::generate_unencrypted_keypair().expect("key pair");
    let public = keys.path(&format!("{name}.pub"));
    let text = pair.pk.to_box().expect("public key").into_string();
    fs::write(&public, text).expect("write public key");
    Key {
        secret: pair.sk,
        public,
    }
}

/// 1.0 and 1.1, built trusting `trusted`, 1.0 installed.
fn publish_trusting(trusted: &[&Key]) -> Published {
    let mut args = Vec::new();
    for key in trusted {
        args.push("--public-key");
        args.push(key.public.to_str().expect("utf8"));
    }
    publish(&args)
}

fn sign(key: &Key, bytes: &[u8], comment: &str) -> String {
    minisign::sign(None, &key.secret, bytes, Some(comment), None)
        .expect("sign")
        .into_string()
}

/// The published `version` (1.0 or 1.1), its build signed by `signers`.
fn release(p: &Published, version: &str, signers: &[&Key]) -> Release {
    let bytes = if version == "1.0" { &p.v10 } else { &p.v11 };
    let comment = trusted_comment(NAME, version);
    let mut signatures: Vec<String> = signers.iter().map(|k| sign(k, bytes, &comment)).collect();
    let signature = (!signatures.is_empty()).then(|| signatures.remove(0));
    Release {
        url: p.server.url(&format!("/{version}/{NAME}.bin")),
        crc32: crc32fast::hash(bytes),
        size: Some(bytes.len() as u64),
        version: Some(version.into()),
        signature,
        signatures,
        mirrors: vec![],
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// A manifest of this app offering `top`, of `sequence`, expiring at
/// `expires`.
fn manifest(top: Release, sequence: u64, expires: i64) -> UpdateManifest {
    // The server's origin: `http://127.0.0.1:PORT`.
    let origin = top.url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    UpdateManifest {
        app: Some(NAME.into()),
        os: Some(std::env::consts::OS.into()),
        arch: Some(std::env::consts::ARCH.into()),
        specs: vec![format!("{origin}/{{VERSION}}/update.toml")],
        sequence: Some(sequence),
        expires: Some(datetime_from_unix(expires)),
        ..UpdateManifest::offering(top)
    }
}

/// The text of `manifest` signed by each of `signers` (none: unsigned).
fn signed(manifest: &UpdateManifest, signers: &[&Key]) -> String {
    let body = manifest.to_toml();
    if signers.is_empty() {
        return body;
    }
    let comment = manifest_trusted_comment(
        NAME,
        manifest.sequence.unwrap_or(0),
        manifest.expires_at().expect("an instant"),
    );
    let minisig = signers
        .iter()
        .map(|k| sign(k, body.as_bytes(), &comment))
        .collect();
    with_signatures(&body, minisig)
}

/// Serves `text` where 1.0 looks for updates.
fn serve(p: &Published, text: &str) {
    p.server
        .route("/1.0/update.toml", Route::file(text.as_bytes().to_vec()));
}

/// Runs the install, expecting `text` refused with a trace saying `says`.
fn expect_refused(p: &Published, text: &str, says: &str) {
    serve(p, text);
    expect_failure(p, says);
    // The app lives until the check is over: one check, all in the
    // launcher.
    let out = run_until_ready(&p.s, &p.exe);
    let refusals: Vec<String> = update_traces(&out)
        .into_iter()
        .filter(|t| t.starts_with("Not using the update info from "))
        .collect();
    assert_eq!(refusals.len(), 1, "one line: {refusals:#?}");
}

fn run_updated(p: &Published, text: &str) {
    serve(p, text);
    let out = p.run(&["version"]);
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
}

const DAY: i64 = 86_400;

#[test]
fn an_expired_manifest_is_refused() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let expired = manifest(release(&p, "1.1", &[&a]), 10, now() - 60);
    expect_refused(&p, &signed(&expired, &[&a]), "it expired at ");
    // A build without keys honours an expiry too.
    let plain = publish(&[]);
    let expired = manifest(release(&plain, "1.1", &[]), 10, now() - 60);
    expect_refused(&plain, &signed(&expired, &[]), "it expired at ");
}

#[test]
fn a_replayed_manifest_is_refused_and_a_refused_one_raises_nothing() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let t = now();
    // Seen: sequence 2000, offering the running build.
    let current = manifest(release(&p, "1.0", &[&a]), 2000, t + DAY);
    serve(&p, &signed(&current, &[&a]));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|l| l.contains("matches already")),
        "{}",
        stderr(&out)
    );
    // An older manifest, offering 1.1, validly signed: a replay.
    let old = manifest(release(&p, "1.1", &[&a]), 1999, t + DAY);
    expect_refused(
        &p,
        &signed(&old, &[&a]),
        "its sequence 1999 is lower than 2000",
    );
    // A manifest of sequence 5000 refused (expired) does not raise it...
    let expired = manifest(release(&p, "1.0", &[&a]), 5000, t - 1);
    expect_refused(&p, &signed(&expired, &[&a]), "it expired");
    // ... so 3000 still installs.
    let newer = manifest(release(&p, "1.1", &[&a]), 3000, t + DAY);
    run_updated(&p, &signed(&newer, &[&a]));
}

#[test]
fn a_build_without_keys_refuses_a_stale_copy_going_backwards() {
    let p = publish(&[]);
    let t = now();
    let current = manifest(release(&p, "1.0", &[]), 7000, t + DAY);
    serve(&p, &current.to_toml());
    assert!(p.run(&["version"]).status.success());
    let stale = manifest(release(&p, "1.1", &[]), 6999, t + DAY);
    expect_refused(&p, &stale.to_toml(), "lower than 7000");
}

#[test]
fn a_build_without_keys_updates_from_an_unsigned_manifest_as_before() {
    let p = publish(&[]);
    // The seed's manifest: no app, no sequence, no expiry.
    run_updated(
        &p,
        &UpdateManifest::offering(release(&p, "1.1", &[])).to_toml(),
    );
}

#[test]
fn unsigned_and_wrongly_signed_manifests_are_refused_by_a_keyed_build() {
    let keys = Scratch::new();
    let (a, b) = (key(&keys, "a"), key(&keys, "b"));
    let p = publish_trusting(&[&a]);
    let good = manifest(release(&p, "1.1", &[&a]), 10, now() + DAY);
    expect_refused(&p, &signed(&good, &[]), "it is not signed");
    expect_refused(&p, &signed(&good, &[&b]), "it is signed by another key");
    // Signed, then changed: the body is not what was signed.
    let tampered = signed(&good, &[&a]).replace("sequence = 10", "sequence = 11");
    expect_refused(&p, &tampered, "bad signature by key");
    // Signed, but for another app, or without sequence or expiry.
    let other_app = UpdateManifest {
        app: Some("another".into()),
        ..good.clone()
    };
    expect_refused(&p, &signed(&other_app, &[&a]), "for the app 'another'");
    let no_expiry = UpdateManifest {
        expires: None,
        ..good.clone()
    };
    let body = no_expiry.to_toml();
    let comment = manifest_trusted_comment(NAME, 10, None);
    let text = with_signatures(&body, vec![sign(&a, body.as_bytes(), &comment)]);
    expect_refused(&p, &text, "no sequence, expiry, os, arch or specs");
    // The good one installs.
    run_updated(&p, &signed(&good, &[&a]));
}

#[test]
fn fields_smuggled_after_the_signatures_are_ignored() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    // Signed: the running build, to everyone. Appended after the signature
    // section: a rollout of 1.1 to everyone.
    let current = manifest(release(&p, "1.0", &[&a]), 10, now() + DAY);
    let smuggled = format!(
        "{}[rollout]\nurl = \"{}\"\ncrc32 = {}\npercent = 100.0\nsalt = \"s\"\ncritical = true\n",
        signed(&current, &[&a]),
        p.server.url(&format!("/1.1/{NAME}.bin")),
        crc32fast::hash(&p.v11)
    );
    serve(&p, &smuggled);
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("matches already")),
        "{traces:#?}"
    );
    assert!(!traces.iter().any(|t| t.contains("Rollout")), "{traces:#?}");
    p.assert_still_10();
}

#[test]
fn key_rotation_any_trusted_signature_suffices() {
    let keys = Scratch::new();
    let (a, b) = (key(&keys, "a"), key(&keys, "b"));
    for trusted in [vec![&a], vec![&b], vec![&a, &b]] {
        let p = publish_trusting(&trusted);
        let both = manifest(release(&p, "1.1", &[&a, &b]), 10, now() + DAY);
        run_updated(&p, &signed(&both, &[&a, &b]));
    }
    // Signed by the old key alone: builds trusting only the new one refuse it.
    let p = publish_trusting(&[&b]);
    let old_only = manifest(release(&p, "1.1", &[&a, &b]), 10, now() + DAY);
    expect_refused(&p, &signed(&old_only, &[&a]), "it is signed by another key");
    let p = publish_trusting(&[&a, &b]);
    let old_only = manifest(release(&p, "1.1", &[&a, &b]), 10, now() + DAY);
    run_updated(&p, &signed(&old_only, &[&a]));
}

/// A manifest offering 1.0 (the running build) to everyone and 1.1 to
/// `percent` of installs.
fn rollout(p: &Published, percent: f64, salt: &str, halted: bool, critical: bool) -> String {
    let mut m = manifest(release(p, "1.0", &[]), 10, now() + DAY);
    m.rollout = Some(Rollout {
        release: release(p, "1.1", &[]),
        percent,
        salt: salt.into(),
        halted,
        critical,
    });
    m.to_toml()
}

/// The rollout decision traced by a launch: (bucket, offered).
fn decision(out: &Output) -> (u32, bool) {
    let traces = update_traces(out);
    let line = traces
        .iter()
        .find(|t| t.contains("this install's bucket is "))
        .unwrap_or_else(|| panic!("no rollout decision: {traces:#?}"));
    let rest = line
        .split("this install's bucket is ")
        .nth(1)
        .expect("bucket");
    let bucket = rest
        .split(' ')
        .next()
        .expect("number")
        .parse()
        .expect("u32");
    (bucket, line.ends_with(": offered."))
}

#[test]
fn rollout_share_halt_and_critical_decide_who_moves() {
    let p = publish(&[]);
    // 0 %: nobody moves; the top-level release is the running build.
    serve(&p, &rollout(&p, 0.0, "r1", false, false));
    let out = p.run(&["version"]);
    let (bucket, offered) = decision(&out);
    assert!(!offered && bucket < 10_000);
    let expected = format!(
        "Rollout of 1.1 offers 0.00% of installs; this install's bucket is {bucket} of 10000: not offered."
    );
    assert!(update_traces(&out).contains(&expected), "{}", stderr(&out));
    assert!(!update_traces(&out).contains(&"Updated.".to_owned()));
    p.assert_still_10();
    // Halted, even at 100 % and critical: nobody moves.
    serve(&p, &rollout(&p, 100.0, "r1", true, true));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out).contains(&"Rollout of 1.1 is halted: not offered.".to_owned()),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
    // 100 %: this install moves.
    run_updated(&p, &rollout(&p, 100.0, "r1", false, false));
    // Critical at 0 %: moves whatever its bucket.
    let p = publish(&[]);
    serve(&p, &rollout(&p, 0.0, "r1", false, true));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .contains(&"Rollout of 1.1 is critical: offered to every install.".to_owned())
    );
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
}

/// Runs a fresh copy of 1.0 as install `n` (its own executable and cache
/// folder); returns the launch's output.
fn run_install(p: &Published, n: usize) -> Output {
    let exe = p.s.path(&format!("install-{n}/{NAME}.bin"));
    write_file(&exe, &p.v10, true);
    with_background_traces(
        p.s.command(&exe)
            .env("ONEFILE_CACHE_DIR", p.s.path(&format!("cache-{n}")))
            .arg("version")
            .output()
            .expect("run"),
    )
}

#[test]
fn an_install_keeps_its_bucket_and_a_new_salt_redraws_it() {
    let p = publish(&[]);
    serve(&p, &rollout(&p, 50.0, "first", false, false));
    // The same install, five launches of a fresh 1.0: one bucket, one
    // decision, and it moves every time or never.
    let first = decision(&run_install(&p, 0));
    for _ in 0..4 {
        let out = run_install(&p, 0);
        assert_eq!(decision(&out), first);
        let updated = update_traces(&out).contains(&"Updated.".to_owned());
        assert_eq!(updated, first.1, "{}", stderr(&out));
    }
    // 40 installs under two salts: each salt offers it to some and not to
    // others, and not to the same ones (by chance: 2^-40).
    let draw = |salt: &str| -> Vec<bool> {
        serve(&p, &rollout(&p, 50.0, salt, false, false));
        (1..=40).map(|n| decision(&run_install(&p, n)).1).collect()
    };
    let (one, two) = (draw("first"), draw("second"));
    for drawn in [&one, &two] {
        let moved = drawn.iter().filter(|m| **m).count();
        assert!((5..=35).contains(&moved), "{drawn:?}");
    }
    assert_ne!(one, two);
}

#[test]
fn concurrent_first_launches_make_one_identity() {
    let p = publish(&[]);
    serve(&p, &rollout(&p, 50.0, "s", false, false));
    let children: Vec<_> = (0..6)
        .map(|n| {
            let exe = p.s.path(&format!("copy-{n}/{NAME}.bin"));
            write_file(&exe, &p.v10, true);
            p.s.command(&exe)
                .arg("version")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let buckets: Vec<u32> = children
        .into_iter()
        .map(|c| decision(&c.wait_with_output().expect("wait")).0)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] == w[1]), "{buckets:?}");
}

#[test]
fn the_identity_is_private_never_sent_and_a_damaged_one_is_replaced() {
    let p = publish(&[]);
    serve(&p, &rollout(&p, 0.0, "s", false, false));
    decision(&p.run(&["version"]));
    let record = p.s.cache().join(NAME).join(".install");
    let mode = fs::metadata(&record).expect("record").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = fs::read_to_string(&record).expect("read");
    let id = text.lines().nth(1).expect("id line").to_owned();
    assert_eq!(id.len(), 32, "{text}");
    for request in p.server.requests() {
        assert!(!request.path.contains(&id), "{request:?}");
    }
    // Damaged: replaced, traced; it was never trusted half-read.
    fs::write(&record, &text[..text.len() / 2]).expect("damage");
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("is damaged") && t.contains("replacing it")),
        "{}",
        stderr(&out)
    );
    let replaced = fs::read_to_string(&record).expect("read");
    assert!(replaced.starts_with("onefile install 1\n"), "{replaced}");
    assert_ne!(replaced.lines().nth(1), Some(id.as_str()));
    // The same, next launch: kept.
    let again = decision(&p.run(&["version"])).0;
    assert_eq!(again, decision(&p.run(&["version"])).0);
}

#[test]
fn a_refused_manifest_moves_on_to_the_next_location() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    // 1.0 again, asking a second location when the first fails.
    let primary = p.server.url("/{VERSION}/update.toml");
    let fallback = p.server.url("/fallback/{VERSION}/update.toml");
    let public = a.public.to_str().expect("utf8");
    p.repack_10(&[&primary, &fallback], &["--public-key", public]);
    // The first location serves a frozen manifest (a host left behind, or
    // one that withholds updates); the second a fresh one.
    let t = now();
    let expired = manifest(release(&p, "1.1", &[&a]), 10, t - 60);
    serve(&p, &signed(&expired, &[&a]));
    let fresh = manifest(release(&p, "1.1", &[&a]), 11, t + DAY);
    p.server.route(
        "/fallback/1.0/update.toml",
        Route::file(signed(&fresh, &[&a]).into_bytes()),
    );
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(
            |t| t.starts_with("Location 1 of 2: Not using the update info")
                && t.contains("expired")
        ),
        "{traces:#?}"
    );
    assert_updated(&out);
    assert_eq!(p.version_now(), "1.1");
}

/// The trace lines of `out` that refuse update info.
fn refusals(out: &Output) -> Vec<String> {
    update_traces(out)
        .into_iter()
        .filter(|t| t.starts_with("Not using the update info from "))
        .collect()
}

#[test]
fn a_build_for_another_platform_is_refused_by_the_manifest_and_by_the_build() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    // 1.1 of the same app, same key, same update URL: for Windows.
    let windows = p.s.path("windows/onefile-test.exe");
    let spec = p.server.url("/{VERSION}/update.toml");
    // A stand-in Windows stub (a PE header and the stub marker): all that
    // `pack` and the platform checks read of one.
    let stub = windows_pe::windows_stub(&p.s, windows_pe::pe_head(windows_pe::CONSOLE));
    let app = p.s.path("app-1.1");
    let public = a.public.to_str().expect("utf8");
    let out = tools([
        "pack",
        app.to_str().expect("utf8"),
        "-o",
        windows.to_str().expect("utf8"),
        "--stub",
        stub.to_str().expect("utf8"),
        "--entry",
        "bin/probe",
        "--name",
        NAME,
        "--version",
        "1.1",
        "--update-url-spec",
        &spec,
        "--public-key",
        public,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = fs::read(&windows).expect("read");
    assert!(bytes.starts_with(b"MZ"));
    p.server
        .route(&format!("/win/{NAME}.bin"), Route::file(bytes.clone()));
    let release = Release {
        url: p.server.url(&format!("/win/{NAME}.bin")),
        crc32: crc32fast::hash(&bytes),
        size: Some(bytes.len() as u64),
        version: Some("1.1".into()),
        signature: Some(sign(&a, &bytes, &trusted_comment(NAME, "1.1"))),
        signatures: vec![],
        mirrors: vec![],
    };
    let t = now();
    // Honest: the manifest says it is for Windows.
    let honest = UpdateManifest {
        os: Some("windows".into()),
        ..manifest(release.clone(), t as u64, t + DAY)
    };
    expect_refused(
        &p,
        &signed(&honest, &[&a]),
        &format!(
            "it is for windows/x86_64, not linux/{}",
            std::env::consts::ARCH
        ),
    );
    // Lying: the build itself is refused, from its first bytes, before the
    // whole of it is downloaded; the install keeps running 1.0.
    let lying = manifest(release, t as u64 + 1, t + DAY);
    serve(&p, &signed(&lying, &[&a]));
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("is a build for windows/x86_64, not for linux/")),
        "{}",
        stderr(&out)
    );
    assert!(!traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    p.assert_still_10();
    // From a host with real ranges (nginx): refused from its first bytes,
    // never downloaded whole.
    let site = p.s.path("nginx-site");
    write_file(&site.join(format!("win/{NAME}.bin")), &bytes, false);
    let Some(nginx) = Nginx::start(&site, &p.s.path("nginx")) else {
        skip("nginx is not installed (make deps installs it)");
        return;
    };
    let lying = manifest(
        Release {
            url: nginx.url(&format!("/win/{NAME}.bin")),
            ..lying.offered()
        },
        t as u64 + 2,
        t + DAY,
    );
    let lying = UpdateManifest {
        specs: vec![spec.clone()],
        ..lying
    };
    serve(&p, &signed(&lying, &[&a]));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("is a build for windows/x86_64")),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
    let requests = nginx.requests();
    let sent: u64 = requests.iter().map(|r| r.sent).sum();
    assert!(
        requests.iter().all(|r| r.range.is_some()) && sent < bytes.len() as u64 / 4,
        "{requests:#?}"
    );
}

#[test]
fn another_channels_manifest_is_refused_and_each_channel_keeps_its_sequence() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let t = now();
    let beta_spec = p.server.url("/beta/{VERSION}/update.toml");
    // Beta's genuine manifest, served at the stable URL.
    let beta = UpdateManifest {
        specs: vec![beta_spec.clone()],
        ..manifest(release(&p, "1.1", &[&a]), t as u64, t + DAY)
    };
    expect_refused(&p, &signed(&beta, &[&a]), "another channel");
    // A beta copy of the app shares the cache folder and accepts a later
    // beta manifest (offering the stable 1.0: not newer, nothing happens).
    let beta_exe = p.s.path(&format!("beta/{NAME}.bin"));
    let out = pack(
        &p.s.path("app-1.0"),
        &beta_exe,
        &[
            "--name",
            NAME,
            "--version",
            "1.0",
            "--update-url-spec",
            &beta_spec,
            "--public-key",
            a.public.to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let later_beta = UpdateManifest {
        specs: vec![beta_spec],
        ..manifest(release(&p, "1.0", &[&a]), t as u64 + 1000, t + DAY)
    };
    p.server.route(
        "/beta/1.0/update.toml",
        Route::file(signed(&later_beta, &[&a]).into_bytes()),
    );
    let out = p.s.run(&beta_exe, ["version"]);
    assert!(refusals(&out).is_empty(), "{}", stderr(&out));
    // Stable's own, signed earlier than beta's: still accepted.
    run_updated(
        &p,
        &signed(
            &manifest(release(&p, "1.1", &[&a]), t as u64, t + DAY),
            &[&a],
        ),
    );
}

/// The install record's path in `p`'s cache folder.
fn record_of(p: &Published) -> PathBuf {
    p.s.cache().join(NAME).join(".install")
}

#[test]
fn a_sequence_from_the_future_is_refused_and_a_stored_one_is_dropped() {
    let p = publish(&[]);
    let t = now();
    for sequence in [u64::MAX, i64::MAX as u64, (t + 31 * DAY) as u64] {
        let future = manifest(release(&p, "1.1", &[]), sequence, t + DAY);
        expect_refused(&p, &signed(&future, &[]), "is from the future");
    }
    // Accepted: 10 (offering the running build).
    serve(
        &p,
        &signed(&manifest(release(&p, "1.0", &[]), 10, t + DAY), &[]),
    );
    assert!(refusals(&p.run(&["version"])).is_empty());
    // A stored sequence from the future (written by an older stub, or
    // damaged): dropped, the identity kept.
    let record = record_of(&p);
    let text = fs::read_to_string(&record).expect("record");
    let id = text.lines().nth(1).expect("id").to_owned();
    fs::write(&record, text.replace(" 10\n", &format!(" {}\n", u64::MAX))).expect("write");
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("is damaged") && t.contains("from the future")),
        "{}",
        stderr(&out)
    );
    let text = fs::read_to_string(&record).expect("record");
    assert_eq!(text.lines().nth(1), Some(id.as_str()), "{text}");
    assert!(text.contains(" 10\n"), "{text}");
}

#[test]
fn without_keys_a_manifest_without_sequence_is_refused_once_one_was_seen() {
    let p = publish(&[]);
    let t = now();
    serve(
        &p,
        &signed(&manifest(release(&p, "1.0", &[]), 7000, t + DAY), &[]),
    );
    assert!(refusals(&p.run(&["version"])).is_empty());
    let bare = UpdateManifest {
        sequence: None,
        expires: None,
        ..manifest(release(&p, "1.1", &[]), 0, t + DAY)
    };
    expect_refused(
        &p,
        &bare.to_toml(),
        "names no sequence, but this install has seen 7000",
    );
    p.assert_still_10();
}

#[test]
fn a_halt_never_moves_an_install_back() {
    let p = publish(&["--allow-downgrade"]);
    run_updated(&p, &rollout(&p, 100.0, "s", false, false));
    // 1.1 looks for updates in its own folder.
    let halted = rollout(&p, 100.0, "s", true, false);
    p.server
        .route("/1.1/update.toml", Route::file(halted.into_bytes()));
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("runs that release already")),
        "{traces:#?}"
    );
    assert!(!traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(p.version_now(), "1.1");
}

#[test]
fn a_record_of_a_newer_format_is_left_alone() {
    let p = publish(&[]);
    serve(&p, &rollout(&p, 50.0, "s", false, false));
    let record = record_of(&p);
    let newer = "onefile install 2\nwhatever a newer stub keeps\nend\n";
    write_file(&record, newer.as_bytes(), false);
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("No rollout bucket") && t.contains("newer format")),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&record).expect("read"), newer);
    p.assert_still_10();
}

#[test]
fn a_folder_in_the_records_way_is_a_local_failure_not_a_servers() {
    let p = publish(&[]);
    let t = now();
    // A folder where the record's temporary copy goes: written elsewhere.
    let cache = p.s.cache().join(NAME);
    fs::create_dir_all(cache.join(".install.new/x")).expect("mkdir");
    run_updated(
        &p,
        &signed(&manifest(release(&p, "1.1", &[]), 10, t + DAY), &[]),
    );
    assert!(record_of(&p).is_file());
    // A folder where its lock goes: no record can be used. That is this
    // machine's problem: the fallback location is not asked.
    let p = publish(&[]);
    let primary = p.server.url("/{VERSION}/update.toml");
    let fallback = p.server.url("/fallback/{VERSION}/update.toml");
    p.repack_10(&[&primary, &fallback], &[]);
    fs::create_dir_all(p.s.cache().join(NAME).join(".install.lock/x")).expect("mkdir");
    let spec_manifest = UpdateManifest {
        specs: vec![],
        ..manifest(release(&p, "1.1", &[]), 10, t + DAY)
    };
    let text = signed(&spec_manifest, &[]);
    serve(&p, &text);
    p.server
        .route("/fallback/1.0/update.toml", Route::file(text.into_bytes()));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains(".install.lock") && t.contains("not checking for updates")),
        "{}",
        stderr(&out)
    );
    assert!(
        !p.server
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/fallback/")),
        "the fallback location was asked"
    );
    // No backoff: the next launch checks again.
    let asked = |p: &Published| {
        p.server
            .requests()
            .iter()
            .filter(|r| r.path == "/1.0/update.toml")
            .count()
    };
    let before = asked(&p);
    let out = p.run(&["version"]);
    assert_eq!(asked(&p), before + 1, "{}", stderr(&out));
}

#[test]
fn the_signatures_comment_must_be_the_bodys() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let good = manifest(release(&p, "1.1", &[&a]), 10, now() + DAY);
    let body = good.to_toml();
    let comment = "onefile app=OTHER version=9.9";
    let text = with_signatures(&body, vec![sign(&a, body.as_bytes(), comment)]);
    expect_refused(
        &p,
        &text,
        "its signature says 'onefile app=OTHER version=9.9'",
    );
}

#[test]
fn a_signed_manifest_with_windows_line_endings_is_accepted() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let good = manifest(release(&p, "1.1", &[&a]), 10, now() + DAY);
    let body = good.to_toml().replace('\n', "\r\n");
    let comment = manifest_trusted_comment(NAME, 10, good.expires_at().expect("an instant"));
    let text = with_signatures(&body, vec![sign(&a, body.as_bytes(), &comment)]);
    let text = text.replace("[manifest_signature]\n", "[manifest_signature]\r\n");
    run_updated(&p, &text);
}

#[test]
fn an_expiry_too_far_ahead_is_refused() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let p = publish_trusting(&[&a]);
    let t = now();
    let far = manifest(release(&p, "1.1", &[&a]), 10, t + 400 * DAY);
    expect_refused(&p, &signed(&far, &[&a]), "too far ahead");
    // A year (what publish allows at most) is fine.
    run_updated(
        &p,
        &signed(
            &manifest(release(&p, "1.1", &[&a]), 11, t + 366 * DAY),
            &[&a],
        ),
    );
}

#[test]
fn a_rollout_without_salt_offers_nothing_and_a_full_one_needs_no_identity() {
    let p = publish(&[]);
    serve(&p, &rollout(&p, 99.0, "", false, false));
    let out = p.run(&["version"]);
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.contains("has no salt: not offered")),
        "{}",
        stderr(&out)
    );
    p.assert_still_10();
    // No identity can be drawn (the record is a newer stub's): a rollout
    // to every install is still offered.
    let record = record_of(&p);
    write_file(&record, b"onefile install 2\nnewer\nend\n", false);
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).expect("chmod");
    let full = rollout(&p, 100.0, "s", false, false);
    run_updated(&p, &full);
}

#[test]
fn a_release_held_back_for_a_bad_signature_is_taken_once_its_signature_is_fixed() {
    let keys = Scratch::new();
    let a = key(&keys, "a");
    let b = key(&keys, "b");
    let p = publish_trusting(&[&a]);
    let t = now();
    // Genuine update info announcing 1.1 with a build signature by a key
    // the build does not trust (a publisher's slip).
    let slip = manifest(release(&p, "1.1", &[&b]), t as u64, t + DAY);
    serve(&p, &signed(&slip, &[&a]));
    let out = p.run(&["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    // The same announcement again: held back, nothing downloaded.
    let before = p.server.requests().len();
    let out = p.run(&["version"]);
    let traces = update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.contains("failed verification on every mirror; not downloaded again")),
        "{traces:#?}"
    );
    assert_eq!(p.server.requests().len(), before + 1, "only the check");
    // The same build announced with its signature fixed: taken at once.
    let fixed = manifest(release(&p, "1.1", &[&a]), t as u64 + 1, t + DAY);
    run_updated(&p, &signed(&fixed, &[&a]));
}
