//! Live feed health: each feed's state as heartbeats report it
//! ([`FeedStatus`], shared by the feed tasks through [`Shared`]), and what it
//! means for the strategies ([`HealthReporter`] turns it into the engine's
//! [`FeedHealth`] events, so that a recording reproduces it).
//!
//! Not here: the feeds themselves, or how the engine shows strategy health.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use polybot_core::strategy::{StrategiesConfig, StrategyKind};
use polybot_core::worker::{FeedState, FeedStatus};
use polybot_engine::{Clock, FeedHealth, RateLimit, Timestamp};
use polybot_venues::{ErrorKind, VenueError};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::plan::{FeedPlan, NEWSAPI};
use crate::source::SystemClock;

pub(super) fn now_ms() -> i64 {
    SystemClock.now().0
}

#[derive(Debug, Default)]
struct State {
    /// Bumped on every change the engine should hear about.
    version: u64,
    feeds: BTreeMap<&'static str, FeedStatus>,
    /// NewsAPI's 429: until when, and why.
    news_limited: Option<RateLimit>,
    /// When the Polymarket stream last delivered a market message.
    stream_seen: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Wakes the source when the engine should hear about a change.
    changed: Notify,
}

/// The feeds' health, written by the feed tasks and read by the source.
#[derive(Debug, Clone, Default)]
pub(super) struct Shared(Arc<Inner>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, state: &mut State) {
        state.version += 1;
        self.0.changed.notify_one();
    }

    /// Resolves once something the engine should hear about has changed
    /// since the last call (at once if it changed meanwhile).
    pub(super) async fn changed(&self) {
        self.0.changed.notified().await;
    }

    /// Registers a feed before its first request, so health lists it.
    pub(super) fn expect(&self, key: &'static str) {
        let mut s = self.lock();
        s.feeds.entry(key).or_default();
        self.bump(&mut s);
    }

    pub(super) fn ok(&self, key: &'static str) {
        let mut s = self.lock();
        let v = s.feeds.entry(key).or_default();
        let changed = v.status != FeedState::Ok;
        v.status = FeedState::Ok;
        v.requests_ok += 1;
        v.last_ok = Some(now_ms());
        v.fix = None;
        if changed {
            tracing::info!(feed = key, "live feed is answering");
            self.bump(&mut s);
        }
    }

    /// Records a failure with its context; logged at warn when the status
    /// or the message changes, at debug while it repeats.
    pub(super) fn fail(
        &self,
        key: &'static str,
        status: FeedState,
        message: String,
        fix: Option<String>,
    ) {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        let mut s = self.lock();
        let v = s.feeds.entry(key).or_default();
        let changed = v.status != status || v.last_error.as_deref() != Some(message.as_str());
        v.status = status;
        v.errors += 1;
        v.fix = fix;
        v.last_error = Some(message.clone());
        let status = status.as_str();
        if changed {
            tracing::warn!(feed = key, status, error = %message, "live feed error");
            self.bump(&mut s);
        } else {
            tracing::debug!(feed = key, status, error = %message, "live feed error (repeated)");
        }
    }

    pub(super) fn venue_error(&self, key: &'static str, err: &VenueError) {
        let status = match err.kind() {
            ErrorKind::GeoBlocked => FeedState::GeoBlocked,
            ErrorKind::RateLimited { .. } | ErrorKind::Banned { .. } => FeedState::RateLimited,
            ErrorKind::Unauthorized => FeedState::Unauthorized,
            ErrorKind::Unreachable { .. } | ErrorKind::Timeout { .. } => FeedState::Unreachable,
            _ => FeedState::Error,
        };
        self.fail(key, status, err.to_string(), err.fix());
    }

    /// NewsAPI refuses the worker until `until` (wall-clock ms).
    pub(super) fn news_rate_limited(&self, until: i64, reason: String) {
        let mut s = self.lock();
        s.news_limited = Some(RateLimit {
            until: Some(Timestamp(until)),
            reason,
        });
        self.bump(&mut s);
    }

    /// NewsAPI answered: a rate limit it had set is over.
    pub(super) fn news_answered(&self) {
        let mut s = self.lock();
        if s.news_limited.take().is_some() {
            self.bump(&mut s);
        }
    }

    pub(super) fn stream_seen(&self) {
        self.lock().stream_seen = Some(Instant::now());
    }

    pub(super) fn stream_fresh(&self, within: Duration) -> bool {
        self.lock()
            .stream_seen
            .is_some_and(|t| t.elapsed() <= within)
    }

    /// Every feed's health, by feed key, for heartbeats.
    pub(super) fn feeds(&self) -> BTreeMap<String, FeedStatus> {
        self.lock()
            .feeds
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
}

/// Turns the feeds' health into [`FeedHealth`] events for the enabled
/// strategies, each only when what it says about a strategy changed.
#[derive(Debug)]
pub(super) struct HealthReporter {
    plan: FeedPlan,
    enabled: Vec<StrategyKind>,
    seen_version: Option<u64>,
    /// What the engine was last told, per strategy (nothing yet: healthy).
    told: BTreeMap<StrategyKind, FeedHealth>,
}

impl HealthReporter {
    pub(super) fn new(plan: FeedPlan, strategies: &StrategiesConfig) -> Self {
        Self {
            plan,
            enabled: StrategyKind::ALL
                .into_iter()
                .filter(|k| strategies.is_enabled(*k))
                .collect(),
            seen_version: None,
            told: BTreeMap::new(),
        }
    }

    /// What the engine has not heard yet; cheap when nothing changed.
    pub(super) fn changes(&mut self, shared: &Shared) -> Vec<FeedHealth> {
        let state = shared.lock();
        if self.seen_version == Some(state.version) {
            return Vec::new();
        }
        self.seen_version = Some(state.version);
        let mut out = Vec::new();
        for &kind in &self.enabled {
            let health = strategy_health(kind, &self.plan, &state);
            let told = self.told.get(&kind);
            let unchanged = match told {
                Some(told) => *told == health,
                None => health.degraded.is_none() && health.rate_limited.is_none(),
            };
            if !unchanged {
                self.told.insert(kind, health.clone());
                out.push(health);
            }
        }
        out
    }
}

/// `kind`'s feed health: degraded by each failing feed it depends on (with
/// the feed's error), rate limited while NewsAPI refuses the news strategy.
fn strategy_health(kind: StrategyKind, plan: &FeedPlan, state: &State) -> FeedHealth {
    let failing: Vec<String> = plan
        .strategy_feeds(kind)
        .into_iter()
        .filter_map(|key| {
            let v = state.feeds.get(key)?;
            // A rate-limited NewsAPI is reported as such, not as degraded.
            if matches!(v.status, FeedState::Ok | FeedState::Connecting)
                || (key == NEWSAPI && v.status == FeedState::RateLimited)
            {
                return None;
            }
            Some(format!(
                "{key} {}: {}",
                v.status.as_str().replace('_', "-"),
                v.last_error.as_deref().unwrap_or("no detail")
            ))
        })
        .collect();
    FeedHealth {
        strategy: kind,
        degraded: (!failing.is_empty()).then(|| failing.join("; ")),
        rate_limited: match kind {
            StrategyKind::NewsArb => state.news_limited.clone(),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reporter() -> (HealthReporter, Shared) {
        let config = polybot_core::strategy::parse_strategies(&json!({
            "complement_arb": {"venues": ["polymarket"]},
            "crypto_15m": {"assets": ["BTC"], "spot_venues": ["binance_us"]},
            "news_arb": {"newsapi_query": "fed", "rules": []}
        }))
        .unwrap();
        let plan = FeedPlan::for_strategies(&config);
        (HealthReporter::new(plan, &config), Shared::default())
    }

    #[test]
    fn starting_and_answering_feeds_tell_the_engine_nothing() {
        let (mut reporter, shared) = reporter();
        shared.expect("binance_us");
        shared.ok("polymarket_clob");
        assert_eq!(reporter.changes(&shared), vec![]);
    }

    #[test]
    fn a_failing_feed_degrades_the_strategies_that_read_it_once_until_it_recovers() {
        let (mut reporter, shared) = reporter();
        shared.fail(
            "binance_us",
            FeedState::GeoBlocked,
            "Binance US GET /api/v3/ticker/price: geo-blocked (HTTP 451)".into(),
            None,
        );
        assert_eq!(
            reporter.changes(&shared),
            vec![FeedHealth {
                strategy: StrategyKind::Crypto15m,
                degraded: Some(
                    "binance_us geo-blocked: Binance US GET /api/v3/ticker/price: geo-blocked (HTTP 451)"
                        .into()
                ),
                rate_limited: None,
            }]
        );
        // The same failure again changes nothing the engine knows.
        shared.ok("polymarket_gamma");
        assert_eq!(reporter.changes(&shared), vec![]);
        shared.ok("binance_us");
        assert_eq!(
            reporter.changes(&shared),
            vec![FeedHealth {
                strategy: StrategyKind::Crypto15m,
                degraded: None,
                rate_limited: None,
            }]
        );
    }

    #[test]
    fn a_newsapi_429_rate_limits_the_news_strategy_without_degrading_it() {
        let (mut reporter, shared) = reporter();
        shared.news_rate_limited(5_000, "rate limited: 429".into());
        shared.fail(NEWSAPI, FeedState::RateLimited, "429".into(), None);
        assert_eq!(
            reporter.changes(&shared),
            vec![FeedHealth {
                strategy: StrategyKind::NewsArb,
                degraded: None,
                rate_limited: Some(RateLimit {
                    until: Some(Timestamp(5_000)),
                    reason: "rate limited: 429".into(),
                }),
            }]
        );
        shared.news_answered();
        shared.ok(NEWSAPI);
        assert_eq!(
            reporter.changes(&shared),
            vec![FeedHealth {
                strategy: StrategyKind::NewsArb,
                degraded: None,
                rate_limited: None,
            }]
        );
    }
}
