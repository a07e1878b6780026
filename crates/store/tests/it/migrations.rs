//! The migration history as `polybot doctor` and `/readyz` read it.

use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_database_never_migrated_has_applied_none_and_a_migrated_one_all(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        polybot_store::applied_migrations(&mut conn).await.unwrap(),
        0
    );
    polybot_store::MIGRATOR.run(&mut *conn).await.unwrap();
    assert_eq!(
        polybot_store::applied_migrations(&mut conn).await.unwrap(),
        polybot_store::MIGRATOR.iter().count()
    );
}
