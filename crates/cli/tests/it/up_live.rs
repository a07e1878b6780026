//! Live trading through `polybot up` (issue 18), nothing reaching a real
//! venue: the workers play a recording (`--replay`) whose market the CLOB
//! stand-in lists; a tenant onboarded with Polymarket keys is switched to
//! live by the operator, with the acknowledgement and a preflight that reads
//! the stand-in's balance; the opportunity in the recording becomes signed
//! orders the stand-in fills, and the API's trades, positions and PnL are
//! those fills. A shadow tenant sends nothing; the kill switch cancels a live
//! tenant's resting orders without a restart; a live worker picks up an order
//! an earlier run left open and books its fill as `carried`. With the Kalshi
//! stand-in too, a cross-venue pair runs as one two-leg pair and the API's
//! paired-position ledger shows it locked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use polybot_venues::execution::polymarket::{
    ApiCredentials, POLYGON, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{
    ClientOrderId, Executor, NoFence, OrderRequest, OrderSide, TimeInForce,
};
use polybot_venues::testing::{ClobStandIn, Fault, KalshiStandIn, StandInMarket};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Anvil's first test key and its address.
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const ACKNOWLEDGEMENT: &str = "I understand real orders will be sent";

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A decimal field of an API answer.
fn money(value: &Value) -> Decimal {
    d(value
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {value}")))
}

/// The stand-in's market, recorded: YES asks 0.40 and NO asks 0.55 for 100
/// shares each, a complement arbitrage of 100 sets.
fn recording(dir: &Path, market: &StandInMarket) -> PathBuf {
    recording_of(dir, market, true)
}

/// The stand-in's market, with its books when `with_books` (without them no
/// strategy trades).
fn recording_of(dir: &Path, market: &StandInMarket, with_books: bool) -> PathBuf {
    let mut lines = vec![json!({
        "type": "market", "ts": 1_777_467_540_000_i64, "market": "pm-eth-5k",
        "venue": "polymarket", "outcomes": ["Yes", "No"], "fee_rate": "0.07",
        "question": "ETH above 5000 on Friday?",
        "condition_id": market.condition_id, "tokens": market.tokens,
    })];
    if with_books {
        lines.push(
            json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": "pm-eth-5k",
                   "outcome": "Yes", "bids": [["0.36", "50"]], "asks": [["0.40", "100"]]}),
        );
        lines.push(
            json!({"type": "book", "ts": 1_777_467_551_000_i64, "market": "pm-eth-5k",
                   "outcome": "No", "bids": [["0.50", "100"]], "asks": [["0.55", "100"]]}),
        );
    }
    let path = dir.join("recording.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

/// A started `polybot up`, stopped (SIGTERM, then reaped) when dropped.
struct Up {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Err(err) = signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM) {
            eprintln!("could not stop polybot up: {err}");
        }
        for _ in 0..600 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(err) = self.child.kill() {
            eprintln!("could not kill polybot up: {err}");
        }
        if let Err(err) = self.child.wait() {
            eprintln!("could not reap polybot up: {err}");
        }
    }
}

/// `polybot up --replay <recording>` with the venues' CLOB at `clob`.
fn start(data_dir: &Path, replay: &Path, clob: &ClobStandIn) -> Up {
    start_with(data_dir, replay, clob, None)
}

/// [`start`], with Kalshi's trade API at `kalshi` when given.
fn start_with(
    data_dir: &Path,
    replay: &Path,
    clob: &ClobStandIn,
    kalshi: Option<&KalshiStandIn>,
) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_polybot"));
    if let Some(kalshi) = kalshi {
        command.env("POLYBOT_KALSHI_URL", kalshi.url());
    }
    let mut child = command
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--replay")
        .arg(replay)
        .env_remove("DATABASE_URL")
        .env_remove("POLYBOT_PAPER_BALANCES")
        .env_remove("POLYBOT_REPLAY")
        .env("POLYBOT_REPLAY_SPEED", "max")
        .env("POLYBOT_HEARTBEAT_SECS", "0.5")
        .env(
            "POLYBOT_POLYMARKET_CLOB_URL",
            clob.url().trim_end_matches('/'),
        )
        .env("POLYBOT_POLYMARKET_WS_URL", clob.ws_url())
        .env("POLYBOT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("polybot starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(line.clone());
            if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
                let addr = rest.split('/').next().unwrap().to_owned();
                let token = std::fs::read_to_string(data_dir.join("operator-token"))
                    .unwrap()
                    .trim()
                    .to_owned();
                // Keep draining the log so that the child never blocks on stderr.
                std::thread::spawn(move || {
                    while let Ok(line) = rx.recv() {
                        eprintln!("{line}");
                    }
                });
                return Up {
                    child,
                    base: format!("http://{addr}"),
                    token,
                };
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("polybot up --replay never came up:\n{}", log.join("\n"));
}

impl Up {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut request = client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Polls `path` every 100 ms until `done` holds of its answer or 60 s pass.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never got there: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn up_replay_a_tenant_switched_to_live_trades_through_the_venue_and_its_pnl_is_the_fills() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clob = ClobStandIn::start(POLYGON).await;
        let (api_key, secret, passphrase) = clob.open_account(ADDRESS, d("1000"));
        let market = StandInMarket::binary(1);
        clob.list_market(market.clone());
        clob.set_asks(&market.tokens[0], &[(d("0.40"), d("100"))]);
        clob.set_asks(&market.tokens[1], &[(d("0.55"), d("100"))]);
        let dir = tempfile::tempdir().unwrap();
        let replay = recording(dir.path(), &market);
        let up = start(&dir.path().join("data"), &replay, &clob);

        // Onboarded in paper with the kill switch on, so that its first
        // (paper) pass over the recording trades nothing.
        let (status, tenant) = up
            .call(
                reqwest::Method::POST,
                "/tenants",
                Some(json!({
                    "name": "live-up",
                    "strategies": {"complement_arb": {"venues": ["polymarket"]}},
                    "risk": {"kill_switch": true},
                    "exchange_keys": {"polymarket": {
                        "private_key": KEY, "api_key": api_key,
                        "secret": secret, "passphrase": passphrase,
                    }},
                })),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        let id = tenant["id"].as_str().unwrap().to_owned();
        assert_eq!(tenant["mode"], "paper");
        up.wait_for(&format!("/tenants/{id}/opportunities"), |page| {
            page["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        })
        .await;
        assert_eq!(clob.order_posts(), 0, "a paper tenant sends nothing");
        // The venue takes the first order but answers after the worker's
        // 5 s timeout: the retry asks the venue first and finds it.
        clob.push_fault(Fault::AcceptThenStall(Duration::from_secs(7)));

        let (status, switched) = up
            .call(
                reqwest::Method::PATCH,
                &format!("/tenants/{id}"),
                Some(json!({
                    "mode": "live",
                    "live_acknowledgement": ACKNOWLEDGEMENT,
                    "risk": {"kill_switch": false},
                })),
            )
            .await;
        assert_eq!(status, 200, "{switched}");
        assert_eq!(switched["mode"], "live");

        let trades = up
            .wait_for(&format!("/tenants/{id}/trades"), |page| {
                page["items"]
                    .as_array()
                    .is_some_and(|items| items.len() >= 2)
            })
            .await;

        // The stand-in took two orders signed by the tenant's key (it
        // recovers each order's signer) and filled them in full; the one
        // whose answer timed out was found, not sent again.
        assert_eq!(clob.order_posts(), 2, "{:?}", clob.rejections());
        assert_eq!(clob.orders_taken(), 2);
        let opportunities = up.get(&format!("/tenants/{id}/opportunities")).await;
        let recovered: Vec<Value> = opportunities["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["details"]["orders"].as_array())
            .flatten()
            .map(|order| order["recovered"].clone())
            .collect();
        assert_eq!(recovered, [json!(true), json!(false)], "{opportunities}");
        assert_eq!(clob.position(ADDRESS, &market.tokens[0]), d("100"));
        assert_eq!(clob.position(ADDRESS, &market.tokens[1]), d("100"));
        // 1000 − 95 − 3.4125, and the cash the tenant is shown is the venue's.
        assert_eq!(clob.balance(ADDRESS), d("901.5875"));
        let polymarket_cash = |page: &Value| {
            page["items"].as_array().and_then(|items| {
                items
                    .iter()
                    .find(|b| b["venue"] == "polymarket")
                    .map(|b| money(&b["amount"]))
            })
        };
        let balances = up
            .wait_for(&format!("/tenants/{id}/balances"), |page| {
                polymarket_cash(page) == Some(d("901.5875"))
            })
            .await;
        assert_eq!(polymarket_cash(&balances), Some(d("901.5875")));

        // 100 × 0.07 × p × (1 − p) per leg.
        let mut seen: Vec<(String, String, Decimal, Decimal, Decimal, String)> = trades["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["market"].as_str().unwrap().to_owned(),
                    t["outcome"].as_str().unwrap_or_default().to_owned(),
                    money(&t["price"]),
                    money(&t["size"]),
                    money(&t["fee"]),
                    t["mode"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort_by(|a, b| b.1.cmp(&a.1));
        let leg = |outcome: &str, price: &str, fee: &str| {
            (
                "pm-eth-5k".to_owned(),
                outcome.to_owned(),
                d(price),
                d("100"),
                d(fee),
                "live".to_owned(),
            )
        };
        assert_eq!(
            seen,
            [leg("Yes", "0.40", "1.68"), leg("No", "0.55", "1.7325")]
        );

        // Positions and PnL follow from those fills: 100 of each outcome at
        // the fill prices, the fills' fees, and two trades.
        let pnl = up
            .wait_for(&format!("/tenants/{id}/pnl"), |pnl| {
                pnl["trades"] == 2 && pnl["positions"].as_array().is_some_and(|p| p.len() == 2)
            })
            .await;
        assert_eq!(money(&pnl["trades_fees"]), d("3.4125"), "{pnl}");
        assert_eq!(money(&pnl["fees"]), d("3.4125"), "{pnl}");
        let mut positions: Vec<(String, String, Decimal, Decimal)> = pnl["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["market"].as_str().unwrap().to_owned(),
                    p["outcome"].as_str().unwrap().to_owned(),
                    money(&p["quantity"]),
                    money(&p["avg_price"]),
                )
            })
            .collect();
        positions.sort_by(|a, b| b.1.cmp(&a.1));
        assert_eq!(
            positions,
            [
                (
                    "pm-eth-5k".to_owned(),
                    "Yes".to_owned(),
                    d("100"),
                    d("0.40")
                ),
                ("pm-eth-5k".to_owned(), "No".to_owned(), d("100"), d("0.55")),
            ],
            "{pnl}"
        );
        drop(up);
    });
}

/// Polls `check` every 100 ms until it holds or 60 s pass; returns whether it held.
async fn eventually(check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

/// The stand-in with one account and the recording's market at its prices.
fn stand_in_market(clob: &ClobStandIn) -> ((String, String, String), StandInMarket) {
    let credentials = clob.open_account(ADDRESS, d("1000"));
    let market = StandInMarket::binary(1);
    clob.list_market(market.clone());
    clob.set_asks(&market.tokens[0], &[(d("0.40"), d("100"))]);
    clob.set_asks(&market.tokens[1], &[(d("0.55"), d("100"))]);
    (credentials, market)
}

/// Onboards a paper tenant trading complement arbitrage on Polymarket with
/// the stand-in account's keys; returns its id.
async fn onboard(
    up: &Up,
    name: &str,
    credentials: &(String, String, String),
    risk: Value,
) -> String {
    let (api_key, secret, passphrase) = credentials;
    let (status, tenant) = up
        .call(
            reqwest::Method::POST,
            "/tenants",
            Some(json!({
                "name": name,
                "strategies": {"complement_arb": {"venues": ["polymarket"]}},
                "risk": risk,
                "exchange_keys": {"polymarket": {
                    "private_key": KEY, "api_key": api_key,
                    "secret": secret, "passphrase": passphrase,
                }},
            })),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["mode"], "paper");
    tenant["id"].as_str().unwrap().to_owned()
}

async fn patch(up: &Up, id: &str, body: Value) -> Value {
    let (status, answer) = up
        .call(
            reqwest::Method::PATCH,
            &format!("/tenants/{id}"),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn up_replay_a_shadow_tenant_sends_nothing_and_the_kill_switch_cancels_a_live_tenants_resting_orders()
 {
    runtime().block_on(async {
        let clob = ClobStandIn::start(POLYGON).await;
        let (credentials, market) = stand_in_market(&clob);
        let dir = tempfile::tempdir().unwrap();
        let replay = recording(dir.path(), &market);
        let up = start(&dir.path().join("data"), &replay, &clob);
        let id = onboard(&up, "shadow-up", &credentials, json!({"kill_switch": true})).await;

        // Shadow: the opportunity's two orders are signed and recorded, none sent.
        let shadow = patch(
            &up,
            &id,
            json!({"mode": "shadow", "risk": {"kill_switch": false}}),
        )
        .await;
        assert_eq!(shadow["mode"], "shadow");
        let signed = |page: &Value| {
            page["items"].as_array().and_then(|items| {
                items.iter().find_map(|o| {
                    let orders = o["details"]["orders"].as_array()?;
                    Some(
                        orders
                            .iter()
                            .map(|x| x["state"].clone())
                            .collect::<Vec<_>>(),
                    )
                })
            })
        };
        let opportunities = up
            .wait_for(&format!("/tenants/{id}/opportunities"), |page| {
                signed(page).is_some()
            })
            .await;
        assert_eq!(
            signed(&opportunities),
            Some(vec![json!("not_sent"), json!("not_sent")]),
            "{opportunities}"
        );
        assert_eq!(clob.order_posts(), 0, "shadow sends nothing");
        let trades = up.get(&format!("/tenants/{id}/trades")).await;
        assert_eq!(trades["items"], json!([]), "{trades}");

        // Live, with the venue holding both orders: they rest, unfilled.
        clob.hold_matching(true);
        let live = patch(
            &up,
            &id,
            json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT}),
        )
        .await;
        assert_eq!(live["mode"], "live");
        assert!(
            eventually(|| clob.held_order_ids().len() == 2).await,
            "both legs rest at the venue: {:?}",
            clob.rejections()
        );
        let resting = clob.open_order_ids();
        assert_eq!(resting.len(), 2);
        let worker = |status: &Value| status["worker"]["instance_id"].clone();
        let before = up
            .wait_for(&format!("/tenants/{id}/status"), |s| !worker(s).is_null())
            .await;

        // The kill switch, without a restart: every resting order cancelled.
        patch(&up, &id, json!({"risk": {"kill_switch": true}})).await;
        assert!(
            eventually(|| clob.open_order_ids().is_empty()).await,
            "still resting: {:?}",
            clob.open_order_ids()
        );
        assert!(clob.cancel_all_requests() >= 1);
        let after = up.get(&format!("/tenants/{id}/status")).await;
        assert_eq!(worker(&after), worker(&before), "the same worker: {after}");
        assert_eq!(clob.order_posts(), 2, "nothing sent again");
        assert_eq!(clob.balance(ADDRESS), d("1000"), "nothing filled");
        let trades = up.get(&format!("/tenants/{id}/trades")).await;
        assert_eq!(trades["items"], json!([]), "{trades}");
        drop(up);
    });
}

#[test]
fn up_replay_a_live_worker_picks_up_the_order_an_earlier_run_left_open_and_books_its_fill_as_carried()
 {
    runtime().block_on(async {
        let clob = ClobStandIn::start(POLYGON).await;
        let (credentials, market) = stand_in_market(&clob);
        // An earlier run left 10 YES up to 0.45 with the venue, unmatched.
        clob.hold_matching(true);
        let (api_key, secret, passphrase) = credentials.clone();
        let earlier = PolymarketExecutor::connect(
            &PolymarketSettings {
                host: clob.url(),
                chain_id: POLYGON,
                timeout: Duration::from_secs(5),
            },
            &PolymarketKeys {
                private_key: SecretString::from(KEY),
                api: Some(ApiCredentials {
                    api_key: SecretString::from(api_key),
                    secret: SecretString::from(secret),
                    passphrase: SecretString::from(passphrase),
                }),
            },
            Arc::new(NoFence),
        )
        .await
        .unwrap();
        let rules = earlier.market_rules(&market.condition_id).await.unwrap();
        let left = earlier
            .place(
                &OrderRequest {
                    client_id: ClientOrderId::derive(&[9; 16], 1, 1),
                    market: market.condition_id.clone(),
                    instrument: market.tokens[0].clone(),
                    side: OrderSide::Buy,
                    price: d("0.45"),
                    size: d("10"),
                    time_in_force: TimeInForce::GoodTillCancelled,
                },
                &rules,
            )
            .await
            .unwrap();
        assert_eq!(clob.held_order_ids(), vec![left.venue_order_id.clone()]);
        // No books: the strategy itself trades nothing.
        let dir = tempfile::tempdir().unwrap();
        let replay = recording_of(dir.path(), &market, false);
        let up = start(&dir.path().join("data"), &replay, &clob);
        let id = onboard(&up, "restart-up", &credentials, json!({})).await;
        patch(
            &up,
            &id,
            json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT}),
        )
        .await;
        // A live worker sends its first venue heartbeat once it has
        // reconciled with the venue (and found the order).
        assert!(eventually(|| clob.heartbeats_received() >= 1).await);

        // The venue matches it now: 10 at the 0.40 ask.
        assert_eq!(clob.release_held().len(), 1);
        let trades = up
            .wait_for(&format!("/tenants/{id}/trades"), |page| {
                page["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty())
            })
            .await;
        let items = trades["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{trades}");
        let trade = &items[0];
        assert_eq!(trade["strategy"], "carried", "{trade}");
        assert_eq!(trade["mode"], "live", "{trade}");
        assert_eq!(
            (
                money(&trade["price"]),
                money(&trade["size"]),
                money(&trade["fee"])
            ),
            (d("0.40"), d("10"), d("0.168")),
            "{trade}"
        );
        // The carried row in the per-strategy figures, and its position.
        let carried = |pnl: &Value| {
            pnl["by_strategy"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["strategy"] == "carried").cloned())
        };
        let pnl = up
            .wait_for(&format!("/tenants/{id}/pnl"), |pnl| {
                carried(pnl).is_some_and(|c| !c["unrealized"].is_null())
                    && pnl["positions"].as_array().is_some_and(|p| p.len() == 1)
            })
            .await;
        let row = carried(&pnl).unwrap();
        assert_eq!(row["trades"], 1, "{pnl}");
        assert_eq!(money(&row["fees"]), d("0.168"), "{pnl}");
        assert_eq!(money(&row["realized"]), d("0"), "{pnl}");
        let position = &pnl["positions"][0];
        assert_eq!(position["strategy"], "carried", "{pnl}");
        assert_eq!(position["outcome"], "Yes", "{pnl}");
        assert_eq!(money(&position["quantity"]), d("10"), "{pnl}");
        assert_eq!(clob.order_posts(), 1, "the worker sent nothing");
        drop(up);
    });
}

const KALSHI_PEM: &str = include_str!("../../../venues/tests/fixtures/kalshi_test_key_pkcs8.pem");
const KALSHI_KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";
const TICKER: &str = "KXETHD-26JAN01-T5000";

/// The two venues' markets of one pair (same resolution source and close):
/// YES on Polymarket at 0.40 and NO on Kalshi at 0.50.
fn pair_recording(dir: &Path, market: &StandInMarket) -> PathBuf {
    let source = "https://www.cfbenchmarks.com/data/indices/ETHUSD_RTI";
    let closes = 1_777_500_000_000_i64;
    let lines = [
        json!({
            "type": "market", "ts": 1_777_467_540_000_i64, "market": "pm-eth-5k",
            "venue": "polymarket", "outcomes": ["Yes", "No"], "fee_rate": "0.07",
            "question": "ETH above 5000?", "resolution_source": source, "closes_at": closes,
            "condition_id": market.condition_id, "tokens": market.tokens,
        }),
        json!({
            "type": "market", "ts": 1_777_467_540_000_i64, "market": TICKER, "venue": "kalshi",
            "outcomes": ["Yes", "No"], "fee_rate": "0.07", "question": "ETH above 5000?",
            "resolution_source": source, "closes_at": closes,
        }),
        json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": "pm-eth-5k",
               "outcome": "Yes", "bids": [["0.38", "100"]], "asks": [["0.40", "100"]]}),
        json!({"type": "book", "ts": 1_777_467_550_100_i64, "market": "pm-eth-5k",
               "outcome": "No", "bids": [["0.25", "100"]], "asks": [["0.70", "100"]]}),
        json!({"type": "book", "ts": 1_777_467_550_200_i64, "market": TICKER,
               "outcome": "No", "bids": [["0.45", "100"]], "asks": []}),
        json!({"type": "book", "ts": 1_777_467_550_300_i64, "market": TICKER,
               "outcome": "Yes", "bids": [["0.50", "100"]], "asks": []}),
    ];
    let path = dir.join("pair.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

#[test]
fn up_replay_a_live_tenant_with_both_venues_runs_a_cross_venue_pair_and_lists_it_locked() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clob = ClobStandIn::start(POLYGON).await;
        let (api_key, secret, passphrase) = clob.open_account(ADDRESS, d("1000"));
        let market = StandInMarket::binary(3);
        clob.list_market(market.clone());
        clob.set_asks(&market.tokens[0], &[(d("0.40"), d("100"))]);
        clob.set_asks(&market.tokens[1], &[(d("0.70"), d("100"))]);
        let kalshi = KalshiStandIn::start().await;
        kalshi.open_account_for_private_key(KALSHI_KEY_ID, KALSHI_PEM, d("1000"));
        kalshi.list_market(TICKER);
        kalshi.set_book(TICKER, &[(d("0.50"), d("100"))], &[(d("0.45"), d("100"))]);
        let dir = tempfile::tempdir().unwrap();
        let replay = pair_recording(dir.path(), &market);
        let up = start_with(&dir.path().join("data"), &replay, &clob, Some(&kalshi));

        let (status, tenant) = up
            .call(
                reqwest::Method::POST,
                "/tenants",
                Some(json!({
                    "name": "pair-up",
                    "strategies": {"cross_venue_arb": {
                        "match_recurring_crypto": false,
                        "pairs": [{"polymarket": "pm-eth-5k", "kalshi": TICKER}],
                    }},
                    "risk": {"kill_switch": true},
                    "exchange_keys": {
                        "polymarket": {
                            "private_key": KEY, "api_key": api_key,
                            "secret": secret, "passphrase": passphrase,
                        },
                        "kalshi": {"key_id": KALSHI_KEY_ID, "private_key_pem": KALSHI_PEM},
                    },
                })),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        let id = tenant["id"].as_str().unwrap().to_owned();
        let (status, switched) = up
            .call(
                reqwest::Method::PATCH,
                &format!("/tenants/{id}"),
                Some(json!({
                    "mode": "live",
                    "live_acknowledgement": ACKNOWLEDGEMENT,
                    "risk": {"kill_switch": false},
                })),
            )
            .await;
        assert_eq!(status, 200, "{switched}");

        let pairs = up
            .wait_for(&format!("/tenants/{id}/pairs"), |page| {
                page["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|p| p["status"] != "open"))
            })
            .await;
        let pair = &pairs["items"][0];
        assert_eq!(pair["status"], "locked", "{pair}");
        assert_eq!(money(&pair["matched"]), d("100"));
        // 100 × (1 − 0.4168 − 0.5175).
        assert_eq!(money(&pair["locked_edge"]), d("6.57"));
        assert_eq!(pair["legs"][0]["venue"], "polymarket");
        assert_eq!(pair["legs"][1]["venue"], "kalshi");
        assert_eq!(clob.position(ADDRESS, &market.tokens[0]), d("100"));
        assert_eq!(kalshi.position(KALSHI_KEY_ID, TICKER), d("-100"));
        assert_eq!(kalshi.order_creates(), 1);
        drop(up);
    });
}

#[test]
fn up_refuses_a_replay_that_is_missing_or_not_a_recording_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_recording = dir.path().join("notes.txt");
    std::fs::write(&not_a_recording, "buy low, sell high\n").unwrap();
    for file in [dir.path().join("missing.jsonl"), not_a_recording] {
        let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--replay")
            .arg(&file)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("--replay {}", file.display())),
            "{stderr}"
        );
        assert!(
            !dir.path().join("data/postgres").exists(),
            "refused before any database was started"
        );
    }
}
