//! The content hash that names a part of a packed file (the stub, each
//! compressed frame), so that an updater can tell which parts of a new
//! build it already holds in its own executable: BLAKE2b with a 16-byte
//! digest (RFC 7693; the digest length is part of BLAKE2b's parameters, so
//! this is not a truncated BLAKE2b-512).
//!
//! 128 bits: a part is copied from the running executable only when its
//! bytes hash to the published value, and the assembled file must then
//! pass every check a full download passes (size, CRC-32, signature), so
//! the hash only has to make a wrong match impossible in practice, not
//! carry the trust. The stub already links BLAKE2b for minisign, so this
//! costs it no code.

use std::fmt;

use blake2::{Blake2b128, Digest};
use serde::{Deserialize, Serialize};

/// The hash of one part of a packed file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartHash(pub [u8; 16]);

impl PartHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> PartHash {
        let mut hasher = PartHasher::default();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Debug for PartHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PartHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl From<PartHash> for String {
    fn from(hash: PartHash) -> String {
        hash.to_string()
    }
}

impl TryFrom<String> for PartHash {
    type Error = String;
    fn try_from(text: String) -> Result<PartHash, String> {
        let bytes = text.as_bytes();
        let digit = |b: u8| (b as char).to_digit(16).filter(|_| !b.is_ascii_uppercase());
        let mut hash = [0u8; 16];
        if bytes.len() != 32 {
            return Err(format!(
                "a part hash is 32 lowercase hex digits, not '{text:.40}'"
            ));
        }
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => hash[i] = (high * 16 + low) as u8,
                _ => {
                    return Err(format!(
                        "a part hash is 32 lowercase hex digits, not '{text:.40}'"
                    ));
                }
            }
        }
        Ok(PartHash(hash))
    }
}

/// A list of part hashes as metadata holds it: one base64 string (RFC 4648,
/// with padding) of the 16-byte digests back to back. One string rather
/// than an array of strings: 22 bytes a frame instead of 36, and a single
/// TOML value to parse, so that a large frame index still fits the
/// metadata's size limit. For `#[serde(with = "...")]`.
pub mod packed_list {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::PartHash;

    pub fn serialize<S: Serializer>(hashes: &[PartHash], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PartHash>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("frame_hashes is not base64"))?;
        let chunks = bytes.chunks_exact(16);
        if !chunks.remainder().is_empty() {
            return Err(serde::de::Error::custom(
                "frame_hashes is not a whole number of 16-byte hashes",
            ));
        }
        Ok(chunks
            .map(|chunk| {
                let mut hash = [0u8; 16];
                hash.copy_from_slice(chunk);
                PartHash(hash)
            })
            .collect())
    }
}

/// Hashes a part given in pieces.
#[derive(Clone, Default)]
pub struct PartHasher(Blake2b128);

impl fmt::Debug for PartHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartHasher")
    }
}

impl PartHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything given, and a fresh start.
    pub fn finish(&mut self) -> PartHash {
        PartHash(self.0.finalize_reset().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_text_round_trip() -> Result<(), String> {
        // BLAKE2b with a 16-byte digest of "abc" (RFC 7693 parameters),
        // as `b2sum -l 128` prints it.
        let hash = PartHash::of(b"abc");
        assert_eq!(hash.to_string(), "cf4ab791c62b8d2b2109c90275287816");
        assert_eq!(PartHash::try_from(hash.to_string())?, hash);
        for bad in [
            "",
            "CF4AB791C62B8D2B2109C90275287816",
            "zz4ab791c62b8d2b2109c90275287816",
        ] {
            assert!(PartHash::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let mut pieces = PartHasher::default();
        pieces.update(b"a");
        pieces.update(b"bc");
        assert_eq!(pieces.finish(), hash);
        assert_eq!(pieces.finish(), PartHash::of(b""));
        Ok(())
    }
}
