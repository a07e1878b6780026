use std::time::Duration;

use polybot_venues::endpoints::*;
use polybot_venues::model::Api;
use polybot_venues::{DoctorOptions, Endpoints, ProbeStatus, probe_all};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::fixture;

/// A loopback port with nothing listening on it.
async fn refused_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    drop(listener);
    port
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    for p in [
        "/markets",
        "/time",
        "/trade-api/v2/exchange/status",
        "/api/v3/ping",
        "/v1beta3/crypto/us/latest/orderbooks",
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;
    }
    server
}

#[tokio::test]
async fn doctor_reports_ok_geo_blocked_needs_keys_and_unreachable_rows() {
    let ok = ok_server().await;
    let geo = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/ping"))
        .respond_with(
            ResponseTemplate::new(451).set_body_string(fixture("binance_global_451.json")),
        )
        .mount(&geo)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/clock"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"message":"unauthorized."}"#))
        .mount(&geo)
        .await;
    let refused = refused_port().await;
    let gateway = refused_port().await;
    let ok_uri = ok.uri();
    let geo_uri = geo.uri();
    // Through the same variables an operator sets (without touching the process env).
    let endpoints = Endpoints::from_lookup(|name| match name {
        ENV_BINANCE | ENV_ALPACA_TRADING => Some(geo_uri.clone()),
        ENV_KRAKEN => Some(format!("http://127.0.0.1:{refused}")),
        ENV_KALSHI => Some(format!("{ok_uri}/trade-api/v2")),
        _ => Some(ok_uri.clone()),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let report = probe_all(
        &endpoints,
        DoctorOptions {
            timeout: Duration::from_secs(2),
            ibkr_gateway: format!("127.0.0.1:{gateway}"),
        },
    )
    .await;

    assert_eq!(report.rows.len(), Api::ALL.len());
    let status = |v| report.row(v).map(|r| r.status);
    for v in [
        Api::PolymarketGamma,
        Api::PolymarketClob,
        Api::Kalshi,
        Api::BinanceUs,
        Api::Coinbase,
        Api::AlpacaData,
    ] {
        assert_eq!(status(v), Some(ProbeStatus::Ok), "{v}");
    }
    assert!(!report.all_ok());

    let binance = report.row(Api::Binance).unwrap_or_else(|| panic!("row"));
    assert_eq!(binance.status, ProbeStatus::GeoBlocked);
    assert_eq!(binance.http_status, Some(451));
    assert!(binance.notes.contains("geo-blocked"), "{}", binance.notes);
    assert!(
        binance
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("use Binance US")
    );

    let alpaca = report
        .row(Api::AlpacaTrading)
        .unwrap_or_else(|| panic!("row"));
    assert_eq!(alpaca.status, ProbeStatus::NeedsKeys);
    assert!(alpaca.notes.contains("needs API keys"), "{}", alpaca.notes);

    let kraken = report.row(Api::Kraken).unwrap_or_else(|| panic!("row"));
    assert_eq!(kraken.status, ProbeStatus::Unreachable);
    assert!(kraken.notes.starts_with("unreachable"), "{}", kraken.notes);
    assert!(
        kraken.notes.to_lowercase().contains("refused"),
        "{}",
        kraken.notes
    );
    assert!(
        kraken
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains(ENV_KRAKEN)
    );

    let ibkr = report.row(Api::Ibkr).unwrap_or_else(|| panic!("row"));
    assert_eq!(ibkr.status, ProbeStatus::Unreachable);
    assert_eq!(ibkr.endpoint, format!("tcp://127.0.0.1:{gateway}"));
    assert!(
        ibkr.fix
            .as_deref()
            .unwrap_or_default()
            .contains("gateway container")
    );

    // The table: a header, a rule, and one aligned line per venue.
    let table = report.render_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2 + Api::ALL.len(), "{table}");
    let status_col = lines[0].find("STATUS").unwrap_or_else(|| panic!("{table}"));
    let line_of = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .copied()
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
    };
    assert!(
        line_of("Binance global")[status_col..].starts_with("geo-blocked"),
        "{table}"
    );
    assert!(
        line_of("Alpaca trading")[status_col..].starts_with("needs keys"),
        "{table}"
    );
    assert!(
        line_of("Kraken")[status_col..].starts_with("unreachable"),
        "{table}"
    );
    assert!(
        line_of("IBKR gateway")[status_col..].starts_with("unreachable"),
        "{table}"
    );
    assert!(
        line_of("Binance US")[status_col..].starts_with("ok"),
        "{table}"
    );
    assert!(
        line_of("Binance global").contains("use Binance US"),
        "{table}"
    );

    // The JSON for --json.
    let json = serde_json::to_value(&report).unwrap_or_else(|e| panic!("{e}"));
    let rows = json["rows"].as_array().unwrap_or_else(|| panic!("{json}"));
    let by_venue = |v: &str| {
        rows.iter()
            .find(|r| r["venue"] == v)
            .unwrap_or_else(|| panic!("{v} missing in {json}"))
    };
    assert_eq!(by_venue("binance")["status"], "geo_blocked");
    assert_eq!(by_venue("binance")["http_status"], 451);
    assert_eq!(by_venue("binance")["venue_name"], "Binance global");
    assert_eq!(by_venue("alpaca_trading")["status"], "needs_keys");
    assert_eq!(by_venue("kraken")["status"], "unreachable");
    assert_eq!(by_venue("ibkr")["status"], "unreachable");
    assert_eq!(by_venue("binance_us")["status"], "ok");
    assert_eq!(by_venue("binance_us")["fix"], serde_json::Value::Null);
}

#[tokio::test]
async fn with_nothing_reachable_every_row_is_unreachable_with_a_reason() {
    let refused = refused_port().await;
    let endpoints = Endpoints::all_at(&format!("http://127.0.0.1:{refused}"));
    let report = probe_all(
        &endpoints,
        DoctorOptions {
            timeout: Duration::from_millis(500),
            ibkr_gateway: format!("127.0.0.1:{refused}"),
        },
    )
    .await;
    assert_eq!(report.rows.len(), Api::ALL.len());
    for row in &report.rows {
        assert_eq!(row.status, ProbeStatus::Unreachable, "{row:?}");
        assert!(row.notes.starts_with("unreachable: "), "{row:?}");
        assert!(row.notes.len() > "unreachable: ".len(), "{row:?}");
        assert!(row.fix.is_some(), "{row:?}");
    }
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_is_unreachable_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    // Accept connections and hold them open without a byte of answer.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let endpoints = Endpoints::all_at(&format!("http://127.0.0.1:{port}"));
    let report = probe_all(
        &endpoints,
        DoctorOptions {
            timeout: Duration::from_millis(300),
            ibkr_gateway: format!("127.0.0.1:{port}"),
        },
    )
    .await;
    holder.abort();
    let kalshi = report.row(Api::Kalshi).unwrap_or_else(|| panic!("row"));
    assert_eq!(kalshi.status, ProbeStatus::Unreachable);
    assert_eq!(kalshi.notes, "unreachable: no answer within 300 ms");
    // The gateway port itself accepted the TCP connection.
    assert_eq!(
        report.row(Api::Ibkr).map(|r| r.status),
        Some(ProbeStatus::Ok)
    );
}
