//! Client-side rate limiting, sized from each venue's documented limits.
//!
//! [`RateLimiter`] is a GCRA token bucket on tokio's clock (so tests can run
//! it on a paused clock): `limit` units per `period`, with up to `burst` units
//! at once. Callers reserve their slot under a lock and then sleep outside
//! it, so concurrent callers are served first come, first served.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct State {
    /// Theoretical arrival time: when the bucket will be empty of debt.
    tat: Instant,
    /// Time that one unit costs (`period / limit`).
    interval: Duration,
    /// How far ahead `tat` may run before callers wait (`interval × burst`).
    tolerance: Duration,
}

/// A token bucket: `limit` units per `period`, bursting to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    name: &'static str,
    state: Mutex<State>,
}

fn interval_of(limit: u32, period: Duration) -> Duration {
    period / limit.max(1)
}

impl RateLimiter {
    /// `limit` units per `period`; a full `limit` may be spent at once.
    pub fn new(name: &'static str, limit: u32, period: Duration) -> Self {
        Self::with_burst(name, limit, period, limit)
    }

    /// `limit` units per `period`, with at most `burst` at once.
    pub fn with_burst(name: &'static str, limit: u32, period: Duration, burst: u32) -> Self {
        let interval = interval_of(limit, period);
        Self {
            name,
            state: Mutex::new(State {
                tat: Instant::now(),
                interval,
                tolerance: interval * burst.max(1),
            }),
        }
    }

    /// The limiter's name (the endpoint class it guards).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Re-sizes the limiter (e.g. from Binance's `exchangeInfo.rateLimits`).
    pub fn set_limit(&self, limit: u32, period: Duration, burst: u32) {
        let mut state = self.lock();
        state.interval = interval_of(limit, period);
        state.tolerance = state.interval * burst.max(1);
    }

    /// The current sustained interval per unit.
    pub fn interval(&self) -> Duration {
        self.lock().interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another caller panicked mid-update of
        // plain timestamps; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `cost` units and returns when they may be spent.
    pub async fn acquire(&self, cost: u32) {
        let ready_at = {
            let mut state = self.lock();
            let now = Instant::now();
            let tat = state.tat.max(now);
            let new_tat = tat + state.interval * cost;
            state.tat = new_tat;
            new_tat.checked_sub(state.tolerance).unwrap_or(now)
        };
        if ready_at > Instant::now() {
            tracing::debug!(limiter = self.name, "rate limit: waiting for a slot");
            tokio::time::sleep_until(ready_at).await;
        }
    }
}

/// Documented limits per venue and endpoint class (VENUES.md).
pub mod limits {
    use std::time::Duration;

    use super::RateLimiter;

    const TEN_S: Duration = Duration::from_secs(10);
    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);

    /// Polymarket: 15,000 per 10 s across all APIs.
    pub fn polymarket_global() -> RateLimiter {
        RateLimiter::new("polymarket global", 15_000, TEN_S)
    }
    /// Gamma, general: 4,000 per 10 s.
    pub fn gamma_general() -> RateLimiter {
        RateLimiter::new("gamma general", 4_000, TEN_S)
    }
    /// Gamma `/events`: 500 per 10 s.
    pub fn gamma_events() -> RateLimiter {
        RateLimiter::new("gamma /events", 500, TEN_S)
    }
    /// Gamma `/markets`: 300 per 10 s.
    pub fn gamma_markets() -> RateLimiter {
        RateLimiter::new("gamma /markets", 300, TEN_S)
    }
    /// CLOB, general: 9,000 per 10 s.
    pub fn clob_general() -> RateLimiter {
        RateLimiter::new("clob general", 9_000, TEN_S)
    }
    /// CLOB `/book`, `/price`, `/midpoint`: 1,500 per 10 s.
    pub fn clob_book() -> RateLimiter {
        RateLimiter::new("clob /book", 1_500, TEN_S)
    }
    /// CLOB `/books`, `/prices`, `/midpoints`: 500 per 10 s.
    pub fn clob_books() -> RateLimiter {
        RateLimiter::new("clob /books", 500, TEN_S)
    }
    /// Kalshi reads, Basic tier: 20 per second.
    pub fn kalshi_read() -> RateLimiter {
        RateLimiter::new("kalshi read", 20, SECOND)
    }
    /// Kalshi writes, Basic tier: 10 per second.
    pub fn kalshi_write() -> RateLimiter {
        RateLimiter::new("kalshi write", 10, SECOND)
    }
    /// Binance US `REQUEST_WEIGHT`: 1,200 per minute until `exchangeInfo` says otherwise.
    pub fn binance_weight() -> RateLimiter {
        RateLimiter::new("binance weight", 1_200, MINUTE)
    }
    /// Binance US `ORDERS`: 10 per second until `exchangeInfo` says otherwise.
    pub fn binance_orders() -> RateLimiter {
        RateLimiter::new("binance orders", 10, SECOND)
    }
    /// Coinbase Exchange public: 10 per second, bursts to 15.
    pub fn coinbase_public() -> RateLimiter {
        RateLimiter::with_burst("coinbase public", 10, SECOND, 15)
    }
    /// Coinbase Exchange private: 15 per second, bursts to 30.
    pub fn coinbase_private() -> RateLimiter {
        RateLimiter::with_burst("coinbase private", 15, SECOND, 30)
    }
    /// Kraken public: about 1 per second.
    pub fn kraken_public() -> RateLimiter {
        RateLimiter::with_burst("kraken public", 1, SECOND, 1)
    }
    /// Kraken private, Starter tier: counter max 15, decaying 0.33/s (1 per 3 s).
    pub fn kraken_private() -> RateLimiter {
        RateLimiter::with_burst("kraken private", 1, Duration::from_secs(3), 15)
    }
    /// Alpaca: 200 per minute.
    pub fn alpaca() -> RateLimiter {
        RateLimiter::new("alpaca", 200, MINUTE)
    }
}

/// One Kalshi account's read and write budgets, as token buckets in the
/// exchange's units: a request costs [`KalshiLimits::REQUEST`] tokens
/// (10), a cancel inside a batch cancel a fifth of that (VENUES.md §2:
/// "each cancel counts as 0.2"). The buckets are sized from the account's
/// tier (`GET /account/limits`, [`KalshiLimits::apply`]) and start at the
/// documented Basic tier. Each tenant's executor owns its own, so one
/// tenant's burst never spends another's budget.
#[derive(Debug)]
pub struct KalshiLimits {
    pub read: RateLimiter,
    pub write: RateLimiter,
    tier: Mutex<String>,
}

/// A Kalshi tier's budgets, in requests per second (VENUES.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KalshiTier {
    pub read_per_s: u32,
    pub write_per_s: u32,
}

impl KalshiTier {
    pub const BASIC: Self = Self::new(20, 10);
    pub const ADVANCED: Self = Self::new(30, 30);
    pub const PREMIER: Self = Self::new(100, 100);
    pub const PRIME: Self = Self::new(400, 400);

    const fn new(read_per_s: u32, write_per_s: u32) -> Self {
        Self {
            read_per_s,
            write_per_s,
        }
    }

    /// The documented tier of this name (`basic`, `advanced`, …).
    pub fn named(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "basic" => Some(Self::BASIC),
            "advanced" => Some(Self::ADVANCED),
            "premier" => Some(Self::PREMIER),
            "prime" => Some(Self::PRIME),
            _ => None,
        }
    }
}

/// What `GET /account/limits` says, in either of its published shapes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct KalshiAccountLimits {
    #[serde(default)]
    pub usage_tier: Option<String>,
    /// The flat shape: requests per second.
    #[serde(default)]
    pub read_limit: Option<u32>,
    #[serde(default)]
    pub write_limit: Option<u32>,
    /// The token-bucket shape: tokens per second and bucket size.
    #[serde(default)]
    pub read: Option<KalshiBucket>,
    #[serde(default)]
    pub write: Option<KalshiBucket>,
}

/// One token bucket as `GET /account/limits` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct KalshiBucket {
    pub refill_rate: u32,
    pub bucket_capacity: u32,
}

impl Default for KalshiLimits {
    fn default() -> Self {
        Self::for_tier("basic", KalshiTier::BASIC)
    }
}

impl KalshiLimits {
    /// Tokens one request costs.
    pub const REQUEST: u32 = 10;
    /// Tokens one cancel inside a batch cancel costs (0.2 of a request).
    pub const BATCH_CANCEL_ITEM: u32 = 2;

    /// Budgets of a documented tier: its per-second rate, a second's worth at once.
    pub fn for_tier(name: &str, tier: KalshiTier) -> Self {
        let bucket = |per_s: u32| per_s.saturating_mul(Self::REQUEST);
        Self {
            read: RateLimiter::new(
                "kalshi read",
                bucket(tier.read_per_s),
                Duration::from_secs(1),
            ),
            write: RateLimiter::new(
                "kalshi write",
                bucket(tier.write_per_s),
                Duration::from_secs(1),
            ),
            tier: Mutex::new(name.to_owned()),
        }
    }

    /// The tier the buckets are sized for.
    pub fn tier(&self) -> String {
        self.tier.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-sizes the buckets from the account's answer: token buckets as
    /// given, else the flat per-second limits, else the named tier; an
    /// answer with none of these leaves the buckets as they are.
    pub fn apply(&self, limits: &KalshiAccountLimits) {
        let named = limits.usage_tier.as_deref().and_then(KalshiTier::named);
        let size = |limiter: &RateLimiter,
                    bucket: Option<KalshiBucket>,
                    flat: Option<u32>,
                    tier: Option<u32>| {
            if let Some(b) = bucket.filter(|b| b.refill_rate > 0) {
                limiter.set_limit(
                    b.refill_rate,
                    Duration::from_secs(1),
                    b.bucket_capacity.max(Self::REQUEST),
                );
            } else if let Some(per_s) = flat.or(tier).filter(|n| *n > 0) {
                let tokens = per_s.saturating_mul(Self::REQUEST);
                limiter.set_limit(tokens, Duration::from_secs(1), tokens);
            }
        };
        size(
            &self.read,
            limits.read,
            limits.read_limit,
            named.map(|t| t.read_per_s),
        );
        size(
            &self.write,
            limits.write,
            limits.write_limit,
            named.map(|t| t.write_per_s),
        );
        if let Some(tier) = &limits.usage_tier {
            *self.tier.lock().unwrap_or_else(|e| e.into_inner()) = tier.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_burst_over_the_coinbase_public_limit_is_spread_to_ten_per_second() {
        let limiter = Arc::new(limits::coinbase_public());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..35 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                limiter.acquire(1).await;
                Instant::now() - start
            }));
        }
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap_or_else(|e| panic!("{e}")));
        }
        done.sort();
        // The documented burst of 15 goes at once…
        assert!(done[..15].iter().all(|d| d.is_zero()), "{done:?}");
        // …then one every 100 ms: the 35th request is 2 s in.
        for (i, d) in done.iter().enumerate().skip(15) {
            let expected = Duration::from_millis(100) * (i as u32 - 14);
            assert_eq!(*d, expected, "request {i}");
        }
        assert_eq!(done[34], Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn kalshi_basic_writes_go_ten_a_second_and_one_tenant_never_spends_anothers() {
        let a = KalshiLimits::default();
        let b = KalshiLimits::default();
        let start = Instant::now();
        // Tenant A: a second's worth of writes at once, then one every 100 ms.
        for _ in 0..10 {
            a.write.acquire(KalshiLimits::REQUEST).await;
        }
        assert_eq!(Instant::now() - start, Duration::ZERO);
        a.write.acquire(KalshiLimits::REQUEST).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        // Tenant B's bucket is its own: full, no wait.
        let b_start = Instant::now();
        for _ in 0..10 {
            b.write.acquire(KalshiLimits::REQUEST).await;
        }
        assert_eq!(Instant::now() - b_start, Duration::ZERO);
        // Reads are a separate bucket of 20 a second.
        assert_eq!(a.read.interval(), Duration::from_millis(5));
        assert_eq!(a.tier(), "basic");
    }

    #[test]
    fn kalshi_buckets_follow_the_accounts_limits_in_either_shape() {
        let limits = KalshiLimits::default();
        let flat: KalshiAccountLimits =
            serde_json::from_str(r#"{"usage_tier":"advanced","read_limit":30,"write_limit":30}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        limits.apply(&flat);
        assert_eq!(limits.tier(), "advanced");
        // 30 requests a second = 300 tokens a second.
        assert_eq!(limits.write.interval(), Duration::from_secs(1) / 300);
        let buckets: KalshiAccountLimits = serde_json::from_str(
            r#"{"usage_tier":"premier","read":{"refill_rate":1000,"bucket_capacity":2000},
                "write":{"refill_rate":500,"bucket_capacity":500},"grants":[]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        limits.apply(&buckets);
        assert_eq!(limits.tier(), "premier");
        assert_eq!(limits.read.interval(), Duration::from_millis(1));
        assert_eq!(limits.write.interval(), Duration::from_millis(2));
        // Only a tier name: its documented budgets.
        let named: KalshiAccountLimits =
            serde_json::from_str(r#"{"usage_tier":"Prime"}"#).unwrap_or_else(|e| panic!("{e}"));
        limits.apply(&named);
        assert_eq!(limits.write.interval(), Duration::from_secs(1) / 4000);
    }

    #[tokio::test(start_paused = true)]
    async fn binance_weight_costs_are_charged_and_resizing_changes_the_rate() {
        let limiter = limits::binance_weight();
        let start = Instant::now();
        // 1,200 weight per minute: a full burst, then depth@limit=5000 (weight 50)
        // must wait 50 × 50 ms = 2.5 s.
        limiter.acquire(1_200).await;
        assert_eq!(Instant::now() - start, Duration::ZERO);
        limiter.acquire(50).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(2_500));

        limiter.set_limit(6_000, Duration::from_secs(60), 6_000);
        assert_eq!(limiter.interval(), Duration::from_millis(10));
    }
}
