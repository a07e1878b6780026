//! Issue 22: workers share one login and reach PostgreSQL through PgBouncer
//! in transaction mode; each transaction carries the tenant's claim, which
//! the database verifies. With two tenants A and B, A's worker login —
//! with A's claim, a forged one, an expired one, one for B signed with
//! another key, a revoked one, or none, and whatever it SETs — neither reads
//! nor writes B's rows. And however many workers connect, the pooler opens
//! at most its budget of server connections.

use std::time::Duration;

use polybot_store::testing::{TestPooler, mint_claim};
use polybot_store::{Db, Scope, WorkerClaim};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::isolation::{
    Claimed, Fixture, assert_a_reads_none_of_bs_rows, assert_a_writes_none_of_bs_rows,
    two_seeded_tenants, visible_to,
};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn code(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// The fixture's two tenants, a pooler in front of their database, and a
/// connection of the shared worker login through it.
async fn through_the_pooler(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) -> (PgPool, Fixture, TestPooler, PgConnection) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let database = base.get_database().unwrap().to_owned();
    let f = two_seeded_tenants(pool.clone(), base.clone()).await;
    let pooler = TestPooler::start(&f.db, &base, 4).await;
    let conn = pooler
        .connect_options(&database)
        .connect()
        .await
        .expect("connecting through PgBouncer");
    (pool, f, pooler, conn)
}

/// The tenant `claim` binds, as the database sees it.
async fn bound_tenant(conn: &mut PgConnection, claim: &str) -> Option<uuid::Uuid> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('polybot.worker_claim', $1, true)")
        .bind(claim)
        .execute(&mut *tx)
        .await
        .unwrap();
    let tenant = sqlx::query_scalar("SELECT polybot.current_tenant()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    tenant
}

/// With `claim`, A's login sees none of either tenant's rows and can insert
/// none: the claim binds no tenant.
async fn assert_claim_binds_nothing(f: &Fixture, conn: PgConnection, claim: Option<String>) {
    let mut session = Claimed {
        conn,
        claim,
        setup: Vec::new(),
    };
    for tenant in [f.a, f.b] {
        for table in [
            "opportunities",
            "trades",
            "balances",
            "worker_leases",
            "tenants",
        ] {
            let column = if table == "tenants" {
                "id"
            } else {
                "tenant_id"
            };
            assert_eq!(
                visible_to(&mut session, table, column, tenant).await,
                Some(0),
                "{table} of {tenant}"
            );
        }
        let err = crate::isolation::Session::execute(
            &mut session,
            "INSERT INTO worker_heartbeats (tenant_id, epoch) VALUES ($1, 1)",
            &[tenant.as_uuid()],
        )
        .await
        .expect_err("a worker without a valid claim inserted a row");
        assert_eq!(code(&err).as_deref(), Some("42501"));
    }
}

/// `v1.<tenant>.<expiry>.<hmac>` with `key` (hex) computed by the database's
/// own HMAC, as superuser: a claim whose MAC is right for that key.
async fn sign(pool: &PgPool, key_hex: &str, tenant: uuid::Uuid, expiry: i64) -> String {
    let body = format!("v1.{tenant}.{expiry}");
    let mac: String = sqlx::query_scalar(
        "SELECT encode(polybot.hmac_sha256(decode($1, 'hex'), convert_to($2, 'UTF8')), 'hex')",
    )
    .bind(key_hex)
    .bind(&body)
    .fetch_one(pool)
    .await
    .unwrap();
    format!("{body}.{mac}")
}

async fn key_of(pool: &PgPool, tenant: uuid::Uuid) -> String {
    sqlx::query_scalar(
        "SELECT encode(key, 'hex') FROM polybot.worker_claim_keys WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_databases_hmac_is_hmac_sha256(pool: PgPool) {
    // RFC 4231, test cases 1, 2 and 6 (a key longer than the block).
    let cases = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            hex::encode("Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            &hex::encode("Jefe")[..],
            hex::encode("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            &"aa".repeat(131)[..],
            hex::encode("Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ];
    for (key, message, expected) in cases {
        let mac: String = sqlx::query_scalar(
            "SELECT encode(polybot.hmac_sha256(decode($1, 'hex'), decode($2, 'hex')), 'hex')",
        )
        .bind(key)
        .bind(&message)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(mac, expected, "key {key}");
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_with_its_claim_reads_none_of_another_tenants_rows_through_the_pooler(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (pool, f, _pooler, conn) = through_the_pooler(pool_opts, base).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let mut a = Claimed {
        conn,
        claim: Some(claim.expose_secret().to_owned()),
        setup: Vec::new(),
    };
    assert_a_reads_none_of_bs_rows(&pool, &f, &mut a).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_with_its_claim_writes_none_of_another_tenants_rows_through_the_pooler(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (pool, f, _pooler, conn) = through_the_pooler(pool_opts, base).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let mut a = Claimed {
        conn,
        claim: Some(claim.expose_secret().to_owned()),
        setup: Vec::new(),
    };
    assert_a_writes_none_of_bs_rows(&pool, &f, &mut a).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_claim_binds_its_own_tenant_and_a_tampered_one_binds_none(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_pool, f, _pooler, mut conn) = through_the_pooler(pool_opts, base).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let text = claim.expose_secret().to_owned();
    assert_eq!(bound_tenant(&mut conn, &text).await, Some(f.a.as_uuid()));

    // B's id under A's MAC; a later expiry under A's MAC; one MAC digit off.
    let a_str = f.a.to_string();
    let b_str = f.b.to_string();
    let swapped = text.replace(&a_str, &b_str);
    let expiry = claim.expires_at().timestamp();
    let extended = text.replace(&format!(".{expiry}."), &format!(".{}.", expiry + 3600));
    let last = text.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &text[..text.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for forged in [swapped.clone(), extended, flipped] {
        assert_ne!(forged, text);
        assert_eq!(bound_tenant(&mut conn, &forged).await, None, "{forged}");
    }
    assert_claim_binds_nothing(&f, conn, Some(swapped)).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_expired_claim_binds_no_tenant(pool_opts: PgPoolOptions, base: PgConnectOptions) {
    let (pool, f, _pooler, mut conn) = through_the_pooler(pool_opts, base).await;
    // Minting creates A's key; a claim signed with it that expired a second ago.
    mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let key = key_of(&pool, f.a.as_uuid()).await;
    let now = chrono::Utc::now().timestamp();
    let expired = sign(&pool, &key, f.a.as_uuid(), now - 1).await;
    let valid = sign(&pool, &key, f.a.as_uuid(), now + 3600).await;
    // The same key and form, only the expiry differs.
    assert_eq!(bound_tenant(&mut conn, &valid).await, Some(f.a.as_uuid()));
    assert_eq!(bound_tenant(&mut conn, &expired).await, None);
    assert_claim_binds_nothing(&f, conn, Some(expired)).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_claim_for_another_tenant_signed_with_a_wrong_key_binds_no_tenant(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (pool, f, _pooler, mut conn) = through_the_pooler(pool_opts, base).await;
    // B has a key (it was onboarded); A signs a claim for B with A's own key,
    // and with a key of its own making.
    mint_claim(&f.db, f.b, YEAR).await.unwrap();
    mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let a_key = key_of(&pool, f.a.as_uuid()).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let with_as_key = sign(&pool, &a_key, f.b.as_uuid(), later).await;
    let with_made_up_key = sign(&pool, &"42".repeat(32), f.b.as_uuid(), later).await;
    for forged in [&with_as_key, &with_made_up_key] {
        assert_eq!(bound_tenant(&mut conn, forged).await, None, "{forged}");
    }
    assert_claim_binds_nothing(&f, conn, Some(with_made_up_key)).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn without_a_claim_or_with_a_malformed_one_a_worker_sees_nothing(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_pool, f, pooler, mut conn) = through_the_pooler(pool_opts, base.clone()).await;
    mint_claim(&f.db, f.a, YEAR).await.unwrap();
    for malformed in [
        String::new(),
        "v1".to_owned(),
        format!("v1.{}.9999999999.{}", f.a, "0".repeat(64)),
        format!("v1.{}.9999999999.zz", f.a),
        format!("{}", f.a),
    ] {
        assert_eq!(
            bound_tenant(&mut conn, &malformed).await,
            None,
            "{malformed:?}"
        );
    }
    assert_claim_binds_nothing(&f, conn, None).await;

    // Outside any transaction, too (a session-level claim does not outlive
    // its statement in transaction pooling). Simple protocol: a prepared
    // statement outside a transaction may meet another server connection.
    let database = base.get_database().unwrap().to_owned();
    let mut plain = pooler.connect_options(&database).connect().await.unwrap();
    sqlx::raw_sql(&format!(
        "SET polybot.worker_claim = '{}'",
        mint_claim(&f.db, f.a, YEAR).await.unwrap().expose_secret()
    ))
    .execute(&mut plain)
    .await
    .unwrap();
    let row = sqlx::raw_sql("SELECT count(*) FROM opportunities")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    let n: i64 = sqlx::Row::get(&row, 0);
    assert_eq!(n, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_revoked_claim_binds_no_tenant(pool_opts: PgPoolOptions, base: PgConnectOptions) {
    let (_pool, f, _pooler, mut conn) = through_the_pooler(pool_opts, base).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let text = claim.expose_secret().to_owned();
    assert_eq!(bound_tenant(&mut conn, &text).await, Some(f.a.as_uuid()));

    let mut tx = f.db.tenant(f.a).await.unwrap();
    assert!(polybot_store::claims::revoke_in(&mut tx).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(bound_tenant(&mut conn, &text).await, None);

    // A new claim works again, under a new key: the old one stays revoked.
    let renewed = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    assert_eq!(
        bound_tenant(&mut conn, renewed.expose_secret()).await,
        Some(f.a.as_uuid())
    );
    assert_eq!(bound_tenant(&mut conn, &text).await, None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn whatever_a_worker_sets_it_stays_bound_to_its_claim(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_pool, f, _pooler, mut conn) = through_the_pooler(pool_opts, base).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('polybot.worker_claim', $1, true), \
         set_config('polybot.tenant_id', $2, true), set_config('polybot.operator', 'on', true)",
    )
    .bind(claim.expose_secret())
    .bind(f.b.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(&format!("SET LOCAL polybot.tenant_id = '{}'", f.b))
        .execute(&mut *tx)
        .await
        .unwrap();
    // Becoming the group it is in changes nothing: the login is the binding.
    sqlx::query("SET LOCAL ROLE polybot_worker")
        .execute(&mut *tx)
        .await
        .unwrap();
    let current: Option<uuid::Uuid> = sqlx::query_scalar("SELECT polybot.current_tenant()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(current, Some(f.a.as_uuid()));
    let (mine, theirs): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id = $2) \
         FROM opportunities",
    )
    .bind(f.a.as_uuid())
    .bind(f.b.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((mine, theirs), (1, 0));
    tx.rollback().await.unwrap();

    // Neither the control plane's role nor another login can be taken; the
    // keys, the minting and the revoking are out of reach.
    for (sql, expected) in [
        ("SET ROLE polybot_control", "42501"),
        ("SET ROLE polybot_owner", "42501"),
        ("SET SESSION AUTHORIZATION polybot_owner", "42501"),
        ("SELECT key FROM polybot.worker_claim_keys", "42501"),
        (
            "SELECT polybot.mint_worker_claim(gen_random_uuid(), interval '1 day')",
            "42501",
        ),
        (
            "SELECT polybot.revoke_worker_claims(gen_random_uuid())",
            "42501",
        ),
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('polybot.worker_claim', $1, true)")
            .bind(claim.expose_secret())
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.expect_err(sql);
        assert_eq!(code(&err).as_deref(), Some(expected), "{sql}: {err}");
        tx.rollback().await.unwrap();
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_session_setting_never_reaches_another_workers_transaction(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let database = base.get_database().unwrap().to_owned();
    let f = two_seeded_tenants(pool.clone(), base.clone()).await;
    // One server connection: both clients' transactions run on it.
    let pooler = TestPooler::start(&f.db, &base, 1).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let mut x = pooler.connect_options(&database).connect().await.unwrap();
    let mut y = pooler.connect_options(&database).connect().await.unwrap();

    // X sets A's claim for its whole session, and a search_path.
    sqlx::raw_sql(&format!(
        "SET polybot.worker_claim = '{}'; SET search_path = pg_temp",
        claim.expose_secret()
    ))
    .execute(&mut x)
    .await
    .unwrap();
    // Y's transaction, with no claim of its own, gets none of it.
    let mut tx = y.begin().await.unwrap();
    let (current, claim_seen, path): (Option<uuid::Uuid>, Option<String>, String) = sqlx::query_as(
        "SELECT polybot.current_tenant(), current_setting('polybot.worker_claim', true), \
             current_setting('search_path')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(current, None);
    assert!(
        matches!(claim_seen.as_deref(), None | Some("")),
        "{claim_seen:?}"
    );
    assert_eq!(path, "\"$user\", public");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_db_through_the_pooler_reaches_its_tenant(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let database = base.get_database().unwrap().to_owned();
    let f = two_seeded_tenants(pool.clone(), base.clone()).await;
    let pooler = TestPooler::start(&f.db, &base, 2).await;
    let claim = mint_claim(&f.db, f.a, YEAR).await.unwrap();
    let db = Db::connect_worker(
        pooler.connect_options(&database),
        f.a,
        Some(claim.clone()),
        2,
    )
    .await
    .unwrap();
    assert_eq!(db.scope(), Scope::Worker(f.a));
    // Many transactions, each a fresh Parse on whichever server connection.
    for _ in 0..20 {
        let mut tx = db.tenant(f.a).await.unwrap();
        let rows: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT tenant_id FROM opportunities")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(rows, vec![f.a.as_uuid()]);
        tx.commit().await.unwrap();
    }
    // A claim for another tenant than the worker's is refused up front.
    let err = Db::connect_worker(pooler.connect_options(&database), f.b, Some(claim), 1)
        .await
        .expect_err("a worker of B connected with A's claim");
    assert!(err.to_string().contains("the claim is for tenant"), "{err}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn sixty_workers_share_a_budget_of_four_server_connections(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let database = base.get_database().unwrap().to_owned();
    let db = Db::from_pool(pool.clone(), Scope::Control);
    let pooler = TestPooler::start(&db, &base, 4).await;
    let mut workers = Vec::new();
    for i in 0..60 {
        let tenant = polybot_store::testing::create_tenant(&db, &format!("t{i}"))
            .await
            .unwrap();
        let claim: WorkerClaim = mint_claim(&db, tenant, YEAR).await.unwrap();
        let worker = Db::connect_worker(pooler.connect_options(&database), tenant, Some(claim), 1)
            .await
            .unwrap();
        workers.push((tenant, worker));
    }
    // Every worker holds its client connection open and runs transactions.
    let mut tasks = tokio::task::JoinSet::new();
    for (tenant, worker) in workers.clone() {
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let mut tx = worker.tenant(tenant).await.unwrap();
                let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                seen.push(id);
                tx.commit().await.unwrap();
            }
            (tenant, seen)
        });
    }
    let login = pooler.login.clone();
    let mut most = 0i64;
    let mut finished = Vec::new();
    while finished.len() < 60 {
        let servers: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                .bind(&login)
                .fetch_one(&pool)
                .await
                .unwrap();
        most = most.max(servers);
        if let Some(done) = tasks.try_join_next() {
            finished.push(done.unwrap());
        } else {
            tokio::task::yield_now().await;
        }
    }
    for (tenant, seen) in finished {
        assert_eq!(seen, vec![tenant.as_uuid(); 5]);
    }
    let servers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&login)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!((1..=4).contains(&most), "server connections seen: {most}");
    assert!(servers <= 4, "{servers}");
    for (_, worker) in workers {
        worker.close().await;
    }
}
