//! Spot prices come from the venue's trade stream when it delivers, with REST
//! polling only for what the stream has not priced lately.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{Venue, parse_strategies};
use polybot_engine::EventKind;
use polybot_venues::Endpoints;
use polybot_worker::{EventSource, LiveSettings, LiveSource};
use rust_decimal_macros::dec;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A Coinbase feed on loopback: after the subscription, one BTC-USD match.
async fn coinbase_feed() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                // Wait for the subscription, then trade.
                while let Some(Ok(message)) = ws.next().await {
                    if message.to_text().is_ok_and(|t| t.contains("subscribe")) {
                        break;
                    }
                }
                let trade = json!({
                    "type": "match", "product_id": "BTC-USD", "trade_id": 7,
                    "price": "65432.10", "size": "0.01", "side": "sell",
                    "time": "2026-11-25T12:00:00Z"
                });
                if ws.send(Message::text(trade.to_string())).await.is_err() {
                    return;
                }
                // Keep the connection open until the client goes.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    format!("ws://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_price_from_the_trade_stream_reaches_the_engine() {
    let rest = MockServer::start().await;
    // REST answers a different price, so the stream's is recognisable.
    Mock::given(method("GET"))
        .and(path("/products/BTC-USD/ticker"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"ask":"29015.10","bid":"29010.55","volume":"1","trade_id":1,"price":"29012.00","size":"0.001","time":"2026-04-29T13:01:02Z"}"#,
        ))
        .mount(&rest)
        .await;
    let mut endpoints = Endpoints::all_at(&rest.uri());
    endpoints.coinbase_ws = coinbase_feed().await;
    let mut settings = LiveSettings::new(endpoints);
    settings.newsapi_url = rest.uri();
    let strategies = parse_strategies(&json!({
        "crypto_15m": {"assets": ["BTC"], "spot_venues": ["coinbase"], "scan_interval_secs": 1}
    }))
    .unwrap();
    let mut source = LiveSource::start(settings, &strategies, &ExchangeKeys::default()).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut prices = Vec::new();
    while !prices.contains(&dec!(65432.10)) {
        let event = tokio::time::timeout_at(deadline, source.next_event())
            .await
            .expect("the streamed trade reached the engine before the deadline")
            .unwrap()
            .unwrap();
        if let EventKind::Spot(spot) = event.kind {
            assert_eq!(spot.venue, Venue::Coinbase);
            assert_eq!(spot.asset.to_string(), "BTC");
            prices.push(spot.price);
        }
    }
    // Every spot price came from one of the two paths, with its exact value.
    assert!(
        prices
            .iter()
            .all(|p| *p == dec!(65432.10) || *p == dec!(29012.00)),
        "{prices:?}"
    );
}
