//! Polymarket execution through the official SDK against the CLOB stand-in:
//! orders built, signed and sent as the exchange expects them, what the
//! exchange refuses refused, and a retry after a timeout never doubles an
//! order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use polybot_venues::execution::polymarket::{
    AMOY, ApiCredentials, POLYGON, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{
    ClientOrderId, ExecError, ExecutionKind, Executor, Fence, MarketRules, NoFence, OrderRequest,
    OrderSide, OrderState, ShadowExecutor, TimeInForce,
};
use polybot_venues::testing::{ClobStandIn, Fault, StandInMarket};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use secrecy::SecretString;

/// Anvil's first test key and its address.
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

async fn stand_in(balance: Decimal) -> (ClobStandIn, PolymarketKeys, StandInMarket) {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, balance);
    let market = StandInMarket::binary(1);
    clob.list_market(market.clone());
    let keys = PolymarketKeys {
        private_key: SecretString::from(KEY),
        api: Some(ApiCredentials {
            api_key: SecretString::from(api_key),
            secret: SecretString::from(secret),
            passphrase: SecretString::from(passphrase),
        }),
    };
    (clob, keys, market)
}

fn settings(clob: &ClobStandIn, chain_id: u64) -> PolymarketSettings {
    PolymarketSettings {
        host: clob.url(),
        chain_id,
        timeout: Duration::from_millis(500),
    }
}

async fn executor(clob: &ClobStandIn, keys: &PolymarketKeys) -> PolymarketExecutor {
    PolymarketExecutor::connect(&settings(clob, POLYGON), keys, Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn buy(market: &StandInMarket, decision: u64, price: Decimal, size: Decimal) -> OrderRequest {
    OrderRequest {
        client_id: ClientOrderId::derive(&[9; 16], 1, decision),
        market: market.condition_id.clone(),
        instrument: market.tokens[0].clone(),
        side: OrderSide::Buy,
        price,
        size,
        time_in_force: TimeInForce::ImmediateOrCancel,
    }
}

async fn rules(exec: &PolymarketExecutor, market: &StandInMarket) -> MarketRules {
    exec.market_rules(&market.condition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_market_info_gives_the_rules_and_the_fee_parameters() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    assert_eq!(rules.tick_size, dec!(0.01));
    assert_eq!(rules.min_size, dec!(5));
    assert!(!rules.neg_risk);
    assert_eq!(rules.fees.rate, dec!(0.07));
    assert_eq!(rules.fees.exponent, 1);
    assert!(rules.fees.taker_only);
}

#[tokio::test]
async fn a_signed_order_is_accepted_and_filled_in_full() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(
        &market.tokens[0],
        &[(dec!(0.40), dec!(10)), (dec!(0.42), dec!(50))],
    );
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    let placed = exec
        .place(&buy(&market, 1, dec!(0.42), dec!(20)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::Filled);
    assert_eq!(placed.filled, dec!(20));
    assert!(!placed.recovered);
    assert_eq!(placed.fills.len(), 1);
    // 10 at 0.40 and 10 at 0.42: 8.2 for 20 shares.
    assert_eq!(placed.fills[0].price, dec!(0.41));
    assert_eq!(placed.fills[0].size, dec!(20));
    // 20 × 0.07 × 0.41 × 0.59 = 0.33866
    assert_eq!(placed.fills[0].fee, dec!(0.33866));
    assert_eq!(clob.position(ADDRESS, &market.tokens[0]), dec!(20));
    assert!(
        placed.wire.contains("\"orderType\":\"FAK\""),
        "{}",
        placed.wire
    );
    assert_eq!(clob.order_posts(), 1);
    // The same trades through REST polling, level by level.
    let fills = exec.fills(0).await.unwrap_or_else(|e| panic!("{e}"));
    let levels: Vec<(Decimal, Decimal, Decimal)> =
        fills.iter().map(|f| (f.price, f.size, f.fee)).collect();
    assert_eq!(
        levels,
        vec![
            (dec!(0.4), dec!(10), dec!(0.168)),
            (dec!(0.42), dec!(10), dec!(0.17052))
        ]
    );
    assert!(
        fills
            .iter()
            .all(|f| f.venue_order_id == placed.venue_order_id)
    );
}

#[tokio::test]
async fn an_immediate_or_cancel_order_fills_in_part_or_not_at_all() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(8))]);
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    let partial = exec
        .place(&buy(&market, 1, dec!(0.40), dec!(20)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(partial.state, OrderState::Closed);
    assert_eq!(partial.filled, dec!(8));
    let none = exec
        .place(&buy(&market, 2, dec!(0.40), dec!(20)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none.state, OrderState::Closed);
    assert_eq!(none.filled, dec!(0));
    assert!(none.fills.is_empty());
    assert!(clob.open_order_ids().is_empty());
}

#[tokio::test]
async fn a_resting_order_stays_open_until_cancelled() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    let mut order = buy(&market, 1, dec!(0.30), dec!(10));
    order.time_in_force = TimeInForce::GoodTillCancelled;
    let placed = exec
        .place(&order, &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::Open);
    let open = exec.open_orders().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].venue_order_id, placed.venue_order_id);
    assert_eq!(open[0].price, dec!(0.3));
    let cancelled = exec.cancel_all().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cancelled, vec![placed.venue_order_id.clone()]);
    assert!(
        exec.open_orders()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}

#[tokio::test]
async fn the_exchange_refuses_an_off_tick_price_an_undersized_order_and_too_little_money() {
    let (clob, keys, market) = stand_in(dec!(3)).await;
    let exec = executor(&clob, &keys).await;
    let truth = rules(&exec, &market).await;
    // Rules that say less than the exchange: the order goes out and is refused there.
    let lax = MarketRules {
        tick_size: dec!(0.001),
        min_size: dec!(1),
        ..truth.clone()
    };
    let off_tick = exec
        .place(&buy(&market, 1, dec!(0.305), dec!(5)), &lax)
        .await;
    assert!(
        matches!(&off_tick, Err(ExecError::Rejected { reason, .. }) if reason.contains("INVALID_ORDER_MIN_TICK_SIZE")),
        "{off_tick:?}"
    );
    let small = exec
        .place(&buy(&market, 2, dec!(0.30), dec!(2)), &lax)
        .await;
    assert!(
        matches!(&small, Err(ExecError::Rejected { reason, .. }) if reason.contains("INVALID_ORDER_MIN_SIZE")),
        "{small:?}"
    );
    let poor = exec
        .place(&buy(&market, 3, dec!(0.90), dec!(5)), &truth)
        .await;
    assert!(
        matches!(&poor, Err(ExecError::Rejected { reason, .. }) if reason.contains("not enough balance")),
        "{poor:?}"
    );
    // The true rules refuse the first two before anything is signed.
    let posts = clob.order_posts();
    assert!(matches!(
        exec.place(&buy(&market, 4, dec!(0.305), dec!(5)), &truth)
            .await,
        Err(ExecError::Rules { .. })
    ));
    assert!(matches!(
        exec.place(&buy(&market, 5, dec!(0.30), dec!(2)), &truth)
            .await,
        Err(ExecError::Rules { .. })
    ));
    assert_eq!(clob.order_posts(), posts);
    assert_eq!(clob.rejections().len(), 3);
}

#[tokio::test]
async fn an_order_signed_for_the_wrong_exchange_is_refused_as_a_bad_signature() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    // Signed for Amoy, sent to a Polygon exchange.
    let exec = PolymarketExecutor::connect(&settings(&clob, AMOY), &keys, Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = rules(&exec, &market).await;
    let result = exec
        .place(&buy(&market, 1, dec!(0.30), dec!(5)), &rules)
        .await;
    assert!(
        matches!(&result, Err(ExecError::Rejected { reason, .. }) if reason == "invalid signature"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_neg_risk_market_is_signed_for_the_neg_risk_exchange() {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, dec!(100));
    let mut market = StandInMarket::binary(2);
    market.neg_risk = true;
    clob.list_market(market.clone());
    clob.set_asks(&market.tokens[0], &[(dec!(0.5), dec!(100))]);
    let keys = PolymarketKeys {
        private_key: SecretString::from(KEY),
        api: Some(ApiCredentials {
            api_key: SecretString::from(api_key),
            secret: SecretString::from(secret),
            passphrase: SecretString::from(passphrase),
        }),
    };
    let exec = executor(&clob, &keys).await;
    let truth = rules(&exec, &market).await;
    assert!(truth.neg_risk);
    let placed = exec
        .place(&buy(&market, 1, dec!(0.5), dec!(5)), &truth)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.filled, dec!(5));
    let wrong = MarketRules {
        neg_risk: false,
        ..truth
    };
    let refused = exec
        .place(&buy(&market, 2, dec!(0.5), dec!(5)), &wrong)
        .await;
    assert!(
        matches!(&refused, Err(ExecError::Rejected { reason, .. }) if reason == "invalid signature"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_retry_after_a_timeout_finds_the_order_at_the_venue_and_sends_nothing_twice() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    clob.push_fault(Fault::AcceptThenStall(Duration::from_secs(3)));
    let order = buy(&market, 1, dec!(0.40), dec!(10));
    let first = exec.place(&order, &rules).await;
    assert!(
        matches!(&first, Err(e @ ExecError::InDoubt { .. }) if e.is_retryable()),
        "{first:?}"
    );
    let retry = exec
        .place(&order, &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(retry.recovered);
    assert_eq!(retry.state, OrderState::Filled);
    assert_eq!(retry.filled, dec!(10));
    // The fills come from the venue's record of the order.
    assert_eq!(retry.fills.len(), 1);
    assert_eq!(retry.fills[0].size, dec!(10));
    assert_eq!(retry.fills[0].price, dec!(0.4));
    assert_eq!(retry.fills[0].fee, dec!(0.168));
    assert_eq!(clob.order_posts(), 1);
    assert_eq!(clob.orders_taken(), 1);
    assert_eq!(clob.position(ADDRESS, &market.tokens[0]), dec!(10));
}

#[tokio::test]
async fn a_retry_after_a_refusal_to_take_the_order_sends_the_same_order_once() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    clob.push_fault(Fault::TooManyRequests {
        retry_after: Some(1),
    });
    clob.push_fault(Fault::TooManyRequests { retry_after: None });
    clob.push_fault(Fault::ServerError);
    let order = buy(&market, 1, dec!(0.40), dec!(10));
    let mut errors = Vec::new();
    let placed = loop {
        match exec.place(&order, &rules).await {
            Ok(placed) => break placed,
            Err(e) if e.is_retryable() => errors.push(e.to_string()),
            Err(e) => panic!("{e}"),
        }
        assert!(errors.len() <= 3, "{errors:?}");
    };
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("429"), "{errors:?}");
    assert!(errors[2].contains("500"), "{errors:?}");
    assert!(!placed.recovered);
    assert_eq!(placed.filled, dec!(10));
    assert_eq!(clob.order_posts(), 4);
    assert_eq!(clob.orders_taken(), 1);
}

/// A lease another worker took.
struct Lost(AtomicBool);

#[async_trait]
impl Fence for Lost {
    async fn check(&self) -> Result<(), ExecError> {
        if self.0.load(Ordering::SeqCst) {
            Err(ExecError::Fenced { epoch: 8 })
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_fenced_executor_sends_nothing() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    let fence = Arc::new(Lost(AtomicBool::new(true)));
    let exec = PolymarketExecutor::connect(&settings(&clob, POLYGON), &keys, fence)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = rules(&exec, &market).await;
    let result = exec
        .place(&buy(&market, 1, dec!(0.40), dec!(10)), &rules)
        .await;
    assert!(
        matches!(result, Err(ExecError::Fenced { epoch: 8 })),
        "{result:?}"
    );
    assert_eq!(clob.order_posts(), 0);
}

#[tokio::test]
async fn shadow_signs_what_it_would_send_and_sends_nothing() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    let shadow = ShadowExecutor::new(executor(&clob, &keys).await);
    assert_eq!(shadow.kind(), ExecutionKind::Shadow);
    let rules = shadow
        .market_rules(&market.condition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let placed = shadow
        .place(&buy(&market, 1, dec!(0.40), dec!(10)), &rules)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.state, OrderState::NotSent);
    assert!(placed.venue_order_id.starts_with("0x"));
    assert!(
        placed.wire.contains("\"signature\":\"0x"),
        "{}",
        placed.wire
    );
    assert_eq!(shadow.would_have_sent(), vec![placed]);
    assert!(matches!(
        shadow
            .place(&buy(&market, 2, dec!(0.405), dec!(10)), &rules)
            .await,
        Err(ExecError::Rules { .. })
    ));
    assert_eq!(clob.order_posts(), 0);
    assert_eq!(
        shadow.balances().await.unwrap_or_else(|e| panic!("{e}"))[0].amount,
        dec!(100)
    );
}

#[tokio::test]
async fn the_sdk_derives_api_keys_with_the_published_l1_signature() {
    let clob = ClobStandIn::start(AMOY).await;
    clob.open_account(ADDRESS, dec!(0));
    let keys = PolymarketKeys {
        private_key: SecretString::from(KEY),
        api: None,
    };
    // The published vector signs timestamp 10000000 with nonce 23 on Amoy;
    // the SDK signs with nonce 0 and the clock, so the stand-in checks the
    // signature by recovering its signer rather than by comparison.
    let exec = PolymarketExecutor::connect(&settings(&clob, AMOY), &keys, Arc::new(NoFence))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let headers = clob.last_l1_headers().unwrap_or_default();
    assert_eq!(
        headers
            .get("POLY_ADDRESS")
            .map(|a| a.to_lowercase())
            .as_deref(),
        Some("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    );
    assert_eq!(headers.get("POLY_NONCE").map(String::as_str), Some("0"));
    assert_eq!(exec.address(), ADDRESS);
    // The derived credentials work for L2 calls.
    assert_eq!(
        exec.balances().await.unwrap_or_else(|e| panic!("{e}"))[0].amount,
        dec!(0)
    );
}

#[tokio::test]
async fn the_sdk_signs_l1_exactly_as_the_published_vector() {
    use std::str::FromStr;

    use polymarket_client_sdk_v2::auth::{LocalSigner, Signer};
    use polymarket_client_sdk_v2::clob::{Client, Config};

    let clob = ClobStandIn::start(AMOY).await;
    clob.open_account(ADDRESS, dec!(0));
    clob.set_server_time(10_000_000);
    let signer = LocalSigner::<k256::ecdsa::SigningKey>::from_str(KEY)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_chain_id(Some(AMOY));
    let client = Client::new(&clob.url(), Config::builder().use_server_time(true).build())
        .unwrap_or_else(|e| panic!("{e}"));
    let authenticated = client
        .authentication_builder(&signer)
        .nonce(23)
        .authenticate()
        .await;
    assert!(authenticated.is_ok(), "{:?}", authenticated.err());
    let headers = clob.last_l1_headers().unwrap_or_default();
    assert_eq!(
        headers.get("POLY_SIGNATURE").map(String::as_str),
        Some(
            "0xf62319a987514da40e57e2f4d7529f7bac38f0355bd88bb5adbb3768d80de6c1682518e0af677d5260366425f4361e7b70c25ae232aff0ab2331e2b164a1aedc1b"
        )
    );
    assert_eq!(
        headers.get("POLY_TIMESTAMP").map(String::as_str),
        Some("10000000")
    );
    assert_eq!(headers.get("POLY_NONCE").map(String::as_str), Some("23"));
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn the_user_channel_reports_each_trade_of_ours_with_the_markets_fee() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_asks(
        &market.tokens[0],
        &[(dec!(0.40), dec!(6)), (dec!(0.41), dec!(10))],
    );
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    let mut channel = exec.user_channel(
        &clob.ws_url(),
        polybot_venues::execution::user_channel::UserChannelOptions::default(),
    );
    assert!(eventually(|| clob.user_channel_subscribers() == 1).await);
    assert!(channel.is_connected());

    let placed = exec
        .place(&buy(&market, 1, dec!(0.41), dec!(10)), &rules)
        .await
        .unwrap();
    assert_eq!(placed.trade_ids.len(), 2, "{placed:?}");

    // Two trades (two levels), each reported matched and then confirmed;
    // fees floored to five decimals: 4 × 0.07 × 0.41 × 0.59 = 0.067732.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let fill = tokio::time::timeout(Duration::from_secs(10), channel.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((
            fill.trade_id,
            fill.venue_order_id,
            fill.price,
            fill.size,
            fill.fee,
        ));
    }
    let id = &placed.venue_order_id;
    let first = (
        placed.trade_ids[0].clone(),
        id.clone(),
        dec!(0.4),
        dec!(6),
        dec!(0.1008),
    );
    let second = (
        placed.trade_ids[1].clone(),
        id.clone(),
        dec!(0.41),
        dec!(4),
        dec!(0.06773),
    );
    assert_eq!(seen, vec![first.clone(), first, second.clone(), second]);
    channel.shutdown().await;
}

#[tokio::test]
async fn a_user_channel_with_wrong_credentials_is_refused() {
    let (clob, keys, _market) = stand_in(dec!(100)).await;
    let exec = executor(&clob, &keys).await;
    let channel = polybot_venues::execution::user_channel::UserChannel::spawn(
        &clob.ws_url(),
        polybot_venues::execution::user_channel::UserChannelAuth {
            api_key: uuid::Uuid::nil().to_string(),
            secret: SecretString::from("bm9wZQ=="),
            passphrase: SecretString::from("nope"),
        },
        Default::default(),
        Default::default(),
    );
    assert!(eventually(|| clob.user_channel_refusals() >= 1).await);
    assert_eq!(clob.user_channel_subscribers(), 0);
    drop(exec);
    channel.shutdown().await;
}

#[tokio::test]
async fn when_an_accounts_heartbeats_stop_the_venue_cancels_its_open_orders() {
    let (clob, keys, market) = stand_in(dec!(100)).await;
    clob.set_heartbeat_timeout(Duration::from_millis(300));
    let exec = executor(&clob, &keys).await;
    let rules = rules(&exec, &market).await;
    let mut order = buy(&market, 1, dec!(0.30), dec!(10));
    order.time_in_force = TimeInForce::GoodTillCancelled;
    let placed = exec.place(&order, &rules).await.unwrap();
    let first = exec.heartbeat(None).await.unwrap();
    assert!(first.is_some());
    // The next heartbeat must carry the id the last one returned.
    let second = exec.heartbeat(first.clone()).await.unwrap();
    assert_ne!(second, first);
    assert!(matches!(
        exec.heartbeat(first).await,
        Err(ExecError::Venue(_))
    ));
    assert_eq!(clob.heartbeats_received(), 2);

    assert!(eventually(|| clob.open_order_ids().is_empty()).await);
    assert_eq!(clob.expired_orders(), vec![placed.venue_order_id]);
    assert_eq!(clob.cancel_all_requests(), 0);
}

#[tokio::test]
async fn the_user_channel_says_when_it_is_down_and_reconnects_when_the_venue_is_back() {
    let (clob, keys, _market) = stand_in(dec!(100)).await;
    let exec = executor(&clob, &keys).await;
    let channel = exec.user_channel(
        &clob.ws_url(),
        polybot_venues::execution::user_channel::UserChannelOptions {
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(100),
            ping_interval: Duration::from_secs(10),
        },
    );
    assert!(eventually(|| clob.user_channel_subscribers() == 1 && channel.is_connected()).await);

    clob.set_user_channel(false);
    assert!(eventually(|| !channel.is_connected()).await);
    assert_eq!(clob.user_channel_subscribers(), 0);

    clob.set_user_channel(true);
    assert!(eventually(|| clob.user_channel_subscribers() == 1 && channel.is_connected()).await);
    channel.shutdown().await;
}
