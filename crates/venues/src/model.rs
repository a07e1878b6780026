//! Normalised market-data types shared by every connector.
//!
//! Prices and sizes are [`Decimal`] parsed from the venues' own text, never
//! `f64`. Books are always sorted best-first (bids descending, asks
//! ascending) whatever order the venue sent. These are plain data types: the
//! engine crate has its own event types and the worker converts these into
//! them. No I/O lives here.
//!
//! [`Api`] names an API this crate talks to (Polymarket has two, Binance
//! global and Alpaca are not trading venues of the platform); the trading
//! venue is `polybot_core::strategy::Venue`, reached with [`Api::venue`].

use std::fmt;

use chrono::{DateTime, Utc};
use polybot_core::strategy::Venue;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An API this crate talks to: what a connector, a rate limit, an endpoint
/// override and a `doctor` row are per. Serialised as before the rename
/// (`polymarket_gamma`, …), so `polybot doctor --json` is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Polymarket gamma API (market and event metadata).
    PolymarketGamma,
    /// Polymarket CLOB API (order books, prices, orders).
    PolymarketClob,
    /// Kalshi trade API v2.
    Kalshi,
    /// Binance US (`api.binance.us`).
    BinanceUs,
    /// Binance global (`api.binance.com`): probed only to explain its geo-block.
    Binance,
    /// Coinbase Exchange.
    Coinbase,
    /// Kraken spot.
    Kraken,
    /// Alpaca market data.
    AlpacaData,
    /// Alpaca trading API.
    AlpacaTrading,
    /// Interactive Brokers gateway (TCP port of the gateway container).
    Ibkr,
}

impl Api {
    /// Every API, in the order `doctor` reports them.
    pub const ALL: [Api; 10] = [
        Api::PolymarketGamma,
        Api::PolymarketClob,
        Api::Kalshi,
        Api::BinanceUs,
        Api::Binance,
        Api::Coinbase,
        Api::Kraken,
        Api::AlpacaData,
        Api::AlpacaTrading,
        Api::Ibkr,
    ];

    /// Human-readable name used in errors and tables.
    pub fn name(self) -> &'static str {
        match self {
            Api::PolymarketGamma => "Polymarket gamma",
            Api::PolymarketClob => "Polymarket CLOB",
            Api::Kalshi => "Kalshi",
            Api::BinanceUs => "Binance US",
            Api::Binance => "Binance global",
            Api::Coinbase => "Coinbase",
            Api::Kraken => "Kraken",
            Api::AlpacaData => "Alpaca data",
            Api::AlpacaTrading => "Alpaca trading",
            Api::Ibkr => "IBKR gateway",
        }
    }

    /// The trading venue this API belongs to; none for an API the platform
    /// does not trade on (Binance global, Alpaca, IBKR).
    pub const fn venue(self) -> Option<Venue> {
        match self {
            Api::PolymarketGamma | Api::PolymarketClob => Some(Venue::Polymarket),
            Api::Kalshi => Some(Venue::Kalshi),
            Api::BinanceUs => Some(Venue::BinanceUs),
            Api::Coinbase => Some(Venue::Coinbase),
            Api::Kraken => Some(Venue::Kraken),
            Api::Binance | Api::AlpacaData | Api::AlpacaTrading | Api::Ibkr => None,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Side of a book or a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy / bid.
    Buy,
    /// Sell / ask.
    Sell,
}

/// One price level of a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// Price in the instrument's quote unit (USD, USDC, or a probability in 0..1).
    pub price: Decimal,
    /// Size at that price (shares, contracts or base units).
    pub size: Decimal,
}

impl Level {
    /// A level from a price and a size.
    pub fn new(price: Decimal, size: Decimal) -> Self {
        Self { price, size }
    }
}

/// An order book snapshot, bids and asks sorted best-first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBook {
    /// The API the book came from.
    pub api: Api,
    /// Instrument identifier as the venue names it (token id, ticker, symbol, pair).
    pub instrument: String,
    /// Bids, highest price first.
    pub bids: Vec<Level>,
    /// Asks, lowest price first.
    pub asks: Vec<Level>,
    /// Venue timestamp of the snapshot, when the venue sent one.
    pub timestamp: Option<DateTime<Utc>>,
    /// Venue sequence / update id, when the venue sent one.
    pub sequence: Option<u64>,
}

impl OrderBook {
    /// Builds a book, sorting both sides best-first and dropping zero-size levels.
    pub fn new(
        api: Api,
        instrument: impl Into<String>,
        bids: Vec<Level>,
        asks: Vec<Level>,
    ) -> Self {
        let mut book = Self {
            api,
            instrument: instrument.into(),
            bids,
            asks,
            timestamp: None,
            sequence: None,
        };
        book.normalise();
        book
    }

    /// Sorts bids descending and asks ascending by price; removes empty levels.
    pub fn normalise(&mut self) {
        self.bids.retain(|l| !l.size.is_zero());
        self.asks.retain(|l| !l.size.is_zero());
        self.bids.sort_by_key(|l| std::cmp::Reverse(l.price));
        self.asks.sort_by_key(|l| l.price);
    }

    /// The highest bid.
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.first().copied()
    }

    /// The lowest ask.
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.first().copied()
    }

    /// Midpoint of best bid and best ask.
    pub fn mid(&self) -> Option<Decimal> {
        Some((self.best_bid()?.price + self.best_ask()?.price) / Decimal::TWO)
    }
}

/// A binary (YES/NO) market's two books, as Kalshi quotes it.
///
/// Kalshi sends bids only; the asks here are derived: a YES ask at `1 − p`
/// for every NO bid at `p` (and vice versa), with the same size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryBook {
    /// The YES contract's book.
    pub yes: OrderBook,
    /// The NO contract's book.
    pub no: OrderBook,
}

/// A Polymarket market from the gamma API, JSON-in-string fields decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolymarketMarket {
    /// Gamma id.
    pub id: String,
    /// The question, e.g. "Bitcoin Up or Down - April 29, 9:00AM-9:15AM ET".
    pub question: String,
    /// CTF condition id (`0x…`).
    pub condition_id: String,
    /// Market slug.
    pub slug: String,
    /// Close time.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether the market is active.
    pub active: bool,
    /// Whether the market is closed.
    pub closed: bool,
    /// Whether the CLOB has a book for it.
    pub enable_order_book: bool,
    /// Whether it accepts orders now.
    pub accepting_orders: bool,
    /// Negative-risk (multi-outcome) market.
    pub neg_risk: bool,
    /// Outcome names, e.g. `["Yes", "No"]` or `["Up", "Down"]`.
    pub outcomes: Vec<String>,
    /// Last outcome prices, aligned with `outcomes`.
    pub outcome_prices: Vec<Decimal>,
    /// CLOB token ids, aligned with `outcomes`.
    pub clob_token_ids: Vec<String>,
    /// Minimum tick size.
    pub tick_size: Option<Decimal>,
    /// Minimum order size.
    pub min_order_size: Option<Decimal>,
    /// Best bid (gamma's cached value).
    pub best_bid: Option<Decimal>,
    /// Best ask (gamma's cached value).
    pub best_ask: Option<Decimal>,
    /// Last trade price.
    pub last_trade_price: Option<Decimal>,
    /// Volume (USDC).
    pub volume: Option<Decimal>,
    /// Liquidity (USDC).
    pub liquidity: Option<Decimal>,
    /// Resolution source URL, e.g. a Chainlink stream.
    pub resolution_source: Option<String>,
}

/// A Polymarket event (a group of markets) from the gamma API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolymarketEvent {
    /// Gamma id.
    pub id: String,
    /// Event slug (the 15-minute up/down markets are looked up by it).
    pub slug: String,
    /// Title.
    pub title: String,
    /// Start of the event window.
    pub start_date: Option<DateTime<Utc>>,
    /// End of the event window.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether it is active.
    pub active: bool,
    /// Whether it is closed.
    pub closed: bool,
    /// Tag slugs.
    pub tags: Vec<String>,
    /// Its markets.
    pub markets: Vec<PolymarketMarket>,
}

/// A Kalshi market. Prices are dollars (`0.5600`), counts are contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KalshiMarket {
    /// Market ticker.
    pub ticker: String,
    /// Event ticker.
    pub event_ticker: String,
    /// Title.
    pub title: String,
    /// YES outcome subtitle.
    pub yes_sub_title: Option<String>,
    /// Status (`active`, `closed`, `settled`, …).
    pub status: String,
    /// Open time.
    pub open_time: Option<DateTime<Utc>>,
    /// Close time.
    pub close_time: Option<DateTime<Utc>>,
    /// Best YES bid.
    pub yes_bid: Option<Decimal>,
    /// Best YES ask.
    pub yes_ask: Option<Decimal>,
    /// Best NO bid.
    pub no_bid: Option<Decimal>,
    /// Best NO ask.
    pub no_ask: Option<Decimal>,
    /// Last trade price.
    pub last_price: Option<Decimal>,
    /// Volume (contracts).
    pub volume: Option<Decimal>,
    /// Open interest (contracts).
    pub open_interest: Option<Decimal>,
    /// Strike type (`greater`, `between`, …).
    pub strike_type: Option<String>,
    /// Lower strike.
    pub floor_strike: Option<Decimal>,
    /// Upper strike.
    pub cap_strike: Option<Decimal>,
    /// Primary rules text (resolution source lives here).
    pub rules_primary: Option<String>,
}

/// Last price of a spot instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticker {
    /// The API it came from.
    pub api: Api,
    /// Symbol as the venue names it.
    pub symbol: String,
    /// Last traded price.
    pub last: Decimal,
    /// Best bid, when the venue sends it with the ticker.
    pub bid: Option<Decimal>,
    /// Best ask, when the venue sends it with the ticker.
    pub ask: Option<Decimal>,
    /// Venue time, when sent.
    pub timestamp: Option<DateTime<Utc>>,
}

/// A public trade print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// The API it came from.
    pub api: Api,
    /// Symbol as the venue names it.
    pub symbol: String,
    /// Venue trade id, when sent.
    pub trade_id: Option<String>,
    /// Price.
    pub price: Decimal,
    /// Size.
    pub size: Decimal,
    /// Aggressor side, when known.
    pub side: Option<Side>,
    /// Venue time.
    pub timestamp: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn a_book_sent_in_venue_order_is_sorted_best_first() {
        let book = OrderBook::new(
            Api::PolymarketClob,
            "100",
            vec![
                Level::new(dec!(0.3), dec!(100)),
                Level::new(dec!(0.4), dec!(50)),
                Level::new(dec!(0.35), dec!(0)),
            ],
            vec![
                Level::new(dec!(0.7), dec!(100)),
                Level::new(dec!(0.6), dec!(10)),
            ],
        );
        assert_eq!(book.best_bid(), Some(Level::new(dec!(0.4), dec!(50))));
        assert_eq!(book.best_ask(), Some(Level::new(dec!(0.6), dec!(10))));
        assert_eq!(book.bids.len(), 2);
        assert_eq!(book.mid(), Some(dec!(0.5)));
    }

    #[test]
    fn both_polymarket_apis_belong_to_the_polymarket_venue_and_alpaca_to_none() {
        assert_eq!(Api::PolymarketGamma.venue(), Some(Venue::Polymarket));
        assert_eq!(Api::PolymarketClob.venue(), Some(Venue::Polymarket));
        assert_eq!(Api::BinanceUs.venue(), Some(Venue::BinanceUs));
        assert_eq!(Api::Binance.venue(), None);
        assert_eq!(Api::AlpacaData.venue(), None);
        // Every trading venue is reached by some API.
        for venue in Venue::ALL {
            assert!(Api::ALL.iter().any(|a| a.venue() == Some(venue)), "{venue}");
        }
    }
}
