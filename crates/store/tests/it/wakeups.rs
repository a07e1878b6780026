//! Wake-ups across replicas: an announcement on one pool reaches a listener
//! on another, and a worker's pool can neither announce nor listen.

use std::time::Duration;

use polybot_core::TenantId;
use polybot_store::{Db, Scope, wakeups};
use sqlx::PgPool;

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_announcement_from_one_replica_reaches_another_replicas_listener(pool: PgPool) {
    let leader = Db::from_pool(pool.clone(), Scope::Control);
    let standby = Db::from_pool(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(pool.connect_options().as_ref().clone())
            .await
            .unwrap(),
        Scope::Control,
    );
    let mut listener = wakeups::listen(&leader).await.unwrap();

    wakeups::announce(&standby).await.unwrap();

    let heard = tokio::time::timeout(Duration::from_secs(10), listener.next()).await;
    assert!(
        matches!(heard, Ok(Ok(()))),
        "the leader did not hear the standby's announcement: {heard:?}"
    );
    // One announcement, one wake-up: nothing else is pending.
    let more = tokio::time::timeout(Duration::from_millis(300), listener.next()).await;
    assert!(more.is_err(), "a second wake-up arrived: {more:?}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_workers_pool_cannot_announce_or_listen(pool: PgPool) {
    let worker = Db::from_pool(pool, Scope::Worker(TenantId::new()));
    let announced = wakeups::announce(&worker).await.unwrap_err();
    assert!(
        announced
            .to_string()
            .contains("workers do not wake the reconciler"),
        "{announced}"
    );
    let listened = wakeups::listen(&worker).await.unwrap_err();
    assert!(
        listened
            .to_string()
            .contains("workers do not wake the reconciler"),
        "{listened}"
    );
}
