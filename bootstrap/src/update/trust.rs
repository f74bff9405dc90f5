//! Whether a fetched `update.toml` is used, and which of its releases this
//! install is offered (see "Trusting a manifest" and "Staged rollout" in
//! `docs/updates.md`).
//!
//! [`accept`], in order; the first check that fails refuses the manifest
//! (one trace line; the app runs on, nothing else happens):
//! 1. A build with keys: the signature section holds a minisign signature,
//!    by one of its keys, of the body's exact bytes (pre-hashed only).
//! 2. The body parses (only the body is read for fields).
//! 3. It names this app; a build with keys also needs a `sequence`, an
//!    `expires`, an `os`, an `arch` and `specs`.
//! 4. `os` / `arch`, when given, are this stub's (a build for another
//!    platform would replace the install with a file it cannot run).
//! 5. `specs`, when given, holds this build's update URL spec (another
//!    channel's manifest served in its place).
//! 6. The signature's trusted comment is the body's app, sequence, expiry.
//! 7. `expires`, when given, is still ahead (freeze), and not more than
//!    [`MAX_LIFETIME_S`] ahead.
//! 8. `sequence`, when given, is not from the future
//!    ([`install_record::MAX_AHEAD_S`]); it is not lower than the highest
//!    this install accepted on its channel (replay, or a stale copy going
//!    backwards), nor missing once one was; it then becomes the highest.
//!
//! [`choose`]: the rollout's release when it offers it to this install's
//! bucket (or it is critical, and not halted), or when this install runs it
//! already (a halt or a lower share never moves an install back); else the
//! top-level release.

use payload_tools::manifest::{
    ROLLOUT_SCALE, Release, Rollout, UpdateManifest, manifest_trusted_comment, rollout_bucket,
    signatures_of, split_signed,
};

use super::check::Answer;
use super::install_record::{self, MAX_AHEAD_S, Refusal};
use super::minisig::{FileHasher, PublicKey, Signature};
use super::report::Reason;
use super::{RunningBuild, UpdateError};
use crate::trace::{UPDATE, info};

/// An expiry further ahead is refused: `publish` gives at most 366 days;
/// one more for clocks that disagree.
const MAX_LIFETIME_S: i64 = 367 * 86_400;

/// The manifest the host served, if this install may use it.
pub fn accept(build: &RunningBuild, answer: &Answer) -> Result<UpdateManifest, UpdateError> {
    let refuse_as = |class: Reason| {
        move |reason: String| UpdateError::Untrusted {
            url: answer.url.clone(),
            reason,
            class,
        }
    };
    let refuse = refuse_as(Reason::Identity);
    let keys = &build.settings.public_keys;
    let keyed = !keys.is_empty();
    let signed_comment = if keyed {
        Some(check_signature(keys, &answer.text).map_err(refuse_as(Reason::Signature))?)
    } else {
        None
    };
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
        None if keyed => return Err(refuse("it names no app".into())),
        _ => {}
    }
    // Reported as the check each missing field serves.
    let missing = if manifest.sequence.is_none() {
        Some(Reason::Replay)
    } else if manifest.expires.is_none() {
        Some(Reason::Expired)
    } else if manifest.os.is_none() || manifest.arch.is_none() || manifest.specs.is_empty() {
        Some(Reason::Identity)
    } else {
        None
    };
    if keyed && let Some(class) = missing {
        return Err(refuse_as(class)(
            "it names no sequence, expiry, os, arch or specs, which signed update info must".into(),
        ));
    }
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if manifest.os.as_deref().is_some_and(|o| o != os)
        || manifest.arch.as_deref().is_some_and(|a| a != arch)
    {
        return Err(refuse(format!(
            "it is for {}/{}, not {os}/{arch}",
            manifest.os.as_deref().unwrap_or(os),
            manifest.arch.as_deref().unwrap_or(arch)
        )));
    }
    let spec = &build.settings.url_spec;
    if !manifest.specs.is_empty() && !manifest.specs.contains(spec) {
        return Err(refuse(format!(
            "it is published for other update URLs (another channel), not '{spec}'"
        )));
    }
    let expires_at = manifest.expires_at().map_err(refuse_as(Reason::Expired))?;
    if let (Some(comment), Some(sequence)) = (&signed_comment, manifest.sequence) {
        let expected = manifest_trusted_comment(&build.name, sequence, expires_at);
        if *comment != expected {
            return Err(refuse_as(Reason::Signature)(format!(
                "its signature says '{comment}', but its body is '{expected}'"
            )));
        }
    }
    let now = now_unix();
    if let Some(expires) = expires_at {
        let at = manifest.expires.as_ref().map(ToString::to_string);
        let at = at.unwrap_or_default();
        if expires <= now {
            return Err(refuse_as(Reason::Expired)(format!(
                "it expired at {at}; the publisher has not refreshed it"
            )));
        }
        if expires - now > MAX_LIFETIME_S {
            return Err(refuse_as(Reason::Expired)(format!(
                "it expires at {at}, too far ahead (more than {} days)",
                MAX_LIFETIME_S / 86_400
            )));
        }
    }
    if let Some(sequence) = manifest.sequence
        && i64::try_from(sequence).map_or(true, |s| s > now.saturating_add(MAX_AHEAD_S))
    {
        return Err(refuse_as(Reason::Replay)(format!(
            "its sequence {sequence} is from the future (a sequence is the time of signing; more than {} days ahead of this machine's clock)",
            MAX_AHEAD_S / 86_400
        )));
    }
    match install_record::admit_sequence(build, manifest.sequence, now)? {
        Ok(()) => Ok(manifest),
        Err(Refusal::Lower(highest)) => Err(refuse_as(Reason::Replay)(format!(
            "its sequence {} is lower than {highest}, already seen (an old copy)",
            manifest.sequence.unwrap_or_default()
        ))),
        Err(Refusal::Missing(highest)) => Err(refuse_as(Reason::Replay)(format!(
            "it names no sequence, but this install has seen {highest} (an old copy)"
        ))),
    }
}

/// The release this install is offered.
pub fn choose(build: &RunningBuild, manifest: &UpdateManifest) -> Release {
    let Some(rollout) = &manifest.rollout else {
        return manifest.offered();
    };
    if is_offered(build, rollout) {
        return rollout.release.clone();
    }
    if runs(build, &rollout.release) {
        // Offered it before a halt or a lower share: it stays (only a new
        // release moves it; going back is the publisher's to decide).
        info!(target: UPDATE, "This install runs that release already; staying on it.");
        return rollout.release.clone();
    }
    manifest.offered()
}

/// Whether the running executable is `release`'s build.
fn runs(build: &RunningBuild, release: &Release) -> bool {
    release.size.is_none_or(|size| size == build.packed.len)
        && build
            .packed
            .whole_file_crc32()
            .is_ok_and(|crc32| crc32 == release.crc32)
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
    let percent = format!("{}.{:02}%", share / 100, share % 100);
    if share >= ROLLOUT_SCALE {
        // Every bucket is offered: no identity needed.
        info!(target: UPDATE, "Rollout of {version} offers {percent} of installs: offered.");
        return true;
    }
    if rollout.salt.is_empty() {
        info!(target: UPDATE, "Rollout of {version} has no salt: not offered.");
        return false;
    }
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
        "Rollout of {version} offers {percent} of installs; this install's bucket is {bucket} of {ROLLOUT_SCALE}: {}.",
        if offered { "offered" } else { "not offered" }
    );
    offered
}

/// Checks that the manifest `text` carries a signature of its body by one
/// of `keys`; traces which key signed; returns its trusted comment.
fn check_signature(keys: &[String], text: &str) -> Result<String, String> {
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
                    return Ok(signature.trusted_comment().to_owned());
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
