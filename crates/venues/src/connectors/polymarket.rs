//! Polymarket market data: gamma (markets and events, whose `outcomes`,
//! `outcomePrices` and `clobTokenIds` are JSON encoded inside strings) and
//! the CLOB's public books and prices. Also the current 15-minute crypto
//! up/down event, looked up by its event slug.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::http::{Body, ClientOptions, HttpClient, Request};
use crate::model::{Api, Level, OrderBook, PolymarketEvent, PolymarketMarket, Side};
use crate::num::{Dec, OptDec, parse_decimal};
use crate::ratelimit::{RateLimiter, limits};

/// Length of an up/down window in seconds.
pub const UPDOWN_WINDOW_SECS: i64 = 900;

/// Start (unix seconds) of the 15-minute window containing `now_unix`.
pub fn updown_window_start(now_unix: i64) -> i64 {
    now_unix.div_euclid(UPDOWN_WINDOW_SECS) * UPDOWN_WINDOW_SECS
}

/// Event slug of the 15-minute up/down market for `coin` whose window opens
/// at `window_start` (unix seconds, aligned down to 900 s if it is not),
/// e.g. `btc-updown-15m-1783200600`.
pub fn updown_slug(coin: &str, window_start: i64) -> String {
    format!(
        "{}-updown-15m-{}",
        coin.to_ascii_lowercase(),
        updown_window_start(window_start)
    )
}

/// Slug of the window that contains `now_unix`: `floor(now/900)*900`.
pub fn current_updown_slug(coin: &str, now_unix: i64) -> String {
    updown_slug(coin, updown_window_start(now_unix))
}

/// Slug of the window that closes at `close_unix` (the slug names the open).
pub fn updown_slug_for_close(coin: &str, close_unix: i64) -> String {
    updown_slug(coin, close_unix - UPDOWN_WINDOW_SECS)
}

/// Filters for gamma's `/markets` and `/events` (limit + offset paging).
#[derive(Debug, Clone, Default)]
pub struct GammaQuery {
    /// Page size.
    pub limit: Option<u32>,
    /// Offset.
    pub offset: Option<u32>,
    /// Only active (or inactive) ones.
    pub active: Option<bool>,
    /// Only closed (or open) ones.
    pub closed: Option<bool>,
    /// Only archived (or not).
    pub archived: Option<bool>,
    /// Tag id.
    pub tag_id: Option<String>,
    /// Tag slug.
    pub tag_slug: Option<String>,
    /// Exact slug.
    pub slug: Option<String>,
    /// Sort field.
    pub order: Option<String>,
    /// Sort ascending.
    pub ascending: Option<bool>,
}

impl GammaQuery {
    fn apply<'a>(&self, req: Request<'a>) -> Request<'a> {
        req.query_opt("limit", self.limit)
            .query_opt("offset", self.offset)
            .query_opt("active", self.active)
            .query_opt("closed", self.closed)
            .query_opt("archived", self.archived)
            .query_opt("tag_id", self.tag_id.as_ref())
            .query_opt("tag_slug", self.tag_slug.as_ref())
            .query_opt("slug", self.slug.as_ref())
            .query_opt("order", self.order.as_ref())
            .query_opt("ascending", self.ascending)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GammaMarketWire {
    id: String,
    #[serde(default)]
    question: String,
    #[serde(default)]
    condition_id: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    closed: bool,
    #[serde(default)]
    enable_order_book: bool,
    #[serde(default)]
    accepting_orders: bool,
    #[serde(default)]
    neg_risk: bool,
    #[serde(default)]
    outcomes: Option<String>,
    #[serde(default)]
    outcome_prices: Option<String>,
    #[serde(default)]
    clob_token_ids: Option<String>,
    #[serde(default)]
    order_price_min_tick_size: OptDec,
    #[serde(default)]
    order_min_size: OptDec,
    #[serde(default)]
    best_bid: OptDec,
    #[serde(default)]
    best_ask: OptDec,
    #[serde(default)]
    last_trade_price: OptDec,
    #[serde(default)]
    volume_num: OptDec,
    #[serde(default)]
    liquidity_num: OptDec,
    #[serde(default)]
    resolution_source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TagWire {
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GammaEventWire {
    id: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    closed: bool,
    #[serde(default)]
    tags: Vec<TagWire>,
    #[serde(default)]
    markets: Vec<GammaMarketWire>,
}

/// Gamma dates are RFC 3339; a missing or unparsable date is `None`
/// (metadata only, never a price).
fn parse_date(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Decodes one of gamma's JSON-in-string arrays.
fn string_array(field: &str, text: Option<&str>) -> Result<Vec<String>, String> {
    match text.map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Vec<String>>(text)
            .map_err(|e| format!("{field} is not a JSON array of strings inside a string: {e}")),
    }
}

impl GammaMarketWire {
    fn into_model(self) -> Result<PolymarketMarket, String> {
        let outcomes = string_array("outcomes", self.outcomes.as_deref())?;
        let outcome_prices = string_array("outcomePrices", self.outcome_prices.as_deref())?
            .iter()
            .map(|p| parse_decimal(p).map_err(|e| format!("outcomePrices: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let clob_token_ids = string_array("clobTokenIds", self.clob_token_ids.as_deref())?;
        Ok(PolymarketMarket {
            id: self.id,
            question: self.question,
            condition_id: self.condition_id,
            slug: self.slug,
            end_date: parse_date(self.end_date.as_deref()),
            active: self.active,
            closed: self.closed,
            enable_order_book: self.enable_order_book,
            accepting_orders: self.accepting_orders,
            neg_risk: self.neg_risk,
            outcomes,
            outcome_prices,
            clob_token_ids,
            tick_size: self.order_price_min_tick_size.0,
            min_order_size: self.order_min_size.0,
            best_bid: self.best_bid.0,
            best_ask: self.best_ask.0,
            last_trade_price: self.last_trade_price.0,
            volume: self.volume_num.0,
            liquidity: self.liquidity_num.0,
            resolution_source: self.resolution_source.filter(|s| !s.is_empty()),
        })
    }
}

impl GammaEventWire {
    fn into_model(self) -> Result<PolymarketEvent, String> {
        Ok(PolymarketEvent {
            id: self.id,
            slug: self.slug,
            title: self.title,
            start_date: parse_date(self.start_date.as_deref()),
            end_date: parse_date(self.end_date.as_deref()),
            active: self.active,
            closed: self.closed,
            tags: self.tags.into_iter().filter_map(|t| t.slug).collect(),
            markets: self
                .markets
                .into_iter()
                .map(GammaMarketWire::into_model)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct LevelWire {
    price: Dec,
    size: Dec,
}

/// A CLOB book as `/book` and `/books` send it.
#[derive(Debug, Deserialize)]
pub(crate) struct BookWire {
    #[serde(default)]
    asset_id: String,
    #[serde(default)]
    timestamp: Option<String>,
    /// `buys` in the websocket's older book messages.
    #[serde(default, alias = "buys")]
    bids: Vec<LevelWire>,
    /// `sells` in the websocket's older book messages.
    #[serde(default, alias = "sells")]
    asks: Vec<LevelWire>,
}

/// Milliseconds since the epoch, as a string, to a time.
pub(crate) fn millis_string(text: Option<&str>) -> Option<DateTime<Utc>> {
    let ms: i64 = text?.trim().parse().ok()?;
    Utc.timestamp_millis_opt(ms).single()
}

impl BookWire {
    pub(crate) fn into_model(self) -> OrderBook {
        let levels = |v: Vec<LevelWire>| {
            v.into_iter()
                .map(|l| Level::new(l.price.0, l.size.0))
                .collect::<Vec<_>>()
        };
        let mut book = OrderBook::new(
            Api::PolymarketClob,
            self.asset_id,
            levels(self.bids),
            levels(self.asks),
        );
        book.timestamp = millis_string(self.timestamp.as_deref());
        book
    }
}

#[derive(Debug, Deserialize)]
struct MidWire {
    mid: Dec,
}

#[derive(Debug, Deserialize)]
struct PriceWire {
    price: Dec,
}

/// `GET /clob-markets/{condition_id}`, the part the fees need: `fd`
/// (absent on a fee-free market).
#[derive(Debug, Deserialize)]
struct ClobMarketWire {
    #[serde(default)]
    fd: Option<FeeWire>,
}

#[derive(Debug, Deserialize)]
struct FeeWire {
    #[serde(default)]
    r: Option<Dec>,
    #[serde(default)]
    e: Option<u32>,
    #[serde(default)]
    to: Option<bool>,
}

/// Polymarket gamma + CLOB public market data.
#[derive(Debug)]
pub struct Polymarket {
    gamma: HttpClient,
    clob: HttpClient,
    global: RateLimiter,
    gamma_general: RateLimiter,
    gamma_events: RateLimiter,
    gamma_markets: RateLimiter,
    clob_general: RateLimiter,
    clob_book: RateLimiter,
    clob_books: RateLimiter,
    max_pages: u32,
}

impl Polymarket {
    /// A client on `endpoints` with default options.
    pub fn new(endpoints: &Endpoints) -> Result<Self, VenueError> {
        Self::with_options(endpoints, &ClientOptions::default())
    }

    /// A client with explicit options.
    pub fn with_options(
        endpoints: &Endpoints,
        options: &ClientOptions,
    ) -> Result<Self, VenueError> {
        Ok(Self {
            gamma: HttpClient::new(Api::PolymarketGamma, &endpoints.polymarket_gamma, options)?,
            clob: HttpClient::new(Api::PolymarketClob, &endpoints.polymarket_clob, options)?,
            global: limits::polymarket_global(),
            gamma_general: limits::gamma_general(),
            gamma_events: limits::gamma_events(),
            gamma_markets: limits::gamma_markets(),
            clob_general: limits::clob_general(),
            clob_book: limits::clob_book(),
            clob_books: limits::clob_books(),
            max_pages: 1_000,
        })
    }

    fn gamma_get<'a>(&'a self, path: &str, class: &'a RateLimiter) -> Request<'a> {
        Request::get(path)
            .limit(&self.global, 1)
            .limit(&self.gamma_general, 1)
            .limit(class, 1)
    }

    fn decode_err(&self, client: &HttpClient, endpoint: &str, detail: String) -> VenueError {
        client.err(endpoint, ErrorKind::Decode { detail })
    }

    /// One page of gamma `/markets`.
    pub async fn markets(&self, query: &GammaQuery) -> Result<Vec<PolymarketMarket>, VenueError> {
        let req = query.apply(self.gamma_get("/markets", &self.gamma_markets));
        let wire: Vec<GammaMarketWire> = self.gamma.json(&req).await?;
        wire.into_iter()
            .map(|m| {
                m.into_model()
                    .map_err(|d| self.decode_err(&self.gamma, &req.endpoint(), d))
            })
            .collect()
    }

    /// Every page of gamma `/markets` from `query.offset`, until a short page.
    pub async fn all_markets(
        &self,
        query: &GammaQuery,
    ) -> Result<Vec<PolymarketMarket>, VenueError> {
        let limit = query.limit.unwrap_or(100).max(1);
        let mut offset = query.offset.unwrap_or(0);
        let mut out = Vec::new();
        for _ in 0..self.max_pages {
            let page = self
                .markets(&GammaQuery {
                    limit: Some(limit),
                    offset: Some(offset),
                    ..query.clone()
                })
                .await?;
            let len = u32::try_from(page.len()).unwrap_or(u32::MAX);
            out.extend(page);
            if len < limit {
                return Ok(out);
            }
            offset += len;
        }
        Err(self.gamma.err(
            "GET /markets",
            ErrorKind::Api {
                message: format!("more than {} pages; narrow the query", self.max_pages),
            },
        ))
    }

    /// One page of gamma `/events`.
    pub async fn events(&self, query: &GammaQuery) -> Result<Vec<PolymarketEvent>, VenueError> {
        let req = query.apply(self.gamma_get("/events", &self.gamma_events));
        let wire: Vec<GammaEventWire> = self.gamma.json(&req).await?;
        wire.into_iter()
            .map(|e| {
                e.into_model()
                    .map_err(|d| self.decode_err(&self.gamma, &req.endpoint(), d))
            })
            .collect()
    }

    /// The event with this slug (`GET /events?slug=`), if it exists.
    pub async fn event_by_slug(&self, slug: &str) -> Result<Option<PolymarketEvent>, VenueError> {
        let events = self
            .events(&GammaQuery {
                slug: Some(slug.to_owned()),
                ..GammaQuery::default()
            })
            .await?;
        Ok(events.into_iter().find(|e| e.slug == slug))
    }

    /// The current 15-minute up/down event for `coin` (e.g. `"btc"`) at `now`.
    pub async fn current_updown_event(
        &self,
        coin: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PolymarketEvent>, VenueError> {
        self.event_by_slug(&current_updown_slug(coin, now.timestamp()))
            .await
    }

    /// The CLOB book of one outcome token, sorted best-first.
    pub async fn book(&self, token_id: &str) -> Result<OrderBook, VenueError> {
        let req = Request::get("/book")
            .query("token_id", token_id)
            .limit(&self.global, 1)
            .limit(&self.clob_general, 1)
            .limit(&self.clob_book, 1);
        let wire: BookWire = self.clob.json(&req).await?;
        Ok(wire.into_model())
    }

    /// Books of several tokens in one call (`POST /books`).
    pub async fn books(&self, token_ids: &[&str]) -> Result<Vec<OrderBook>, VenueError> {
        let body: Vec<serde_json::Value> = token_ids
            .iter()
            .map(|t| serde_json::json!({ "token_id": t }))
            .collect();
        let body = serde_json::Value::Array(body).to_string();
        let req = Request::post("/books", Body::Json(body))
            .idempotent(true)
            .limit(&self.global, 1)
            .limit(&self.clob_general, 1)
            .limit(&self.clob_books, 1);
        let wire: Vec<BookWire> = self.clob.json(&req).await?;
        Ok(wire.into_iter().map(BookWire::into_model).collect())
    }

    /// Midpoint of one token's book.
    pub async fn midpoint(&self, token_id: &str) -> Result<Decimal, VenueError> {
        let req = Request::get("/midpoint")
            .query("token_id", token_id)
            .limit(&self.global, 1)
            .limit(&self.clob_general, 1)
            .limit(&self.clob_book, 1);
        let wire: MidWire = self.clob.json(&req).await?;
        Ok(wire.mid.0)
    }

    /// A market's fee parameters from the CLOB's market info: the rate, the
    /// exponent and whether only takers pay. A market without `fd` charges
    /// nothing.
    pub async fn fee_params(
        &self,
        condition_id: &str,
    ) -> Result<crate::execution::FeeParams, VenueError> {
        let path = format!("/clob-markets/{condition_id}");
        let req = Request::get(path)
            .limit(&self.global, 1)
            .limit(&self.clob_general, 1);
        let wire: ClobMarketWire = self.clob.json(&req).await?;
        Ok(match wire.fd {
            Some(fd) => crate::execution::FeeParams {
                rate: fd.r.map(|r| r.0).unwrap_or_default(),
                exponent: fd.e.unwrap_or(1),
                taker_only: fd.to.unwrap_or(true),
            },
            None => crate::execution::FeeParams {
                rate: Decimal::ZERO,
                exponent: 1,
                taker_only: true,
            },
        })
    }

    /// Best price to buy (`Side::Buy`) or sell one token.
    pub async fn price(&self, token_id: &str, side: Side) -> Result<Decimal, VenueError> {
        let req = Request::get("/price")
            .query("token_id", token_id)
            .query("side", if side == Side::Buy { "BUY" } else { "SELL" })
            .limit(&self.global, 1)
            .limit(&self.clob_general, 1)
            .limit(&self.clob_book, 1);
        let wire: PriceWire = self.clob.json(&req).await?;
        Ok(wire.price.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_updown_slug_names_the_window_open_aligned_to_900_seconds() {
        assert_eq!(updown_slug("eth", 1777467600), "eth-updown-15m-1777467600");
        assert_eq!(updown_window_start(1777468499), 1777467600);
        assert_eq!(
            current_updown_slug("BTC", 1783201510),
            "btc-updown-15m-1783201500"
        );
        // The window closing at 1783201500 opened at 1783200600.
        assert_eq!(
            updown_slug_for_close("BTC", 1783201500),
            "btc-updown-15m-1783200600"
        );
    }
}
