//! Risk limits and circuit breakers, through the engine's public API.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{
    ComplementArbConfig, NewsArbConfig, NewsRule, StrategiesConfig, StrategyKind, Venue,
};
use polybot_engine::{
    BreakerState, Decision, Engine, EngineConfig, EventClock, HealthStatus, OrderEnd,
    PaperExchange, RiskViolation, Timestamp, parse_jsonl,
};

fn engine(limits: RiskLimits, cash: Decimal) -> Engine<EventClock> {
    let config = EngineConfig {
        strategies: StrategiesConfig {
            complement_arb: Some(ComplementArbConfig {
                min_edge: dec!(0.01),
                market_cooldown_secs: 0,
                ..ComplementArbConfig::default()
            }),
            ..StrategiesConfig::default()
        },
        risk: limits,
        balances: vec![(Venue::Polymarket, cash)],
    };
    Engine::new(config, EventClock::default()).unwrap()
}

/// A fee-free binary market whose YES + NO asks cost 0.90 a set, 100 deep,
/// relisted on each call at `ts` so that it can be offered again.
fn arb(ts: i64, market: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"market","ts":{ts},"market":"{m}","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0"}}"#,
            "\n",
            r#"{{"type":"book","ts":{ts},"market":"{m}","outcome":"Yes","bids":[["0.35","100"]],"asks":[["0.40","100"]]}}"#,
            "\n",
            r#"{{"type":"book","ts":{ts},"market":"{m}","outcome":"No","bids":[["0.45","100"]],"asks":[["0.50","100"]]}}"#,
            "\n"
        ),
        ts = ts,
        m = market
    )
}

fn run(engine: &mut Engine<EventClock>, jsonl: &str) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut paper = PaperExchange::default();
    for event in parse_jsonl(jsonl).unwrap() {
        let mut batch = Vec::new();
        engine.on_event(&event, &mut batch).unwrap();
        paper.execute(engine, &mut batch);
        out.append(&mut batch);
    }
    out
}

fn rejections(out: &[Decision]) -> Vec<&RiskViolation> {
    out.iter()
        .filter_map(|d| match d {
            Decision::Rejected(r) => Some(&r.violation),
            _ => None,
        })
        .collect()
}

fn fill_count(out: &[Decision]) -> usize {
    out.iter()
        .filter(|d| matches!(d, Decision::Fill(_)))
        .count()
}

#[test]
fn the_kill_switch_rejects_every_order_and_says_so() {
    let mut e = engine(RiskLimits::default(), dec!(1000));
    e.set_kill_switch(true);
    let out = run(&mut e, &arb(1, "m1"));
    assert_eq!(rejections(&out), vec![&RiskViolation::KillSwitch]);
    assert_eq!(fill_count(&out), 0);
    let Decision::Opportunity(o) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        o.rejection.as_deref(),
        Some("the kill switch is on: no new orders")
    );
    assert_eq!(o.executed_at, None);
}

#[test]
fn a_set_with_one_order_over_the_notional_cap_is_rejected_whole() {
    let limits = RiskLimits {
        max_order_notional: dec!(45),
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    let out = run(&mut e, &arb(1, "m1"));
    // YES: 100 at 0.40 commits 40, within the cap; NO: 100 at 0.50 is 50.
    assert_eq!(
        rejections(&out),
        vec![&RiskViolation::OrderNotional {
            market: "m1".into(),
            size: dec!(100),
            limit_price: dec!(0.50),
            notional: dec!(50.00),
            limit: dec!(45)
        }]
    );
    assert_eq!(
        rejections(&out)[0].to_string(),
        "an order in m1 would commit 50.00 (100 at 0.50), over max_order_notional 45"
    );
    assert_eq!(fill_count(&out), 0, "no leg of a rejected set is sent");
    assert!(
        !out.iter().any(|d| matches!(d, Decision::Order(_))),
        "no order is emitted"
    );
    let opportunity = out
        .iter()
        .find_map(|d| match d {
            Decision::Opportunity(o) => Some(o),
            _ => None,
        })
        .unwrap();
    assert_eq!(opportunity.executed_at, None);
    assert_eq!(
        opportunity.rejection.as_deref(),
        Some("an order in m1 would commit 50.00 (100 at 0.50), over max_order_notional 45")
    );
}

#[test]
fn an_order_at_the_notional_cap_passes() {
    let limits = RiskLimits {
        max_order_notional: dec!(50),
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    let out = run(&mut e, &arb(1, "m1"));
    assert!(rejections(&out).is_empty());
    assert_eq!(fill_count(&out), 2);
}

#[test]
fn a_set_that_would_exceed_the_per_market_limit_is_rejected_whole() {
    let limits = RiskLimits {
        max_position_per_market: dec!(89.99),
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    let out = run(&mut e, &arb(1, "m1"));
    assert_eq!(
        rejections(&out),
        vec![&RiskViolation::MarketPosition {
            market: "m1".into(),
            would_be: dec!(90.00),
            limit: dec!(89.99)
        }]
    );
    assert_eq!(fill_count(&out), 0, "no leg of a rejected set is sent");
}

#[test]
fn total_exposure_counts_positions_in_every_market() {
    let limits = RiskLimits {
        max_total_exposure: dec!(150),
        max_position_per_market: dec!(100),
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    let first = run(&mut e, &arb(1, "m1"));
    assert_eq!(fill_count(&first), 2);
    let second = run(&mut e, &arb(2, "m2"));
    assert_eq!(
        rejections(&second),
        vec![&RiskViolation::TotalExposure {
            would_be: dec!(180.00),
            limit: dec!(150)
        }]
    );
    assert_eq!(
        rejections(&second)[0].to_string(),
        "total exposure would be 180.00, over max_total_exposure 150"
    );
}

#[test]
fn a_set_with_more_legs_than_open_orders_allowed_is_rejected() {
    let limits = RiskLimits {
        max_open_orders: 1,
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    let out = run(&mut e, &arb(1, "m1"));
    assert_eq!(
        rejections(&out),
        vec![&RiskViolation::OpenOrders {
            would_be: 2,
            limit: 1
        }]
    );
}

#[test]
fn an_order_the_balance_cannot_pay_for_is_rejected() {
    let mut e = engine(RiskLimits::default(), dec!(50));
    let out = run(&mut e, &arb(1, "m1"));
    assert_eq!(
        rejections(&out)[0].to_string(),
        "polymarket balance 50 does not cover 90.00"
    );
}

#[test]
fn once_todays_marked_loss_reaches_the_limit_new_orders_stop_until_the_next_day() {
    let config = EngineConfig {
        strategies: StrategiesConfig {
            complement_arb: Some(ComplementArbConfig {
                min_edge: dec!(0.01),
                market_cooldown_secs: 0,
                ..ComplementArbConfig::default()
            }),
            news_arb: Some(NewsArbConfig {
                min_edge: dec!(0.05),
                rules: vec![NewsRule {
                    market: "n1".into(),
                    outcome: "Yes".into(),
                    keywords: vec!["approved".into()],
                    fair_price: dec!(0.95),
                    ..NewsRule::default()
                }],
                ..NewsArbConfig::default()
            }),
            ..StrategiesConfig::default()
        },
        risk: RiskLimits {
            max_daily_loss: dec!(20),
            ..RiskLimits::default()
        },
        balances: vec![(Venue::Polymarket, dec!(1000))],
    };
    let mut e = Engine::new(config, EventClock::default()).unwrap();
    assert!(!e.daily_loss_limit_hit());
    // News buys 50 YES at 0.80 (max_size 50); then the YES bid collapses to 0.30.
    let news = concat!(
        r#"{"type":"market","ts":1000,"market":"n1","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0"}"#,
        "\n",
        r#"{"type":"book","ts":1000,"market":"n1","outcome":"No","bids":[],"asks":[]}"#,
        "\n",
        r#"{"type":"book","ts":1000,"market":"n1","outcome":"Yes","bids":[["0.79","50"]],"asks":[["0.80","50"]]}"#,
        "\n",
        r#"{"type":"headline","ts":1001,"id":"a","source":"rss","title":"Drug approved"}"#,
        "\n",
        r#"{"type":"book","ts":1002,"market":"n1","outcome":"Yes","bids":[["0.30","50"]],"asks":[]}"#,
        "\n"
    );
    let out = run(&mut e, news);
    assert_eq!(fill_count(&out), 1);
    assert_eq!(e.daily_pnl(), dec!(-25)); // 50 × (0.30 − 0.80)
    assert!(e.daily_loss_limit_hit());
    let out = run(&mut e, &arb(2_000, "m1"));
    assert_eq!(
        rejections(&out),
        vec![&RiskViolation::DailyLoss {
            loss: dec!(25),
            limit: dec!(20)
        }]
    );
    // The next UTC day starts from the marked equity: the same set trades.
    let out = run(&mut e, &arb(86_400_000, "m2"));
    assert_eq!(fill_count(&out), 2);
    assert_eq!(e.daily_pnl(), dec!(10));
    assert!(!e.daily_loss_limit_hit());
}

#[test]
fn a_strategy_whose_breaker_is_open_takes_no_decisions_until_a_trial_succeeds() {
    let limits = RiskLimits {
        breaker_failure_threshold: 3,
        breaker_cooldown_secs: 60,
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    run(&mut e, "{\"type\":\"tick\",\"ts\":1000}\n");
    for i in 0..3 {
        e.record_failure(
            StrategyKind::ComplementArb,
            format!("venue 503 on order {i}"),
        );
    }
    let h = &e.health()[0];
    assert_eq!(h.status, HealthStatus::BreakerOpen);
    assert_eq!(
        h.breaker,
        BreakerState::Open {
            until: Timestamp(61_000)
        }
    );
    assert_eq!(
        h.reason.as_deref(),
        Some(
            "circuit breaker open until 61000 after 3 consecutive failures; last: venue 503 on order 2"
        )
    );
    assert_eq!(
        fill_count(&run(&mut e, &arb(30_000, "m1"))),
        0,
        "open: no decisions"
    );
    // After the cooldown the breaker lets a trial through; it fills, so it closes.
    let out = run(&mut e, &arb(61_000, "m2"));
    assert_eq!(fill_count(&out), 2);
    let h = &e.health()[0];
    assert_eq!(
        (h.status, h.breaker, h.consecutive_failures),
        (HealthStatus::Ok, BreakerState::Closed, 0)
    );
}

#[test]
fn a_half_open_breaker_is_reported_as_degraded() {
    let limits = RiskLimits {
        breaker_failure_threshold: 1,
        breaker_cooldown_secs: 10,
        ..RiskLimits::default()
    };
    let mut e = engine(limits, dec!(1000));
    run(&mut e, "{\"type\":\"tick\",\"ts\":0}\n");
    e.record_failure(StrategyKind::ComplementArb, "timeout");
    run(&mut e, "{\"type\":\"tick\",\"ts\":10000}\n");
    let h = &e.health()[0];
    assert_eq!(
        (h.status, h.breaker),
        (HealthStatus::Degraded, BreakerState::HalfOpen)
    );
}

/// Feeds events without filling anything: the orders wait for an executor.
fn decide(engine: &mut Engine<EventClock>, jsonl: &str) -> Vec<Decision> {
    let mut out = Vec::new();
    for event in parse_jsonl(jsonl).unwrap() {
        engine.on_event(&event, &mut out).unwrap();
    }
    out
}

fn orders(out: &[Decision]) -> Vec<polybot_engine::Order> {
    out.iter()
        .filter_map(|d| match d {
            Decision::Order(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn consecutive_failures(engine: &Engine<EventClock>) -> u32 {
    engine.health()[0].consecutive_failures
}

#[test]
fn a_venues_partial_fill_counts_one_failure_for_the_opportunity() {
    let mut e = engine(RiskLimits::default(), dec!(1000));
    let out = decide(&mut e, &arb(1_000, "m1"));
    let legs = orders(&out);
    assert_eq!(legs.len(), 2);
    // The venue fills the YES leg in full and 40 of the NO leg.
    e.venue_fill(&legs[0], dec!(100), dec!(0.40), dec!(0));
    assert_eq!(
        e.order_finished(&legs[0], dec!(100), OrderEnd::Matched),
        None
    );
    e.venue_fill(&legs[1], dec!(40), dec!(0.50), dec!(0));
    let Some(Decision::Cancel(rest)) = e.order_finished(&legs[1], dec!(40), OrderEnd::Matched)
    else {
        panic!("the unfilled rest is cancelled")
    };
    assert_eq!(rest.remaining, dec!(60));
    assert_eq!(
        rest.reason,
        "immediate-or-cancel: 40 of 100 m1 1 filled at or better than 0.50"
    );
    assert_eq!(consecutive_failures(&e), 1);
    assert_eq!(e.open_orders(), 0);
}

#[test]
fn venue_refusals_count_per_order_and_withdrawn_orders_count_nothing() {
    let mut e = engine(RiskLimits::default(), dec!(1000));
    let mut out = decide(&mut e, &arb(1_000, "m1"));
    let legs = orders(&out);
    for leg in &legs {
        out.extend(e.order_finished(
            leg,
            dec!(0),
            OrderEnd::Failed("polymarket rejected order: not enough balance".to_owned()),
        ));
    }
    assert_eq!(consecutive_failures(&e), 2);
    // Nothing filled: the opportunity's row says why, in the venue's words.
    e.mark_unexecuted(&mut out);
    let Some(Decision::Opportunity(o)) = out.first() else {
        panic!("the opportunity comes first: {out:?}")
    };
    assert_eq!(o.executed_at, None);
    assert_eq!(
        o.rejection.as_deref(),
        Some("polymarket rejected order: not enough balance")
    );

    let mut e = engine(RiskLimits::default(), dec!(1000));
    let mut out = decide(&mut e, &arb(1_000, "m1"));
    for leg in &orders(&out) {
        out.extend(e.order_finished(
            leg,
            dec!(0),
            OrderEnd::Withdrawn("shadow: orders signed and not sent".to_owned()),
        ));
    }
    assert_eq!(consecutive_failures(&e), 0);
    e.mark_unexecuted(&mut out);
    let Some(Decision::Opportunity(o)) = out.first() else {
        panic!("the opportunity comes first: {out:?}")
    };
    assert_eq!(
        o.rejection.as_deref(),
        Some("shadow: orders signed and not sent")
    );
}
