//! The `tenants` row: its identity, its lifecycle state and onboarding step,
//! and the joined view the API shows (with its configuration and key
//! fingerprints). The configuration itself is in [`super::configs`]; what the
//! lifecycle allows is decided by [`polybot_core::lifecycle`], not here.

use chrono::{DateTime, Utc};
use polybot_core::lifecycle::{Standing, TenantState};
use polybot_core::{Mode, TenantId};
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub mode: String,
    #[sqlx(try_from = "String")]
    pub state: TenantState,
    pub provisioning_step: String,
    pub last_error: Option<String>,
    pub spec_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRow {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }
}

/// A tenant with its configuration and key fingerprints: what the API shows.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TenantDetail {
    pub id: Uuid,
    pub name: String,
    pub mode: String,
    #[sqlx(try_from = "String")]
    pub state: TenantState,
    pub provisioning_step: String,
    pub last_error: Option<String>,
    /// Paused by an operator; only an operator resumes it.
    pub held_by_operator: bool,
    pub hold_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `None` only if the configuration row is missing.
    pub strategies: Option<serde_json::Value>,
    pub risk: Option<serde_json::Value>,
    /// Venue → masked key fingerprint; `None` without a secret.
    pub fingerprints: Option<serde_json::Value>,
}

/// Where a tenant's onboarding stands, read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Onboarding {
    #[sqlx(try_from = "String")]
    pub state: TenantState,
    pub provisioning_step: String,
}

const DETAIL_SELECT: &str = "SELECT t.id, t.name, t.mode, t.state, t.provisioning_step, t.last_error, \
        t.held_by_operator, t.hold_reason, t.created_at, t.updated_at, c.strategies, c.risk, s.fingerprints \
     FROM tenants t LEFT JOIN tenant_configs c ON c.tenant_id = t.id \
     LEFT JOIN tenant_secrets s ON s.tenant_id = t.id";

/// The unique index that keeps a name to one tenant that is not offboarded
/// (migration 0015); an insert or rename that breaks it fails with this
/// constraint ([`DbError::constraint`]).
pub const LIVE_NAME_KEY: &str = "tenants_live_name_key";

/// Whether `err` is a name already taken by another tenant that is not offboarded.
pub fn is_name_taken(err: &DbError) -> bool {
    err.constraint() == Some(LIVE_NAME_KEY)
}

/// Inserts the transaction's tenant in state `provisioning`.
pub async fn insert(tx: &mut TenantTx, name: &str, mode: Mode) -> Result<TenantRow, DbError> {
    let id = tx.tenant().as_uuid();
    sqlx::query_as::<_, TenantRow>(
        "INSERT INTO tenants (id, name, mode) VALUES ($1, $2, $3) \
         RETURNING id, name, mode, state, provisioning_step, last_error, spec_version, created_at, updated_at",
    )
    .bind(id)
    .bind(name)
    .bind(mode.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("inserting a tenant"))
}

/// The transaction's tenant, if it exists (and is visible to it).
pub async fn get(tx: &mut TenantTx) -> Result<Option<TenantRow>, DbError> {
    let id = tx.tenant().as_uuid();
    sqlx::query_as::<_, TenantRow>(
        "SELECT id, name, mode, state, provisioning_step, last_error, spec_version, created_at, updated_at \
         FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant"))
}

/// Whether the transaction's tenant exists.
pub async fn exists(tx: &mut TenantTx) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
        .bind(tx.tenant().as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("checking the tenant exists"))
}

/// The transaction's tenant with its configuration and key fingerprints.
pub async fn detail(tx: &mut TenantTx) -> Result<Option<TenantDetail>, DbError> {
    sqlx::query_as::<_, TenantDetail>(&format!("{DETAIL_SELECT} WHERE t.id = $1"))
        .bind(tx.tenant().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::query("reading a tenant"))
}

/// Every tenant (in `state`, if given) after the keyset position `after`
/// (creation time, id), oldest first, at most `limit`.
pub async fn list_details(
    op: &mut OperatorTx,
    state: Option<TenantState>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<TenantDetail>, DbError> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as::<_, TenantDetail>(&format!(
        "{DETAIL_SELECT} WHERE ($1::text IS NULL OR t.state = $1) \
           AND ($2::timestamptz IS NULL OR (t.created_at, t.id) > ($2, $3)) \
         ORDER BY t.created_at, t.id LIMIT $4"
    ))
    .bind(state.map(TenantState::as_str))
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("listing tenants"))
}

/// Locks the transaction's tenant row and returns its state; `None` if it
/// does not exist.
pub async fn lock_state(tx: &mut TenantTx) -> Result<Option<TenantState>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Locked {
        #[sqlx(try_from = "String")]
        state: TenantState,
    }
    let locked = sqlx::query_as::<_, Locked>("SELECT state FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tx.tenant().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::query("locking a tenant"))?;
    Ok(locked.map(|l| l.state))
}

/// Locks the transaction's tenant row and returns its state and operator
/// hold; `None` if it does not exist.
pub async fn lock_standing(tx: &mut TenantTx) -> Result<Option<Standing>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Locked {
        #[sqlx(try_from = "String")]
        state: TenantState,
        held_by_operator: bool,
    }
    let locked = sqlx::query_as::<_, Locked>(
        "SELECT state, held_by_operator FROM tenants WHERE id = $1 FOR UPDATE",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("locking a tenant"))?;
    Ok(locked.map(|l| Standing {
        state: l.state,
        held_by_operator: l.held_by_operator,
    }))
}

/// Sets or clears the operator's hold; the reason goes with it (and is
/// cleared with it).
pub async fn set_hold(
    tx: &mut TenantTx,
    held_by_operator: bool,
    reason: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET held_by_operator = $2, \
         hold_reason = CASE WHEN $2 THEN coalesce($3, hold_reason) END, \
         updated_at = now() WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(held_by_operator)
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("setting the operator's hold"))?;
    Ok(())
}

/// Locks the transaction's tenant row and returns where onboarding stands.
pub async fn lock_onboarding(tx: &mut TenantTx) -> Result<Option<Onboarding>, DbError> {
    sqlx::query_as::<_, Onboarding>(
        "SELECT state, provisioning_step FROM tenants WHERE id = $1 FOR UPDATE",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's onboarding state"))
}

/// Changes the name and mode where given; a changed launch spec (mode,
/// strategies, risk) bumps `spec_version` so the worker is replaced.
pub async fn update(
    tx: &mut TenantTx,
    name: Option<&str>,
    mode: Option<Mode>,
    spec_changed: bool,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET name = coalesce($2, name), mode = coalesce($3, mode), \
         spec_version = spec_version + CASE WHEN $4 THEN 1 ELSE 0 END, updated_at = now() WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(name)
    .bind(mode.map(|m| m.as_str()))
    .bind(spec_changed)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("updating a tenant"))?;
    Ok(())
}

/// Bumps `spec_version` (the exchange keys changed), so the worker is replaced.
pub async fn bump_spec_version(tx: &mut TenantTx) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET spec_version = spec_version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording a key rotation"))?;
    Ok(())
}

/// Moves the tenant to `state`; with `restart_onboarding` its onboarding
/// starts over from `created`. Entering `provisioning` clears the time it
/// was offboarded (a restore).
pub async fn set_state(
    tx: &mut TenantTx,
    state: TenantState,
    restart_onboarding: bool,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET state = $2, \
         provisioning_step = CASE WHEN $3 THEN 'created' ELSE provisioning_step END, \
         offboarded_at = CASE WHEN $2 = $4 THEN NULL ELSE offboarded_at END, \
         updated_at = now() WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(state.as_str())
    .bind(restart_onboarding)
    .bind(TenantState::Provisioning.as_str())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("changing a tenant's state"))?;
    Ok(())
}

/// Records the onboarding step reached, in `state`, and clears the last error.
pub async fn record_onboarding_step(
    tx: &mut TenantTx,
    step: &str,
    state: TenantState,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET provisioning_step = $2, state = $3, last_error = NULL, updated_at = now() \
         WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(step)
    .bind(state.as_str())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording an onboarding step"))?;
    Ok(())
}

/// Marks onboarding failed with `error`; a retry starts from `created`.
pub async fn mark_failed(tx: &mut TenantTx, error: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenants SET state = $2, provisioning_step = 'created', last_error = $3, \
         updated_at = now() WHERE id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(TenantState::Failed.as_str())
    .bind(error)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("marking the tenant failed"))?;
    Ok(())
}

/// Marks an offboarding tenant offboarded (now); any other state is left alone.
pub async fn mark_offboarded(tx: &mut TenantTx) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE tenants SET state = $2, offboarded_at = now(), updated_at = now() \
         WHERE id = $1 AND state = $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(TenantState::Offboarded.as_str())
    .bind(TenantState::Offboarding.as_str())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("marking the tenant offboarded"))?;
    Ok(result.rows_affected() == 1)
}

/// Erases the tenant; every row of its tables goes with it (cascade).
pub async fn purge(tx: &mut TenantTx) -> Result<(), DbError> {
    sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(tx.tenant().as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("purging a tenant"))?;
    Ok(())
}

/// Tenants whose onboarding or offboarding has steps left, oldest first.
pub async fn with_pending_steps(op: &mut OperatorTx) -> Result<Vec<TenantId>, DbError> {
    let states: Vec<&str> = TenantState::ALL
        .into_iter()
        .filter(|s| s.has_pending_steps())
        .map(TenantState::as_str)
        .collect();
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM tenants WHERE state = ANY($1) ORDER BY created_at")
            .bind(&states)
            .fetch_all(&mut **op)
            .await
            .map_err(DbError::query("listing unfinished onboardings"))?;
    Ok(ids.into_iter().map(TenantId::from_uuid).collect())
}
