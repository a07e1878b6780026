//! Deterministic matching of recurring crypto markets, and the checks that
//! keep a pair from being traded when its two contracts are not the same bet.

use rust_decimal::Decimal;

use crate::clock::Timestamp;
use crate::event::{Direction, MarketDef};
use crate::types::Asset;

/// Two recurring markets with the same key settle on the same question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    pub asset: Asset,
    pub direction: Direction,
    /// Normalised so that "100000" and "100000.00" match.
    pub strike: Option<Decimal>,
    pub closes_at: Timestamp,
}

impl MatchKey {
    /// The key of a recurring crypto market; none for other markets.
    pub fn of(def: &MarketDef) -> Option<MatchKey> {
        let spec = def.recurring.as_ref()?;
        Some(MatchKey {
            asset: spec.asset.clone(),
            direction: spec.direction,
            strike: spec.strike.map(|s| s.normalize()),
            closes_at: def.closes_at?,
        })
    }
}

/// A resolution source reduced to what identifies it: no scheme, no `www.`,
/// no trailing slash, lower case.
pub fn normalise_source(source: &str) -> String {
    let s = source.trim().to_ascii_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    let s = s.strip_prefix("www.").unwrap_or(s);
    s.trim_end_matches('/').to_owned()
}

/// `Ok` when the Polymarket and Kalshi markets can be traded as one bet;
/// otherwise why not.
pub fn compatibility(polymarket: &MarketDef, kalshi: &MarketDef) -> Result<(), String> {
    if polymarket.outcomes.len() != 2 || kalshi.outcomes.len() != 2 {
        return Err(format!(
            "not a binary pair: {} has {} outcomes, {} has {}",
            polymarket.id,
            polymarket.outcomes.len(),
            kalshi.id,
            kalshi.outcomes.len()
        ));
    }
    match (&polymarket.resolution_source, &kalshi.resolution_source) {
        (Some(a), Some(b)) if normalise_source(a) == normalise_source(b) => {}
        (Some(a), Some(b)) => {
            return Err(format!(
                "resolution source differs: polymarket {} resolves on {a:?}, kalshi {} on {b:?}",
                polymarket.id, kalshi.id
            ));
        }
        (None, _) => {
            return Err(format!(
                "resolution source unknown for polymarket {}",
                polymarket.id
            ));
        }
        (_, None) => {
            return Err(format!(
                "resolution source unknown for kalshi {}",
                kalshi.id
            ));
        }
    }
    match (polymarket.closes_at, kalshi.closes_at) {
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            return Err(format!(
                "window differs: polymarket {} closes at {}, kalshi {} at {}",
                polymarket.id, a.0, kalshi.id, b.0
            ));
        }
        _ => {
            return Err(format!(
                "window unknown: both closing times are needed to pair {} with {}",
                polymarket.id, kalshi.id
            ));
        }
    }
    if polymarket.window_start != kalshi.window_start {
        let show = |t: Option<Timestamp>| t.map_or("unknown".to_owned(), |t| t.0.to_string());
        return Err(format!(
            "window differs: polymarket {} opens at {}, kalshi {} at {}",
            polymarket.id,
            show(polymarket.window_start),
            kalshi.id,
            show(kalshi.window_start)
        ));
    }
    Ok(())
}
