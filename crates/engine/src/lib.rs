//! PolyBot's strategy engine: market events in, decisions out, for one tenant.
//!
//! An [`Engine`] takes [`Event`]s (market listings, book snapshots and deltas,
//! trades, spot prices, headlines, resolutions, clock ticks) and appends
//! [`Decision`]s (opportunities, orders, fills, cancels, risk rejections,
//! blocked pairs, settlements). Time comes from an injected [`Clock`], so the
//! same engine runs over a recorded [`Replay`] and over a live stream.
//!
//! Inside: the four strategies (one folder each under `strategies/`; their
//! typed configs live in `polybot_core::strategy`), per-tenant risk limits
//! ([`risk`]), a circuit breaker per strategy ([`breaker`]), the paper
//! exchange ([`paper`]: the executor of paper mode and replays, which walks
//! the book's depth and applies each venue's fee formula, [`fees`]),
//! positions, balances and PnL ([`portfolio`]), and per-strategy [`health`].
//! The engine emits orders and fills none itself: every executor (the paper
//! exchange, a venue's in the worker) reports back through the same calls.
//!
//! Not here: I/O of any kind. No database, no network, no async runtime, no
//! wall clock — the worker crate wires feeds, the store and this engine.
//!
//! Money, prices and sizes are [`rust_decimal::Decimal`], parsed from the
//! venues' strings.
//!
//! # Replay format (JSON Lines)
//!
//! One JSON object per line; blank lines and lines starting with `#` are
//! skipped. Every object has `"type"` and `"ts"` (milliseconds since the Unix
//! epoch, UTC, an integer). Prices, sizes and rates are **strings** (`"0.52"`),
//! never JSON numbers, exactly as the venues send them. Unknown fields are
//! errors. An outcome is named (`"Yes"`, case-insensitive) or numbered (`0`),
//! and a market must be defined by a `market` line before other lines use it.
//! Binary markets list YES (or Up) first.
//!
//! | `type` | fields |
//! |---|---|
//! | `market` | `market` (id), `venue` (`polymarket`, `kalshi`, `binance_us`, `coinbase`, `kraken`), `outcomes` (names), `fee_rate` (taker rate: the Polymarket market's `fd.r`, Kalshi `"0.07"`, CEX percentage); optional `fee_exponent` (Polymarket's `fd.e`, default 1), `question`, `resolution_source`, `window_start` and `closes_at` (ms), `asset` + `direction` (`up`, `above`, `below`) + `strike` for recurring crypto markets, `reference_price` (a window's opening price), `condition_id` + `tokens` (the venue's ids: Polymarket's condition id and one CLOB token id per outcome, which live and shadow execution need) |
//! | `book` | `market`, `outcome`, `bids` and `asks` as `[["price","size"], …]` in any order. Kalshi books are bids only: a binary Kalshi market's asks are derived from the other outcome's bids (YES ask = 1 − NO bid) and given asks are ignored |
//! | `book_delta` | `market`, `outcome`, `side` (`bid`/`ask`), `price`, `size` (the new size; `"0"` removes the level) |
//! | `trade` | `market`, `outcome`, `price`, `size`, `side` (`buy`/`sell`, the aggressor) |
//! | `spot` | `venue` (a CEX), `asset` (`"BTC"`), `price` |
//! | `headline` | `id` (for de-duplication), `source`, `title`; optional `summary`, `published` (ms, defaults to `ts`) |
//! | `resolved` | `market`, `outcome` (the winner): positions are paid 1 per winning share |
//! | `feed_health` | `strategy` (`complement_arb`, …); optional `degraded` (why its feeds fail; absent when they deliver), `rate_limited` (why a source refuses the worker) and `rate_limited_until` (ms): replaces what the strategy's previous `feed_health` said |
//! | `tick` | nothing else: time passed |
//!
//! ```text
//! {"type":"market","ts":1777467600000,"market":"btc-updown-15m-1777467600","venue":"polymarket","outcomes":["Up","Down"],"fee_rate":"0.07","window_start":1777467600000,"closes_at":1777468500000,"asset":"BTC","direction":"up","resolution_source":"https://data.chain.link/streams/btc-usd"}
//! {"type":"book","ts":1777467601000,"market":"btc-updown-15m-1777467600","outcome":"Up","bids":[["0.48","200"]],"asks":[["0.51","150"],["0.52","300"]]}
//! {"type":"spot","ts":1777467601500,"venue":"coinbase","asset":"BTC","price":"94012.55"}
//! {"type":"tick","ts":1777467602000}
//! ```

pub mod book;
pub mod breaker;
pub mod clock;
pub mod decision;
pub mod engine;
pub mod event;
pub mod fees;
pub mod health;
pub mod market;
pub mod paper;
pub mod portfolio;
pub mod replay;
pub mod risk;
pub mod strategies;
pub mod types;

pub use book::{OrderBook, Sweep};
pub use breaker::{BreakerState, CircuitBreaker};
pub use clock::{Clock, EventClock, ManualClock, Timestamp};
pub use decision::{
    Cancel, CarriedFill, Decision, Fill, LegPlan, Opportunity, OpportunityId, Order, OrderId,
    PairBlocked, Rejection, Settlement,
};
pub use engine::{Engine, EngineConfig, EngineError, EngineStats, OrderEnd};
pub use event::{
    BookDelta, BookSnapshot, Direction, Event, EventKind, Headline, MarketDef, RecurringSpec,
    Resolution, SpotPrice, TradePrint, VenueIds,
};
pub use fees::{
    FeeModel, FeeTally, KalshiFeeAccumulator, KalshiFillFee, cex_taker_fee, kalshi_taker_fee,
    polymarket_taker_fee,
};
pub use health::{FeedHealth, HealthStatus, RateLimit, StrategyHealth};
pub use paper::PaperExchange;
pub use portfolio::{CarriedPnl, Payout, Portfolio, PortfolioSnapshot, PositionView, StrategyPnl};
pub use replay::{Replay, ReplayError, ReplayParser, event_line, parse_jsonl};
pub use risk::RiskViolation;
pub use strategies::cross_venue_arb::{
    BasisRisk, CHAINLINK_VS_CF_BENCHMARKS, PairOrigin, PairView,
};
pub use types::{Asset, BookSide, Level, MarketId, OutcomeIdx, Side};
