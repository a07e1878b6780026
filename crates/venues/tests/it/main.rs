//! Connector, news, doctor and streaming tests against local mock servers on
//! 127.0.0.1, answering with recorded responses from `tests/fixtures/`.
//! Nothing here reaches the internet.

mod alpaca;
mod binance;
mod coinbase;
mod common;
mod doctor;
mod execution;
mod kalshi;
mod kalshi_execution;
mod kalshi_stream;
mod kraken;
mod news;
mod polymarket;
mod stream;
mod stream_venues;
