//! Trusted keys and signature files.
//!
//! A keyring file (shipped in the root): `threshold K` and `key ID HEX` lines
//! (ed25519 public keys). A signature file beside a manifest: `ID HEX` lines.

use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{origin}:{line}: {problem}")]
    Line { origin: String, line: usize, problem: String },
}

/// The keys an update may be signed with, and how many must sign.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub keys: BTreeMap<String, VerifyingKey>,
    pub threshold: usize,
}

fn bytes<const N: usize>(hex_text: &str) -> Option<[u8; N]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

impl Keyring {
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyError> {
        let mut keys = BTreeMap::new();
        let mut threshold = 1;
        for (i, raw) in text.lines().enumerate() {
            let bad = |problem: String| KeyError::Line { origin: origin.into(), line: i + 1, problem };
            let words: Vec<&str> = raw.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [c, ..] if c.starts_with('#') => {}
                ["threshold", k] => threshold = k.parse().map_err(|_| bad(format!("threshold `{k}` is not a number")))?,
                ["key", id, hex_key] => {
                    let key = bytes::<32>(hex_key)
                        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                        .ok_or_else(|| bad(format!("key {id} is not a 32-byte ed25519 public key")))?;
                    if keys.insert(id.to_string(), key).is_some() {
                        return Err(bad(format!("key {id} listed twice")));
                    }
                }
                _ => return Err(bad(format!("expected `threshold K` or `key ID HEX`, got `{raw}`"))),
            }
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(KeyError::Line {
                origin: origin.into(),
                line: 0,
                problem: format!("threshold {threshold} with {} keys", keys.len()),
            });
        }
        Ok(Keyring { keys, threshold })
    }
}

/// Parses a signature file into (key id, signature); malformed lines are kept
/// as `None` so the check can name them.
pub fn parse_signatures(text: &str) -> Vec<(String, Option<Signature>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next().unwrap_or("").to_string();
            let sig = w.next().and_then(bytes::<64>).map(|b| Signature::from_bytes(&b));
            (id, sig)
        })
        .collect()
}

/// One line of a signature file: `ID HEX`.
pub fn signature_line(id: &str, key: &ed25519_dalek::SigningKey, manifest: &[u8]) -> String {
    use ed25519_dalek::Signer;
    format!("{id} {}\n", hex::encode(key.sign(manifest).to_bytes()))
}

/// A secret key file holds `ID HEX` (the 32-byte seed); its public half goes
/// into keyrings as `key ID HEX`.
pub fn parse_secret(text: &str, origin: &str) -> Result<(String, ed25519_dalek::SigningKey), KeyError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [id, seed] => bytes::<32>(seed)
            .map(|b| (id.to_string(), ed25519_dalek::SigningKey::from_bytes(&b)))
            .ok_or_else(|| KeyError::Line { origin: origin.into(), line: 1, problem: "the seed is not 32 bytes of hex".into() }),
        _ => Err(KeyError::Line { origin: origin.into(), line: 1, problem: "expected `ID HEX-SEED`".into() }),
    }
}

/// The keyring line for a secret key's public half.
pub fn public_line(id: &str, key: &ed25519_dalek::SigningKey) -> String {
    format!("key {id} {}\n", hex::encode(key.verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn parses_keys_and_threshold_and_names_bad_lines() {
        let k = hex::encode(SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
        let ring = Keyring::parse(&format!("# trusted\nthreshold 1\nkey a {k}\n"), "keys").unwrap();
        assert_eq!((ring.keys.len(), ring.threshold), (1, 1));
        let e = Keyring::parse("key a 00\n", "keys").unwrap_err();
        assert_eq!(e.to_string(), "keys:1: key a is not a 32-byte ed25519 public key");
        let e = Keyring::parse(&format!("threshold 2\nkey a {k}\n"), "keys").unwrap_err();
        assert_eq!(e.to_string(), "keys:0: threshold 2 with 1 keys");
    }
}
