//! The engine's market table: definitions, one book per outcome, last trades,
//! and a dense index so that strategies are keyed by market, not by string.

use rust_decimal::Decimal;

use crate::book::OrderBook;
use crate::event::{BookDelta, BookSnapshot, MarketDef};
use crate::fees::FeeModel;
use crate::types::{BookSide, FxHashMap, MarketId, MarketIdx, OutcomeIdx};

#[derive(Debug, Clone)]
pub struct MarketState {
    pub def: MarketDef,
    pub fees: FeeModel,
    /// One book per outcome, best-first.
    pub books: Vec<OrderBook>,
    pub last_trade: Vec<Option<Decimal>>,
    pub resolved: Option<OutcomeIdx>,
}

impl MarketState {
    fn new(def: MarketDef) -> Self {
        let n = def.outcomes.len();
        Self {
            fees: def.fee_model(),
            books: vec![OrderBook::new(); n],
            last_trade: vec![None; n],
            resolved: None,
            def,
        }
    }

    pub fn is_binary(&self) -> bool {
        self.books.len() == 2
    }

    /// A price at which `outcome` could be sold now: best bid, else last
    /// trade; none if neither is known.
    pub fn mark(&self, outcome: OutcomeIdx) -> Option<Decimal> {
        self.books
            .get(outcome)
            .and_then(|b| b.best_bid().map(|l| l.price))
            .or_else(|| self.last_trade.get(outcome).copied().flatten())
    }
}

/// Why a book event could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("book for unknown market {0}: its definition has not been received")]
    UnknownMarket(MarketId),
    #[error("market {market} has {outcomes} outcomes, no outcome {outcome}")]
    UnknownOutcome {
        market: MarketId,
        outcome: OutcomeIdx,
        outcomes: usize,
    },
}

#[derive(Debug, Default)]
pub struct Markets {
    states: Vec<MarketState>,
    index: FxHashMap<MarketId, MarketIdx>,
}

impl Markets {
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    pub fn get(&self, idx: MarketIdx) -> &MarketState {
        &self.states[idx]
    }

    pub fn get_mut(&mut self, idx: MarketIdx) -> &mut MarketState {
        &mut self.states[idx]
    }

    pub fn find(&self, id: &str) -> Option<MarketIdx> {
        self.index.get(id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (MarketIdx, &MarketState)> {
        self.states.iter().enumerate()
    }

    /// Adds a market, or updates its definition (keeping books of the same
    /// shape). Returns its index and whether it is new.
    pub fn upsert(&mut self, def: MarketDef) -> (MarketIdx, bool) {
        if let Some(&idx) = self.index.get(def.id.as_str()) {
            let state = &mut self.states[idx];
            if state.def.outcomes.len() != def.outcomes.len() {
                *state = MarketState::new(def);
            } else {
                state.fees = def.fee_model();
                state.def = def;
            }
            (idx, false)
        } else {
            let idx = self.states.len();
            self.index.insert(def.id.clone(), idx);
            self.states.push(MarketState::new(def));
            (idx, true)
        }
    }

    fn locate(&self, market: &MarketId, outcome: OutcomeIdx) -> Result<MarketIdx, BookError> {
        let idx = self
            .find(market.as_str())
            .ok_or_else(|| BookError::UnknownMarket(market.clone()))?;
        let outcomes = self.states[idx].books.len();
        if outcome >= outcomes {
            return Err(BookError::UnknownOutcome {
                market: market.clone(),
                outcome,
                outcomes,
            });
        }
        Ok(idx)
    }

    pub fn apply_snapshot(&mut self, snap: &BookSnapshot) -> Result<MarketIdx, BookError> {
        let idx = self.locate(&snap.market, snap.outcome)?;
        let state = &mut self.states[idx];
        let book = &mut state.books[snap.outcome];
        book.replace_side(BookSide::Bid, &snap.bids);
        if state.def.asks_mirror_bids() {
            mirror(state, snap.outcome);
        } else {
            state.books[snap.outcome].replace_side(BookSide::Ask, &snap.asks);
        }
        Ok(idx)
    }

    pub fn apply_delta(&mut self, delta: &BookDelta) -> Result<MarketIdx, BookError> {
        let idx = self.locate(&delta.market, delta.outcome)?;
        let state = &mut self.states[idx];
        if state.def.asks_mirror_bids() {
            if delta.side == BookSide::Bid {
                state.books[delta.outcome].set_level(BookSide::Bid, delta.price, delta.size);
                let other = 1 - delta.outcome;
                state.books[other].set_level(BookSide::Ask, Decimal::ONE - delta.price, delta.size);
            }
            // Kalshi sends no asks; one that arrives anyway is not the venue's truth.
        } else {
            state.books[delta.outcome].set_level(delta.side, delta.price, delta.size);
        }
        Ok(idx)
    }
}

/// Rebuilds the other outcome's asks from `outcome`'s bids (binary Kalshi).
fn mirror(state: &mut MarketState, outcome: OutcomeIdx) {
    let other = 1 - outcome;
    let (a, b) = state.books.split_at_mut(1);
    let (from, to) = if outcome == 0 {
        (&a[0], &mut b[0])
    } else {
        (&b[0], &mut a[0])
    };
    to.replace_side_mirrored(BookSide::Ask, from.bids());
    debug_assert!(other < 2);
}
