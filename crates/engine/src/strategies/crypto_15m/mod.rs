//! 15-minute crypto up/down: Polymarket's `{coin}-updown-15m-{start}` markets
//! priced from spot (the median of the configured exchanges' fresh prices)
//! against the window's opening price, the time left and the realised
//! volatility of recent spot returns (see [`model`]). An outcome is bought
//! when its fair value beats its ask plus the taker fee by more than `min_edge`.
//!
//! The opening price is the market's `reference_price` when the feed gives
//! it, else the first composite spot price at or after the window opens.

pub mod model;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use rust_decimal::Decimal;

use polybot_core::strategy::{Crypto15mConfig, StrategyKind, Venue};

use super::{LegRef, Proposal, plan_equal_size, sweep_equal_size};
use crate::clock::Timestamp;
use crate::event::{Direction, MarketDef};
use crate::market::Markets;
use crate::types::{Asset, FxHashMap, MarketIdx, OutcomeIdx};

/// Length of the windows this strategy trades.
pub const WINDOW_SECS: i64 = 900;

/// Parses `btc-updown-15m-1777467600` into (BTC, window start).
pub fn parse_updown_slug(id: &str) -> Option<(Asset, Timestamp)> {
    let (coin, start) = id.split_once("-updown-15m-")?;
    if coin.is_empty() || !coin.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let start: i64 = start.parse().ok()?;
    (start % WINDOW_SECS == 0).then(|| (Asset::new(coin), Timestamp::from_secs(start)))
}

/// What the model made of a window at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairValue {
    pub prob_up: Decimal,
    pub spot: Decimal,
    pub open: Decimal,
    pub variance_per_sec: Decimal,
    pub remaining_secs: Decimal,
}

#[derive(Debug, Clone)]
struct WindowMarket {
    asset: usize,
    up: OutcomeIdx,
    start: Timestamp,
    end: Timestamp,
    open: Option<Decimal>,
    last_eval: Timestamp,
    cooldown_until: Timestamp,
}

/// Realised variance of spot returns sampled at most once a second, over a
/// sliding window, with running sums so that an update is O(1) amortised.
#[derive(Debug, Clone)]
struct Volatility {
    window_ms: i64,
    samples: VecDeque<(Timestamp, Decimal, i64)>,
    last: Option<(Timestamp, Decimal)>,
    sum_r2: Decimal,
    sum_dt_ms: i64,
}

impl Volatility {
    fn new(window_secs: u64) -> Self {
        Self {
            window_ms: (window_secs as i64).saturating_mul(1000),
            samples: VecDeque::with_capacity(1024),
            last: None,
            sum_r2: Decimal::ZERO,
            sum_dt_ms: 0,
        }
    }

    fn observe(&mut self, ts: Timestamp, price: Decimal) {
        let Some((last_ts, last_price)) = self.last else {
            self.last = Some((ts, price));
            return;
        };
        let dt = ts.millis_since(last_ts);
        if dt < 1000 || last_price.is_zero() {
            return;
        }
        let r = (price - last_price) / last_price;
        // Rounded so that adding and later subtracting it leaves the sum exact.
        let r2 = (r * r).round_dp(20);
        self.samples.push_back((ts, r2, dt));
        self.sum_r2 += r2;
        self.sum_dt_ms += dt;
        self.last = Some((ts, price));
        let horizon = Timestamp(ts.0 - self.window_ms);
        while let Some(&(t, r2, dt)) = self.samples.front() {
            if t >= horizon {
                break;
            }
            self.sum_r2 -= r2;
            self.sum_dt_ms -= dt;
            self.samples.pop_front();
        }
    }

    fn count(&self) -> usize {
        self.samples.len()
    }

    /// Variance of returns per second.
    fn per_second(&self) -> Option<Decimal> {
        (self.sum_dt_ms > 0)
            .then(|| self.sum_r2 * Decimal::from(1000) / Decimal::from(self.sum_dt_ms))
    }
}

#[derive(Debug, Clone)]
struct AssetState {
    asset: Asset,
    latest: [Option<(Decimal, Timestamp)>; 5],
    composite: Option<(Decimal, Timestamp)>,
    vol: Volatility,
    markets: Vec<MarketIdx>,
}

#[derive(Debug)]
pub struct Crypto15m {
    config: Crypto15mConfig,
    spot_venues: [bool; 5],
    assets: Vec<AssetState>,
    asset_index: FxHashMap<Asset, usize>,
    windows: Vec<Option<WindowMarket>>,
    legs: [LegRef; 1],
    cursor: Vec<(usize, Decimal)>,
}

impl Crypto15m {
    pub fn new(config: Crypto15mConfig) -> Self {
        let mut spot_venues = [false; 5];
        for v in &config.spot_venues {
            spot_venues[v.index()] = true;
        }
        let mut asset_index = FxHashMap::default();
        let assets = config
            .assets
            .iter()
            .enumerate()
            .map(|(i, a)| {
                asset_index.insert(Asset::new(a), i);
                AssetState {
                    asset: Asset::new(a),
                    latest: [None; 5],
                    composite: None,
                    vol: Volatility::new(config.volatility_window_secs),
                    markets: Vec::new(),
                }
            })
            .collect();
        // Build the Φ table now rather than inside the first decision.
        model::warm_up();
        Self {
            config,
            spot_venues,
            assets,
            asset_index,
            windows: Vec::new(),
            legs: [LegRef {
                market: 0,
                outcome: 0,
            }],
            cursor: Vec::with_capacity(1),
        }
    }

    pub fn config(&self) -> &Crypto15mConfig {
        &self.config
    }

    /// Whether `market` is a 15-minute window this strategy trades.
    #[inline]
    pub fn watches(&self, market: MarketIdx) -> bool {
        matches!(self.windows.get(market), Some(Some(_)))
    }

    pub fn on_market_listed(&mut self, market: MarketIdx, def: &MarketDef) {
        if self.windows.len() <= market {
            self.windows.resize(market + 1, None);
        }
        if def.venue != Venue::Polymarket || def.outcomes.len() != 2 {
            return;
        }
        let from_slug = parse_updown_slug(def.id.as_str());
        let asset = match (&def.recurring, &from_slug) {
            (Some(spec), _) if spec.direction == Direction::Up => spec.asset.clone(),
            (None, Some((asset, _))) => asset.clone(),
            _ => return,
        };
        let Some(start) = def.window_start.or(from_slug.as_ref().map(|s| s.1)) else {
            return;
        };
        let end = def
            .closes_at
            .unwrap_or(Timestamp(start.0 + WINDOW_SECS * 1000));
        let Some(&a) = self.asset_index.get(asset.as_str()) else {
            return;
        };
        let up = def
            .outcome_index("Up")
            .or_else(|| def.outcome_index("Yes"))
            .unwrap_or(0);
        let previous = self.windows[market].as_ref();
        self.windows[market] = Some(WindowMarket {
            asset: a,
            up,
            start,
            end,
            open: def.reference_price.or(previous.and_then(|w| w.open)),
            last_eval: previous.map_or(Timestamp::default(), |w| w.last_eval),
            cooldown_until: previous.map_or(Timestamp::default(), |w| w.cooldown_until),
        });
        if !self.assets[a].markets.contains(&market) {
            self.assets[a].markets.push(market);
        }
    }

    /// A spot price arrived: update the composite, the volatility and the
    /// opening prices, then re-price the asset's markets.
    #[allow(clippy::too_many_arguments)]
    pub fn on_spot(
        &mut self,
        now: Timestamp,
        venue: Venue,
        asset: &Asset,
        price: Decimal,
        ts: Timestamp,
        markets: &Markets,
        out: &mut Vec<Proposal>,
    ) {
        if !self.spot_venues[venue.index()] || price <= Decimal::ZERO {
            return;
        }
        let Some(&a) = self.asset_index.get(asset.as_str()) else {
            return;
        };
        let max_age_ms = (self.config.max_spot_age_secs as i64) * 1000;
        let state = &mut self.assets[a];
        state.latest[venue.index()] = Some((price, ts));
        let mut fresh = [Decimal::ZERO; 5];
        let mut n = 0;
        for (p, t) in state.latest.iter().flatten() {
            if now.millis_since(*t) <= max_age_ms {
                fresh[n] = *p;
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        let fresh = &mut fresh[..n];
        fresh.sort_unstable();
        let median = if n % 2 == 1 {
            fresh[n / 2]
        } else {
            (fresh[n / 2 - 1] + fresh[n / 2]) / Decimal::TWO
        };
        state.composite = Some((median, ts));
        state.vol.observe(ts, median);
        for j in 0..self.assets[a].markets.len() {
            let m = self.assets[a].markets[j];
            if let Some(w) = self.windows[m].as_mut()
                && w.open.is_none()
                && ts >= w.start
                && ts < w.end
            {
                w.open = Some(median);
            }
            self.evaluate(now, markets, m, out);
        }
    }

    /// Re-prices markets not priced for `scan_interval_secs` (time decay) and
    /// forgets windows that have ended.
    pub fn on_tick(&mut self, now: Timestamp, markets: &Markets, out: &mut Vec<Proposal>) {
        let interval_ms = (self.config.scan_interval_secs as i64) * 1000;
        for a in 0..self.assets.len() {
            let windows = &self.windows;
            self.assets[a].markets.retain(|&m| {
                windows[m].as_ref().is_some_and(|w| now < w.end)
                    && markets.get(m).resolved.is_none()
            });
            for j in 0..self.assets[a].markets.len() {
                let m = self.assets[a].markets[j];
                let due = self.windows[m]
                    .as_ref()
                    .is_some_and(|w| now.millis_since(w.last_eval) >= interval_ms);
                if due {
                    self.evaluate(now, markets, m, out);
                }
            }
        }
    }

    /// The model's P(Up) for `market` at `now`, with the inputs it used;
    /// none when the window is not open or the inputs are missing or stale.
    pub fn fair_value(&self, now: Timestamp, market: MarketIdx) -> Option<FairValue> {
        let w = self.windows.get(market)?.as_ref()?;
        let remaining_ms = w.end.millis_since(now);
        if now < w.start || remaining_ms <= 0 {
            return None;
        }
        let asset = &self.assets[w.asset];
        let (spot, spot_ts) = asset.composite?;
        let open = w.open?;
        let variance_per_sec = asset.vol.per_second()?;
        if now.millis_since(spot_ts) > (self.config.max_spot_age_secs as i64) * 1000
            || asset.vol.count() < self.config.min_volatility_samples as usize
        {
            return None;
        }
        let remaining_secs = Decimal::new(remaining_ms, 3);
        Some(FairValue {
            prob_up: model::prob_up(spot, open, variance_per_sec, remaining_secs),
            spot,
            open,
            variance_per_sec,
            remaining_secs,
        })
    }

    /// Prices one window market and proposes buying the side with an edge.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        market: MarketIdx,
        out: &mut Vec<Proposal>,
    ) {
        let Some(Some(w)) = self.windows.get_mut(market) else {
            return;
        };
        w.last_eval = now;
        let (up, end, cooldown_until, a) = (w.up, w.end, w.cooldown_until, w.asset);
        let state = markets.get(market);
        if state.resolved.is_some()
            || now < cooldown_until
            || end.millis_since(now) < (self.config.min_remaining_secs as i64) * 1000
        {
            return;
        }
        let Some(FairValue {
            prob_up: p_up,
            spot,
            open,
            remaining_secs: remaining,
            ..
        }) = self.fair_value(now, market)
        else {
            return;
        };
        let asset = &self.assets[a];
        for (outcome, fair) in [(up, p_up), (1 - up, Decimal::ONE - p_up)] {
            self.legs = [LegRef { market, outcome }];
            let size = sweep_equal_size(
                markets,
                &self.legs,
                fair,
                self.config.min_edge,
                self.config.max_size,
                &mut self.cursor,
            );
            if size < self.config.min_size {
                continue;
            }
            let Some((legs, edge)) =
                plan_equal_size(markets, &self.legs, size, fair, self.config.min_edge)
            else {
                continue;
            };
            let summary = format!(
                "{} {} at {} (fee {}) against a fair value of {} ({} spot {} vs open {}, {}s left): edge {} on {} shares",
                state.def.outcomes[outcome],
                state.def.id,
                legs[0].expected_avg_price.round_dp(6).normalize(),
                legs[0].expected_fee.normalize(),
                fair.round_dp(4).normalize(),
                asset.asset,
                spot.normalize(),
                open.normalize(),
                remaining.round_dp(0),
                edge.round_dp(6).normalize(),
                size.normalize(),
            );
            if let Some(Some(w)) = self.windows.get_mut(market) {
                w.cooldown_until = now.plus_secs(self.config.market_cooldown_secs);
            }
            out.push(Proposal {
                strategy: StrategyKind::Crypto15m,
                legs,
                edge,
                size,
                summary,
            });
            return;
        }
    }

    /// Why the strategy cannot price a live window, if it cannot.
    pub fn health_issue(&self, now: Timestamp) -> Option<String> {
        let max_age_ms = (self.config.max_spot_age_secs as i64) * 1000;
        for asset in &self.assets {
            let live = asset.markets.iter().any(|&m| {
                self.windows[m]
                    .as_ref()
                    .is_some_and(|w| now >= w.start && now < w.end)
            });
            let fresh = asset
                .composite
                .is_some_and(|(_, t)| now.millis_since(t) <= max_age_ms);
            if live && !fresh {
                return Some(format!(
                    "no {} spot price newer than {}s from {:?}",
                    asset.asset, self.config.max_spot_age_secs, self.config.spot_venues
                ));
            }
        }
        None
    }
}
