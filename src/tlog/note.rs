//! C2SP signed notes with Ed25519, and C2SP tlog-checkpoint bodies.
//!
//! A note is text ending in a newline, an empty line, then signature lines
//! `— <key name> <base64(key id || signature)>`. The key id is the first four bytes of
//! SHA-256(name || 0x0A || 0x01 || public key); the verifier key string is
//! `<name>+<hex key id>+<base64(0x01 || public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::tlog::merkle::Hash;

const ED25519_ALG: u8 = 0x01;
const EM_DASH: &str = "\u{2014}";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("key name must be non-empty, without spaces, `+` or newlines")]
    BadKeyName,
    #[error("note text must be non-empty and end with a newline")]
    BadText,
    #[error("malformed verifier key")]
    BadVerifierKey,
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no valid signature by key `{0}`")]
    NotSigned(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// First four bytes of SHA-256(name || "\n" || 0x01 || public key).
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_ALG]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs notes under a key name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl NoteSigner {
    /// A 32-byte secret derived from the signing key for another use (`label` names it), so that
    /// every holder of the key (replicas sharing a keys dir) derives the same one and the key
    /// itself never leaves this type.
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"reins derived secret\0");
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.key.to_bytes());
        h.finalize().into()
    }

    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKeyName);
        }
        let id = key_id(name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// The key name, which is also the log's origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string anyone can use to check this signer's notes.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ED25519_ALG];
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(key))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The signed note: `text`, an empty line, and this signer's signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() || !text.ends_with('\n') {
            return Err(NoteError::BadText);
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{EM_DASH} {} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// Checks notes signed by one key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl NoteVerifier {
    /// Parses a verifier key string (`name+keyid+base64key`).
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey);
        };
        if !valid_name(name) {
            return Err(NoteError::BadVerifierKey);
        }
        let key = B64.decode(key_b64).map_err(|_| NoteError::BadVerifierKey)?;
        let (Some(&ED25519_ALG), Ok(raw)) = (key.first(), <[u8; 32]>::try_from(&key[1..])) else {
            return Err(NoteError::BadVerifierKey);
        };
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| NoteError::BadVerifierKey)?;
        let id = key_id(name, &key);
        if hex::encode(id) != id_hex.to_ascii_lowercase() {
            return Err(NoteError::BadVerifierKey);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the note's text if this key signed it. Signatures by other keys are ignored.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with a newline",
            ));
        }
        for line in signatures.lines() {
            let rest = line
                .strip_prefix(EM_DASH)
                .and_then(|l| l.strip_prefix(' '))
                .ok_or(NoteError::Malformed(
                    "signature line must start with an em dash",
                ))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(blob) else { continue };
            if blob.len() != 4 + 64 || blob[..4] != self.id {
                continue;
            }
            let Ok(signature) = ed25519_dalek::Signature::from_slice(&blob[4..]) else {
                continue;
            };
            if self.key.verify(text.as_bytes(), &signature).is_ok() {
                return Ok(text);
            }
        }
        Err(NoteError::NotSigned(self.name.clone()))
    }
}

/// The body of a C2SP tlog-checkpoint: origin, tree size, root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the third are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::BadCheckpoint("missing origin"))?;
        let size = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing size"))?;
        if size.is_empty()
            || (size.len() > 1 && size.starts_with('0'))
            || !size.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(NoteError::BadCheckpoint(
                "size must be decimal without leading zeros",
            ));
        }
        let size = size
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size out of range"))?;
        let root = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing root hash"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::BadCheckpoint(
                "root hash must be 32 bytes of base64",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::new("reins.test/ledger", SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips_and_detects_changes() {
        let s = signer();
        let text = Checkpoint {
            origin: "reins.test/ledger".into(),
            size: 12,
            root: [7; 32],
        }
        .to_text();
        let note = s.sign(&text).unwrap();
        let v = NoteVerifier::from_vkey(&s.verifier_key()).unwrap();
        assert_eq!(v.verify(&note).unwrap(), text);
        assert_eq!(
            Checkpoint::parse(v.verify(&note).unwrap()).unwrap().size,
            12
        );
        let altered = note.replacen("12", "13", 1);
        assert!(v.verify(&altered).is_err());
        let other = NoteSigner::new("reins.test/ledger", SigningKey::from_bytes(&[8; 32])).unwrap();
        assert!(
            NoteVerifier::from_vkey(&other.verifier_key())
                .unwrap()
                .verify(&note)
                .is_err()
        );
    }

    #[test]
    fn checkpoints_reject_non_canonical_sizes() {
        assert!(
            Checkpoint::parse("o\n012\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").is_err()
        );
        assert!(
            Checkpoint::parse("o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").is_err()
        );
        assert!(Checkpoint::parse("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").is_ok());
        assert!(NoteSigner::new("bad name", SigningKey::from_bytes(&[1; 32])).is_err());
    }
}
