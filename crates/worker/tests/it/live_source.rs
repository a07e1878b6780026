//! The live source against a local mock of every venue: it discovers the
//! markets the strategies need, turns books, spot prices and headlines into
//! the engine's events, reports a geo-blocked venue (451) in health while
//! the others keep flowing, and marks news_arb rate limited on NewsAPI's 429
//! with events in its stream, so that replaying the stream reproduces it.

use crate::live_mock;

use std::collections::BTreeMap;
use std::time::Duration;

use live_mock::{ARB_MARKET, KALSHI_TICKER};
use polybot_core::strategy::{StrategyKind, Venue, parse_strategies};
use polybot_core::worker::FeedState;
use polybot_engine::{
    Asset, BookSnapshot, Clock, Decision, Direction, Engine, EngineConfig, Event, EventClock,
    EventKind, HealthStatus, Level, MarketDef, RecurringSpec, SpotPrice, Timestamp,
};
use polybot_worker::{EventSource, LiveSource, SystemClock};
use rust_decimal_macros::dec;

fn lv(price: rust_decimal::Decimal, size: rust_decimal::Decimal) -> Level {
    Level::new(price, size)
}

/// What the source produced, by kind.
#[derive(Default)]
struct Seen {
    markets: BTreeMap<String, MarketDef>,
    books: BTreeMap<(String, usize), BookSnapshot>,
    spots: BTreeMap<Venue, SpotPrice>,
    headlines: Vec<String>,
    opportunities: Vec<(String, rust_decimal::Decimal)>,
    /// Everything the source produced, in order: a recording of the stream.
    recording: Vec<Event>,
}

impl Seen {
    fn complete(&self) -> bool {
        self.books.contains_key(&(ARB_MARKET.to_owned(), 1))
            && self.books.contains_key(&(KALSHI_TICKER.to_owned(), 1))
            && self.spots.len() == 2
            && !self.headlines.is_empty()
            && self
                .markets
                .keys()
                .filter(|k| k.starts_with("btc-updown-15m-"))
                .count()
                >= 2
    }
}

/// Strategy → (status, reason), as the engine reports its health.
fn health_of<C: Clock>(
    engine: &Engine<C>,
) -> BTreeMap<StrategyKind, (HealthStatus, Option<String>)> {
    engine
        .health()
        .into_iter()
        .map(|h| (h.strategy, (h.status, h.reason)))
        .collect()
}

/// The engine has heard that NewsAPI rate limits news_arb and that the
/// geo-blocked Binance US degrades crypto_15m.
fn heard_of_the_failures<C: Clock>(engine: &Engine<C>) -> bool {
    let health = health_of(engine);
    health[&StrategyKind::NewsArb].0 == HealthStatus::RateLimited
        && health[&StrategyKind::Crypto15m].0 == HealthStatus::Degraded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_data_becomes_engine_events_and_venue_failures_become_health() {
    let server = live_mock::start().await;
    let strategies = parse_strategies(&live_mock::strategies(&server)).unwrap();
    let mut source = LiveSource::start(
        live_mock::settings(&server),
        &strategies,
        &live_mock::keys(),
    )
    .unwrap();
    let mut engine = Engine::new(
        EngineConfig {
            strategies: strategies.clone(),
            risk: Default::default(),
            balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        },
        SystemClock,
    )
    .unwrap();

    let mut seen = Seen::default();
    let mut decisions: Vec<Decision> = Vec::new();
    // A deadline so that a broken source fails the test instead of hanging it.
    let mut paper = polybot_engine::PaperExchange::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(seen.complete() && heard_of_the_failures(&engine)) {
        let event: Event = tokio::time::timeout_at(deadline, source.next_event())
            .await
            .expect("the live source produced every expected event before the deadline")
            .unwrap()
            .unwrap();
        seen.recording.push(event.clone());
        decisions.clear();
        engine.on_event(&event, &mut decisions).unwrap();
        paper.execute(&mut engine, &mut decisions);
        for d in &decisions {
            if let Decision::Opportunity(o) = d {
                for leg in &o.legs {
                    seen.opportunities.push((leg.market.to_string(), o.edge));
                }
            }
        }
        match event.kind {
            EventKind::Market(def) => {
                seen.markets.insert(def.id.to_string(), *def);
            }
            EventKind::Book(book) => {
                seen.books
                    .insert((book.market.to_string(), book.outcome), book);
            }
            EventKind::Spot(spot) => {
                seen.spots.insert(spot.venue, spot);
            }
            EventKind::Headline(h) => seen.headlines.push(h.title),
            EventKind::FeedHealth(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    // Definitions: the complement market, both BTC windows, the Kalshi series market.
    let arb = &seen.markets[ARB_MARKET];
    assert_eq!(arb.venue, Venue::Polymarket);
    assert_eq!(arb.outcomes, vec!["Yes", "No"]);
    assert_eq!(arb.fee_rate, dec!(0.07));
    assert_eq!(arb.question, "Will the Fed cut in June?");
    assert_eq!(arb.closes_at, Some(Timestamp(1_909_008_000_000)));
    assert_eq!(arb.recurring, None);
    for (id, def) in seen
        .markets
        .iter()
        .filter(|(k, _)| k.starts_with("btc-updown-15m-"))
    {
        let start: i64 = id["btc-updown-15m-".len()..].parse().unwrap();
        assert_eq!(start % 900, 0, "{id}");
        assert_eq!(def.outcomes, vec!["Up", "Down"]);
        assert_eq!(def.window_start, Some(Timestamp(start * 1000)));
        assert_eq!(def.closes_at, Some(Timestamp((start + 900) * 1000)));
        assert_eq!(
            def.recurring,
            Some(RecurringSpec {
                asset: Asset::new("BTC"),
                direction: Direction::Up,
                strike: None
            })
        );
        assert_eq!(
            def.resolution_source.as_deref(),
            Some("https://data.chain.link/streams/btc-usd")
        );
    }
    let kalshi = &seen.markets[KALSHI_TICKER];
    assert_eq!(kalshi.venue, Venue::Kalshi);
    assert_eq!(kalshi.fee_rate, dec!(0.07));
    assert_eq!(kalshi.reference_price, Some(dec!(84250.12)));
    assert_eq!(
        kalshi
            .closes_at
            .zip(kalshi.window_start)
            .map(|(c, o)| c.0 - o.0),
        Some(900_000)
    );

    // Books best-first whatever order the venue sent.
    let yes = &seen.books[&(ARB_MARKET.to_owned(), 0)];
    assert_eq!(
        yes.bids,
        vec![lv(dec!(0.38), dec!(100)), lv(dec!(0.30), dec!(50))]
    );
    assert_eq!(
        yes.asks,
        vec![lv(dec!(0.40), dec!(100)), lv(dec!(0.41), dec!(70))]
    );
    // Kalshi: bids only; YES asks are 1 − NO bids.
    let k_yes = &seen.books[&(KALSHI_TICKER.to_owned(), 0)];
    assert_eq!(
        k_yes.bids,
        vec![
            lv(dec!(0.42), dec!(13)),
            lv(dec!(0.35), dec!(50)),
            lv(dec!(0.01), dec!(200))
        ]
    );
    assert_eq!(
        k_yes.asks,
        vec![
            lv(dec!(0.44), dec!(17)),
            lv(dec!(0.50), dec!(20)),
            lv(dec!(0.99), dec!(100))
        ]
    );

    // Spot from the two venues that answer; Binance US is geo-blocked.
    assert_eq!(
        seen.spots[&Venue::Coinbase],
        SpotPrice {
            venue: Venue::Coinbase,
            asset: Asset::new("BTC"),
            price: dec!(29012.00)
        }
    );
    assert_eq!(seen.spots[&Venue::Kraken].price, dec!(94998.10000));
    assert!(!seen.spots.contains_key(&Venue::BinanceUs));
    assert_eq!(seen.headlines, vec!["Fed cuts rates by 25bps"]);

    // The engine found the complement arbitrage: 1 − (0.40 + 0.45) − fees.
    assert!(
        seen.opportunities.iter().any(|(m, _)| m == ARB_MARKET),
        "{:?}",
        seen.opportunities
    );

    // Health: Binance US geo-blocked with the fix, NewsAPI rate limited, the rest ok.
    let health = source.health();
    let binance = &health["binance_us"];
    assert_eq!(binance.status, FeedState::GeoBlocked);
    let error = binance.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("Binance US GET /api/v3/ticker/price: geo-blocked"),
        "{error}"
    );
    assert!(error.contains("(HTTP 451)"), "{error}");
    assert_eq!(
        binance.fix.as_deref(),
        Some(
            "Binance US refuses this host's location: run the worker in a region the venue serves"
        )
    );
    assert!(binance.errors >= 1);
    assert_eq!(health["newsapi"].status, FeedState::RateLimited);
    let news_error = health["newsapi"].last_error.as_deref().unwrap();
    assert!(
        news_error
            .starts_with("NewsAPI GET /v2/everything: rate limited (HTTP 429), Retry-After 120s"),
        "{news_error}"
    );
    assert!(!news_error.contains(live_mock::NEWS_KEY));
    for ok in [
        "coinbase",
        "kraken",
        "kalshi",
        "polymarket_gamma",
        "polymarket_clob",
        "rss",
    ] {
        assert_eq!(health[ok].status, FeedState::Ok, "{ok}: {:?}", health[ok]);
    }

    // The engine heard it from the stream: news_arb rate limited, crypto_15m
    // degraded by the geo-block.
    let by_kind = health_of(&engine);
    let (status, reason) = &by_kind[&StrategyKind::NewsArb];
    assert_eq!(*status, HealthStatus::RateLimited);
    let reason = reason.as_deref().unwrap();
    assert!(
        reason.starts_with("rate limited: NewsAPI GET /v2/everything: rate limited (HTTP 429)"),
        "{reason}"
    );
    assert!(
        reason.ends_with("NewsAPI is not asked again for 120s"),
        "{reason}"
    );
    let (status, reason) = &by_kind[&StrategyKind::Crypto15m];
    assert_eq!(*status, HealthStatus::Degraded);
    assert!(
        reason
            .as_deref()
            .unwrap()
            .starts_with("binance_us geo-blocked: Binance US GET /api/v3/ticker/price"),
        "{reason:?}"
    );
    assert_eq!(by_kind[&StrategyKind::ComplementArb].0, HealthStatus::Ok);

    // A replay of the recorded stream, on the recording's clock, reproduces
    // what the feeds did to the strategies' health.
    let mut replayed = Engine::new(
        EngineConfig {
            strategies,
            risk: Default::default(),
            balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        },
        EventClock::default(),
    )
    .unwrap();
    replayed.run(seen.recording.iter().cloned(), |_| {});
    let replayed = health_of(&replayed);
    for kind in [StrategyKind::NewsArb, StrategyKind::Crypto15m] {
        assert_eq!(replayed[&kind], by_kind[&kind], "{kind}");
    }

    source.shutdown().await;
}
