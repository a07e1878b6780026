use chrono::{TimeZone, Utc};
use polybot_venues::connectors::polymarket::GammaQuery;
use polybot_venues::model::{Api, Level, Side};
use polybot_venues::{ErrorKind, Polymarket};
use rust_decimal_macros::dec;
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{endpoints, json, options};

#[tokio::test]
async fn gamma_markets_decode_json_in_string_fields_and_page_to_the_end() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/markets"))
        .and(query_param("offset", "0"))
        .and(query_param("limit", "2"))
        .and(query_param("active", "true"))
        .respond_with(json(200, "polymarket_markets_page1.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/markets"))
        .and(query_param("offset", "2"))
        .respond_with(json(200, "polymarket_markets_page2.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let markets = pm
        .all_markets(&GammaQuery {
            limit: Some(2),
            active: Some(true),
            ..GammaQuery::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(markets.len(), 3);
    let first = &markets[0];
    assert_eq!(first.outcomes, vec!["Yes", "No"]);
    assert_eq!(first.outcome_prices, vec![dec!(0.42), dec!(0.58)]);
    assert_eq!(first.clob_token_ids, vec!["1111", "2222"]);
    assert_eq!(first.tick_size, Some(dec!(0.01)));
    assert_eq!(first.best_bid, Some(dec!(0.41)));
    assert_eq!(first.volume, Some(dec!(12345.67)));
    assert_eq!(
        first.end_date,
        Some(Utc.with_ymd_and_hms(2026, 5, 1, 23, 59, 0).unwrap())
    );
    assert!(markets[1].neg_risk);
    assert_eq!(markets[2].slug, "btc-above-100k");
}

#[tokio::test]
async fn the_current_updown_event_is_looked_up_by_its_event_slug() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/events"))
        .and(query_param("slug", "btc-updown-15m-1777467600"))
        .respond_with(json(200, "polymarket_event_updown.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    // 9:07:30 ET on April 29 is inside the window opened at 1777467600.
    let now = Utc.timestamp_opt(1777467600 + 450, 0).unwrap();
    let event = pm
        .current_updown_event("BTC", now)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("event expected"));
    assert_eq!(event.slug, "btc-updown-15m-1777467600");
    assert!(event.tags.contains(&"up-or-down".to_owned()));
    let market = &event.markets[0];
    assert_eq!(market.outcomes, vec!["Up", "Down"]);
    assert_eq!(market.outcome_prices, vec![dec!(0.515), dec!(0.485)]);
    assert_eq!(market.clob_token_ids.len(), 2);
    assert_eq!(
        market.resolution_source.as_deref(),
        Some("https://data.chain.link/streams/btc-usd")
    );
}

#[tokio::test]
async fn a_clob_book_sent_ascending_comes_back_best_first() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/book"))
        .and(query_param("token_id", "100"))
        .respond_with(json(200, "polymarket_book.json"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = pm.book("100").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.api, Api::PolymarketClob);
    assert_eq!(book.instrument, "100");
    assert_eq!(
        book.bids,
        vec![
            Level::new(dec!(0.4), dec!(100)),
            Level::new(dec!(0.3), dec!(100))
        ]
    );
    assert_eq!(
        book.asks,
        vec![
            Level::new(dec!(0.6), dec!(100)),
            Level::new(dec!(0.7), dec!(100))
        ]
    );
    assert_eq!(
        book.timestamp.map(|t| t.timestamp_millis()),
        Some(123456789)
    );
}

#[tokio::test]
async fn books_midpoint_and_price_use_the_clob_shapes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/books"))
        .and(body_json(serde_json::json!([{"token_id":"100"}])))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "[{}]",
            crate::common::fixture("polymarket_book.json")
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/midpoint"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"mid":"0.5"}"#))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/price"))
        .and(query_param("side", "BUY"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"price":"0.61"}"#))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let books = pm.books(&["100"]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].best_bid(), Some(Level::new(dec!(0.4), dec!(100))));
    assert_eq!(pm.midpoint("100").await, Ok(dec!(0.5)));
    assert_eq!(pm.price("100", Side::Buy).await, Ok(dec!(0.61)));
}

#[tokio::test]
async fn a_market_with_a_broken_json_in_string_field_is_a_decode_error_naming_the_field() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/markets"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"[{"id":"1","outcomes":"[\"Yes\", \"No\"","outcomePrices":"[]","clobTokenIds":"[]"}]"#,
        ))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = pm.markets(&GammaQuery::default()).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Decode { .. }), "{err}");
    assert_eq!(err.api(), Api::PolymarketGamma);
    assert!(err.to_string().contains("outcomes"), "{err}");
}

#[tokio::test]
async fn a_markets_fees_come_from_the_clob_market_info() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/clob-markets/0xabc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "c": "0xabc", "mts": 0.01, "mos": 5, "nr": false,
            "fd": {"r": 0.072, "e": 2, "to": true}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/clob-markets/0xfree"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "c": "0xfree", "mts": 0.01, "mos": 5, "nr": false
        })))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let pm = Polymarket::with_options(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let fees = pm
        .fee_params("0xabc")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fees.rate, dec!(0.072));
    assert_eq!(fees.exponent, 2);
    assert!(fees.taker_only);
    let free = pm
        .fee_params("0xfree")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(free.rate, dec!(0));
    assert_eq!(free.exponent, 1);
}
