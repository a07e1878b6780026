//! The cost of row level security on the hottest tenant table.
//!
//! Runs the same statements (batched inserts of opportunities, then
//! tenant-scoped reads of the newest 50) through the tenant-scoped transaction,
//! where RLS applies, and as a superuser, where it does not, and prints the
//! ratio. Goal: ≤ 1.10.
//!
//! `cargo bench -p polybot-store --bench rls_overhead` uses DATABASE_URL if set
//! (a superuser URL), else a private cluster in a temporary directory.

// Timing ratios for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::time::{Duration, Instant};

use chrono::Utc;
use polybot_core::TenantId;
use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use polybot_store::repo::opportunities::{self, NewOpportunity};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope, TenantTx};
use rust_decimal::Decimal;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

const BATCH: usize = 100;
const INSERT_TXS: usize = 100;
const READ_TXS: usize = 1_000;
const ROUNDS: usize = 5;

fn batch(n: usize) -> Vec<NewOpportunity> {
    (0..n)
        .map(|i| NewOpportunity {
            id: Uuid::new_v4(),
            strategy: "complement_arb".into(),
            venue: "polymarket".into(),
            market: format!("market-{}", i % 37),
            description: "YES + NO below 1".into(),
            edge: Some(Decimal::new(123, 4)),
            expected_profit: Some(Decimal::new(45, 2)),
            size: Some(Decimal::from(100)),
            details: serde_json::json!({"yes_ask": "0.48", "no_ask": "0.50"}),
            detected_at: Utc::now(),
            executed_at: None,
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Path {
    Rls,
    NoRls,
}

async fn open(db: &Db, tenant: TenantId, path: Path) -> TenantTx {
    match path {
        Path::Rls => db.tenant(tenant).await.unwrap(),
        Path::NoRls => db.unscoped(tenant).await.unwrap(),
    }
}

async fn inserts(db: &Db, tenant: TenantId, path: Path) -> Duration {
    let rows = batch(BATCH);
    let started = Instant::now();
    for _ in 0..INSERT_TXS {
        let mut rows = rows.clone();
        for row in &mut rows {
            row.id = Uuid::new_v4();
        }
        let mut tx = open(db, tenant, path).await;
        assert_eq!(
            opportunities::insert_batch(&mut tx, &rows).await.unwrap(),
            BATCH as u64
        );
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

async fn reads(db: &Db, tenant: TenantId, path: Path) -> Duration {
    let started = Instant::now();
    for _ in 0..READ_TXS {
        let mut tx = open(db, tenant, path).await;
        assert_eq!(
            opportunities::list(&mut tx, 50, None).await.unwrap().len(),
            50
        );
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let (admin, server, _dir) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<PgConnectOptions>().unwrap(), None, None),
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut options = EmbeddedOptions::new(dir.path());
            options.ephemeral = true;
            let server = EmbeddedPostgres::start(&options).await.unwrap();
            (server.connect_options("postgres"), Some(server), Some(dir))
        }
    };
    let name = format!("polybot_bench_{}", Uuid::new_v4().simple());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();

    let db = Db::connect(admin.clone().database(&name), Scope::Control, 1)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let tenant = create_tenant(&db, "bench").await.unwrap();
    // A second tenant's rows, so the policy has something to filter.
    let other = create_tenant(&db, "other").await.unwrap();
    let mut tx = db.tenant(other).await.unwrap();
    opportunities::insert_batch(&mut tx, &batch(5_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Warm up both paths, then alternate rounds so drift hits both alike.
    inserts(&db, tenant, Path::Rls).await;
    inserts(&db, tenant, Path::NoRls).await;
    let (mut ins_rls, mut ins_raw, mut rd_rls, mut rd_raw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        ins_rls.push(inserts(&db, tenant, Path::Rls).await);
        ins_raw.push(inserts(&db, tenant, Path::NoRls).await);
        rd_rls.push(reads(&db, tenant, Path::Rls).await);
        rd_raw.push(reads(&db, tenant, Path::NoRls).await);
    }
    let (ins_rls, ins_raw, rd_rls, rd_raw) = (
        median(ins_rls),
        median(ins_raw),
        median(rd_rls),
        median(rd_raw),
    );
    let rows = (INSERT_TXS * BATCH) as f64;
    println!("RLS overhead on opportunities (median of {ROUNDS} rounds, one connection)");
    println!(
        "  batched inserts ({INSERT_TXS} tx x {BATCH} rows): with RLS {:>8.0} rows/s, without {:>8.0} rows/s, ratio {:.3}",
        rows / ins_rls.as_secs_f64(),
        rows / ins_raw.as_secs_f64(),
        ins_rls.as_secs_f64() / ins_raw.as_secs_f64()
    );
    println!(
        "  scoped reads ({READ_TXS} tx, newest 50):      with RLS {:>8.0} tx/s,   without {:>8.0} tx/s,   ratio {:.3}",
        READ_TXS as f64 / rd_rls.as_secs_f64(),
        READ_TXS as f64 / rd_raw.as_secs_f64(),
        rd_rls.as_secs_f64() / rd_raw.as_secs_f64()
    );
    let total = (ins_rls + rd_rls).as_secs_f64() / (ins_raw + rd_raw).as_secs_f64();
    println!("  overall ratio {total:.3} (goal <= 1.10)");

    db.close().await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    if let Some(server) = server {
        server.stop().await.unwrap();
    }
}
