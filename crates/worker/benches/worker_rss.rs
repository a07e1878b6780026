//! Worker peak RSS on the demo recording (issue 7's goal: ≤ 32 MiB).
//!
//! `DATABASE_URL=<superuser url> cargo bench -p polybot-worker --bench worker_rss`
//!
//! The parent makes a fresh database (migrated, one tenant with the demo
//! settings and its own login role), writes the bundled recording to a temp
//! file, and starts itself again as the worker: `polybot_worker::run` over the
//! recording as fast as possible (`POLYBOT_REPLAY_SPEED=max`), exiting once it
//! is played out. The child prints its own peak RSS (`VmHWM` from
//! `/proc/self/status`), so the parent's setup is not counted. The database is
//! dropped afterwards.

use std::time::{Duration, Instant};

use polybot_core::TenantId;
use polybot_core::worker::env;
use polybot_store::{Db, Scope};
use polybot_worker::demo::{DEMO_PAPER_BALANCES, DEMO_REPLAY, demo_tenant_request};
use secrecy::SecretString;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

const CHILD: &str = "POLYBOT_WORKER_RSS_CHILD";

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if std::env::var_os(CHILD).is_some() {
        runtime.block_on(child());
    } else {
        runtime.block_on(parent());
    }
}

async fn child() {
    let config = polybot_worker::WorkerConfig::from_env().expect("the worker's environment");
    let started = Instant::now();
    polybot_worker::run(config, CancellationToken::new())
        .await
        .expect("the worker plays the recording");
    println!(
        "elapsed_ms={} vm_hwm_kb={} vm_rss_kb={}",
        started.elapsed().as_millis(),
        status_kb("VmHWM:"),
        status_kb("VmRSS:")
    );
}

async fn parent() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "worker_rss: set DATABASE_URL to a PostgreSQL superuser URL (see the file's docs)"
        );
        return;
    };
    let admin: PgConnectOptions = url.parse().expect("DATABASE_URL is a postgres:// URL");
    let name = format!("polybot_rss_{}", std::process::id());
    let mut conn = admin.connect().await.expect("connecting as the superuser");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("creating the bench database");
    let options = admin.clone().database(&name);
    let db = Db::connect(options.clone(), Scope::Control, 2)
        .await
        .expect("connecting to the bench database");
    db.migrate().await.expect("migrating");
    let tenant = TenantId::new();
    let mut tx = db.tenant(tenant).await.unwrap();
    polybot_store::repo::tenants::insert(&mut tx, "rss-bench", polybot_core::Mode::Paper)
        .await
        .unwrap();
    let request = demo_tenant_request();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(&request["strategies"])
        .bind(&request["risk"])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let password = format!("rss-bench-{}", uuid::Uuid::new_v4().simple());
    polybot_store::roles::ensure_tenant_role(&db, tenant, &SecretString::from(password.clone()))
        .await
        .expect("creating the tenant's role");
    db.close().await;
    let replay = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(replay.path(), DEMO_REPLAY).unwrap();
    let worker_url = format!(
        "postgres://{}:{password}@{}:{}/{name}",
        tenant.db_role(),
        admin.get_host(),
        admin.get_port()
    );
    let started = Instant::now();
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .env(env::TENANT_ID, tenant.to_string())
        .env(env::DATABASE_URL, worker_url)
        .env(env::REPLAY, replay.path())
        .env(env::REPLAY_SPEED, "max")
        .env(env::REPLAY_EXIT, "1")
        .env(env::PAPER_BALANCES, DEMO_PAPER_BALANCES)
        .env(env::HEARTBEAT_SECS, "1")
        .env_remove(env::EXCHANGE_KEYS)
        .output()
        .await
        .expect("the worker child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the worker child failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |key: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let hwm_kb = field("vm_hwm_kb=");
    let mut conn = admin.clone().database(&name).connect().await.unwrap();
    let (opportunities, trades): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM opportunities), (SELECT count(*) FROM trades)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    drop(conn);
    println!(
        "worker over the demo recording ({} lines, {} bytes), as fast as possible",
        DEMO_REPLAY.lines().count(),
        DEMO_REPLAY.len()
    );
    println!(
        "  peak RSS (VmHWM): {} KiB = {}.{:02} MiB (goal <= 32 MiB)",
        hwm_kb,
        hwm_kb / 1024,
        (hwm_kb % 1024) * 100 / 1024
    );
    println!(
        "  worker run {} ms (process {} ms); wrote {opportunities} opportunities, {trades} trades",
        field("elapsed_ms="),
        started.elapsed().as_millis()
    );
    let mut conn = admin.connect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("dropping the bench database");
    sqlx::query(&format!("DROP ROLE IF EXISTS {}", tenant.db_role()))
        .execute(&mut conn)
        .await
        .expect("dropping the bench role");
}
