//! `polybot doctor` and `polybot cost` as an operator runs them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;

/// A loopback server: paths under /ok answer 200, /geo 451, /keys 401.
fn mock_venues() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = if path.starts_with("/geo") {
                (
                    "451 Unavailable For Legal Reasons",
                    r#"{"code":0,"msg":"Service unavailable from a restricted location"}"#,
                )
            } else if path.starts_with("/keys") {
                ("401 Unauthorized", r#"{"message":"forbidden"}"#)
            } else {
                ("200 OK", r#"{"error":[],"result":{"status":"online"}}"#)
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(err) = stream.write_all(response.as_bytes()) {
                eprintln!("mock venue: {err}");
            }
        }
    });
    addr
}

#[test]
fn doctor_reports_geo_blocks_missing_keys_and_unreachable_venues() {
    let addr = mock_venues();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["doctor", "--json", "--timeout", "2", "--data-dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("POLYBOT_URL")
        .env("POLYBOT_POLYMARKET_GAMMA_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_POLYMARKET_CLOB_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_KALSHI_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_BINANCE_US_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_BINANCE_URL", format!("http://{addr}/geo"))
        .env("POLYBOT_COINBASE_URL", "http://127.0.0.1:9")
        .env("POLYBOT_KRAKEN_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_ALPACA_DATA_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_ALPACA_TRADING_URL", format!("http://{addr}/keys"))
        .env("POLYBOT_IBKR_GATEWAY_ADDR", "127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let rows = doc["venues"]["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["venue_name"] == name)
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
    };
    assert_eq!(row("Binance US")["status"], "ok");
    assert_eq!(row("Binance global")["status"], "geo_blocked");
    assert!(
        row("Binance global")["fix"]
            .as_str()
            .unwrap()
            .contains("Binance US")
    );
    assert_eq!(row("Alpaca trading")["status"], "needs_keys");
    assert_eq!(row("Coinbase")["status"], "unreachable");
    assert!(
        row("IBKR gateway")["fix"]
            .as_str()
            .unwrap()
            .contains("gateway")
    );
    let platform: Vec<(&str, &str)> = doc["platform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["component"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        platform,
        vec![
            ("database", "ok"),
            ("secret store", "ok"),
            ("launcher", "ok")
        ]
    );
}

#[test]
fn doctors_text_fits_100_columns_and_checks_a_running_instance() {
    let addr = mock_venues();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["doctor", "--timeout", "2", "--data-dir"])
        .arg(dir.path())
        .args(["--url", &format!("http://{addr}")])
        .env_remove("DATABASE_URL")
        .env("POLYBOT_TOKEN", "pbo_doctor-test-token")
        .env("POLYBOT_POLYMARKET_GAMMA_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_POLYMARKET_CLOB_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_KALSHI_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_BINANCE_US_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_BINANCE_URL", format!("http://{addr}/geo"))
        .env("POLYBOT_COINBASE_URL", "http://127.0.0.1:9")
        .env("POLYBOT_KRAKEN_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_ALPACA_DATA_URL", format!("http://{addr}/ok"))
        .env("POLYBOT_ALPACA_TRADING_URL", format!("http://{addr}/keys"))
        .env("POLYBOT_IBKR_GATEWAY_ADDR", "127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in stdout.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    // The geo-block's fix is there, wrapped under its venue.
    assert!(stdout.contains("Binance global"), "{stdout}");
    assert!(stdout.contains("    fix: "), "{stdout}");
    // The running instance: ready, and its (empty) fleet read with the token.
    let instance = stdout
        .lines()
        .find(|l| l.starts_with("instance "))
        .unwrap_or_else(|| panic!("no instance check in:\n{stdout}"));
    assert!(instance.contains(" ok"), "{instance}");
    assert!(stdout.contains("0 tenants; 0 of 0 workers"), "{stdout}");
}

#[test]
fn cost_prints_the_estimate_and_flags_a_fargate_size_aws_does_not_offer() {
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["cost", "--tenants", "25", "--tenants", "100", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let estimates: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(estimates[0]["total_usd"], "327.94");
    assert_eq!(estimates[0]["per_tenant_usd"], "13.12");
    assert_eq!(estimates.as_array().unwrap().len(), 2);

    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["cost", "--tenants", "25", "--worker-memory", "256"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("256 MB is not a valid Fargate memory size"),
        "{text}"
    );
}
