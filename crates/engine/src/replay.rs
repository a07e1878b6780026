//! Recorded market data as JSON Lines: one event per line, parsed into the
//! same [`Event`]s a live feed produces, and written back by [`event_line`]
//! (the shared market-data service publishes events in this format). The
//! format is documented in the crate root.

use std::io::BufRead;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use polybot_core::strategy::{StrategyKind, Venue};

use crate::clock::Timestamp;
use crate::event::{
    BookDelta, BookSnapshot, Direction, Event, EventKind, Headline, MarketDef, RecurringSpec,
    Resolution, SpotPrice, TradePrint, VenueIds,
};
use crate::health::{FeedHealth, RateLimit};
use crate::types::{Asset, BookSide, FxHashMap, Level, MarketId, OutcomeIdx, Side};

/// A line that is not a valid event, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay line {line}: {message}")]
pub struct ReplayError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum OutcomeRef {
    Index(usize),
    Name(String),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Market {
        ts: i64,
        market: String,
        venue: Venue,
        outcomes: Vec<String>,
        fee_rate: Decimal,
        #[serde(default)]
        fee_exponent: Option<u32>,
        #[serde(default)]
        question: String,
        #[serde(default)]
        resolution_source: Option<String>,
        #[serde(default)]
        window_start: Option<i64>,
        #[serde(default)]
        closes_at: Option<i64>,
        #[serde(default)]
        asset: Option<String>,
        #[serde(default)]
        direction: Option<Direction>,
        #[serde(default)]
        strike: Option<Decimal>,
        #[serde(default)]
        reference_price: Option<Decimal>,
        #[serde(default)]
        condition_id: Option<String>,
        #[serde(default)]
        tokens: Option<Vec<String>>,
    },
    Book {
        ts: i64,
        market: String,
        outcome: OutcomeRef,
        #[serde(default)]
        bids: Vec<(Decimal, Decimal)>,
        #[serde(default)]
        asks: Vec<(Decimal, Decimal)>,
    },
    BookDelta {
        ts: i64,
        market: String,
        outcome: OutcomeRef,
        side: BookSide,
        price: Decimal,
        size: Decimal,
    },
    Trade {
        ts: i64,
        market: String,
        outcome: OutcomeRef,
        price: Decimal,
        size: Decimal,
        side: Side,
    },
    Spot {
        ts: i64,
        venue: Venue,
        asset: String,
        price: Decimal,
    },
    Headline {
        ts: i64,
        id: String,
        source: String,
        title: String,
        #[serde(default)]
        summary: String,
        #[serde(default)]
        published: Option<i64>,
    },
    Resolved {
        ts: i64,
        market: String,
        outcome: OutcomeRef,
    },
    Tick {
        ts: i64,
    },
    FeedHealth {
        ts: i64,
        strategy: StrategyKind,
        #[serde(default)]
        degraded: Option<String>,
        #[serde(default)]
        rate_limited: Option<String>,
        #[serde(default)]
        rate_limited_until: Option<i64>,
    },
}

/// Turns lines into events; remembers each market's outcome names so that
/// later lines may name outcomes instead of numbering them.
#[derive(Debug, Default)]
pub struct ReplayParser {
    outcomes: FxHashMap<MarketId, Vec<String>>,
    line: usize,
}

impl ReplayParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the next line; blank lines and `#` comments give `None`.
    pub fn parse_line(&mut self, text: &str) -> Result<Option<Event>, ReplayError> {
        self.line += 1;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            return Ok(None);
        }
        let line: Line = serde_json::from_str(text).map_err(|e| self.error(e.to_string()))?;
        self.convert(line).map(Some)
    }

    fn error(&self, message: impl Into<String>) -> ReplayError {
        ReplayError {
            line: self.line,
            message: message.into(),
        }
    }

    fn outcome(&self, market: &MarketId, outcome: OutcomeRef) -> Result<OutcomeIdx, ReplayError> {
        let names = self.outcomes.get(market).ok_or_else(|| {
            self.error(format!(
                "market {market} is used before its \"market\" line"
            ))
        })?;
        let idx = match outcome {
            OutcomeRef::Index(i) => i,
            OutcomeRef::Name(name) => names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&name))
                .ok_or_else(|| {
                    self.error(format!(
                        "market {market} has no outcome {name:?} (it has {names:?})"
                    ))
                })?,
        };
        if idx >= names.len() {
            return Err(self.error(format!(
                "market {market} has {} outcomes, no outcome {idx}",
                names.len()
            )));
        }
        Ok(idx)
    }

    fn convert(&mut self, line: Line) -> Result<Event, ReplayError> {
        let levels = |pairs: Vec<(Decimal, Decimal)>| {
            pairs.into_iter().map(|(p, s)| Level::new(p, s)).collect()
        };
        let (ts, kind) = match line {
            Line::Market {
                ts,
                market,
                venue,
                outcomes,
                fee_rate,
                fee_exponent,
                question,
                resolution_source,
                window_start,
                closes_at,
                asset,
                direction,
                strike,
                reference_price,
                condition_id,
                tokens,
            } => {
                if outcomes.len() < 2 {
                    return Err(self.error(format!("market {market} needs at least two outcomes")));
                }
                let recurring = match (asset, direction) {
                    (Some(asset), Some(direction)) => Some(RecurringSpec {
                        asset: Asset::new(&asset),
                        direction,
                        strike,
                    }),
                    (None, None) => None,
                    _ => return Err(self.error("\"asset\" and \"direction\" go together")),
                };
                let venue_ids = match (condition_id, tokens) {
                    (Some(market), Some(instruments)) if instruments.len() == outcomes.len() => {
                        Some(VenueIds {
                            market,
                            instruments,
                        })
                    }
                    (None, None) => None,
                    _ => {
                        return Err(self.error(
                            "\"condition_id\" and \"tokens\" (one per outcome) go together",
                        ));
                    }
                };
                let id = MarketId::new(&market);
                self.outcomes.insert(id.clone(), outcomes.clone());
                let def = MarketDef {
                    id,
                    venue,
                    outcomes,
                    fee_rate,
                    fee_exponent: fee_exponent.unwrap_or(1),
                    question,
                    resolution_source,
                    window_start: window_start.map(Timestamp),
                    closes_at: closes_at.map(Timestamp),
                    recurring,
                    reference_price,
                    venue_ids,
                };
                (ts, EventKind::Market(Box::new(def)))
            }
            Line::Book {
                ts,
                market,
                outcome,
                bids,
                asks,
            } => {
                let market = MarketId::new(&market);
                let outcome = self.outcome(&market, outcome)?;
                (
                    ts,
                    EventKind::Book(BookSnapshot {
                        market,
                        outcome,
                        bids: levels(bids),
                        asks: levels(asks),
                    }),
                )
            }
            Line::BookDelta {
                ts,
                market,
                outcome,
                side,
                price,
                size,
            } => {
                let market = MarketId::new(&market);
                let outcome = self.outcome(&market, outcome)?;
                (
                    ts,
                    EventKind::BookDelta(BookDelta {
                        market,
                        outcome,
                        side,
                        price,
                        size,
                    }),
                )
            }
            Line::Trade {
                ts,
                market,
                outcome,
                price,
                size,
                side,
            } => {
                let market = MarketId::new(&market);
                let outcome = self.outcome(&market, outcome)?;
                (
                    ts,
                    EventKind::Trade(TradePrint {
                        market,
                        outcome,
                        price,
                        size,
                        aggressor: side,
                    }),
                )
            }
            Line::Spot {
                ts,
                venue,
                asset,
                price,
            } => (
                ts,
                EventKind::Spot(SpotPrice {
                    venue,
                    asset: Asset::new(&asset),
                    price,
                }),
            ),
            Line::Headline {
                ts,
                id,
                source,
                title,
                summary,
                published,
            } => (
                ts,
                EventKind::Headline(Box::new(Headline {
                    id,
                    source,
                    title,
                    summary,
                    published: Timestamp(published.unwrap_or(ts)),
                })),
            ),
            Line::Resolved {
                ts,
                market,
                outcome,
            } => {
                let market = MarketId::new(&market);
                let outcome = self.outcome(&market, outcome)?;
                (ts, EventKind::Resolved(Resolution { market, outcome }))
            }
            Line::Tick { ts } => (ts, EventKind::Tick),
            Line::FeedHealth {
                ts,
                strategy,
                degraded,
                rate_limited,
                rate_limited_until,
            } => {
                let rate_limited = match (rate_limited, rate_limited_until) {
                    (Some(reason), until) => Some(RateLimit {
                        until: until.map(Timestamp),
                        reason,
                    }),
                    (None, None) => None,
                    (None, Some(_)) => {
                        return Err(self
                            .error("\"rate_limited_until\" needs \"rate_limited\" (the reason)"));
                    }
                };
                (
                    ts,
                    EventKind::FeedHealth(Box::new(FeedHealth {
                        strategy,
                        degraded,
                        rate_limited,
                    })),
                )
            }
        };
        Ok(Event::new(Timestamp(ts), kind))
    }
}

/// One event as a replay line (no trailing newline): what
/// [`ReplayParser::parse_line`] reads back into an equal event, once the
/// event's market has been defined by its own `market` line. Outcomes are
/// written as indices.
pub fn event_line(event: &Event) -> String {
    let ts = event.ts.0;
    let pairs = |levels: &[Level]| levels.iter().map(|l| (l.price, l.size)).collect();
    let line = match &event.kind {
        EventKind::Market(def) => Line::Market {
            ts,
            market: def.id.as_str().to_owned(),
            venue: def.venue,
            outcomes: def.outcomes.clone(),
            fee_rate: def.fee_rate,
            fee_exponent: Some(def.fee_exponent),
            question: def.question.clone(),
            resolution_source: def.resolution_source.clone(),
            window_start: def.window_start.map(|t| t.0),
            closes_at: def.closes_at.map(|t| t.0),
            asset: def.recurring.as_ref().map(|r| r.asset.as_str().to_owned()),
            direction: def.recurring.as_ref().map(|r| r.direction),
            strike: def.recurring.as_ref().and_then(|r| r.strike),
            reference_price: def.reference_price,
            condition_id: def.venue_ids.as_ref().map(|v| v.market.clone()),
            tokens: def.venue_ids.as_ref().map(|v| v.instruments.clone()),
        },
        EventKind::Book(book) => Line::Book {
            ts,
            market: book.market.as_str().to_owned(),
            outcome: OutcomeRef::Index(book.outcome),
            bids: pairs(&book.bids),
            asks: pairs(&book.asks),
        },
        EventKind::BookDelta(delta) => Line::BookDelta {
            ts,
            market: delta.market.as_str().to_owned(),
            outcome: OutcomeRef::Index(delta.outcome),
            side: delta.side,
            price: delta.price,
            size: delta.size,
        },
        EventKind::Trade(trade) => Line::Trade {
            ts,
            market: trade.market.as_str().to_owned(),
            outcome: OutcomeRef::Index(trade.outcome),
            price: trade.price,
            size: trade.size,
            side: trade.aggressor,
        },
        EventKind::Spot(spot) => Line::Spot {
            ts,
            venue: spot.venue,
            asset: spot.asset.as_str().to_owned(),
            price: spot.price,
        },
        EventKind::Headline(h) => Line::Headline {
            ts,
            id: h.id.clone(),
            source: h.source.clone(),
            title: h.title.clone(),
            summary: h.summary.clone(),
            published: Some(h.published.0),
        },
        EventKind::Resolved(r) => Line::Resolved {
            ts,
            market: r.market.as_str().to_owned(),
            outcome: OutcomeRef::Index(r.outcome),
        },
        EventKind::FeedHealth(h) => Line::FeedHealth {
            ts,
            strategy: h.strategy,
            degraded: h.degraded.clone(),
            rate_limited: h.rate_limited.as_ref().map(|r| r.reason.clone()),
            rate_limited_until: h.rate_limited.as_ref().and_then(|r| r.until.map(|t| t.0)),
        },
        EventKind::Tick => Line::Tick { ts },
    };
    serde_json::to_string(&line)
        .expect("a replay line serializes: every field is a string, number or list")
}

/// An iterator of events over a JSONL reader (a file, a decompressor, a
/// byte slice).
#[derive(Debug)]
pub struct Replay<R> {
    reader: R,
    parser: ReplayParser,
    buf: String,
}

impl<R: BufRead> Replay<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            parser: ReplayParser::new(),
            buf: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for Replay<R> {
    type Item = Result<Event, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => match self.parser.parse_line(&self.buf) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => {
                    return Some(Err(ReplayError {
                        line: self.parser.line + 1,
                        message: format!("read failed: {e}"),
                    }));
                }
            }
        }
    }
}

/// Parses a whole JSONL text, failing on the first bad line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Event>, ReplayError> {
    Replay::new(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn every_kind_of_event_written_as_a_line_parses_back_equal() {
        let text = concat!(
            r#"{"type":"market","ts":1,"market":"btc-updown","venue":"polymarket","outcomes":["Up","Down"],"fee_rate":"0.07","fee_exponent":2,"question":"q","resolution_source":"src","window_start":0,"closes_at":900000,"asset":"BTC","direction":"above","strike":"94000.5","reference_price":"93000","condition_id":"0xc","tokens":["t1","t2"]}"#,
            "\n",
            r#"{"type":"market","ts":1,"market":"K","venue":"kalshi","outcomes":["Yes","No"],"fee_rate":"0.07"}"#,
            "\n",
            r#"{"type":"book","ts":2,"market":"btc-updown","outcome":"Down","bids":[["0.40","10"]],"asks":[["0.45","20.5"]]}"#,
            "\n",
            r#"{"type":"book_delta","ts":3,"market":"K","outcome":1,"side":"bid","price":"0.3","size":"0"}"#,
            "\n",
            r#"{"type":"trade","ts":4,"market":"K","outcome":0,"price":"0.5","size":"1","side":"sell"}"#,
            "\n",
            r#"{"type":"spot","ts":5,"venue":"kraken","asset":"eth","price":"3100.25"}"#,
            "\n",
            r#"{"type":"headline","ts":6,"id":"u1","source":"rss","title":"Fed cuts","summary":"s","published":5}"#,
            "\n",
            r#"{"type":"resolved","ts":7,"market":"K","outcome":"No"}"#,
            "\n",
            r#"{"type":"feed_health","ts":8,"strategy":"news_arb","degraded":"down","rate_limited":"429","rate_limited_until":99}"#,
            "\n",
            r#"{"type":"tick","ts":9}"#,
            "\n",
        );
        let events = parse_jsonl(text).unwrap();
        let written: String = events.iter().map(|e| event_line(e) + "\n").collect();
        assert_eq!(parse_jsonl(&written).unwrap(), events);
    }

    #[test]
    fn a_book_line_names_its_outcome_and_prices_are_strings() {
        let events = parse_jsonl(concat!(
            "# a comment\n",
            r#"{"type":"market","ts":1000,"market":"m1","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0.07"}"#,
            "\n\n",
            r#"{"type":"book","ts":1001,"market":"m1","outcome":"no","bids":[["0.40","10"]],"asks":[["0.45","20.5"]]}"#,
            "\n",
        ))
        .unwrap();
        assert_eq!(events.len(), 2);
        let EventKind::Book(book) = &events[1].kind else {
            panic!("expected a book, got {:?}", events[1].kind);
        };
        assert_eq!(book.outcome, 1);
        assert_eq!(book.asks, vec![Level::new(dec!(0.45), dec!(20.5))]);
        assert_eq!(events[1].ts, Timestamp(1001));
    }

    #[test]
    fn a_price_given_as_a_float_is_rejected_with_its_line_number() {
        let err = parse_jsonl(concat!(
            r#"{"type":"market","ts":1,"market":"m","venue":"kalshi","outcomes":["Yes","No"],"fee_rate":"0.07"}"#,
            "\n",
            r#"{"type":"trade","ts":2,"market":"m","outcome":0,"price":0.5,"size":"1","side":"buy"}"#,
        ))
        .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.message.contains("invalid type: floating point"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_outcome_the_market_lacks_is_an_error_that_names_the_outcomes() {
        let err = parse_jsonl(concat!(
            r#"{"type":"market","ts":1,"market":"m","venue":"kalshi","outcomes":["Yes","No"],"fee_rate":"0.07"}"#,
            "\n",
            r#"{"type":"resolved","ts":2,"market":"m","outcome":"Maybe"}"#,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"replay line 2: market m has no outcome "Maybe" (it has ["Yes", "No"])"#
        );
    }

    #[test]
    fn a_feed_health_line_names_its_strategy_and_the_reasons() {
        let events = parse_jsonl(concat!(
            r#"{"type":"feed_health","ts":5,"strategy":"news_arb","rate_limited":"NewsAPI 429","rate_limited_until":65}"#,
            "\n",
            r#"{"type":"feed_health","ts":6,"strategy":"crypto_15m","degraded":"binance_us geo-blocked"}"#,
        ))
        .unwrap();
        assert_eq!(
            events,
            vec![
                Event::new(
                    Timestamp(5),
                    EventKind::FeedHealth(Box::new(FeedHealth {
                        strategy: StrategyKind::NewsArb,
                        degraded: None,
                        rate_limited: Some(RateLimit {
                            until: Some(Timestamp(65)),
                            reason: "NewsAPI 429".into(),
                        }),
                    }))
                ),
                Event::new(
                    Timestamp(6),
                    EventKind::FeedHealth(Box::new(FeedHealth {
                        strategy: StrategyKind::Crypto15m,
                        degraded: Some("binance_us geo-blocked".into()),
                        rate_limited: None,
                    }))
                ),
            ]
        );
        let err = parse_jsonl(
            r#"{"type":"feed_health","ts":5,"strategy":"news_arb","rate_limited_until":65}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"replay line 1: "rate_limited_until" needs "rate_limited" (the reason)"#
        );
    }

    #[test]
    fn an_unknown_field_is_rejected() {
        let err = parse_jsonl(r#"{"type":"tick","ts":1,"when":2}"#).unwrap_err();
        assert!(
            err.message.contains("unknown field `when`"),
            "{}",
            err.message
        );
    }
}
