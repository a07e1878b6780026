//! `polybot record` against a local mock of every venue: a short recording
//! whose every line parses back with the engine's replay parser, holding the
//! mocked markets, books and spot prices, while a geo-blocked venue (451) is
//! reported and does not stop it.

use crate::live_mock;

use std::process::Command;

use live_mock::{ARB_MARKET, KALSHI_TICKER};
use polybot_engine::{Asset, EventKind, Level, ReplayParser};
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_the_live_feeds_replays_with_the_engines_parser() {
    let server = live_mock::start().await;
    let uri = server.uri();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.jsonl");
    let ws = uri.replacen("http", "ws", 1);
    let kalshi = format!("{uri}/trade-api/v2");
    // Every endpoint on the mock: nothing may reach the internet.
    let vars = [
        ("POLYBOT_POLYMARKET_GAMMA_URL", uri.clone()),
        ("POLYBOT_POLYMARKET_CLOB_URL", uri.clone()),
        ("POLYBOT_POLYMARKET_WS_URL", ws.clone()),
        ("POLYBOT_KALSHI_URL", kalshi.clone()),
        ("POLYBOT_BINANCE_US_URL", uri.clone()),
        ("POLYBOT_BINANCE_URL", uri.clone()),
        ("POLYBOT_COINBASE_URL", uri.clone()),
        ("POLYBOT_KRAKEN_URL", uri.clone()),
        ("POLYBOT_ALPACA_DATA_URL", uri.clone()),
        ("POLYBOT_ALPACA_TRADING_URL", uri.clone()),
        ("POLYBOT_NEWSAPI_URL", uri.clone()),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["record", "--seconds", "3", "--assets", "BTC", "--out"])
            .arg(&out)
            .envs(vars)
            .env_remove("DATABASE_URL")
            .output()
            .map(|o| (o, out))
    })
    .await
    .unwrap()
    .unwrap();
    let (output, out) = output;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("binance_us: geo_blocked"), "{stderr}");

    let text = std::fs::read_to_string(&out).unwrap();
    let mut parser = ReplayParser::new();
    let mut events = Vec::new();
    for line in text.lines() {
        if let Some(event) = parser
            .parse_line(line)
            .unwrap_or_else(|e| panic!("{e}: {line}"))
        {
            events.push(event);
        }
    }

    let market = events.iter().find_map(|e| match &e.kind {
        EventKind::Market(def) if def.id.as_str() == ARB_MARKET => Some(def.clone()),
        _ => None,
    });
    let market = market.expect("the complement market's definition was recorded");
    assert_eq!(market.outcomes, vec!["Yes", "No"]);
    assert_eq!(market.fee_rate, d("0.07"));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Market(def) if def.id.as_str() == KALSHI_TICKER
            && def.reference_price == Some(d("84250.12"))
    )));
    assert!(
        events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Market(def) if def.id.as_str().starts_with("btc-updown-15m-")))
            .count()
            >= 2
    );
    let yes_book = events.iter().find_map(|e| match &e.kind {
        EventKind::Book(b) if b.market.as_str() == ARB_MARKET && b.outcome == 0 => Some(b.clone()),
        _ => None,
    });
    let yes_book = yes_book.expect("the complement market's YES book was recorded");
    assert_eq!(
        yes_book.asks,
        vec![
            Level::new(d("0.40"), d("100")),
            Level::new(d("0.41"), d("70"))
        ]
    );
    assert_eq!(
        yes_book.bids,
        vec![
            Level::new(d("0.38"), d("100")),
            Level::new(d("0.30"), d("50"))
        ]
    );
    let kalshi_no = events.iter().find_map(|e| match &e.kind {
        EventKind::Book(b) if b.market.as_str() == KALSHI_TICKER && b.outcome == 1 => {
            Some(b.clone())
        }
        _ => None,
    });
    assert_eq!(
        kalshi_no.expect("the Kalshi NO book was recorded").bids[0],
        Level::new(d("0.56"), d("17"))
    );
    let spots: Vec<(String, Asset, Decimal)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Spot(s) => Some((s.venue.as_str().to_owned(), s.asset.clone(), s.price)),
            _ => None,
        })
        .collect();
    assert!(spots.contains(&("coinbase".to_owned(), Asset::new("BTC"), d("29012.00"))));
    assert!(spots.contains(&("kraken".to_owned(), Asset::new("BTC"), d("94998.10000"))));
    assert!(spots.iter().all(|(venue, _, _)| venue != "binance_us"));
    // Recorded in arrival order, so the replay's clock never runs backwards.
    assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
}
