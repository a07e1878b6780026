use polybot_venues::model::{Level, Side};
use polybot_venues::{Coinbase, ErrorKind};
use rust_decimal_macros::dec;
use wiremock::matchers::{header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{endpoints, json, options};

#[tokio::test]
async fn level_two_book_ticker_and_trades_decode_exactly() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products/BTC-USD/book"))
        .and(query_param("level", "2"))
        .and(header_exists("user-agent"))
        .respond_with(json(200, "coinbase_book.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/products/BTC-USD/ticker"))
        .respond_with(json(200, "coinbase_ticker.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/products/BTC-USD/trades"))
        .respond_with(json(200, "coinbase_trades.json"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let cb = Coinbase::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = cb.book("BTC-USD").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        book.best_bid(),
        Some(Level::new(dec!(29010.55), dec!(0.25)))
    );
    assert_eq!(book.best_ask(), Some(Level::new(dec!(29015.10), dec!(0.1))));
    assert_eq!(book.sequence, Some(3));
    let ticker = cb.ticker("BTC-USD").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ticker.last, dec!(29012.00));
    assert_eq!(ticker.bid, Some(dec!(29010.55)));
    let trades = cb.trades("BTC-USD").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trades.len(), 2);
    assert_eq!(trades[0].trade_id.as_deref(), Some("86326522"));
    // Coinbase reports the maker side; a maker "buy" means the taker sold.
    assert_eq!(trades[0].side, Some(Side::Sell));
    assert_eq!(trades[1].size, dec!(0.20));
}

#[tokio::test]
async fn an_unknown_product_is_an_http_error_with_the_venue_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products/NOPE-USD/ticker"))
        .respond_with(ResponseTemplate::new(404).set_body_string(r#"{"message":"NotFound"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let cb = Coinbase::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = cb.ticker("NOPE-USD").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Status);
    assert_eq!(
        err.to_string(),
        r#"Coinbase GET /products/NOPE-USD/ticker: unexpected HTTP status (HTTP 404); body: {"message":"NotFound"}"#
    );
}
