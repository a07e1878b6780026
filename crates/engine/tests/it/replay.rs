//! The engine over a recorded JSONL replay: every trade and the PnL asserted.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{
    ComplementArbConfig, CrossVenueArbConfig, Crypto15mConfig, NewsArbConfig, NewsRule,
    StrategiesConfig, StrategyKind, Venue,
};
use polybot_engine::{
    Decision, Engine, EngineConfig, Event, EventClock, HealthStatus, PaperExchange, Replay,
    Timestamp, parse_jsonl,
};

const FIXTURE: &str = "tests/fixtures/replay_small.jsonl";

fn config() -> EngineConfig {
    EngineConfig {
        strategies: StrategiesConfig {
            complement_arb: Some(ComplementArbConfig::default()),
            cross_venue_arb: Some(CrossVenueArbConfig {
                min_edge: dec!(0.01),
                ..CrossVenueArbConfig::default()
            }),
            crypto_15m: Some(Crypto15mConfig {
                assets: vec!["BTC".into()],
                spot_venues: vec![Venue::Coinbase],
                min_volatility_samples: 5,
                volatility_window_secs: 600,
                ..Crypto15mConfig::default()
            }),
            news_arb: Some(NewsArbConfig {
                rules: vec![NewsRule {
                    market: "fed-cut-dec".into(),
                    outcome: "Yes".into(),
                    keywords: vec!["fed".into(), "cuts".into()],
                    entities: vec!["powell".into(), "fomc".into()],
                    fair_price: dec!(0.90),
                    max_size: Some(dec!(40)),
                    ..NewsRule::default()
                }],
                ..NewsArbConfig::default()
            }),
        },
        risk: RiskLimits::default(),
        balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
    }
}

fn events() -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Replay::new(BufReader::new(file))
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The whole replay through `Engine::run`, as the worker drives a recording.
fn replayed() -> (Engine<EventClock>, Vec<Decision>) {
    let mut engine = Engine::new(config(), EventClock::default()).unwrap();
    let mut decisions = Vec::new();
    engine.run(events(), |batch| decisions.extend_from_slice(batch));
    (engine, decisions)
}

#[test]
fn the_replay_makes_exactly_one_trade_per_strategy_at_the_recorded_prices() {
    let (engine, decisions) = replayed();
    let fills: Vec<(StrategyKind, &str, usize, Decimal, Decimal, Decimal)> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Fill(f) => Some((
                f.strategy,
                f.market.as_str(),
                f.outcome,
                f.size,
                f.avg_price,
                f.fee,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        fills,
        vec![
            (
                StrategyKind::ComplementArb,
                "pm-eth-5k",
                0,
                dec!(100),
                dec!(0.40),
                dec!(1.68)
            ),
            (
                StrategyKind::ComplementArb,
                "pm-eth-5k",
                1,
                dec!(100),
                dec!(0.55),
                dec!(1.7325)
            ),
            (
                StrategyKind::CrossVenueArb,
                "pm-btc-100k",
                0,
                dec!(100),
                dec!(0.55),
                dec!(1.7325)
            ),
            (
                StrategyKind::CrossVenueArb,
                "KXBTC-100K",
                1,
                dec!(100),
                dec!(0.40),
                dec!(1.68)
            ),
            (
                StrategyKind::Crypto15m,
                "btc-updown-15m-1777467600",
                1,
                dec!(30),
                dec!(0.70),
                dec!(0.441)
            ),
            (
                StrategyKind::NewsArb,
                "fed-cut-dec",
                0,
                dec!(40),
                dec!(0.849),
                dec!(0)
            ),
        ]
    );
    let stats = engine.stats();
    assert_eq!(
        (stats.events, stats.opportunities, stats.orders, stats.fills),
        (40, 4, 6, 6)
    );
    assert_eq!(
        (stats.rejections, stats.cancels, stats.data_errors),
        (0, 0, 0)
    );
    let executed = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Opportunity(o) if o.executed_at.is_some()))
        .count();
    assert_eq!(executed, 4);
}

#[test]
fn the_replay_records_why_the_15_minute_pair_across_venues_is_never_traded() {
    let (engine, decisions) = replayed();
    let blocked: Vec<&str> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::PairBlocked(p) => Some(p.reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        blocked,
        vec![
            "basis risk chainlink_vs_cf_benchmarks: polymarket btc-updown-15m-1777467600 resolves on \
             \"https://data.chain.link/streams/btc-usd\", kalshi KXBTC15M-26APR290915 on \
             \"CF Benchmarks BRTI, 60-second average\" (Chainlink's data stream and CF Benchmarks' \
             real time index (a 60-second average) can settle on opposite sides of the strike when \
             the price ends near it); refused (basis_risk is \"refuse\")"
        ]
    );
    let pairs = engine.pairs();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs.iter().filter(|p| p.blocked.is_none()).count(), 1);
}

#[test]
fn the_replay_ends_flat_with_the_pnl_of_its_four_trades() {
    let (engine, decisions) = replayed();
    let settlements: Vec<(&str, Decimal, Decimal)> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Settlement(s) => Some((s.market.as_str(), s.payout, s.realised_pnl)),
            _ => None,
        })
        .collect();
    assert_eq!(
        settlements,
        vec![
            ("btc-updown-15m-1777467600", dec!(30), dec!(9)),
            ("pm-btc-100k", dec!(100), dec!(45)),
            ("KXBTC-100K", dec!(0), dec!(-40)),
            ("pm-eth-5k", dec!(100), dec!(5)),
            ("fed-cut-dec", dec!(40), dec!(6.04)),
        ]
    );
    let p = engine.portfolio();
    // complement 5 + cross-venue 5 + 15-minute 9 + news 6.04, fees apart
    assert_eq!(p.realised_pnl, dec!(25.04));
    assert_eq!(p.fees_paid, dec!(7.266));
    assert_eq!(p.realised_pnl - p.fees_paid, dec!(17.774));
    assert_eq!(p.unrealised_pnl, dec!(0));
    assert_eq!(p.exposure, dec!(0));
    assert_eq!(p.positions, vec![]);
    assert_eq!(
        p.balances,
        vec![
            (Venue::Polymarket, dec!(1059.454)),
            (Venue::Kalshi, dec!(958.32))
        ]
    );
    assert_eq!(p.equity, dec!(2017.774));
}

#[test]
fn the_same_events_fed_one_by_one_as_a_live_stream_decide_the_same() {
    let (_, replayed) = replayed();
    let mut live = Engine::new(config(), EventClock::default()).unwrap();
    let mut decisions = Vec::new();
    let mut paper = PaperExchange::default();
    for event in events() {
        let mut batch = Vec::new();
        live.on_event(&event, &mut batch).unwrap();
        paper.execute(&mut live, &mut batch);
        decisions.append(&mut batch);
    }
    assert_eq!(decisions, replayed);
}

#[test]
fn every_strategy_ends_the_replay_healthy() {
    let (engine, _) = replayed();
    let health = engine.health();
    assert_eq!(health.len(), 4);
    for h in &health {
        assert_eq!(
            (h.strategy, h.status, h.reason.as_deref()),
            (h.strategy, HealthStatus::Ok, None)
        );
    }
    assert_eq!(engine.now(), Timestamp(1_777_468_502_000));
}

#[test]
fn a_replay_with_feed_health_reproduces_the_degraded_and_rate_limited_strategies() {
    let mut events = events();
    let end = events.last().map(|e| e.ts.0).unwrap();
    events.extend(
        parse_jsonl(&format!(
            concat!(
                r#"{{"type":"feed_health","ts":{a},"strategy":"crypto_15m","degraded":"binance_us geo-blocked: HTTP 451"}}"#,
                "\n",
                r#"{{"type":"feed_health","ts":{a},"strategy":"news_arb","rate_limited":"NewsAPI 429","rate_limited_until":{until}}}"#,
                "\n",
                r#"{{"type":"tick","ts":{b}}}"#,
                "\n",
            ),
            a = end + 1,
            b = end + 2,
            until = end + 60_000,
        ))
        .unwrap(),
    );
    let mut engine = Engine::new(config(), EventClock::default()).unwrap();
    engine.run(events.iter().cloned(), |_| {});
    let health: Vec<_> = engine
        .health()
        .into_iter()
        .map(|h| (h.strategy, h.status, h.reason))
        .collect();
    assert_eq!(
        health,
        vec![
            (StrategyKind::ComplementArb, HealthStatus::Ok, None),
            (StrategyKind::CrossVenueArb, HealthStatus::Ok, None),
            (
                StrategyKind::Crypto15m,
                HealthStatus::Degraded,
                Some("binance_us geo-blocked: HTTP 451".to_owned())
            ),
            (
                StrategyKind::NewsArb,
                HealthStatus::RateLimited,
                Some("NewsAPI 429".to_owned())
            ),
        ]
    );

    // A later feed_health saying the feeds deliver again clears both.
    let recovered = parse_jsonl(&format!(
        concat!(
            r#"{{"type":"feed_health","ts":{t},"strategy":"crypto_15m"}}"#,
            "\n",
            r#"{{"type":"feed_health","ts":{t},"strategy":"news_arb"}}"#,
        ),
        t = end + 3,
    ))
    .unwrap();
    engine.run(recovered, |_| {});
    assert!(
        engine.health().iter().all(|h| h.status == HealthStatus::Ok),
        "{:?}",
        engine.health()
    );
}
