//! Channel secrets at rest: a webhook secret or Telegram bot token is sealed
//! (AES-256-GCM, fresh nonce) under a key derived from the control plane's
//! master key, the same cipher and master key that seal exchange keys.
//! The associated data names the table, the tenant and the channel, so a
//! ciphertext copied into another tenant's row or channel does not open.
//!
//! With `--secrets aws` the exchange keys live in Secrets Manager, but
//! channel secrets are still sealed with the local master key
//! (`POLYBOT_MASTER_KEY`, or the data dir's key file).
//!
//! The SQL is in `polybot_store::repo::alerts`; when a secret is opened
//! (delivery) is `notify`'s business.

use polybot_core::keys::FingerprintKey;
use polybot_secrets::local::MasterKey;
use polybot_store::repo::alerts::{self as repo, ChannelRow, SealedSecret};
use rand::RngCore;
use uuid::Uuid;

use crate::AppState;

/// The key channel secrets are sealed with, and the deployment's key their
/// fingerprints are made with.
#[derive(Debug)]
pub struct ChannelKey(MasterKey, FingerprintKey);

impl ChannelKey {
    /// Derived from the control plane's master key (what `polybot` uses).
    pub fn from_master(master: &MasterKey) -> Self {
        Self(
            master.derive("alert channel secrets"),
            master.fingerprint_key(),
        )
    }

    /// A random key that lives as long as the process: what
    /// [`AppState::new`] starts with, for tests; `polybot` replaces it with
    /// [`ChannelKey::from_master`].
    pub fn ephemeral() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_master(&MasterKey::from_bytes(bytes))
    }

    /// The key's id, stored beside each ciphertext.
    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// The fingerprint the API shows in place of `secret` (keyed, see
    /// [`FingerprintKey`]).
    pub fn fingerprint(&self, secret: &str) -> String {
        self.1.fingerprint([secret.as_bytes()])
    }

    fn aad(tenant: Option<Uuid>, channel: Uuid) -> Vec<u8> {
        let mut aad = match tenant {
            Some(t) => [b"alert_channels:".as_slice(), t.as_bytes()].concat(),
            None => b"operator_alert_channels:".to_vec(),
        };
        aad.extend_from_slice(channel.as_bytes());
        aad
    }

    /// Seals `secret` for `channel` of `tenant` (`None`: an operator channel).
    pub fn seal(
        &self,
        tenant: Option<Uuid>,
        channel: Uuid,
        secret: &str,
    ) -> Result<SealedSecret, String> {
        let (ciphertext, nonce) = self
            .0
            .seal(secret.as_bytes(), &Self::aad(tenant, channel))
            .map_err(|e| e.to_string())?;
        Ok(SealedSecret {
            ciphertext,
            nonce,
            key_id: self.id().to_owned(),
        })
    }

    /// Opens a stored secret (a legacy plaintext one as it is).
    pub fn open(&self, tenant: Option<Uuid>, row: &ChannelRow) -> Result<String, String> {
        if let Some(plain) = &row.secret {
            return Ok(plain.clone());
        }
        let (Some(ciphertext), Some(nonce)) = (&row.secret_ciphertext, &row.secret_nonce) else {
            return Err("the channel has no stored secret".to_owned());
        };
        if row.secret_key_id.as_deref() != Some(self.id()) {
            return Err(format!(
                "the channel's secret was sealed with key {}, this control plane has {}",
                row.secret_key_id.as_deref().unwrap_or("(none)"),
                self.id()
            ));
        }
        let plain = self
            .0
            .open(ciphertext, nonce, &Self::aad(tenant, row.id))
            .ok_or_else(|| {
                "the channel's secret does not open (tampered, or moved from another row)"
                    .to_owned()
            })?;
        String::from_utf8(plain).map_err(|_| "the channel's secret is not UTF-8".to_owned())
    }
}

/// Seals every channel secret still stored in plaintext (rows written
/// before migration 0010); the number sealed. Run at start.
pub async fn seal_plaintext_secrets(state: &AppState) -> anyhow::Result<usize> {
    let key = &state.channel_key;
    let mut sealed = 0;
    let mut op = state.db.operator().await?;
    let operator_rows = repo::operator_channels(&mut op).await?;
    for row in operator_rows.iter().filter(|r| r.secret.is_some()) {
        let plain = row.secret.as_deref().unwrap_or_default();
        let secret = key
            .seal(None, row.id, plain)
            .map_err(|e| anyhow::anyhow!("sealing an operator channel secret: {e}"))?;
        repo::seal_operator_channel(&mut op, row.id, &secret).await?;
        sealed += 1;
    }
    let tenants = repo::tenants_with_plaintext_secrets(&mut op).await?;
    op.commit().await?;
    for tenant in tenants {
        let mut tx = state
            .db
            .tenant(polybot_core::TenantId::from_uuid(tenant))
            .await?;
        for row in repo::tenant_channels(&mut tx).await? {
            let Some(plain) = &row.secret else { continue };
            let secret = key
                .seal(Some(tenant), row.id, plain)
                .map_err(|e| anyhow::anyhow!("sealing tenant {tenant}'s channel secret: {e}"))?;
            repo::seal_tenant_channel(&mut tx, row.id, &secret).await?;
            sealed += 1;
        }
        tx.commit().await?;
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Uuid, sealed: &SealedSecret) -> ChannelRow {
        ChannelRow {
            id,
            kind: "webhook".into(),
            target: "https://hooks.example.com/x".into(),
            secret: None,
            secret_ciphertext: Some(sealed.ciphertext.clone()),
            secret_nonce: Some(sealed.nonce.clone()),
            secret_key_id: Some(sealed.key_id.clone()),
            secret_fingerprint: "sha256:000000000000".into(),
        }
    }

    #[test]
    fn a_channel_secrets_fingerprint_is_keyed_by_the_deployment() {
        use sha2::Digest;
        let secret = "whsec-weak";
        let here = ChannelKey::from_master(&MasterKey::from_bytes([7; 32]));
        let there = ChannelKey::from_master(&MasterKey::from_bytes([8; 32]));
        let fingerprint = here.fingerprint(secret);
        assert!(fingerprint.starts_with("hmac-sha256:"), "{fingerprint}");
        assert_eq!(fingerprint.len(), "hmac-sha256:".len() + 32);
        // Stable for one deployment, unrelated across deployments.
        let again = ChannelKey::from_master(&MasterKey::from_bytes([7; 32]));
        assert_eq!(again.fingerprint(secret), fingerprint);
        assert_ne!(there.fingerprint(secret), fingerprint);
        // Never the unkeyed hash anyone could recompute from a guess.
        let plain = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        let digits = fingerprint.trim_start_matches("hmac-sha256:");
        assert!(!plain.starts_with(&digits[..12]), "{fingerprint}");
    }

    #[test]
    fn a_sealed_secret_opens_only_in_its_own_row_under_its_own_key() {
        let key = ChannelKey::from_master(&MasterKey::from_bytes([7; 32]));
        let (tenant, other, channel) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let sealed = key
            .seal(Some(tenant), channel, "whsec-0123456789abcdef")
            .unwrap();
        assert!(
            !sealed.ciphertext.windows(8).any(|w| w == b"whsec-01"),
            "the ciphertext holds no plaintext"
        );
        assert_eq!(
            key.open(Some(tenant), &row(channel, &sealed)).unwrap(),
            "whsec-0123456789abcdef"
        );
        // Moved to another tenant, another channel, or the operator's table.
        assert!(key.open(Some(other), &row(channel, &sealed)).is_err());
        assert!(
            key.open(Some(tenant), &row(Uuid::new_v4(), &sealed))
                .is_err()
        );
        assert!(key.open(None, &row(channel, &sealed)).is_err());
        // Another master key does not open it, and says why.
        let stranger = ChannelKey::from_master(&MasterKey::from_bytes([8; 32]));
        let err = stranger
            .open(Some(tenant), &row(channel, &sealed))
            .unwrap_err();
        assert!(err.contains("was sealed with key"), "{err}");
        // The derived key is not the master key itself.
        assert_ne!(key.id(), MasterKey::from_bytes([7; 32]).id());
    }
}
