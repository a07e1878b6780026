//! The shared market-data service: workers of several tenants read the
//! venues' public data through one service and one set of venue connections,
//! over a private `redis-server` on a unix socket.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{StrategiesConfig, Venue, parse_strategies};
use polybot_core::worker::FeedState;
use polybot_engine::{Event, EventKind};
use polybot_venues::Endpoints;
use polybot_worker::live::market_data::{CaBundle, MarketDataSettings, run_market_data};
use polybot_worker::{EventSource, LiveSettings, LiveSource};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

const TOPIC: &str = "spot:coinbase:BTC";
const CHANNEL: &str = "polybot:md:ev:spot:coinbase:BTC";
const SNAPSHOT: &str = "polybot:md:snap:spot:coinbase:BTC";

/// A private redis-server on a unix socket in its own directory, stopped on drop.
struct Redis {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping redis-server: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("reaping redis-server: {e}");
        }
    }
}

fn redis_server_binary() -> PathBuf {
    std::env::var_os("POLYBOT_REDIS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("redis-server"))
                    .find(|p| p.is_file())
            })
        })
        .expect("redis-server is installed (Debian: apt-get install redis-server; scripts/test installs it)")
}

async fn start_redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let child = std::process::Command::new(redis_server_binary())
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let url = format!("redis+unix://{}", socket.display());
    let redis = Redis {
        child,
        url,
        _dir: dir,
    };
    // Wait until it answers (a readiness check, bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut conn) = connect(&redis.url).await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return redis;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server answered before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// A Coinbase trade stream on loopback that counts its connections and
/// sends, on each, the BTC-USD trades the test publishes.
struct CoinbaseFeed {
    url: String,
    connections: Arc<AtomicUsize>,
    trades: broadcast::Sender<Decimal>,
}

async fn coinbase_feed() -> CoinbaseFeed {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let (trades, _) = broadcast::channel::<Decimal>(64);
    let counted = connections.clone();
    let sender = trades.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut prices = sender.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.to_text().is_ok_and(|t| t.contains("subscribe")) {
                        break;
                    }
                }
                let mut id = 0;
                while let Ok(price) = prices.recv().await {
                    id += 1;
                    let trade = json!({
                        "type": "match", "product_id": "BTC-USD", "trade_id": id,
                        "price": price.to_string(), "size": "0.01", "side": "sell",
                        "time": "2026-11-25T12:00:00Z"
                    });
                    if ws.send(Message::text(trade.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    CoinbaseFeed {
        url: format!("ws://{addr}"),
        connections,
        trades,
    }
}

fn strategies() -> StrategiesConfig {
    parse_strategies(&json!({
        "crypto_15m": {"assets": ["BTC"], "spot_venues": ["coinbase"], "scan_interval_secs": 60}
    }))
    .unwrap()
}

/// Venue settings: REST on a server that answers nothing (404), the
/// Coinbase stream on the stand-in.
fn venue_settings(rest: &MockServer, feed: &CoinbaseFeed) -> LiveSettings {
    let mut endpoints = Endpoints::all_at(&rest.uri());
    endpoints.coinbase_ws = feed.url.clone();
    let mut settings = LiveSettings::new(endpoints);
    settings.newsapi_url = rest.uri();
    settings
}

fn worker_settings(rest: &MockServer, feed: &CoinbaseFeed, redis: &Redis) -> LiveSettings {
    let mut settings = venue_settings(rest, feed);
    settings.market_data = Some(redis.url.clone().into());
    settings.market_data_every = Duration::from_millis(100);
    settings
}

/// Waits (bounded) until `channel` has `n` subscribers.
async fn until_subscribed(redis: &Redis, channel: &str, n: i64) {
    let mut conn = connect(&redis.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        if counts.first().map(|(_, c)| *c) == Some(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} subscribers on {channel} before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `source` has read its snapshots from the service.
async fn until_ready(source: &LiveSource) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while source.health().get("coinbase").map(|s| s.status) != Some(FeedState::Ok) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker subscribed before the deadline: {:?}",
            source.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spot prices from `source` until (and with) `last`.
async fn spot_prices_until(source: &mut LiveSource, last: Decimal) -> Vec<Decimal> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut prices = Vec::new();
    while prices.last() != Some(&last) {
        let event: Event = tokio::time::timeout_at(deadline, source.next_event())
            .await
            .expect("the price reached the engine before the deadline")
            .unwrap()
            .unwrap();
        if let EventKind::Spot(spot) = event.kind {
            prices.push(spot.price);
        }
    }
    prices
}

fn start_service(redis: &Redis, rest: &MockServer, feed: &CoinbaseFeed) -> CancellationToken {
    start_shard(redis, rest, feed, None)
}

/// A service publishing only `venues` (every venue with `None`).
fn start_shard(
    redis: &Redis,
    rest: &MockServer,
    feed: &CoinbaseFeed,
    venues: Option<Vec<Venue>>,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let settings = MarketDataSettings {
        redis_url: redis.url.clone().into(),
        redis_ca: None,
        venues,
        live: venue_settings(rest, feed),
        refresh_every: Duration::from_millis(50),
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        if let Err(e) = run_market_data(settings, stop).await {
            panic!("the market-data service failed: {e:#}");
        }
    });
    cancel
}

fn prices(range: std::ops::RangeInclusive<i64>) -> Vec<Decimal> {
    range.map(|i| Decimal::new(6_500_000 + i, 2)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_share_one_venue_connection_and_receive_the_same_events() {
    let redis = start_redis().await;
    let rest = MockServer::start().await;
    let feed = coinbase_feed().await;
    let service = start_service(&redis, &rest, &feed);
    let keys = ExchangeKeys::default();
    let mut a =
        LiveSource::start(worker_settings(&rest, &feed, &redis), &strategies(), &keys).unwrap();
    let mut b =
        LiveSource::start(worker_settings(&rest, &feed, &redis), &strategies(), &keys).unwrap();
    assert_eq!(a.describe(), "live data: shared market data");
    until_ready(&a).await;
    until_ready(&b).await;
    until_subscribed(&redis, CHANNEL, 2).await;
    // The service follows the union of both plans: one connection to the venue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while feed.connections.load(Ordering::SeqCst) == 0 || feed.trades.receiver_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service connected to the venue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = prices(1..=5);
    for price in &sent {
        feed.trades.send(*price).unwrap();
    }
    let last = *sent.last().unwrap();
    assert_eq!(spot_prices_until(&mut a, last).await, sent);
    assert_eq!(spot_prices_until(&mut b, last).await, sent);
    assert_eq!(feed.connections.load(Ordering::SeqCst), 1);
    // The service cannot read Polymarket (the stand-in answers 404): the
    // workers' heartbeats say so, with the service's error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let gamma = loop {
        let health = a.health();
        if let Some(status) = health.get("polymarket_gamma")
            && status.status == FeedState::Error
        {
            break status.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service's Polymarket failure reached the worker: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = gamma.last_error.unwrap();
    assert!(
        error.starts_with("the market-data service: ") && error.contains("404"),
        "{error}"
    );
    assert_eq!(a.health()["coinbase"].status, FeedState::Ok);
    service.cancel();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_does_not_hold_up_another_and_resyncs_from_the_snapshot() {
    let redis = start_redis().await;
    let rest = MockServer::start().await;
    let feed = coinbase_feed().await;
    let service = start_service(&redis, &rest, &feed);
    let keys = ExchangeKeys::default();
    // The slow worker's engine takes two events, then reads nothing.
    let mut slow_settings = worker_settings(&rest, &feed, &redis);
    slow_settings.channel_capacity = 2;
    let mut slow = LiveSource::start(slow_settings, &strategies(), &keys).unwrap();
    let mut fast =
        LiveSource::start(worker_settings(&rest, &feed, &redis), &strategies(), &keys).unwrap();
    until_ready(&slow).await;
    until_ready(&fast).await;
    until_subscribed(&redis, CHANNEL, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while feed.trades.receiver_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service connected to the venue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = prices(1..=10);
    for price in &sent {
        feed.trades.send(*price).unwrap();
    }
    // The fast worker has every update while the slow one has read none.
    assert_eq!(spot_prices_until(&mut fast, sent[9]).await, sent);
    // One more update: the slow worker, now reading, finds it dropped
    // updates and takes the latest state from the snapshot instead.
    let latest = prices(11..=11)[0];
    feed.trades.send(latest).unwrap();
    assert_eq!(spot_prices_until(&mut fast, latest).await, vec![latest]);
    assert_eq!(
        spot_prices_until(&mut slow, latest).await,
        vec![sent[0], sent[1], latest]
    );
    service.cancel();
    slow.shutdown().await;
    fast.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_makes_the_worker_resync_from_the_snapshot() {
    let redis = start_redis().await;
    let rest = MockServer::start().await;
    let feed = coinbase_feed().await;
    let mut conn = connect(&redis.url).await.unwrap();
    let line = |price: Decimal| {
        json!({"type": "spot", "ts": 1, "venue": "coinbase", "asset": "BTC", "price": price.to_string()})
            .to_string()
    };
    let p = prices(1..=5);
    // The service's state before the worker joins: seq 1, price 1.
    redis::pipe()
        .hset(SNAPSHOT, "1s:BTC", line(p[0]))
        .hset(SNAPSHOT, "_seq", 1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let mut worker = LiveSource::start(
        worker_settings(&rest, &feed, &redis),
        &strategies(),
        &ExchangeKeys::default(),
    )
    .unwrap();
    until_subscribed(&redis, CHANNEL, 1).await;
    assert_eq!(spot_prices_until(&mut worker, p[0]).await, vec![p[0]]);
    let publish = |seq: u64, price: Decimal| format!("{seq} {}", line(price));
    let _subscribers: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(publish(2, p[1]))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(spot_prices_until(&mut worker, p[1]).await, vec![p[1]]);
    // Updates 3 and 4 never reach the worker; the snapshot has 4.
    redis::pipe()
        .hset(SNAPSHOT, "1s:BTC", line(p[3]))
        .hset(SNAPSHOT, "_seq", 4)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let _subscribers: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(publish(5, p[4]))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        spot_prices_until(&mut worker, p[4]).await,
        vec![p[3], p[4]],
        "the gap is repaired from the snapshot ({TOPIC}), then the update applies"
    );
    worker.shutdown().await;
}

/// Waits (bounded) until the feeds' health in Redis satisfies `done`.
async fn until_health(
    redis: &Redis,
    done: impl Fn(&std::collections::BTreeMap<String, serde_json::Value>) -> bool,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut conn = connect(&redis.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg("polybot:md:health")
            .query_async(&mut conn)
            .await
            .unwrap();
        let health = fields
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
            .collect();
        if done(&health) {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shards' health before the deadline: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_each_publish_their_venues_and_a_worker_reads_both() {
    let redis = start_redis().await;
    // Each shard reaches the venues' REST APIs on a stand-in of its own,
    // so that what each one asked is told apart.
    let spot_rest = MockServer::start().await;
    let prediction_rest = MockServer::start().await;
    let feed = coinbase_feed().await;
    let spot_shard = start_shard(&redis, &spot_rest, &feed, Some(vec![Venue::Coinbase]));
    let prediction_shard = start_shard(
        &redis,
        &prediction_rest,
        &feed,
        Some(vec![Venue::Polymarket, Venue::Kalshi]),
    );
    // The 15-minute strategy needs Polymarket's windows and Coinbase's price:
    // one venue from each shard.
    let mut worker = LiveSource::start(
        worker_settings(&spot_rest, &feed, &redis),
        &strategies(),
        &ExchangeKeys::default(),
    )
    .unwrap();
    until_ready(&worker).await;
    until_subscribed(&redis, CHANNEL, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while feed.trades.receiver_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Coinbase shard connected to the venue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = prices(1..=3);
    for price in &sent {
        feed.trades.send(*price).unwrap();
    }
    assert_eq!(spot_prices_until(&mut worker, sent[2]).await, sent);
    // The Polymarket shard reads Polymarket (its stand-in answers 404) and
    // reports it; the Coinbase shard reports Coinbase; neither the other's.
    let health = until_health(&redis, |h| {
        h.get("polymarket_gamma")
            .is_some_and(|s| s["status"] == "error")
            && h.contains_key("coinbase")
    })
    .await;
    assert_eq!(
        health.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["coinbase", "polymarket_clob", "polymarket_gamma"]
    );
    assert_eq!(health["coinbase"]["status"], "ok");
    let asked: Vec<String> = prediction_rest
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(
        !asked.is_empty() && !asked.iter().any(|path| path.starts_with("/products/")),
        "the prediction shard asked Polymarket and Kalshi, not Coinbase: {asked:?}"
    );
    let asked: Vec<String> = spot_rest
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(
        asked.iter().all(|path| path.starts_with("/products/")),
        "the Coinbase shard asked Coinbase only, nothing of Polymarket or Kalshi: {asked:?}"
    );
    assert_eq!(
        feed.connections.load(Ordering::SeqCst),
        1,
        "only the Coinbase shard connected to Coinbase"
    );
    // The worker sees each venue as the shard serving it does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while worker.health().get("polymarket_gamma").map(|s| s.status) != Some(FeedState::Error) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Polymarket shard's failure reached the worker: {:?}",
            worker.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(worker.health()["coinbase"].status, FeedState::Ok);
    spot_shard.cancel();
    prediction_shard.cancel();
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shard_given_a_venue_another_serves_refuses_to_start_naming_it() {
    let redis = start_redis().await;
    let rest = MockServer::start().await;
    let feed = coinbase_feed().await;
    let first = start_shard(&redis, &rest, &feed, Some(vec![Venue::Coinbase]));
    until_claimed(&redis, "coinbase").await;
    let overlapping = MarketDataSettings {
        redis_url: redis.url.clone().into(),
        redis_ca: None,
        venues: Some(vec![Venue::Kraken, Venue::Coinbase]),
        live: venue_settings(&rest, &feed),
        refresh_every: Duration::from_millis(50),
    };
    let refused = run_market_data(overlapping, CancellationToken::new())
        .await
        .expect_err("a venue is served by one shard only");
    let message = format!("{refused:#}");
    assert!(
        message.contains("venue coinbase is already served by another market-data service"),
        "{message}"
    );
    // What the refused shard took on its way (Kraken) was given back.
    assert_eq!(owner(&redis, "kraken").await, None);
    // A shard that stops gives its venues back at once: the next one
    // claims Coinbase without waiting for the claim to lapse.
    first.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owner(&redis, "coinbase").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stopped shard released coinbase"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = start_shard(&redis, &rest, &feed, Some(vec![Venue::Coinbase]));
    until_claimed(&redis, "coinbase").await;
    next.cancel();
}

/// The instance holding `venue`'s claim, if any.
async fn owner(redis: &Redis, venue: &str) -> Option<String> {
    let mut conn = connect(&redis.url).await.unwrap();
    redis::AsyncCommands::get(&mut conn, format!("polybot:md:owner:{venue}"))
        .await
        .unwrap()
}

async fn until_claimed(redis: &Redis, venue: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owner(redis, venue).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a shard claimed {venue}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A throwaway CA and a certificate it signs for 127.0.0.1, written by the
/// openssl command-line tool into `dir`.
struct TestPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command-line tool runs (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn test_pki(dir: &std::path::Path, name: &str) -> TestPki {
    let file = |suffix: &str| format!("{name}-{suffix}");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    let (ca_key, ca, csr, key, cert, ext) = (
        file("ca.key"),
        file("ca.pem"),
        file("server.csr"),
        file("server.key"),
        file("server.pem"),
        file("ext"),
    );
    ca_args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "1", "-subj"]);
    let subject = format!("/CN={name} test CA");
    ca_args.push(&subject);
    openssl(dir, &ca_args);
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &csr_args);
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
    TestPki {
        ca: dir.join(ca),
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

/// A redis-server that speaks only TLS on a loopback port, with `pki`'s
/// certificate (clients are not asked for one).
async fn start_tls_redis(pki: &TestPki) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(redis_server_binary())
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let redis = Redis {
        child,
        url: format!("rediss://127.0.0.1:{port}"),
        _dir: dir,
    };
    let ca = CaBundle::read(&pki.ca).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let client =
            polybot_worker::live::market_data::redis_client(&redis.url, Some(&ca)).unwrap();
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return redis;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server answered over TLS before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_receives_market_data_over_tls_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path(), "right");
    let other = test_pki(dir.path(), "wrong");
    let redis = start_tls_redis(&pki).await;
    let right = CaBundle::read(&pki.ca).unwrap();
    let wrong = CaBundle::read(&other.ca).unwrap();
    let rest = MockServer::start().await;
    let feed = coinbase_feed().await;

    // The service, trusting the right CA, publishes over TLS.
    let cancel = CancellationToken::new();
    let service = MarketDataSettings {
        redis_url: redis.url.clone().into(),
        redis_ca: Some(right.clone()),
        venues: None,
        live: venue_settings(&rest, &feed),
        refresh_every: Duration::from_millis(50),
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        if let Err(e) = run_market_data(service, stop).await {
            panic!("the market-data service failed: {e:#}");
        }
    });
    let tls_settings = |ca: &CaBundle| {
        let mut settings = venue_settings(&rest, &feed);
        settings.market_data = Some(redis.url.clone().into());
        settings.market_data_ca = Some(ca.clone());
        settings.market_data_every = Duration::from_millis(100);
        settings
    };
    let keys = ExchangeKeys::default();
    let mut trusted = LiveSource::start(tls_settings(&right), &strategies(), &keys).unwrap();
    let refused = LiveSource::start(tls_settings(&wrong), &strategies(), &keys).unwrap();
    until_ready(&trusted).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while feed.trades.receiver_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service connected to the venue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = prices(1..=3);
    for price in &sent {
        feed.trades.send(*price).unwrap();
    }
    assert_eq!(spot_prices_until(&mut trusted, sent[2]).await, sent);

    // The worker trusting another CA never gets a connection, and says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.health().get("coinbase")
            && status.status == FeedState::Unreachable
        {
            break status.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused certificate reached the worker's health: {:?}",
            refused.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = status.last_error.unwrap();
    assert!(
        error.contains("over TLS")
            && error.contains(&other.ca.display().to_string())
            && error.contains("invalid peer certificate"),
        "{error}"
    );
    // The service refuses it the same way.
    let wrong_service = MarketDataSettings {
        redis_url: redis.url.clone().into(),
        redis_ca: Some(wrong.clone()),
        venues: None,
        live: venue_settings(&rest, &feed),
        refresh_every: Duration::from_millis(50),
    };
    let error = run_market_data(wrong_service, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
    // A CA bundle with a plain redis:// URL is refused, not ignored.
    let error =
        polybot_worker::live::market_data::redis_client("redis://127.0.0.1:1", Some(&right))
            .unwrap_err();
    assert!(error.contains("not rediss://"), "{error}");
    cancel.cancel();
    trusted.shutdown().await;
    refused.shutdown().await;
}
