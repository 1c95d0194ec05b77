//! Secrets: AES-256-GCM with the cluster master key, as the Go narun
//! (`internal/crypto`): 12-byte random nonce, the 16-byte tag appended to
//! the ciphertext, additional data = the secret name. Stored as
//! [`StoredSecret`] JSON in KV `narun-secrets`; a secret written by the Go
//! CLI decrypts here and the other way round.
//!
//! The master key is 32 bytes written as standard base64 (`openssl rand
//! -base64 32`), read from a file or the environment, never from argv.
//! Plaintexts and the key are zeroed when dropped, and no `Debug` or error
//! message contains them.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::types::go_time;

/// Master key length (AES-256).
pub const MASTER_KEY_LEN: usize = 32;
/// Nonce length (the GCM standard nonce).
pub const NONCE_LEN: usize = 12;

/// What went wrong with a key or a secret. Never contains key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key is not base64.
    #[error("invalid base64 master key: {0}")]
    Base64(base64::DecodeError),
    /// The key does not decode to 32 bytes.
    #[error("master key size mismatch: expected {MASTER_KEY_LEN} bytes, got {0} (generate one with `openssl rand -base64 32`)")]
    KeySize(usize),
    /// The key file cannot be read.
    #[error("cannot read master key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored nonce of the wrong length.
    #[error("invalid nonce size: {0} (expected {NONCE_LEN})")]
    NonceSize(usize),
    /// Authentication failed.
    #[error("failed to decrypt/authenticate data: wrong master key, tampered ciphertext, or the secret was stored under another name")]
    Decrypt,
    /// Encryption failed (plaintext too large for GCM).
    #[error("encryption failed")]
    Encrypt,
}

/// The cluster master key.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// From standard base64 (surrounding whitespace ignored, as the Go CLI
    /// trims the key file).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(SecretError::Base64)?);
        let array: [u8; MASTER_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::KeySize(bytes.len()))?;
        Ok(MasterKey(Zeroizing::new(array)))
    }

    /// From a file holding the base64 key (at most
    /// [`crate::limits::MAX_KEY_FILE_BYTES`] read).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        use std::io::Read;
        const MAX: usize = crate::limits::MAX_KEY_FILE_BYTES;
        // Allocated once: a reallocation would leave a copy of the key.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX + 1));
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX as u64 + 1).read_to_end(&mut bytes))
            .and_then(|n| {
                if n > MAX {
                    Err(crate::limits::too_large(MAX, "a master key file"))
                } else {
                    Ok(())
                }
            })
            .and_then(|()| {
                std::str::from_utf8(&bytes).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stream did not contain valid UTF-8",
                    )
                })
            })
            .map_err(|source| SecretError::KeyFile {
                path: path.to_owned(),
                source,
            })
            .and_then(Self::from_base64)
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        Self::from_bytes(key.into())
    }

    /// The key as standard base64 (to write a key file).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_slice()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_slice().into())
    }
}

/// Encrypt `plaintext` for the secret `name` (the additional data): the
/// ciphertext with its tag appended, and the random nonce.
pub fn encrypt(
    key: &MasterKey,
    name: &str,
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), SecretError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| SecretError::Encrypt)?;
    Ok((ciphertext, nonce.into()))
}

/// Decrypt a secret stored under `name`.
pub fn decrypt(
    key: &MasterKey,
    name: &str,
    ciphertext: &[u8],
    nonce: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    if nonce.len() != NONCE_LEN {
        return Err(SecretError::NonceSize(nonce.len()));
    }
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: name.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecretError::Decrypt)
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Go marshals a nil `[]byte` as `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => STANDARD
                .decode(s)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

/// A secret as stored: KV `narun-secrets/<name>`, JSON (Go `StoredSecret`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// The secret name (the additional data).
    pub name: String,
    /// Ciphertext with the GCM tag appended, standard base64.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// The 12-byte nonce, standard base64.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Free text; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// First written (kept by later `set`s).
    #[serde(with = "go_time")]
    pub created_at: OffsetDateTime,
    /// Last written.
    #[serde(with = "go_time")]
    pub updated_at: OffsetDateTime,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

impl StoredSecret {
    /// Encrypt `plaintext` as secret `name` at time `now`, keeping the
    /// `created_at` of the `previous` version if there is one.
    pub fn seal(
        key: &MasterKey,
        name: &str,
        plaintext: &[u8],
        description: &str,
        now: OffsetDateTime,
        previous: Option<&StoredSecret>,
    ) -> Result<Self, SecretError> {
        let (ciphertext, nonce) = encrypt(key, name, plaintext)?;
        Ok(StoredSecret {
            name: name.to_owned(),
            ciphertext,
            nonce: nonce.to_vec(),
            description: description.to_owned(),
            created_at: previous.map_or(now, |p| p.created_at),
            updated_at: now,
        })
    }

    /// Decrypt, with the KV key (`valueFromSecret`) as the additional data,
    /// as the Go runner does.
    pub fn open(&self, key: &MasterKey, kv_key: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        decrypt(key, kv_key, &self.ciphertext, &self.nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret in the Go format, encrypted independently of this crate
    /// (Python `cryptography`, i.e. OpenSSL's AES-256-GCM, the algorithm
    /// Go's `crypto/cipher` implements), with a Go-style local-offset time.
    const GO_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const GO_SECRET: &str = include_str!("../../tests/fixtures/go-secret.json");

    #[test]
    fn decrypts_a_go_stored_secret() {
        let key = MasterKey::from_base64(GO_KEY).unwrap();
        let s: StoredSecret = serde_json::from_str(GO_SECRET).unwrap();
        assert_eq!(s.name, "DB_PASSWORD");
        assert_eq!(s.description, "database");
        assert_eq!(s.created_at.offset().whole_hours(), -5);
        assert_eq!(&*s.open(&key, "DB_PASSWORD").unwrap(), b"s3cr3t value");
        // The name is authenticated.
        assert!(matches!(s.open(&key, "OTHER"), Err(SecretError::Decrypt)));
    }

    #[test]
    fn go_unit_cases() {
        // DeriveKey: valid, invalid base64, 31 and 33 bytes.
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&format!("{}\n", &*key.to_base64())).unwrap();
        assert_eq!(*key.0, *again.0);
        let e = MasterKey::from_base64("this is not base64!@#").unwrap_err();
        assert!(e.to_string().contains("invalid base64 master key"), "{e}");
        for n in [31, 33] {
            let e = MasterKey::from_base64(&STANDARD.encode(vec![7u8; n])).unwrap_err();
            assert!(e.to_string().contains("master key size mismatch"), "{e}");
        }
        // Round trip with AAD, wrong key, tampered, wrong nonce, wrong AAD.
        let aad = "Additional authenticated data";
        let (ct, nonce) = encrypt(&key, aad, b"This is a secret message.").unwrap();
        assert_eq!(nonce.len(), 12);
        assert_eq!(
            &*decrypt(&key, aad, &ct, &nonce).unwrap(),
            b"This is a secret message."
        );
        let other = MasterKey::generate();
        assert!(matches!(
            decrypt(&other, aad, &ct, &nonce),
            Err(SecretError::Decrypt)
        ));
        let mut tampered = ct.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decrypt(&key, aad, &tampered, &nonce),
            Err(SecretError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&key, aad, &ct, &[9u8; 12]),
            Err(SecretError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&key, "Different AAD", &ct, &nonce),
            Err(SecretError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&key, "", &ct, &nonce),
            Err(SecretError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&key, aad, &ct, &[0u8; 11]),
            Err(SecretError::NonceSize(11))
        ));
        // Empty plaintext: the ciphertext is the 16-byte tag.
        let (ct, nonce) = encrypt(&key, "empty_plaintext_aad", b"").unwrap();
        assert_eq!(ct.len(), 16);
        assert!(decrypt(&key, "empty_plaintext_aad", &ct, &nonce)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn seal_keeps_created_at_and_hides_secrets_from_debug() {
        let key = MasterKey::generate();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::seconds(60);
        let first = StoredSecret::seal(&key, "S", b"v1", "", t0, None).unwrap();
        let second = StoredSecret::seal(&key, "S", b"v2", "d", t1, Some(&first)).unwrap();
        assert_eq!((second.created_at, second.updated_at), (t0, t1));
        assert_eq!(&*second.open(&key, "S").unwrap(), b"v2");
        let json = serde_json::to_value(&first).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "description omitted when empty: {keys:?}");
        assert!(!format!("{second:?}").contains("ciphertext"));
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }
}
