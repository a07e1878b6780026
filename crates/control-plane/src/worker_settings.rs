//! The operator's settings for every worker that are secrets (the NewsAPI
//! key), in the local secret store: sealed under the master key in
//! `operator_secrets`, opened at startup and handed to local workers with
//! their own secrets on standard input. On ECS they come from the
//! `polybot/workers/settings` secret instead, which ECS injects itself.
//!
//! What does not live here: the SQL (`repo::operator_secrets`) and the
//! cipher (`MasterKey`).

use std::collections::BTreeMap;

use polybot_secrets::local::MasterKey;
use polybot_store::Db;
use polybot_store::repo::operator_secrets::{self, SealedSecret};
use secrecy::{ExposeSecret, SecretString};

/// The settings a worker takes as operator-level secrets.
pub const NAMES: [&str; 1] = [polybot_core::worker::env::NEWSAPI_KEY];

/// Binds a ciphertext to its row: a value moved to another name does not open.
fn aad(name: &str) -> Vec<u8> {
    format!("operator_secrets:{name}").into_bytes()
}

/// Seals `value` and stores it as `name` (one of [`NAMES`]).
pub async fn store(
    db: &Db,
    master: &MasterKey,
    name: &str,
    value: &SecretString,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        NAMES.contains(&name),
        "{name} is not an operator-level worker secret (one of {NAMES:?})"
    );
    let (ciphertext, nonce) = master
        .seal(value.expose_secret().as_bytes(), &aad(name))
        .map_err(|e| anyhow::anyhow!("sealing {name}: {e}"))?;
    let mut op = db.operator().await?;
    operator_secrets::put(
        &mut op,
        &SealedSecret {
            name: name.to_owned(),
            ciphertext,
            nonce,
            key_id: master.id().to_owned(),
        },
    )
    .await?;
    op.commit().await?;
    Ok(())
}

/// Every stored setting, opened; an error names one sealed under another
/// master key or tampered with.
pub async fn load(db: &Db, master: &MasterKey) -> anyhow::Result<BTreeMap<String, SecretString>> {
    let mut op = db.operator().await?;
    let sealed = operator_secrets::all(&mut op).await?;
    op.commit().await?;
    sealed
        .into_iter()
        .map(|secret| {
            let plaintext = master
                .open(&secret.ciphertext, &secret.nonce, &aad(&secret.name))
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the operator secret {} does not open with this master key \
                         (sealed under key {}, this one is {})",
                        secret.name,
                        secret.key_id,
                        master.id()
                    )
                })?;
            Ok((secret.name, SecretString::from(plaintext)))
        })
        .collect()
}
