//! `GET /tenants/{id}/pairs`: the tenant's paired-position ledger — each
//! cross-venue pair its worker sent, its legs, how it ended (locked,
//! completed, unwound, broken, unfilled, or still open), what it locks in
//! or lost, and what happens at resolution.
//!
//! Read in the tenant's transaction like the other data lists
//! ([`crate::data`]): an operator token or the tenant's own token may read,
//! any other tenant's token gets 404. Newest first, keyset-paginated.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use polybot_core::validation::FieldError;
use polybot_store::repo::pairs::{self, Pair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::TenantAccess;
use crate::data::{limit_and_after, money, open, split_page};
use crate::error::{ApiError, ApiResult};
use crate::paging::{decode_cursor, encode_cursor};

/// The statuses a pair may have.
const STATUSES: [&str; 6] = [
    "open",
    "locked",
    "completed",
    "unwound",
    "broken",
    "unfilled",
];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PairQuery {
    /// At most this many (1 to 200, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only pairs in this status (open, locked, completed, unwound, broken, unfilled).
    status: Option<String>,
}

/// One cross-venue pair (a Polymarket leg and a Kalshi leg that together pay 1).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PairView {
    pub id: Uuid,
    pub strategy: String,
    /// open (sent, not settled yet), locked (both legs filled equally),
    /// completed (the short leg was bought up to the long one), unwound
    /// (the long leg's excess was sold back), broken (the legs are still
    /// unequal: the excess rides the market) or unfilled (nothing filled).
    pub status: String,
    /// Complete sets held: the smaller leg (a decimal string).
    pub matched: String,
    /// What the matched sets lock in after both venues' fees.
    pub locked_edge: String,
    /// What selling back an excess cost (negative: it made money).
    pub realised_loss: String,
    /// Every order of the pair: leg (0 Polymarket, 1 Kalshi), step (entry,
    /// recheck, complete, unwind), venue, market, instrument, outcome, side,
    /// price, size, filled, avg_price, fees, client_order_id,
    /// venue_order_id, state, trade_ids, error.
    #[schema(value_type = Vec<Object>)]
    pub legs: Value,
    /// What happens when the markets resolve.
    pub resolution: String,
    /// Why the pair is broken, or how it was recovered after a restart.
    pub note: Option<String>,
    /// The lease epoch of the worker that sent it.
    pub epoch: i64,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairPage {
    pub items: Vec<PairView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Pair> for PairView {
    fn from(row: Pair) -> Self {
        PairView {
            id: row.id,
            strategy: row.strategy,
            status: row.status,
            matched: money(row.matched),
            locked_edge: money(row.locked_edge),
            realised_loss: money(row.realised_loss),
            legs: row.legs,
            resolution: row.resolution,
            note: row.note,
            epoch: row.epoch,
            opened_at: row.opened_at,
            updated_at: row.updated_at,
        }
    }
}

/// A tenant's paired positions, newest first.
#[utoipa::path(get, path = "/tenants/{id}/pairs", operation_id = "list_pairs", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id"), PairQuery),
    responses(
        (status = 200, description = "a page of the tenant's paired positions, newest first", body = PairPage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    access: TenantAccess,
    Query(query): Query<PairQuery>,
) -> ApiResult<Json<PairPage>> {
    let mut errors = Vec::new();
    let (limit, after) = limit_and_after(
        query.limit,
        query.cursor.as_deref(),
        decode_cursor,
        &mut errors,
    );
    if let Some(s) = &query.status
        && !STATUSES.contains(&s.as_str())
    {
        errors.push(FieldError::new(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = open(&state, access).await?;
    let rows = pairs::page(&mut tx, query.status.as_deref(), after, limit + 1).await?;
    tx.commit().await?;
    let items = rows.into_iter().map(PairView::from).collect();
    let (items, next_cursor) = split_page(items, limit, |p: &PairView| {
        encode_cursor(p.opened_at, p.id)
    });
    Ok(Json(PairPage { items, next_cursor }))
}
