//! Alpaca: crypto market data (`/v1beta3/crypto/us`, whose prices are JSON
//! numbers, parsed exactly from their text) and the trading API's account
//! check, which needs the key headers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::endpoints::Endpoints;
use crate::error::VenueError;
use crate::http::{ClientOptions, HttpClient, Request};
use crate::model::{Api, Level, OrderBook, Side, Trade};
use crate::num::Dec;
use crate::ratelimit::{RateLimiter, limits};
use crate::signing::alpaca::{AlpacaCredentials, headers};

#[derive(Debug, Deserialize)]
struct LevelWire {
    p: Dec,
    s: Dec,
}

#[derive(Debug, Deserialize)]
struct BookWire {
    #[serde(default)]
    a: Vec<LevelWire>,
    #[serde(default)]
    b: Vec<LevelWire>,
    #[serde(default)]
    t: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct BooksWire {
    orderbooks: BTreeMap<String, BookWire>,
}

#[derive(Debug, Deserialize)]
struct TradeWire {
    p: Dec,
    s: Dec,
    #[serde(default)]
    t: Option<DateTime<Utc>>,
    #[serde(default)]
    i: Option<u64>,
    #[serde(default)]
    tks: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TradesWire {
    trades: BTreeMap<String, TradeWire>,
}

/// Alpaca market data + trading account check.
#[derive(Debug)]
pub struct Alpaca {
    data: HttpClient,
    trading: HttpClient,
    limiter: RateLimiter,
}

impl Alpaca {
    /// A client on `endpoints.alpaca_data` and `endpoints.alpaca_trading`.
    pub fn new(endpoints: &Endpoints, options: &ClientOptions) -> Result<Self, VenueError> {
        Ok(Self {
            data: HttpClient::new(Api::AlpacaData, &endpoints.alpaca_data, options)?,
            trading: HttpClient::new(Api::AlpacaTrading, &endpoints.alpaca_trading, options)?,
            limiter: limits::alpaca(),
        })
    }

    /// Latest crypto order books for `symbols` (e.g. `BTC/USD`), best-first.
    pub async fn latest_orderbooks(
        &self,
        symbols: &[&str],
        creds: Option<&AlpacaCredentials>,
    ) -> Result<Vec<OrderBook>, VenueError> {
        let mut req = Request::get("/v1beta3/crypto/us/latest/orderbooks")
            .query("symbols", symbols.join(","))
            .limit(&self.limiter, 1);
        req.auth = creds.map(headers);
        let wire: BooksWire = self.data.json(&req).await?;
        let levels = |v: Vec<LevelWire>| {
            v.into_iter()
                .map(|l| Level::new(l.p.0, l.s.0))
                .collect::<Vec<_>>()
        };
        Ok(wire
            .orderbooks
            .into_iter()
            .map(|(symbol, b)| {
                let mut book = OrderBook::new(Api::AlpacaData, symbol, levels(b.b), levels(b.a));
                book.timestamp = b.t;
                book
            })
            .collect())
    }

    /// Latest crypto trades for `symbols`.
    pub async fn latest_trades(
        &self,
        symbols: &[&str],
        creds: Option<&AlpacaCredentials>,
    ) -> Result<Vec<Trade>, VenueError> {
        let mut req = Request::get("/v1beta3/crypto/us/latest/trades")
            .query("symbols", symbols.join(","))
            .limit(&self.limiter, 1);
        req.auth = creds.map(headers);
        let wire: TradesWire = self.data.json(&req).await?;
        Ok(wire
            .trades
            .into_iter()
            .map(|(symbol, t)| Trade {
                api: Api::AlpacaData,
                symbol,
                trade_id: t.i.map(|i| i.to_string()),
                price: t.p.0,
                size: t.s.0,
                side: match t.tks.as_deref() {
                    Some("B") => Some(Side::Buy),
                    Some("S") => Some(Side::Sell),
                    _ => None,
                },
                timestamp: t.t,
            })
            .collect())
    }

    /// `GET /v2/account` on the trading API: the account status string.
    pub async fn account_status(&self, creds: &AlpacaCredentials) -> Result<String, VenueError> {
        #[derive(Deserialize)]
        struct AccountWire {
            status: String,
        }
        let mut req = Request::get("/v2/account").limit(&self.limiter, 1);
        req.auth = Some(headers(creds));
        let wire: AccountWire = self.trading.json(&req).await?;
        Ok(wire.status)
    }
}
