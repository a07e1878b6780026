//! Fleet-wide rollouts (`fleet_rollouts`, not tenant data) and the release
//! each tenant runs once a rollout reached it (`tenant_releases`, a tenant
//! table: written only in the tenant's own transaction).
//!
//! A [`Release`] is what a worker runs beyond its tenant's own spec: a worker
//! image (`None`: the launcher's configured one) and worker settings (plain
//! environment by name). A tenant with a `tenant_releases` row runs that
//! row's release; any other tenant runs the fleet's release, the changes of
//! every completed rollout applied in order ([`fleet_release`]).
//!
//! Deciding when a tenant begins and what counts as done is the control
//! plane's (`rollout` module); the reconciler reads each tenant's release
//! through [`super::fleet::desired`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// The unique index that keeps one rollout unfinished (running or paused);
/// starting another fails with this constraint ([`is_one_unfinished`]).
pub const ONE_UNFINISHED_KEY: &str = "fleet_rollouts_one_unfinished";

/// Whether `err` is a second unfinished rollout refused by the database.
pub fn is_one_unfinished(err: &DbError) -> bool {
    err.constraint() == Some(ONE_UNFINISHED_KEY)
}

/// A worker image and worker settings; as a rollout's change, what it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub image: Option<String>,
    pub settings: BTreeMap<String, String>,
}

impl Release {
    /// This release with `change` applied: its image if it names one, its
    /// settings over these.
    pub fn apply(&self, change: &Release) -> Release {
        let mut settings = self.settings.clone();
        settings.extend(change.settings.clone());
        Release {
            image: change.image.clone().or_else(|| self.image.clone()),
            settings,
        }
    }

    /// No image and no settings: what the launcher runs unchanged.
    pub fn is_default(&self) -> bool {
        self.image.is_none() && self.settings.is_empty()
    }

    fn settings_json(&self) -> Value {
        Value::Object(
            self.settings
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }
}

/// Settings as stored (a JSON object of strings); anything else is dropped.
fn settings_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// One rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub id: i64,
    /// What it changes.
    pub change: Release,
    /// Tenants begun per minute, at most.
    pub per_minute: i32,
    /// `running`, `paused`, `aborted` or `done`.
    pub state: String,
    pub reason: Option<String>,
    /// When the next tenant may begin (`None`: at the next step).
    pub next_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RolloutRow {
    id: i64,
    image: Option<String>,
    settings: Value,
    per_minute: i32,
    state: String,
    reason: Option<String>,
    next_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<RolloutRow> for Rollout {
    fn from(row: RolloutRow) -> Self {
        Rollout {
            id: row.id,
            change: Release {
                image: row.image,
                settings: settings_of(&row.settings),
            },
            per_minute: row.per_minute,
            state: row.state,
            reason: row.reason,
            next_at: row.next_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
        }
    }
}

/// The columns of [`RolloutRow`], in statements written with `concat!`.
macro_rules! columns {
    () => {
        "id, image, settings, per_minute, state, reason, next_at, created_at, updated_at, finished_at"
    };
}

/// Starts a rollout of `change` at `per_minute` (state `running`). A second
/// unfinished rollout fails with [`ONE_UNFINISHED_KEY`].
pub async fn start(
    op: &mut OperatorTx,
    change: &Release,
    per_minute: i32,
) -> Result<Rollout, DbError> {
    let row: RolloutRow = sqlx::query_as(concat!(
        "INSERT INTO fleet_rollouts (image, settings, per_minute) VALUES ($1, $2, $3) \
         RETURNING ",
        columns!()
    ))
    .bind(change.image.as_deref())
    .bind(change.settings_json())
    .bind(per_minute)
    .fetch_one(&mut **op)
    .await
    .map_err(DbError::query("starting a rollout"))?;
    Ok(row.into())
}

/// One rollout by id.
pub async fn get(op: &mut OperatorTx, id: i64) -> Result<Option<Rollout>, DbError> {
    let row: Option<RolloutRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM fleet_rollouts WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("reading a rollout"))?;
    Ok(row.map(Into::into))
}

/// The newest rollout, finished or not.
pub async fn latest(op: &mut OperatorTx) -> Result<Option<Rollout>, DbError> {
    let row: Option<RolloutRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM fleet_rollouts ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("reading the latest rollout"))?;
    Ok(row.map(Into::into))
}

/// The unfinished rollout (running or paused), if any, locked until `op`
/// ends against other changes of its state (`FOR NO KEY UPDATE`: a tenant
/// transaction may still insert rows that reference it).
pub async fn lock_unfinished(op: &mut OperatorTx) -> Result<Option<Rollout>, DbError> {
    let row: Option<RolloutRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM fleet_rollouts WHERE state IN ('running', 'paused') \
         FOR NO KEY UPDATE"
    ))
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("locking the unfinished rollout"))?;
    Ok(row.map(Into::into))
}

/// One rollout by id, locked like [`lock_unfinished`].
pub async fn lock(op: &mut OperatorTx, id: i64) -> Result<Option<Rollout>, DbError> {
    let row: Option<RolloutRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM fleet_rollouts WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("locking a rollout"))?;
    Ok(row.map(Into::into))
}

/// Sets a rollout's state and reason (and `finished_at` when it is
/// `aborted` or `done`); `next_at` too when given. Which transitions are
/// allowed is the caller's to decide, under [`lock`].
pub async fn set_state(
    op: &mut OperatorTx,
    id: i64,
    state: &str,
    reason: Option<&str>,
    next_at: Option<DateTime<Utc>>,
) -> Result<Rollout, DbError> {
    let row: RolloutRow = sqlx::query_as(concat!(
        "UPDATE fleet_rollouts SET state = $2, reason = $3, next_at = coalesce($4, next_at), \
             updated_at = now(), \
             finished_at = CASE WHEN $2 IN ('aborted', 'done') THEN now() END \
         WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(state)
    .bind(reason)
    .bind(next_at)
    .fetch_one(&mut **op)
    .await
    .map_err(DbError::query("changing a rollout's state"))?;
    Ok(row.into())
}

/// Records when the rollout's next tenant may begin.
pub async fn set_next_at(
    op: &mut OperatorTx,
    id: i64,
    next_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE fleet_rollouts SET next_at = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(next_at)
        .execute(&mut **op)
        .await
        .map_err(DbError::query("scheduling a rollout's next tenant"))?;
    Ok(())
}

/// The fleet's release: every completed rollout's change, applied in order.
pub async fn fleet_release(op: &mut OperatorTx) -> Result<Release, DbError> {
    let rows: Vec<(Option<String>, Value)> = sqlx::query_as(
        "SELECT image, settings FROM fleet_rollouts WHERE state = 'done' ORDER BY id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the fleet's release"))?;
    Ok(rows
        .into_iter()
        .fold(Release::default(), |release, (image, settings)| {
            release.apply(&Release {
                image,
                settings: settings_of(&settings),
            })
        }))
}

/// How far a rollout got among the tenants it covers: those the reconciler
/// reads (with a configuration) but offboarding or offboarded ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: i64,
    /// Their workers run the rollout's release.
    pub done: i64,
    /// Given the release; their workers are being replaced.
    pub rolling: i64,
}

impl Progress {
    /// Not begun yet.
    pub fn pending(&self) -> i64 {
        (self.total - self.done - self.rolling).max(0)
    }
}

/// `rollout`'s progress.
pub async fn progress(op: &mut OperatorTx, rollout: i64) -> Result<Progress, DbError> {
    let (total, done, rolling): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), \
                count(*) FILTER (WHERE r.state = 'done' AND r.rollout_id = $1), \
                count(*) FILTER (WHERE r.state = 'rolling' AND r.rollout_id = $1) \
         FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id \
         LEFT JOIN tenant_releases r ON r.tenant_id = t.id \
         WHERE t.state NOT IN ('offboarding', 'offboarded')",
    )
    .bind(rollout)
    .fetch_one(&mut **op)
    .await
    .map_err(DbError::query("counting a rollout's progress"))?;
    Ok(Progress {
        total,
        done,
        rolling,
    })
}

/// When `rollout` last began a tenant.
pub async fn last_began(
    op: &mut OperatorTx,
    rollout: i64,
) -> Result<Option<DateTime<Utc>>, DbError> {
    sqlx::query_scalar("SELECT max(began_at) FROM tenant_releases WHERE rollout_id = $1")
        .bind(rollout)
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("reading when a rollout last began a tenant"))
}

/// A tenant a rollout reached.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantProgress {
    pub tenant_id: Uuid,
    pub name: String,
    /// `rolling` or `done`.
    pub state: String,
    pub began_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

/// The tenants `rollout` reached, the most recently begun first, at most `limit`.
pub async fn reached(
    op: &mut OperatorTx,
    rollout: i64,
    limit: i64,
) -> Result<Vec<TenantProgress>, DbError> {
    sqlx::query_as(
        "SELECT r.tenant_id, t.name, r.state, r.began_at, r.done_at \
         FROM tenant_releases r JOIN tenants t ON t.id = r.tenant_id \
         WHERE r.rollout_id = $1 ORDER BY r.began_at DESC, r.tenant_id LIMIT $2",
    )
    .bind(rollout)
    .bind(limit)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the tenants a rollout reached"))
}

/// Gives the transaction's tenant `release` from `rollout` (state `rolling`).
pub async fn begin(
    tx: &mut TenantTx,
    rollout: i64,
    release: &Release,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_releases (tenant_id, rollout_id, image, settings, state, began_at) \
         VALUES ($1, $2, $3, $4, 'rolling', $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET rollout_id = EXCLUDED.rollout_id, \
             image = EXCLUDED.image, settings = EXCLUDED.settings, state = 'rolling', \
             began_at = EXCLUDED.began_at, done_at = NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(rollout)
    .bind(release.image.as_deref())
    .bind(release.settings_json())
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("giving a tenant a rollout's release"))?;
    Ok(())
}

/// Marks the transaction's tenant's release from `rollout` as running;
/// `false` if it was not rolling (done already, or another rollout's).
pub async fn finish_tenant(
    tx: &mut TenantTx,
    rollout: i64,
    at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE tenant_releases SET state = 'done', done_at = $3 \
         WHERE tenant_id = $1 AND rollout_id = $2 AND state = 'rolling'",
    )
    .bind(tx.tenant().as_uuid())
    .bind(rollout)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("marking a tenant's release as running"))?;
    Ok(done.rows_affected() == 1)
}

/// A tenant's release as the reconciler reads it ([`super::fleet::desired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRelease {
    pub rollout_id: i64,
    pub release: Release,
    /// Given, and its worker not yet replaced.
    pub rolling: bool,
}

impl TenantRelease {
    pub(crate) fn from_columns(
        rollout_id: Option<i64>,
        image: Option<String>,
        settings: Option<Value>,
        state: Option<String>,
    ) -> Option<Self> {
        Some(TenantRelease {
            rollout_id: rollout_id?,
            release: Release {
                image,
                settings: settings.as_ref().map(settings_of).unwrap_or_default(),
            },
            rolling: state.as_deref() == Some("rolling"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(image: Option<&str>, settings: &[(&str, &str)]) -> Release {
        Release {
            image: image.map(str::to_owned),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let base = release(Some("img:v1"), &[("POLYBOT_LOG", "info"), ("A", "1")]);
        let applied = base.apply(&release(None, &[("POLYBOT_LOG", "debug")]));
        assert_eq!(
            applied,
            release(Some("img:v1"), &[("POLYBOT_LOG", "debug"), ("A", "1")])
        );
        let applied = applied.apply(&release(Some("img:v2"), &[]));
        assert_eq!(applied.image.as_deref(), Some("img:v2"));
        assert_eq!(applied.settings.len(), 2);
        assert!(Release::default().is_default());
        assert!(!applied.is_default());
    }
}
