use std::time::Duration;

use polybot_venues::model::{Api, Level};
use polybot_venues::signing::binance::BinanceCredentials;
use polybot_venues::{Binance, ErrorKind};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{endpoints, json, options};

#[tokio::test]
async fn depth_is_sorted_best_first_and_records_the_used_weight() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/depth"))
        .and(query_param("symbol", "LTCBTC"))
        .and(query_param("limit", "5"))
        .respond_with(json(200, "binance_depth.json").insert_header("x-mbx-used-weight-1m", "31"))
        .mount(&server)
        .await;
    let (opts, _) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = binance
        .depth("LTCBTC", 5)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.api, Api::BinanceUs);
    assert_eq!(book.sequence, Some(1027024));
    assert_eq!(
        book.best_bid(),
        Some(Level::new(dec!(4.00000000), dec!(431.00000000)))
    );
    assert_eq!(
        book.best_ask(),
        Some(Level::new(dec!(4.00000200), dec!(12.00000000)))
    );
    assert_eq!(binance.used_weight(), 31);
}

#[tokio::test]
async fn exchange_info_sizes_the_weight_limiter() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/exchangeInfo"))
        .respond_with(json(200, "binance_exchange_info.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        binance.weight_limiter().interval(),
        Duration::from_millis(50)
    );
    let limits = binance
        .init_rate_limits()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limits.len(), 4);
    // 6,000 per minute → 10 ms per unit of weight.
    assert_eq!(
        binance.weight_limiter().interval(),
        Duration::from_millis(10)
    );
    // ORDERS: the shortest window wins, 100 per 10 s → 100 ms.
    assert_eq!(
        binance.orders_limiter().interval(),
        Duration::from_millis(100)
    );
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_is_returned_with_its_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ticker/price"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_string(r#"{"code":-1003,"msg":"Too many requests."}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (opts, clock) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = binance.ticker_price("BTCUSD").await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(3600))
        }
    );
    assert_eq!(err.status(), Some(429));
    assert_eq!(
        err.body_excerpt(),
        Some(r#"{"code":-1003,"msg":"Too many requests."}"#)
    );
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn a_418_stops_all_calls_until_the_ban_ends() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ticker/price"))
        .respond_with(ResponseTemplate::new(418).insert_header("retry-after", "120"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ticker/price"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"symbol":"BTCUSD","price":"95000.12"}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (opts, clock) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let first = binance.ticker_price("BTCUSD").await.unwrap_err();
    assert_eq!(
        first.kind(),
        &ErrorKind::Banned {
            remaining: Duration::from_secs(120)
        }
    );
    // During the ban nothing is sent: the 200 mock is not hit.
    clock.advance(Duration::from_secs(60));
    let second = binance.ticker_price("BTCUSD").await.unwrap_err();
    assert_eq!(
        second.kind(),
        &ErrorKind::Banned {
            remaining: Duration::from_secs(60)
        }
    );
    assert!(second.to_string().contains("Binance US"), "{second}");
    clock.advance(Duration::from_secs(61));
    let ticker = binance
        .ticker_price("BTCUSD")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ticker.last, dec!(95000.12));
}

#[tokio::test]
async fn binance_global_451_marks_it_geo_blocked_with_the_binance_us_fix() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ping"))
        .respond_with(json(451, "binance_global_451.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let global = Binance::global(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = global.ping().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::GeoBlocked);
    assert_eq!(err.api(), Api::Binance);
    let text = err.to_string();
    assert!(text.contains("geo-blocked"), "{text}");
    assert!(text.contains("use Binance US"), "{text}");
    assert!(text.contains("restricted location"), "{text}");
    // Marked for this host: the next call fails without a request (expect(1)).
    assert_eq!(
        global.ping().await.unwrap_err().kind(),
        &ErrorKind::GeoBlocked
    );
}

#[tokio::test]
async fn a_5xx_is_retried_with_bounded_jittered_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/depth"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v3/depth"))
        .respond_with(json(200, "binance_depth.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, clock) = options();
    let policy = opts.retry.clone();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let book = binance
        .depth("LTCBTC", 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.bids.len(), 2);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    // Attempt n waits within [b/2, b], b = base × 2^(n-1).
    assert!(
        sleeps[0] >= policy.base_backoff / 2 && sleeps[0] <= policy.base_backoff,
        "{sleeps:?}"
    );
    assert!(
        sleeps[1] >= policy.base_backoff && sleeps[1] <= policy.base_backoff * 2,
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn a_5xx_that_persists_fails_after_the_attempt_budget() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/depth"))
        .respond_with(ResponseTemplate::new(500).set_body_string("<html>Internal error</html>"))
        .expect(4)
        .mount(&server)
        .await;
    let (opts, clock) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let err = binance.depth("LTCBTC", 100).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Server { attempts: 4 });
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.body_excerpt(), Some("<html>Internal error</html>"));
    assert_eq!(clock.sleeps().len(), 3);
    assert!(clock.sleeps().iter().all(|s| *s <= opts.retry.max_backoff));
}

#[tokio::test]
async fn the_signed_account_call_sends_key_header_and_valid_signature() {
    let server = MockServer::start().await;
    let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    Mock::given(method("GET"))
        .and(path("/api/v3/account"))
        .and(header("X-MBX-APIKEY", "my-api-key"))
        .and(move |req: &Request| {
            // The signature covers every parameter before it, byte for byte.
            let query = req.url.query().unwrap_or_default();
            let Some((signed, sig)) = query.rsplit_once("&signature=") else {
                return false;
            };
            polybot_venues::signing::binance::signature(&SecretString::from(secret), signed, "")
                == sig
                && signed.contains("timestamp=")
        })
        .respond_with(json(200, "binance_account.json"))
        .expect(1)
        .mount(&server)
        .await;
    let (opts, _) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let creds = BinanceCredentials {
        api_key: SecretString::from("my-api-key"),
        secret_key: SecretString::from(secret),
    };
    let balances = binance
        .balances(&creds)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let assets: Vec<&str> = balances.iter().map(|b| b.asset.as_str()).collect();
    assert_eq!(assets, ["BTC", "USD"]);
    assert_eq!(balances[1].free, dec!(100.50));
    assert_eq!(balances[1].locked, dec!(20.00));
}

#[tokio::test]
async fn an_unauthorised_signed_call_never_echoes_the_key_in_its_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/account"))
        .respond_with(|req: &Request| {
            // A hostile or debugging proxy that echoes the request headers.
            let echoed = format!("{:?}", req.headers);
            ResponseTemplate::new(401).set_body_string(echoed)
        })
        .mount(&server)
        .await;
    let (opts, _) = options();
    let binance = Binance::us(&endpoints(&server), &opts).unwrap_or_else(|e| panic!("{e}"));
    let creds = BinanceCredentials {
        api_key: SecretString::from("super-secret-api-key"),
        secret_key: SecretString::from("another-secret"),
    };
    let err = binance.balances(&creds).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unauthorized);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("super-secret-api-key"), "{text}");
    assert!(!text.contains("another-secret"), "{text}");
    assert!(!text.contains("signature="), "{text}");
}
