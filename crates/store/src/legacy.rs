//! Import of the single-tenant bot's tables into the `default` tenant.
//!
//! The Python bot kept `polybot_opportunities` (with or without `executed_at`),
//! `polybot_trades` and `polybot_balances` in one database. Their columns
//! varied between versions, so each target column is taken from the first
//! legacy column, among a fixed list of known names, that exists with a usable
//! type; every legacy row is also kept whole in `details`.
//!
//! Importing is idempotent: rows get ids derived from the legacy table and
//! primary key, and a second import skips what the first one wrote.

use std::collections::HashMap;
use std::fmt;

use polybot_core::TenantId;
use uuid::Uuid;

use crate::{Db, DbError};

/// The tenant that receives the legacy rows.
pub const DEFAULT_TENANT: TenantId =
    TenantId::from_uuid(Uuid::from_u128(0x00000000_0000_4000_8000_00000000d3fa));
/// Its name.
pub const DEFAULT_TENANT_NAME: &str = "default";

/// What an import found and copied, per legacy table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyReport {
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The legacy table.
    pub source: &'static str,
    /// The table its rows went to.
    pub target: &'static str,
    /// Rows in the legacy table.
    pub found: u64,
    /// Rows written by this import (0 on a repeat).
    pub imported: u64,
}

impl LegacyReport {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl fmt::Display for LegacyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tables.is_empty() {
            return f.write_str("no legacy tables found");
        }
        for (i, t) in self.tables.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{} → {} (tenant {DEFAULT_TENANT_NAME}): {} rows, {} imported now",
                t.source, t.target, t.found, t.imported
            )?;
        }
        Ok(())
    }
}

/// Column names and their types of one legacy table.
struct Columns(HashMap<String, String>);

const NUMERIC: &[&str] = &[
    "numeric",
    "double precision",
    "real",
    "integer",
    "bigint",
    "smallint",
];
const TIMESTAMP: &[&str] = &[
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
];
const TEXTUAL: &[&str] = &[
    "text",
    "character varying",
    "character",
    "uuid",
    "integer",
    "bigint",
];

impl Columns {
    /// The first of `names` present with one of `types`, as a quoted reference `t."name"`.
    fn pick(&self, names: &[&str], types: &[&str]) -> Option<String> {
        names.iter().find_map(|name| {
            let ty = self.0.get(*name)?;
            types
                .contains(&ty.as_str())
                .then(|| format!("t.{}", quote_ident(name)))
        })
    }

    fn text(&self, names: &[&str], default: &str) -> String {
        match self.pick(names, TEXTUAL) {
            Some(col) => format!("coalesce({col}::text, {})", quote_literal(default)),
            None => quote_literal(default),
        }
    }

    fn numeric(&self, names: &[&str], default: Option<&str>) -> String {
        match (self.pick(names, NUMERIC), default) {
            (Some(col), Some(d)) => format!("coalesce({col}::numeric, {d})"),
            (Some(col), None) => format!("{col}::numeric"),
            (None, Some(d)) => d.to_owned(),
            (None, None) => "NULL::numeric".to_owned(),
        }
    }

    fn timestamp(&self, names: &[&str]) -> String {
        match self.pick(names, TIMESTAMP) {
            Some(col) => format!("coalesce({col}::timestamptz, now())"),
            None => "now()".to_owned(),
        }
    }

    /// A deterministic id for each legacy row, from the table and its primary key.
    fn row_id(&self, table: &str) -> String {
        let key = match self.0.contains_key("id") {
            true => "t.\"id\"::text".to_owned(),
            false => "to_jsonb(t)::text".to_owned(),
        };
        format!("md5({} || ':' || {key})::uuid", quote_literal(table))
    }
}

/// Identifiers here come from a fixed list of known column names, never from
/// input; quoting keeps them exact anyway.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn legacy_columns(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Option<Columns>, DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::query("inspecting the legacy tables"))?;
    Ok((!rows.is_empty()).then(|| Columns(rows.into_iter().collect())))
}

/// Copies the legacy tables' rows into the `default` tenant (created paused if
/// absent) in one transaction, and reports the counts.
pub async fn import(db: &Db) -> Result<LegacyReport, DbError> {
    let mut tx = db
        .admin_pool()
        .begin()
        .await
        .map_err(DbError::query("starting the legacy import"))?;
    let mut report = LegacyReport::default();

    let opportunities = legacy_columns(&mut tx, "polybot_opportunities").await?;
    let trades = legacy_columns(&mut tx, "polybot_trades").await?;
    let balances = legacy_columns(&mut tx, "polybot_balances").await?;
    if opportunities.is_none() && trades.is_none() && balances.is_none() {
        return Ok(report);
    }

    // Row level security is forced even on the tables' owner: write as the
    // default tenant.
    sqlx::query("SELECT set_config('polybot.tenant_id', $1, true)")
        .bind(DEFAULT_TENANT.to_string())
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("scoping the legacy import"))?;
    sqlx::query(
        "INSERT INTO tenants (id, name, mode, state) VALUES ($1, $2, 'paper', 'paused') \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(DEFAULT_TENANT.as_uuid())
    .bind(DEFAULT_TENANT_NAME)
    .execute(&mut *tx)
    .await
    .map_err(DbError::query("creating the default tenant"))?;
    sqlx::query("INSERT INTO tenant_configs (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(DEFAULT_TENANT.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(DbError::query(
            "creating the default tenant's configuration",
        ))?;

    if let Some(c) = opportunities {
        let executed = match c.pick(&["executed_at"], TIMESTAMP) {
            Some(col) => format!("{col}::timestamptz"),
            None => match c.pick(&["executed"], &["boolean"]) {
                Some(flag) => format!(
                    "CASE WHEN {flag} THEN {} END",
                    c.timestamp(&["detected_at", "created_at", "timestamp", "discovered_at"])
                ),
                None => "NULL::timestamptz".to_owned(),
            },
        };
        let sql = format!(
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, description, edge, \
                expected_profit, size, details, detected_at, executed_at) \
             SELECT {id}, $1, {strategy}, {venue}, {market}, {description}, {edge}, {profit}, {size}, \
                to_jsonb(t), {detected}, {executed} \
             FROM polybot_opportunities t ON CONFLICT (id) DO NOTHING",
            id = c.row_id("polybot_opportunities"),
            strategy = c.text(
                &[
                    "strategy",
                    "strategy_name",
                    "opportunity_type",
                    "type",
                    "kind"
                ],
                "legacy"
            ),
            venue = c.text(&["platform", "venue", "exchange", "source"], "unknown"),
            market = c.text(
                &[
                    "market_id",
                    "market",
                    "market_slug",
                    "ticker",
                    "condition_id",
                    "market_question",
                    "question"
                ],
                ""
            ),
            description = c.text(&["description", "market_question", "question", "title"], ""),
            edge = c.numeric(&["edge", "spread", "profit_margin", "edge_pct"], None),
            profit = c.numeric(
                &[
                    "expected_profit",
                    "profit",
                    "estimated_profit",
                    "potential_profit"
                ],
                None
            ),
            size = c.numeric(&["size", "amount", "quantity", "position_size"], None),
            detected = c.timestamp(&["detected_at", "created_at", "timestamp", "discovered_at"]),
        );
        report
            .tables
            .push(copy(&mut tx, &sql, "polybot_opportunities", "opportunities").await?);
    }

    if let Some(c) = trades {
        let mode = match c.pick(&["paper", "is_paper", "dry_run"], &["boolean"]) {
            Some(flag) => format!("CASE WHEN {flag} IS FALSE THEN 'live' ELSE 'paper' END"),
            None => match c.pick(&["mode"], TEXTUAL) {
                Some(col) => format!("CASE WHEN {col}::text = 'live' THEN 'live' ELSE 'paper' END"),
                None => "'paper'".to_owned(),
            },
        };
        let sql = format!(
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, outcome, price, size, fee, \
                realized_pnl, mode, details, executed_at) \
             SELECT {id}, $1, {strategy}, {venue}, {market}, {side}, {outcome}, {price}, {size}, {fee}, \
                {pnl}, {mode}, to_jsonb(t), {executed} \
             FROM polybot_trades t ON CONFLICT (id) DO NOTHING",
            id = c.row_id("polybot_trades"),
            strategy = c.text(&["strategy", "strategy_name", "type"], "legacy"),
            venue = c.text(&["platform", "venue", "exchange"], "unknown"),
            market = c.text(
                &["market_id", "market", "market_slug", "ticker", "symbol"],
                ""
            ),
            side = c.text(&["side", "direction", "action"], "unknown"),
            outcome = match c.pick(&["outcome", "token", "token_id"], TEXTUAL) {
                Some(col) => format!("{col}::text"),
                None => "NULL".to_owned(),
            },
            price = c.numeric(&["price", "fill_price", "avg_price"], Some("0")),
            size = c.numeric(&["size", "quantity", "amount", "shares"], Some("0")),
            fee = c.numeric(&["fee", "fees", "commission"], Some("0")),
            pnl = c.numeric(&["pnl", "realized_pnl", "profit"], None),
            executed = c.timestamp(&["executed_at", "filled_at", "created_at", "timestamp"]),
        );
        report
            .tables
            .push(copy(&mut tx, &sql, "polybot_trades", "trades").await?);
    }

    if let Some(c) = balances {
        // The legacy table is a history; the newest row per venue and asset wins.
        let updated = c.timestamp(&["updated_at", "timestamp", "created_at"]);
        let venue = c.text(&["platform", "venue", "exchange"], "unknown");
        let asset = c.text(&["asset", "currency", "symbol"], "USD");
        let sql = format!(
            "INSERT INTO balances (tenant_id, venue, asset, amount, updated_at) \
             SELECT DISTINCT ON (venue, asset) $1, venue, asset, amount, updated_at FROM ( \
                SELECT {venue} AS venue, {asset} AS asset, {amount} AS amount, {updated} AS updated_at \
                FROM polybot_balances t) b \
             ORDER BY venue, asset, updated_at DESC \
             ON CONFLICT (tenant_id, venue, asset) DO NOTHING",
            amount = c.numeric(&["balance", "amount", "total", "available"], Some("0")),
        );
        report
            .tables
            .push(copy(&mut tx, &sql, "polybot_balances", "balances").await?);
    }

    tx.commit()
        .await
        .map_err(DbError::query("committing the legacy import"))?;
    Ok(report)
}

async fn copy(
    tx: &mut sqlx::PgConnection,
    sql: &str,
    source: &'static str,
    target: &'static str,
) -> Result<TableReport, DbError> {
    // `source` is one of three constants.
    let found: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote_ident(source)))
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("counting legacy rows"))?;
    let imported = sqlx::query(sql)
        .bind(DEFAULT_TENANT.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("copying legacy rows"))?
        .rows_affected();
    Ok(TableReport {
        source,
        target,
        found: u64::try_from(found).unwrap_or(0),
        imported,
    })
}
