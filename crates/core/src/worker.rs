//! The contract between the control plane and a tenant's worker process.
//!
//! Three things cross that process boundary, and each is defined once, here:
//!
//! - the **environment** a launcher gives a worker ([`env`](mod@env));
//! - the worker's **exit codes** ([`exit`]), which the reconciler reads to tell a
//!   fenced twin from a crash;
//! - the **heartbeat** the worker writes into `worker_heartbeats.health`
//!   ([`WorkerHealth`]), which status, metrics, alerts and the dashboard read.
//!
//! The heartbeat is versioned ([`WorkerHealth::VERSION`]). Readers accept any
//! heartbeat whose fields they know: a field added in a later version is
//! ignored by an older control plane, and one missing from an older worker
//! reads as its default. Nothing here performs I/O.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Mode;

/// Names of the environment variables a worker reads.
///
/// A launcher sets them; `polybot worker` parses them at startup and refuses
/// to start, naming the variable, when one is malformed.
pub mod env {
    /// The tenant this worker serves (a UUID).
    pub const TENANT_ID: &str = "TENANT_ID";
    /// The tenant's own database login (`postgres://polybot_t_…`).
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// The tenant's exchange keys, as the JSON object onboarding accepted.
    pub const EXCHANGE_KEYS: &str = "EXCHANGE_KEYS";
    /// `1`: read [`DATABASE_URL`] and [`EXCHANGE_KEYS`] from standard input
    /// (a JSON object of those names, to end of input) instead of the
    /// environment: the local launcher's way, so that the secrets never sit in
    /// the process's environment.
    pub const SECRETS_STDIN: &str = "POLYBOT_SECRETS_STDIN";
    /// `paper` or `live`.
    pub const MODE: &str = "POLYBOT_MODE";
    /// The hash of the spec the worker was started from; echoed in heartbeats.
    pub const SPEC_HASH: &str = "POLYBOT_SPEC_HASH";
    /// Seconds between heartbeats (default 5).
    pub const HEARTBEAT_SECS: &str = "POLYBOT_HEARTBEAT_SECS";
    /// A JSONL market recording to trade on instead of live data.
    pub const REPLAY: &str = "POLYBOT_REPLAY";
    /// How fast to replay: a multiple of recorded time, or `max`.
    pub const REPLAY_SPEED: &str = "POLYBOT_REPLAY_SPEED";
    /// `1`: exit once the recording is exhausted.
    pub const REPLAY_EXIT: &str = "POLYBOT_REPLAY_EXIT";
    /// Whether to trade on the venues' live public market data when no
    /// [`REPLAY`] is given: on unless `0` (no market data at all, for tests
    /// of the worker's lifecycle).
    pub const LIVE_DATA: &str = "POLYBOT_LIVE_DATA";
    /// The shared market-data service's Redis (`redis://…`, `rediss://…`
    /// over TLS): when set, the
    /// worker takes the venues' public market data from there instead of
    /// opening its own venue connections (news and private streams stay in
    /// the worker).
    pub const MARKET_DATA_URL: &str = "POLYBOT_MARKET_DATA_URL";
    /// A PEM file of the CA certificates a `rediss://` [`MARKET_DATA_URL`]'s
    /// server certificate must chain to (a private CA); without it, the web
    /// PKI roots built into the binary (ElastiCache's Amazon CA among them).
    pub const MARKET_DATA_CA_FILE: &str = "POLYBOT_MARKET_DATA_CA_FILE";
    /// The NewsAPI base URL for the news strategy.
    pub const NEWSAPI_URL: &str = "POLYBOT_NEWSAPI_URL";
    /// The operator's NewsAPI key, for tenants that bring none (a secret:
    /// on ECS from the workers' settings secret, locally from the secret
    /// store; never forwarded from the control plane's environment).
    pub const NEWSAPI_KEY: &str = "POLYBOT_NEWSAPI_KEY";
    /// Starting paper balances, `venue=amount,…`.
    pub const PAPER_BALANCES: &str = "POLYBOT_PAPER_BALANCES";
    /// Longest time decisions wait before they are written (milliseconds).
    pub const FLUSH_MS: &str = "POLYBOT_FLUSH_MS";
    /// Most decisions buffered before they are written.
    pub const FLUSH_ROWS: &str = "POLYBOT_FLUSH_ROWS";
    /// The worker's log filter (`tracing` syntax).
    pub const LOG: &str = "POLYBOT_LOG";

    /// The venues' endpoint overrides a worker reads (the venues crate's
    /// `endpoints::ENV_*`, which a test there keeps in step with this list).
    pub const VENUE_URLS: &[&str] = &[
        "POLYBOT_POLYMARKET_GAMMA_URL",
        "POLYBOT_POLYMARKET_CLOB_URL",
        "POLYBOT_POLYMARKET_WS_URL",
        "POLYBOT_KALSHI_URL",
        "POLYBOT_BINANCE_US_URL",
        "POLYBOT_BINANCE_URL",
        "POLYBOT_COINBASE_URL",
        "POLYBOT_KRAKEN_URL",
        "POLYBOT_ALPACA_DATA_URL",
        "POLYBOT_ALPACA_TRADING_URL",
        "POLYBOT_BINANCE_US_WS_URL",
        "POLYBOT_COINBASE_WS_URL",
        "POLYBOT_KRAKEN_WS_URL",
        "POLYBOT_KALSHI_WS_URL",
    ];

    /// The plain settings a control plane may hand its workers from its own
    /// environment: an allowlist, so that none of the control plane's own
    /// secrets (`POLYBOT_METRICS_TOKEN`, `POLYBOT_OPERATOR_TOKEN`,
    /// `POLYBOT_MASTER_KEY`, its `DATABASE_URL`, …) reaches a worker. The
    /// tenant, mode, spec hash and secrets are not here: the launcher sets
    /// them per tenant.
    pub const FORWARDED: &[&str] = &[
        HEARTBEAT_SECS,
        REPLAY,
        REPLAY_SPEED,
        REPLAY_EXIT,
        LIVE_DATA,
        MARKET_DATA_URL,
        MARKET_DATA_CA_FILE,
        NEWSAPI_URL,
        PAPER_BALANCES,
        FLUSH_MS,
        FLUSH_ROWS,
        LOG,
    ];

    /// Whether a launcher may pass `name` to a worker as plain environment.
    pub fn is_forwarded(name: &str) -> bool {
        FORWARDED.contains(&name) || VENUE_URLS.contains(&name)
    }
}

/// Exit codes of `polybot worker`.
pub mod exit {
    /// The engine stopped cleanly (SIGTERM, or the end of a recording).
    pub const OK: i32 = 0;
    /// The worker failed; the reconciler restarts it with back-off.
    pub const FAILED: i32 = 1;
    /// A setting is missing or malformed (clap's usage error, naming the
    /// variable); restarted with back-off like [`FAILED`].
    pub const BAD_SETTINGS: i32 = 2;
    /// The worker lost its lease to a newer worker of the same tenant and
    /// stopped without writing; not a crash of the tenant's bot.
    pub const FENCED: i32 = 3;
}

/// The phase of a worker's life a heartbeat was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerPhase {
    /// The engine is being built (config read, feeds connecting).
    #[default]
    Starting,
    /// The engine is taking decisions.
    Running,
    /// The data source ended (a recording ran out); the worker idles.
    /// Written as `replay_finished`, the name workers have always used.
    #[serde(rename = "replay_finished")]
    Finished,
    /// SIGTERM: decisions stopped, the final flush is done (the worker's
    /// last heartbeat). Written as `stopped`, the name workers have always used.
    #[serde(rename = "stopped")]
    Stopping,
    /// The engine cannot run; `last_error` says why.
    Failed,
}

impl WorkerPhase {
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkerPhase::Starting => "starting",
            WorkerPhase::Running => "running",
            WorkerPhase::Finished => "replay_finished",
            WorkerPhase::Stopping => "stopped",
            WorkerPhase::Failed => "failed",
        }
    }
}

impl fmt::Display for WorkerPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a strategy is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyStatus {
    #[default]
    Ok,
    /// Working, but something needs attention (see the reason).
    Degraded,
    /// The circuit breaker is open: the strategy takes no decisions.
    BreakerOpen,
    /// A data source (the news API) is rate limiting the worker.
    RateLimited,
}

impl StrategyStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            StrategyStatus::Ok => "ok",
            StrategyStatus::Degraded => "degraded",
            StrategyStatus::BreakerOpen => "breaker_open",
            StrategyStatus::RateLimited => "rate_limited",
        }
    }
}

/// A strategy's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerPosition {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl BreakerPosition {
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerPosition::Closed => "closed",
            BreakerPosition::Open => "open",
            BreakerPosition::HalfOpen => "half_open",
        }
    }
}

/// One strategy's health in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StrategyHealth {
    pub status: StrategyStatus,
    pub breaker: BreakerPosition,
    /// Engine time (ms since the epoch) at which an open breaker half-opens.
    #[serde(default)]
    pub breaker_open_until: Option<i64>,
    /// Why the status is not `ok` (the breaker's last failure when it is open).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// The tenant's money as the engine sees it, in the tenant's quote currency.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PnlSummary {
    #[serde(with = "rust_decimal::serde::str")]
    pub realized: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unrealized: Decimal,
    /// Realized PnL since the engine's day began (UTC midnight).
    #[serde(with = "rust_decimal::serde::str")]
    pub daily: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub fees: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub equity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub exposure: Decimal,
    /// Whether the daily loss limit stopped new decisions today.
    #[serde(default)]
    pub daily_loss_limit_hit: bool,
    /// The part of `unrealized` locked in complete sets and hedged pairs
    /// (what they pay at resolution minus their cost).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub locked: Decimal,
    /// Equity when the engine started: `equity − starting_equity =
    /// realized + unrealized − fees`.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub starting_equity: Decimal,
    /// Strategy name → its share of the figures above.
    #[serde(default)]
    pub by_strategy: BTreeMap<String, StrategyPnlSummary>,
    /// The open positions at their marks.
    #[serde(default)]
    pub positions: Vec<PositionSummary>,
}

/// One strategy's PnL in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StrategyPnlSummary {
    #[serde(with = "rust_decimal::serde::str")]
    pub realized: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unrealized: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub locked: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub fees: Decimal,
}

/// One open position in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PositionSummary {
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub outcome: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub avg_price: Decimal,
    /// Best bid, else last trade, else the average price.
    #[serde(with = "rust_decimal::serde::str")]
    pub mark: Decimal,
    /// How much of `quantity` is part of a complete set or hedged pair.
    #[serde(with = "rust_decimal::serde::str")]
    pub locked: Decimal,
}

/// The engine's counters since the worker started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EngineCounters {
    /// Engine time (ms since the epoch).
    pub clock: i64,
    pub events: u64,
    pub opportunities: u64,
    pub orders: u64,
    pub fills: u64,
    pub cancels: u64,
    pub rejections: u64,
    pub data_errors: u64,
}

/// Where the worker's market data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    /// A recording's path, or the live feeds.
    pub description: String,
    /// A recording ran out.
    pub finished: bool,
}

/// What the worker has written to the database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WrittenCounters {
    pub opportunities: u64,
    pub trades: u64,
    /// Decisions buffered, not yet written.
    pub pending: u64,
}

/// A venue feed's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// No request has completed yet. Written as `starting`, the name
    /// workers have always used.
    #[default]
    #[serde(rename = "starting")]
    Connecting,
    Ok,
    /// Requests fail; `last_error` says why.
    Error,
    /// The venue refuses this host's region; `fix` says what to do.
    GeoBlocked,
    /// The venue is rate limiting (or has banned) the worker.
    RateLimited,
    /// The venue refuses the worker's credentials.
    Unauthorized,
    /// The venue does not answer (connection refused, timeouts).
    Unreachable,
    /// The venue needs keys the tenant has not given. Written as
    /// `not_configured`, the name workers have always used.
    #[serde(rename = "not_configured")]
    NeedsKeys,
}

impl FeedState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FeedState::Connecting => "starting",
            FeedState::Ok => "ok",
            FeedState::Error => "error",
            FeedState::GeoBlocked => "geo_blocked",
            FeedState::RateLimited => "rate_limited",
            FeedState::Unauthorized => "unauthorized",
            FeedState::Unreachable => "unreachable",
            FeedState::NeedsKeys => "not_configured",
        }
    }

    /// Whether a feed in this state delivers data.
    pub const fn is_healthy(self) -> bool {
        matches!(self, FeedState::Ok)
    }
}

/// One venue feed's health in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FeedStatus {
    pub status: FeedState,
    #[serde(default)]
    pub requests_ok: u64,
    #[serde(default)]
    pub errors: u64,
    /// Wall-clock time (ms since the epoch) of the last good response.
    #[serde(default)]
    pub last_ok: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// What an operator can do about a failing feed.
    #[serde(default)]
    pub fix: Option<String>,
}

/// A worker's heartbeat: what it is doing and how each part of it is.
///
/// Written by the worker with every lease renewal; the newest one per tenant
/// is what status, metrics, alerts and the dashboard show.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// The contract version the worker wrote ([`WorkerHealth::VERSION`]).
    #[serde(default)]
    pub version: u32,
    pub phase: WorkerPhase,
    #[serde(default)]
    pub spec_hash: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub mode: Mode,
    /// How orders are executed: `paper` until a live executor exists.
    #[serde(default)]
    pub execution: Option<String>,
    #[serde(default)]
    pub kill_switch: bool,
    /// Strategy name → health; only enabled strategies appear.
    #[serde(default)]
    pub strategies: BTreeMap<String, StrategyHealth>,
    #[serde(default)]
    pub pnl: Option<PnlSummary>,
    /// Venue → balance.
    #[serde(default, with = "decimal_map")]
    pub balances: BTreeMap<String, Decimal>,
    #[serde(default)]
    pub engine: Option<EngineCounters>,
    #[serde(default)]
    pub source: Option<SourceStatus>,
    #[serde(default)]
    pub written: Option<WrittenCounters>,
    /// Venue feed → health; only with live data.
    #[serde(default)]
    pub venues: BTreeMap<String, FeedStatus>,
    /// Errors the worker noted since it started.
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl WorkerHealth {
    /// The version this build writes.
    pub const VERSION: u32 = 1;

    /// Reads a heartbeat's JSON; `None` when it is not one (a heartbeat
    /// written by an incompatible worker reads as no heartbeat, never a panic).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        Self::deserialize(value).ok()
    }

    /// Reads a heartbeat's JSON text, exactly as [`WorkerHealth::from_json`]
    /// reads its value, without building the value first: the fleet read
    /// decodes every tenant's heartbeat on each scrape, and the intermediate
    /// `Value` tree cost more than the decoding itself.
    pub fn from_json_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Strategies whose breaker is open, with the breaker's reason.
    pub fn open_breakers(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.strategies
            .iter()
            .filter(|(_, h)| h.breaker == BreakerPosition::Open)
            .map(|(name, h)| (name.as_str(), h.reason.as_deref()))
    }

    /// Whether the daily loss limit stopped the worker's decisions today.
    pub fn daily_loss_limit_hit(&self) -> bool {
        self.pnl.as_ref().is_some_and(|p| p.daily_loss_limit_hit)
    }
}

/// `BTreeMap<String, Decimal>` with the decimals as strings, like every
/// other amount the platform writes.
mod decimal_map {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Decimal>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<&str, String> = map
            .iter()
            .map(|(k, v)| (k.as_str(), v.normalize().to_string()))
            .collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Decimal>, D::Error> {
        let text = BTreeMap::<String, String>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| {
                v.parse::<Decimal>()
                    .map(|d| (k, d))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> WorkerHealth {
        WorkerHealth {
            version: WorkerHealth::VERSION,
            phase: WorkerPhase::Running,
            spec_hash: "abc".into(),
            pid: 42,
            mode: Mode::Paper,
            execution: Some("paper".into()),
            kill_switch: false,
            strategies: BTreeMap::from([(
                "news_arb".to_owned(),
                StrategyHealth {
                    status: StrategyStatus::BreakerOpen,
                    breaker: BreakerPosition::Open,
                    breaker_open_until: Some(1_700_000_000_000),
                    reason: Some("NewsAPI 500 on /v2/everything".into()),
                    consecutive_failures: 3,
                },
            )]),
            pnl: Some(PnlSummary {
                realized: Decimal::new(-125, 2),
                daily_loss_limit_hit: true,
                ..PnlSummary::default()
            }),
            balances: BTreeMap::from([("polymarket".to_owned(), Decimal::new(100_000, 2))]),
            engine: Some(EngineCounters::default()),
            source: Some(SourceStatus {
                description: "live".into(),
                finished: false,
            }),
            written: Some(WrittenCounters::default()),
            venues: BTreeMap::from([(
                "kalshi".to_owned(),
                FeedStatus {
                    status: FeedState::GeoBlocked,
                    fix: Some("run from a US region".into()),
                    ..FeedStatus::default()
                },
            )]),
            errors: 2,
            last_error: Some("kalshi 451".into()),
        }
    }

    #[test]
    fn a_heartbeat_reads_back_as_it_was_written() {
        let health = sample();
        let json = health.to_json();
        assert_eq!(WorkerHealth::from_json(&json), Some(health));
    }

    #[test]
    fn amounts_are_written_as_decimal_strings() {
        let json = sample().to_json();
        assert_eq!(json["pnl"]["realized"], json!("-1.25"));
        assert_eq!(json["balances"]["polymarket"], json!("1000"));
        assert_eq!(json["strategies"]["news_arb"]["breaker"], json!("open"));
        assert_eq!(json["venues"]["kalshi"]["status"], json!("geo_blocked"));
    }

    #[test]
    fn open_breakers_carry_their_reason() {
        let health = sample();
        let open: Vec<_> = health.open_breakers().collect();
        assert_eq!(
            open,
            vec![("news_arb", Some("NewsAPI 500 on /v2/everything"))]
        );
        assert!(health.daily_loss_limit_hit());
    }

    #[test]
    fn a_minimal_heartbeat_from_an_older_worker_still_reads() {
        let health = WorkerHealth::from_json(&json!({"phase": "starting"})).expect("reads");
        assert_eq!(health.phase, WorkerPhase::Starting);
        assert_eq!(health.version, 0);
        assert!(health.strategies.is_empty());
    }

    #[test]
    fn every_phase_and_feed_state_is_written_as_its_name() {
        for phase in [
            WorkerPhase::Starting,
            WorkerPhase::Running,
            WorkerPhase::Finished,
            WorkerPhase::Stopping,
            WorkerPhase::Failed,
        ] {
            assert_eq!(serde_json::to_value(phase).unwrap(), json!(phase.as_str()));
        }
        for state in [
            FeedState::Connecting,
            FeedState::Ok,
            FeedState::Error,
            FeedState::GeoBlocked,
            FeedState::RateLimited,
            FeedState::Unauthorized,
            FeedState::Unreachable,
            FeedState::NeedsKeys,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
        }
    }

    #[test]
    fn the_phases_and_feed_states_workers_have_always_written_still_read() {
        let health = WorkerHealth::from_json(&json!({
            "phase": "replay_finished",
            "venues": {"kalshi": {"status": "starting"}, "binance_us": {"status": "unreachable"}},
        }))
        .expect("reads");
        assert_eq!(health.phase, WorkerPhase::Finished);
        assert_eq!(health.venues["kalshi"].status, FeedState::Connecting);
        assert_eq!(health.venues["binance_us"].status, FeedState::Unreachable);
        let stopped = WorkerHealth::from_json(&json!({"phase": "stopped"})).expect("reads");
        assert_eq!(stopped.phase, WorkerPhase::Stopping);
    }

    #[test]
    fn something_that_is_not_a_heartbeat_reads_as_none() {
        assert_eq!(WorkerHealth::from_json(&json!({"phase": 7})), None);
        assert_eq!(WorkerHealth::from_json(&json!("x")), None);
    }

    #[test]
    fn a_heartbeat_reads_the_same_from_its_text_as_from_its_value() {
        let documents = [
            sample().to_json(),
            json!({"phase": "starting"}),
            json!({"phase": "running", "pid": null}),
            json!({"phase": "running", "added_in_a_later_version": {"x": [1, 2]}}),
            json!({"phase": "running", "strategies": {"a": {"status": "ok", "breaker": "shut"}}}),
            json!({"phase": 7}),
            json!({}),
            json!(null),
            json!("x"),
        ];
        for document in documents {
            // Postgres writes jsonb text with whitespace between tokens.
            let text = serde_json::to_string_pretty(&document).unwrap();
            assert_eq!(
                WorkerHealth::from_json_text(&text),
                WorkerHealth::from_json(&document),
                "{text}"
            );
        }
        assert_eq!(
            WorkerHealth::from_json_text(&sample().to_json().to_string()),
            Some(sample())
        );
        assert_eq!(
            WorkerHealth::from_json_text("{\"phase\": \"running\"} x"),
            None
        );
    }
}
