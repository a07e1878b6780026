//! Exchange keys are write-only: recognizable key values appear in no log
//! line (at debug level), no response body, and no table except as ciphertext.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use common::{Harness, OPERATOR, TEST_PEM};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const MARKERS: &[&str] = &[
    "LEAKCANARYBINANCEKEY",
    "LEAKCANARYBINANCESECRET",
    "LEAKCANARYALPACASECRET",
    "c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee01",
    "LEAKCANARYPASS",
];

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn key_values_appear_in_no_log_response_or_plaintext_column(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new(pool_opts, options).await;
    let mut bodies = Vec::new();
    let created = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({
                "name": "leaky",
                "exchange_keys": {
                    "binance_us": {"api_key": MARKERS[0], "secret_key": MARKERS[1]},
                    "alpaca": {"key_id": "AKID", "secret_key": MARKERS[2]},
                    "polymarket": {"private_key": format!("0x{}", MARKERS[3]), "api_key": "pm-key", "secret": "c2VjcmV0", "passphrase": MARKERS[4]},
                    "kalshi": {"key_id": "kalshi-id", "private_key_pem": TEST_PEM},
                }
            })),
        )
        .await;
    bodies.push(created.text.clone());
    let id = created.body["id"].as_str().unwrap().to_owned();
    h.wait_for_state(&id, "active").await;
    // A bad request that carries a key value must not echo it either.
    bodies.push(
        h.call(
            Method::PUT,
            &format!("/tenants/{id}/exchange-keys"),
            Some(OPERATOR),
            Some(json!({"binance_us": {"api_key": MARKERS[0], "secret": MARKERS[1]}})),
        )
        .await
        .text,
    );
    bodies.push(
        h.call(
            Method::PUT,
            &format!("/tenants/{id}/exchange-keys"),
            Some(OPERATOR),
            Some(json!({"binance_us": {"api_key": MARKERS[0], "secret_key": MARKERS[1]}})),
        )
        .await
        .text,
    );
    for uri in [
        format!("/tenants/{id}"),
        format!("/tenants/{id}/status"),
        "/tenants".to_owned(),
    ] {
        bodies.push(h.call(Method::GET, &uri, Some(OPERATOR), None).await.text);
    }
    bodies.push(
        h.call(
            Method::DELETE,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            None,
        )
        .await
        .text,
    );

    let pem_body: String = TEST_PEM.lines().nth(1).unwrap().to_owned();
    let mut needles: Vec<&str> = MARKERS.to_vec();
    needles.push(&pem_body);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("onboarding step done"),
        "debug logs were captured"
    );
    for needle in &needles {
        assert!(!logs.contains(needle), "a log line holds a key value");
        for body in &bodies {
            assert!(
                !body.contains(needle),
                "a response holds a key value: {body}"
            );
        }
    }

    // Every table, as text: the values are nowhere but inside ciphertext.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert!(tables.len() >= 14);
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                .fetch_all(&h.pool)
                .await
                .unwrap();
        for row in rows {
            for needle in &needles {
                assert!(
                    !row.contains(needle),
                    "{table} holds a key value in plaintext"
                );
            }
        }
    }
    let sealed = h
        .count("SELECT count(*) FROM tenant_secrets WHERE length(ciphertext) > 100")
        .await;
    assert_eq!(sealed, 1);
}
