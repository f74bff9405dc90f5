//! Checking minisign signatures (the format of the `minisign` tool) with the
//! primitives the stub already carries for TLS: Ed25519 from `ring`, plus
//! BLAKE2b for minisign's pre-hashed signatures. A separate minisign crate
//! would bring a second Ed25519 implementation into every packed file.
//!
//! Formats (minisign's own):
//! - public key: base64 of `"Ed"`, an 8-byte key id, the 32-byte key;
//! - signature file: an untrusted comment line; base64 of the algorithm
//!   (`"ED"`: the BLAKE2b-512 hash of the file is signed; `"Ed"`: legacy, the
//!   file itself), the key id and the 64-byte signature; a
//!   `trusted comment: ` line; base64 of the 64-byte global signature over
//!   the signature followed by the trusted comment.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blake2::{Blake2b512, Digest};
use ring::signature::{ED25519, UnparsedPublicKey};

/// A decoded minisign public key.
#[derive(Debug)]
pub struct PublicKey {
    key_id: [u8; 8],
    key: [u8; 32],
}

/// A decoded minisign signature.
#[derive(Debug)]
pub struct Signature {
    prehashed: bool,
    key_id: [u8; 8],
    signature: [u8; 64],
    trusted_comment: String,
    global_signature: [u8; 64],
}

impl PublicKey {
    /// From the base64 key line.
    pub fn from_base64(line: &str) -> Result<PublicKey, String> {
        let bytes = STANDARD
            .decode(line.trim())
            .map_err(|e| format!("bad public key: {e}"))?;
        if bytes.len() != 42 || &bytes[..2] != b"Ed" {
            return Err("not a minisign Ed25519 public key".into());
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[2..10]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[10..]);
        Ok(PublicKey { key_id, key })
    }

    /// Whether `signature` claims to be by this key.
    pub fn signed(&self, signature: &Signature) -> bool {
        self.key_id == signature.key_id
    }

    /// Checks `signature`, by this key, of the file whose BLAKE2b-512 hash
    /// is `digest`: the file's signature and the trusted comment's (global)
    /// signature must both hold.
    pub fn check(&self, signature: &Signature, digest: &FileDigest) -> Result<(), String> {
        if self.key_id != signature.key_id {
            return Err("signed by another key".into());
        }
        if !signature.prehashed {
            return Err("legacy (not pre-hashed) signatures are not accepted".into());
        }
        if !self.verify(&digest.0, &signature.signature) {
            return Err("the signature does not match the file".into());
        }
        let mut global = Vec::with_capacity(64 + signature.trusted_comment.len());
        global.extend_from_slice(&signature.signature);
        global.extend_from_slice(signature.trusted_comment.as_bytes());
        if !self.verify(&global, &signature.global_signature) {
            return Err("the trusted comment's signature does not match".into());
        }
        Ok(())
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(message, signature)
            .is_ok()
    }
}

impl Signature {
    /// Parses the text of a `.minisig` file.
    pub fn decode(text: &str) -> Result<Signature, String> {
        let mut lines = text.lines().map(str::trim_end);
        let _untrusted = lines.next().ok_or("empty signature")?;
        let sig = STANDARD
            .decode(lines.next().ok_or("no signature line")?.trim())
            .map_err(|e| format!("bad signature line: {e}"))?;
        let trusted_comment = lines
            .next()
            .and_then(|l| l.strip_prefix("trusted comment: "))
            .ok_or("no trusted comment")?
            .to_owned();
        let global = STANDARD
            .decode(lines.next().ok_or("no global signature")?.trim())
            .map_err(|e| format!("bad global signature: {e}"))?;
        if sig.len() != 74 || global.len() != 64 {
            return Err("signature of the wrong length".into());
        }
        let prehashed = match &sig[..2] {
            b"ED" => true,
            b"Ed" => false,
            _ => return Err("unknown signature algorithm".into()),
        };
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&sig[2..10]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&sig[10..]);
        let mut global_signature = [0u8; 64];
        global_signature.copy_from_slice(&global);
        Ok(Signature {
            prehashed,
            key_id,
            signature,
            trusted_comment,
            global_signature,
        })
    }

    pub fn trusted_comment(&self) -> &str {
        &self.trusted_comment
    }

    /// The id of the key it claims, as minisign shows key ids.
    pub fn key_id(&self) -> String {
        format!("{:016X}", u64::from_le_bytes(self.key_id))
    }
}

/// The BLAKE2b-512 hash of a file, which pre-hashed signatures sign: one
/// hash serves every trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest([u8; 64]);

/// Hashes a file's bytes as they are read.
#[derive(Default)]
pub struct FileHasher(Blake2b512);

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileHasher")
    }
}

impl FileHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> FileDigest {
        FileDigest(self.0.finalize().into())
    }
}
