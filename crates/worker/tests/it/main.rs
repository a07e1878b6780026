//! The integration tests of `polybot-worker`, as one test binary (one link
//! instead of one per file).

mod demo_replay;
mod kalshi_execution;
mod live_execution;
mod live_kalshi_stream;
#[path = "common/live_mock.rs"]
#[allow(dead_code)]
mod live_mock;
mod live_source;
mod live_spot_stream;
mod live_worker_db;
mod market_data;
mod pair_execution;
mod sandbox;
mod worker_db;
