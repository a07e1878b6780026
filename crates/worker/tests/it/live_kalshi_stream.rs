//! Kalshi's books through the live source over the WebSocket, against the
//! Kalshi stand-in: with the tenant's Kalshi key the source discovers the
//! market over REST (at its series' fee), then follows its book over the
//! signed WebSocket instead of polling it, and a lost message (an injected
//! sequence gap) is repaired from a fresh snapshot.

use std::time::Duration;

use polybot_core::keys::parse_exchange_keys;
use polybot_core::strategy::parse_strategies;
use polybot_engine::{BookSnapshot, EventKind, Level};
use polybot_venues::Endpoints;
use polybot_venues::testing::KalshiStandIn;
use polybot_worker::{EventSource, LiveSettings, LiveSource};
use rust_decimal_macros::dec;
use serde_json::json;

const PEM: &str = include_str!("../../../venues/tests/fixtures/kalshi_test_key_pkcs8.pem");
const KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";
const TICKER: &str = "KXETH-26JAN01-T5000";

/// The next book of `outcome` of the market, skipping anything else.
async fn book(source: &mut LiveSource, outcome: usize) -> BookSnapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, source.next_event())
            .await
            .unwrap_or_else(|_| panic!("no book of outcome {outcome} within 20 s"))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("the source ended"));
        if let EventKind::Book(b) = event.kind
            && b.market.as_str() == TICKER
            && b.outcome == outcome
        {
            return b;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_kalshi_key_books_come_over_the_websocket_and_a_gap_is_resynced() {
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account_for_private_key(KEY_ID, PEM, dec!(1000));
    kalshi.list_market(TICKER);
    kalshi.set_book(
        TICKER,
        &[(dec!(0.50), dec!(100))],
        &[(dec!(0.45), dec!(30))],
    );
    // Everything but Kalshi points at a closed port: nothing else is needed.
    let mut endpoints = Endpoints::all_at("http://127.0.0.1:9");
    endpoints.kalshi = kalshi.url();
    endpoints.kalshi_ws = kalshi.ws_url();
    let strategies = parse_strategies(
        &json!({"complement_arb": {"venues": ["kalshi"], "scan_interval_secs": 1}}),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let keys = parse_exchange_keys(&json!({"kalshi": {"key_id": KEY_ID, "private_key_pem": PEM}}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut source = LiveSource::start(LiveSettings::new(endpoints), &strategies, &keys)
        .unwrap_or_else(|e| panic!("{e:?}"));

    // The snapshot: YES bids 0.50 × 100, NO bids 0.45 × 30 (the YES ask
    // mirrors the NO bid).
    let yes = book(&mut source, 0).await;
    assert_eq!(yes.bids, vec![Level::new(dec!(0.50), dec!(100))]);
    assert_eq!(yes.asks, vec![Level::new(dec!(0.55), dec!(30))]);
    let no = book(&mut source, 1).await;
    assert_eq!(no.bids, vec![Level::new(dec!(0.45), dec!(30))]);
    assert_eq!(kalshi.ws_handshakes(), 1);

    // A delta …
    kalshi.apply_delta(TICKER, "yes", dec!(0.50), dec!(-40));
    assert_eq!(
        book(&mut source, 0).await.bids,
        vec![Level::new(dec!(0.50), dec!(60))]
    );
    // (Each change publishes both books: the NO book's asks mirror the YES bids.)
    let no = book(&mut source, 1).await;
    assert_eq!(no.bids, vec![Level::new(dec!(0.45), dec!(30))]);
    assert_eq!(no.asks, vec![Level::new(dec!(0.50), dec!(60))]);
    // … and a lost one: the book after the resync has it.
    kalshi.inject_sequence_gap();
    kalshi.apply_delta(TICKER, "no", dec!(0.46), dec!(10));
    let no = book(&mut source, 1).await;
    assert_eq!(
        no.bids,
        vec![
            Level::new(dec!(0.46), dec!(10)),
            Level::new(dec!(0.45), dec!(30))
        ]
    );
    let commands: Vec<String> = kalshi
        .ws_commands()
        .iter()
        .map(|c| c["cmd"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(commands, ["subscribe", "unsubscribe", "subscribe"]);
    // The book was never polled over REST.
    assert!(
        !kalshi
            .public_reads()
            .iter()
            .any(|r| r.ends_with("/orderbook")),
        "{:?}",
        kalshi.public_reads()
    );
    source.shutdown().await;
}
