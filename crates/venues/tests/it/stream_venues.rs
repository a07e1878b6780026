//! Binance US, Coinbase and Kraken streams against a local websocket server
//! that plays the venue: it checks what the client subscribes to, sends
//! snapshots, updates, trades and junk, drops the connection abruptly, and
//! records every subscription it saw so the test can assert the resubscribe.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use polybot_venues::Endpoints;
use polybot_venues::model::{Api, Level, OrderBook, Side, Trade};
use polybot_venues::stream::{
    BinanceUsStreamConfig, CoinbaseStreamConfig, KrakenStreamConfig, MarketEvent, StreamOptions,
    spawn_binance_us_stream, spawn_coinbase_stream, spawn_kraken_stream,
};
use polybot_venues::{ErrorKind, VenueError};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<TcpStream>;

async fn listen() -> (TcpListener, Endpoints) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    (listener, Endpoints::all_at(&format!("http://{addr}")))
}

/// Accepts one websocket connection; returns it and the request path + query.
// The handshake callback's `Result` type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn accept(listener: &TcpListener) -> (Ws, String) {
    let (tcp, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (ws, path)
}

/// Next JSON text frame from the client, skipping keep-alives.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let value: Value =
                    serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{e}: {t}"));
                if value == json!({"method": "ping"}) {
                    continue;
                }
                return value;
            }
            Some(Ok(_)) => {}
            other => panic!("server expected a text frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Holds the connection until the client closes it.
async fn hold(mut ws: Ws) {
    while let Some(Ok(frame)) = ws.next().await {
        if frame.is_close() {
            break;
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<MarketEvent>) -> MarketEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within 10 s"))
        .unwrap_or_else(|| panic!("stream ended"))
}

async fn next_book(rx: &mut mpsc::Receiver<MarketEvent>) -> OrderBook {
    match next_event(rx).await {
        MarketEvent::Book(book) => book,
        other => panic!("expected a book, got {other:?}"),
    }
}

async fn next_trade(rx: &mut mpsc::Receiver<MarketEvent>) -> Trade {
    match next_event(rx).await {
        MarketEvent::Trade(trade) => trade,
        other => panic!("expected a trade, got {other:?}"),
    }
}

async fn next_error(rx: &mut mpsc::Receiver<MarketEvent>) -> VenueError {
    match next_event(rx).await {
        MarketEvent::Error(err) => {
            assert!(!err.to_string().trim().is_empty());
            err
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn expect_connected(rx: &mut mpsc::Receiver<MarketEvent>, connection: u32) {
    assert_eq!(next_event(rx).await, MarketEvent::Connected { connection });
}

/// The error the client reports when the server drops it, then the reconnect.
async fn expect_drop_and_reconnect(rx: &mut mpsc::Receiver<MarketEvent>, api: Api) {
    let err = next_error(rx).await;
    assert_eq!(err.api(), api);
    assert!(matches!(err.kind(), ErrorKind::Stream { .. }), "{err}");
    assert!(err.to_string().contains("reconnecting"), "{err}");
    expect_connected(rx, 2).await;
}

fn options() -> StreamOptions {
    StreamOptions {
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(50),
        // Keep-alives are not what these tests are about.
        ping_interval: Duration::from_secs(3600),
        ..StreamOptions::default()
    }
}

fn level(price: rust_decimal::Decimal, size: rust_decimal::Decimal) -> Level {
    Level::new(price, size)
}

#[tokio::test]
async fn binance_us_books_and_trades_survive_junk_and_a_drop_resubscribes_every_symbol() {
    let (listener, endpoints) = listen().await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Value>();

    let server = tokio::spawn(async move {
        let (mut ws, path) = accept(&listener).await;
        seen_tx.send(json!(path)).unwrap_or_else(|e| panic!("{e}"));
        send(
            &mut ws,
            r#"{"stream":"btcusd@depth20@100ms","data":{"lastUpdateId":160,"bids":[["64999.00","0.5"],["65000.00","0.25"]],"asks":[["65002.00","1"],["65001.50","0.1"]]}}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"stream":"btcusd@trade","data":{"e":"trade","E":1700000000001,"s":"BTCUSD","t":7,"p":"65001.50","q":"0.002","T":1700000000000,"m":false,"M":true}}"#,
        )
        .await;
        send(&mut ws, r#"{"stream":"btcusd@trade","data":"#).await;
        send(
            &mut ws,
            r#"{"stream":"btcusd@depth20@100ms","data":{"lastUpdateId":161,"bids":[["65000.00","0.30"]],"asks":[["65001.50","0"],["65002.00","1"]]}}"#,
        )
        .await;
        // The client adds ethusd at runtime.
        let added = next_json(&mut ws).await;
        seen_tx.send(added).unwrap_or_else(|e| panic!("{e}"));
        send(&mut ws, r#"{"result":null,"id":1}"#).await;
        drop(ws); // abrupt: no close frame

        let (mut ws, path) = accept(&listener).await;
        seen_tx.send(json!(path)).unwrap_or_else(|e| panic!("{e}"));
        send(
            &mut ws,
            r#"{"stream":"ethusd@depth20@100ms","data":{"lastUpdateId":9,"bids":[["3000.10","2"]],"asks":[["3000.20","3"]]}}"#,
        )
        .await;
        hold(ws).await;
    });

    let (handle, mut events) = spawn_binance_us_stream(
        &endpoints,
        vec!["BTCUSD".to_owned()],
        BinanceUsStreamConfig::default(),
        options(),
        CancellationToken::new(),
    );

    expect_connected(&mut events, 1).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.api, Api::BinanceUs);
    assert_eq!(book.instrument, "BTCUSD");
    assert_eq!(book.sequence, Some(160));
    assert_eq!(
        book.bids,
        vec![
            level(dec!(65000.00), dec!(0.25)),
            level(dec!(64999.00), dec!(0.5))
        ]
    );
    assert_eq!(
        book.asks,
        vec![
            level(dec!(65001.50), dec!(0.1)),
            level(dec!(65002.00), dec!(1))
        ]
    );
    let trade = next_trade(&mut events).await;
    assert_eq!(
        trade,
        Trade {
            api: Api::BinanceUs,
            symbol: "BTCUSD".to_owned(),
            trade_id: Some("7".to_owned()),
            price: dec!(65001.50),
            size: dec!(0.002),
            side: Some(Side::Buy),
            timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000),
        }
    );
    let junk = next_error(&mut events).await;
    assert!(matches!(junk.kind(), ErrorKind::Decode { .. }), "{junk}");
    assert!(junk.to_string().contains("/stream"), "{junk}");
    assert_eq!(
        junk.body_excerpt(),
        Some(r#"{"stream":"btcusd@trade","data":"#)
    );
    // The stream goes on after the junk.
    let book = next_book(&mut events).await;
    assert_eq!(book.sequence, Some(161));
    assert_eq!(book.bids, vec![level(dec!(65000.00), dec!(0.30))]);
    assert_eq!(book.asks, vec![level(dec!(65002.00), dec!(1))]);

    assert!(handle.subscribe(vec!["ETHUSD".to_owned(), "btcusd".to_owned()]));
    expect_drop_and_reconnect(&mut events, Api::BinanceUs).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.instrument, "ETHUSD");
    assert_eq!(book.best_bid(), Some(level(dec!(3000.10), dec!(2))));

    assert_eq!(
        seen_rx.recv().await,
        Some(json!("/stream?streams=btcusd@depth20@100ms/btcusd@trade"))
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(
            json!({"method": "SUBSCRIBE", "params": ["ethusd@depth20@100ms", "ethusd@trade"], "id": 1})
        )
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(json!(
            "/stream?streams=btcusd@depth20@100ms/btcusd@trade/ethusd@depth20@100ms/ethusd@trade"
        ))
    );

    handle.shutdown().await;
    server.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn coinbase_keeps_a_local_book_resyncs_on_a_sequence_gap_and_resubscribes_after_a_drop() {
    let (listener, endpoints) = listen().await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Value>();

    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        let first = next_json(&mut ws).await;
        seen_tx.send(first).unwrap_or_else(|e| panic!("{e}"));
        send(
            &mut ws,
            r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["BTC-USD"]}]}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"type":"snapshot","product_id":"BTC-USD","sequence":10,"bids":[["100.00","1.5"],["99.50","2"]],"asks":[["100.50","0.7"],["101.00","3"]]}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"type":"l2update","product_id":"BTC-USD","sequence":11,"time":"2024-01-02T03:04:05.678Z","changes":[["buy","100.00","0"],["buy","99.75","0.4"],["sell","100.50","0.2"]]}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2024-01-02T03:04:05.700Z"}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"type":"match","trade_id":21,"sequence":91,"maker_order_id":"m","taker_order_id":"t","time":"2024-01-02T03:04:06Z","product_id":"BTC-USD","size":"0.05","price":"100.50","side":"sell"}"#,
        )
        .await;
        send(&mut ws, "not json at all").await;
        // 12 is lost: 13 arrives.
        send(
            &mut ws,
            r#"{"type":"l2update","product_id":"BTC-USD","sequence":13,"changes":[["buy","99.90","1"]]}"#,
        )
        .await;
        let unsubscribe = next_json(&mut ws).await;
        seen_tx.send(unsubscribe).unwrap_or_else(|e| panic!("{e}"));
        let resubscribe = next_json(&mut ws).await;
        seen_tx.send(resubscribe).unwrap_or_else(|e| panic!("{e}"));
        send(
            &mut ws,
            r#"{"type":"snapshot","product_id":"BTC-USD","sequence":40,"bids":[["99.00","5"]],"asks":[["99.10","6"]]}"#,
        )
        .await;
        let added = next_json(&mut ws).await;
        seen_tx.send(added).unwrap_or_else(|e| panic!("{e}"));
        drop(ws);

        let (mut ws, _) = accept(&listener).await;
        let again = next_json(&mut ws).await;
        seen_tx.send(again).unwrap_or_else(|e| panic!("{e}"));
        send(
            &mut ws,
            r#"{"type":"snapshot","product_id":"ETH-USD","bids":[["2000.01","4"]],"asks":[["2000.02","5"]]}"#,
        )
        .await;
        hold(ws).await;
    });

    let (handle, mut events) = spawn_coinbase_stream(
        &endpoints,
        vec!["btc-usd".to_owned()],
        CoinbaseStreamConfig::default(),
        options(),
        CancellationToken::new(),
    );

    expect_connected(&mut events, 1).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.api, Api::Coinbase);
    assert_eq!(book.instrument, "BTC-USD");
    assert_eq!(book.best_bid(), Some(level(dec!(100.00), dec!(1.5))));
    let book = next_book(&mut events).await;
    assert_eq!(book.sequence, Some(11));
    assert_eq!(
        book.bids,
        vec![level(dec!(99.75), dec!(0.4)), level(dec!(99.50), dec!(2))]
    );
    assert_eq!(
        book.asks,
        vec![level(dec!(100.50), dec!(0.2)), level(dec!(101.00), dec!(3))]
    );
    let trade = next_trade(&mut events).await;
    assert_eq!(trade.symbol, "BTC-USD");
    assert_eq!((trade.price, trade.size), (dec!(100.50), dec!(0.05)));
    assert_eq!(trade.side, Some(Side::Buy)); // the maker sold
    let junk = next_error(&mut events).await;
    assert!(matches!(junk.kind(), ErrorKind::Decode { .. }), "{junk}");
    assert_eq!(junk.body_excerpt(), Some("not json at all"));
    let gap = next_error(&mut events).await;
    assert!(
        gap.to_string()
            .contains("sequence gap on BTC-USD: expected 12, got 13"),
        "{gap}"
    );
    let book = next_book(&mut events).await;
    assert_eq!(book.sequence, Some(40));
    assert_eq!(book.bids, vec![level(dec!(99.00), dec!(5))]);
    assert_eq!(book.asks, vec![level(dec!(99.10), dec!(6))]);

    assert!(handle.subscribe(vec!["ETH-USD".to_owned()]));
    expect_drop_and_reconnect(&mut events, Api::Coinbase).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.instrument, "ETH-USD");
    assert_eq!(book.best_ask(), Some(level(dec!(2000.02), dec!(5))));

    let channels = json!(["level2_batch", "matches", "heartbeat"]);
    assert_eq!(
        seen_rx.recv().await,
        Some(json!({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": channels}))
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(
            json!({"type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch"]})
        )
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(
            json!({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch"]})
        )
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(json!({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": channels}))
    );
    assert_eq!(
        seen_rx.recv().await,
        Some(
            json!({"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": channels})
        )
    );

    handle.shutdown().await;
    server.await.unwrap_or_else(|e| panic!("{e}"));
}

// Checksums below were computed independently with Python's zlib.crc32 over
// Kraken's documented string (asks low→high, then bids high→low; `.` and
// leading zeros removed) for the book each message leaves.
const KRAKEN_SNAPSHOT: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.50000000},{"price":45283.4,"qty":1.00000000}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.0,"qty":2.00000000}],"checksum":4062747978}]}"#;
const KRAKEN_UPDATE: &str = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0}],"asks":[{"price":45285.1,"qty":0.25000000}],"checksum":2556677440,"timestamp":"2024-01-02T03:04:05.123456Z"}]}"#;
const KRAKEN_BAD_UPDATE: &str = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":45285.1,"qty":0.30000000}],"checksum":12345,"timestamp":"2024-01-02T03:04:06Z"}]}"#;
const KRAKEN_RESNAPSHOT: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.0,"qty":3.00000000}],"asks":[{"price":45290.0,"qty":1.00000000}],"checksum":1420766462}]}"#;
const KRAKEN_ETH: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"ETH/USD","bids":[{"price":2000.10,"qty":5.0}],"asks":[{"price":2000.20,"qty":4.0}],"checksum":1201595583}]}"#;

#[tokio::test]
async fn kraken_verifies_checksums_resubscribes_on_a_mismatch_and_after_a_drop() {
    let (listener, endpoints) = listen().await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Value>();

    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        for _ in 0..2 {
            let sub = next_json(&mut ws).await;
            seen_tx.send(sub).unwrap_or_else(|e| panic!("{e}"));
        }
        send(
            &mut ws,
            r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}]}"#,
        )
        .await;
        send(
            &mut ws,
            r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2024-01-02T03:04:05.000001Z","time_out":"2024-01-02T03:04:05.000002Z","req_id":1}"#,
        )
        .await;
        send(&mut ws, KRAKEN_SNAPSHOT).await;
        send(&mut ws, r#"{"channel":"heartbeat"}"#).await;
        send(&mut ws, KRAKEN_UPDATE).await;
        send(
            &mut ws,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":45283.4,"qty":0.01000000,"ord_type":"market","trade_id":99,"timestamp":"2024-01-02T03:04:05.500000Z"}]}"#,
        )
        .await;
        send(&mut ws, r#"{"channel":"book","type":"update","data":[{"#).await;
        send(&mut ws, KRAKEN_BAD_UPDATE).await;
        for _ in 0..2 {
            let resync = next_json(&mut ws).await;
            seen_tx.send(resync).unwrap_or_else(|e| panic!("{e}"));
        }
        // An update still in flight before the new snapshot is ignored.
        send(&mut ws, KRAKEN_UPDATE).await;
        send(&mut ws, KRAKEN_RESNAPSHOT).await;
        for _ in 0..2 {
            let added = next_json(&mut ws).await;
            seen_tx.send(added).unwrap_or_else(|e| panic!("{e}"));
        }
        drop(ws);

        let (mut ws, _) = accept(&listener).await;
        for _ in 0..2 {
            let again = next_json(&mut ws).await;
            seen_tx.send(again).unwrap_or_else(|e| panic!("{e}"));
        }
        send(&mut ws, KRAKEN_ETH).await;
        hold(ws).await;
    });

    let (handle, mut events) = spawn_kraken_stream(
        &endpoints,
        vec!["BTC/USD".to_owned()],
        KrakenStreamConfig::default(),
        options(),
        CancellationToken::new(),
    );

    expect_connected(&mut events, 1).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.api, Api::Kraken);
    assert_eq!(book.instrument, "BTC/USD");
    assert_eq!(book.best_bid(), Some(level(dec!(45283.5), dec!(0.5))));
    let book = next_book(&mut events).await;
    assert_eq!(book.bids, vec![level(dec!(45283.4), dec!(1))]);
    assert_eq!(
        book.asks,
        vec![
            level(dec!(45285.1), dec!(0.25)),
            level(dec!(45285.2), dec!(0.001)),
            level(dec!(45286.0), dec!(2))
        ]
    );
    assert_eq!(
        book.timestamp.map(|t| t.timestamp_micros()),
        Some(1_704_164_645_123_456)
    );
    let trade = next_trade(&mut events).await;
    assert_eq!(trade.trade_id.as_deref(), Some("99"));
    assert_eq!((trade.price, trade.size), (dec!(45283.4), dec!(0.01)));
    assert_eq!(trade.side, Some(Side::Sell));
    let junk = next_error(&mut events).await;
    assert!(matches!(junk.kind(), ErrorKind::Decode { .. }), "{junk}");
    let mismatch = next_error(&mut events).await;
    assert!(
        mismatch
            .to_string()
            .contains("book checksum mismatch on BTC/USD: venue 12345"),
        "{mismatch}"
    );
    assert!(mismatch.body_excerpt().is_some_and(|b| b.contains("12345")));
    let book = next_book(&mut events).await;
    assert_eq!(book.bids, vec![level(dec!(45283.0), dec!(3))]);
    assert_eq!(book.asks, vec![level(dec!(45290.0), dec!(1))]);

    assert!(handle.subscribe(vec!["eth/usd".to_owned()]));
    expect_drop_and_reconnect(&mut events, Api::Kraken).await;
    let book = next_book(&mut events).await;
    assert_eq!(book.instrument, "ETH/USD");
    assert_eq!(book.best_bid(), Some(level(dec!(2000.10), dec!(5))));

    let book_sub = |symbols: Value, req_id: u64| json!({"method": "subscribe", "params": {"channel": "book", "symbol": symbols, "depth": 10, "snapshot": true}, "req_id": req_id});
    let trade_sub = |symbols: Value, req_id: u64| json!({"method": "subscribe", "params": {"channel": "trade", "symbol": symbols, "snapshot": false}, "req_id": req_id});
    let expected = [
        book_sub(json!(["BTC/USD"]), 1),
        trade_sub(json!(["BTC/USD"]), 2),
        json!({"method": "unsubscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}, "req_id": 3}),
        book_sub(json!(["BTC/USD"]), 4),
        book_sub(json!(["ETH/USD"]), 5),
        trade_sub(json!(["ETH/USD"]), 6),
        book_sub(json!(["BTC/USD", "ETH/USD"]), 7),
        trade_sub(json!(["BTC/USD", "ETH/USD"]), 8),
    ];
    for want in expected {
        assert_eq!(seen_rx.recv().await, Some(want));
    }

    handle.shutdown().await;
    server.await.unwrap_or_else(|e| panic!("{e}"));
}
