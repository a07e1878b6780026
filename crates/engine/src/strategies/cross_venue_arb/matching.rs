//! Deterministic matching of recurring crypto markets, and the checks that
//! keep a pair from being traded when its two contracts are not the same bet:
//! resolution source, window and polarity must match. Two sources that
//! differ in a way the platform knows and can name are a [`BasisRisk`]
//! (priced or refused per the tenant's `basis_risk`); any other difference
//! is refused.

use rust_decimal::Decimal;
use serde::Serialize;

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

/// A known difference between two settlement sources: the two contracts ask
/// the same question of two different price sources, which can disagree
/// when the price ends near the strike (or the window's opening price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BasisRisk {
    /// Stable name, as listed in docs/live-trading.md.
    pub name: &'static str,
    /// What differs, for the refused-pairs list and the opportunity summary.
    pub description: &'static str,
}

/// Polymarket's 15-minute crypto markets settle on the Chainlink data
/// stream; Kalshi's on CF Benchmarks' Real Time Index (a 60-second average).
pub const CHAINLINK_VS_CF_BENCHMARKS: BasisRisk = BasisRisk {
    name: "chainlink_vs_cf_benchmarks",
    description: "Chainlink's data stream and CF Benchmarks' real time index (a 60-second average) \
                  can settle on opposite sides of the strike when the price ends near it",
};

/// The price-source families the known basis risks are between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oracle {
    Chainlink,
    CfBenchmarks,
}

fn oracle(source: &str) -> Option<Oracle> {
    let s = source.to_ascii_lowercase();
    if s.contains("chain.link") || s.contains("chainlink") {
        Some(Oracle::Chainlink)
    } else if s.contains("cfbenchmarks") || s.contains("cf benchmarks") || s.contains("brti") {
        Some(Oracle::CfBenchmarks)
    } else {
        None
    }
}

/// The basis risk between two differing sources, when it is a known one.
fn known_basis_risk(polymarket: &str, kalshi: &str) -> Option<BasisRisk> {
    match (oracle(polymarket)?, oracle(kalshi)?) {
        (Oracle::Chainlink, Oracle::CfBenchmarks) | (Oracle::CfBenchmarks, Oracle::Chainlink) => {
            Some(CHAINLINK_VS_CF_BENCHMARKS)
        }
        _ => None,
    }
}

fn pays_yes_when(direction: Direction, strike: Option<Decimal>) -> String {
    let strike = strike.map_or_else(|| "the strike".to_owned(), |s| s.normalize().to_string());
    match direction {
        Direction::Up => "the price ends at or above the window's opening price".to_owned(),
        Direction::Above => format!("the price ends above {strike}"),
        Direction::Below => format!("the price ends below {strike}"),
    }
}

/// `Ok` when the Polymarket and Kalshi markets can be traded as one bet
/// (YES on one venue hedges NO on the other, or YES when `inverted`): with
/// the basis risk between their sources, and what it is between, when they
/// differ in a known way; otherwise why not.
pub fn compatibility(
    polymarket: &MarketDef,
    kalshi: &MarketDef,
    inverted: bool,
) -> Result<Option<(BasisRisk, String)>, String> {
    if polymarket.outcomes.len() != 2 || kalshi.outcomes.len() != 2 {
        return Err(format!(
            "not a binary pair: {} has {} outcomes, {} has {}",
            polymarket.id,
            polymarket.outcomes.len(),
            kalshi.id,
            kalshi.outcomes.len()
        ));
    }
    let basis = match (&polymarket.resolution_source, &kalshi.resolution_source) {
        (Some(a), Some(b)) if normalise_source(a) == normalise_source(b) => None,
        (Some(a), Some(b)) if known_basis_risk(a, b).is_some() => {
            known_basis_risk(a, b).map(|risk| {
                (
                    risk,
                    format!(
                        "basis risk {}: polymarket {} resolves on {a:?}, kalshi {} on {b:?} ({})",
                        risk.name, polymarket.id, kalshi.id, risk.description
                    ),
                )
            })
        }
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
    };
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
    if let (Some(pm), Some(k)) = (&polymarket.recurring, &kalshi.recurring) {
        let expected = match (pm.direction, inverted) {
            (d, false) => Some(d),
            (Direction::Above, true) => Some(Direction::Below),
            (Direction::Below, true) => Some(Direction::Above),
            (Direction::Up, true) => None,
        };
        if expected != Some(k.direction)
            || pm.strike.map(|s| s.normalize()) != k.strike.map(|s| s.normalize())
        {
            return Err(format!(
                "polarity differs: polymarket {} pays YES when {}, kalshi {} pays YES when {}{}",
                polymarket.id,
                pays_yes_when(pm.direction, pm.strike),
                kalshi.id,
                pays_yes_when(k.direction, k.strike),
                if inverted {
                    " (the pair is inverted)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(basis)
}
