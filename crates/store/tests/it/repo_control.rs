//! The repositories the control plane's API uses: tenants, configurations,
//! tokens, dashboard sessions, idempotency keys, the audit log, the launch
//! spec, and the reads of opportunities, trades, balances and PnL. One test
//! per function, asserting on what it stored or returned; where rows belong
//! to a tenant, with two tenants, so that one tenant's transaction is shown
//! not to see the other's rows.
//!
//! Longer than 800 lines on purpose: one test per function of nine
//! repositories, sharing one two-tenant fixture.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use polybot_core::lifecycle::TenantState;
use polybot_core::{Mode, TenantId};
use polybot_store::repo::opportunities::{self, NewOpportunity};
use polybot_store::repo::{
    audit, balances, configs, heartbeats, idempotency, runtime, sessions, tenants, tokens, trades,
};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope, TenantTx};
use rust_decimal_macros::dec;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn control(pool: PgPool) -> Db {
    Db::from_pool(pool, Scope::Control)
}

/// Two tenants, A and B, each with a configuration.
async fn two_tenants(db: &Db) -> (TenantId, TenantId) {
    let a = create_tenant(db, "tenant-a").await.unwrap();
    let b = create_tenant(db, "tenant-b").await.unwrap();
    for (tenant, strategy) in [(a, "complement_arb"), (b, "news_arb")] {
        let mut tx = db.tenant(tenant).await.unwrap();
        configs::insert(
            &mut tx,
            &json!({ strategy: {} }),
            &json!({"max_open_orders": 3}),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    (a, b)
}

async fn state_of(db: &Db, tenant: TenantId) -> (TenantState, String, Option<String>) {
    let mut tx = db.tenant(tenant).await.unwrap();
    let row = tenants::get(&mut tx)
        .await
        .unwrap()
        .expect("the tenant exists");
    tx.commit().await.unwrap();
    (row.state, row.provisioning_step, row.last_error)
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

// ---------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_new_tenant_reads_back_as_provisioning(pool: PgPool) {
    let db = control(pool);
    let tenant = create_tenant(&db, "fresh").await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    let row = tenants::get(&mut tx)
        .await
        .unwrap()
        .expect("visible to itself");
    assert_eq!(row.tenant_id(), tenant);
    assert_eq!(row.name, "fresh");
    assert_eq!(row.state, TenantState::Provisioning);
    assert_eq!(row.provisioning_step, "created");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_name_belongs_to_one_live_tenant_and_is_freed_by_offboarding(pool: PgPool) {
    let db = control(pool);
    let first = create_tenant(&db, "acme").await.unwrap();
    let err = create_tenant(&db, "acme").await.unwrap_err();
    assert!(tenants::is_name_taken(&err), "{err}");
    // A rename onto a taken name is refused the same way.
    let other = create_tenant(&db, "other").await.unwrap();
    let mut tx = db.tenant(other).await.unwrap();
    let err = tenants::update(&mut tx, Some("acme"), None, false)
        .await
        .unwrap_err();
    assert!(tenants::is_name_taken(&err), "{err}");
    drop(tx);
    let mut tx = db.tenant(first).await.unwrap();
    tenants::set_state(&mut tx, TenantState::Offboarding, false)
        .await
        .unwrap();
    tenants::set_state(&mut tx, TenantState::Offboarded, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let again = create_tenant(&db, "acme").await.unwrap();
    assert_ne!(again, first);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_exists_only_once_inserted(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert!(tenants::exists(&mut tx).await.unwrap());
    let mut ghost = db.tenant(TenantId::new()).await.unwrap();
    assert!(!tenants::exists(&mut ghost).await.unwrap());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_detail_joins_the_configuration_and_has_no_fingerprints_without_a_secret(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    let detail = tenants::detail(&mut tx).await.unwrap().expect("exists");
    assert_eq!(detail.id, a.as_uuid());
    assert_eq!(detail.name, "tenant-a");
    assert_eq!(detail.mode, "paper");
    assert_eq!(detail.state, TenantState::Provisioning);
    assert_eq!(detail.strategies, Some(json!({"complement_arb": {}})));
    assert_eq!(detail.risk, Some(json!({"max_open_orders": 3})));
    assert_eq!(detail.fingerprints, None);
    let mut tx = db.tenant(b).await.unwrap();
    let detail = tenants::detail(&mut tx).await.unwrap().expect("exists");
    assert_eq!(detail.strategies, Some(json!({"news_arb": {}})));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn listing_tenants_filters_by_state_and_pages_by_creation(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(b).await.unwrap();
    tenants::set_state(&mut tx, TenantState::Active, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let all = tenants::list_details(&mut op, None, None, 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![a.as_uuid(), b.as_uuid()]
    );
    let active = tenants::list_details(&mut op, Some(TenantState::Active), None, 10)
        .await
        .unwrap();
    assert_eq!(
        active.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![b.as_uuid()]
    );
    let first = tenants::list_details(&mut op, None, None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let after = Some((first[0].created_at, first[0].id));
    let rest = tenants::list_details(&mut op, None, after, 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![b.as_uuid()]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn locking_reads_the_state_and_nothing_for_an_unknown_tenant(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(
        tenants::lock_state(&mut tx).await.unwrap(),
        Some(TenantState::Provisioning)
    );
    let onboarding = tenants::lock_onboarding(&mut tx)
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(onboarding.state, TenantState::Provisioning);
    assert_eq!(onboarding.provisioning_step, "created");
    let mut ghost = db.tenant(TenantId::new()).await.unwrap();
    assert_eq!(tenants::lock_state(&mut ghost).await.unwrap(), None);
    assert_eq!(tenants::lock_onboarding(&mut ghost).await.unwrap(), None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_update_changes_what_is_given_and_bumps_the_spec_version_only_when_asked(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::update(&mut tx, Some("renamed"), None, false)
        .await
        .unwrap();
    let row = tenants::get(&mut tx).await.unwrap().unwrap();
    assert_eq!(
        (row.name.as_str(), row.mode.as_str(), row.spec_version),
        ("renamed", "paper", 1)
    );
    tenants::update(&mut tx, None, Some(Mode::Live), true)
        .await
        .unwrap();
    let row = tenants::get(&mut tx).await.unwrap().unwrap();
    assert_eq!(
        (row.name.as_str(), row.mode.as_str(), row.spec_version),
        ("renamed", "live", 2)
    );
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    let other = tenants::get(&mut tx).await.unwrap().unwrap();
    assert_eq!((other.name.as_str(), other.spec_version), ("tenant-b", 1));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_key_rotation_bumps_the_spec_version(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::bump_spec_version(&mut tx).await.unwrap();
    tenants::bump_spec_version(&mut tx).await.unwrap();
    assert_eq!(
        tenants::get(&mut tx).await.unwrap().unwrap().spec_version,
        3
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn setting_the_state_restarts_onboarding_only_when_asked(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::record_onboarding_step(&mut tx, "spec", TenantState::Provisioning)
        .await
        .unwrap();
    tenants::set_state(&mut tx, TenantState::Failed, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        state_of(&db, a).await,
        (TenantState::Failed, "spec".into(), None)
    );
    let mut tx = db.tenant(a).await.unwrap();
    tenants::set_state(&mut tx, TenantState::Provisioning, true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        state_of(&db, a).await,
        (TenantState::Provisioning, "created".into(), None)
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_onboarding_step_is_recorded_with_its_state_and_clears_the_error(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::mark_failed(&mut tx, "role: boom").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        state_of(&db, a).await,
        (
            TenantState::Failed,
            "created".into(),
            Some("role: boom".into())
        )
    );
    let mut tx = db.tenant(a).await.unwrap();
    tenants::record_onboarding_step(&mut tx, "done", TenantState::Active)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        state_of(&db, a).await,
        (TenantState::Active, "done".into(), None)
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_failed_onboarding_restarts_from_created_with_its_error(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::record_onboarding_step(&mut tx, "secret", TenantState::Provisioning)
        .await
        .unwrap();
    tenants::mark_failed(&mut tx, "spec: no").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        state_of(&db, a).await,
        (
            TenantState::Failed,
            "created".into(),
            Some("spec: no".into())
        )
    );
    assert_eq!(state_of(&db, b).await.0, TenantState::Provisioning);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn only_an_offboarding_tenant_becomes_offboarded(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert!(!tenants::mark_offboarded(&mut tx).await.unwrap());
    tenants::set_state(&mut tx, TenantState::Offboarding, false)
        .await
        .unwrap();
    assert!(tenants::mark_offboarded(&mut tx).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(state_of(&db, a).await.0, TenantState::Offboarded);
    assert_eq!(state_of(&db, b).await.0, TenantState::Provisioning);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_purge_erases_the_tenant_and_its_rows_but_not_the_other(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    audit::append(&mut tx, "operator", "tenant.create", json!({}))
        .await
        .unwrap();
    tenants::purge(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    assert!(!tenants::exists(&mut tx).await.unwrap());
    assert_eq!(audit::list(&mut tx).await.unwrap(), vec![]);
    let mut tx = db.tenant(b).await.unwrap();
    assert!(tenants::exists(&mut tx).await.unwrap());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn pending_steps_are_those_of_provisioning_and_offboarding_tenants(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let c = create_tenant(&db, "tenant-c").await.unwrap();
    for (tenant, state) in [(a, TenantState::Active), (c, TenantState::Offboarding)] {
        let mut tx = db.tenant(tenant).await.unwrap();
        tenants::set_state(&mut tx, state, false).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        tenants::with_pending_steps(&mut op).await.unwrap(),
        vec![b, c]
    );
}

// ---------------------------------------------------------------------------
// Configurations and the launch spec
// ---------------------------------------------------------------------------

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_configuration_update_replaces_only_what_is_given(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    configs::update(&mut tx, None, Some(&json!({"kill_switch": true})))
        .await
        .unwrap();
    let spec = configs::launch_spec(&mut tx).await.unwrap();
    assert_eq!(spec.strategies, json!({"complement_arb": {}}));
    assert_eq!(spec.risk, json!({"kill_switch": true}));
    configs::update(&mut tx, Some(&json!({})), None)
        .await
        .unwrap();
    let spec = configs::launch_spec(&mut tx).await.unwrap();
    assert_eq!(spec.strategies, json!({}));
    assert_eq!(spec.risk, json!({"kill_switch": true}));
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(
        configs::launch_spec(&mut tx).await.unwrap().risk,
        json!({"max_open_orders": 3})
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_launch_spec_has_no_secret_version_before_a_secret(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tenants::update(&mut tx, None, Some(Mode::Live), true)
        .await
        .unwrap();
    let spec = configs::launch_spec(&mut tx).await.unwrap();
    assert_eq!(spec.mode, "live");
    assert_eq!(spec.spec_version, 2);
    assert_eq!(spec.strategies, json!({"complement_arb": {}}));
    assert_eq!(spec.secret_version, None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_prepared_launch_is_stored_replaced_and_removed(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(runtime::spec_hash(&mut tx).await.unwrap(), None);
    runtime::prepare_launch(&mut tx, "hash-1").await.unwrap();
    runtime::prepare_launch(&mut tx, "hash-2").await.unwrap();
    assert_eq!(
        runtime::spec_hash(&mut tx).await.unwrap().as_deref(),
        Some("hash-2")
    );
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(runtime::spec_hash(&mut tx).await.unwrap(), None);
    let mut tx = db.tenant(a).await.unwrap();
    runtime::remove(&mut tx).await.unwrap();
    assert_eq!(runtime::spec_hash(&mut tx).await.unwrap(), None);
}

// ---------------------------------------------------------------------------
// Tokens and sessions
// ---------------------------------------------------------------------------

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_operator_token_is_registered_once_and_found_by_its_hash(pool: PgPool) {
    let db = control(pool);
    let mut op = db.operator().await.unwrap();
    assert!(!tokens::is_operator(&mut op, b"hash-1").await.unwrap());
    assert!(
        tokens::register_operator(&mut op, Uuid::new_v4(), b"hash-1", "operator")
            .await
            .unwrap()
    );
    assert!(
        !tokens::register_operator(&mut op, Uuid::new_v4(), b"hash-1", "again")
            .await
            .unwrap()
    );
    assert!(tokens::is_operator(&mut op, b"hash-1").await.unwrap());
    assert!(!tokens::is_operator(&mut op, b"hash-2").await.unwrap());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn installing_an_operator_token_revokes_every_other_and_reinstates_itself(pool: PgPool) {
    let db = control(pool);
    let mut op = db.operator().await.unwrap();
    let installed = tokens::install_sole_operator(&mut op, Uuid::new_v4(), b"old", "operator");
    assert_eq!(installed.await.unwrap(), 0);
    // Rotation: a new token replaces the old one.
    let installed = tokens::install_sole_operator(&mut op, Uuid::new_v4(), b"new", "operator");
    assert_eq!(installed.await.unwrap(), 1);
    assert!(tokens::is_operator(&mut op, b"new").await.unwrap());
    assert!(!tokens::is_operator(&mut op, b"old").await.unwrap());
    // Rotating back to a revoked token makes it live again, alone.
    let installed = tokens::install_sole_operator(&mut op, Uuid::new_v4(), b"old", "operator");
    assert_eq!(installed.await.unwrap(), 1);
    assert!(tokens::is_operator(&mut op, b"old").await.unwrap());
    assert!(!tokens::is_operator(&mut op, b"new").await.unwrap());
    // The same token again changes nothing.
    let installed = tokens::install_sole_operator(&mut op, Uuid::new_v4(), b"old", "operator");
    assert_eq!(installed.await.unwrap(), 0);
    assert!(tokens::is_operator(&mut op, b"old").await.unwrap());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_resolves_to_its_tenant_until_it_is_offboarded(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    for (tenant, hash) in [(a, b"token-a"), (b, b"token-b")] {
        let mut tx = db.tenant(tenant).await.unwrap();
        tokens::insert_tenant_token(&mut tx, Uuid::new_v4(), hash, "ci", in_a_day())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        tokens::tenant_for(&mut op, b"token-a").await.unwrap(),
        Some(a)
    );
    assert_eq!(
        tokens::tenant_for(&mut op, b"token-b").await.unwrap(),
        Some(b)
    );
    assert_eq!(tokens::tenant_for(&mut op, b"nope").await.unwrap(), None);
    op.commit().await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    tenants::set_state(&mut tx, TenantState::Offboarding, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    assert_eq!(tokens::tenant_for(&mut op, b"token-a").await.unwrap(), None);
}

fn in_a_day() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(1)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_is_refused_once_expired_or_revoked_and_its_use_is_recorded(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let (live, expired, revoked) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut tx = db.tenant(a).await.unwrap();
    let tomorrow = in_a_day();
    tokens::insert_tenant_token(&mut tx, live, b"live", "ci", tomorrow)
        .await
        .unwrap();
    let yesterday = Utc::now() - chrono::Duration::days(1);
    tokens::insert_tenant_token(&mut tx, expired, b"expired", "old", yesterday)
        .await
        .unwrap();
    tokens::insert_tenant_token(&mut tx, revoked, b"revoked", "gone", tomorrow)
        .await
        .unwrap();
    assert!(tokens::revoke(&mut tx, revoked).await.unwrap());
    assert!(
        !tokens::revoke(&mut tx, revoked).await.unwrap(),
        "a token is revoked once"
    );
    assert_eq!(tokens::count_live(&mut tx).await.unwrap(), 1);
    // Created in one transaction, so at one time: compare in label order.
    let mut listed: Vec<(Uuid, String)> = tokens::list(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.label))
        .collect();
    listed.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        listed,
        vec![(live, "ci".to_owned()), (expired, "old".to_owned())]
    );
    let own = tokens::expiry_of(&mut tx, b"live").await.unwrap().unwrap();
    assert!(
        (own - tomorrow).num_milliseconds().abs() < 1,
        "{own} {tomorrow}"
    );
    assert_eq!(tokens::expiry_of(&mut tx, b"revoked").await.unwrap(), None);
    tx.commit().await.unwrap();

    // Another tenant cannot revoke, list or read a's tokens.
    let mut tx = db.tenant(b).await.unwrap();
    assert!(!tokens::revoke(&mut tx, live).await.unwrap());
    assert!(tokens::list(&mut tx).await.unwrap().is_empty());
    assert_eq!(tokens::expiry_of(&mut tx, b"live").await.unwrap(), None);
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let found = tokens::use_tenant_token(&mut op, b"live")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.tenant, found.token_id), (a, live));
    for refused in [&b"expired"[..], b"revoked", b"nope"] {
        assert_eq!(
            tokens::use_tenant_token(&mut op, refused).await.unwrap(),
            None
        );
        assert_eq!(tokens::tenant_for(&mut op, refused).await.unwrap(), None);
    }
    op.commit().await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    let mut used: Vec<(String, bool)> = tokens::list(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.label, t.last_used_at.is_some()))
        .collect();
    used.sort();
    assert_eq!(
        used,
        vec![("ci".to_owned(), true), ("old".to_owned(), false)]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_session_resolves_its_token_and_ends_when_closed(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    tokens::insert_tenant_token(&mut tx, Uuid::new_v4(), b"token-a", "", in_a_day())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    let operator_token = Uuid::new_v4();
    tokens::register_operator(&mut op, operator_token, b"op-token", "operator")
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    sessions::open(&mut op, b"sess-op", b"op-token", "csrf-op", hour)
        .await
        .unwrap();
    sessions::open(&mut op, b"sess-a", b"token-a", "csrf-a", hour)
        .await
        .unwrap();
    sessions::open(&mut op, b"sess-x", b"revoked", "csrf-x", hour)
        .await
        .unwrap();

    let operator = sessions::find(&mut op, b"sess-op").await.unwrap().unwrap();
    assert_eq!(operator.csrf_token, "csrf-op");
    assert_eq!(operator.operator_token, Some(operator_token));
    assert_eq!(operator.tenant_id(), None);
    let tenant = sessions::find(&mut op, b"sess-a").await.unwrap().unwrap();
    assert_eq!((tenant.operator_token, tenant.tenant_id()), (None, Some(a)));
    assert_eq!(tenant.token_hash, b"token-a");
    let orphan = sessions::find(&mut op, b"sess-x").await.unwrap().unwrap();
    assert_eq!((orphan.operator_token, orphan.tenant_id()), (None, None));
    assert_eq!(sessions::find(&mut op, b"unknown").await.unwrap(), None);

    assert!(sessions::close(&mut op, b"sess-a").await.unwrap());
    assert!(!sessions::close(&mut op, b"sess-a").await.unwrap());
    assert_eq!(sessions::find(&mut op, b"sess-a").await.unwrap(), None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn expired_sessions_are_neither_found_nor_kept(pool: PgPool) {
    let db = control(pool);
    let mut op = db.operator().await.unwrap();
    sessions::open(&mut op, b"old", b"t", "c", Duration::ZERO)
        .await
        .unwrap();
    sessions::open(&mut op, b"new", b"t", "c", Duration::from_secs(60))
        .await
        .unwrap();
    op.commit().await.unwrap();
    // `now()` is the transaction's start: a later transaction sees `old` expired.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut op = db.operator().await.unwrap();
    assert_eq!(sessions::find(&mut op, b"old").await.unwrap(), None);
    assert_eq!(sessions::delete_expired(&mut op).await.unwrap(), 1);
    assert!(sessions::close(&mut op, b"new").await.unwrap());
}

// ---------------------------------------------------------------------------
// Idempotency keys and the audit log
// ---------------------------------------------------------------------------

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_idempotency_key_is_claimed_once_and_then_holds_its_response(pool: PgPool) {
    let db = control(pool);
    let (a, _) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert!(
        idempotency::claim(&mut tx, "operator", "k1", b"h1")
            .await
            .unwrap()
    );
    assert!(
        !idempotency::claim(&mut tx, "operator", "k1", b"h2")
            .await
            .unwrap()
    );
    assert!(
        idempotency::claim(&mut tx, "tenant:x", "k1", b"h3")
            .await
            .unwrap()
    );
    let pending = idempotency::get(&mut tx, "operator", "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.request_hash, b"h1".to_vec());
    assert_eq!(
        (pending.response_status, pending.response_body),
        (None, None)
    );
    idempotency::record_response(&mut tx, "operator", "k1", 201, &json!({"id": "x"}))
        .await
        .unwrap();
    let done = idempotency::get(&mut tx, "operator", "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.response_status, Some(201));
    assert_eq!(done.response_body, Some(json!({"id": "x"})));
    let other = idempotency::get(&mut tx, "tenant:x", "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.response_status, None);
    assert_eq!(
        idempotency::get(&mut tx, "operator", "k2").await.unwrap(),
        None
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_audit_log_is_per_tenant_and_in_order(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    audit::append(&mut tx, "operator", "tenant.create", json!({"name": "a"}))
        .await
        .unwrap();
    audit::append(
        &mut tx,
        "control-plane",
        "tenant.onboarding_step",
        json!({"step": "role"}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    audit::append(&mut tx, "operator", "tenant.pause", json!({}))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    let entries: Vec<(String, String, serde_json::Value)> = audit::list(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.details))
        .collect();
    assert_eq!(
        entries,
        vec![
            (
                "operator".into(),
                "tenant.create".into(),
                json!({"name": "a"})
            ),
            (
                "control-plane".into(),
                "tenant.onboarding_step".into(),
                json!({"step": "role"})
            ),
        ]
    );
}

// ---------------------------------------------------------------------------
// What workers wrote: opportunities, trades, balances, PnL
// ---------------------------------------------------------------------------

async fn opportunity(tx: &mut TenantTx, strategy: &str, secs: i64) -> Uuid {
    let id = Uuid::new_v4();
    let written = opportunities::insert_batch(
        tx,
        &[NewOpportunity {
            id,
            strategy: strategy.into(),
            venue: "polymarket".into(),
            market: "m".into(),
            description: "d".into(),
            edge: Some(dec!(0.02)),
            expected_profit: Some(dec!(0.2)),
            size: Some(dec!(10)),
            details: json!({}),
            detected_at: at(secs),
            executed_at: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(written, 1);
    id
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn opportunities_page_newest_first_by_strategy_and_stay_with_their_tenant(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    let first = opportunity(&mut tx, "complement_arb", 1).await;
    let second = opportunity(&mut tx, "news_arb", 2).await;
    let third = opportunity(&mut tx, "complement_arb", 3).await;
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    let others = opportunity(&mut tx, "complement_arb", 4).await;
    let own = opportunities::page(&mut tx, None, None, 10).await.unwrap();
    assert_eq!(own.iter().map(|o| o.id).collect::<Vec<_>>(), vec![others]);
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    let all = opportunities::page(&mut tx, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![third, second, first]
    );
    assert_eq!(all[0].edge, Some(dec!(0.02)));
    assert_eq!(all[0].tenant_id, a.as_uuid());
    let arb = opportunities::page(&mut tx, Some("complement_arb"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        arb.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![third, first]
    );
    let top = opportunities::page(&mut tx, None, None, 1).await.unwrap();
    let after = Some((top[0].detected_at, top[0].id));
    let rest = opportunities::page(&mut tx, None, after, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![second, first]
    );
}

async fn refused(tx: &mut TenantTx, market: &str, reason: &str, secs: i64) -> Uuid {
    let id = Uuid::new_v4();
    let written = opportunities::insert_batch(
        tx,
        &[NewOpportunity {
            id,
            strategy: "cross_venue_arb".into(),
            venue: "polymarket+kalshi".into(),
            market: market.into(),
            description: reason.into(),
            edge: None,
            expected_profit: None,
            size: None,
            details: json!({"refused": {"reason": reason}}),
            detected_at: at(secs),
            executed_at: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(written, 1);
    id
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn refused_pairs_list_each_pairs_latest_refusal_and_nothing_else(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    refused(&mut tx, "pm-1 / KX-1", "window differs (first run)", 1).await;
    let traded = opportunity(&mut tx, "cross_venue_arb", 2).await;
    let latest = refused(&mut tx, "pm-1 / KX-1", "window differs (second run)", 3).await;
    let other = refused(&mut tx, "pm-2 / KX-2", "basis risk", 2).await;
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(
        opportunities::refused_pairs(&mut tx, 10).await.unwrap(),
        vec![]
    );
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    let rows = opportunities::refused_pairs(&mut tx, 10).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|o| (o.id, o.description.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (latest, "window differs (second run)"),
            (other, "basis risk")
        ]
    );
    assert!(rows.iter().all(|o| o.id != traded));
    // A refused pair is not an opportunity.
    let listed = opportunities::page(&mut tx, None, None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![traded]
    );
    let one = opportunities::refused_pairs(&mut tx, 1).await.unwrap();
    assert_eq!(one.len(), 1);
}

async fn trade(
    tx: &mut TenantTx,
    strategy: &str,
    fee: rust_decimal::Decimal,
    pnl: Option<rust_decimal::Decimal>,
    secs: i64,
) -> Uuid {
    let id = Uuid::new_v4();
    let written = sqlx::query(
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, fee, realized_pnl, executed_at) \
         VALUES ($1, $2, $3, 'kalshi', 'm', 'buy', 0.45, 10, $4, $5, $6)",
    )
    .bind(id)
    .bind(tx.tenant().as_uuid())
    .bind(strategy)
    .bind(fee)
    .bind(pnl)
    .bind(at(secs))
    .execute(&mut **tx)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(written, 1);
    id
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn trades_page_newest_first_by_strategy_and_stay_with_their_tenant(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    let first = trade(&mut tx, "complement_arb", dec!(0.1), None, 1).await;
    let second = trade(&mut tx, "news_arb", dec!(0.2), Some(dec!(1.5)), 2).await;
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    trade(&mut tx, "complement_arb", dec!(0.3), None, 3).await;
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    let all = trades::page(&mut tx, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![second, first]
    );
    assert_eq!(
        (all[0].price, all[0].size, all[0].fee, all[0].realized_pnl),
        (dec!(0.45), dec!(10), dec!(0.2), Some(dec!(1.5)))
    );
    assert_eq!(all[0].side, "buy");
    let news = trades::page(&mut tx, Some("news_arb"), None, 10)
        .await
        .unwrap();
    assert_eq!(news.iter().map(|t| t.id).collect::<Vec<_>>(), vec![second]);
    let after = Some((all[0].executed_at, all[0].id));
    let rest = trades::page(&mut tx, None, after, 10).await.unwrap();
    assert_eq!(rest.iter().map(|t| t.id).collect::<Vec<_>>(), vec![first]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn trade_totals_sum_per_strategy_over_the_tenants_own_trades(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let mut tx = db.tenant(a).await.unwrap();
    trade(&mut tx, "news_arb", dec!(0.1), Some(dec!(2)), 1).await;
    trade(&mut tx, "complement_arb", dec!(0.1), None, 2).await;
    trade(&mut tx, "complement_arb", dec!(0.25), Some(dec!(-0.5)), 3).await;
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    trade(&mut tx, "complement_arb", dec!(9), Some(dec!(9)), 4).await;
    tx.commit().await.unwrap();

    let mut tx = db.tenant(a).await.unwrap();
    // As of a moment: the trade at 3 s is later and not counted.
    let until = trades::totals_by_strategy(&mut tx, Some(at(2)))
        .await
        .unwrap();
    assert_eq!(
        until
            .iter()
            .map(|t| (t.strategy.as_str(), t.trades))
            .collect::<Vec<_>>(),
        vec![("complement_arb", 1), ("news_arb", 1)]
    );
    let totals = trades::totals_by_strategy(&mut tx, None).await.unwrap();
    assert_eq!(
        totals,
        vec![
            trades::StrategyTotals {
                strategy: "complement_arb".into(),
                trades: 2,
                realized: dec!(-0.5),
                fees: dec!(0.35),
            },
            trades::StrategyTotals {
                strategy: "news_arb".into(),
                trades: 1,
                realized: dec!(2),
                fees: dec!(0.1),
            },
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_reported_pnl_is_the_newest_heartbeat_that_has_one(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let beats = [
        (a, 1, json!({"pnl": {"realized": "1"}})),
        (
            a,
            2,
            json!({"pnl": {"realized": "2"}, "engine": {"clock": 1_777_467_600_000_i64}}),
        ),
        (a, 3, json!({"phase": "running"})),
        (b, 4, json!({"pnl": {"realized": "9"}})),
    ];
    for (tenant, secs, health) in beats {
        let mut tx = db.tenant(tenant).await.unwrap();
        sqlx::query(
            "INSERT INTO worker_heartbeats (tenant_id, epoch, at, health) VALUES ($1, 1, $2, $3)",
        )
        .bind(tenant.as_uuid())
        .bind(at(secs))
        .bind(health)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = db.tenant(a).await.unwrap();
    let reported = heartbeats::reported_pnl(&mut tx)
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(reported.at, at(2));
    assert_eq!(reported.pnl, Some(json!({"realized": "2"})));
    assert_eq!(reported.clock, Some(1_777_467_600_000));
    let mut ghost = db.tenant(TenantId::new()).await.unwrap();
    assert_eq!(heartbeats::reported_pnl(&mut ghost).await.unwrap(), None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn balances_page_by_venue_and_asset_and_stay_with_their_tenant(pool: PgPool) {
    let db = control(pool);
    let (a, b) = two_tenants(&db).await;
    let rows = [
        (a, "polymarket", "USDC", dec!(100)),
        (a, "kalshi", "USD", dec!(50.5)),
        (a, "alpaca", "USD", dec!(7)),
        (b, "binance_us", "USD", dec!(1)),
    ];
    for (tenant, venue, asset, amount) in rows {
        let mut tx = db.tenant(tenant).await.unwrap();
        sqlx::query(
            "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.as_uuid())
        .bind(venue)
        .bind(asset)
        .bind(amount)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = db.tenant(a).await.unwrap();
    let all = balances::page(&mut tx, None, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|b| (b.venue.as_str(), b.asset.as_str(), b.amount))
            .collect::<Vec<_>>(),
        vec![
            ("alpaca", "USD", dec!(7)),
            ("kalshi", "USD", dec!(50.5)),
            ("polymarket", "USDC", dec!(100)),
        ]
    );
    let rest = balances::page(&mut tx, Some(("alpaca", "USD")), 1)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|b| b.venue.as_str()).collect::<Vec<_>>(),
        vec!["kalshi"]
    );
}
