//! The live order path against the CLOB stand-in on loopback (a plain bench
//! binary: `cargo bench -p polybot-venues --features testing --bench
//! order_path`).
//!
//! - signing: an order built and signed through the official SDK (lot and
//!   tick checks, EIP-712 hash, secp256k1 signature), nothing sent;
//! - to the wire: from the executor's `place` call (client id, rules check,
//!   build, sign, journal, fence, serialise, L2 HMAC headers) until the
//!   stand-in has the whole request;
//! - round trip: until the executor returns the venue's answer.
//!
//! Each order is new (its own client id), rests nowhere (no liquidity: the
//! stand-in answers "unmatched"), so every iteration does the full work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use polybot_venues::execution::polymarket::{
    ApiCredentials, POLYGON, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{
    ClientOrderId, Executor, NoFence, OrderRequest, OrderSide, TimeInForce,
};
use polybot_venues::testing::{ClobStandIn, StandInMarket};
use rust_decimal::Decimal;
use secrecy::SecretString;

const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const WARMUP: u64 = 200;
const ORDERS: u64 = 2_000;

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

fn order(market: &StandInMarket, n: u64) -> OrderRequest {
    OrderRequest {
        client_id: ClientOrderId::derive(&[3; 16], 1, n),
        market: market.condition_id.clone(),
        instrument: market.tokens[0].clone(),
        side: OrderSide::Buy,
        price: Decimal::new(40, 2),
        size: Decimal::from(10),
        time_in_force: TimeInForce::ImmediateOrCancel,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, Decimal::from(1_000_000));
    let market = StandInMarket::binary(1);
    clob.list_market(market.clone());
    let keys = PolymarketKeys {
        private_key: SecretString::from(KEY),
        api: Some(ApiCredentials {
            api_key: SecretString::from(api_key),
            secret: SecretString::from(secret),
            passphrase: SecretString::from(passphrase),
        }),
    };
    let settings = PolymarketSettings {
        host: clob.url(),
        chain_id: POLYGON,
        timeout: Duration::from_secs(5),
    };
    let exec = PolymarketExecutor::connect(&settings, &keys, Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = exec
        .market_rules(&market.condition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut signing = Vec::with_capacity(ORDERS as usize);
    for n in 0..WARMUP + ORDERS {
        let request = order(&market, 1_000_000 + n);
        let start = Instant::now();
        let signed = exec.sign(&request, &rules).await;
        let took = start.elapsed();
        assert!(signed.is_ok(), "{:?}", signed.err());
        if n >= WARMUP {
            signing.push(took);
        }
    }

    let mut wire = Vec::with_capacity(ORDERS as usize);
    let mut round_trip = Vec::with_capacity(ORDERS as usize);
    for n in 0..WARMUP + ORDERS {
        let request = order(&market, n);
        let start = Instant::now();
        let placed = exec.place(&request, &rules).await;
        let took = start.elapsed();
        assert!(placed.is_ok(), "{:?}", placed.err());
        let arrived = clob.last_order_arrived().unwrap_or(start);
        if n >= WARMUP {
            wire.push(arrived.saturating_duration_since(start));
            round_trip.push(took);
        }
    }
    assert_eq!(clob.order_posts(), WARMUP + ORDERS);

    println!("Polymarket order path against the CLOB stand-in on loopback");
    report("signing", signing);
    report("to the wire", wire);
    report("round trip", round_trip);
}
