//! Where a tenant's secret lives: its exchange keys and the credentials of its
//! own database role.
//!
//! [`SecretStore`] has two implementations: [`local::LocalSecretStore`]
//! (AES-256-GCM ciphertext in `tenant_secrets`, under a master key from the
//! environment or a 0600 key file; the embedded default) and the AWS Secrets
//! Manager store. Secret values travel as `secrecy` types and are never
//! logged, returned or printed by `Debug`.

use std::fmt;

use async_trait::async_trait;
use polybot_core::TenantId;
use polybot_core::keys::ExchangeKeys;
use polybot_store::{DbError, TenantTx};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

pub mod aws;
pub mod local;

/// What a tenant's secret holds.
#[derive(Clone, Default)]
pub struct TenantSecret {
    pub exchange_keys: ExchangeKeys,
    /// The tenant's own `DATABASE_URL` (its login role), once provisioned.
    pub database_url: Option<SecretString>,
}

impl fmt::Debug for TenantSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSecret")
            .field("exchange_keys", &self.exchange_keys)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl TenantSecret {
    /// The JSON document a store keeps: `{"exchange_keys": {…}, "database_url": "…"}`.
    pub fn to_json(&self) -> SecretString {
        let keys: Value = serde_json::from_str(self.exchange_keys.to_secret_json().expose_secret())
            .unwrap_or_else(|_| Value::Object(Map::new()));
        let mut doc = Map::new();
        doc.insert("exchange_keys".into(), keys);
        if let Some(url) = &self.database_url {
            doc.insert(
                "database_url".into(),
                Value::String(url.expose_secret().to_owned()),
            );
        }
        SecretString::from(Value::Object(doc).to_string())
    }

    pub fn from_json(json: &SecretString) -> Result<Self, SecretError> {
        let doc: Value = serde_json::from_str(json.expose_secret())
            .map_err(|_| SecretError::Corrupt("the stored secret is not JSON".into()))?;
        let keys = doc
            .get("exchange_keys")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let exchange_keys = polybot_core::keys::parse_exchange_keys(&keys).map_err(|errors| {
            SecretError::Corrupt(format!(
                "the stored exchange keys do not validate ({} field(s): {})",
                errors.len(),
                errors
                    .iter()
                    .map(|e| e.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let database_url = doc
            .get("database_url")
            .and_then(Value::as_str)
            .map(|s| SecretString::from(s.to_owned()));
        Ok(Self {
            exchange_keys,
            database_url,
        })
    }
}

/// A secret store failure. Never carries secret values.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("secret store: {0}")]
    Corrupt(String),
    #[error("secret store: cannot decrypt tenant {tenant}'s secret: {reason}")]
    Decrypt { tenant: TenantId, reason: String },
    #[error("secret store: the master key {0}")]
    MasterKey(String),
    #[error("secret store ({service}): {operation} failed: {message}")]
    Remote {
        service: &'static str,
        operation: &'static str,
        message: String,
    },
}

/// Where tenants' secrets are kept. Every call takes the tenant transaction
/// it belongs to, so that a store's bookkeeping in `tenant_secrets` commits or
/// rolls back with the change that caused it.
#[async_trait]
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// `local` or `aws`.
    fn kind(&self) -> &'static str;

    /// Creates or replaces the secret of the transaction's tenant.
    async fn put(&self, tx: &mut TenantTx, secret: &TenantSecret) -> Result<(), SecretError>;

    /// The tenant's secret, if it has one (and it is not scheduled for deletion).
    async fn get(&self, tx: &mut TenantTx) -> Result<Option<TenantSecret>, SecretError>;

    /// Offboarding: the secret becomes unusable and is deleted after `recovery_days`.
    async fn schedule_deletion(
        &self,
        tx: &mut TenantTx,
        recovery_days: u32,
    ) -> Result<(), SecretError>;

    /// Undoes [`schedule_deletion`](Self::schedule_deletion) within the window.
    /// Returns whether there was a secret to restore.
    async fn restore(&self, tx: &mut TenantTx) -> Result<bool, SecretError>;

    /// Where the worker's launcher finds the secret (an ARN for AWS, the tenant
    /// id for the local store).
    async fn reference(&self, tx: &mut TenantTx) -> Result<Option<String>, SecretError>;
}

/// The masked fingerprints stored beside the secret, for API responses.
pub async fn fingerprints(tx: &mut TenantTx) -> Result<Value, DbError> {
    polybot_store::repo::tenant_secrets::fingerprints(tx).await
}
