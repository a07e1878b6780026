use polybot_venues::model::Level;
use polybot_venues::signing::kraken::KrakenCredentials;
use polybot_venues::{ErrorKind, Kraken};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{endpoints, json, options};

#[tokio::test]
async fn depth_and_ticker_unwrap_the_envelope() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/0/public/Depth"))
        .and(query_param("pair", "XBTUSD"))
        .respond_with(json(200, "kraken_depth.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/Ticker"))
        .respond_with(json(200, "kraken_ticker.json"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kraken = Kraken::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = kraken
        .depth("XBTUSD", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.instrument, "XXBTZUSD");
    assert_eq!(
        book.best_bid(),
        Some(Level::new(dec!(94995.50000), dec!(0.100)))
    );
    assert_eq!(
        book.best_ask(),
        Some(Level::new(dec!(95000.00000), dec!(1.250)))
    );
    let ticker = kraken
        .ticker("XBTUSD")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ticker.last, dec!(94998.10000));
    assert_eq!(ticker.bid, Some(dec!(94995.50000)));
    assert_eq!(ticker.ask, Some(dec!(95000.00000)));
}

#[tokio::test]
async fn an_error_envelope_on_http_200_is_an_api_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/0/public/Depth"))
        .respond_with(json(200, "kraken_error.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kraken = Kraken::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = kraken.depth("NOPE", 10).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Api {
            message: "EQuery:Unknown asset pair".to_owned()
        }
    );
    assert_eq!(err.status(), Some(200));
    assert!(
        err.to_string().contains("Kraken GET /0/public/Depth"),
        "{err}"
    );
}

#[tokio::test]
async fn a_rate_limit_envelope_is_a_rate_limited_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/0/public/Ticker"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"error":["EAPI:Rate limit exceeded"]}"#),
        )
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kraken = Kraken::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = kraken.ticker("XBTUSD").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RateLimited { retry_after: None });
}

#[tokio::test]
async fn the_signed_balance_call_posts_a_form_with_api_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/0/private/Balance"))
        .and(header("API-Key", "kraken-key"))
        .and(header_exists("API-Sign"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(json(200, "kraken_balance.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kraken = Kraken::new(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let creds = KrakenCredentials {
        api_key: SecretString::from("kraken-key"),
        private_key: SecretString::from(
            "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
        ),
    };
    let balances = kraken
        .balances(&creds)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balances.get("XXBT"), Some(&dec!(0.5000000000)));
    assert_eq!(balances.get("ZUSD"), Some(&dec!(1000.2500)));
}
