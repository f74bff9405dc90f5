//! Whether a fetched `update.toml` is used, and which of its releases this
//! install is offered (see "Trusting a manifest" and "Staged rollout" in
//! `docs/updates.md`).
//!
//! [`accept`], in order; the first check that fails refuses the manifest
//! (one trace line; the app runs on, nothing else happens):
//! 1. A build with keys: the signature section holds a minisign signature,
//!    by one of its keys, of the body's exact bytes (pre-hashed only); the
//!    body names this app, a `sequence` and an `expires`. A build without
//!    keys ignores signatures, but refuses a manifest naming another app.
//! 2. The body parses (only the body is read for fields).
//! 3. `expires`, when given, is still ahead (freeze).
//! 4. `sequence`, when given, is not lower than the highest this install
//!    accepted (replay, or a stale copy going backwards); it then becomes
//!    the highest ([`install_record`]).
//!
//! [`choose`]: the rollout's release when it offers it to this install's
//! bucket (or it is critical, and not halted), else the top-level release.

use payload_tools::manifest::{
    ROLLOUT_SCALE, Release, Rollout, UpdateManifest, rollout_bucket, signatures_of, split_signed,
};

use super::check::Answer;
use super::install_record;
use super::minisig::{FileHasher, PublicKey, Signature};
use super::{RunningBuild, UpdateError};
use crate::trace::{UPDATE, info};

/// The manifest the host served, if this install may use it.
pub fn accept(build: &RunningBuild, answer: &Answer) -> Result<UpdateManifest, UpdateError> {
    let refuse = |reason: String| UpdateError::Untrusted {
        url: answer.url.clone(),
        reason,
    };
    let keys = &build.settings.public_keys;
    if !keys.is_empty() {
        check_signature(keys, &answer.text).map_err(refuse)?;
    }
    let manifest = UpdateManifest::parse(&answer.text).map_err(|reason| UpdateError::Manifest {
        url: answer.url.clone(),
        reason,
    })?;
    match manifest.app.as_deref() {
        Some(app) if app != build.name => {
            return Err(refuse(format!(
                "it is for the app '{app}', not '{}'",
                build.name
            )));
        }
        None if !keys.is_empty() => return Err(refuse("it names no app".into())),
        _ => {}
    }
    if !keys.is_empty() && (manifest.sequence.is_none() || manifest.expires.is_none()) {
        return Err(refuse(
            "it names no sequence or no expiry, which signed update info must".into(),
        ));
    }
    if let Some(expires) = manifest.expires_at().map_err(refuse)?
        && expires <= now_unix()
    {
        let at = manifest.expires.as_ref().map(ToString::to_string);
        return Err(refuse(format!(
            "it expired at {}; the publisher has not refreshed it",
            at.unwrap_or_default()
        )));
    }
    if let Some(sequence) = manifest.sequence
        && let Err(highest) = install_record::admit_sequence(build, sequence)?
    {
        return Err(refuse(format!(
            "its sequence {sequence} is lower than {highest}, already seen (an old copy)"
        )));
    }
    Ok(manifest)
}

/// The release this install is offered.
pub fn choose(build: &RunningBuild, manifest: &UpdateManifest) -> Release {
    match &manifest.rollout {
        Some(rollout) if is_offered(build, rollout) => rollout.release.clone(),
        _ => manifest.offered(),
    }
}

/// Whether `rollout` offers its release to this install; traces why.
fn is_offered(build: &RunningBuild, rollout: &Rollout) -> bool {
    let version = rollout
        .release
        .version
        .as_deref()
        .unwrap_or("the new build");
    if rollout.halted {
        info!(target: UPDATE, "Rollout of {version} is halted: not offered.");
        return false;
    }
    if rollout.critical {
        info!(target: UPDATE, "Rollout of {version} is critical: offered to every install.");
        return true;
    }
    let share = rollout.basis_points();
    let id = match install_record::install_id(build) {
        Ok(id) => id,
        Err(e) => {
            info!(target: UPDATE, "No rollout bucket for this install: {e}");
            return false;
        }
    };
    let bucket = rollout_bucket(&id, &rollout.salt);
    let offered = rollout.offers(bucket);
    info!(
        target: UPDATE,
        "Rollout of {version} offers {}.{:02}% of installs; this install's bucket is {bucket} of {ROLLOUT_SCALE}: {}.",
        share / 100,
        share % 100,
        if offered { "offered" } else { "not offered" }
    );
    offered
}

/// Checks that the manifest `text` carries a signature of its body by one
/// of `keys`; traces which key signed.
fn check_signature(keys: &[String], text: &str) -> Result<(), String> {
    let split = split_signed(text);
    let signatures = signatures_of(&split);
    if signatures.is_empty() {
        return Err("it is not signed; this build uses only signed update info".into());
    }
    let mut hasher = FileHasher::default();
    hasher.update(split.body.as_bytes());
    let digest = hasher.finish();
    let mut last_error = String::new();
    for text in &signatures {
        let signature = match Signature::decode(text) {
            Ok(signature) => signature,
            Err(e) => {
                last_error = format!("a signature is unreadable: {e}");
                continue;
            }
        };
        let id = signature.key_id();
        if last_error.is_empty() {
            last_error = format!("it is signed by another key ({id})");
        }
        for key in keys.iter().filter_map(|k| PublicKey::from_base64(k).ok()) {
            if !key.signed(&signature) {
                continue;
            }
            match key.check(&signature, &digest) {
                Ok(()) => {
                    info!(target: UPDATE, "Update info signed by trusted key {id}.");
                    return Ok(());
                }
                Err(e) => last_error = format!("bad signature by key {id}: {e}"),
            }
        }
    }
    Err(last_error)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
