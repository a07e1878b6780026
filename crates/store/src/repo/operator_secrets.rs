//! Operator-level secrets of the workers in the local secret store
//! (`operator_secrets`, not tenant data): sealed values by variable name.
//! Sealing and opening them is the caller's (the master key never reaches
//! the database); this module only stores and reads the ciphertext.

use crate::{DbError, OperatorTx};

/// One sealed secret, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedSecret {
    /// The worker's variable it becomes (`POLYBOT_NEWSAPI_KEY`).
    pub name: String,
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Which master key sealed it.
    pub key_id: String,
}

/// Stores `secret`, replacing a value of the same name.
pub async fn put(op: &mut OperatorTx, secret: &SealedSecret) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO operator_secrets (name, ciphertext, nonce, key_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, \
         nonce = EXCLUDED.nonce, key_id = EXCLUDED.key_id, updated_at = now()",
    )
    .bind(&secret.name)
    .bind(&secret.ciphertext)
    .bind(&secret.nonce)
    .bind(&secret.key_id)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("storing an operator secret"))?;
    Ok(())
}

/// Every stored secret, by name.
pub async fn all(op: &mut OperatorTx) -> Result<Vec<SealedSecret>, DbError> {
    sqlx::query_as("SELECT name, ciphertext, nonce, key_id FROM operator_secrets ORDER BY name")
        .fetch_all(&mut **op)
        .await
        .map_err(DbError::query("reading the operator secrets"))
}
