//! `repo::operator_secrets`: the local store's operator-level worker secrets.

use polybot_store::repo::operator_secrets::{self, SealedSecret};
use polybot_store::{Db, Scope};
use sqlx::PgPool;

fn sealed(name: &str, byte: u8) -> SealedSecret {
    SealedSecret {
        name: name.to_owned(),
        ciphertext: vec![byte; 24],
        nonce: vec![byte; 12],
        key_id: format!("key-{byte}"),
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_stored_secret_is_read_back_and_a_new_value_replaces_it(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let mut op = db.operator().await.unwrap();
    assert_eq!(operator_secrets::all(&mut op).await.unwrap(), []);
    operator_secrets::put(&mut op, &sealed("POLYBOT_NEWSAPI_KEY", 1))
        .await
        .unwrap();
    operator_secrets::put(&mut op, &sealed("POLYBOT_NEWSAPI_KEY", 2))
        .await
        .unwrap();
    op.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    assert_eq!(
        operator_secrets::all(&mut op).await.unwrap(),
        [sealed("POLYBOT_NEWSAPI_KEY", 2)]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn only_a_worker_variable_name_is_accepted(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let mut op = db.operator().await.unwrap();
    let err = operator_secrets::put(&mut op, &sealed("DATABASE_URL", 1))
        .await
        .unwrap_err();
    assert_eq!(
        err.constraint(),
        Some("operator_secrets_name_check"),
        "{err}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenants_worker_cannot_read_the_operator_secrets(
    pool_opts: sqlx::postgres::PgPoolOptions,
    options: sqlx::postgres::PgConnectOptions,
) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let db = Db::from_pool(pool, Scope::Control);
    let tenant = polybot_store::testing::create_tenant(&db, "acme")
        .await
        .unwrap();
    let login = polybot_store::testing::tenant_login(&db, &options, tenant)
        .await
        .unwrap();
    let worker = PgPool::connect_with(login).await.unwrap();
    let err = sqlx::query("SELECT count(*) FROM operator_secrets")
        .fetch_one(&worker)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    worker.close().await;
    polybot_store::roles::drop_tenant_role(&db, tenant)
        .await
        .unwrap();
}
