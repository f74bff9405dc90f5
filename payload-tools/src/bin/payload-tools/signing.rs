//! Keys and signatures in minisign's own formats, so the stock `minisign`
//! tool interoperates: `keygen` writes `NAME.key` / `NAME.pub` as
//! `minisign -G -W` does, signatures are `.minisig` text that
//! `minisign -V` checks, and keys made by `minisign -G -W` load here.
//!
//! The secret key is not encrypted: it is meant to live in a CI secret
//! store, which protects it better than a password typed by a script.

use std::fs::File;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKeyBox, SecretKey, SecretKeyBox};
use payload_tools::manifest::{
    UpdateManifest, manifest_trusted_comment, trusted_comment, with_signatures,
};

use crate::Failure;

/// Writes a new key pair to `NAME.key` (mode 0600 from its creation, only
/// in a folder nobody else can write) and `NAME.pub`; never overwrites.
pub fn keygen(base: &Path) -> Result<(PathBuf, PathBuf), Failure> {
    let secret_path = with_suffix(base, "key");
    let public_path = with_suffix(base, "pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(Failure {
                message: format!("'{}' exists already", path.display()),
                hint: Some(
                    "keys are never overwritten: choose another name, or delete it first".into(),
                ),
            });
        }
    }
    let pair = KeyPair::generate_unencrypted_keypair()
        .map_err(|e| format!("cannot generate keys: {e}"))?;
    let public = pair
        .pk
        .to_box()
        .map_err(|e| format!("cannot encode the public key: {e}"))?
        .into_string();
    let secret = pair
        .sk
        .to_box(None)
        .map_err(|e| format!("cannot encode the secret key: {e}"))?
        .into_string();
    // The secret first: it checks the folder, and refuses one others can write.
    payload_tools::persist::write_new_secret(&secret_path, secret.as_bytes())?;
    payload_tools::persist::write_new(&public_path, public.as_bytes())?;
    Ok((secret_path, public_path))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The base64 key line of a minisign public key file.
pub fn load_public_key(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read public key '{}': {e}", path.display()))?;
    if SecretKeyBox::from_string(&text).is_ok() && first_line_says(&text, "secret key") {
        return Err(Failure {
            message: format!(
                "'{}' is a secret key; --public-key takes the public one",
                path.display()
            ),
            hint: Some("give NAME.pub, and keep NAME.key out of what you ship".into()),
        });
    }
    let key = PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .map_err(|e| format!("'{}' is not a minisign public key: {e}", path.display()))?;
    Ok(key.to_base64())
}

/// Loads an unencrypted minisign secret key.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret key '{}': {e}", path.display()))?;
    if PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .is_ok()
    {
        return Err(Failure {
            message: format!(
                "'{}' is a public key; --key takes the secret one",
                path.display()
            ),
            hint: Some("give NAME.key, written by payload-tools keygen next to NAME.pub".into()),
        });
    }
    let boxed = SecretKeyBox::from_string(&text)
        .map_err(|e| format!("'{}' is not a minisign secret key: {e}", path.display()))?;
    let unusable = |e: &dyn std::fmt::Display| Failure {
        message: format!("cannot use secret key '{}': {e}", path.display()),
        hint: Some("use an unencrypted key: `payload-tools keygen`, or `minisign -G -W`".into()),
    };
    match boxed.into_unencrypted_secret_key() {
        Ok(key) => Ok(key),
        // The minisign crate computes the checksum of unencrypted keys
        // differently from minisign 0.11 (`minisign -G -W`), and refuses them
        // as corrupted: read such a key directly, then prove it works.
        Err(first) => {
            let key = raw_unencrypted_key(&text).ok_or_else(|| unusable(&first))?;
            prove_key_works(&key).map_err(|e| unusable(&e))?;
            Ok(key)
        }
    }
}

/// Whether the first line (minisign's untrusted comment) mentions `what`.
fn first_line_says(text: &str, what: &str) -> bool {
    text.lines().next().is_some_and(|l| l.contains(what))
}

fn raw_unencrypted_key(text: &str) -> Option<SecretKey> {
    use ct_codecs::{Base64, Decoder};
    let line = text.lines().nth(1)?.trim();
    let bytes = Base64::decode_to_vec(line, None).ok()?;
    // Bytes 2..4 are the key-derivation algorithm: zero when unencrypted.
    if bytes.get(2..4)? != [0, 0] {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok()
}

/// Signs and verifies a probe message: a damaged key fails here, not later.
fn prove_key_works(key: &SecretKey) -> Result<(), String> {
    let public = minisign::PublicKey::from_secret_key(key).map_err(|e| e.to_string())?;
    let probe: &[u8] = b"onefile key check";
    let signature =
        minisign::sign(Some(&public), key, probe, None, None).map_err(|e| e.to_string())?;
    minisign::verify(
        &public,
        &signature,
        std::io::Cursor::new(probe),
        true,
        false,
        false,
    )
    .map_err(|e| e.to_string())
}

/// Signs the file at `path` (a build of `name` `version`): the `.minisig`
/// text, whose trusted comment binds the signature to that app and version.
pub fn sign_file(
    path: &Path,
    key: &SecretKey,
    name: &str,
    version: &str,
) -> Result<String, Failure> {
    let file = File::open(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let comment = trusted_comment(name, version);
    let signature = minisign::sign(
        None,
        key,
        file,
        Some(&comment),
        Some("signature from payload-tools"),
    )
    .map_err(|e| format!("cannot sign '{}': {e}", path.display()))?;
    Ok(signature.into_string())
}

/// The text of `manifest` signed by each of `keys`: its TOML, then a
/// signature section whose signatures cover that TOML byte for byte. The
/// manifest must name its app and sequence (they are signed with it).
pub fn sign_manifest(manifest: &UpdateManifest, keys: &[SecretKey]) -> Result<String, Failure> {
    let body = manifest.to_toml();
    let (Some(app), Some(sequence)) = (&manifest.app, manifest.sequence) else {
        return Err("a signed manifest names its app and sequence"
            .to_owned()
            .into());
    };
    let expires = manifest
        .expires_at()
        .map_err(|e| format!("cannot sign the manifest: {e}"))?;
    let comment = manifest_trusted_comment(app, sequence, expires);
    let mut minisig = Vec::with_capacity(keys.len());
    for key in keys {
        let signature = minisign::sign(
            None,
            key,
            body.as_bytes(),
            Some(&comment),
            Some("manifest signature from payload-tools"),
        )
        .map_err(|e| format!("cannot sign the manifest: {e}"))?;
        minisig.push(signature.into_string());
    }
    Ok(with_signatures(&body, minisig))
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
