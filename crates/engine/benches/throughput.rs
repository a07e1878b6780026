//! Engine throughput and per-event decision latency on one core, all four
//! strategies on, over 1,000,000 synthetic events (a plain bench binary:
//! `cargo bench -p polybot-engine --bench throughput`).
//!
//! The stream is what a busy tenant sees: book deltas on Polymarket markets
//! and their matched Kalshi markets (about two thirds), spot prices from three
//! exchanges for the 15-minute windows, trades, one-second ticks and the odd
//! headline; about one delta in 500 opens an arbitrage that is risk-checked and
//! paper-filled by the paper exchange (timed with the engine). Events are generated before timing, so the figures are the
//! engine's alone.

use std::hint::black_box;
use std::time::Instant;

use rust_decimal::Decimal;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{
    ComplementArbConfig, CrossVenueArbConfig, Crypto15mConfig, NewsArbConfig, NewsRule,
    StrategiesConfig, Venue,
};
use polybot_engine::{
    Asset, BookDelta, BookSide, BookSnapshot, Decision, Direction, Engine, EngineConfig, Event,
    EventClock, EventKind, Headline, Level, MarketDef, MarketId, PaperExchange, RecurringSpec,
    Side, SpotPrice, Timestamp, TradePrint,
};

const EVENTS: usize = 1_000_000;
const PAIRS: usize = 50;
const NEWS_MARKETS: usize = 10;
const START_MS: i64 = 1_777_467_600_000;

/// xorshift64*: deterministic, so every run measures the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn def(id: &str, venue: Venue, outcomes: &[&str]) -> MarketDef {
    MarketDef {
        id: MarketId::new(id),
        venue,
        outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
        fee_rate: Decimal::new(7, 2),
        question: String::new(),
        resolution_source: None,
        window_start: None,
        closes_at: None,
        recurring: None,
        reference_price: None,
        venue_ids: None,
        fee_exponent: 1,
    }
}

fn config() -> EngineConfig {
    let rules = (0..NEWS_MARKETS)
        .map(|i| NewsRule {
            market: format!("news-{i}"),
            outcome: "Yes".into(),
            keywords: vec![format!("topic{i}")],
            entities: vec!["senate".into(), "court".into()],
            fair_price: Decimal::new(90, 2),
            ..NewsRule::default()
        })
        .collect();
    EngineConfig {
        strategies: StrategiesConfig {
            complement_arb: Some(ComplementArbConfig {
                market_cooldown_secs: 0,
                ..ComplementArbConfig::default()
            }),
            cross_venue_arb: Some(CrossVenueArbConfig {
                market_cooldown_secs: 0,
                ..CrossVenueArbConfig::default()
            }),
            crypto_15m: Some(Crypto15mConfig {
                market_cooldown_secs: 0,
                min_volatility_samples: 5,
                ..Crypto15mConfig::default()
            }),
            news_arb: Some(NewsArbConfig {
                rules,
                market_cooldown_secs: 0,
                ..NewsArbConfig::default()
            }),
        },
        risk: RiskLimits {
            max_position_per_market: Decimal::new(1_000_000_000, 0),
            max_total_exposure: Decimal::new(1_000_000_000, 0),
            max_daily_loss: Decimal::new(1_000_000_000, 0),
            ..RiskLimits::default()
        },
        balances: vec![
            (Venue::Polymarket, Decimal::new(1_000_000_000, 0)),
            (Venue::Kalshi, Decimal::new(1_000_000_000, 0)),
        ],
    }
}

fn level(price_cents: i64, size: i64) -> Level {
    Level::new(Decimal::new(price_cents, 2), Decimal::new(size, 0))
}

fn generate() -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut events = Vec::with_capacity(EVENTS + 1_000);
    let t0 = START_MS;
    let close = Timestamp(START_MS + 3_600_000);
    let mut books: Vec<(MarketId, usize)> = Vec::new();
    let push = |events: &mut Vec<Event>, ts: i64, kind: EventKind| {
        events.push(Event::new(Timestamp(ts), kind))
    };
    // Matched Polymarket/Kalshi pairs (recurring BTC strikes, one source).
    for i in 0..PAIRS {
        let strike = Decimal::new(90_000 + 500 * i as i64, 0);
        for (venue, prefix) in [(Venue::Polymarket, "pm-btc"), (Venue::Kalshi, "KXBTC")] {
            let mut d = def(&format!("{prefix}-{i}"), venue, &["Yes", "No"]);
            d.resolution_source = Some("cfbenchmarks.com/brti".into());
            d.closes_at = Some(close);
            d.recurring = Some(RecurringSpec {
                asset: Asset::new("BTC"),
                direction: Direction::Above,
                strike: Some(strike),
            });
            let id = d.id.clone();
            push(&mut events, t0, EventKind::Market(Box::new(d)));
            for outcome in 0..2 {
                books.push((id.clone(), outcome));
            }
        }
    }
    // Two assets' 15-minute windows, the current and the next.
    let mut windows = Vec::new();
    for coin in ["btc", "eth"] {
        for w in 0..2 {
            let start_s = START_MS / 1000 + 900 * w;
            let d = def(
                &format!("{coin}-updown-15m-{start_s}"),
                Venue::Polymarket,
                &["Up", "Down"],
            );
            windows.push(d.id.clone());
            books.push((d.id.clone(), 0));
            books.push((d.id.clone(), 1));
            push(&mut events, t0, EventKind::Market(Box::new(d)));
        }
    }
    for i in 0..NEWS_MARKETS {
        let d = def(&format!("news-{i}"), Venue::Polymarket, &["Yes", "No"]);
        books.push((d.id.clone(), 0));
        books.push((d.id.clone(), 1));
        push(&mut events, t0, EventKind::Market(Box::new(d)));
    }
    // Initial books: YES asks 52-56c, NO asks 50-54c — no arbitrage until a delta opens one.
    for (id, outcome) in &books {
        let base = if *outcome == 0 { 52 } else { 50 };
        let kalshi = id.as_str().starts_with("KX");
        push(
            &mut events,
            t0,
            EventKind::Book(BookSnapshot {
                market: id.clone(),
                outcome: *outcome,
                bids: (0..5)
                    .map(|k| level(if kalshi { 44 - k } else { base - 4 - k }, 100 + 10 * k))
                    .collect(),
                asks: (0..5).map(|k| level(base + k, 100 + 10 * k)).collect(),
            }),
        );
    }
    let spot_venues = [Venue::BinanceUs, Venue::Coinbase, Venue::Kraken];
    let mut spot = [9_400_000i64, 320_000i64]; // cents
    let mut ts = t0 + 1;
    let mut next_tick = t0 + 1_000;
    let mut headline = 0u64;
    while events.len() < EVENTS {
        ts += 1;
        if ts >= next_tick {
            push(&mut events, ts, EventKind::Tick);
            next_tick += 1_000;
            continue;
        }
        let roll = rng.below(1000);
        if roll < 680 {
            let (id, outcome) = books[rng.below(books.len() as u64) as usize].clone();
            let kalshi = id.as_str().starts_with("KX");
            let base = if outcome == 0 { 52 } else { 50 };
            let opens_arb = rng.below(500) == 0;
            let (side, cents) = if kalshi || rng.below(2) == 0 {
                let top = if kalshi { 44 } else { base - 4 };
                (BookSide::Bid, top - rng.below(5) as i64)
            } else if opens_arb {
                (BookSide::Ask, base - 10)
            } else {
                (BookSide::Ask, base + rng.below(5) as i64)
            };
            let size = Decimal::new(rng.below(300) as i64, 0);
            push(
                &mut events,
                ts,
                EventKind::BookDelta(BookDelta {
                    market: id,
                    outcome,
                    side,
                    price: Decimal::new(cents, 2),
                    size,
                }),
            );
        } else if roll < 930 {
            let a = rng.below(2) as usize;
            spot[a] += rng.below(201) as i64 - 100;
            push(
                &mut events,
                ts,
                EventKind::Spot(SpotPrice {
                    venue: spot_venues[rng.below(3) as usize],
                    asset: Asset::new(if a == 0 { "BTC" } else { "ETH" }),
                    price: Decimal::new(spot[a], 2),
                }),
            );
        } else if roll < 999 {
            let (id, outcome) = books[rng.below(books.len() as u64) as usize].clone();
            push(
                &mut events,
                ts,
                EventKind::Trade(TradePrint {
                    market: id,
                    outcome,
                    price: Decimal::new(50, 2),
                    size: Decimal::new(10, 0),
                    aggressor: Side::Buy,
                }),
            );
        } else {
            headline += 1;
            let topic = rng.below(NEWS_MARKETS as u64 * 4);
            push(
                &mut events,
                ts,
                EventKind::Headline(Box::new(Headline {
                    id: format!("h{headline}"),
                    source: "rss".into(),
                    title: format!("Senate debates topic{topic} today"),
                    summary: String::new(),
                    published: Timestamp(ts),
                })),
            );
        }
    }
    black_box(windows);
    events
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    // Index arithmetic for a report, not money.
    #[allow(clippy::float_arithmetic)]
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

#[allow(clippy::float_arithmetic)] // rates and microseconds for the report only
fn main() {
    let events = generate();
    println!(
        "generated {} events ({} markets listed)",
        events.len(),
        PAIRS * 2 + 4 + NEWS_MARKETS
    );

    // Throughput: the whole stream, no per-event timing.
    let mut best_rate = 0.0f64;
    let mut decisions_seen = 0usize;
    let mut opportunities = 0u64;
    for run in 0..3 {
        let mut engine = Engine::new(config(), EventClock::default()).expect("valid bench config");
        let mut out: Vec<Decision> = Vec::with_capacity(64);
        let mut paper = PaperExchange::default();
        let mut decisions = 0usize;
        let start = Instant::now();
        for event in &events {
            out.clear();
            if engine.on_event(event, &mut out).is_err() {
                panic!("bench stream has an invalid event: {event:?}");
            }
            paper.execute(&mut engine, &mut out);
            decisions += out.len();
        }
        let elapsed = start.elapsed();
        let rate = events.len() as f64 / elapsed.as_secs_f64();
        println!(
            "run {run}: {:.3} s, {:.0} events/s, {decisions} decisions",
            elapsed.as_secs_f64(),
            rate
        );
        best_rate = best_rate.max(rate);
        decisions_seen = decisions;
        opportunities = engine.stats().opportunities;
        black_box(engine.portfolio());
    }

    // Latency: each event timed on its own.
    let mut engine = Engine::new(config(), EventClock::default()).expect("valid bench config");
    let mut out: Vec<Decision> = Vec::with_capacity(64);
    let mut paper = PaperExchange::default();
    let mut nanos: Vec<u32> = Vec::with_capacity(events.len());
    for event in &events {
        out.clear();
        let start = Instant::now();
        let result = engine.on_event(event, &mut out);
        paper.execute(&mut engine, &mut out);
        let took = start.elapsed();
        if result.is_err() {
            panic!("bench stream has an invalid event: {event:?}");
        }
        nanos.push(u32::try_from(took.as_nanos()).unwrap_or(u32::MAX));
    }
    nanos.sort_unstable();
    let stats = engine.stats();
    println!(
        "stats: {} events, {} opportunities, {} orders, {} fills, {} rejections",
        stats.events, stats.opportunities, stats.orders, stats.fills, stats.rejections
    );
    println!("throughput (best of 3): {best_rate:.0} events/s on one core");
    println!(
        "latency per event: p50 {:.3} us, p99 {:.3} us, p99.9 {:.3} us, max {:.3} us",
        f64::from(percentile(&nanos, 0.50)) / 1000.0,
        f64::from(percentile(&nanos, 0.99)) / 1000.0,
        f64::from(percentile(&nanos, 0.999)) / 1000.0,
        f64::from(*nanos.last().unwrap_or(&0)) / 1000.0,
    );
    println!("decisions in a throughput run: {decisions_seen}, opportunities: {opportunities}");
}
