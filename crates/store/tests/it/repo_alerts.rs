//! The alerting repository (`repo::alerts`): channels, alert state and
//! availability, each against a fresh database. What the evaluator decides
//! on is the fleet read model's (`repo_fleet.rs`).

use chrono::{DateTime, Duration, DurationRound, Utc};
use polybot_core::TenantId;
use polybot_store::repo::alerts::{self, ChannelRow, FiringAlert};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use sqlx::PgPool;
use uuid::Uuid;

/// A channel as the control plane stores it: the secret sealed (the bytes
/// stand in for a ciphertext; this crate never seals).
fn channel(n: u128, kind: &str, target: &str) -> ChannelRow {
    ChannelRow {
        id: Uuid::from_u128(n),
        kind: kind.into(),
        target: target.into(),
        secret: None,
        secret_ciphertext: Some(format!("ciphertext-{n}").into_bytes()),
        secret_nonce: Some(vec![n as u8; 12]),
        secret_key_id: Some("k1".into()),
        secret_fingerprint: format!("sha256:{n:012}"),
    }
}

/// A channel as stored before migration 0010: its secret in plaintext.
fn legacy(n: u128, kind: &str, target: &str) -> ChannelRow {
    ChannelRow {
        secret: Some(format!("secret-{n}-0123456789abcdef")),
        secret_ciphertext: None,
        secret_nonce: None,
        secret_key_id: None,
        ..channel(n, kind, target)
    }
}

async fn now(db: &Db) -> DateTime<Utc> {
    let mut op = db.operator().await.unwrap();
    let now = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *op)
        .await
        .unwrap();
    op.commit().await.unwrap();
    now
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn tenant_channels_are_replaced_whole_and_read_back_in_order(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    let first = vec![
        channel(1, "webhook", "https://hooks.example.com/a"),
        channel(2, "telegram", "-1001"),
    ];
    // Ids in descending order: the read must keep the given order, not sort by id.
    let second = vec![
        channel(9, "telegram", "@alerts"),
        channel(8, "webhook", "https://hooks.example.com/b"),
        channel(7, "webhook", "https://hooks.example.com/c"),
    ];
    let mut tx = db.tenant(a).await.unwrap();
    alerts::replace_tenant_channels(&mut tx, &first)
        .await
        .unwrap();
    assert_eq!(alerts::tenant_channels(&mut tx).await.unwrap(), first);
    alerts::replace_tenant_channels(&mut tx, &second)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(alerts::tenant_channels(&mut tx).await.unwrap(), second);
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(alerts::tenant_channels(&mut tx).await.unwrap(), vec![]);
    alerts::replace_tenant_channels(&mut tx, &[channel(20, "telegram", "-2")])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Replacing b's list left a's alone.
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(alerts::tenant_channels(&mut tx).await.unwrap().len(), 3);
    alerts::replace_tenant_channels(&mut tx, &[]).await.unwrap();
    assert_eq!(alerts::tenant_channels(&mut tx).await.unwrap(), vec![]);
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn operator_channels_are_replaced_whole_and_read_back_in_order(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let mut op = db.operator().await.unwrap();
    assert_eq!(alerts::operator_channels(&mut op).await.unwrap(), vec![]);
    let list = vec![
        channel(5, "webhook", "https://ops.example.com/hook"),
        channel(3, "telegram", "-42"),
    ];
    alerts::replace_operator_channels(&mut op, &list)
        .await
        .unwrap();
    op.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    assert_eq!(alerts::operator_channels(&mut op).await.unwrap(), list);
    alerts::replace_operator_channels(&mut op, &list[1..])
        .await
        .unwrap();
    assert_eq!(
        alerts::operator_channels(&mut op).await.unwrap(),
        &list[1..]
    );
    op.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn plaintext_secrets_are_found_and_replaced_by_their_sealed_form(pool: PgPool) {
    let db = Db::from_pool(pool.clone(), Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    alerts::replace_tenant_channels(
        &mut tx,
        &[
            legacy(1, "webhook", "https://h.example.com/a"),
            channel(2, "telegram", "-1"),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    alerts::replace_tenant_channels(&mut tx, &[channel(3, "telegram", "-2")])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    alerts::replace_operator_channels(&mut op, &[legacy(4, "webhook", "https://ops.example.com/")])
        .await
        .unwrap();
    assert_eq!(
        alerts::tenants_with_plaintext_secrets(&mut op)
            .await
            .unwrap(),
        vec![a.as_uuid()]
    );
    let sealed = alerts::SealedSecret {
        ciphertext: b"sealed-4".to_vec(),
        nonce: vec![4; 12],
        key_id: "k2".into(),
    };
    alerts::seal_operator_channel(&mut op, Uuid::from_u128(4), &sealed)
        .await
        .unwrap();
    let row = alerts::operator_channels(&mut op).await.unwrap().remove(0);
    assert_eq!(row.secret, None);
    assert_eq!(
        row.secret_ciphertext.as_deref(),
        Some(b"sealed-4".as_slice())
    );
    assert_eq!(row.secret_key_id.as_deref(), Some("k2"));
    op.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    let sealed = alerts::SealedSecret {
        ciphertext: b"sealed-1".to_vec(),
        nonce: vec![1; 12],
        key_id: "k2".into(),
    };
    alerts::seal_tenant_channel(&mut tx, Uuid::from_u128(1), &sealed)
        .await
        .unwrap();
    let rows = alerts::tenant_channels(&mut tx).await.unwrap();
    assert_eq!(rows[0].secret, None);
    assert_eq!(rows[0].secret_nonce, Some(vec![1; 12]));
    assert_eq!(rows[1], channel(2, "telegram", "-1"));
    tx.commit().await.unwrap();
    // No plaintext is left anywhere.
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        alerts::tenants_with_plaintext_secrets(&mut op)
            .await
            .unwrap(),
        Vec::<Uuid>::new()
    );
    op.commit().await.unwrap();
    let plain: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM alert_channels WHERE secret IS NOT NULL) \
              + (SELECT count(*) FROM operator_alert_channels WHERE secret IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plain, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_channel_without_plaintext_or_sealed_secret_is_refused(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    let empty = ChannelRow {
        secret_ciphertext: None,
        ..channel(1, "webhook", "https://h.example.com/")
    };
    let err = alerts::replace_tenant_channels(&mut tx, &[empty])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("storing an alert channel"),
        "{err}"
    );
}

#[test]
fn a_channel_row_never_shows_its_secret_or_target() {
    let row = legacy(1, "webhook", "https://hooks.example.com/a?token=t0k3n");
    let debug = format!("{row:?}");
    assert!(debug.contains("webhook"), "{debug}");
    assert!(
        !debug.contains("secret-1") && !debug.contains("t0k3n"),
        "{debug}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_alert_is_raised_held_cleared_resolved_and_raised_again(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    alerts::raise(&mut tx, "breaker_open", "news_arb", "open: 500", t0)
        .await
        .unwrap();
    alerts::raise(
        &mut tx,
        "fenced",
        "",
        "fenced off",
        t0 + Duration::seconds(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    alerts::raise(&mut tx, "heartbeat_stale", "", "silent", t0)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let states = |db: Db| async move {
        let mut op = db.operator().await.unwrap();
        let rows = alerts::firing_states(&mut op).await.unwrap();
        op.commit().await.unwrap();
        rows
    };
    let rows = states(db.clone()).await;
    let mine: Vec<(&str, &str, &str, Option<DateTime<Utc>>)> = rows
        .iter()
        .filter(|r| r.tenant_id == a.as_uuid())
        .map(|r| {
            assert!(r.firing);
            (
                r.alert.as_str(),
                r.subject.as_str(),
                r.summary.as_str(),
                r.clear_since,
            )
        })
        .collect();
    assert_eq!(
        mine,
        vec![
            ("breaker_open", "news_arb", "open: 500", None),
            ("fenced", "", "fenced off", None)
        ]
    );
    assert_eq!(rows.len(), 3, "b's alert is read too");

    // The hold starts, is called off, starts again; then the alert resolves.
    let t1 = t0 + Duration::seconds(60);
    let mut tx = db.tenant(a).await.unwrap();
    alerts::set_clear_since(&mut tx, "breaker_open", "news_arb", Some(t1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row = |rows: Vec<alerts::AlertStateRow>| {
        rows.into_iter()
            .find(|r| r.tenant_id == a.as_uuid() && r.alert == "breaker_open")
    };
    assert_eq!(row(states(db.clone()).await).unwrap().clear_since, Some(t1));
    let mut tx = db.tenant(a).await.unwrap();
    alerts::set_clear_since(&mut tx, "breaker_open", "news_arb", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(row(states(db.clone()).await).unwrap().clear_since, None);
    let mut tx = db.tenant(a).await.unwrap();
    alerts::set_clear_since(&mut tx, "breaker_open", "news_arb", Some(t1))
        .await
        .unwrap();
    alerts::resolve(
        &mut tx,
        "breaker_open",
        "news_arb",
        t1 + Duration::seconds(30),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(row(states(db.clone()).await), None, "resolved: not firing");
    let mut tx = db.tenant(a).await.unwrap();
    let firing = alerts::firing(&mut tx).await.unwrap();
    assert_eq!(
        firing,
        vec![FiringAlert {
            alert: "fenced".into(),
            subject: String::new(),
            summary: "fenced off".into(),
            fired_at: t0 + Duration::seconds(1),
        }]
    );
    let resolved: (bool, Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT firing, clear_since, resolved_at FROM alert_states \
         WHERE tenant_id = $1 AND alert = 'breaker_open'",
    )
    .bind(a.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(resolved, (false, None, Some(t1 + Duration::seconds(30))));

    // Raised again: firing from the new time, with the new summary.
    let t2 = t1 + Duration::seconds(600);
    alerts::raise(&mut tx, "breaker_open", "news_arb", "open: 502", t2)
        .await
        .unwrap();
    let firing = alerts::firing(&mut tx).await.unwrap();
    assert_eq!(
        firing
            .iter()
            .map(|f| (f.alert.as_str(), f.summary.as_str(), f.fired_at))
            .collect::<Vec<_>>(),
        vec![
            ("fenced", "fenced off", t0 + Duration::seconds(1)),
            ("breaker_open", "open: 502", t2),
        ]
    );
    let again: (bool, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT firing, resolved_at FROM alert_states WHERE tenant_id = $1 AND alert = 'breaker_open'",
    )
    .bind(a.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(again, (true, None));
    tx.commit().await.unwrap();
    // b's tenant transaction sees only b's alert.
    let mut tx = db.tenant(b).await.unwrap();
    let firing = alerts::firing(&mut tx).await.unwrap();
    assert_eq!(
        firing.iter().map(|f| f.alert.as_str()).collect::<Vec<_>>(),
        vec!["heartbeat_stale"]
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn availability_adds_up_per_minute_with_up_capped_at_desired(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let minute = now(&db).await.duration_trunc(Duration::minutes(1)).unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    assert!(
        alerts::add_availability(&mut tx, minute, 1000, 400)
            .await
            .unwrap()
    );
    assert!(
        alerts::add_availability(&mut tx, minute, 500, 900)
            .await
            .unwrap()
    );
    let row: (i64, i64) = sqlx::query_as(
        "SELECT desired_ms, up_ms FROM worker_availability WHERE tenant_id = $1 AND minute = $2",
    )
    .bind(a.as_uuid())
    .bind(minute)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(row, (1500, 900));
    tx.commit().await.unwrap();

    // A tenant deleted meanwhile: nothing written, no error.
    let deleted = TenantId::new();
    let mut tx = db.tenant(deleted).await.unwrap();
    assert!(
        !alerts::add_availability(&mut tx, minute, 1000, 1000)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}
