//! Binance US spot market data (`/api/v3`), with the request-weight limiter
//! sized from `exchangeInfo.rateLimits` at start, and the signed
//! `GET /api/v3/account`. The same client on Binance global's URL exists only
//! so `doctor` and the worker can explain its geo-block (HTTP 451).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::endpoints::Endpoints;
use crate::error::VenueError;
use crate::http::{ClientOptions, HttpClient, Request};
use crate::model::{Api, Level, OrderBook, Ticker};
use crate::num::Dec;
use crate::ratelimit::{RateLimiter, limits};
use crate::signing::binance::{BinanceCredentials, headers, signed_query};

/// One entry of `exchangeInfo.rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinanceRateLimit {
    /// `REQUEST_WEIGHT`, `ORDERS` or `RAW_REQUESTS`.
    pub rate_limit_type: String,
    /// `SECOND`, `MINUTE` or `DAY`.
    pub interval: String,
    /// Number of intervals.
    pub interval_num: u32,
    /// The limit over that window.
    pub limit: u32,
}

impl BinanceRateLimit {
    /// The window length.
    pub fn window(&self) -> Option<Duration> {
        let unit = match self.interval.as_str() {
            "SECOND" => 1,
            "MINUTE" => 60,
            "HOUR" => 3_600,
            "DAY" => 86_400,
            _ => return None,
        };
        Some(Duration::from_secs(
            unit * u64::from(self.interval_num.max(1)),
        ))
    }
}

/// One symbol of `exchangeInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinanceSymbol {
    /// e.g. `BTCUSD`.
    pub symbol: String,
    /// `TRADING`, `BREAK`, …
    pub status: String,
    /// e.g. `BTC`.
    pub base_asset: String,
    /// e.g. `USD`.
    pub quote_asset: String,
}

/// The parts of `exchangeInfo` the platform uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    /// Server time (ms).
    #[serde(default)]
    pub server_time: Option<i64>,
    /// Rate limits in force.
    #[serde(default)]
    pub rate_limits: Vec<BinanceRateLimit>,
    /// Symbols.
    #[serde(default)]
    pub symbols: Vec<BinanceSymbol>,
}

/// A best bid/offer from `ticker/bookTicker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookTicker {
    /// Symbol.
    pub symbol: String,
    /// Best bid.
    pub bid: Level,
    /// Best ask.
    pub ask: Level,
}

/// One asset balance from `/api/v3/account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Asset.
    pub asset: String,
    /// Available.
    pub free: Decimal,
    /// In orders.
    pub locked: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DepthWire {
    last_update_id: Option<u64>,
    bids: Vec<(Dec, Dec)>,
    asks: Vec<(Dec, Dec)>,
}

#[derive(Debug, Deserialize)]
struct PriceWire {
    symbol: String,
    price: Dec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookTickerWire {
    symbol: String,
    bid_price: Dec,
    bid_qty: Dec,
    ask_price: Dec,
    ask_qty: Dec,
}

#[derive(Debug, Deserialize)]
struct BalanceWire {
    asset: String,
    free: Dec,
    locked: Dec,
}

#[derive(Debug, Deserialize)]
struct AccountWire {
    balances: Vec<BalanceWire>,
}

/// Request weight of `/api/v3/depth` by `limit` (1/5/10/50).
pub fn depth_weight(limit: u32) -> u32 {
    match limit {
        0..=100 => 1,
        101..=500 => 5,
        501..=1000 => 10,
        _ => 50,
    }
}

/// Binance US (or, for diagnosis only, Binance global) spot client.
#[derive(Debug)]
pub struct Binance {
    http: HttpClient,
    weight: RateLimiter,
    orders: RateLimiter,
    recv_window_ms: u32,
    used_weight: AtomicU32,
}

impl Binance {
    /// Binance US on `endpoints.binance_us`.
    pub fn us(endpoints: &Endpoints, options: &ClientOptions) -> Result<Self, VenueError> {
        Self::at(Api::BinanceUs, &endpoints.binance_us, options)
    }

    /// Binance global on `endpoints.binance`; from US hosts it answers 451.
    pub fn global(endpoints: &Endpoints, options: &ClientOptions) -> Result<Self, VenueError> {
        Self::at(Api::Binance, &endpoints.binance, options)
    }

    fn at(api: Api, base: &str, options: &ClientOptions) -> Result<Self, VenueError> {
        Ok(Self {
            http: HttpClient::new(api, base, options)?,
            weight: limits::binance_weight(),
            orders: limits::binance_orders(),
            recv_window_ms: 5_000,
            used_weight: AtomicU32::new(0),
        })
    }

    /// Sends, records `X-MBX-USED-WEIGHT-1M`, decodes.
    async fn call<T: DeserializeOwned>(&self, req: &Request<'_>) -> Result<T, VenueError> {
        let response = self.http.send(req).await?;
        let used = response
            .headers
            .get("x-mbx-used-weight-1m")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(used) = used {
            self.used_weight.store(used, Ordering::Relaxed);
        }
        self.http.decode(&req.endpoint(), &response.body)
    }

    /// The request weight the venue last reported as used this minute
    /// (`X-MBX-USED-WEIGHT-1M`), 0 before any response.
    pub fn used_weight(&self) -> u32 {
        self.used_weight.load(Ordering::Relaxed)
    }

    /// The weight limiter (for inspection).
    pub fn weight_limiter(&self) -> &RateLimiter {
        &self.weight
    }

    /// `GET /api/v3/exchangeInfo`.
    pub async fn exchange_info(&self) -> Result<ExchangeInfo, VenueError> {
        let req = Request::get("/api/v3/exchangeInfo").limit(&self.weight, 10);
        self.call(&req).await
    }

    /// Fetches `exchangeInfo` and sizes the weight and order limiters from
    /// its `rateLimits` (the shortest window of each type). Returns them.
    pub async fn init_rate_limits(&self) -> Result<Vec<BinanceRateLimit>, VenueError> {
        let info = self.exchange_info().await?;
        self.apply_rate_limits(&info.rate_limits);
        Ok(info.rate_limits)
    }

    /// Sizes the limiters from `rateLimits` entries.
    pub fn apply_rate_limits(&self, rate_limits: &[BinanceRateLimit]) {
        for (kind, limiter) in [("REQUEST_WEIGHT", &self.weight), ("ORDERS", &self.orders)] {
            let shortest = rate_limits
                .iter()
                .filter(|r| r.rate_limit_type == kind)
                .filter_map(|r| Some((r.window()?, r.limit)))
                .min_by_key(|(window, _)| *window);
            if let Some((window, limit)) = shortest {
                limiter.set_limit(limit, window, limit);
            }
        }
    }

    /// `GET /api/v3/ping`.
    pub async fn ping(&self) -> Result<(), VenueError> {
        let req = Request::get("/api/v3/ping").limit(&self.weight, 1);
        self.call::<serde_json::Value>(&req).await.map(|_| ())
    }

    /// `GET /api/v3/depth`, sorted best-first.
    pub async fn depth(&self, symbol: &str, limit: u32) -> Result<OrderBook, VenueError> {
        let req = Request::get("/api/v3/depth")
            .query("symbol", symbol)
            .query("limit", limit)
            .limit(&self.weight, depth_weight(limit));
        let wire: DepthWire = self.call(&req).await?;
        let levels = |v: Vec<(Dec, Dec)>| {
            v.into_iter()
                .map(|(p, q)| Level::new(p.0, q.0))
                .collect::<Vec<_>>()
        };
        let mut book = OrderBook::new(
            self.http.api(),
            symbol,
            levels(wire.bids),
            levels(wire.asks),
        );
        book.sequence = wire.last_update_id;
        Ok(book)
    }

    /// `GET /api/v3/ticker/price`.
    pub async fn ticker_price(&self, symbol: &str) -> Result<Ticker, VenueError> {
        let req = Request::get("/api/v3/ticker/price")
            .query("symbol", symbol)
            .limit(&self.weight, 1);
        let wire: PriceWire = self.call(&req).await?;
        Ok(Ticker {
            api: self.http.api(),
            symbol: wire.symbol,
            last: wire.price.0,
            bid: None,
            ask: None,
            timestamp: None,
        })
    }

    /// `GET /api/v3/ticker/bookTicker`.
    pub async fn book_ticker(&self, symbol: &str) -> Result<BookTicker, VenueError> {
        let req = Request::get("/api/v3/ticker/bookTicker")
            .query("symbol", symbol)
            .limit(&self.weight, 1);
        let wire: BookTickerWire = self.call(&req).await?;
        Ok(BookTicker {
            symbol: wire.symbol,
            bid: Level::new(wire.bid_price.0, wire.bid_qty.0),
            ask: Level::new(wire.ask_price.0, wire.ask_qty.0),
        })
    }

    /// Signed `GET /api/v3/account`: non-zero balances.
    pub async fn balances(&self, creds: &BinanceCredentials) -> Result<Vec<Balance>, VenueError> {
        let query = format!(
            "recvWindow={}&timestamp={}",
            self.recv_window_ms,
            Utc::now().timestamp_millis()
        );
        let mut req = Request::get("/api/v3/account")
            .limit(&self.weight, 10)
            .idempotent(false);
        req.raw_query = Some(signed_query(creds, &query));
        req.auth = Some(headers(creds));
        let wire: AccountWire = self.call(&req).await?;
        Ok(wire
            .balances
            .into_iter()
            .map(|b| Balance {
                asset: b.asset,
                free: b.free.0,
                locked: b.locked.0,
            })
            .filter(|b| !(b.free.is_zero() && b.locked.is_zero()))
            .collect())
    }

    /// The order-count limiter, for order placement (not implemented here yet).
    pub fn orders_limiter(&self) -> &RateLimiter {
        &self.orders
    }
}
