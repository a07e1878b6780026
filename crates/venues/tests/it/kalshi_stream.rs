//! Kalshi's WebSocket against the Kalshi stand-in: the handshake signed and
//! verified with the tenant's public key, books built from the snapshot and
//! the deltas, a lost message (an injected sequence gap) resynced from a
//! fresh snapshot, and the private `fill` channel delivering a resting
//! order's later fill.

use std::sync::Arc;
use std::time::Duration;

use polybot_venues::Endpoints;
use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
use polybot_venues::execution::kalshi_fills::spawn_fill_channel;
use polybot_venues::execution::user_channel::UserChannelOptions;
use polybot_venues::execution::{
    ClientOrderId, Executor, NoFence, OrderRequest, OrderSide, OrderState, TimeInForce,
};
use polybot_venues::model::{Level, OrderBook};
use polybot_venues::signing::kalshi::KalshiSigner;
use polybot_venues::stream::{KalshiStreamConfig, MarketEvent, StreamOptions, spawn_kalshi_stream};
use polybot_venues::testing::KalshiStandIn;
use rust_decimal_macros::dec;
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PRIVATE: &str = include_str!("../fixtures/kalshi_test_key_pkcs8.pem");
const PUBLIC: &str = include_str!("../fixtures/kalshi_test_key_pub.pem");
const TICKER: &str = "KXBTC15M-26APR290915-15";

fn signer() -> Arc<KalshiSigner> {
    Arc::new(
        KalshiSigner::from_pem("key-a", &SecretString::from(PRIVATE))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The stand-in with one market: YES bids 0.41 × 100 and 0.42 × 13, NO
/// bids 0.56 × 17.
async fn stand_in() -> KalshiStandIn {
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account("key-a", PUBLIC, dec!(1000));
    kalshi.list_market(TICKER);
    kalshi.set_book(
        TICKER,
        &[(dec!(0.41), dec!(100)), (dec!(0.42), dec!(13))],
        &[(dec!(0.56), dec!(17))],
    );
    kalshi
}

fn options() -> StreamOptions {
    StreamOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(100),
        ..StreamOptions::default()
    }
}

fn stream(
    kalshi: &KalshiStandIn,
) -> (
    polybot_venues::stream::StreamHandle,
    mpsc::Receiver<MarketEvent>,
) {
    let endpoints = Endpoints {
        kalshi: kalshi.url(),
        kalshi_ws: kalshi.ws_url(),
        ..Endpoints::default()
    };
    spawn_kalshi_stream(
        &endpoints,
        signer(),
        vec![TICKER.to_owned()],
        KalshiStreamConfig::default(),
        options(),
        CancellationToken::new(),
    )
}

async fn next(events: &mut mpsc::Receiver<MarketEvent>) -> MarketEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap_or_else(|_| panic!("no stream event within 10 s"))
        .unwrap_or_else(|| panic!("the stream stopped"))
}

/// The next YES and NO books (skipping nothing else: any other event fails).
async fn books(events: &mut mpsc::Receiver<MarketEvent>) -> (OrderBook, OrderBook) {
    match (next(events).await, next(events).await) {
        (MarketEvent::Book(yes), MarketEvent::Book(no)) => (yes, no),
        other => panic!("expected the YES and NO books, got {other:?}"),
    }
}

#[tokio::test]
async fn the_book_is_the_snapshot_plus_the_deltas_and_a_gap_resyncs_it() {
    let kalshi = stand_in().await;
    let (handle, mut events) = stream(&kalshi);
    assert_eq!(
        next(&mut events).await,
        MarketEvent::Connected { connection: 1 }
    );
    let (yes, no) = books(&mut events).await;
    assert_eq!(yes.instrument, format!("{TICKER}:yes"));
    assert_eq!(
        yes.bids,
        vec![
            Level::new(dec!(0.42), dec!(13)),
            Level::new(dec!(0.41), dec!(100))
        ]
    );
    assert_eq!(yes.asks, vec![Level::new(dec!(0.44), dec!(17))]);
    assert_eq!(no.bids, vec![Level::new(dec!(0.56), dec!(17))]);
    assert_eq!(no.best_ask(), Some(Level::new(dec!(0.58), dec!(13))));
    assert_eq!(kalshi.ws_handshakes(), 1);

    // Deltas: the 0.42 YES bid is taken, a NO bid at 0.57 appears.
    kalshi.apply_delta(TICKER, "yes", dec!(0.42), dec!(-13));
    let (yes, _) = books(&mut events).await;
    assert_eq!(yes.bids, vec![Level::new(dec!(0.41), dec!(100))]);
    kalshi.apply_delta(TICKER, "no", dec!(0.57), dec!(5));
    let (yes, no) = books(&mut events).await;
    assert_eq!(yes.best_ask(), Some(Level::new(dec!(0.43), dec!(5))));
    assert_eq!(
        no.bids,
        vec![
            Level::new(dec!(0.57), dec!(5)),
            Level::new(dec!(0.56), dec!(17))
        ]
    );

    // A lost message: the next delta's seq skips one. The stream reports
    // the gap, resubscribes, and the fresh snapshot has the change.
    kalshi.inject_sequence_gap();
    kalshi.apply_delta(TICKER, "yes", dec!(0.41), dec!(-60));
    let MarketEvent::Error(gap) = next(&mut events).await else {
        panic!("expected the gap to be reported");
    };
    assert!(gap.to_string().contains("expected seq 4, got 5"), "{gap}");
    let (yes, no) = books(&mut events).await;
    assert_eq!(yes.bids, vec![Level::new(dec!(0.41), dec!(40))]);
    assert_eq!(
        no.bids,
        vec![
            Level::new(dec!(0.57), dec!(5)),
            Level::new(dec!(0.56), dec!(17))
        ]
    );
    // … and deltas apply on top of it again.
    kalshi.apply_delta(TICKER, "yes", dec!(0.41), dec!(-10));
    let (yes, _) = books(&mut events).await;
    assert_eq!(yes.bids, vec![Level::new(dec!(0.41), dec!(30))]);
    let commands: Vec<String> = kalshi
        .ws_commands()
        .iter()
        .map(|c| c["cmd"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(commands, ["subscribe", "unsubscribe", "subscribe"]);
    // One connection all along: a gap resubscribes, it does not reconnect.
    assert_eq!(kalshi.ws_handshakes(), 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_handshake_signed_with_another_key_is_refused() {
    let kalshi = KalshiStandIn::start().await;
    // The account's public key is not the signer's.
    let other =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap_or_else(|e| panic!("{e}"));
    let other_public = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &other.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kalshi.open_account("key-a", &other_public, dec!(1));
    kalshi.list_market(TICKER);
    let (handle, mut events) = stream(&kalshi);
    let MarketEvent::Error(err) = next(&mut events).await else {
        panic!("expected a refused connection");
    };
    assert!(err.to_string().contains("connect failed"), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(kalshi.ws_handshakes(), 0);
    assert!(
        kalshi.rejections()[0].starts_with("invalid signature over \""),
        "{:?}",
        kalshi.rejections()
    );
    assert!(kalshi.rejections()[0].ends_with("GET/trade-api/ws/v2\""));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_resting_orders_later_fill_comes_over_the_fill_channel() {
    let kalshi = stand_in().await;
    let settings = KalshiSettings {
        base: kalshi.url(),
        timeout: Duration::from_millis(400),
        ..KalshiSettings::default()
    };
    let keys = KalshiKeys {
        key_id: "key-a".to_owned(),
        private_key_pem: SecretString::from(PRIVATE),
    };
    let exec = KalshiExecutor::connect(&settings, &keys, Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut channel = spawn_fill_channel(
        &kalshi.ws_url(),
        signer(),
        UserChannelOptions {
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(100),
            ..UserChannelOptions::default()
        },
    );
    for _ in 0..200 {
        if channel.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(channel.is_connected(), "the fill channel never subscribed");
    let rules = exec
        .market_rules(TICKER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let order = OrderRequest {
        client_id: ClientOrderId::derive(&[9; 16], 1, 1),
        market: TICKER.to_owned(),
        instrument: "yes".to_owned(),
        side: OrderSide::Buy,
        price: dec!(0.30),
        size: dec!(10),
        time_in_force: TimeInForce::GoodTillCancelled,
    };
    let placed = exec
        .place(&order, &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::Open);
    let trade = kalshi.fill_resting(&placed.venue_order_id, dec!(4));
    let fill = tokio::time::timeout(Duration::from_secs(10), channel.next())
        .await
        .unwrap_or_else(|_| panic!("no fill within 10 s"))
        .unwrap_or_else(|| panic!("the channel stopped"));
    assert_eq!(fill.trade_id, trade);
    assert_eq!(fill.venue_order_id, placed.venue_order_id);
    assert_eq!(fill.instrument, format!("{TICKER}:yes"));
    // A maker on a plain quadratic series pays no fee.
    assert_eq!(
        (fill.side, fill.price, fill.size, fill.fee),
        (OrderSide::Buy, dec!(0.3), dec!(4), dec!(0))
    );
    assert!(channel.try_next().is_none());
    channel.shutdown().await;
}
