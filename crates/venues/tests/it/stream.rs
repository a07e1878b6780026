use std::time::Duration;

use futures::{SinkExt, StreamExt};
use polybot_venues::Endpoints;
use polybot_venues::model::{Level, Side};
use polybot_venues::stream::{MarketEvent, StreamOptions, spawn_polymarket_market_stream};
use rust_decimal_macros::dec;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const BOOK: &str = r#"[{"event_type":"book","asset_id":"100","market":"0xaabbcc","timestamp":"123456789","hash":"0x1","bids":[{"price":"0.3","size":"100"},{"price":"0.4","size":"50"}],"asks":[{"price":"0.7","size":"100"},{"price":"0.6","size":"10"}]}]"#;
const CHANGE: &str = r#"{"event_type":"price_change","market":"0xaabbcc","timestamp":"123456790","price_changes":[{"asset_id":"100","price":"0.45","size":"25","side":"BUY","hash":"0x2","best_bid":"0.45","best_ask":"0.6"}]}"#;
const TRADE: &str = r#"{"event_type":"last_trade_price","asset_id":"200","market":"0xaabbcc","price":"0.61","side":"SELL","size":"5","fee_rate_bps":"0","timestamp":"123456800"}"#;

/// Next text frame that is not a keep-alive.
async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "PING" => {}
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{e}: {t}"));
            }
            Some(Ok(_)) => {}
            other => panic!("server expected a text frame, got {other:?}"),
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<MarketEvent>) -> MarketEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within 10 s"))
        .unwrap_or_else(|| panic!("stream ended"))
}

#[tokio::test]
async fn the_market_stream_reconnects_and_resubscribes_to_every_asset() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<serde_json::Value>();

    let server = tokio::spawn(async move {
        // First connection: subscribe, snapshot, one change, a live add, then drop.
        let (tcp, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = next_text(&mut ws).await;
        seen_tx.send(first).unwrap_or_else(|e| panic!("{e}"));
        ws.send(Message::Text(BOOK.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ws.send(Message::Text(CHANGE.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let added = next_text(&mut ws).await;
        seen_tx.send(added).unwrap_or_else(|e| panic!("{e}"));
        drop(ws); // abrupt disconnect, no close frame

        // Second connection: the client must resubscribe to both assets.
        let (tcp, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let resubscribe = next_text(&mut ws).await;
        seen_tx.send(resubscribe).unwrap_or_else(|e| panic!("{e}"));
        ws.send(Message::Text(TRADE.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Hold the connection until the client closes it.
        while let Some(Ok(frame)) = ws.next().await {
            if frame.is_close() {
                break;
            }
        }
    });

    let endpoints = Endpoints::all_at(&format!("http://{addr}"));
    let options = StreamOptions {
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(50),
        ..StreamOptions::default()
    };
    let (handle, mut events) = spawn_polymarket_market_stream(
        &endpoints,
        vec!["100".to_owned()],
        options,
        CancellationToken::new(),
    );

    assert_eq!(
        next_event(&mut events).await,
        MarketEvent::Connected { connection: 1 }
    );
    let MarketEvent::Book(book) = next_event(&mut events).await else {
        panic!("expected a book");
    };
    assert_eq!(book.instrument, "100");
    assert_eq!(book.best_bid(), Some(Level::new(dec!(0.4), dec!(50))));
    assert_eq!(book.best_ask(), Some(Level::new(dec!(0.6), dec!(10))));
    assert_eq!(
        next_event(&mut events).await,
        MarketEvent::PriceChange {
            asset_id: "100".to_owned(),
            side: Side::Buy,
            price: dec!(0.45),
            size: dec!(25),
            best_bid: Some(dec!(0.45)),
            best_ask: Some(dec!(0.6)),
        }
    );
    assert!(handle.subscribe(vec!["200".to_owned()]));

    assert_eq!(
        next_event(&mut events).await,
        MarketEvent::Connected { connection: 2 }
    );
    let MarketEvent::Trade(trade) = next_event(&mut events).await else {
        panic!("expected a trade");
    };
    assert_eq!(trade.symbol, "200");
    assert_eq!(trade.price, dec!(0.61));
    assert_eq!(trade.side, Some(Side::Sell));

    let first = seen_rx.recv().await.unwrap_or_default();
    assert_eq!(
        first,
        serde_json::json!({"assets_ids": ["100"], "type": "market"})
    );
    let added = seen_rx.recv().await.unwrap_or_default();
    assert_eq!(
        added,
        serde_json::json!({"assets_ids": ["200"], "operation": "subscribe"})
    );
    let resubscribe = seen_rx.recv().await.unwrap_or_default();
    assert_eq!(
        resubscribe,
        serde_json::json!({"assets_ids": ["100", "200"], "type": "market"})
    );

    handle.shutdown().await;
    server.await.unwrap_or_else(|e| panic!("{e}"));
}
