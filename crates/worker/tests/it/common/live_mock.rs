//! A local stand-in for every venue the live source reads, on recorded
//! response shapes: gamma events (the current and next BTC up/down windows,
//! echoed from the slug asked for) and markets, CLOB books and market info
//! (every market's fees: the Crypto category's 0.07, exponent 1), a Kalshi
//! 15-minute series with its order book, Coinbase and Kraken tickers, an RSS
//! feed, NewsAPI answering 429, and Binance US answering 451.

use polybot_venues::Endpoints;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The complement-arbitrage market: YES asks 0.40, NO asks 0.45.
pub const ARB_MARKET: &str = "will-the-fed-cut-in-june";
pub const KALSHI_TICKER: &str = "KXBTC15M-LIVE-T1";
pub const NEWS_KEY: &str = "newsapi-test-key-1234";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../venues/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn current_window() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(900) * 900
}

/// `GET /events?slug=btc-updown-15m-<start>`: that window's event.
struct UpdownEvents;

impl Respond for UpdownEvents {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let slug = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "slug")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let Some(start) = slug
            .strip_prefix("btc-updown-15m-")
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return ResponseTemplate::new(200).set_body_json(json!([]));
        };
        let market = json!({
            "id": format!("m{start}"), "question": format!("Bitcoin Up or Down {start}"),
            "conditionId": format!("0x{start:x}"), "slug": slug, "endDate": iso(start + 900),
            "active": true, "closed": false, "enableOrderBook": true, "acceptingOrders": true,
            "negRisk": false, "resolutionSource": "https://data.chain.link/streams/btc-usd",
            "outcomes": "[\"Up\", \"Down\"]", "outcomePrices": "[\"0.5\", \"0.5\"]",
            "clobTokenIds": format!("[\"{slug}-up\", \"{slug}-down\"]")
        });
        ResponseTemplate::new(200).set_body_json(json!([{
            "id": format!("e{start}"), "slug": slug, "title": format!("Bitcoin Up or Down {start}"),
            "startDate": iso(start), "endDate": iso(start + 900), "active": true, "closed": false,
            "tags": [{"slug": "up-or-down"}], "markets": [market]
        }]))
    }
}

fn arb_market() -> Value {
    json!({
        "id": "501", "question": "Will the Fed cut in June?", "conditionId": "0xfed",
        "slug": ARB_MARKET, "endDate": "2030-06-30T00:00:00Z", "active": true, "closed": false,
        "enableOrderBook": true, "acceptingOrders": true, "negRisk": false,
        "outcomes": "[\"Yes\", \"No\"]", "outcomePrices": "[\"0.4\", \"0.6\"]",
        "clobTokenIds": "[\"arb-yes\", \"arb-no\"]"
    })
}

/// `POST /books`: a book per token asked for, bids ascending as the CLOB sends them.
struct Books;

impl Respond for Books {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let asked: Vec<Value> = serde_json::from_slice(&request.body).unwrap_or_default();
        let books: Vec<Value> = asked
            .iter()
            .filter_map(|t| t["token_id"].as_str())
            .map(|token| {
                let (bids, asks) = match token {
                    "arb-yes" => (
                        json!([{"price": "0.30", "size": "50"}, {"price": "0.38", "size": "100"}]),
                        json!([{"price": "0.41", "size": "70"}, {"price": "0.40", "size": "100"}]),
                    ),
                    "arb-no" => (
                        json!([{"price": "0.43", "size": "100"}]),
                        json!([{"price": "0.45", "size": "100"}]),
                    ),
                    _ => (
                        json!([{"price": "0.48", "size": "10"}]),
                        json!([{"price": "0.53", "size": "10"}]),
                    ),
                };
                json!({"market": "0x", "asset_id": token, "timestamp": "1", "bids": bids, "asks": asks})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(books)
    }
}

/// Starts the mock with every venue mounted.
pub async fn start() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/events"))
        .respond_with(UpdownEvents)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/markets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([arb_market()])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/books"))
        .respond_with(Books)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/clob-markets/0x[0-9a-f]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "mts": 0.01, "mos": 5, "nr": false, "fd": {"r": 0.07, "e": 1, "to": true}
        })))
        .mount(&server)
        .await;
    let open = current_window();
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/markets"))
        .and(query_param("series_ticker", "KXBTC15M"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "markets": [{
                "ticker": KALSHI_TICKER, "event_ticker": "KXBTC15M-LIVE", "market_type": "binary",
                "title": "BTC price up in next 15 mins?", "status": "active",
                "open_time": iso(open), "close_time": iso(open + 900),
                "strike_type": "greater", "floor_strike": 84250.12,
                "rules_primary": "If the CF Benchmarks BRTI 60-second average is above the strike"
            }],
            "cursor": ""
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/trade-api/v2/series/KXBTC15M"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "series": {"ticker": "KXBTC15M", "frequency": "fifteen_min",
                       "fee_type": "quadratic", "fee_multiplier": 1}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/trade-api/v2/markets/{KALSHI_TICKER}/orderbook"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("kalshi_orderbook.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ticker/price"))
        .respond_with(
            ResponseTemplate::new(451).set_body_string(fixture("binance_global_451.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/products/BTC-USD/ticker"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("coinbase_ticker.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/Ticker"))
        .and(query_param("pair", "XBTUSD"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("kraken_ticker.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/everything"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "120")
                .set_body_json(json!({
                    "status": "error", "code": "rateLimited",
                    "message": "You have made too many requests recently."
                })),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rss.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
            <item><title>Fed cuts rates by 25bps</title><guid>wire-1</guid>
            <description>Powell announced the cut.</description>
            <pubDate>Wed, 29 Apr 2026 13:00:00 +0000</pubDate></item></channel></rss>"#,
        ))
        .mount(&server)
        .await;
    server
}

/// Every venue, and NewsAPI, on the mock.
pub fn settings(server: &MockServer) -> polybot_worker::LiveSettings {
    let mut settings = polybot_worker::LiveSettings::new(Endpoints::all_at(&server.uri()));
    settings.newsapi_url = server.uri();
    settings
}

/// All four strategies on, reading every mocked venue.
pub fn strategies(server: &MockServer) -> Value {
    json!({
        "complement_arb": {"venues": ["polymarket"], "scan_interval_secs": 1},
        "cross_venue_arb": {"assets": ["BTC"], "scan_interval_secs": 1},
        "crypto_15m": {
            "assets": ["BTC"], "spot_venues": ["binance_us", "coinbase", "kraken"],
            "scan_interval_secs": 1
        },
        "news_arb": {
            "newsapi_query": "fed",
            "rss_feeds": [format!("{}/rss.xml", server.uri())],
            "rules": [{
                "market": ARB_MARKET, "outcome": "Yes", "keywords": ["fed"],
                "fair_price": "0.90"
            }]
        }
    })
}

/// The tenant's keys: a NewsAPI key only.
pub fn keys() -> polybot_core::keys::ExchangeKeys {
    polybot_core::keys::ExchangeKeys::from_secret_json(&secrecy::SecretString::from(
        json!({"newsapi": {"api_key": NEWS_KEY}}).to_string(),
    ))
    .unwrap()
}
