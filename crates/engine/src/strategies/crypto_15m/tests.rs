//! Tests of the 15-minute up/down strategy, through the engine.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{Crypto15mConfig, StrategiesConfig, StrategyKind, Venue};

use super::parse_updown_slug;
use crate::clock::{EventClock, Timestamp};
use crate::engine::Engine;
use crate::event::{Event, EventKind, SpotPrice};
use crate::health::HealthStatus;
use crate::strategies::testkit::{
    book, engine, feed, fills, listed, market, opportunities, resolved,
};
use crate::types::Asset;

const START_S: i64 = 1_777_467_600;
const START: i64 = START_S * 1000;
const ID: &str = "btc-updown-15m-1777467600";

fn config(min_edge: Decimal) -> StrategiesConfig {
    StrategiesConfig {
        crypto_15m: Some(Crypto15mConfig {
            assets: vec!["BTC".into()],
            spot_venues: vec![Venue::Coinbase, Venue::Kraken],
            min_edge,
            min_volatility_samples: 5,
            volatility_window_secs: 600,
            market_cooldown_secs: 0,
            ..Crypto15mConfig::default()
        }),
        ..StrategiesConfig::default()
    }
}

fn spot(ts: i64, venue: Venue, price: &str) -> Event {
    Event::new(
        Timestamp(ts),
        EventKind::Spot(SpotPrice {
            venue,
            asset: Asset::new("btc"),
            price: price.parse().unwrap(),
        }),
    )
}

/// The market, then eleven one-second spot prints alternating 100000 and
/// 100100 (the first, at the window's open, is the opening price), ending
/// above the open at 100100 ten seconds in... then `last` at 11 s.
fn window_with_spot(last: &str) -> Vec<Event> {
    let mut events = vec![listed(
        START - 5_000,
        market(ID, Venue::Polymarket, &["Up", "Down"], dec!(0.07)),
    )];
    for k in 0..11 {
        let price = if k % 2 == 0 { "100000" } else { "100100" };
        events.push(spot(START + k * 1000, Venue::Coinbase, price));
    }
    events.push(spot(START + 11_000, Venue::Coinbase, last));
    events
}

fn edge_at(fair: Decimal, price: Decimal) -> Decimal {
    fair - price - dec!(0.07) * price * (Decimal::ONE - price)
}

#[test]
fn a_window_is_recognised_from_its_slug() {
    assert_eq!(
        parse_updown_slug(ID),
        Some((Asset::new("BTC"), Timestamp::from_secs(START_S)))
    );
    assert_eq!(parse_updown_slug("btc-updown-15m-1777467601"), None); // not aligned to 900 s
    assert_eq!(parse_updown_slug("btc-updown-5m-1777467600"), None);
}

#[test]
fn the_fair_value_follows_spot_against_the_opening_price() {
    let mut e = engine(config(dec!(0.03)), RiskLimits::default());
    feed(&mut e, window_with_spot("100100"));
    let fv = e.crypto_fair_value(ID).unwrap();
    assert_eq!(fv.open, dec!(100000));
    assert_eq!(fv.spot, dec!(100100));
    assert_eq!(fv.remaining_secs, dec!(889));
    // Eleven returns of ±0.1 % a second: σ² ≈ 1e-6 per second, σ√τ ≈ 0.0298,
    // ln(1.001)/0.0298 ≈ 0.0335, Φ ≈ 0.5134.
    assert!(
        fv.prob_up > dec!(0.513) && fv.prob_up < dec!(0.514),
        "{}",
        fv.prob_up
    );
}

#[test]
fn an_up_ask_just_inside_the_edge_is_bought_and_one_tick_higher_is_not() {
    let min_edge = dec!(0.03);
    let mut e = engine(config(min_edge), RiskLimits::default());
    feed(&mut e, window_with_spot("100100"));
    let fair = e.crypto_fair_value(ID).unwrap().prob_up;
    let mut price = dec!(0.999);
    while edge_at(fair, price) <= min_edge {
        price -= dec!(0.001);
    }
    let too_dear = price + dec!(0.001);
    assert!(edge_at(fair, too_dear) <= min_edge);
    let last = START + 11_000;
    let out = feed(
        &mut e,
        vec![book(last, ID, 0, &[], &[(&too_dear.to_string(), "20")])],
    );
    assert_eq!(out, vec![]);
    let out = feed(
        &mut e,
        vec![book(last, ID, 0, &[], &[(&price.to_string(), "20")])],
    );
    let f = fills(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].outcome, f[0].size, f[0].avg_price),
        (0, dec!(20), price)
    );
    let opp = opportunities(&out)[0];
    assert_eq!(opp.strategy, StrategyKind::Crypto15m);
    assert!(
        opp.edge > min_edge && opp.edge < min_edge + dec!(0.002),
        "{}",
        opp.edge
    );
}

#[test]
fn a_spot_well_below_the_published_open_buys_down_and_the_resolution_pays_it() {
    let mut e = engine(config(dec!(0.03)), RiskLimits::default());
    let mut events = window_with_spot("100100");
    let mut def = market(ID, Venue::Polymarket, &["Up", "Down"], dec!(0.07));
    def.reference_price = Some(dec!(103000));
    events[0] = listed(START - 5_000, def);
    let t = START + 11_000;
    events.push(book(t, ID, 0, &[], &[("0.30", "100")]));
    events.push(book(t, ID, 1, &[], &[("0.70", "30")]));
    let out = feed(&mut e, events);
    // ln(100100/103000)/0.0298 ≈ −0.96: P(Down) ≈ 0.83, far above 0.70 + fee.
    let fair_down = Decimal::ONE - e.crypto_fair_value(ID).unwrap().prob_up;
    assert!(
        fair_down > dec!(0.83) && fair_down < dec!(0.84),
        "{fair_down}"
    );
    assert_eq!(
        feed(&mut e, vec![resolved(START + 900_000, ID, 1)]).len(),
        1
    );
    let f = fills(&out);
    assert_eq!(f.len(), 1);
    // 30 shares, fee 30·0.07·0.7·0.3 = 0.441.
    assert_eq!(
        (f[0].outcome, f[0].size, f[0].avg_price, f[0].fee),
        (1, dec!(30), dec!(0.70), dec!(0.441))
    );
    let p = e.portfolio();
    assert_eq!(p.realised_pnl, dec!(9)); // 30 − 21
    assert_eq!(p.fees_paid, dec!(0.441));
    assert_eq!(p.balances[0], (Venue::Polymarket, dec!(1008.559)));
}

#[test]
fn no_order_is_sent_in_the_last_minute_of_a_window() {
    let mut e = engine(config(dec!(0.03)), RiskLimits::default());
    let mut events = window_with_spot("98000");
    // Keep spot fresh up to 50 s before the close, then offer Down cheaply.
    let late = START + 850_000;
    events.push(spot(late, Venue::Coinbase, "98000"));
    events.push(book(late, ID, 1, &[], &[("0.50", "30")]));
    assert_eq!(opportunities(&feed(&mut e, events)).len(), 0);
}

#[test]
fn a_stale_spot_price_stops_trading_and_degrades_health() {
    let mut e: Engine<EventClock> = engine(config(dec!(0.03)), RiskLimits::default());
    let mut events = window_with_spot("98000");
    let later = START + 30_000; // 19 s after the last print, over max_spot_age_secs 10
    events.push(book(later, ID, 1, &[], &[("0.50", "30")]));
    assert_eq!(feed(&mut e, events), vec![]);
    let health = e.health();
    assert_eq!(health[0].status, HealthStatus::Degraded);
    assert_eq!(
        health[0].reason.as_deref(),
        Some("no BTC spot price newer than 10s from [Coinbase, Kraken]")
    );
}

#[test]
fn the_composite_spot_is_the_median_of_the_fresh_venues() {
    let mut e = engine(config(dec!(0.03)), RiskLimits::default());
    let mut events = window_with_spot("100100");
    events.push(spot(START + 11_000, Venue::Kraken, "100300"));
    feed(&mut e, events);
    // Two venues: the mean of the middle pair.
    assert_eq!(e.crypto_fair_value(ID).unwrap().spot, dec!(100200));
}
