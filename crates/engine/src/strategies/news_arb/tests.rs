//! Tests of news arbitrage, through the engine.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{NewsArbConfig, NewsRule, StrategiesConfig, StrategyKind, Venue};

use super::contains_word;
use crate::clock::Timestamp;
use crate::event::{Event, EventKind, Headline};
use crate::health::{FeedHealth, HealthStatus, RateLimit};
use crate::strategies::testkit::{book, engine, feed, fills, listed, market, opportunities};

fn config(min_edge: Decimal) -> StrategiesConfig {
    StrategiesConfig {
        news_arb: Some(NewsArbConfig {
            min_edge,
            max_headline_age_secs: 300,
            rules: vec![NewsRule {
                market: "fed-cut-dec".into(),
                outcome: "Yes".into(),
                keywords: vec!["fed".into(), "cuts".into()],
                entities: vec!["Powell".into(), "FOMC".into()],
                exclude: vec!["rumor".into()],
                fair_price: dec!(0.90),
                max_size: Some(dec!(40)),
            }],
            ..NewsArbConfig::default()
        }),
        ..StrategiesConfig::default()
    }
}

fn headline(ts: i64, id: &str, title: &str) -> Event {
    Event::new(
        Timestamp(ts),
        EventKind::Headline(Box::new(Headline {
            id: id.into(),
            source: "rss".into(),
            title: title.into(),
            summary: String::new(),
            published: Timestamp(ts),
        })),
    )
}

/// A fee-free market (Polymarket's geopolitics rate is 0) with YES offered at `ask`.
fn market_with_ask(ask: &str) -> Vec<Event> {
    vec![
        listed(
            0,
            market("fed-cut-dec", Venue::Polymarket, &["Yes", "No"], dec!(0)),
        ),
        book(1_000, "fed-cut-dec", 0, &[("0.50", "100")], &[(ask, "100")]),
    ]
}

#[test]
fn words_match_whole_and_ignore_case_once_lowered() {
    assert!(contains_word("the fed cuts rates", "fed"));
    assert!(!contains_word("fedex cuts jobs", "fed"));
    assert!(contains_word("powell: fed cuts", "powell"));
    assert!(contains_word("fomc-led fed cuts", "fomc"));
}

#[test]
fn a_matching_headline_buys_when_the_edge_is_just_above_the_threshold() {
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    let mut events = market_with_ask("0.849");
    events.push(headline(2_000, "h1", "Powell: the Fed cuts rates by 50bp"));
    let out = feed(&mut e, events);
    let f = fills(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].size, f[0].avg_price, f[0].fee),
        (dec!(40), dec!(0.849), dec!(0))
    );
    let opp = opportunities(&out)[0];
    assert_eq!(opp.strategy, StrategyKind::NewsArb);
    assert_eq!(opp.edge, dec!(0.051));
    assert!(
        opp.summary
            .starts_with("\"Powell: the Fed cuts rates by 50bp\" → Yes fed-cut-dec"),
        "{}",
        opp.summary
    );
}

#[test]
fn a_matching_headline_does_nothing_when_the_edge_is_just_below_the_threshold() {
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    let mut events = market_with_ask("0.851");
    events.push(headline(2_000, "h1", "Powell: the Fed cuts rates by 50bp"));
    assert_eq!(feed(&mut e, events), vec![]);
}

#[test]
fn the_signal_stays_open_and_trades_when_the_ask_comes_down() {
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    let mut events = market_with_ask("0.88");
    events.push(headline(2_000, "h1", "FOMC: Fed cuts"));
    events.push(book(60_000, "fed-cut-dec", 0, &[], &[("0.80", "100")]));
    let out = feed(&mut e, events);
    assert_eq!(fills(&out)[0].avg_price, dec!(0.80));
    // After the headline is 300 s old the signal is gone.
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    let mut events = market_with_ask("0.88");
    events.push(headline(2_000, "h1", "FOMC: Fed cuts"));
    events.push(book(302_000, "fed-cut-dec", 0, &[], &[("0.80", "100")]));
    assert_eq!(feed(&mut e, events), vec![]);
}

#[test]
fn an_excluded_word_a_missing_entity_a_repeat_and_an_old_headline_do_not_trade() {
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    let mut events = market_with_ask("0.50");
    events.push(headline(2_000, "h1", "Rumor: Powell says the Fed cuts"));
    events.push(headline(2_000, "h2", "The Fed cuts, analysts say"));
    let mut old = headline(400_000, "h3", "Powell: Fed cuts");
    if let EventKind::Headline(h) = &mut old.kind {
        h.published = Timestamp(2_000);
    }
    events.push(old);
    assert_eq!(feed(&mut e, events), vec![]);
    let out = feed(&mut e, vec![headline(400_001, "h4", "Powell: Fed cuts")]);
    assert_eq!(fills(&out).len(), 1);
    let again = feed(
        &mut e,
        vec![
            book(400_002, "fed-cut-dec", 0, &[], &[("0.50", "100")]),
            headline(400_003, "h4", "Powell: Fed cuts"),
        ],
    );
    assert_eq!(again, vec![]);
}

#[test]
fn a_rate_limit_reported_by_the_worker_shows_in_health_until_it_expires() {
    let mut e = engine(config(dec!(0.05)), RiskLimits::default());
    feed(&mut e, market_with_ask("0.88"));
    feed(
        &mut e,
        vec![Event::new(
            Timestamp(1_000),
            EventKind::FeedHealth(Box::new(FeedHealth {
                strategy: StrategyKind::NewsArb,
                degraded: None,
                rate_limited: Some(RateLimit {
                    until: Some(Timestamp(61_000)),
                    reason: "NewsAPI 429: retry after 60 s".into(),
                }),
            })),
        )],
    );
    let h = &e.health()[0];
    assert_eq!(
        (h.status, h.reason.as_deref()),
        (
            HealthStatus::RateLimited,
            Some("NewsAPI 429: retry after 60 s")
        )
    );
    feed(&mut e, vec![Event::new(Timestamp(61_000), EventKind::Tick)]);
    assert_eq!(e.health()[0].status, HealthStatus::Ok);
}

#[test]
fn a_rule_naming_an_outcome_the_market_lacks_degrades_health() {
    let mut config = config(dec!(0.05));
    if let Some(n) = config.news_arb.as_mut() {
        n.rules[0].outcome = "Maybe".into();
    }
    let mut e = engine(config, RiskLimits::default());
    feed(&mut e, market_with_ask("0.50"));
    let h = &e.health()[0];
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(
        h.reason.as_deref(),
        Some("rules[0]: market fed-cut-dec has no outcome \"Maybe\" (it has [\"Yes\", \"No\"])")
    );
}
