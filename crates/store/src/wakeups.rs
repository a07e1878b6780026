//! Wake-ups across control-plane replicas: PostgreSQL `NOTIFY` on one
//! channel.
//!
//! A change accepted by any replica (a tenant onboarded, paused, resumed,
//! offboarded, a plan or payment change) must reach the reconciler, which runs
//! on whichever replica holds leadership. [`announce`] sends a notification
//! with no payload; the leader [`listen`]s and starts a pass when one arrives.
//! A notification carries nothing but "look again": the reconciler reads
//! every decision from the tables, so a lost or duplicated notification costs
//! at most one pass or one backstop interval, never a wrong decision.

use sqlx::postgres::PgListener;

use crate::{Db, DbError, Scope};

/// The channel the control plane's replicas share.
pub const CHANNEL: &str = "polybot_reconcile";

/// Tells whichever replica leads that something changed.
pub async fn announce(db: &Db) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(control_pool(db, "announcing a change to the reconciler")?)
        .await
        .map_err(DbError::query("announcing a change to the reconciler"))?;
    Ok(())
}

/// A subscription to [`announce`]ments, on a connection of its own.
#[derive(Debug)]
pub struct Listener(PgListener);

/// Subscribes to [`announce`]ments.
pub async fn listen(db: &Db) -> Result<Listener, DbError> {
    let pool = control_pool(db, "listening for changes")?;
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(DbError::query(
            "opening the reconciler's listening connection",
        ))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(DbError::query("listening for changes"))?;
    Ok(Listener(listener))
}

impl Listener {
    /// Waits for the next announcement. A lost connection is re-opened (and
    /// re-subscribed) by the next call; announcements sent meanwhile are lost,
    /// which the reconciler's own timer covers.
    pub async fn next(&mut self) -> Result<(), DbError> {
        self.0
            .recv()
            .await
            .map_err(DbError::query("waiting for a change announcement"))?;
        Ok(())
    }
}

fn control_pool<'a>(db: &'a Db, context: &'static str) -> Result<&'a sqlx::PgPool, DbError> {
    match db.scope() {
        Scope::Control => Ok(db.admin_pool()),
        Scope::Worker(_) => Err(DbError::Query {
            context,
            source: sqlx::Error::Protocol("workers do not wake the reconciler".into()),
        }),
    }
}
