//! Which feeds a tenant's enabled strategies need ([`FeedPlan`]), and which
//! feeds each strategy depends on for its health. Pure: no I/O, no clock.

use std::time::Duration;

use polybot_core::strategy::{StrategiesConfig, StrategyKind, Venue};

/// The feeds the tenant's enabled strategies need (serialized: a worker
/// registers it with the shared market-data service).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedPlan {
    /// Assets whose 15-minute up/down events are followed on Polymarket.
    pub updown_assets: Vec<String>,
    /// Kalshi series whose open markets are followed (`KXBTC15M`), by asset.
    pub kalshi_series: Vec<(String, String)>,
    /// Polymarket market slugs named by curated pairs and news rules.
    pub polymarket_slugs: Vec<String>,
    /// Kalshi tickers named by curated pairs and news rules.
    pub kalshi_tickers: Vec<String>,
    /// Complement arbitrage scans a bounded set of these venues' markets.
    pub complement_polymarket: bool,
    pub complement_kalshi: bool,
    /// Spot venues and the assets to quote on each.
    pub spot: Vec<(Venue, Vec<String>)>,
    /// NewsAPI `q`, when the news strategy sets one.
    pub newsapi_query: Option<String>,
    pub rss_feeds: Vec<String>,
    pub book_every: Duration,
    pub spot_every: Duration,
    pub news_every: Duration,
}

/// A Kalshi ticker is upper case (`KXFED-26JUN-T4.25`); Polymarket slugs are
/// lower case.
fn looks_like_kalshi_ticker(id: &str) -> bool {
    !id.is_empty() && !id.bytes().any(|b| b.is_ascii_lowercase())
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

impl FeedPlan {
    pub fn for_strategies(config: &StrategiesConfig) -> Self {
        let mut plan = FeedPlan {
            book_every: Duration::from_secs(5),
            spot_every: Duration::from_secs(1),
            news_every: Duration::from_secs(60),
            ..FeedPlan::default()
        };
        let mut book_secs: Vec<u64> = Vec::new();
        if let Some(c) = config.complement_arb.as_ref().filter(|c| c.enabled) {
            plan.complement_polymarket = c.venues.contains(&Venue::Polymarket);
            plan.complement_kalshi = c.venues.contains(&Venue::Kalshi);
            book_secs.push(c.scan_interval_secs);
        }
        if let Some(c) = config.cross_venue_arb.as_ref().filter(|c| c.enabled) {
            if c.match_recurring_crypto {
                for asset in &c.assets {
                    push_unique(&mut plan.updown_assets, asset);
                    let series = format!("KX{}15M", asset.to_ascii_uppercase());
                    if !plan.kalshi_series.iter().any(|(s, _)| *s == series) {
                        plan.kalshi_series
                            .push((series, asset.to_ascii_uppercase()));
                    }
                }
            }
            for pair in &c.pairs {
                push_unique(&mut plan.polymarket_slugs, &pair.polymarket);
                push_unique(&mut plan.kalshi_tickers, &pair.kalshi);
            }
            book_secs.push(c.scan_interval_secs);
        }
        if let Some(c) = config.crypto_15m.as_ref().filter(|c| c.enabled) {
            for asset in &c.assets {
                push_unique(&mut plan.updown_assets, asset);
            }
            for venue in &c.spot_venues {
                if !venue.is_prediction_market() {
                    plan.spot.push((*venue, c.assets.clone()));
                }
            }
            book_secs.push(c.scan_interval_secs);
            plan.spot_every = Duration::from_secs(c.scan_interval_secs.max(1));
        }
        if let Some(c) = config.news_arb.as_ref().filter(|c| c.enabled) {
            for rule in &c.rules {
                if looks_like_kalshi_ticker(&rule.market) {
                    push_unique(&mut plan.kalshi_tickers, &rule.market);
                } else {
                    push_unique(&mut plan.polymarket_slugs, &rule.market);
                }
            }
            plan.newsapi_query = c.newsapi_query.clone().filter(|q| !q.trim().is_empty());
            plan.rss_feeds = c.rss_feeds.clone();
            plan.news_every = Duration::from_secs(c.poll_interval_secs.max(1));
        }
        if let Some(min) = book_secs.into_iter().min() {
            plan.book_every = Duration::from_secs(min.max(1));
        }
        plan
    }

    pub(super) fn needs_polymarket(&self) -> bool {
        !self.updown_assets.is_empty()
            || !self.polymarket_slugs.is_empty()
            || self.complement_polymarket
    }

    pub(super) fn needs_kalshi(&self) -> bool {
        !self.kalshi_series.is_empty() || !self.kalshi_tickers.is_empty() || self.complement_kalshi
    }

    pub(super) fn needs_news(&self) -> bool {
        self.newsapi_query.is_some() || !self.rss_feeds.is_empty()
    }

    /// The feeds `kind` depends on, for its health.
    pub(super) fn strategy_feeds(&self, kind: StrategyKind) -> Vec<&'static str> {
        let mut feeds = Vec::new();
        let prediction = |feeds: &mut Vec<&'static str>, pm: bool, kalshi: bool| {
            if pm {
                feeds.extend([POLYMARKET_GAMMA, POLYMARKET_CLOB]);
            }
            if kalshi {
                feeds.push(KALSHI);
            }
        };
        match kind {
            StrategyKind::ComplementArb => prediction(
                &mut feeds,
                self.complement_polymarket,
                self.complement_kalshi,
            ),
            StrategyKind::CrossVenueArb => prediction(&mut feeds, true, true),
            StrategyKind::Crypto15m => {
                prediction(&mut feeds, true, false);
                feeds.extend(self.spot.iter().map(|(v, _)| spot_key(*v)));
            }
            StrategyKind::NewsArb => {
                if self.newsapi_query.is_some() {
                    feeds.push(NEWSAPI);
                }
                if !self.rss_feeds.is_empty() {
                    feeds.push(RSS);
                }
            }
        }
        feeds
    }
}

/// Feed keys, as heartbeats name them.
pub(super) const POLYMARKET_GAMMA: &str = "polymarket_gamma";
pub(super) const POLYMARKET_CLOB: &str = "polymarket_clob";
pub(super) const POLYMARKET_STREAM: &str = "polymarket_stream";
pub(super) const KALSHI: &str = "kalshi";
pub(super) const NEWSAPI: &str = "newsapi";
pub(super) const RSS: &str = "rss";

/// The health key of a spot venue.
pub(super) fn spot_key(venue: Venue) -> &'static str {
    match venue {
        Venue::BinanceUs => "binance_us",
        Venue::Coinbase => "coinbase",
        Venue::Kraken => "kraken",
        Venue::Polymarket => POLYMARKET_CLOB,
        Venue::Kalshi => KALSHI,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_plan_follows_the_enabled_strategies() {
        let config = polybot_core::strategy::parse_strategies(&json!({
            "complement_arb": {"venues": ["polymarket"], "scan_interval_secs": 3},
            "cross_venue_arb": {"assets": ["BTC"], "pairs": [{"polymarket": "fed-cut", "kalshi": "KXFED-26JUN"}]},
            "crypto_15m": {"assets": ["BTC", "ETH"], "spot_venues": ["coinbase", "kraken"], "scan_interval_secs": 2},
            "news_arb": {"newsapi_query": "fed", "rules": [
                {"market": "KXFED-26JUN-T4.25", "outcome": "Yes", "keywords": ["fed"], "fair_price": "0.8"},
                {"market": "fed-cut", "outcome": "Yes", "keywords": ["fed"], "fair_price": "0.8"}
            ]}
        }))
        .unwrap();
        let plan = FeedPlan::for_strategies(&config);
        assert_eq!(plan.updown_assets, vec!["BTC", "ETH"]);
        assert_eq!(
            plan.kalshi_series,
            vec![("KXBTC15M".to_owned(), "BTC".to_owned())]
        );
        assert_eq!(plan.polymarket_slugs, vec!["fed-cut"]);
        assert_eq!(
            plan.kalshi_tickers,
            vec!["KXFED-26JUN", "KXFED-26JUN-T4.25"]
        );
        assert!(plan.complement_polymarket && !plan.complement_kalshi);
        assert_eq!(
            plan.spot,
            vec![
                (Venue::Coinbase, vec!["BTC".to_owned(), "ETH".to_owned()]),
                (Venue::Kraken, vec!["BTC".to_owned(), "ETH".to_owned()])
            ]
        );
        assert_eq!(plan.book_every, Duration::from_secs(2));
        assert_eq!(plan.spot_every, Duration::from_secs(2));
        assert_eq!(plan.newsapi_query.as_deref(), Some("fed"));
        assert_eq!(plan.news_every, Duration::from_secs(60));
    }

    #[test]
    fn each_strategy_depends_on_the_feeds_it_reads() {
        let config = polybot_core::strategy::parse_strategies(&json!({
            "complement_arb": {"venues": ["kalshi"]},
            "crypto_15m": {"assets": ["BTC"], "spot_venues": ["binance_us"]},
            "news_arb": {"rss_feeds": ["https://w.example/rss"], "rules": []}
        }))
        .unwrap();
        let plan = FeedPlan::for_strategies(&config);
        assert_eq!(
            plan.strategy_feeds(StrategyKind::ComplementArb),
            vec![KALSHI]
        );
        assert_eq!(
            plan.strategy_feeds(StrategyKind::Crypto15m),
            vec![POLYMARKET_GAMMA, POLYMARKET_CLOB, "binance_us"]
        );
        assert_eq!(plan.strategy_feeds(StrategyKind::NewsArb), vec![RSS]);
    }
}
