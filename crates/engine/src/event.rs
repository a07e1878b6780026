//! Market events: what the engine consumes, from a replay or a live feed.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use polybot_core::strategy::Venue;

use crate::clock::Timestamp;
use crate::fees::FeeModel;
use crate::health::FeedHealth;
use crate::types::{Asset, BookSide, Level, MarketId, OutcomeIdx, Side};

/// One event with the time it happened at its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: Timestamp,
    pub kind: EventKind,
}

impl Event {
    pub const fn new(ts: Timestamp, kind: EventKind) -> Self {
        Self { ts, kind }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A market is listed (or its definition changed).
    Market(Box<MarketDef>),
    /// A full book for one outcome.
    Book(BookSnapshot),
    /// One level of one outcome's book changed.
    BookDelta(BookDelta),
    /// A trade printed at the venue (used to mark positions without a bid).
    Trade(TradePrint),
    /// A spot price from a crypto exchange.
    Spot(SpotPrice),
    /// A news headline.
    Headline(Box<Headline>),
    /// A market resolved to one outcome.
    Resolved(Resolution),
    /// The worker's feeds for one strategy changed health (a venue is down
    /// or back, a source rate limits the worker).
    FeedHealth(Box<FeedHealth>),
    /// Time passed; nothing else happened.
    Tick,
}

/// Which direction a recurring crypto market pays on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// YES/Up if the price at the end is ≥ the price at the start of the window.
    Up,
    /// YES if the price at the end is above `strike`.
    Above,
    /// YES if the price at the end is below `strike`.
    Below,
}

/// What makes a recurring crypto market: the key for deterministic matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecurringSpec {
    pub asset: Asset,
    pub direction: Direction,
    /// The strike for `above`/`below`; none for `up` (the window's opening price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strike: Option<Decimal>,
}

/// A market's definition. Binary markets list YES (or Up) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketDef {
    pub id: MarketId,
    pub venue: Venue,
    pub outcomes: Vec<String>,
    /// The taker fee rate (Polymarket: the market's `fd.r` from the CLOB;
    /// Kalshi 0.07; a CEX's percentage).
    pub fee_rate: Decimal,
    /// Polymarket's fee exponent (`fd.e`): the fee is
    /// `C·rate·(p(1−p))^exponent`. 1 elsewhere.
    #[serde(default = "one")]
    pub fee_exponent: u32,
    #[serde(default)]
    pub question: String,
    #[serde(default)]
    pub resolution_source: Option<String>,
    /// When the market's measuring window opens (15-minute markets).
    #[serde(default)]
    pub window_start: Option<Timestamp>,
    /// When the market closes / the window ends.
    #[serde(default)]
    pub closes_at: Option<Timestamp>,
    #[serde(default)]
    pub recurring: Option<RecurringSpec>,
    /// The window's opening price, when the feed publishes it.
    #[serde(default)]
    pub reference_price: Option<Decimal>,
    /// The venue's own ids, which sending an order needs (none for a
    /// market only ever paper-traded).
    #[serde(default)]
    pub venue_ids: Option<VenueIds>,
}

fn one() -> u32 {
    1
}

/// A market's ids at its venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueIds {
    /// Polymarket: the condition id.
    pub market: String,
    /// One per outcome, in the outcomes' order (Polymarket: the CLOB token ids).
    pub instruments: Vec<String>,
}

impl MarketDef {
    pub fn fee_model(&self) -> FeeModel {
        match self.venue {
            Venue::Polymarket => FeeModel::Polymarket {
                rate: self.fee_rate,
                exponent: self.fee_exponent,
            },
            venue => FeeModel::for_venue(venue, self.fee_rate),
        }
    }

    /// Kalshi publishes bids only: a binary market's asks are the other
    /// outcome's bids mirrored (YES ask = 1 − best NO bid).
    pub fn asks_mirror_bids(&self) -> bool {
        self.venue == Venue::Kalshi && self.outcomes.len() == 2
    }

    /// The index of the outcome named `name` (ignoring case).
    pub fn outcome_index(&self, name: &str) -> Option<OutcomeIdx> {
        self.outcomes
            .iter()
            .position(|o| o.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSnapshot {
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    /// Any order; the engine sorts.
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookDelta {
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub side: BookSide,
    pub price: Decimal,
    /// The new size at `price`; zero removes the level.
    pub size: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradePrint {
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub price: Decimal,
    pub size: Decimal,
    pub aggressor: Side,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotPrice {
    pub venue: Venue,
    pub asset: Asset,
    pub price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headline {
    /// The source's id (URL or GUID), for de-duplication across polls.
    pub id: String,
    pub source: String,
    pub title: String,
    #[serde(default)]
    pub summary: String,
    pub published: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub market: MarketId,
    pub outcome: OutcomeIdx,
}
