//! The embedded default: AES-256-GCM ciphertext in `tenant_secrets`.
//!
//! The master key comes from `POLYBOT_MASTER_KEY` (32 bytes, base64 or hex) or
//! from a key file that is created with mode 0600 on first start. Each secret
//! is sealed with a fresh random nonce, and the tenant id and version are the
//! associated data, so a ciphertext copied to another tenant's row does not
//! decrypt.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use polybot_core::keys::FingerprintKey;
use polybot_store::TenantTx;
use polybot_store::repo::tenant_secrets;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{SecretError, SecretStore, TenantSecret};

/// The 256-bit key that seals every tenant's secret.
pub struct MasterKey {
    key: SecretBox<[u8; 32]>,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        Self {
            key: SecretBox::new(Box::new(bytes)),
            id,
        }
    }

    /// Parses 32 bytes given as base64 or hex.
    pub fn parse(text: &SecretString) -> Result<Self, SecretError> {
        let text = text.expose_secret().trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or_else(|| SecretError::MasterKey("is neither hex nor base64".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SecretError::MasterKey(format!("must be 32 bytes, not {}", b.len()))
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// `POLYBOT_MASTER_KEY` if set, else the key file at `path`, created (mode
    /// 0600) with a random key if it does not exist.
    pub fn from_env_or_file(path: &Path) -> Result<Self, SecretError> {
        if let Ok(text) = std::env::var("POLYBOT_MASTER_KEY") {
            return Self::parse(&SecretString::from(text))
                .map_err(|e| SecretError::MasterKey(format!("in POLYBOT_MASTER_KEY: {e}")));
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&SecretString::from(text))
                .map_err(|e| SecretError::MasterKey(format!("in {}: {e}", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        SecretError::MasterKey(format!(
                            "could not be created at {}: {e}",
                            path.display()
                        ))
                    })?;
                file.write_all(hex::encode(bytes).as_bytes()).map_err(|e| {
                    SecretError::MasterKey(format!(
                        "could not be written to {}: {e}",
                        path.display()
                    ))
                })?;
                tracing::info!(path = %path.display(), "created a new master key for the local secret store");
                Ok(Self::from_bytes(bytes))
            }
            Err(err) => Err(SecretError::MasterKey(format!(
                "could not be read from {}: {err}",
                path.display()
            ))),
        }
    }

    /// A short identifier of the key (not the key), stored beside each ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }

    /// A key for another use, derived from this one (SHA-256 over a label,
    /// the purpose and the key), so each use has its own key and key id.
    pub fn derive(&self, purpose: &str) -> MasterKey {
        let mut hash = Sha256::new();
        hash.update(b"polybot derived key\0");
        hash.update(purpose.as_bytes());
        hash.update(b"\0");
        hash.update(self.key.expose_secret());
        Self::from_bytes(hash.finalize().into())
    }

    /// The deployment's fingerprint key: derived from this key, so it is
    /// as stable across restarts as the master key itself, and distinct per
    /// deployment.
    pub fn fingerprint_key(&self) -> FingerprintKey {
        let derived = self.derive("secret fingerprints");
        FingerprintKey::from_bytes(*derived.key.expose_secret())
    }

    /// Seals `plaintext` with a fresh random nonce; `aad` binds the
    /// ciphertext to where it is stored. Returns (ciphertext, nonce).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretError::MasterKey("could not seal a secret".into()))?;
        Ok((ciphertext, nonce.to_vec()))
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `aad`; `None` if
    /// it was tampered with, moved, or sealed under another key.
    pub fn open(&self, ciphertext: &[u8], nonce: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != 12 {
            return None;
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

/// Secrets sealed under a [`MasterKey`] in `tenant_secrets`.
#[derive(Debug)]
pub struct LocalSecretStore {
    key: MasterKey,
}

impl LocalSecretStore {
    pub fn new(key: MasterKey) -> Self {
        Self { key }
    }
}

/// The associated data: the tenant's id and the secret's version.
fn aad(tenant: [u8; 16], version: i64) -> Vec<u8> {
    let mut aad = tenant.to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put(&self, tx: &mut TenantTx, secret: &TenantSecret) -> Result<(), SecretError> {
        let tenant = tx.tenant();
        let version = tenant_secrets::next_version(tx).await?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let plaintext = secret.to_json();
        let ciphertext = self
            .key
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad(*tenant.as_uuid().as_bytes(), version),
                },
            )
            .map_err(|_| SecretError::Decrypt {
                tenant,
                reason: "encryption failed".into(),
            })?;
        let fingerprints = serde_json::to_value(
            secret
                .exchange_keys
                .fingerprints(&self.key.fingerprint_key()),
        )
        .unwrap_or(Value::Null);
        tenant_secrets::put_sealed(
            tx,
            &tenant_secrets::Sealed {
                reference: format!("local:{tenant}"),
                ciphertext,
                nonce: nonce.to_vec(),
                key_id: self.key.id().to_owned(),
                fingerprints,
                version,
            },
        )
        .await?;
        Ok(())
    }

    async fn get(&self, tx: &mut TenantTx) -> Result<Option<TenantSecret>, SecretError> {
        let tenant = tx.tenant();
        let Some(tenant_secrets::SealedRow {
            ciphertext: Some(ciphertext),
            nonce: Some(nonce),
            key_id,
            version,
        }) = tenant_secrets::sealed(tx).await?
        else {
            return Ok(None);
        };
        if key_id.as_deref() != Some(self.key.id()) {
            return Err(SecretError::Decrypt {
                tenant,
                reason: format!(
                    "it was sealed with master key {}, this control plane has {}",
                    key_id.as_deref().unwrap_or("(none)"),
                    self.key.id()
                ),
            });
        }
        if nonce.len() != 12 {
            return Err(SecretError::Decrypt {
                tenant,
                reason: "the stored nonce is malformed".into(),
            });
        }
        let plaintext = self
            .key
            .cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad(*tenant.as_uuid().as_bytes(), version),
                },
            )
            .map_err(|_| SecretError::Decrypt {
                tenant,
                reason: "authentication failed (tampered, or sealed for another tenant)".into(),
            })?;
        let text = String::from_utf8(plaintext).map_err(|_| SecretError::Decrypt {
            tenant,
            reason: "the plaintext is not UTF-8".into(),
        })?;
        TenantSecret::from_json(&SecretString::from(text)).map(Some)
    }

    async fn schedule_deletion(
        &self,
        tx: &mut TenantTx,
        recovery_days: u32,
    ) -> Result<(), SecretError> {
        tenant_secrets::schedule_deletion_in(tx, recovery_days).await?;
        Ok(())
    }

    async fn restore(&self, tx: &mut TenantTx) -> Result<bool, SecretError> {
        Ok(tenant_secrets::restore_within_window(tx).await?)
    }

    async fn reference(&self, tx: &mut TenantTx) -> Result<Option<String>, SecretError> {
        Ok(tenant_secrets::reference(tx)
            .await?
            .and_then(|r| r.reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polybot_core::keys::parse_exchange_keys;

    #[test]
    fn fingerprints_are_stable_per_master_key_and_differ_between_deployments() {
        let keys = parse_exchange_keys(&serde_json::json!({
            "binance_us": {"api_key": "BINANCEKEY123", "secret_key": "password1"},
        }))
        .unwrap();
        let here = MasterKey::from_bytes([1; 32]);
        let restarted = MasterKey::from_bytes([1; 32]);
        let there = MasterKey::from_bytes([2; 32]);
        let fingerprint =
            |master: &MasterKey| keys.fingerprints(&master.fingerprint_key())["binance_us"].clone();
        assert_eq!(fingerprint(&here), fingerprint(&restarted));
        assert_ne!(fingerprint(&here), fingerprint(&there));
        assert!(fingerprint(&here).starts_with(FingerprintKey::PREFIX));
        // The fingerprint key is not the sealing key.
        let derived = here.fingerprint_key();
        assert_ne!(
            FingerprintKey::from_bytes(*here.key.expose_secret()).fingerprint([b"x".as_slice()]),
            derived.fingerprint([b"x".as_slice()])
        );
    }
}
