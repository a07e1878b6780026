//! The paper exchange: the executor of `paper` mode, and of replays and
//! benchmarks. It fills each order the engine emits at once, against the
//! engine's book as it is now (its depth, at or better than the order's
//! limit, with the market's fee formula), and reports back through the same
//! calls a venue's fills take ([`Engine::venue_fill`]'s bookkeeping and
//! [`Engine::order_finished`]), so paper and live share every decision,
//! every piece of accounting and every circuit-breaker rule; only who fills
//! differs.
//!
//! It lives beside the engine, not behind the venues' async executor trait,
//! because the book it matches against is the engine's own: the worker
//! routes paper orders here through the same `Execution::execute` as the
//! venues' orders.
//!
//! Where paper differs from a venue, on purpose:
//! - the liquidity a fill takes leaves the engine's book until the feed
//!   next updates that level (a venue's own book message does that in live);
//!   a later order in the same event meets the rest;
//! - prices and sizes are used as the engine decided them: there is no
//!   venue tick or lot to round to (live rounds the price onto the market's
//!   tick, never worse, and the size down to the lot), and no minimum size;
//! - an order is never refused, never in doubt and never rests.

use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::decision::{Decision, Order};
use crate::engine::{Engine, OrderEnd};

/// Fills orders against the engine's books, at once.
#[derive(Debug, Default)]
pub struct PaperExchange {
    /// The batch being rebuilt (kept to reuse its allocation).
    scratch: Vec<Decision>,
}

impl PaperExchange {
    /// Fills every order among `decisions`: each order is followed by its
    /// fill and the cancel of its unfilled rest, and an opportunity nothing
    /// of which filled is marked not executed.
    pub fn execute<C: Clock>(&mut self, engine: &mut Engine<C>, decisions: &mut Vec<Decision>) {
        if !decisions.iter().any(|d| matches!(d, Decision::Order(_))) {
            return;
        }
        std::mem::swap(&mut self.scratch, decisions);
        decisions.clear();
        for decision in self.scratch.drain(..) {
            let order = match &decision {
                Decision::Order(order) => Some(order.clone()),
                _ => None,
            };
            decisions.push(decision);
            if let Some(order) = order {
                Self::fill(engine, &order, decisions);
            }
        }
        engine.mark_unexecuted(decisions);
    }

    /// Fills one order at once and appends its fill and the cancel of its
    /// unfilled rest.
    pub fn fill<C: Clock>(engine: &mut Engine<C>, order: &Order, out: &mut Vec<Decision>) {
        let Some(sweep) = engine.take_from_book(order) else {
            out.extend(engine.order_finished(
                order,
                Decimal::ZERO,
                OrderEnd::Failed(format!(
                    "paper: market {} outcome {} is unknown",
                    order.market, order.outcome
                )),
            ));
            return;
        };
        if sweep.filled > Decimal::ZERO {
            out.extend(engine.book_fill(
                order,
                sweep.filled,
                sweep.avg_price(),
                sweep.notional,
                sweep.fee,
            ));
        }
        out.extend(engine.order_finished(order, sweep.filled, OrderEnd::Matched));
    }
}
