//! Test support (the `testing` feature): local stand-ins for venues, built
//! from their documented APIs, so that tests never reach a real venue.
//!
//! Not here: recorded market-data fixtures (each crate's tests keep theirs).

pub mod clob;
pub mod kalshi;

pub use clob::{ClobStandIn, Fault, StandInMarket};
pub use kalshi::{KalshiFault, KalshiStandIn};
