//! Tests of complement arbitrage, through the engine.

use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{ComplementArbConfig, StrategiesConfig, StrategyKind, Venue};

use crate::decision::Decision;
use crate::strategies::testkit::{
    book, engine, feed, fills, listed, market, opportunities, resolved,
};

fn only_complement(min_edge: rust_decimal::Decimal) -> StrategiesConfig {
    StrategiesConfig {
        complement_arb: Some(ComplementArbConfig {
            min_edge,
            market_cooldown_secs: 0,
            ..ComplementArbConfig::default()
        }),
        ..StrategiesConfig::default()
    }
}

/// YES 0.40 and NO 0.55 in Crypto (fee 0.07·p·(1−p)): a set costs
/// 0.95 + 0.0168 + 0.017325 = 0.984125, an edge of 0.015875.
fn crypto_market_events(yes_ask: &str, no_ask: &str) -> Vec<crate::event::Event> {
    vec![
        listed(
            0,
            market("pm-1", Venue::Polymarket, &["Yes", "No"], dec!(0.07)),
        ),
        book(1_000, "pm-1", 0, &[("0.38", "100")], &[(yes_ask, "100")]),
        book(2_000, "pm-1", 1, &[("0.50", "100")], &[(no_ask, "100")]),
    ]
}

#[test]
fn an_edge_just_above_the_threshold_after_fees_is_bought() {
    let mut e = engine(only_complement(dec!(0.0158)), RiskLimits::default());
    let out = feed(&mut e, crypto_market_events("0.40", "0.55"));
    let opps = opportunities(&out);
    assert_eq!(opps.len(), 1);
    assert_eq!(opps[0].strategy, StrategyKind::ComplementArb);
    assert_eq!(opps[0].edge, dec!(0.015875));
    assert_eq!(opps[0].expected_profit, dec!(1.5875));
    assert_eq!(opps[0].executed_at, Some(crate::Timestamp(2_000)));
    let f = fills(&out);
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].outcome, f[0].size, f[0].avg_price, f[0].fee),
        (0, dec!(100), dec!(0.40), dec!(1.68))
    );
    assert_eq!(
        (f[1].outcome, f[1].size, f[1].avg_price, f[1].fee),
        (1, dec!(100), dec!(0.55), dec!(1.7325))
    );
}

#[test]
fn an_edge_just_below_the_threshold_after_fees_is_left_alone() {
    let mut e = engine(only_complement(dec!(0.0159)), RiskLimits::default());
    let out = feed(&mut e, crypto_market_events("0.40", "0.55"));
    assert_eq!(out, vec![]);
}

#[test]
fn an_edge_exactly_at_the_threshold_is_not_enough() {
    let mut e = engine(only_complement(dec!(0.015875)), RiskLimits::default());
    let out = feed(&mut e, crypto_market_events("0.40", "0.55"));
    assert_eq!(out, vec![]);
}

#[test]
fn asks_summing_to_one_before_fees_are_no_arbitrage() {
    let mut e = engine(only_complement(dec!(0)), RiskLimits::default());
    let out = feed(&mut e, crypto_market_events("0.45", "0.55"));
    assert_eq!(out, vec![]);
}

#[test]
fn the_set_is_settled_at_one_and_the_profit_realised() {
    let mut e = engine(only_complement(dec!(0.01)), RiskLimits::default());
    let mut events = crypto_market_events("0.40", "0.55");
    events.push(resolved(3_000, "pm-1", 1));
    let out = feed(&mut e, events);
    let settlement = out
        .iter()
        .find_map(|d| match d {
            Decision::Settlement(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(settlement.payout, dec!(100));
    assert_eq!(settlement.realised_pnl, dec!(5)); // 100 − 95 cost basis
    let p = e.portfolio();
    assert_eq!(p.realised_pnl, dec!(5));
    assert_eq!(p.fees_paid, dec!(3.4125));
    assert_eq!(p.realised_pnl - p.fees_paid, dec!(1.5875));
    assert_eq!(
        p.balances,
        vec![
            (Venue::Polymarket, dec!(1001.5875)),
            (Venue::Kalshi, dec!(1000))
        ]
    );
    assert_eq!(p.exposure, dec!(0));
}

#[test]
fn a_complete_set_is_marked_at_one_before_resolution() {
    let mut e = engine(only_complement(dec!(0.01)), RiskLimits::default());
    feed(&mut e, crypto_market_events("0.40", "0.55"));
    let p = e.portfolio();
    assert_eq!(p.exposure, dec!(95));
    assert_eq!(p.unrealised_pnl, dec!(5));
    assert_eq!(p.locked_pnl, dec!(5));
    assert_eq!(p.realised_pnl, dec!(0));
    assert_eq!(p.fees_paid, dec!(3.4125));
    assert_eq!(p.equity, dec!(1000) + dec!(1000) + dec!(1.5875));
}

#[test]
fn every_outcome_of_a_multi_outcome_market_is_bought_to_the_depth_that_pays() {
    let mut e = engine(only_complement(dec!(0.01)), RiskLimits::default());
    let out = feed(
        &mut e,
        vec![
            listed(
                0,
                market("election", Venue::Polymarket, &["A", "B", "C"], dec!(0)),
            ),
            book(1, "election", 0, &[], &[("0.30", "40"), ("0.32", "100")]),
            book(2, "election", 1, &[], &[("0.30", "500")]),
            book(3, "election", 2, &[], &[("0.35", "500")]),
        ],
    );
    // 40 sets at 0.95, then 0.97 per set (still > 0.01 of edge) up to max_size 100.
    let f = fills(&out);
    assert_eq!(
        f.iter().map(|f| f.size).collect::<Vec<_>>(),
        vec![dec!(100); 3]
    );
    assert_eq!(f[0].notional, dec!(31.2)); // 40 × 0.30 + 60 × 0.32
    assert_eq!(f[0].avg_price, dec!(0.312));
    let opp = opportunities(&out)[0];
    assert_eq!(opp.edge, dec!(0.038)); // 1 − (31.2 + 30 + 35) / 100
    assert_eq!(opp.legs[0].limit_price, dec!(0.32));
}

#[test]
fn a_venue_not_configured_is_not_scanned() {
    let config = StrategiesConfig {
        complement_arb: Some(ComplementArbConfig {
            venues: vec![Venue::Kalshi],
            ..ComplementArbConfig::default()
        }),
        ..StrategiesConfig::default()
    };
    let mut e = engine(config, RiskLimits::default());
    assert_eq!(feed(&mut e, crypto_market_events("0.30", "0.30")), vec![]);
}

#[test]
fn a_kalshi_set_is_priced_from_the_mirrored_bids() {
    let mut e = engine(only_complement(dec!(0.01)), RiskLimits::default());
    let out = feed(
        &mut e,
        vec![
            listed(0, market("KX-1", Venue::Kalshi, &["Yes", "No"], dec!(0.07))),
            // YES bid 0.62 makes a NO ask of 0.38; NO bid 0.45 a YES ask of 0.55.
            book(1, "KX-1", 0, &[("0.62", "10")], &[]),
            book(2, "KX-1", 1, &[("0.45", "10")], &[]),
        ],
    );
    // 10 × 0.55 + 10 × 0.38 = 9.30; fees ceil(0.17325) + ceil(0.16492) = 0.18 + 0.17.
    let f = fills(&out);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].avg_price, f[0].fee), (dec!(0.55), dec!(0.18)));
    assert_eq!((f[1].avg_price, f[1].fee), (dec!(0.38), dec!(0.17)));
    assert_eq!(opportunities(&out)[0].edge, dec!(0.035));
}
