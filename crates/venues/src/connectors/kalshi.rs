//! Kalshi public market data: markets with cursor paging to the end, and
//! bids-only order books turned into YES and NO books with derived asks.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use polybot_core::fees::KalshiSeriesFees;

use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::http::{ClientOptions, HttpClient, Request};
use crate::model::{Api, BinaryBook, KalshiMarket, Level, OrderBook};
use crate::num::{Dec, OptDec};
use crate::ratelimit::{RateLimiter, limits};
use crate::signing::kalshi::KalshiSigner;

/// Filters for `GET /markets`.
#[derive(Debug, Clone, Default)]
pub struct KalshiMarketsQuery {
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
    /// Event ticker.
    pub event_ticker: Option<String>,
    /// Series ticker, e.g. `KXBTC15M`.
    pub series_ticker: Option<String>,
    /// Status filter (`open`, `closed`, `settled`).
    pub status: Option<String>,
    /// Markets closing after (unix seconds).
    pub min_close_ts: Option<i64>,
    /// Markets closing before (unix seconds).
    pub max_close_ts: Option<i64>,
}

/// One page of markets and the cursor of the next (empty at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KalshiMarketsPage {
    /// The markets.
    pub markets: Vec<KalshiMarket>,
    /// Cursor for the next page; `None` at the end.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MarketWire {
    ticker: String,
    #[serde(default)]
    event_ticker: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    yes_sub_title: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    open_time: Option<DateTime<Utc>>,
    #[serde(default)]
    close_time: Option<DateTime<Utc>>,
    #[serde(default)]
    yes_bid_dollars: OptDec,
    #[serde(default)]
    yes_ask_dollars: OptDec,
    #[serde(default)]
    no_bid_dollars: OptDec,
    #[serde(default)]
    no_ask_dollars: OptDec,
    #[serde(default)]
    last_price_dollars: OptDec,
    #[serde(default)]
    volume_fp: OptDec,
    #[serde(default)]
    volume: OptDec,
    #[serde(default)]
    open_interest_fp: OptDec,
    #[serde(default)]
    open_interest: OptDec,
    #[serde(default)]
    strike_type: Option<String>,
    #[serde(default)]
    floor_strike: OptDec,
    #[serde(default)]
    cap_strike: OptDec,
    #[serde(default)]
    rules_primary: Option<String>,
}

impl From<MarketWire> for KalshiMarket {
    fn from(w: MarketWire) -> Self {
        KalshiMarket {
            ticker: w.ticker,
            event_ticker: w.event_ticker,
            title: w.title,
            yes_sub_title: w.yes_sub_title,
            status: w.status,
            open_time: w.open_time,
            close_time: w.close_time,
            yes_bid: w.yes_bid_dollars.0,
            yes_ask: w.yes_ask_dollars.0,
            no_bid: w.no_bid_dollars.0,
            no_ask: w.no_ask_dollars.0,
            last_price: w.last_price_dollars.0,
            volume: w.volume_fp.0.or(w.volume.0),
            open_interest: w.open_interest_fp.0.or(w.open_interest.0),
            strike_type: w.strike_type,
            floor_strike: w.floor_strike.0,
            cap_strike: w.cap_strike.0,
            rules_primary: w.rules_primary,
        }
    }
}

#[derive(Debug, Deserialize)]
struct MarketsPageWire {
    #[serde(default)]
    markets: Vec<MarketWire>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderbookSidesWire {
    #[serde(default)]
    yes_dollars: Option<Vec<(Dec, Dec)>>,
    #[serde(default)]
    no_dollars: Option<Vec<(Dec, Dec)>>,
}

#[derive(Debug, Deserialize)]
struct OrderbookWire {
    orderbook_fp: OrderbookSidesWire,
}

/// Turns Kalshi's two bid ladders into two full books: a YES ask at `1 − p`
/// for every NO bid at `p`, and a NO ask at `1 − p` for every YES bid.
pub fn binary_book_from_bids(
    ticker: &str,
    yes_bids: Vec<Level>,
    no_bids: Vec<Level>,
) -> BinaryBook {
    let complement = |levels: &[Level]| {
        levels
            .iter()
            .map(|l| Level::new(Decimal::ONE - l.price, l.size))
            .collect::<Vec<_>>()
    };
    let yes_asks = complement(&no_bids);
    let no_asks = complement(&yes_bids);
    BinaryBook {
        yes: OrderBook::new(Api::Kalshi, format!("{ticker}:yes"), yes_bids, yes_asks),
        no: OrderBook::new(Api::Kalshi, format!("{ticker}:no"), no_bids, no_asks),
    }
}

/// Kalshi public market data (and, with a signer, signed reads).
#[derive(Debug)]
pub struct Kalshi {
    http: HttpClient,
    read: RateLimiter,
    max_pages: u32,
}

impl Kalshi {
    /// A client on `endpoints.kalshi` with default options.
    pub fn new(endpoints: &Endpoints) -> Result<Self, VenueError> {
        Self::with_options(endpoints, &ClientOptions::default())
    }

    /// A client with explicit options.
    pub fn with_options(
        endpoints: &Endpoints,
        options: &ClientOptions,
    ) -> Result<Self, VenueError> {
        Ok(Self {
            http: HttpClient::new(Api::Kalshi, &endpoints.kalshi, options)?,
            read: limits::kalshi_read(),
            max_pages: 10_000,
        })
    }

    /// One page of `GET /markets`.
    pub async fn markets_page(
        &self,
        query: &KalshiMarketsQuery,
        cursor: Option<&str>,
    ) -> Result<KalshiMarketsPage, VenueError> {
        let req = Request::get("/markets")
            .query_opt("limit", query.limit)
            .query_opt("cursor", cursor.filter(|c| !c.is_empty()))
            .query_opt("event_ticker", query.event_ticker.as_ref())
            .query_opt("series_ticker", query.series_ticker.as_ref())
            .query_opt("status", query.status.as_ref())
            .query_opt("min_close_ts", query.min_close_ts)
            .query_opt("max_close_ts", query.max_close_ts)
            .limit(&self.read, 1);
        let wire: MarketsPageWire = self.http.json(&req).await?;
        Ok(KalshiMarketsPage {
            markets: wire.markets.into_iter().map(KalshiMarket::from).collect(),
            cursor: wire.cursor.filter(|c| !c.is_empty()),
        })
    }

    /// Every market matching `query`, following the cursor until it is empty.
    pub async fn all_markets(
        &self,
        query: &KalshiMarketsQuery,
    ) -> Result<Vec<KalshiMarket>, VenueError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..self.max_pages {
            let page = self.markets_page(query, cursor.as_deref()).await?;
            out.extend(page.markets);
            match page.cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                Some(_) => {
                    return Err(self.http.err(
                        "GET /markets",
                        ErrorKind::Api {
                            message: "the cursor did not advance".to_owned(),
                        },
                    ));
                }
                None => return Ok(out),
            }
        }
        Err(self.http.err(
            "GET /markets",
            ErrorKind::Api {
                message: format!("more than {} pages; narrow the query", self.max_pages),
            },
        ))
    }

    /// `GET /markets/{ticker}`: one market by its ticker.
    pub async fn market(&self, ticker: &str) -> Result<KalshiMarket, VenueError> {
        #[derive(Deserialize)]
        struct OneMarketWire {
            market: MarketWire,
        }
        let req = Request::get(format!("/markets/{ticker}")).limit(&self.read, 1);
        let wire: OneMarketWire = self.http.json(&req).await?;
        Ok(KalshiMarket::from(wire.market))
    }

    /// `GET /series/{series_ticker}`: the series' fee schedule (`fee_type`,
    /// `fee_multiplier`). A fee type this platform does not price (`flat`,
    /// or one added later) is an error naming it, never a guessed rate.
    pub async fn series_fees(&self, series_ticker: &str) -> Result<KalshiSeriesFees, VenueError> {
        #[derive(Deserialize)]
        struct SeriesWire {
            #[serde(default)]
            fee_type: Option<String>,
            #[serde(default)]
            fee_multiplier: OptDec,
        }
        #[derive(Deserialize)]
        struct OneSeriesWire {
            series: SeriesWire,
        }
        let req = Request::get(format!("/series/{series_ticker}")).limit(&self.read, 1);
        let wire: OneSeriesWire = self.http.json(&req).await?;
        let decode = |detail: String| self.http.err(req.endpoint(), ErrorKind::Decode { detail });
        let fee_type = wire
            .series
            .fee_type
            .ok_or_else(|| decode(format!("series {series_ticker} has no fee_type")))?;
        let multiplier = wire
            .series
            .fee_multiplier
            .0
            .ok_or_else(|| decode(format!("series {series_ticker} has no fee_multiplier")))?;
        KalshiSeriesFees::new(&fee_type, multiplier)
            .map_err(|e| decode(format!("series {series_ticker}: {e}")))
    }

    /// The order book of `ticker`, as YES and NO books with derived asks.
    pub async fn orderbook(&self, ticker: &str) -> Result<BinaryBook, VenueError> {
        let req = Request::get(format!("/markets/{ticker}/orderbook")).limit(&self.read, 1);
        let wire: OrderbookWire = self.http.json(&req).await?;
        let levels = |v: Option<Vec<(Dec, Dec)>>| {
            v.unwrap_or_default()
                .into_iter()
                .map(|(p, s)| Level::new(p.0, s.0))
                .collect::<Vec<_>>()
        };
        Ok(binary_book_from_bids(
            ticker,
            levels(wire.orderbook_fp.yes_dollars),
            levels(wire.orderbook_fp.no_dollars),
        ))
    }

    /// `GET /portfolio/balance`, signed; returns the balance in dollars.
    pub async fn balance(&self, signer: &KalshiSigner) -> Result<Decimal, VenueError> {
        #[derive(Deserialize)]
        struct BalanceWire {
            #[serde(default)]
            balance_dollars: OptDec,
            #[serde(default)]
            balance: Option<i64>,
        }
        let path = "/portfolio/balance";
        let full_path = format!("{}{path}", url_path(self.http.base()));
        let mut req = Request::get(path).limit(&self.read, 1).idempotent(false);
        req.auth = Some(signer.headers(Utc::now().timestamp_millis(), "GET", &full_path));
        let wire: BalanceWire = self.http.json(&req).await?;
        match (wire.balance_dollars.0, wire.balance) {
            (Some(d), _) => Ok(d),
            (None, Some(cents)) => Ok(Decimal::new(cents, 2)),
            (None, None) => Err(self.http.err(
                req.endpoint(),
                ErrorKind::Decode {
                    detail: "no balance field".to_owned(),
                },
            )),
        }
    }
}

/// The series a Kalshi event belongs to, by the exchange's ticker scheme:
/// an event ticker is its series ticker, a dash, and the event's own part
/// (`KXBTC15M-26MAR021545` is in `KXBTC15M`).
pub fn series_of_event(event_ticker: &str) -> &str {
    event_ticker.split('-').next().unwrap_or(event_ticker)
}

/// The path part of a base URL (`/trade-api/v2`), which Kalshi signs.
fn url_path(base: &str) -> String {
    url::Url::parse(base)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn no_bids_become_yes_asks_at_one_minus_price_best_first() {
        let book = binary_book_from_bids(
            "T",
            vec![
                Level::new(dec!(0.01), dec!(200)),
                Level::new(dec!(0.42), dec!(13)),
            ],
            vec![
                Level::new(dec!(0.01), dec!(100)),
                Level::new(dec!(0.56), dec!(17)),
            ],
        );
        assert_eq!(book.yes.best_bid(), Some(Level::new(dec!(0.42), dec!(13))));
        assert_eq!(book.yes.best_ask(), Some(Level::new(dec!(0.44), dec!(17))));
        assert_eq!(
            book.yes.asks.last(),
            Some(&Level::new(dec!(0.99), dec!(100)))
        );
        assert_eq!(book.no.best_bid(), Some(Level::new(dec!(0.56), dec!(17))));
        assert_eq!(book.no.best_ask(), Some(Level::new(dec!(0.58), dec!(13))));
    }

    #[test]
    fn the_signed_path_includes_the_api_prefix() {
        assert_eq!(
            url_path("https://demo-api.kalshi.co/trade-api/v2"),
            "/trade-api/v2"
        );
    }
}
