//! Coinbase Exchange public market data: ticker, level-2 book, trades.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::endpoints::Endpoints;
use crate::error::VenueError;
use crate::http::{ClientOptions, HttpClient, Request};
use crate::model::{Api, Level, OrderBook, Side, Ticker, Trade};
use crate::num::{Dec, OptDec};
use crate::ratelimit::{RateLimiter, limits};

#[derive(Debug, Deserialize)]
struct TickerWire {
    price: Dec,
    #[serde(default)]
    bid: OptDec,
    #[serde(default)]
    ask: OptDec,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct BookWire {
    bids: Vec<(Dec, Dec, IgnoredAny)>,
    asks: Vec<(Dec, Dec, IgnoredAny)>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct TradeWire {
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    trade_id: Option<u64>,
    price: Dec,
    size: Dec,
    #[serde(default)]
    side: Option<String>,
}

/// Coinbase Exchange client.
#[derive(Debug)]
pub struct Coinbase {
    http: HttpClient,
    public: RateLimiter,
}

impl Coinbase {
    /// A client on `endpoints.coinbase`.
    pub fn new(endpoints: &Endpoints, options: &ClientOptions) -> Result<Self, VenueError> {
        Ok(Self {
            http: HttpClient::new(Api::Coinbase, &endpoints.coinbase, options)?,
            public: limits::coinbase_public(),
        })
    }

    /// `GET /products/{id}/ticker`.
    pub async fn ticker(&self, product_id: &str) -> Result<Ticker, VenueError> {
        let req = Request::get(format!("/products/{product_id}/ticker")).limit(&self.public, 1);
        let wire: TickerWire = self.http.json(&req).await?;
        Ok(Ticker {
            api: Api::Coinbase,
            symbol: product_id.to_owned(),
            last: wire.price.0,
            bid: wire.bid.0,
            ask: wire.ask.0,
            timestamp: wire.time,
        })
    }

    /// `GET /products/{id}/book?level=2`, sorted best-first.
    pub async fn book(&self, product_id: &str) -> Result<OrderBook, VenueError> {
        let req = Request::get(format!("/products/{product_id}/book"))
            .query("level", 2)
            .limit(&self.public, 1);
        let wire: BookWire = self.http.json(&req).await?;
        let levels = |v: Vec<(Dec, Dec, IgnoredAny)>| {
            v.into_iter()
                .map(|(p, s, _)| Level::new(p.0, s.0))
                .collect::<Vec<_>>()
        };
        let mut book = OrderBook::new(
            Api::Coinbase,
            product_id,
            levels(wire.bids),
            levels(wire.asks),
        );
        book.sequence = wire.sequence;
        book.timestamp = wire.time;
        Ok(book)
    }

    /// `GET /products/{id}/trades` (newest first). Coinbase's `side` is the
    /// maker's, so the aggressor is the opposite side.
    pub async fn trades(&self, product_id: &str) -> Result<Vec<Trade>, VenueError> {
        let req = Request::get(format!("/products/{product_id}/trades")).limit(&self.public, 1);
        let wire: Vec<TradeWire> = self.http.json(&req).await?;
        Ok(wire
            .into_iter()
            .map(|t| Trade {
                api: Api::Coinbase,
                symbol: product_id.to_owned(),
                trade_id: t.trade_id.map(|id| id.to_string()),
                price: t.price.0,
                size: t.size.0,
                side: match t.side.as_deref() {
                    Some("buy") => Some(Side::Sell),
                    Some("sell") => Some(Side::Buy),
                    _ => None,
                },
                timestamp: t.time,
            })
            .collect())
    }
}
