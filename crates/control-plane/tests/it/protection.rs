//! Issue 16 #8: brute force and slow clients, against a served listener.
//! 1,000 wrong tokens used to cost 1,000 database transactions and never
//! see a 429; a client that sent half its headers held its connection forever.

use crate::common::{Harness, OPERATOR};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use polybot_control_plane::router;
use polybot_control_plane::serve::{Limits, serve};
use polybot_control_plane::throttle::{FAILURE_BUDGET, WINDOW};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn start(h: &Harness, limits: Limits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let app = router(h.state.clone());
    tokio::spawn(serve(listener, app, limits, stop.clone()));
    (addr, stop)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_thousand_wrong_tokens_get_429_after_the_budget_without_database_lookups(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (addr, stop) = start(&h, Limits::default()).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..1000 {
        let response = client
            .get(format!("http://{addr}/fleet"))
            .bearer_auth(format!("pbt_{i:08}-guess-0123456789abcdef0123456789"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (1..=WINDOW.as_secs()).contains(&retry),
                "Retry-After {retry}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
        statuses.push(status);
    }
    let budget = usize::try_from(FAILURE_BUDGET).unwrap();
    assert!(
        statuses[..budget]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
    assert!(
        statuses[budget..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
    // Only the budget's worth of guesses reached a token lookup.
    assert_eq!(h.state.throttle.lookups(), u64::from(FAILURE_BUDGET));
    // Liveness does not need a token and still answers.
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stop.cancel();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn one_token_prefix_tried_over_and_over_is_throttled_whatever_the_address(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    // Through the router without a listener: there is no client address at
    // all, so only the prefix budget can stop this.
    let h = Harness::new(pool_opts, options).await;
    for i in 0..FAILURE_BUDGET {
        let token = format!("pbt_SAMEPREFIX-{i}");
        let reply = h.call(Method::GET, "/fleet", Some(&token), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = h
        .call(Method::GET, "/fleet", Some("pbt_SAMEPREFIX-last"), None)
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.body["type"], "/problems/too-many-requests");
    assert!(reply.headers.contains_key("retry-after"));
    // Another prefix (the operator's) is not affected.
    let reply = h.call(Method::GET, "/fleet", Some(OPERATOR), None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_client_that_sends_half_its_headers_is_dropped_within_the_bound(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let limits = Limits {
        header_read: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, stop) = start(&h, limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the half-sent request's connection was still open after 10 s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "dropped only after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "dropped after {elapsed:?}"
    );
    // The server keeps serving others.
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stop.cancel();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_body_trickled_slower_than_the_request_bound_gets_a_408(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let limits = Limits {
        request: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, stop) = start(&h, limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
    stop.cancel();
}
