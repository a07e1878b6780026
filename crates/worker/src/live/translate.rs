//! The venues' models as the engine's events: market definitions (with the
//! fee rate of `polybot_engine::fees`), books, stream messages, headlines.
//! Pure: the caller gives the time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use polybot_core::fees::KalshiSeriesFees;
use polybot_core::strategy::Venue;
use polybot_engine::{
    Asset, BookDelta, BookSide, BookSnapshot, Direction, Event, EventKind, Headline, Level,
    MarketDef, MarketId, RecurringSpec, Side, Timestamp, TradePrint, VenueIds,
};
use polybot_venues::connectors::polymarket::UPDOWN_WINDOW_SECS;
use polybot_venues::execution::FeeParams;
use polybot_venues::model::{self as venue_model, KalshiMarket, OrderBook, PolymarketMarket};
use polybot_venues::news;
use polybot_venues::stream::MarketEvent;

fn levels(levels: &[venue_model::Level]) -> Vec<Level> {
    levels.iter().map(|l| Level::new(l.price, l.size)).collect()
}

fn ts_of(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(|t| Timestamp(t.timestamp_millis()))
}

/// A gamma market as the engine's definition, with its CLOB token ids
/// aligned with its outcomes; none for a market without a tradable book.
/// `updown` is the asset and window start (s) of a 15-minute up/down market.
pub fn polymarket_market_def(
    m: &PolymarketMarket,
    updown: Option<(&str, i64)>,
    fees: &FeeParams,
) -> Option<(MarketDef, Vec<String>)> {
    if m.outcomes.len() < 2 || m.clob_token_ids.len() != m.outcomes.len() || m.closed {
        return None;
    }
    let id = [&m.slug, &m.condition_id, &m.id]
        .into_iter()
        .find(|s| !s.is_empty())?;
    let (window_start, closes_at, recurring) = match updown {
        Some((asset, start_s)) => (
            Some(Timestamp(start_s * 1000)),
            Some(ts_of(m.end_date).unwrap_or(Timestamp((start_s + UPDOWN_WINDOW_SECS) * 1000))),
            Some(RecurringSpec {
                asset: Asset::new(asset),
                direction: Direction::Up,
                strike: None,
            }),
        ),
        None => (None, ts_of(m.end_date), None),
    };
    Some((
        MarketDef {
            id: MarketId::new(id),
            venue: Venue::Polymarket,
            outcomes: m.outcomes.clone(),
            fee_rate: fees.rate,
            fee_exponent: fees.exponent,
            question: m.question.clone(),
            resolution_source: m.resolution_source.clone(),
            window_start,
            closes_at,
            recurring,
            reference_price: None,
            venue_ids: (!m.condition_id.is_empty()).then(|| VenueIds {
                market: m.condition_id.clone(),
                instruments: m.clob_token_ids.clone(),
            }),
        },
        m.clob_token_ids.clone(),
    ))
}

/// A Kalshi market as the engine's definition. A market of a 15-minute
/// series (`asset` given) is a recurring "up" market whose window opens at
/// its open time, with the series' opening price as its reference. The
/// taker rate is the series' own (`fees`, from `GET /series`).
pub fn kalshi_market_def(
    m: &KalshiMarket,
    asset: Option<&str>,
    fees: &KalshiSeriesFees,
) -> MarketDef {
    let recurring = asset.map(|a| RecurringSpec {
        asset: Asset::new(a),
        direction: Direction::Up,
        strike: None,
    });
    MarketDef {
        id: MarketId::new(&m.ticker),
        venue: Venue::Kalshi,
        outcomes: vec!["Yes".to_owned(), "No".to_owned()],
        fee_rate: fees.taker_rate(),
        question: m.title.clone(),
        // Kalshi publishes its settlement source only in the rules text.
        resolution_source: m.rules_primary.clone().filter(|r| !r.trim().is_empty()),
        window_start: asset.and(ts_of(m.open_time)),
        closes_at: ts_of(m.close_time),
        reference_price: asset.and(m.floor_strike),
        recurring,
        // The order path names a Kalshi market by its ticker and an
        // outcome by its side.
        venue_ids: Some(VenueIds {
            market: m.ticker.clone(),
            instruments: vec!["yes".to_owned(), "no".to_owned()],
        }),
        fee_exponent: 1,
    }
}

/// One outcome's book as a snapshot event.
pub(super) fn book_event(
    ts: Timestamp,
    market: &MarketId,
    outcome: usize,
    book: &OrderBook,
) -> Event {
    Event::new(
        ts,
        EventKind::Book(BookSnapshot {
            market: market.clone(),
            outcome,
            bids: levels(&book.bids),
            asks: levels(&book.asks),
        }),
    )
}

/// One message of the Polymarket market stream as engine events; none for
/// a token no followed market has, and for the stream's own notices.
pub fn stream_event(
    tokens: &HashMap<String, (MarketId, usize)>,
    ts: Timestamp,
    event: &MarketEvent,
) -> Option<Event> {
    use venue_model::Side as VSide;
    let kind = match event {
        MarketEvent::Connected { .. } => return None,
        // The stream reports a malformed message or a drop and carries on
        // (reconnecting itself); the polled books cover the gap.
        MarketEvent::Error(err) => {
            tracing::warn!(error = %err, "market stream");
            return None;
        }
        MarketEvent::Book(book) => {
            let (market, outcome) = tokens.get(&book.instrument)?;
            return Some(book_event(ts, market, *outcome, book));
        }
        MarketEvent::PriceChange {
            asset_id,
            side,
            price,
            size,
            ..
        } => {
            let (market, outcome) = tokens.get(asset_id)?.clone();
            EventKind::BookDelta(BookDelta {
                market,
                outcome,
                side: match side {
                    VSide::Buy => BookSide::Bid,
                    VSide::Sell => BookSide::Ask,
                },
                price: *price,
                size: *size,
            })
        }
        MarketEvent::Trade(trade) => {
            let (market, outcome) = tokens.get(&trade.symbol)?.clone();
            EventKind::Trade(TradePrint {
                market,
                outcome,
                price: trade.price,
                size: trade.size,
                aggressor: match trade.side {
                    Some(VSide::Sell) => Side::Sell,
                    _ => Side::Buy,
                },
            })
        }
    };
    Some(Event::new(ts, kind))
}

/// A headline as the engine's; one without a readable date was published
/// `now` (when it was first seen).
pub(super) fn headline(h: news::Headline, now: Timestamp) -> Headline {
    Headline {
        id: h.id,
        source: h.source,
        title: h.title,
        summary: h.summary,
        published: ts_of(h.published).unwrap_or(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polybot_venues::model::{Api, Level as VLevel, Trade};
    use rust_decimal_macros::dec;

    #[test]
    fn stream_messages_become_book_deltas_trades_and_snapshots_of_known_tokens() {
        let mut tokens = HashMap::new();
        tokens.insert("t-up".to_owned(), (MarketId::new("btc-updown-15m-0"), 0));
        tokens.insert("t-down".to_owned(), (MarketId::new("btc-updown-15m-0"), 1));
        let ts = Timestamp(5);
        let delta = stream_event(
            &tokens,
            ts,
            &MarketEvent::PriceChange {
                asset_id: "t-down".into(),
                side: venue_model::Side::Sell,
                price: dec!(0.47),
                size: dec!(0),
                best_bid: None,
                best_ask: None,
            },
        );
        assert_eq!(
            delta,
            Some(Event::new(
                ts,
                EventKind::BookDelta(BookDelta {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 1,
                    side: BookSide::Ask,
                    price: dec!(0.47),
                    size: dec!(0),
                })
            ))
        );
        let trade = stream_event(
            &tokens,
            ts,
            &MarketEvent::Trade(Trade {
                api: Api::PolymarketClob,
                symbol: "t-up".into(),
                trade_id: None,
                price: dec!(0.52),
                size: dec!(10),
                side: Some(venue_model::Side::Buy),
                timestamp: None,
            }),
        );
        assert_eq!(
            trade,
            Some(Event::new(
                ts,
                EventKind::Trade(TradePrint {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 0,
                    price: dec!(0.52),
                    size: dec!(10),
                    aggressor: Side::Buy,
                })
            ))
        );
        let book = OrderBook::new(
            Api::PolymarketClob,
            "t-up",
            vec![
                VLevel::new(dec!(0.4), dec!(5)),
                VLevel::new(dec!(0.5), dec!(7)),
            ],
            vec![VLevel::new(dec!(0.6), dec!(9))],
        );
        assert_eq!(
            stream_event(&tokens, ts, &MarketEvent::Book(book)),
            Some(Event::new(
                ts,
                EventKind::Book(BookSnapshot {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 0,
                    bids: vec![
                        Level::new(dec!(0.5), dec!(7)),
                        Level::new(dec!(0.4), dec!(5))
                    ],
                    asks: vec![Level::new(dec!(0.6), dec!(9))],
                })
            ))
        );
        let unknown = OrderBook::new(Api::PolymarketClob, "other", vec![], vec![]);
        assert_eq!(stream_event(&tokens, ts, &MarketEvent::Book(unknown)), None);
    }

    #[test]
    fn a_headline_keeps_its_date_or_takes_the_time_it_was_seen() {
        let dated = news::Headline {
            id: "g-1".into(),
            source: "Wire".into(),
            title: "Fed cuts rates".into(),
            summary: "Powell spoke.".into(),
            published: Some("2026-04-29T13:00:00Z".parse().unwrap()),
        };
        assert_eq!(
            headline(dated.clone(), Timestamp(9)),
            Headline {
                id: "g-1".into(),
                source: "Wire".into(),
                title: "Fed cuts rates".into(),
                summary: "Powell spoke.".into(),
                published: Timestamp(1_777_467_600_000),
            }
        );
        let undated = news::Headline {
            published: None,
            ..dated
        };
        assert_eq!(headline(undated, Timestamp(9)).published, Timestamp(9));
    }
}
