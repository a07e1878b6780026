//! `repo::tenant_secrets`: each function, with two tenants where one could
//! see the other's row.

use chrono::{Duration, Utc};
use polybot_store::repo::tenant_secrets::{self, Sealed, SealedRow};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use serde_json::json;
use sqlx::PgPool;

fn sealed(version: i64) -> Sealed {
    Sealed {
        reference: "local:x".into(),
        ciphertext: vec![1, 2, 3],
        nonce: vec![0; 12],
        key_id: "k1".into(),
        fingerprints: json!({"kalshi": "ab12…"}),
        version,
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_sealed_secret_reads_back_with_its_version_and_only_for_its_tenant(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(tenant_secrets::next_version(&mut tx).await.unwrap(), 1);
    tenant_secrets::put_sealed(&mut tx, &sealed(1))
        .await
        .unwrap();
    assert_eq!(tenant_secrets::next_version(&mut tx).await.unwrap(), 2);
    assert_eq!(
        tenant_secrets::sealed(&mut tx).await.unwrap(),
        Some(SealedRow {
            ciphertext: Some(vec![1, 2, 3]),
            nonce: Some(vec![0; 12]),
            key_id: Some("k1".into()),
            version: 1,
        })
    );
    assert_eq!(
        tenant_secrets::fingerprints(&mut tx).await.unwrap(),
        json!({"kalshi": "ab12…"})
    );
    tx.commit().await.unwrap();

    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(tenant_secrets::sealed(&mut tx).await.unwrap(), None);
    assert_eq!(tenant_secrets::reference(&mut tx).await.unwrap(), None);
    assert_eq!(
        tenant_secrets::fingerprints(&mut tx).await.unwrap(),
        json!({})
    );
    assert_eq!(tenant_secrets::next_version(&mut tx).await.unwrap(), 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_reference_replaces_the_ciphertext(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    tenant_secrets::put_sealed(&mut tx, &sealed(1))
        .await
        .unwrap();
    tenant_secrets::put_reference(&mut tx, "aws", "arn:aws:x", &json!({}), 2)
        .await
        .unwrap();
    let row = tenant_secrets::reference(&mut tx).await.unwrap().unwrap();
    assert_eq!(row.store, "aws");
    assert_eq!(row.reference.as_deref(), Some("arn:aws:x"));
    assert!(!row.scheduled);
    let sealed = tenant_secrets::sealed(&mut tx).await.unwrap().unwrap();
    assert_eq!(sealed.ciphertext, None);
    assert_eq!(sealed.version, 2);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_scheduled_deletion_hides_the_secret_until_restored(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    tenant_secrets::put_sealed(&mut tx, &sealed(1))
        .await
        .unwrap();

    tenant_secrets::schedule_deletion_in(&mut tx, 30)
        .await
        .unwrap();
    assert_eq!(tenant_secrets::sealed(&mut tx).await.unwrap(), None);
    let row = tenant_secrets::reference(&mut tx).await.unwrap().unwrap();
    assert!(row.scheduled && row.restorable);

    assert!(
        tenant_secrets::restore_within_window(&mut tx)
            .await
            .unwrap()
    );
    assert!(tenant_secrets::sealed(&mut tx).await.unwrap().is_some());
    // Nothing left to restore.
    assert!(
        !tenant_secrets::restore_within_window(&mut tx)
            .await
            .unwrap()
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_deletion_past_its_window_cannot_be_restored_in_the_database_but_can_be_cleared(
    pool: PgPool,
) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    tenant_secrets::put_sealed(&mut tx, &sealed(1))
        .await
        .unwrap();
    tenant_secrets::mark_deletion_scheduled(&mut tx, Utc::now() - Duration::days(1))
        .await
        .unwrap();
    let row = tenant_secrets::reference(&mut tx).await.unwrap().unwrap();
    assert!(row.scheduled);
    assert!(!row.restorable);
    assert!(
        !tenant_secrets::restore_within_window(&mut tx)
            .await
            .unwrap()
    );

    tenant_secrets::clear_deletion(&mut tx).await.unwrap();
    let row = tenant_secrets::reference(&mut tx).await.unwrap().unwrap();
    assert!(!row.scheduled);
}
