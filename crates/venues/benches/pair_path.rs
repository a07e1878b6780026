//! A cross-venue pair's path against both stand-ins on loopback (a plain
//! bench binary: `cargo bench -p polybot-venues --features testing --bench
//! pair_path`).
//!
//! - to the wire: from the pair executor's call (both legs' client ids and
//!   rules checks, Polymarket's EIP-712 order built and signed through the
//!   official SDK with its L2 HMAC headers, Kalshi's create body with its
//!   RSA-PSS signature, both sent at once) until both stand-ins have their
//!   whole request — the later of the two arrivals. Kalshi's arrival is
//!   taken after the stand-in verified the signature, which adds its
//!   verification to the figure;
//!   Each leg's own arrival is printed too;
//! - round trip: until both answers are in and the pair is settled.
//!
//! Each pair is new (its own client ids) and finds no liquidity (neither
//! leg fills, so no repair runs): every iteration does the full send. The
//! engine's decision is a few microseconds before this (see the engine
//! throughput benchmark), the ledger write is a database round trip before
//! it in the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
use polybot_venues::execution::pair::{PairLeg, PairLimits, PairStatus, execute_pair};
use polybot_venues::execution::polymarket::{
    ApiCredentials, POLYGON, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{
    ClientOrderId, Executor, NoFence, OrderRequest, OrderSide, TimeInForce,
};
use polybot_venues::testing::{ClobStandIn, KalshiStandIn, StandInMarket};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::json;

const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PEM: &str = include_str!("../tests/fixtures/kalshi_test_key_pkcs8.pem");
const KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";
const TICKER: &str = "KXETHD-26JAN01-T5000";
const WARMUP: u64 = 100;
const PAIRS: u64 = 1_000;

/// The `per_mille`th per-mille sample of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = (sorted.len() * per_mille).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds with one decimal.
fn micros(d: Duration) -> String {
    let nanos = d.as_nanos();
    format!("{}.{}", nanos / 1000, (nanos % 1000) / 100)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<12} n={:<5} p50={:>8} µs  p99={:>8} µs  max={:>8} µs",
        samples.len(),
        micros(percentile(&samples, 500)),
        micros(percentile(&samples, 990)),
        micros(samples.last().copied().unwrap_or_default()),
    );
}

/// Two worker threads, as the worker's runtime has on two cores.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, Decimal::from(1_000_000));
    let market = StandInMarket::binary(1);
    clob.list_market(market.clone());
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account_for_private_key(KEY_ID, PEM, Decimal::from(100_000_000));
    kalshi.list_market(TICKER);
    // A tier whose write bucket never makes the pair wait.
    kalshi.set_account_limits(
        json!({"usage_tier": "premier", "read_limit": 100_000, "write_limit": 100_000}),
    );
    let pm = PolymarketExecutor::connect(
        &PolymarketSettings {
            host: clob.url(),
            chain_id: POLYGON,
            timeout: Duration::from_secs(5),
        },
        &PolymarketKeys {
            private_key: SecretString::from(KEY),
            api: Some(ApiCredentials {
                api_key: SecretString::from(api_key),
                secret: SecretString::from(secret),
                passphrase: SecretString::from(passphrase),
            }),
        },
        Arc::new(NoFence),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let k = KalshiExecutor::connect(
        &KalshiSettings {
            base: kalshi.url(),
            timeout: Duration::from_secs(5),
            ..KalshiSettings::default()
        },
        &KalshiKeys {
            key_id: KEY_ID.to_owned(),
            private_key_pem: SecretString::from(PEM),
        },
        Arc::new(NoFence),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let pm_rules = pm
        .market_rules(&market.condition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let k_rules = k
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pm: Arc<dyn Executor> = Arc::new(pm);
    let k: Arc<dyn Executor> = Arc::new(k);
    let limits = PairLimits {
        max_latency: Duration::from_secs(5),
        max_repair: Duration::from_secs(5),
        max_slippage: Decimal::new(2, 2),
    };

    let mut wire = Vec::with_capacity(PAIRS as usize);
    let mut pm_wire = Vec::with_capacity(PAIRS as usize);
    let mut k_wire = Vec::with_capacity(PAIRS as usize);
    let mut round_trip = Vec::with_capacity(PAIRS as usize);
    for n in 0..WARMUP + PAIRS {
        let legs = [
            PairLeg {
                executor: pm.clone(),
                venue: "polymarket",
                request: OrderRequest {
                    client_id: ClientOrderId::derive(&[5; 16], 1, 2 * n),
                    market: market.condition_id.clone(),
                    instrument: market.tokens[0].clone(),
                    side: OrderSide::Buy,
                    price: Decimal::new(40, 2),
                    size: Decimal::from(10),
                    time_in_force: TimeInForce::ImmediateOrCancel,
                },
                rules: pm_rules.clone(),
                size_decimals: 2,
            },
            PairLeg {
                executor: k.clone(),
                venue: "kalshi",
                request: OrderRequest {
                    client_id: ClientOrderId::derive(&[5; 16], 1, 2 * n + 1),
                    market: TICKER.to_owned(),
                    instrument: "no".to_owned(),
                    side: OrderSide::Buy,
                    price: Decimal::new(50, 2),
                    size: Decimal::from(10),
                    time_in_force: TimeInForce::ImmediateOrCancel,
                },
                rules: k_rules.clone(),
                size_decimals: 0,
            },
        ];
        let start = Instant::now();
        let outcome = execute_pair(&legs, &limits, |_, _, _| {
            unreachable!("nothing fills, so nothing is repaired")
        })
        .await;
        let took = start.elapsed();
        assert_eq!(outcome.status, PairStatus::Unfilled, "{outcome:?}");
        let pm_arrived = clob.last_order_arrived().unwrap_or(start);
        let k_arrived = kalshi.last_order_arrived().unwrap_or(start);
        if n >= WARMUP {
            pm_wire.push(pm_arrived.saturating_duration_since(start));
            k_wire.push(k_arrived.saturating_duration_since(start));
            wire.push(pm_arrived.max(k_arrived).saturating_duration_since(start));
            round_trip.push(took);
        }
    }
    assert_eq!(clob.order_posts(), WARMUP + PAIRS);
    assert_eq!(kalshi.order_creates(), WARMUP + PAIRS);

    println!("Cross-venue pair path against the CLOB and Kalshi stand-ins on loopback");
    report("polymarket", pm_wire);
    report("kalshi", k_wire);
    report("to the wire", wire);
    report("round trip", round_trip);
}
