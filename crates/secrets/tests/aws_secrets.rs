//! The Secrets Manager store against moto on loopback (started by
//! scripts/test), with each test's bookkeeping in a fresh database.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::error::ErrorMetadata;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use polybot_core::TenantId;
use polybot_core::keys::FingerprintKey;
use polybot_core::keys::parse_exchange_keys;
use polybot_secrets::aws::{AwsSecretStore, secret_name};
use polybot_secrets::{SecretError, SecretStore, TenantSecret};
use polybot_store::{Db, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn endpoint() -> String {
    std::env::var("POLYBOT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "POLYBOT_TEST_AWS_ENDPOINT is not set: these tests need the AWS emulator (moto on \
             loopback) that scripts/test starts. Run them with `scripts/test -- -p polybot-secrets`."
        )
    })
}

async fn aws() -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .load()
        .await
}

struct Fixture {
    db: Db,
    pool: PgPool,
    store: AwsSecretStore,
    client: Client,
    tenant: TenantId,
}

async fn fixture(pool_opts: PgPoolOptions, options: PgConnectOptions) -> Fixture {
    let pool = pool_opts.connect_with(options).await.unwrap();
    let db = Db::from_pool(pool.clone(), Scope::Control);
    let tenant = polybot_store::testing::create_tenant(&db, "acme")
        .await
        .unwrap();
    let aws = aws().await;
    Fixture {
        db,
        pool,
        store: AwsSecretStore::new(&aws, FingerprintKey::from_bytes([3; 32])),
        client: Client::new(&aws),
        tenant,
    }
}

fn secret(api_key: &str, secret_key: &str) -> TenantSecret {
    TenantSecret {
        exchange_keys: parse_exchange_keys(
            &json!({"binance_us": {"api_key": api_key, "secret_key": secret_key}}),
        )
        .unwrap(),
        database_url: Some(SecretString::from(
            "postgres://polybot_t_x:pw@db.internal:5432/polybot".to_owned(),
        )),
    }
}

async fn put(f: &Fixture, value: &TenantSecret) {
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    f.store.put(&mut tx, value).await.unwrap();
    tx.commit().await.unwrap();
}

async fn secrets_named(f: &Fixture) -> Vec<aws_sdk_secretsmanager::types::SecretListEntry> {
    f.client
        .list_secrets()
        .include_planned_deletion(true)
        .filters(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values(secret_name(f.tenant))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .secret_list()
        .to_vec()
}

async fn stored_json(f: &Fixture) -> Value {
    let out = f
        .client
        .get_secret_value()
        .secret_id(secret_name(f.tenant))
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

/// `(store, reference, version, has ciphertext, deletion scheduled)`.
async fn row(f: &Fixture) -> (String, String, i64, bool, bool) {
    sqlx::query_as(
        "SELECT store, reference, version, ciphertext IS NOT NULL, deletion_scheduled_at IS NOT NULL \
         FROM tenant_secrets WHERE tenant_id = $1",
    )
    .bind(f.tenant.as_uuid())
    .fetch_one(&f.pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn onboarding_creates_exactly_one_secret_with_its_name_tag_and_json(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("KEY1", "SECRET1")).await;

    let listed = secrets_named(&f).await;
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(
        entry.name(),
        Some(format!("polybot/tenants/{}", f.tenant).as_str())
    );
    let tags: Vec<(&str, &str)> = entry
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(tags, vec![("tenant_id", f.tenant.to_string().as_str())]);

    let doc = stored_json(&f).await;
    let keys = json!({"binance_us": {"api_key": "KEY1", "secret_key": "SECRET1"}});
    assert_eq!(doc["exchange_keys"], keys);
    assert_eq!(
        doc["database_url"],
        "postgres://polybot_t_x:pw@db.internal:5432/polybot"
    );
    // What ECS injects into the worker's environment, key by key.
    let injected: Value = serde_json::from_str(doc["EXCHANGE_KEYS"].as_str().unwrap()).unwrap();
    assert_eq!(injected, keys);
    assert_eq!(doc["DATABASE_URL"], doc["database_url"]);

    let (store, reference, version, ciphertext, scheduled) = row(&f).await;
    assert_eq!(store, "aws");
    assert_eq!(Some(reference.as_str()), entry.arn());
    assert_eq!(version, 1);
    assert!(!ciphertext, "nothing of the secret is kept in the database");
    assert!(!scheduled);

    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    assert_eq!(f.store.reference(&mut tx).await.unwrap(), Some(reference));
    let read = f.store.get(&mut tx).await.unwrap().expect("a secret");
    assert_eq!(
        read.exchange_keys
            .get("binance_us", "api_key")
            .map(|k| k.expose_secret().to_owned()),
        Some("KEY1".to_owned())
    );
    assert_eq!(
        read.database_url.map(|u| u.expose_secret().to_owned()),
        Some("postgres://polybot_t_x:pw@db.internal:5432/polybot".to_owned())
    );
    let fingerprints = polybot_secrets::fingerprints(&mut tx).await.unwrap();
    assert!(fingerprints.get("binance_us").is_some(), "{fingerprints}");
    assert!(!fingerprints.to_string().contains("SECRET1"));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn rotation_writes_a_new_version_of_the_same_secret(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("OLDKEY", "OLDSECRET")).await;
    let (_, first_arn, _, _, _) = row(&f).await;
    put(&f, &secret("NEWKEY", "NEWSECRET")).await;

    assert_eq!(secrets_named(&f).await.len(), 1);
    let (_, arn, version, _, _) = row(&f).await;
    assert_eq!(arn, first_arn);
    assert_eq!(version, 2);
    let doc = stored_json(&f).await;
    assert_eq!(
        doc["exchange_keys"],
        json!({"binance_us": {"api_key": "NEWKEY", "secret_key": "NEWSECRET"}})
    );
    assert!(!doc.to_string().contains("OLDSECRET"));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn offboarding_schedules_deletion_and_reonboarding_within_the_window_restores(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("KEY1", "SECRET1")).await;

    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    f.store.schedule_deletion(&mut tx, 7).await.unwrap();
    assert!(
        f.store.get(&mut tx).await.unwrap().is_none(),
        "unusable once scheduled"
    );
    tx.commit().await.unwrap();
    let described = f
        .client
        .describe_secret()
        .secret_id(secret_name(f.tenant))
        .send()
        .await
        .unwrap();
    assert!(
        described.deleted_date().is_some(),
        "AWS has it scheduled for deletion"
    );
    let days: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM deletion_scheduled_at - now())::float8 / 86400 \
         FROM tenant_secrets WHERE tenant_id = $1",
    )
    .bind(f.tenant.as_uuid())
    .fetch_one(&f.pool)
    .await
    .unwrap();
    assert!((6.9..=7.1).contains(&days), "deleted in {days} days");

    // Offboarding again (a retried step) changes nothing.
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    f.store.schedule_deletion(&mut tx, 7).await.unwrap();
    assert!(f.store.restore(&mut tx).await.unwrap());
    let back = f.store.get(&mut tx).await.unwrap().expect("restored");
    assert!(back.exchange_keys.get("binance_us", "secret_key").is_some());
    assert!(
        !f.store.restore(&mut tx).await.unwrap(),
        "nothing left to restore"
    );
    tx.commit().await.unwrap();
    let described = f
        .client
        .describe_secret()
        .secret_id(secret_name(f.tenant))
        .send()
        .await
        .unwrap();
    assert!(described.deleted_date().is_none());
    assert!(!row(&f).await.4);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn writing_a_secret_scheduled_for_deletion_restores_it_first(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("KEY1", "SECRET1")).await;
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    f.store.schedule_deletion(&mut tx, 30).await.unwrap();
    tx.commit().await.unwrap();

    // AWS refuses PutSecretValue on a secret scheduled for deletion (moto
    // does not), so the store restores it before writing.
    put(&f, &secret("KEY2", "SECRET2")).await;
    let described = f
        .client
        .describe_secret()
        .secret_id(secret_name(f.tenant))
        .send()
        .await
        .unwrap();
    assert!(described.deleted_date().is_none());
    assert_eq!(
        stored_json(&f).await["exchange_keys"]["binance_us"]["api_key"],
        "KEY2"
    );
    assert!(!row(&f).await.4);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_secret_created_by_an_attempt_that_rolled_back_is_adopted(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    f.store
        .put(&mut tx, &secret("KEY1", "SECRET1"))
        .await
        .unwrap();
    // The control plane died before committing its bookkeeping.
    tx.rollback().await.unwrap();
    assert_eq!(secrets_named(&f).await.len(), 1);

    put(&f, &secret("KEY2", "SECRET2")).await;
    let listed = secrets_named(&f).await;
    assert_eq!(listed.len(), 1);
    let (_, arn, version, _, _) = row(&f).await;
    assert_eq!(Some(arn.as_str()), listed[0].arn());
    assert_eq!(version, 1);
    assert_eq!(
        stored_json(&f).await["exchange_keys"]["binance_us"]["api_key"],
        "KEY2"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_recovery_window_secrets_manager_does_not_offer_is_refused(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("KEY1", "SECRET1")).await;
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    let err = f.store.schedule_deletion(&mut tx, 3).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret store (secretsmanager): DeleteSecret failed: the recovery window must be 7 to 30 days, not 3"
    );
    assert!(f.store.get(&mut tx).await.unwrap().is_some());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_aws_error_names_the_operation_and_code_but_never_the_value(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let f = fixture(pool_opts, options).await;
    put(&f, &secret("KEY1", "SUPERSECRETVALUE")).await;
    let denied = mock!(Client::get_secret_value).then_error(|| {
        GetSecretValueError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User is not authorized to perform: secretsmanager:GetSecretValue")
                .build(),
        )
    });
    let client: Client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        &[&denied],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let store = AwsSecretStore::from_client(client, FingerprintKey::from_bytes([3; 32]));
    let mut tx = f.db.tenant(f.tenant).await.unwrap();
    let err = store.get(&mut tx).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::Remote {
                operation: "GetSecretValue",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "secret store (secretsmanager): GetSecretValue failed: AccessDeniedException: User is not authorized"
        ),
        "{text}"
    );
    assert!(!text.contains("SUPERSECRETVALUE") && !format!("{err:?}").contains("SUPERSECRETVALUE"));
    assert!(!format!("{:?}", secret("K", "SUPERSECRETVALUE")).contains("SUPERSECRETVALUE"));
}
