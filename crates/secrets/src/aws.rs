//! AWS Secrets Manager: one secret per tenant, `polybot/tenants/<tenant id>`,
//! tagged `tenant_id`.
//!
//! The secret's JSON is [`TenantSecret::to_json`]'s document plus the
//! environment the worker is given, as top-level string keys
//! ([`secret_document`]):
//!
//! ```text
//! {"exchange_keys": {…}, "database_url": "…",
//!  "EXCHANGE_KEYS": "{…}", "DATABASE_URL": "…",
//!  "IBKR_USERNAME": "…", "IBKR_PASSWORD": "…"}     (the last two with IBKR keys)
//! ```
//!
//! ECS injects a JSON key of a secret into a container's environment by
//! name (`valueFrom: <arn>:EXCHANGE_KEYS::`), and the worker expects
//! `EXCHANGE_KEYS` to hold the keys as JSON text; so the document carries
//! that text itself rather than leaving ECS to decide how a nested object
//! becomes a string. The control plane reads the lower-case half back (for
//! rotation merges); the worker never calls Secrets Manager.
//!
//! Bookkeeping mirrors the local store in `tenant_secrets`: `store = 'aws'`,
//! `reference` = the secret's ARN, the keys' masked fingerprints, a version
//! that grows with each write, and `deletion_scheduled_at` while the secret
//! is scheduled for deletion. Errors name the service, the operation and
//! AWS's error code and message; never a secret value.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
use aws_sdk_secretsmanager::operation::describe_secret::{
    DescribeSecretError, DescribeSecretOutput,
};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use aws_sdk_secretsmanager::operation::restore_secret::RestoreSecretError;
use aws_sdk_secretsmanager::types::Tag;
use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_core::keys::FingerprintKey;
use polybot_store::TenantTx;
use polybot_store::repo::tenant_secrets;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::{SecretError, SecretStore, TenantSecret};

/// Every tenant's secret is named with this prefix (the IAM policies grant
/// exactly `polybot/tenants/*`).
pub const SECRET_PREFIX: &str = "polybot/tenants/";
/// The tag naming the tenant a secret belongs to.
pub const TENANT_TAG: &str = "tenant_id";
/// Secrets Manager's shortest and longest recovery windows, in days.
pub const RECOVERY_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
const SERVICE: &str = "secretsmanager";

/// The name of the tenant's secret.
pub fn secret_name(tenant: TenantId) -> String {
    format!("{SECRET_PREFIX}{tenant}")
}

/// The JSON kept in the tenant's secret: [`TenantSecret::to_json`] plus the
/// worker's environment as top-level string keys (see the module docs).
pub fn secret_document(secret: &TenantSecret) -> SecretString {
    let mut doc: Value = serde_json::from_str(secret.to_json().expose_secret())
        .unwrap_or_else(|_| Value::Object(Default::default()));
    if let Some(map) = doc.as_object_mut() {
        let keys = secret.exchange_keys.to_secret_json();
        map.insert(
            "EXCHANGE_KEYS".into(),
            Value::String(keys.expose_secret().to_owned()),
        );
        if let Some(url) = &secret.database_url {
            map.insert(
                "DATABASE_URL".into(),
                Value::String(url.expose_secret().to_owned()),
            );
        }
        for (field, name) in [("username", "IBKR_USERNAME"), ("password", "IBKR_PASSWORD")] {
            if let Some(value) = secret.exchange_keys.get("ibkr", field) {
                map.insert(name.into(), Value::String(value.expose_secret().to_owned()));
            }
        }
    }
    SecretString::from(doc.to_string())
}

/// Tenants' secrets in AWS Secrets Manager.
#[derive(Debug, Clone)]
pub struct AwsSecretStore {
    client: Client,
    /// Keys the fingerprints kept beside each secret's reference.
    fingerprints: std::sync::Arc<FingerprintKey>,
}

impl AwsSecretStore {
    /// A store whose client is built from `aws` (the launcher crate's
    /// `load_aws_config`, which honours `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
    /// `fingerprints` keys the key fingerprints the API shows (the
    /// deployment's, [`crate::local::MasterKey::fingerprint_key`]).
    pub fn new(aws: &SdkConfig, fingerprints: FingerprintKey) -> Self {
        Self::from_client(Client::new(aws), fingerprints)
    }

    /// A store on an existing client (tests).
    pub fn from_client(client: Client, fingerprints: FingerprintKey) -> Self {
        Self {
            client,
            fingerprints: std::sync::Arc::new(fingerprints),
        }
    }

    /// Creates the tenant's secret, or, when one of that name exists (an
    /// earlier attempt that crashed before its commit, or a secret scheduled
    /// for deletion), restores it and writes the value. Returns the ARN.
    async fn create(&self, tenant: TenantId, doc: &SecretString) -> Result<String, SecretError> {
        let name = secret_name(tenant);
        let created = self
            .client
            .create_secret()
            .name(&name)
            .description(format!(
                "PolyBot tenant {tenant}: exchange keys and database credentials"
            ))
            .secret_string(doc.expose_secret())
            .tags(tenant_tag(tenant))
            .send()
            .await;
        let err = match created {
            Ok(out) => return arn_of("CreateSecret", out.arn()),
            Err(err) => err,
        };
        // InvalidRequestException: a secret of that name is scheduled for deletion.
        let exists = matches!(
            err.as_service_error(),
            Some(
                CreateSecretError::ResourceExistsException(_)
                    | CreateSecretError::InvalidRequestException(_)
            )
        );
        let existing = if exists {
            self.describe(&name).await?
        } else {
            None
        };
        let Some(existing) = existing else {
            return Err(remote("CreateSecret", &err));
        };
        if existing.deleted_date().is_some() {
            self.restore_remote(&name).await?;
        }
        self.client
            .tag_resource()
            .secret_id(&name)
            .tags(tenant_tag(tenant))
            .send()
            .await
            .map_err(|e| remote("TagResource", &e))?;
        match self.put_value(&name, doc).await? {
            Some(arn) => Ok(arn),
            None => Err(SecretError::Remote {
                service: SERVICE,
                operation: "PutSecretValue",
                message: format!("secret {name} vanished while it was being written"),
            }),
        }
    }

    /// Writes a new version; `None` if there is no such secret.
    async fn put_value(&self, id: &str, doc: &SecretString) -> Result<Option<String>, SecretError> {
        match self
            .client
            .put_secret_value()
            .secret_id(id)
            .secret_string(doc.expose_secret())
            .send()
            .await
        {
            Ok(out) => arn_of("PutSecretValue", out.arn()).map(Some),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(remote("PutSecretValue", &err)),
        }
    }

    /// The secret's metadata, `None` if there is no such secret.
    async fn describe(&self, id: &str) -> Result<Option<DescribeSecretOutput>, SecretError> {
        match self.client.describe_secret().secret_id(id).send().await {
            Ok(out) => Ok(Some(out)),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DescribeSecretError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(remote("DescribeSecret", &err)),
        }
    }

    /// Cancels a scheduled deletion; `false` if the secret is gone.
    async fn restore_remote(&self, id: &str) -> Result<bool, SecretError> {
        match self.client.restore_secret().secret_id(id).send().await {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(RestoreSecretError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(remote("RestoreSecret", &err)),
        }
    }
}

fn tenant_tag(tenant: TenantId) -> Tag {
    Tag::builder()
        .key(TENANT_TAG)
        .value(tenant.to_string())
        .build()
}

fn arn_of(operation: &'static str, arn: Option<&str>) -> Result<String, SecretError> {
    arn.map(str::to_owned).ok_or(SecretError::Remote {
        service: SERVICE,
        operation,
        message: "the response holds no ARN".into(),
    })
}

/// AWS's error code and message (which name secrets, never their values),
/// or the transport error.
fn remote<E>(operation: &'static str, err: &SdkError<E>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status().as_u16()))
        .unwrap_or_default();
    let message = match err.as_service_error() {
        Some(e) if e.code().is_some() => format!(
            "{}: {}{status}",
            e.code().unwrap_or_default(),
            e.message().unwrap_or("no message")
        ),
        _ => format!("{}{status}", DisplayErrorContext(err)),
    };
    SecretError::Remote {
        service: SERVICE,
        operation,
        message,
    }
}

/// The tenant's row in `tenant_secrets`.
struct Row {
    /// The ARN, if the row is the AWS store's.
    arn: Option<String>,
    scheduled: bool,
    /// Scheduled, and the recovery window has not passed.
    restorable: bool,
}

async fn row(tx: &mut TenantTx) -> Result<Option<Row>, SecretError> {
    let row = tenant_secrets::reference(tx).await?;
    Ok(row.map(|r| Row {
        arn: r
            .reference
            .filter(|reference| r.store == "aws" && reference.starts_with("arn:")),
        scheduled: r.scheduled,
        restorable: r.restorable,
    }))
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    fn kind(&self) -> &'static str {
        "aws"
    }

    async fn put(&self, tx: &mut TenantTx, secret: &TenantSecret) -> Result<(), SecretError> {
        let tenant = tx.tenant();
        let doc = secret_document(secret);
        let known = row(tx).await?;
        let arn = match known.and_then(|r| r.arn.map(|arn| (arn, r.scheduled))) {
            Some((arn, scheduled)) => {
                // AWS refuses new versions of a secret scheduled for deletion.
                if scheduled {
                    self.restore_remote(&arn).await?;
                }
                match self.put_value(&arn, &doc).await? {
                    Some(arn) => arn,
                    // Deleted behind our back: start again.
                    None => self.create(tenant, &doc).await?,
                }
            }
            None => self.create(tenant, &doc).await?,
        };
        let version = tenant_secrets::next_version(tx).await?;
        let fingerprints =
            serde_json::to_value(secret.exchange_keys.fingerprints(&self.fingerprints))
                .unwrap_or(Value::Null);
        tenant_secrets::put_reference(tx, "aws", &arn, &fingerprints, version).await?;
        tracing::info!(%tenant, secret = %arn, version, "stored the tenant's secret in Secrets Manager");
        Ok(())
    }

    async fn get(&self, tx: &mut TenantTx) -> Result<Option<TenantSecret>, SecretError> {
        let Some(Row {
            arn: Some(arn),
            scheduled: false,
            ..
        }) = row(tx).await?
        else {
            return Ok(None);
        };
        let out = match self.client.get_secret_value().secret_id(&arn).send().await {
            Ok(out) => out,
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                return Err(SecretError::Remote {
                    service: SERVICE,
                    operation: "GetSecretValue",
                    message: format!(
                        "secret {arn} is recorded for tenant {} but Secrets Manager does not have it",
                        tx.tenant()
                    ),
                });
            }
            Err(err) => return Err(remote("GetSecretValue", &err)),
        };
        let text = out.secret_string().ok_or_else(|| {
            SecretError::Corrupt(format!("secret {arn} holds binary data, not JSON"))
        })?;
        TenantSecret::from_json(&SecretString::from(text.to_owned())).map(Some)
    }

    async fn schedule_deletion(
        &self,
        tx: &mut TenantTx,
        recovery_days: u32,
    ) -> Result<(), SecretError> {
        if !RECOVERY_DAYS.contains(&recovery_days) {
            return Err(SecretError::Remote {
                service: SERVICE,
                operation: "DeleteSecret",
                message: format!(
                    "the recovery window must be {} to {} days, not {recovery_days}",
                    RECOVERY_DAYS.start(),
                    RECOVERY_DAYS.end()
                ),
            });
        }
        let Some(Row {
            arn: Some(arn),
            scheduled: false,
            ..
        }) = row(tx).await?
        else {
            return Ok(());
        };
        let fallback = Utc::now() + chrono::Duration::days(i64::from(recovery_days));
        let at = match self
            .client
            .delete_secret()
            .secret_id(&arn)
            .recovery_window_in_days(i64::from(recovery_days))
            .send()
            .await
        {
            Ok(out) => out
                .deletion_date()
                .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
                .unwrap_or(fallback),
            Err(err) => match err.as_service_error() {
                // Gone already: nothing is left to delete.
                Some(DeleteSecretError::ResourceNotFoundException(_)) => fallback,
                // Already scheduled (an earlier attempt that did not commit).
                Some(DeleteSecretError::InvalidRequestException(_))
                    if self
                        .describe(&arn)
                        .await?
                        .is_some_and(|d| d.deleted_date().is_some()) =>
                {
                    fallback
                }
                _ => return Err(remote("DeleteSecret", &err)),
            },
        };
        tenant_secrets::mark_deletion_scheduled(tx, at).await?;
        tracing::info!(tenant = %tx.tenant(), secret = %arn, %at, "scheduled the tenant's secret for deletion");
        Ok(())
    }

    async fn restore(&self, tx: &mut TenantTx) -> Result<bool, SecretError> {
        let Some(Row {
            arn: Some(arn),
            restorable: true,
            ..
        }) = row(tx).await?
        else {
            return Ok(false);
        };
        if !self.restore_remote(&arn).await? {
            return Ok(false);
        }
        tenant_secrets::clear_deletion(tx).await?;
        tracing::info!(tenant = %tx.tenant(), secret = %arn, "restored the tenant's secret");
        Ok(true)
    }

    async fn reference(&self, tx: &mut TenantTx) -> Result<Option<String>, SecretError> {
        Ok(row(tx).await?.and_then(|r| r.arn))
    }
}
