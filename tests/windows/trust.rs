//! Trusting `update.toml` on Windows: a build with keys installs from a
//! signed, fresh manifest, refuses an expired one, and keeps its install
//! record (the highest sequence seen on its channel, its identity) in its
//! cache folder, read back by the next launches.

use std::fs;
use std::path::PathBuf;

use minisign::{KeyPair, SecretKey};
use payload_tools::manifest::{
    Release, UpdateManifest, datetime_from_unix, manifest_trusted_comment, trusted_comment,
    with_signatures,
};

use crate::server::Route;
use crate::support::{self, Scratch};
use crate::update::{Published, publish};

/// The name `support::pack` gives the probe app.
const APP: &str = "probeapp";

/// A new key pair; the public key written to `keys` for `pack`.
fn key(keys: &Scratch) -> (SecretKey, PathBuf) {
    let pair = KeyPair::generate_unencrypted_keypair().expect("key pair");
    let public = keys.path("trusted.pub");
    let text = pair.pk.to_box().expect("public key").into_string();
    fs::write(&public, text).expect("write public key");
    (pair.sk, public)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// The text of `manifest` signed by `key`.
pub(crate) fn signed(manifest: &UpdateManifest, key: &SecretKey) -> String {
    let body = manifest.to_toml();
    let comment = manifest_trusted_comment(
        manifest.app.as_deref().unwrap_or(APP),
        manifest.sequence.unwrap_or(0),
        manifest.expires_at().expect("an instant"),
    );
    let signature = minisign::sign(None, key, body.as_bytes(), Some(&comment), None)
        .expect("sign")
        .into_string();
    with_signatures(&body, vec![signature])
}

/// A manifest offering 1.1 (its build signed by `key`), expiring at
/// `expires`, of sequence `sequence`.
fn offering_11(p: &Published, key: &SecretKey, sequence: u64, expires: i64) -> UpdateManifest {
    let bytes = p.bytes("1.1");
    let signature = minisign::sign(None, key, bytes, Some(&trusted_comment(APP, "1.1")), None)
        .expect("sign")
        .into_string();
    UpdateManifest {
        app: Some(APP.into()),
        os: Some(std::env::consts::OS.into()),
        arch: Some(std::env::consts::ARCH.into()),
        specs: vec![p.server.url("/{VERSION}/update.toml")],
        sequence: Some(sequence),
        expires: Some(datetime_from_unix(expires)),
        ..UpdateManifest::offering(Release {
            url: p.server.url("/1.1/app.exe"),
            crc32: crc32fast::hash(bytes),
            size: Some(bytes.len() as u64),
            version: Some("1.1".into()),
            signature: Some(signature),
            signatures: vec![],
            mirrors: vec![],
        })
    }
}

#[test]
fn a_signed_manifest_is_accepted_and_an_expired_one_refused() {
    let keys = Scratch::new();
    let (secret, public) = key(&keys);
    let p = publish(
        &["1.0", "1.1"],
        &["--public-key", public.to_str().expect("UTF-8")],
    );
    let t = now();
    let expired = signed(&offering_11(&p, &secret, t as u64, t - 60), &secret);
    p.server
        .route("/1.0/update.toml", Route::file(expired.into_bytes()));
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    let traces = support::update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Not using the update info from ") && t.contains("expired")),
        "{traces:#?}"
    );
    assert_eq!(p.installed(), p.bytes("1.0"));

    let fresh = signed(&offering_11(&p, &secret, t as u64, t + 86_400), &secret);
    p.server
        .route("/1.0/update.toml", Route::file(fresh.clone().into_bytes()));
    p.server
        .route("/1.1/update.toml", Route::file(fresh.into_bytes()));
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    assert!(traces.iter().any(|t| t == "Updated."), "{traces:#?}");
    assert_eq!(p.installed(), p.bytes("1.1"));
    // The sequence accepted is kept beside the cache.
    let record = fs::read_to_string(p.s.cache().join(APP).join(".install")).expect("record");
    assert!(
        record.starts_with("onefile install 1\n") && record.contains(&format!(" {t}\n")),
        "{record}"
    );
    // A replay of an older manifest (the expired one was never accepted:
    // nothing was raised by it) is refused from the record.
    let older = signed(&offering_11(&p, &secret, t as u64 - 1, t + 86_400), &secret);
    p.server
        .route("/1.1/update.toml", Route::file(older.into_bytes()));
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|l| l.contains(&format!("is lower than {t}, already seen"))),
        "{traces:#?}"
    );
    // A rollout below 100% draws the install's bucket from its identity:
    // the same bucket on every launch, the identity kept.
    let mut rollout = offering_11(&p, &secret, t as u64 + 1, t + 86_400);
    rollout.rollout = Some(payload_tools::manifest::Rollout {
        release: rollout.offered(),
        percent: 50.0,
        salt: "s".into(),
        halted: false,
        critical: false,
    });
    p.server.route(
        "/1.1/update.toml",
        Route::file(signed(&rollout, &secret).into_bytes()),
    );
    let bucket = |out: &std::process::Output| {
        let traces = support::update_traces(out);
        traces
            .iter()
            .find_map(|l| {
                l.split("this install's bucket is ")
                    .nth(1)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no bucket: {traces:#?}"))
    };
    let first = bucket(&p.run(&["version"]));
    let id = fs::read_to_string(p.s.cache().join(APP).join(".install")).expect("record");
    let id = id.lines().nth(1).map(str::to_owned);
    assert_eq!(bucket(&p.run(&["version"])), first);
    let again = fs::read_to_string(p.s.cache().join(APP).join(".install")).expect("record");
    assert_eq!(again.lines().nth(1).map(str::to_owned), id, "{again}");
    let fresh = signed(&offering_11(&p, &secret, t as u64 + 2, t + 86_400), &secret);
    p.server
        .route("/1.1/update.toml", Route::file(fresh.into_bytes()));
    // Read back by the next start (1.1, offered itself): a private record
    // of ours, not damaged.
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.contains("matches already")),
        "{traces:#?}"
    );
    assert!(!traces.iter().any(|t| t.contains("damaged")), "{traces:#?}");
}
