//! Polymarket CLOB V2 execution through the exchange's official SDK
//! (`polymarket_client_sdk_v2`): the SDK builds each order (tick size,
//! lot size, the exchange version, neg-risk), signs it (EIP-712 on the CTF
//! exchange) and authenticates every private call (L2 HMAC headers; L1
//! `ClobAuth` to derive API keys when the tenant gave only a wallet key).
//!
//! What this module adds: the market's rules and fee parameters read once
//! from `GET /clob-markets/{condition_id}` (which also primes the SDK's
//! caches, so an order costs one request), a salt fixed by the order's
//! [`ClientOrderId`], the journal that makes a retry ask the venue before it
//! sends, the fence check before every send, and a timeout on every call
//! (the SDK's HTTP client has none).
//!
//! The executor also sends the venue's cancel-on-disconnect heartbeat
//! (`POST /v1/heartbeats`, [`Executor::heartbeat`]) and starts the user
//! channel with its credentials ([`PolymarketExecutor::user_channel`]).
//!
//! Not here: what to trade, or what to do with a fill (the worker books it).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use alloy_sol_types::{Eip712Domain, SolStruct};
use async_trait::async_trait;
use polymarket_client_sdk_v2::auth::state::Authenticated;
use polymarket_client_sdk_v2::auth::{Credentials, LocalSigner, Normal, Signer as _};
use polymarket_client_sdk_v2::clob::types::request::{
    BalanceAllowanceRequest, OrdersRequest, TradesRequest,
};
use polymarket_client_sdk_v2::clob::types::response::PostOrderResponse;
use polymarket_client_sdk_v2::clob::types::{
    AssetType, OrderPayload, OrderStatusType, OrderType, Side, SignedOrder,
};
use polymarket_client_sdk_v2::clob::{Client, Config};
use polymarket_client_sdk_v2::types::U256;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};

use super::user_channel::{UserChannel, UserChannelAuth, UserChannelOptions};
use super::{
    ClientOrderId, ExecError, ExecutionKind, Executor, FeeParams, Fence, MarketRules, OpenOrder,
    OrderRequest, OrderSide, OrderState, Placed, TimeInForce, VenueBalance, VenueFill,
    VenuePosition,
};
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// Polygon mainnet, where the exchange settles.
pub const POLYGON: u64 = polymarket_client_sdk_v2::POLYGON;
/// Polygon's Amoy testnet.
pub const AMOY: u64 = polymarket_client_sdk_v2::AMOY;
/// pUSD and the outcome tokens have 6 decimals on chain.
const TOKEN_DECIMALS: u32 = 6;

type SdkClient = Client<Authenticated<Normal>>;
type WalletSigner = LocalSigner<k256::ecdsa::SigningKey>;

tokio::task_local! {
    /// The salt of the order being built: the SDK takes a salt generator
    /// function, and the order's salt must come from its client id.
    static ORDER_SALT: u64;
}

fn salt_from_client_id() -> u64 {
    ORDER_SALT
        .try_with(|salt| *salt)
        .unwrap_or_else(|_| rand::random::<u64>() & ((1 << 53) - 1))
}

/// Where and how the executor talks to the CLOB.
#[derive(Debug, Clone)]
pub struct PolymarketSettings {
    /// The CLOB's base URL (`https://clob.polymarket.com`, or a stand-in).
    pub host: String,
    /// 137 (Polygon) or 80002 (Amoy).
    pub chain_id: u64,
    /// Longest wait for any one call.
    pub timeout: Duration,
}

impl Default for PolymarketSettings {
    fn default() -> Self {
        Self {
            host: "https://clob.polymarket.com".to_owned(),
            chain_id: POLYGON,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A tenant's Polymarket keys: the wallet key, and the CLOB API credentials
/// when the tenant has them (otherwise they are derived with an L1 signature).
pub struct PolymarketKeys {
    pub private_key: SecretString,
    pub api: Option<ApiCredentials>,
}

/// CLOB L2 credentials (their `Debug` shows none of them).
#[derive(Debug)]
pub struct ApiCredentials {
    pub api_key: SecretString,
    pub secret: SecretString,
    pub passphrase: SecretString,
}

impl std::fmt::Debug for PolymarketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolymarketKeys")
            .field("api_credentials", &self.api.is_some())
            .finish_non_exhaustive()
    }
}

/// What the executor remembers of an order it signed.
#[derive(Debug, Clone)]
struct Journaled {
    /// The order's EIP-712 hash: the venue's order id.
    hash: String,
    order: SignedOrderParts,
}

/// A signed order's parts: the SDK's `SignedOrder` is not `Clone`, and a
/// retry must send the very same order.
#[derive(Debug, Clone)]
struct SignedOrderParts {
    payload: OrderPayload,
    signature: polymarket_client_sdk_v2::clob::types::OrderSignature,
    order_type: OrderType,
    owner: uuid::Uuid,
    post_only: Option<bool>,
}

impl SignedOrderParts {
    fn of(order: &SignedOrder) -> Self {
        Self {
            payload: order.payload.clone(),
            signature: order.signature.clone(),
            order_type: order.order_type.clone(),
            owner: order.owner,
            post_only: order.post_only,
        }
    }

    fn to_signed(&self) -> SignedOrder {
        SignedOrder::builder()
            .payload(self.payload.clone())
            .signature(self.signature.clone())
            .order_type(self.order_type.clone())
            .owner(self.owner)
            .maybe_post_only(self.post_only)
            .build()
    }
}

/// Orders sent to Polymarket's CLOB with one tenant's keys.
pub struct PolymarketExecutor {
    client: SdkClient,
    signer: WalletSigner,
    chain_id: u64,
    timeout: Duration,
    fence: Arc<dyn Fence>,
    journal: Mutex<HashMap<ClientOrderId, Journaled>>,
    /// Markets whose rules the SDK's caches hold (shared with the user
    /// channel, which prices the fees of the fills it reports).
    rules: Arc<Mutex<HashMap<String, MarketRules>>>,
    /// Tokens whose positions [`Executor::positions`] reports.
    instruments: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for PolymarketExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolymarketExecutor")
            .field("host", &self.client.host().as_str())
            .field("address", &self.signer.address())
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

fn config_error(detail: impl Into<String>) -> VenueError {
    VenueError::new(
        Api::PolymarketClob,
        "execution",
        ErrorKind::Config {
            detail: detail.into(),
        },
    )
}

/// The SDK's error as ours: the endpoint, the status and the venue's text.
fn venue_error(endpoint: &str, err: &polymarket_client_sdk_v2::error::Error) -> VenueError {
    use polymarket_client_sdk_v2::error::{Kind, Status};
    if let Some(status) = err.downcast_ref::<Status>() {
        let code = status.status_code.as_u16();
        let kind = match code {
            429 => ErrorKind::RateLimited { retry_after: None },
            401 | 403 => ErrorKind::Unauthorized,
            500..=599 => ErrorKind::Server { attempts: 1 },
            _ => ErrorKind::Api {
                message: if status.message.is_empty() {
                    format!("HTTP {code}")
                } else {
                    status.message.clone()
                },
            },
        };
        return VenueError::new(
            Api::PolymarketClob,
            format!("{} {}", status.method, status.path),
            kind,
        )
        .with_status(code)
        .with_body(status.message.as_bytes());
    }
    let kind = match err.kind() {
        Kind::Validation => ErrorKind::Api {
            message: err.to_string(),
        },
        _ => ErrorKind::Unreachable {
            detail: err.to_string(),
        },
    };
    VenueError::new(Api::PolymarketClob, endpoint, kind)
}

/// The venue's own words for a refusal: `errorMsg` (or `error`) of its JSON
/// body, else the body, else the status.
fn refusal_reason(err: &polymarket_client_sdk_v2::error::Error, ours: &VenueError) -> String {
    let body = err
        .downcast_ref::<polymarket_client_sdk_v2::error::Status>()
        .map(|s| s.message.as_str())
        .unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    parsed
        .as_ref()
        .and_then(|v| v.get("errorMsg").or_else(|| v.get("error")))
        .and_then(serde_json::Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| ours.body_excerpt().map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {}", ours.status().unwrap_or_default()))
}

fn timeout_error(endpoint: &str, after: Duration) -> VenueError {
    VenueError::new(Api::PolymarketClob, endpoint, ErrorKind::Timeout { after })
}

fn is_not_found(err: &polymarket_client_sdk_v2::error::Error) -> bool {
    err.downcast_ref::<polymarket_client_sdk_v2::error::Status>()
        .is_some_and(|s| s.status_code.as_u16() == 404)
}

fn token_id(instrument: &str) -> Result<U256, VenueError> {
    U256::from_str(instrument)
        .map_err(|_| config_error(format!("token id {instrument:?} is not a decimal U256")))
}

fn side_of(side: Side) -> OrderSide {
    match side {
        Side::Sell => OrderSide::Sell,
        _ => OrderSide::Buy,
    }
}

/// The fee on `size` shares at `price`: `C·r·(p(1−p))^e`, floored to five
/// decimals as the venue's accounting does.
pub fn polymarket_fee(fees: &FeeParams, size: Decimal, price: Decimal) -> Decimal {
    let base = price * (Decimal::ONE - price);
    let mut factor = Decimal::ONE;
    for _ in 0..fees.exponent {
        factor *= base;
    }
    (size * fees.rate * factor)
        .round_dp_with_strategy(5, rust_decimal::RoundingStrategy::ToZero)
        .normalize()
}

impl PolymarketExecutor {
    /// Authenticates with the tenant's keys (deriving API credentials with an
    /// L1 signature when none were given). No order is sent.
    pub async fn connect(
        settings: &PolymarketSettings,
        keys: &PolymarketKeys,
        fence: Arc<dyn Fence>,
    ) -> Result<Self, VenueError> {
        let text = keys.private_key.expose_secret().trim();
        let signer = WalletSigner::from_str(text)
            .map_err(|_| config_error("the Polymarket wallet key is not a secp256k1 private key"))?
            .with_chain_id(Some(settings.chain_id));
        let client = Client::new(&settings.host, Config::default())
            .map_err(|e| config_error(format!("the CLOB URL {:?}: {e}", settings.host)))?;
        let builder = client
            .authentication_builder(&signer)
            .salt_generator(salt_from_client_id);
        let builder = match &keys.api {
            Some(api) => {
                let key = uuid::Uuid::parse_str(api.api_key.expose_secret().trim())
                    .map_err(|_| config_error("the Polymarket api_key is not a UUID"))?;
                builder.credentials(Credentials::new(
                    key,
                    api.secret.expose_secret().to_owned(),
                    api.passphrase.expose_secret().to_owned(),
                ))
            }
            None => builder,
        };
        let client = tokio::time::timeout(settings.timeout, builder.authenticate())
            .await
            .map_err(|_| timeout_error("GET /auth/derive-api-key", settings.timeout))?
            .map_err(|e| venue_error("authenticate", &e))?;
        Ok(Self {
            client,
            signer,
            chain_id: settings.chain_id,
            timeout: settings.timeout,
            fence,
            journal: Mutex::new(HashMap::new()),
            rules: Arc::new(Mutex::new(HashMap::new())),
            instruments: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// The wallet address orders are signed by.
    pub fn address(&self) -> String {
        self.signer.address().to_checksum(None)
    }

    /// Starts the user channel at `ws_base` (`wss://ws-subscriptions-clob.polymarket.com`)
    /// with this executor's L2 credentials (given or derived): the fills of
    /// the tenant's orders as the venue makes them.
    pub fn user_channel(&self, ws_base: &str, options: UserChannelOptions) -> UserChannel {
        let credentials = self.client.credentials();
        let auth = UserChannelAuth {
            api_key: credentials.key().to_string(),
            secret: SecretString::from(credentials.secret().expose_secret().to_owned()),
            passphrase: SecretString::from(credentials.passphrase().expose_secret().to_owned()),
        };
        UserChannel::spawn(ws_base, auth, self.rules.clone(), options)
    }

    async fn call<T>(
        &self,
        endpoint: &str,
        fut: impl Future<Output = polymarket_client_sdk_v2::Result<T>>,
    ) -> Result<T, VenueError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(venue_error(endpoint, &e)),
            Err(_) => Err(timeout_error(endpoint, self.timeout)),
        }
    }

    /// The market's rules and fees, read once from `GET /clob-markets/{id}`
    /// (which also fills the SDK's tick-size, neg-risk and fee caches).
    pub async fn fetch_market_rules(&self, condition_id: &str) -> Result<MarketRules, VenueError> {
        if let Some(rules) = self.lock_rules().get(condition_id) {
            return Ok(rules.clone());
        }
        let info = self
            .call(
                "GET /clob-markets/{condition_id}",
                self.client.clob_market_info(condition_id),
            )
            .await?;
        let fees = info.fee_details.as_ref().map_or(
            FeeParams {
                rate: Decimal::ZERO,
                exponent: 1,
                taker_only: true,
            },
            |fd| FeeParams {
                rate: fd.rate,
                exponent: fd.exponent,
                taker_only: fd.taker_only,
            },
        );
        let rules = MarketRules {
            tick_size: info.min_tick_size.as_decimal(),
            min_size: info.min_order_size,
            neg_risk: info.neg_risk,
            fees,
        };
        self.lock_rules()
            .insert(condition_id.to_owned(), rules.clone());
        Ok(rules)
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, HashMap<String, MarketRules>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_instruments(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.instruments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds tokens whose positions [`Executor::positions`] reports (the
    /// worker names those of the markets it trades, and those it found).
    pub fn watch_instruments(&self, instruments: impl IntoIterator<Item = String>) {
        self.lock_instruments().extend(instruments);
    }

    fn lock_journal(&self) -> std::sync::MutexGuard<'_, HashMap<ClientOrderId, Journaled>> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds and signs the order through the SDK, with the salt its client
    /// id fixes. Nothing is sent.
    pub async fn sign(
        &self,
        order: &OrderRequest,
        rules: &MarketRules,
    ) -> Result<(SignedOrder, String), ExecError> {
        rules.check(order).map_err(|violation| ExecError::Rules {
            market: order.market.clone(),
            violation,
        })?;
        let token = token_id(&order.instrument)?;
        // The SDK asks its caches first; these make sure it never asks the
        // network for what the market info already said.
        self.client
            .set_tick_size(token, tick_size(rules.tick_size)?);
        self.client.set_neg_risk(token, rules.neg_risk);
        let (order_type, expiration) = match order.time_in_force {
            TimeInForce::ImmediateOrCancel => (OrderType::FAK, None),
            TimeInForce::FillOrKill => (OrderType::FOK, None),
            TimeInForce::GoodTillCancelled => (OrderType::GTC, None),
            TimeInForce::GoodTillDate(at) => (
                OrderType::GTD,
                Some(
                    chrono::DateTime::from_timestamp(at, 0)
                        .ok_or_else(|| config_error(format!("expiry {at} is not a time")))?,
                ),
            ),
        };
        let mut builder = self
            .client
            .limit_order()
            .token_id(token)
            .side(match order.side {
                OrderSide::Buy => Side::Buy,
                OrderSide::Sell => Side::Sell,
            })
            .price(order.price)
            .size(order.size)
            .order_type(order_type);
        if let Some(at) = expiration {
            builder = builder.expiration(at);
        }
        let signable = ORDER_SALT
            .scope(order.client_id.salt(), async {
                self.call("build order", builder.build()).await
            })
            .await?;
        let signed = self
            .call("sign order", self.client.sign(&self.signer, signable))
            .await?;
        let hash = self.order_hash(&signed, rules.neg_risk)?;
        Ok((signed, hash))
    }

    /// The order's EIP-712 hash, which the venue uses as its id.
    fn order_hash(&self, signed: &SignedOrder, neg_risk: bool) -> Result<String, VenueError> {
        let (order, version, v3) = match &signed.payload {
            OrderPayload::V2(p) => (&p.order, "2", false),
            OrderPayload::V3(p) => (&p.order, "3", true),
            _ => {
                return Err(config_error(
                    "the CLOB asked for a V1 order; only V2 is supported",
                ));
            }
        };
        let config = polymarket_client_sdk_v2::contract_config(self.chain_id, neg_risk && !v3)
            .ok_or_else(|| {
                config_error(format!("no exchange contract for chain {}", self.chain_id))
            })?;
        let exchange = if v3 {
            config.exchange_v3
        } else {
            config.exchange_v2
        }
        .ok_or_else(|| {
            config_error(format!(
                "no V{version} exchange for chain {}",
                self.chain_id
            ))
        })?;
        let domain = order_domain(self.chain_id, version, exchange);
        Ok(order.eip712_signing_hash(&domain).to_string())
    }

    /// The venue's view of an order we may have sent: `None` when it has
    /// never seen it.
    async fn lookup(&self, hash: &str) -> Result<Option<Placed>, VenueError> {
        match tokio::time::timeout(self.timeout, self.client.order(hash)).await {
            Err(_) => Err(timeout_error("GET /data/order/{id}", self.timeout)),
            Ok(Err(e)) if is_not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(venue_error("GET /data/order/{id}", &e)),
            Ok(Ok(found)) => {
                let state = match found.status {
                    OrderStatusType::Live => OrderState::Open,
                    OrderStatusType::Matched => OrderState::Filled,
                    OrderStatusType::Delayed => OrderState::Pending,
                    _ => OrderState::Closed,
                };
                let mut fills = Vec::with_capacity(found.associate_trades.len());
                for trade_id in &found.associate_trades {
                    fills.extend(self.trade(trade_id, &found.id).await?);
                }
                Ok(Some(Placed {
                    client_id: ClientOrderId([0; 16]),
                    venue_order_id: found.id,
                    state,
                    filled: found.size_matched.normalize(),
                    trade_ids: fills.iter().map(|f| f.trade_id.clone()).collect(),
                    fills,
                    recovered: true,
                    wire: String::new(),
                }))
            }
        }
    }

    /// One of our trades, by id, with its fee from the market's parameters.
    async fn trade(&self, trade_id: &str, order_id: &str) -> Result<Vec<VenueFill>, VenueError> {
        let request = TradesRequest::builder().id(trade_id.to_owned()).build();
        let page = self
            .call("GET /data/trades", self.client.trades(&request, None))
            .await?;
        let rules = self.lock_rules().clone();
        Ok(page
            .data
            .into_iter()
            .map(|t| self.fill_of(&rules, t, Some(order_id)))
            .collect())
    }

    fn fill_of(
        &self,
        rules: &HashMap<String, MarketRules>,
        t: polymarket_client_sdk_v2::clob::types::response::TradeResponse,
        order_id: Option<&str>,
    ) -> VenueFill {
        let fees = rules
            .get(&t.market.to_string())
            .map(|r| r.fees)
            .unwrap_or(FeeParams {
                rate: t.fee_rate_bps / Decimal::from(10_000),
                exponent: 1,
                taker_only: true,
            });
        VenueFill {
            fee: polymarket_fee(&fees, t.size, t.price),
            venue_order_id: order_id.map_or(t.taker_order_id, str::to_owned),
            market: t.market.to_string(),
            trade_id: t.id,
            instrument: t.asset_id.to_string(),
            side: side_of(t.side),
            price: t.price.normalize(),
            size: t.size.normalize(),
            ts: t.match_time.timestamp_millis(),
        }
    }

    async fn send(
        &self,
        order: &OrderRequest,
        rules: &MarketRules,
        journaled: &Journaled,
    ) -> Result<Placed, ExecError> {
        self.fence.check().await?;
        let signed = journaled.order.to_signed();
        let wire = serde_json::to_string(&signed).unwrap_or_default();
        let response =
            match tokio::time::timeout(self.timeout, self.client.post_order(signed)).await {
                Err(_) => {
                    return Err(ExecError::InDoubt {
                        client_id: order.client_id,
                        source: timeout_error("POST /order", self.timeout),
                    });
                }
                Ok(Err(e)) => {
                    let err = venue_error("POST /order", &e);
                    return Err(match err.status() {
                        Some(400..=428 | 430..=499) => ExecError::Rejected {
                            venue: "polymarket",
                            client_id: order.client_id,
                            reason: refusal_reason(&e, &err),
                        },
                        // A 5xx or a dropped connection may come after the
                        // venue took the order.
                        Some(500..=599) | None => ExecError::InDoubt {
                            client_id: order.client_id,
                            source: err,
                        },
                        _ => ExecError::Venue(err),
                    });
                }
                Ok(Ok(response)) => response,
            };
        if !response.success {
            return Err(ExecError::Rejected {
                venue: "polymarket",
                client_id: order.client_id,
                reason: response
                    .error_msg
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("status {}", response.status)),
            });
        }
        Ok(placed_from(order, rules, &journaled.hash, response, wire))
    }
}

/// Balances come in the tokens' base units (6 decimals).
fn from_base_units(amount: Decimal) -> Decimal {
    (amount / Decimal::from(10u64.pow(TOKEN_DECIMALS))).normalize()
}

fn tick_size(tick: Decimal) -> Result<polymarket_client_sdk_v2::clob::types::TickSize, VenueError> {
    use polymarket_client_sdk_v2::clob::types::TickSize;
    [
        TickSize::Tenth,
        TickSize::Hundredth,
        TickSize::HalfCent,
        TickSize::QuarterCent,
        TickSize::Thousandth,
        TickSize::TenThousandth,
    ]
    .into_iter()
    .find(|t| t.as_decimal() == tick)
    .ok_or_else(|| config_error(format!("tick size {tick} is not one the CLOB uses")))
}

/// The EIP-712 domain orders are signed in (the exchange contract).
pub fn order_domain(
    chain_id: u64,
    version: &'static str,
    exchange: alloy_primitives::Address,
) -> Eip712Domain {
    Eip712Domain {
        name: Some("Polymarket CTF Exchange".into()),
        version: Some(version.into()),
        chain_id: Some(alloy_primitives::U256::from(chain_id)),
        verifying_contract: Some(exchange),
        salt: None::<B256>,
    }
}

fn placed_from(
    order: &OrderRequest,
    rules: &MarketRules,
    hash: &str,
    response: PostOrderResponse,
    wire: String,
) -> Placed {
    // Buying, the maker gives pUSD and takes shares; selling, the reverse.
    let (shares, cash) = match order.side {
        OrderSide::Buy => (response.taking_amount, response.making_amount),
        OrderSide::Sell => (response.making_amount, response.taking_amount),
    };
    let state = match response.status {
        OrderStatusType::Live => OrderState::Open,
        OrderStatusType::Delayed => OrderState::Pending,
        OrderStatusType::Matched if shares >= order.size => OrderState::Filled,
        _ => OrderState::Closed,
    };
    let mut fills = Vec::new();
    let trade_ids = response.trade_ids.clone();
    if shares > Decimal::ZERO {
        let price = (cash / shares).round_dp(TOKEN_DECIMALS).normalize();
        fills.push(VenueFill {
            trade_id: response
                .trade_ids
                .first()
                .cloned()
                .unwrap_or_else(|| response.order_id.clone()),
            venue_order_id: response.order_id.clone(),
            market: order.market.clone(),
            instrument: order.instrument.clone(),
            side: order.side,
            price,
            size: shares.normalize(),
            fee: polymarket_fee(&rules.fees, shares, price),
            ts: chrono::Utc::now().timestamp_millis(),
        });
    }
    let venue_order_id = if response.order_id.is_empty() {
        hash.to_owned()
    } else {
        response.order_id
    };
    Placed {
        client_id: order.client_id,
        venue_order_id,
        state,
        filled: shares.normalize(),
        fills,
        trade_ids,
        recovered: false,
        wire,
    }
}

#[async_trait]
impl Executor for PolymarketExecutor {
    fn kind(&self) -> ExecutionKind {
        ExecutionKind::Live
    }

    async fn market_rules(&self, market: &str) -> Result<MarketRules, ExecError> {
        Ok(self.fetch_market_rules(market).await?)
    }

    async fn place(&self, order: &OrderRequest, rules: &MarketRules) -> Result<Placed, ExecError> {
        let known = self.lock_journal().get(&order.client_id).cloned();
        let journaled = match known {
            // A retry: the venue may have the order already.
            Some(journaled) => {
                self.fence.check().await?;
                match self.lookup(&journaled.hash).await {
                    Ok(Some(mut found)) => {
                        found.client_id = order.client_id;
                        return Ok(found);
                    }
                    Ok(None) => journaled,
                    Err(source) => {
                        return Err(ExecError::InDoubt {
                            client_id: order.client_id,
                            source,
                        });
                    }
                }
            }
            None => {
                self.watch_instruments([order.instrument.clone()]);
                let (signed, hash) = self.sign(order, rules).await?;
                let journaled = Journaled {
                    hash,
                    order: SignedOrderParts::of(&signed),
                };
                self.lock_journal()
                    .insert(order.client_id, journaled.clone());
                journaled
            }
        };
        self.send(order, rules, &journaled).await
    }

    async fn find_order(&self, order: &OrderRequest) -> Result<Option<Placed>, ExecError> {
        let Some(journaled) = self.lock_journal().get(&order.client_id).cloned() else {
            // Never signed here: the venue cannot have it.
            return Ok(None);
        };
        Ok(self.lookup(&journaled.hash).await?.map(|mut found| {
            found.client_id = order.client_id;
            found.recovered = true;
            found
        }))
    }

    async fn cancel(&self, venue_order_id: &str) -> Result<(), ExecError> {
        self.fence.check().await?;
        let response = self
            .call("DELETE /order", self.client.cancel_order(venue_order_id))
            .await?;
        match response.not_canceled.get(venue_order_id) {
            Some(reason) => Err(ExecError::Rejected {
                venue: "polymarket",
                client_id: ClientOrderId([0; 16]),
                reason: format!("cancel of {venue_order_id}: {reason}"),
            }),
            None => Ok(()),
        }
    }

    async fn cancel_all(&self) -> Result<Vec<String>, ExecError> {
        // Cancelling is always allowed, fenced or not: it only takes risk off.
        let response = self
            .call("DELETE /cancel-all", self.client.cancel_all_orders())
            .await?;
        Ok(response.canceled)
    }

    async fn open_orders(&self) -> Result<Vec<OpenOrder>, ExecError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .call(
                    "GET /data/orders",
                    self.client
                        .orders(&OrdersRequest::default(), cursor.clone()),
                )
                .await?;
            out.extend(page.data.into_iter().map(|o| OpenOrder {
                venue_order_id: o.id,
                market: o.market.to_string(),
                instrument: o.asset_id.to_string(),
                side: side_of(o.side),
                price: o.price,
                size: o.original_size,
                filled: o.size_matched,
            }));
            if page.next_cursor.is_empty() || page.next_cursor == "LTE=" {
                break;
            }
            cursor = Some(page.next_cursor);
        }
        Ok(out)
    }

    async fn fills(&self, since_ms: i64) -> Result<Vec<VenueFill>, ExecError> {
        let request = TradesRequest::builder()
            .maker_address(self.signer.address())
            .after(since_ms / 1000)
            .build();
        let rules = self.lock_rules().clone();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .call(
                    "GET /data/trades",
                    self.client.trades(&request, cursor.clone()),
                )
                .await?;
            out.extend(page.data.into_iter().map(|t| self.fill_of(&rules, t, None)));
            // Tokens the tenant traded are those whose positions matter.
            self.watch_instruments(out.iter().map(|f| f.instrument.clone()));
            if page.next_cursor.is_empty() || page.next_cursor == "LTE=" {
                break;
            }
            cursor = Some(page.next_cursor);
        }
        Ok(out)
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ExecError> {
        // The CLOB reports a conditional token's balance one token at a
        // time: those of interest are the ones this executor was told of.
        let instruments: Vec<String> = self.lock_instruments().iter().cloned().collect();
        let mut out = Vec::with_capacity(instruments.len());
        for instrument in instruments {
            let request = BalanceAllowanceRequest::builder()
                .asset_type(AssetType::Conditional)
                .token_id(token_id(&instrument)?)
                .build();
            let response = self
                .call(
                    "GET /balance-allowance",
                    self.client.balance_allowance(request),
                )
                .await?;
            let size = from_base_units(response.balance);
            if !size.is_zero() {
                out.push(VenuePosition { instrument, size });
            }
        }
        Ok(out)
    }

    async fn heartbeat(&self, previous: Option<String>) -> Result<Option<String>, ExecError> {
        let previous = previous.and_then(|id| uuid::Uuid::parse_str(&id).ok());
        let response = self
            .call("POST /v1/heartbeats", self.client.post_heartbeat(previous))
            .await?;
        if let Some(error) = response.error.filter(|e| !e.is_empty()) {
            return Err(ExecError::Venue(VenueError::new(
                Api::PolymarketClob,
                "POST /v1/heartbeats",
                ErrorKind::Api { message: error },
            )));
        }
        Ok(Some(response.heartbeat_id.to_string()))
    }

    async fn balances(&self) -> Result<Vec<VenueBalance>, ExecError> {
        let request = BalanceAllowanceRequest::builder()
            .asset_type(AssetType::Collateral)
            .build();
        let response = self
            .call(
                "GET /balance-allowance",
                self.client.balance_allowance(request),
            )
            .await?;
        Ok(vec![VenueBalance {
            asset: "pUSD".to_owned(),
            amount: from_base_units(response.balance),
        }])
    }
}
