use polybot_venues::connectors::kalshi::KalshiMarketsQuery;
use polybot_venues::model::Level;
use polybot_venues::signing::kalshi::KalshiSigner;
use polybot_venues::{ErrorKind, Kalshi};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use wiremock::matchers::{header_exists, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{endpoints, fixture, json, options};

#[tokio::test]
async fn markets_follow_the_cursor_until_it_is_empty() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("status", "open"))
        .respond_with(json(200, "kalshi_markets_page1.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .and(query_param("cursor", "CgsI2Lb4nQYQ4J"))
        .respond_with(json(200, "kalshi_markets_page2.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let markets = kalshi
        .all_markets(&KalshiMarketsQuery {
            status: Some("open".to_owned()),
            ..KalshiMarketsQuery::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tickers: Vec<&str> = markets.iter().map(|m| m.ticker.as_str()).collect();
    assert_eq!(
        tickers,
        [
            "KXBTC15M-26MAR021545-T1",
            "KXFED-26JUN-T4.25",
            "KXNYCRAIN-26MAY01"
        ]
    );
    assert_eq!(markets[0].yes_ask, Some(dec!(0.5600)));
    assert_eq!(markets[0].volume, Some(dec!(1520.00)));
    assert_eq!(markets[0].floor_strike, Some(dec!(84250.12)));
    assert_eq!(markets[1].volume, Some(dec!(5000)));
    assert_eq!(markets[2].no_bid, None);
}

#[tokio::test]
async fn a_bids_only_orderbook_becomes_yes_and_no_books_with_asks() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets/KXFED-26JUN-T4.25/orderbook"))
        .respond_with(json(200, "kalshi_orderbook.json"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = kalshi
        .orderbook("KXFED-26JUN-T4.25")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.yes.best_bid(), Some(Level::new(dec!(0.42), dec!(13))));
    // YES ask = 1 − best NO bid (0.56).
    assert_eq!(book.yes.best_ask(), Some(Level::new(dec!(0.44), dec!(17))));
    assert_eq!(book.yes.asks.len(), 3);
    assert_eq!(book.no.best_bid(), Some(Level::new(dec!(0.56), dec!(17))));
    assert_eq!(book.no.best_ask(), Some(Level::new(dec!(0.58), dec!(13))));
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .respond_with(json(200, "kalshi_markets_page2.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, clock) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let page = kalshi
        .markets_page(&KalshiMarketsQuery::default(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.markets.len(), 1);
    assert_eq!(page.cursor, None);
    assert_eq!(clock.sleeps(), vec![std::time::Duration::from_secs(7)]);
}

#[tokio::test]
async fn a_signed_balance_request_carries_the_kalshi_headers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/portfolio/balance"))
        .and(header_exists("KALSHI-ACCESS-SIGNATURE"))
        .and(header_exists("KALSHI-ACCESS-TIMESTAMP"))
        .and(wiremock::matchers::header("KALSHI-ACCESS-KEY", "key-1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"balance":12345}"#))
        .expect(1)
        .mount(&server)
        .await;
    let signer = KalshiSigner::from_pem(
        "key-1",
        &SecretString::from(fixture("kalshi_test_key_pkcs8.pem")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kalshi.balance(&signer).await, Ok(dec!(123.45)));
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_with_a_body_excerpt() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"markets\": [ {\"ticker\": "))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = kalshi
        .markets_page(&KalshiMarketsQuery::default(), None)
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Decode { .. }), "{err}");
    assert_eq!(err.endpoint(), "GET /markets");
    assert_eq!(err.body_excerpt(), Some("{\"markets\": [ {\"ticker\":"));
    assert!(
        err.to_string()
            .starts_with("Kalshi GET /markets: malformed response"),
        "{err}"
    );
}

#[tokio::test]
async fn one_market_is_read_by_its_ticker() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets/KXFED-26JUN-T4.25"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(
            r#"{"market":{"ticker":"KXFED-26JUN-T4.25","event_ticker":"KXFED-26JUN","title":"Fed rate above 4.25%?","status":"active","yes_bid_dollars":"0.1200","close_time":"2026-06-17T18:00:00Z","rules_primary":"If the upper bound of the federal funds target range is above 4.25%"}}"#,
        ))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let market = kalshi
        .market("KXFED-26JUN-T4.25")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(market.ticker, "KXFED-26JUN-T4.25");
    assert_eq!(market.event_ticker, "KXFED-26JUN");
    assert_eq!(market.yes_bid, Some(dec!(0.12)));
    assert_eq!(
        market.close_time.map(|t| t.timestamp()),
        Some(1_781_719_200)
    );
}

#[tokio::test]
async fn a_series_fee_schedule_is_read_and_a_flat_one_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/series/KXINX"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"series":{"ticker":"KXINX","title":"S&P 500","fee_type":"quadratic_with_maker_fees","fee_multiplier":0.5}}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/series/KXFLAT"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"series":{"ticker":"KXFLAT","fee_type":"flat","fee_multiplier":1}}"#,
        ))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let kalshi = Kalshi::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let fees = kalshi
        .series_fees("KXINX")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fees.taker_rate(), dec!(0.035));
    assert_eq!(fees.maker_rate(), dec!(0.00875));
    let err = kalshi.series_fees("KXFLAT").await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Decode { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("fee_type \"flat\" is not supported"),
        "{err}"
    );
}
