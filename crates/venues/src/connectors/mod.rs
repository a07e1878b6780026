//! REST connectors, one module per venue. Each takes an [`Endpoints`]
//! (so tests point it at a local server) and [`ClientOptions`].
//!
//! [`Endpoints`]: crate::Endpoints
//! [`ClientOptions`]: crate::ClientOptions

pub mod alpaca;
pub mod binance;
pub mod coinbase;
pub mod kalshi;
pub mod kraken;
pub mod polymarket;

pub use alpaca::Alpaca;
pub use binance::Binance;
pub use coinbase::Coinbase;
pub use kalshi::Kalshi;
pub use kraken::Kraken;
pub use polymarket::Polymarket;
