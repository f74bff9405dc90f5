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

use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, expect_failure, publish};

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
    UpdateManifest {
        app: Some(NAME.into()),
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
    let out = p.run(&["version"]);
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
    expect_refused(&p, &text, "no sequence or no expiry");
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
    p.s.command(&exe)
        .env("ONEFILE_CACHE_DIR", p.s.path(&format!("cache-{n}")))
        .arg("version")
        .output()
        .expect("run")
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
    let out = pack(
        &p.s.path("app-1.0"),
        &p.exe,
        &[
            "--name",
            NAME,
            "--version",
            "1.0",
            "--update-url-spec",
            &primary,
            "--update-url-spec",
            &fallback,
            "--public-key",
            public,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
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
