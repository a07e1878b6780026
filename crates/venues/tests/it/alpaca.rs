use polybot_venues::model::{Level, Side};
use polybot_venues::signing::alpaca::AlpacaCredentials;
use polybot_venues::{Alpaca, ErrorKind};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{endpoints, json, options};

#[tokio::test]
async fn crypto_books_with_json_number_prices_parse_exactly() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1beta3/crypto/us/latest/orderbooks"))
        .and(query_param("symbols", "BTC/USD"))
        .respond_with(json(200, "alpaca_orderbooks.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1beta3/crypto/us/latest/trades"))
        .respond_with(json(200, "alpaca_trades.json"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let alpaca = Alpaca::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let books = alpaca
        .latest_orderbooks(&["BTC/USD"], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].instrument, "BTC/USD");
    assert_eq!(
        books[0].best_bid(),
        Some(Level::new(dec!(27511.78083), dec!(0.26265668)))
    );
    assert_eq!(
        books[0].best_ask(),
        Some(Level::new(dec!(27520.1), dec!(1.5)))
    );
    assert_eq!(
        books[0].asks[1],
        Level::new(dec!(27539.494), dec!(0.2632414))
    );
    let trades = alpaca
        .latest_trades(&["BTC/USD"], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trades[0].price, dec!(27512.5));
    assert_eq!(trades[0].side, Some(Side::Buy));
}

#[tokio::test]
async fn the_trading_api_without_valid_keys_is_unauthorised_and_keys_stay_out_of_the_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/account"))
        .respond_with(ResponseTemplate::new(403).set_body_string(r#"{"message":"forbidden."}"#))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let alpaca = Alpaca::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let creds = AlpacaCredentials {
        key_id: SecretString::from("PKWRONGKEY"),
        secret_key: SecretString::from("wrong-secret-value"),
    };
    let err = alpaca.account_status(&creds).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unauthorized);
    assert_eq!(err.status(), Some(403));
    let text = err.to_string();
    assert!(text.contains("Alpaca trading"), "{text}");
    assert!(text.contains("needs valid API keys"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
    assert!(err.fix().unwrap_or_default().contains("needs API keys"));
}
