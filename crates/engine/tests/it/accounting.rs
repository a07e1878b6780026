//! The accounting over recorded sequences of fills, fees and resolutions:
//! equity moves by exactly realised + unrealised − fees, to the cent, after
//! every event; an arbitrage shows the edge it locked, and realises it at
//! resolution.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{
    ComplementArbConfig, CrossVenueArbConfig, StrategiesConfig, StrategyKind, Venue,
};
use polybot_engine::{
    Decision, Engine, EngineConfig, Event, EventClock, PaperExchange, PortfolioSnapshot, Replay,
    StrategyPnl,
};

fn events() -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay_small.jsonl");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Replay::new(BufReader::new(file))
        .collect::<Result<_, _>>()
        .unwrap()
}

fn engine(strategies: StrategiesConfig) -> Engine<EventClock> {
    let config = EngineConfig {
        strategies,
        risk: RiskLimits::default(),
        balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
    };
    Engine::new(config, EventClock::default()).unwrap()
}

fn cross_venue_only() -> StrategiesConfig {
    StrategiesConfig {
        cross_venue_arb: Some(CrossVenueArbConfig {
            min_edge: dec!(0.01),
            ..CrossVenueArbConfig::default()
        }),
        ..StrategiesConfig::default()
    }
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp(2)
}

fn assert_reconciles(p: &PortfolioSnapshot, after: &str) {
    let change = p.equity - p.starting_equity;
    assert_eq!(
        cents(change),
        cents(p.realised_pnl + p.unrealised_pnl - p.fees_paid),
        "after {after}: equity moved {change}, realised {} + unrealised {} − fees {}",
        p.realised_pnl,
        p.unrealised_pnl,
        p.fees_paid
    );
    // Exactly, not only to the cent: the identity holds in Decimal.
    assert_eq!(change, p.realised_pnl + p.unrealised_pnl - p.fees_paid);
    let sum = |f: fn(&StrategyPnl) -> Decimal| p.by_strategy.iter().map(f).sum::<Decimal>();
    assert_eq!(sum(|s| s.realised_pnl), p.realised_pnl, "after {after}");
    assert_eq!(sum(|s| s.unrealised_pnl), p.unrealised_pnl, "after {after}");
    assert_eq!(sum(|s| s.fees_paid), p.fees_paid, "after {after}");
    assert_eq!(sum(|s| s.locked_pnl), p.locked_pnl, "after {after}");
}

#[test]
fn equity_moves_by_realised_plus_unrealised_minus_fees_after_every_event() {
    let mut e = engine(StrategiesConfig {
        complement_arb: Some(ComplementArbConfig::default()),
        ..cross_venue_only()
    });
    let mut out = Vec::new();
    let mut paper = PaperExchange::default();
    let mut fills = Decimal::ZERO;
    let mut realised = Decimal::ZERO;
    for (i, event) in events().iter().enumerate() {
        out.clear();
        e.on_event(event, &mut out).unwrap();
        paper.execute(&mut e, &mut out);
        for d in &out {
            match d {
                Decision::Fill(f) => {
                    fills += f.fee;
                    realised += f.realised_pnl;
                }
                Decision::Settlement(s) => realised += s.realised_pnl,
                _ => {}
            }
        }
        let p = e.portfolio();
        assert_reconciles(&p, &format!("event {i} ({:?})", event.kind));
        // What the decisions carry (and so the stored trades) adds up to
        // the accounting's totals.
        assert_eq!((fills, realised), (p.fees_paid, p.realised_pnl));
    }
    let p = e.portfolio();
    assert_eq!(p.positions, vec![]);
    assert_eq!((p.realised_pnl, p.fees_paid), (dec!(10), dec!(6.825)));
}

#[test]
fn a_cross_venue_pair_shows_its_locked_edge_and_realises_it_minus_fees_at_resolution() {
    let mut e = engine(cross_venue_only());
    let events = events();
    let (before, after): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|ev| !matches!(ev.kind, polybot_engine::EventKind::Resolved(_)));
    e.run(before, |_| {});
    let p = e.portfolio();
    // YES at 0.55 on Polymarket and NO at 0.40 on Kalshi, 100 each: the pair
    // pays 100 whatever happens, so 5 is locked although both bids are
    // below what was paid.
    assert_eq!(p.exposure, dec!(95));
    assert_eq!(p.locked_pnl, dec!(5));
    assert_eq!(p.unrealised_pnl, dec!(5));
    assert_eq!(p.fees_paid, dec!(3.4125));
    assert_eq!(
        p.positions
            .iter()
            .map(|v| (
                v.market.as_str(),
                v.outcome_name.as_str(),
                v.quantity,
                v.locked
            ))
            .collect::<Vec<_>>(),
        vec![
            ("pm-btc-100k", "Yes", dec!(100), dec!(100)),
            ("KXBTC-100K", "No", dec!(100), dec!(100)),
        ]
    );
    assert_reconciles(&p, "the pair's fills");
    let mut settled = Vec::new();
    e.run(after, |batch| settled.extend_from_slice(batch));
    let p = e.portfolio();
    assert_eq!(p.realised_pnl, dec!(5));
    assert_eq!(p.realised_pnl - p.fees_paid, dec!(1.5875));
    assert_eq!(p.equity - p.starting_equity, dec!(1.5875));
    assert_eq!((p.unrealised_pnl, p.locked_pnl), (dec!(0), dec!(0)));
    assert_eq!(
        settled
            .iter()
            .filter_map(|d| match d {
                Decision::Settlement(s) => Some((s.strategy, s.market.as_str(), s.realised_pnl)),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![
            (StrategyKind::CrossVenueArb, "pm-btc-100k", dec!(45)),
            (StrategyKind::CrossVenueArb, "KXBTC-100K", dec!(-40)),
        ]
    );
}

#[test]
fn an_engine_that_has_seen_no_event_made_nothing_today() {
    let e = engine(cross_venue_only());
    assert_eq!(e.daily_pnl(), dec!(0));
    let p = e.portfolio();
    assert_eq!((p.equity, p.starting_equity), (dec!(2000), dec!(2000)));
}

#[test]
fn a_position_held_before_the_start_is_marked_counts_in_todays_loss_and_settles_at_its_cost() {
    use serde_json::json;
    let config = EngineConfig {
        strategies: StrategiesConfig::default(),
        risk: RiskLimits {
            max_daily_loss: dec!(3),
            ..RiskLimits::default()
        },
        balances: vec![(Venue::Polymarket, dec!(100))],
    };
    let mut e = Engine::new(config, EventClock::default()).unwrap();
    // The venue held 10 YES bought at 0.40 when the engine started; its
    // market is not listed yet, so only its cost counts.
    e.carry_position("0xcond", "tok-yes", dec!(10), dec!(4));
    let p = e.portfolio();
    assert_eq!(
        (p.exposure, p.equity, p.positions.len()),
        (dec!(0), dec!(100), 0)
    );
    let book = |ts: i64, bid: &str| {
        json!({"type": "book", "ts": ts, "market": "pm-eth-5k", "outcome": "Yes",
               "bids": [[bid, "50"]], "asks": [["0.60", "50"]]})
    };
    let lines = [
        json!({"type": "market", "ts": 1_777_467_540_000_i64, "market": "pm-eth-5k",
               "venue": "polymarket", "outcomes": ["Yes", "No"], "fee_rate": "0.07",
               "question": "ETH above 5000 on Friday?", "condition_id": "0xcond",
               "tokens": ["tok-yes", "tok-no"]}),
        book(1_777_467_550_000, "0.36"),
        book(1_777_467_560_000, "0.10"),
        json!({"type": "resolved", "ts": 1_777_468_500_000_i64,
               "market": "pm-eth-5k", "outcome": "Yes"}),
    ];
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    let mut events = Replay::new(BufReader::new(text.join("\n").as_bytes()))
        .collect::<Result<Vec<Event>, _>>()
        .unwrap()
        .into_iter();
    e.run(events.by_ref().take(2), |_| {});
    let p = e.portfolio();
    // Marked at the 0.36 bid: 3.60 for what cost 4.
    assert_eq!(p.exposure, dec!(4));
    assert_eq!(p.starting_equity, dec!(104));
    assert_eq!(p.equity, dec!(103.60));
    assert_eq!(p.unrealised_pnl, dec!(-0.40));
    assert_eq!(e.daily_pnl(), dec!(-0.40));
    assert!(!e.daily_loss_limit_hit());
    assert_eq!(
        p.equity - p.starting_equity,
        p.realised_pnl + p.unrealised_pnl - p.fees_paid
    );
    // No strategy holds it: it is in the totals, not in a strategy's PnL.
    assert_eq!(p.by_strategy, vec![]);
    let v = &p.positions[0];
    assert_eq!(
        (
            v.strategy,
            v.market.as_str(),
            v.quantity,
            v.avg_price,
            v.mark
        ),
        (None, "pm-eth-5k", dec!(10), dec!(0.4), dec!(0.36))
    );
    // The bid falls to 0.10: 3 lost today, the daily-loss limit.
    e.run(events.by_ref().take(1), |_| {});
    assert_eq!(e.portfolio().unrealised_pnl, dec!(-3.00));
    assert_eq!(e.daily_pnl(), dec!(-3.00));
    assert!(e.daily_loss_limit_hit());
    // YES wins: 10 paid against the cost of 4.
    e.run(events, |_| {});
    let p = e.portfolio();
    assert_eq!(p.realised_pnl, dec!(6));
    assert_eq!((p.unrealised_pnl, p.exposure), (dec!(0), dec!(0)));
    assert_eq!(p.balances, vec![(Venue::Polymarket, dec!(110))]);
    assert_eq!(p.equity - p.starting_equity, dec!(6));
    assert!(p.positions.is_empty());
}

#[test]
fn a_kalshi_position_held_before_the_start_is_matched_by_ticker_and_side() {
    use serde_json::json;
    let mut e = engine(StrategiesConfig::default());
    e.carry_position("KXETH-5K", "KXETH-5K:no", dec!(5), dec!(2));
    let lines = [
        json!({"type": "market", "ts": 1_777_467_540_000_i64, "market": "KXETH-5K",
               "venue": "kalshi", "outcomes": ["Yes", "No"], "fee_rate": "0.07",
               "question": "ETH above 5000 on Friday?"}),
        json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": "KXETH-5K",
               "outcome": "No", "bids": [["0.30", "50"]], "asks": [["0.70", "50"]]}),
    ];
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    let events = Replay::new(BufReader::new(text.join("\n").as_bytes()))
        .collect::<Result<Vec<Event>, _>>()
        .unwrap();
    e.run(events, |_| {});
    let p = e.portfolio();
    assert_eq!(p.exposure, dec!(2));
    assert_eq!(p.unrealised_pnl, dec!(-0.50));
    assert_eq!(e.daily_pnl(), dec!(-0.50));
    let v = &p.positions[0];
    assert_eq!(
        (
            v.strategy,
            v.venue,
            v.outcome_name.as_str(),
            v.quantity,
            v.mark
        ),
        (None, Venue::Kalshi, "No", dec!(5), dec!(0.30))
    );
}
