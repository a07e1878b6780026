//! Tests of cross-venue arbitrage and its pair matching, through the engine.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{
    BasisRiskPolicy, CrossVenueArbConfig, CuratedPair, StrategiesConfig, Venue,
};

use super::PairOrigin;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::event::{Direction, Event, MarketDef, RecurringSpec};
use crate::strategies::testkit::{book, engine, feed, fills, listed, market, opportunities};
use crate::types::Asset;

const CLOSE: i64 = 1_777_468_500_000;
const START: i64 = 1_777_467_600_000;

fn config(min_edge: Decimal, pairs: Vec<CuratedPair>) -> StrategiesConfig {
    StrategiesConfig {
        cross_venue_arb: Some(CrossVenueArbConfig {
            min_edge,
            pairs,
            market_cooldown_secs: 0,
            ..CrossVenueArbConfig::default()
        }),
        ..StrategiesConfig::default()
    }
}

fn recurring(id: &str, venue: Venue, source: &str, strike: &str) -> MarketDef {
    let mut def = market(id, venue, &["Yes", "No"], dec!(0.07));
    def.resolution_source = Some(source.to_owned());
    def.closes_at = Some(Timestamp(CLOSE));
    def.window_start = Some(Timestamp(START));
    def.recurring = Some(RecurringSpec {
        asset: Asset::new("BTC"),
        direction: Direction::Above,
        strike: Some(strike.parse().unwrap()),
    });
    def
}

/// Polymarket YES at 0.55 (fee 0.017325/share) and Kalshi NO at 0.40 (the
/// mirror of a 0.60 YES bid; fee 0.0168/share): 0.984125 per pair on 100.
fn matched_books(kalshi_size: &str) -> Vec<Event> {
    vec![
        listed(
            0,
            recurring(
                "pm-btc-100k",
                Venue::Polymarket,
                "https://www.cfbenchmarks.com/brti/",
                "100000",
            ),
        ),
        listed(
            1,
            recurring(
                "KXBTC-100K",
                Venue::Kalshi,
                "cfbenchmarks.com/brti",
                "100000.00",
            ),
        ),
        book(10, "pm-btc-100k", 0, &[("0.50", "100")], &[("0.55", "100")]),
        book(11, "pm-btc-100k", 1, &[("0.40", "100")], &[("0.48", "100")]),
        book(12, "KXBTC-100K", 1, &[("0.35", kalshi_size)], &[]),
        book(13, "KXBTC-100K", 0, &[("0.60", kalshi_size)], &[]),
    ]
}

#[test]
fn recurring_markets_with_the_same_key_are_paired_and_tradable() {
    let mut e = engine(config(dec!(0.01), vec![]), RiskLimits::default());
    let out = feed(&mut e, matched_books("100")[..2].to_vec());
    assert_eq!(out, vec![]);
    let pairs = e.pairs();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].origin, PairOrigin::Recurring);
    assert_eq!(pairs[0].blocked, None);
}

#[test]
fn a_pair_edge_just_above_the_threshold_buys_yes_on_one_venue_and_no_on_the_other() {
    let mut e = engine(config(dec!(0.0158), vec![]), RiskLimits::default());
    let out = feed(&mut e, matched_books("100"));
    let opps = opportunities(&out);
    assert_eq!(opps.len(), 1);
    assert_eq!(opps[0].edge, dec!(0.015875));
    let f = fills(&out);
    assert_eq!(
        (f[0].venue, f[0].outcome, f[0].avg_price, f[0].fee),
        (Venue::Polymarket, 0, dec!(0.55), dec!(1.7325))
    );
    assert_eq!(
        (f[1].venue, f[1].outcome, f[1].avg_price, f[1].fee),
        (Venue::Kalshi, 1, dec!(0.40), dec!(1.68))
    );
    assert_eq!(
        e.portfolio().balances,
        vec![
            (Venue::Polymarket, dec!(943.2675)),
            (Venue::Kalshi, dec!(958.32))
        ]
    );
}

#[test]
fn a_pair_edge_just_below_the_threshold_is_left_alone() {
    let mut e = engine(config(dec!(0.0159), vec![]), RiskLimits::default());
    assert_eq!(feed(&mut e, matched_books("100")), vec![]);
}

#[test]
fn kalshis_rounding_to_the_cent_can_erase_a_thin_edge() {
    // On 10 contracts the Kalshi fee 0.168 is charged 0.17: the edge is
    // 0.015675, not the 0.015875 the per-share fees suggest.
    let mut e = engine(config(dec!(0.0157), vec![]), RiskLimits::default());
    assert_eq!(feed(&mut e, matched_books("10")), vec![]);
    let mut e = engine(config(dec!(0.0156), vec![]), RiskLimits::default());
    let out = feed(&mut e, matched_books("10"));
    assert_eq!(opportunities(&out)[0].edge, dec!(0.015675));
}

#[test]
fn a_pair_whose_resolution_sources_differ_is_never_traded_and_says_why() {
    let mut e = engine(config(dec!(0.01), vec![]), RiskLimits::default());
    let mut events = matched_books("100");
    events[0] = listed(
        0,
        recurring(
            "pm-btc-100k",
            Venue::Polymarket,
            "https://www.coinbase.com/price/bitcoin",
            "100000",
        ),
    );
    let out = feed(&mut e, events);
    let reason = "resolution source differs: polymarket pm-btc-100k resolves on \
                  \"https://www.coinbase.com/price/bitcoin\", kalshi KXBTC-100K on \"cfbenchmarks.com/brti\"";
    assert_eq!(out.len(), 1, "{out:?}");
    let Decision::PairBlocked(blocked) = &out[0] else {
        panic!("expected a blocked pair, got {:?}", out[0]);
    };
    assert_eq!(blocked.reason, reason);
    assert_eq!(blocked.basis_risk, None);
    assert_eq!(e.pairs()[0].blocked.as_deref(), Some(reason));
}

/// The matched books with Polymarket's market on Chainlink, Kalshi's on CF
/// Benchmarks: the known basis risk.
fn chainlink_vs_cf_benchmarks() -> Vec<Event> {
    let mut events = matched_books("100");
    events[0] = listed(
        0,
        recurring(
            "pm-btc-100k",
            Venue::Polymarket,
            "https://data.chain.link/streams/btc-usd",
            "100000",
        ),
    );
    events
}

fn basis_config(min_edge: Decimal, policy: BasisRiskPolicy, extra: Decimal) -> StrategiesConfig {
    let mut config = config(min_edge, vec![]);
    if let Some(c) = config.cross_venue_arb.as_mut() {
        c.basis_risk = policy;
        c.basis_risk_edge = extra;
    }
    config
}

#[test]
fn chainlink_against_cf_benchmarks_is_a_named_basis_risk_refused_by_default() {
    let mut e = engine(config(dec!(0.01), vec![]), RiskLimits::default());
    let out = feed(&mut e, chainlink_vs_cf_benchmarks());
    let reason = "basis risk chainlink_vs_cf_benchmarks: polymarket pm-btc-100k resolves on \
                  \"https://data.chain.link/streams/btc-usd\", kalshi KXBTC-100K on \"cfbenchmarks.com/brti\" \
                  (Chainlink's data stream and CF Benchmarks' real time index (a 60-second average) \
                  can settle on opposite sides of the strike when the price ends near it); \
                  refused (basis_risk is \"refuse\")";
    assert_eq!(out.len(), 1, "{out:?}");
    let Decision::PairBlocked(blocked) = &out[0] else {
        panic!("expected a blocked pair, got {:?}", out[0]);
    };
    assert_eq!(blocked.reason, reason);
    assert_eq!(blocked.basis_risk, Some("chainlink_vs_cf_benchmarks"));
    let pairs = e.pairs();
    assert_eq!(pairs[0].blocked.as_deref(), Some(reason));
    assert_eq!(pairs[0].basis_risk, Some("chainlink_vs_cf_benchmarks"));
}

#[test]
fn a_priced_basis_risk_trades_only_with_the_extra_edge() {
    // The pair's edge is 0.015875 (see above): 0.01 + 0.005 clears it …
    let mut e = engine(
        basis_config(dec!(0.01), BasisRiskPolicy::Price, dec!(0.005)),
        RiskLimits::default(),
    );
    let out = feed(&mut e, chainlink_vs_cf_benchmarks());
    let opps = opportunities(&out);
    assert_eq!(opps.len(), 1, "{out:?}");
    assert_eq!(opps[0].edge, dec!(0.015875));
    assert!(
        opps[0]
            .summary
            .ends_with("(basis risk chainlink_vs_cf_benchmarks priced at 0.005 more edge)"),
        "{}",
        opps[0].summary
    );
    let pairs = e.pairs();
    assert_eq!(
        (pairs[0].blocked.clone(), pairs[0].extra_edge),
        (None, dec!(0.005))
    );
    // … 0.01 + 0.006 does not, though 0.016 alone would on a same-source pair.
    let mut e = engine(
        basis_config(dec!(0.01), BasisRiskPolicy::Price, dec!(0.006)),
        RiskLimits::default(),
    );
    assert_eq!(feed(&mut e, chainlink_vs_cf_benchmarks()), vec![]);
}

#[test]
fn a_pair_whose_polarity_differs_is_never_traded() {
    let mut events = matched_books("100");
    let mut below = recurring(
        "KXBTC-100K",
        Venue::Kalshi,
        "cfbenchmarks.com/brti",
        "100000",
    );
    if let Some(spec) = below.recurring.as_mut() {
        spec.direction = Direction::Below;
    }
    let pm = recurring(
        "pm-btc-100k",
        Venue::Polymarket,
        "cfbenchmarks.com/brti",
        "100000",
    );
    let pair = CuratedPair {
        polymarket: "pm-btc-100k".into(),
        kalshi: "KXBTC-100K".into(),
        inverted: false,
        note: None,
    };
    let mut e = engine(config(dec!(0.01), vec![pair]), RiskLimits::default());
    events[0] = listed(0, pm);
    events[1] = listed(1, below);
    let out = feed(&mut e, events);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        e.pairs()[0].blocked.as_deref(),
        Some(
            "polarity differs: polymarket pm-btc-100k pays YES when the price ends above 100000, \
             kalshi KXBTC-100K pays YES when the price ends below 100000"
        )
    );
}

#[test]
fn a_curated_pair_whose_windows_differ_is_never_traded() {
    let pair = CuratedPair {
        polymarket: "pm-fed".into(),
        kalshi: "KXFED".into(),
        inverted: false,
        note: None,
    };
    let mut e = engine(config(dec!(0.01), vec![pair]), RiskLimits::default());
    let mut pm = market("pm-fed", Venue::Polymarket, &["Yes", "No"], dec!(0.04));
    pm.resolution_source = Some("federalreserve.gov".into());
    pm.closes_at = Some(Timestamp(2_000_000));
    let mut k = pm.clone();
    k.id = crate::MarketId::new("KXFED");
    k.venue = Venue::Kalshi;
    k.closes_at = Some(Timestamp(2_086_400));
    let out = feed(
        &mut e,
        vec![
            listed(0, pm),
            listed(1, k),
            book(2, "pm-fed", 0, &[], &[("0.10", "100")]),
            book(3, "KXFED", 0, &[("0.95", "100")], &[]),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        e.pairs()[0].blocked.as_deref(),
        Some("window differs: polymarket pm-fed closes at 2000000, kalshi KXFED at 2086400")
    );
    assert_eq!(e.pairs()[0].origin, PairOrigin::Curated);
}

#[test]
fn an_inverted_curated_pair_buys_the_same_side_on_both_venues() {
    let pair = CuratedPair {
        polymarket: "pm-above".into(),
        kalshi: "KX-BELOW".into(),
        inverted: true,
        note: Some("above vs below the same strike".into()),
    };
    let mut e = engine(config(dec!(0.01), vec![pair]), RiskLimits::default());
    let mut pm = market("pm-above", Venue::Polymarket, &["Yes", "No"], dec!(0));
    pm.resolution_source = Some("source".into());
    pm.closes_at = Some(Timestamp(5_000_000));
    let mut k = pm.clone();
    k.id = crate::MarketId::new("KX-BELOW");
    k.venue = Venue::Kalshi;
    k.fee_rate = dec!(0.07);
    let out = feed(
        &mut e,
        vec![
            listed(0, pm),
            listed(1, k),
            book(2, "pm-above", 0, &[], &[("0.60", "10")]),
            // Kalshi YES ask 0.30 (NO bid 0.70): "below" YES pairs with "above" YES.
            book(3, "KX-BELOW", 1, &[("0.70", "10")], &[]),
        ],
    );
    let f = fills(&out);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].outcome, f[1].outcome), (0, 0));
    // 10 × (0.60 + 0.30) + ceil(10·0.07·0.3·0.7 = 0.147) = 9.15
    assert_eq!(opportunities(&out)[0].edge, dec!(0.085));
}
