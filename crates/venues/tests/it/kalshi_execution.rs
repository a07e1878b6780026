//! Kalshi execution against the Kalshi stand-in: every request signed and
//! verified with the tenant's public key, orders filled fully or partly,
//! refused, rate limited and timed out after the exchange took them — and a
//! retry never doubles an order.

use std::sync::Arc;
use std::time::Duration;

use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
use polybot_venues::execution::{
    ClientOrderId, ExecError, ExecutionKind, Executor, NoFence, OrderRequest, OrderSide,
    OrderState, TimeInForce,
};
use polybot_venues::testing::{KalshiFault, KalshiStandIn};
use polybot_venues::{ErrorKind, ManualClock};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use secrecy::SecretString;
use serde_json::json;

const PRIVATE: &str = include_str!("../fixtures/kalshi_test_key_pkcs8.pem");
const PUBLIC: &str = include_str!("../fixtures/kalshi_test_key_pub.pem");
const TICKER: &str = "KXBTCD-26JAN0117-T100000";

fn keys(id: &str) -> KalshiKeys {
    KalshiKeys {
        key_id: id.to_owned(),
        private_key_pem: SecretString::from(PRIVATE),
    }
}

/// The stand-in with one market: YES bids 0.40 × 100, NO bids 0.55 × 30
/// (so YES asks 0.45 × 30, NO asks 0.60 × 100).
async fn stand_in() -> KalshiStandIn {
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account("key-a", PUBLIC, dec!(1000));
    kalshi.list_market(TICKER);
    kalshi.set_book(
        TICKER,
        &[(dec!(0.38), dec!(50)), (dec!(0.40), dec!(100))],
        &[(dec!(0.55), dec!(30))],
    );
    kalshi
}

fn settings(kalshi: &KalshiStandIn) -> KalshiSettings {
    KalshiSettings {
        base: kalshi.url(),
        timeout: Duration::from_millis(400),
        ..KalshiSettings::default()
    }
}

async fn executor(kalshi: &KalshiStandIn) -> KalshiExecutor {
    KalshiExecutor::connect(&settings(kalshi), &keys("key-a"), Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn buy(side: &str, decision: u64, price: Decimal, size: Decimal) -> OrderRequest {
    OrderRequest {
        client_id: ClientOrderId::derive(&[5; 16], 1, decision),
        market: TICKER.to_owned(),
        instrument: side.to_owned(),
        side: OrderSide::Buy,
        price,
        size,
        time_in_force: TimeInForce::ImmediateOrCancel,
    }
}

#[tokio::test]
async fn a_signed_ioc_buy_fills_at_the_mirrored_asks_and_pays_kalshis_fee() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.tick_size, dec!(0.01));
    assert_eq!(rules.min_size, dec!(1));
    // Buy 20 NO at up to 0.60: the YES bid at 0.40 is a NO ask at 0.60.
    let placed = exec
        .place(&buy("no", 1, dec!(0.60), dec!(20)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::Filled);
    assert_eq!(placed.filled, dec!(20));
    assert!(!placed.recovered);
    assert_eq!(placed.fills.len(), 1);
    let fill = &placed.fills[0];
    assert_eq!(fill.price, dec!(0.6));
    assert_eq!(fill.size, dec!(20));
    // ceil_cent(0.07 × 20 × 0.6 × 0.4) = ceil_cent(0.336) = 0.34
    assert_eq!(fill.fee, dec!(0.34));
    assert_eq!(fill.instrument, format!("{TICKER}:no"));
    // 1000 − 20 × 0.60 − 0.34
    assert_eq!(kalshi.balance("key-a"), dec!(987.66));
    assert_eq!(kalshi.position("key-a", TICKER), dec!(-20));
    let positions = exec.positions().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].instrument, format!("{TICKER}:no"));
    assert_eq!(positions[0].size, dec!(20));
    let balances = exec.balances().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balances[0].asset, "USD");
    assert_eq!(balances[0].amount, dec!(987.66));
    // Every private call verified with the tenant's public key.
    assert!(kalshi.rejections().is_empty(), "{:?}", kalshi.rejections());
    assert!(kalshi.signatures_verified() >= 5);
    assert!(
        kalshi
            .signed_requests()
            .contains(&"POST /portfolio/orders".to_owned())
    );
}

#[tokio::test]
async fn an_ioc_order_larger_than_the_book_fills_partly_and_the_rest_is_cancelled() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // YES asks: 30 at 0.45 only.
    let placed = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(50)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::Closed);
    assert_eq!(placed.filled, dec!(30));
    // ceil_cent(0.07 × 30 × 0.45 × 0.55) = ceil_cent(0.51975) = 0.52
    assert_eq!(placed.fills[0].fee, dec!(0.52));
    assert!(
        exec.open_orders()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    let fills = exec.fills(0).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].venue_order_id, placed.venue_order_id);
}

#[tokio::test]
async fn a_resting_order_is_listed_cancelled_and_cancel_all_clears_the_rest() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for decision in 1..=3 {
        let order = OrderRequest {
            time_in_force: TimeInForce::GoodTillCancelled,
            ..buy("yes", decision, dec!(0.20), dec!(5))
        };
        let placed = exec
            .place(&order, &rules)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(placed.state, OrderState::Open);
        ids.push(placed.venue_order_id);
    }
    let open = exec.open_orders().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(open.len(), 3);
    assert_eq!(open[0].price, dec!(0.2));
    assert_eq!(open[0].size, dec!(5));
    assert_eq!(open[0].instrument, "yes");
    exec.cancel(&ids[0]).await.unwrap_or_else(|e| panic!("{e}"));
    let mut cancelled = exec.cancel_all().await.unwrap_or_else(|e| panic!("{e}"));
    cancelled.sort();
    assert_eq!(cancelled, ids[1..].to_vec());
    assert!(kalshi.open_order_ids().is_empty());
    // Cancelling what is no longer open is the exchange's refusal, with its words.
    let again = exec.cancel(&ids[0]).await.unwrap_err();
    assert!(matches!(again, ExecError::Rejected { .. }), "{again}");
    assert!(again.to_string().contains("not resting"), "{again}");
}

#[tokio::test]
async fn a_refusal_carries_the_venue_the_endpoint_and_the_exchanges_words() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kalshi.push_fault(KalshiFault::Reject("market_closed".to_owned()));
    let err = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(1)), &rules)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ExecError::Rejected {
                venue: "kalshi",
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("market_closed"), "{text}");
    // More than the balance: the exchange's own check.
    let err = exec
        .place(&buy("yes", 2, dec!(0.45), dec!(5000)), &rules)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insufficient_balance"), "{err}");
    assert_eq!(kalshi.orders_taken(), 0);
}

#[tokio::test]
async fn a_timeout_after_the_exchange_took_the_order_is_recovered_without_a_second_order() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kalshi.push_fault(KalshiFault::AcceptThenStall(Duration::from_secs(2)));
    let order = buy("no", 7, dec!(0.60), dec!(10));
    let first = exec.place(&order, &rules).await.unwrap_err();
    assert!(matches!(first, ExecError::InDoubt { .. }), "{first}");
    assert!(first.is_retryable());
    // The retry sends the same client order id; the exchange refuses the
    // duplicate and the executor finds the order it took, with its fill.
    let placed = exec
        .place(&order, &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(placed.recovered);
    assert_eq!(placed.filled, dec!(10));
    assert_eq!(placed.fills.len(), 1);
    assert_eq!(kalshi.orders_taken(), 1);
    assert_eq!(kalshi.order_creates(), 2);
    assert_eq!(kalshi.position("key-a", TICKER), dec!(-10));
}

#[tokio::test]
async fn a_429_on_an_order_is_retryable_and_a_5xx_leaves_it_in_doubt() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await;
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kalshi.push_fault(KalshiFault::TooManyRequests {
        retry_after: Some(0),
    });
    let err = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(1)), &rules)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    match &err {
        ExecError::Venue(v) => {
            assert_eq!(v.status(), Some(429));
            assert_eq!(v.endpoint(), "POST /portfolio/orders");
        }
        other => panic!("{other}"),
    }
    kalshi.push_fault(KalshiFault::ServerError);
    let err = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(1)), &rules)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::InDoubt { .. }), "{err}");
    // The retry goes through, once.
    let placed = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(1)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.filled, dec!(1));
    assert_eq!(kalshi.orders_taken(), 1);
}

#[tokio::test]
async fn a_read_answered_429_without_retry_after_backs_off_and_signs_again() {
    let kalshi = stand_in().await;
    let clock = Arc::new(ManualClock::new());
    let settings = KalshiSettings {
        clock: clock.clone(),
        ..settings(&kalshi)
    };
    let exec = KalshiExecutor::new(&settings, &keys("key-a"), Arc::new(NoFence))
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        kalshi.push_fault_on(
            "GET /portfolio/balance",
            KalshiFault::TooManyRequests { retry_after: None },
        );
    }
    let balances = exec.balances().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balances[0].amount, dec!(1000));
    // Backed off 1 s, then 2 s; three signed requests, each verified.
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
    let balance_reads = kalshi
        .signed_requests()
        .iter()
        .filter(|r| *r == "GET /portfolio/balance")
        .count();
    assert_eq!(balance_reads, 3);
    // With Retry-After, the wait is the venue's.
    kalshi.push_fault_on(
        "GET /portfolio/balance",
        KalshiFault::TooManyRequests {
            retry_after: Some(3),
        },
    );
    exec.balances().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(clock.sleeps()[2], Duration::from_secs(3));
}

#[tokio::test]
async fn an_unknown_key_is_unauthorized_with_the_venue_and_endpoint_and_no_key_material() {
    let kalshi = stand_in().await;
    let err = KalshiExecutor::connect(&settings(&kalshi), &keys("key-unknown"), Arc::new(NoFence))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unauthorized), "{err}");
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.endpoint(), "GET /account/limits");
    let text = err.to_string();
    assert!(text.contains("Kalshi"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn the_accounts_tier_sizes_the_tenants_own_buckets() {
    let kalshi = stand_in().await;
    kalshi.open_account("key-b", PUBLIC, dec!(50));
    kalshi
        .set_account_limits(json!({"usage_tier": "advanced", "read_limit": 30, "write_limit": 30}));
    let a = executor(&kalshi).await;
    assert_eq!(a.limits().tier(), "advanced");
    assert_eq!(a.limits().write.interval(), Duration::from_secs(1) / 300);
    kalshi.set_account_limits(json!({"usage_tier": "basic", "read_limit": 20, "write_limit": 10}));
    let b = KalshiExecutor::connect(&settings(&kalshi), &keys("key-b"), Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Each tenant's executor has its own buckets.
    assert_eq!(b.limits().tier(), "basic");
    assert_eq!(a.limits().tier(), "advanced");
    assert_eq!(b.limits().write.interval(), Duration::from_secs(1) / 100);
}

#[tokio::test]
async fn shadow_signs_the_order_and_sends_nothing() {
    let kalshi = stand_in().await;
    let exec = executor(&kalshi).await.shadow();
    assert_eq!(exec.kind(), ExecutionKind::Shadow);
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let placed = exec
        .place(&buy("yes", 1, dec!(0.45), dec!(2)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::NotSent);
    assert!(
        placed.wire.contains("\"yes_price_dollars\":\"0.4500\""),
        "{}",
        placed.wire
    );
    assert_eq!(exec.would_have_sent().len(), 1);
    assert_eq!(kalshi.order_creates(), 0);
    assert_eq!(
        exec.balances().await.unwrap_or_else(|e| panic!("{e}"))[0].amount,
        dec!(1000)
    );
}
