//! PolyBot's exchange connectors: public market data for Polymarket (gamma
//! and CLOB), Kalshi, Binance US, Coinbase, Kraken and Alpaca; news headlines
//! from NewsAPI and RSS/Atom feeds ([`news`]); request signing for each
//! venue's private API; per-API rate limits and retry policy; configurable
//! endpoints; and the `doctor` probes.
//!
//! What does not live here: strategy logic and the engine's event types
//! (crate `polybot-engine`), persistence, and the CLI. Everything here speaks
//! in the plain types of [`model`]; the worker converts them.

pub mod error;
pub mod execution;
pub mod model;
pub mod news;
pub mod signing;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

pub use error::{ErrorKind, VenueError};
pub use model::Api;
pub use tls::install_crypto_provider;
pub mod endpoints;
pub mod http;
mod num;
pub mod ratelimit;

pub use endpoints::Endpoints;
pub use http::{ClientOptions, Clock, ManualClock, RetryPolicy, TokioClock};
pub mod connectors;
pub mod doctor;

pub use connectors::{Alpaca, Binance, Coinbase, Kalshi, Kraken, Polymarket};
pub use doctor::{DoctorOptions, DoctorReport, DoctorRow, ProbeStatus, probe_all};
