//! What Kalshi's request signing costs (a plain bench binary:
//! `cargo bench -p polybot-venues --bench kalshi_signing`).
//!
//! - sign: one RSA-PSS (SHA-256, MGF1-SHA256, 32-byte salt) signature of
//!   `timestamp ‖ METHOD ‖ path` with a 2048-bit key, blinded, base64 — the
//!   work every signed Kalshi request adds before it leaves;
//! - headers: the three `KALSHI-ACCESS-*` headers built around it.
//!
//! Every iteration signs a new timestamp, so nothing is cached. Wall-clock
//! percentiles include waiting for a core on a loaded machine; the mean CPU
//! time per signature (the thread's own, from `/proc/thread-self/schedstat`
//! on Linux) does not.

use std::time::{Duration, Instant};

use polybot_venues::signing::kalshi::KalshiSigner;
use secrecy::SecretString;

const PEM: &str = include_str!("../tests/fixtures/kalshi_test_key_pkcs8.pem");
const WARMUP: i64 = 50;
const SIGNATURES: i64 = 1_000;

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

/// The calling thread's CPU time so far (Linux), when the kernel says.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn cpu_line(name: &str, before: Option<Duration>, after: Option<Duration>, n: i64) {
    if let (Some(before), Some(after), Ok(n)) = (before, after, u32::try_from(n)) {
        println!(
            "{name:<8} mean CPU time per signature: {} µs",
            micros((after - before) / n.max(1))
        );
    }
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let per_s = u128::try_from(samples.len()).unwrap_or(u128::MAX) * 1_000_000_000
        / total.as_nanos().max(1);
    println!(
        "{name:<8} n={:<5} p50={:>8} µs  p99={:>8} µs  max={:>8} µs  ≈{per_s}/s on one core",
        samples.len(),
        micros(percentile(&samples, 500)),
        micros(percentile(&samples, 990)),
        micros(samples.last().copied().unwrap_or_default()),
    );
}

fn main() {
    let signer = KalshiSigner::from_pem("bench-key", &SecretString::from(PEM))
        .unwrap_or_else(|e| panic!("the bench key: {e}"));
    let path = "/trade-api/v2/portfolio/orders";
    for ts in 0..WARMUP {
        std::hint::black_box(signer.sign(ts, "POST", path));
    }
    let mut sign = Vec::with_capacity(SIGNATURES as usize);
    let cpu_before = thread_cpu();
    for ts in 0..SIGNATURES {
        let start = Instant::now();
        std::hint::black_box(signer.sign(1_700_000_000_000 + ts, "POST", path));
        sign.push(start.elapsed());
    }
    let cpu_sign = thread_cpu();
    let mut headers = Vec::with_capacity(SIGNATURES as usize);
    for ts in 0..SIGNATURES {
        let start = Instant::now();
        std::hint::black_box(signer.headers(1_700_000_000_000 + ts, "GET", path));
        headers.push(start.elapsed());
    }
    let cpu_headers = thread_cpu();
    println!("Kalshi RSA-PSS request signing, 2048-bit key");
    report("sign", sign);
    report("headers", headers);
    cpu_line("sign", cpu_before, cpu_sign, SIGNATURES);
    cpu_line("headers", cpu_sign, cpu_headers, SIGNATURES);
}
