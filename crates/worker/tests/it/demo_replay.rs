//! The bundled demo recording under the demo tenant's settings, on the engine
//! alone: every strategy finds an opportunity within its first seconds.

use std::collections::BTreeMap;

use polybot_core::risk::parse_risk;
use polybot_core::strategy::{StrategyKind, parse_strategies};
use polybot_engine::{Decision, Engine, EngineConfig, EventClock, Replay};
use polybot_worker::demo::DEMO_PAPER_BALANCES;
use polybot_worker::demo::{DEMO_REPLAY, demo_tenant_request};
use polybot_worker::parse_balances;
use rust_decimal_macros::dec;

fn demo_engine() -> (Engine<EventClock>, Vec<Decision>) {
    let request = demo_tenant_request();
    let config = EngineConfig {
        strategies: parse_strategies(&request["strategies"]).unwrap(),
        risk: parse_risk(&request["risk"]).unwrap(),
        balances: parse_balances(DEMO_PAPER_BALANCES).unwrap(),
    };
    let mut engine = Engine::new(config, EventClock::default()).unwrap();
    let events: Vec<_> = Replay::new(DEMO_REPLAY.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let mut decisions = Vec::new();
    engine.run(events, |batch| decisions.extend_from_slice(batch));
    (engine, decisions)
}

#[test]
fn every_strategy_acts_within_the_first_seconds_of_the_demo_recording() {
    let (engine, decisions) = demo_engine();
    let start = 1_777_467_596_000_i64;
    let mut first: BTreeMap<StrategyKind, i64> = BTreeMap::new();
    let mut counts: BTreeMap<StrategyKind, (usize, usize)> = BTreeMap::new();
    for d in &decisions {
        if let Decision::Opportunity(o) = d {
            let c = counts.entry(o.strategy).or_default();
            c.0 += 1;
            if o.executed_at.is_some() {
                c.1 += 1;
                first.entry(o.strategy).or_insert(o.detected_at.0 - start);
            }
        }
    }
    assert_eq!(engine.stats().data_errors, 0);
    // Milliseconds from the start of the recording to each strategy's first trade.
    assert_eq!(
        first.into_iter().collect::<Vec<_>>(),
        vec![
            (StrategyKind::ComplementArb, 3_903),
            (StrategyKind::CrossVenueArb, 2_300),
            (StrategyKind::Crypto15m, 5_210),
            (StrategyKind::NewsArb, 2_300),
        ]
    );
    // (found, executed) per strategy over the whole window: the rest hit
    // the demo's max_position_per_market of 500.
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            (StrategyKind::ComplementArb, (26, 11)),
            (StrategyKind::CrossVenueArb, (16, 10)),
            (StrategyKind::Crypto15m, (11, 11)),
            (StrategyKind::NewsArb, (4, 4)),
        ]
    );
    let stats = engine.stats();
    assert_eq!(
        (
            stats.events,
            stats.fills,
            stats.rejections,
            stats.data_errors
        ),
        (10_230, 72, 21, 0)
    );
    let p = engine.portfolio();
    assert_eq!(p.realised_pnl, dec!(124.3));
    assert_eq!(p.fees_paid, dec!(75.27416));
    assert_eq!(
        p.equity - p.starting_equity,
        p.realised_pnl + p.unrealised_pnl - p.fees_paid
    );
}
