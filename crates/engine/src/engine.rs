//! The event processor: one event in, decisions out, for one tenant.
//!
//! Each event updates the market state, wakes only the strategies keyed to
//! what changed (a book wakes the strategies watching that market, a spot price
//! the 15-minute markets of that asset, a headline the news rules), and every
//! proposal then goes through the tenant's risk checks and becomes orders.
//! The engine fills nothing itself: an executor (the paper exchange,
//! [`crate::paper::PaperExchange`], or a venue's, in the worker) reports what
//! became of each order through [`Engine::venue_fill`] and
//! [`Engine::order_finished`], the one path by which fills reach the
//! portfolio and outcomes reach the circuit breakers, in every mode.
//! Nothing here does I/O or reads the wall clock.

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{StrategiesConfig, StrategyKind, Venue};
use polybot_core::validation::FieldError;

use crate::breaker::{BreakerState, CircuitBreaker};
use crate::clock::{Clock, Timestamp};
use crate::decision::{
    Cancel, CarriedFill, Decision, Fill, Opportunity, OpportunityId, Order, OrderId, Rejection,
    Settlement,
};
use crate::event::{Event, EventKind};
use crate::health::{HealthStatus, RateLimit, StrategyHealth};
use crate::market::{BookError, MarketState, Markets};
use crate::portfolio::{Portfolio, PortfolioSnapshot};
use crate::risk::RiskManager;
use crate::strategies::Proposal;
use crate::strategies::complement_arb::ComplementArb;
use crate::strategies::cross_venue_arb::{CrossVenueArb, PairView};
use crate::strategies::crypto_15m::Crypto15m;
use crate::strategies::news_arb::NewsArb;
use crate::types::{MarketId, MarketIdx, Side};

/// How an executor finished with an order ([`Engine::order_finished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEnd {
    /// The venue is done matching it: filled, or the unfilled rest of an
    /// immediate-or-cancel order killed. An unfilled rest counts as a
    /// failure for the strategy's circuit breaker (the book did not hold
    /// what the strategy saw), in paper and live alike.
    Matched,
    /// The venue refused or failed it (or it stayed in doubt after every
    /// retry): a failure for the breaker at once, with the reason (each
    /// such order counts, so a venue failing every order opens the breaker
    /// fast).
    Failed(String),
    /// Taken back without the venue failing: cancelled by the kill switch
    /// or on stop, never sent (shadow, a fenced worker, the market's rules
    /// refused it before signing). The breaker does not count it.
    Withdrawn(String),
}

/// Everything one tenant's engine needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineConfig {
    pub strategies: StrategiesConfig,
    pub risk: RiskLimits,
    /// Starting cash per venue (paper balances).
    pub balances: Vec<(Venue, Decimal)>,
}

impl EngineConfig {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.strategies.validate();
        errors.extend(self.risk.validate());
        for (i, (venue, amount)) in self.balances.iter().enumerate() {
            if *amount < Decimal::ZERO {
                errors.push(FieldError::new(
                    format!("balances[{i}]"),
                    format!("{venue} starting balance must not be negative, got {amount}"),
                ));
            }
        }
        errors
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("engine config is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig(Vec<FieldError>),
    #[error(transparent)]
    Book(#[from] BookError),
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub events: u64,
    pub opportunities: u64,
    pub orders: u64,
    pub fills: u64,
    pub cancels: u64,
    pub rejections: u64,
    /// Events that referred to unknown markets or outcomes.
    pub data_errors: u64,
}

#[derive(Debug)]
pub struct Engine<C: Clock> {
    clock: C,
    markets: Markets,
    portfolio: Portfolio,
    risk: RiskManager,
    complement: Option<ComplementArb>,
    cross: Option<CrossVenueArb>,
    crypto: Option<Crypto15m>,
    news: Option<NewsArb>,
    breakers: [CircuitBreaker; 4],
    rate_limits: [Option<RateLimit>; 4],
    degraded: [Option<String>; 4],
    proposals: Vec<Proposal>,
    next_opportunity: u64,
    next_order: u64,
    stats: EngineStats,
    /// Opportunities with orders the executor has not finished with.
    in_flight: Vec<InFlight>,
    /// Opportunities whose orders all finished with nothing filled, and
    /// why: [`Engine::mark_unexecuted`] writes them into their rows.
    unexecuted: Vec<(OpportunityId, String)>,
    /// Positions the venue held before the engine started whose market has
    /// not been listed yet: booked into the portfolio when it is.
    unlisted_carried: Vec<CarriedPosition>,
}

/// An opportunity whose orders are out: what its legs did so far. Its
/// strategy's breaker counts it once, when the last leg finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    id: OpportunityId,
    strategy: StrategyKind,
    /// Legs not finished yet.
    open: u32,
    /// Why the first failing leg failed (a vanished market, an unfilled
    /// rest, a venue's refusal): a breaker failure.
    failure: Option<String>,
    /// The first reason any leg gave (a withdrawn one too), for the row of
    /// an opportunity nothing of which filled.
    reason: Option<String>,
    /// Whether any leg counts for the breaker (not all were withdrawn).
    counted: bool,
    /// Whether a leg's venue failure was counted already (each one is, as
    /// it happens): the opportunity adds no failure of its own then.
    venue_failed: bool,
    /// Legs with a fill, as (market, outcome).
    filled: Vec<(MarketIdx, usize)>,
}

/// The engine's market and outcome of a venue's `instrument` in its market
/// `venue_market` (Polymarket: a token of a condition; Kalshi: `TICKER:yes`
/// or `TICKER:no`, or the side alone, of the market named by its ticker),
/// with the market's number of outcomes.
fn venue_instrument(
    markets: &Markets,
    venue_market: &str,
    instrument: &str,
) -> Option<(MarketIdx, usize, usize)> {
    markets.iter().find_map(|(idx, state)| {
        let def = &state.def;
        let outcome = match &def.venue_ids {
            Some(ids) if ids.market == venue_market => {
                ids.instruments.iter().position(|i| i == instrument)?
            }
            None if def.venue == Venue::Kalshi && def.id.as_str() == venue_market => {
                let side = instrument
                    .strip_prefix(venue_market)
                    .and_then(|s| s.strip_prefix(':'))
                    .unwrap_or(instrument);
                ["yes", "no"].iter().position(|s| side == *s)?
            }
            _ => return None,
        };
        (outcome < state.books.len()).then_some((idx, state.books.len(), outcome))
    })
}

/// A position the venue held before the engine started (live
/// reconciliation), at its cost basis.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CarriedPosition {
    /// The venue's market id (the condition id on Polymarket).
    venue_market: String,
    /// The venue's instrument (the CLOB token id on Polymarket).
    instrument: String,
    size: Decimal,
    cost: Decimal,
}

impl<C: Clock> Engine<C> {
    /// An engine for one tenant; the config is validated again here so that a
    /// config that skipped the API cannot run.
    pub fn new(config: EngineConfig, clock: C) -> Result<Self, EngineError> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(EngineError::InvalidConfig(errors));
        }
        let s = config.strategies;
        let breaker = || {
            CircuitBreaker::new(
                config.risk.breaker_failure_threshold,
                config.risk.breaker_cooldown_secs,
            )
        };
        Ok(Self {
            clock,
            markets: Markets::default(),
            portfolio: Portfolio::new(&config.balances),
            risk: RiskManager::new(config.risk.clone()),
            complement: s
                .complement_arb
                .filter(|c| c.enabled)
                .map(ComplementArb::new),
            cross: s
                .cross_venue_arb
                .filter(|c| c.enabled)
                .map(CrossVenueArb::new),
            crypto: s.crypto_15m.filter(|c| c.enabled).map(Crypto15m::new),
            news: s.news_arb.filter(|c| c.enabled).map(NewsArb::new),
            breakers: [breaker(), breaker(), breaker(), breaker()],
            rate_limits: [None, None, None, None],
            degraded: [None, None, None, None],
            proposals: Vec::with_capacity(8),
            next_opportunity: 1,
            next_order: 1,
            stats: EngineStats::default(),
            in_flight: Vec::new(),
            unexecuted: Vec::new(),
            unlisted_carried: Vec::new(),
        })
    }

    /// Books a fill the venue reported for `order`: cash, position, fee.
    /// Returns the fill as a decision (for the worker to record), or none
    /// when the order's market is unknown.
    pub fn venue_fill(
        &mut self,
        order: &Order,
        size: Decimal,
        avg_price: Decimal,
        fee: Decimal,
    ) -> Option<Decision> {
        self.book_fill(order, size, avg_price, size * avg_price, fee)
    }

    /// [`Engine::venue_fill`] with the notional as the executor computed it
    /// (the paper exchange sums it level by level).
    pub(crate) fn book_fill(
        &mut self,
        order: &Order,
        size: Decimal,
        avg_price: Decimal,
        notional: Decimal,
        fee: Decimal,
    ) -> Option<Decision> {
        let idx = self.markets.find(order.market.as_str())?;
        let outcomes = self.markets.get(idx).books.len();
        let mut fill = Fill {
            order: order.id,
            opportunity: order.opportunity,
            strategy: order.strategy,
            ts: self.clock.now(),
            venue: order.venue,
            market: order.market.clone(),
            outcome: order.outcome,
            side: order.side,
            size,
            avg_price,
            notional,
            fee,
            realised_pnl: Decimal::ZERO,
        };
        fill.realised_pnl = self.portfolio.apply_fill(idx, outcomes, &fill);
        self.stats.fills += 1;
        if let Some(f) = self
            .in_flight
            .iter_mut()
            .find(|f| f.id == order.opportunity)
            && !f.filled.contains(&(idx, order.outcome))
        {
            f.filled.push((idx, order.outcome));
        }
        Some(Decision::Fill(fill))
    }

    /// The executor is done with `order` (filled, killed, refused,
    /// cancelled, or in shadow mode never sent): it no longer counts as
    /// open. Returns the cancel of the unfilled rest, if any, with the
    /// reason `end` gives (or the immediate-or-cancel explanation). When the
    /// last order of its opportunity finishes, the strategy's breaker counts
    /// the opportunity once (a failure when a leg did not fill in full or
    /// its market vanished; a venue's failure of an order counted at once,
    /// see [`OrderEnd`]),
    /// the two filled legs of a cross-venue pair are valued as a set, and an
    /// opportunity nothing of which filled is queued for
    /// [`Engine::mark_unexecuted`].
    pub fn order_finished(
        &mut self,
        order: &Order,
        filled: Decimal,
        end: OrderEnd,
    ) -> Option<Decision> {
        self.risk.order_closed();
        let now = self.clock.now();
        let unfilled = filled < order.size;
        let ioc = || {
            format!(
                "immediate-or-cancel: {filled} of {} {} {} filled at or better than {}",
                order.size, order.market, order.outcome, order.limit_price
            )
        };
        let venue_failed = matches!(end, OrderEnd::Failed(_));
        let (reason, failure, counted) = match end {
            OrderEnd::Matched if unfilled => {
                let reason = ioc();
                (Some(reason.clone()), Some(reason), true)
            }
            OrderEnd::Matched => (None, None, true),
            OrderEnd::Failed(reason) => (Some(reason.clone()), Some(reason), true),
            OrderEnd::Withdrawn(reason) => (Some(reason), None, false),
        };
        if venue_failed && let Some(reason) = &failure {
            self.breakers[order.strategy.index()].record_failure(now, reason.clone());
        }
        if let Some(at) = self
            .in_flight
            .iter()
            .position(|f| f.id == order.opportunity)
        {
            let f = &mut self.in_flight[at];
            f.open = f.open.saturating_sub(1);
            f.counted |= counted;
            f.venue_failed |= venue_failed;
            if f.failure.is_none() {
                f.failure = failure;
            }
            if f.reason.is_none() {
                f.reason = reason.clone();
            }
            if f.open == 0 {
                let done = self.in_flight.swap_remove(at);
                self.opportunity_finished(now, done);
            }
        }
        if !unfilled {
            return None;
        }
        self.stats.cancels += 1;
        Some(Decision::Cancel(Cancel {
            order: order.id,
            ts: now,
            market: order.market.clone(),
            remaining: order.size - filled,
            reason: reason.unwrap_or_else(ioc),
        }))
    }

    /// Every order of an opportunity is done.
    fn opportunity_finished(&mut self, now: Timestamp, done: InFlight) {
        // A cross-venue pair's two legs pay exactly 1 together: the
        // accounting values them as a set, so the locked edge shows.
        if done.strategy == StrategyKind::CrossVenueArb
            && let [a, b] = done.filled[..]
        {
            self.portfolio.hedge(done.strategy, a, b);
        }
        if done.filled.is_empty() {
            let reason = done
                .reason
                .clone()
                .unwrap_or_else(|| "no order of the opportunity filled".to_owned());
            self.unexecuted.push((done.id, reason));
        }
        if done.counted && !done.venue_failed {
            let breaker = &mut self.breakers[done.strategy.index()];
            match done.failure {
                Some(reason) => breaker.record_failure(now, reason),
                None => breaker.record_success(),
            }
        }
    }

    /// Marks the opportunities among `decisions` nothing of which filled as
    /// not executed, with the first reason one of their orders gave (the
    /// engine marked them executed when it emitted their orders). An
    /// opportunity whose row is not among `decisions` (its last order
    /// finished later) keeps its row.
    pub fn mark_unexecuted(&mut self, decisions: &mut [Decision]) {
        if self.unexecuted.is_empty() {
            return;
        }
        for (id, reason) in self.unexecuted.drain(..) {
            for decision in decisions.iter_mut() {
                if let Decision::Opportunity(o) = decision
                    && o.id == id
                {
                    o.executed_at = None;
                    o.rejection = Some(reason);
                    break;
                }
            }
        }
    }

    /// Takes `order`'s size from the engine's book at or better than its
    /// limit, with the market's fee formula: the paper exchange's matching.
    /// The liquidity taken leaves the book until the feed next updates the
    /// level (standing in for the venue's book message after a real fill).
    /// `None` when the order's market is unknown.
    pub(crate) fn take_from_book(&mut self, order: &Order) -> Option<crate::book::Sweep> {
        let idx = self.markets.find(order.market.as_str())?;
        let state = self.markets.get_mut(idx);
        let fees = state.fees;
        let book = state.books.get_mut(order.outcome)?;
        Some(book.take(order.side, order.limit_price, order.size, &fees))
    }

    /// Orders sent and not yet finished (live: working at the venue), as
    /// the `max_open_orders` limit counts them.
    pub fn open_orders(&self) -> u32 {
        self.risk.open_orders()
    }

    /// Books a position the venue held before the engine started (live
    /// reconciliation): `size` of the venue's `instrument` (the CLOB token
    /// id on Polymarket) in its market `venue_market` (the condition id),
    /// at a cost basis of `cost`. Once the market is listed it is a
    /// position like any other: marked to the book, so it is in unrealised
    /// PnL, equity and today's loss, and it counts towards
    /// `max_position_per_market` and `max_total_exposure`; until then its
    /// cost counts towards `max_total_exposure`.
    pub fn carry_position(
        &mut self,
        venue_market: &str,
        instrument: &str,
        size: Decimal,
        cost: Decimal,
    ) {
        self.unlisted_carried.push(CarriedPosition {
            venue_market: venue_market.to_owned(),
            instrument: instrument.to_owned(),
            size,
            cost,
        });
        self.book_carried();
    }

    /// Books a venue's fill of an order that was open there before the
    /// engine started (found at reconciliation): `size` of the venue's
    /// `instrument` in its market `venue_market` at `price`, into the
    /// positions of no strategy, like a carried position. `None` when the
    /// market is not listed (the next start's reconciliation finds the
    /// position then).
    #[allow(clippy::too_many_arguments)]
    pub fn carried_fill(
        &mut self,
        trade_id: &str,
        venue_order_id: &str,
        venue_market: &str,
        instrument: &str,
        side: Side,
        size: Decimal,
        price: Decimal,
        fee: Decimal,
    ) -> Option<Decision> {
        let (idx, outcomes, outcome) = venue_instrument(&self.markets, venue_market, instrument)?;
        let venue = self.markets.get(idx).def.venue;
        let notional = size * price;
        let traded = crate::portfolio::Traded {
            venue,
            outcome,
            side,
            size,
            notional,
            fee,
        };
        let realised_pnl = self.portfolio.apply_carried_fill(idx, outcomes, &traded);
        self.stats.fills += 1;
        Some(Decision::CarriedFill(CarriedFill {
            trade_id: trade_id.to_owned(),
            venue_order_id: venue_order_id.to_owned(),
            ts: self.clock.now(),
            venue,
            market: self.markets.get(idx).def.id.clone(),
            outcome,
            side,
            size,
            avg_price: price,
            notional,
            fee,
            realised_pnl,
        }))
    }

    /// Books every carried position whose market is now listed.
    fn book_carried(&mut self) {
        if self.unlisted_carried.is_empty() {
            return;
        }
        let markets = &self.markets;
        let portfolio = &mut self.portfolio;
        let risk = &mut self.risk;
        self.unlisted_carried.retain(|c| {
            match venue_instrument(markets, &c.venue_market, &c.instrument) {
                Some((idx, outcomes, outcome)) => {
                    portfolio.carry(idx, outcomes, outcome, c.size, c.cost);
                    risk.carried_booked(c.cost);
                    false
                }
                _ => true,
            }
        });
        self.risk
            .set_unlisted_carried(self.unlisted_carried.iter().map(|c| c.cost).sum());
    }

    /// Sets a venue's cash to what the venue reports (live reconciliation).
    pub fn set_cash(&mut self, venue: Venue, amount: Decimal) {
        self.portfolio.set_cash(venue, amount);
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn market(&self, id: &str) -> Option<&MarketState> {
        self.markets.find(id).map(|i| self.markets.get(i))
    }

    pub fn portfolio(&self) -> PortfolioSnapshot {
        self.portfolio.snapshot(&self.markets)
    }

    /// Today's (UTC) PnL marked to market, as the daily-loss limit sees it.
    pub fn daily_pnl(&self) -> Decimal {
        self.risk.daily_pnl(&self.portfolio, &self.markets)
    }

    /// Whether the daily-loss limit refuses new orders now.
    pub fn daily_loss_limit_hit(&self) -> bool {
        self.risk
            .daily_loss_limit_hit(&self.portfolio, &self.markets)
    }

    /// The 15-minute model's view of `market` now (none if it is not a live
    /// window or its inputs are missing).
    pub fn crypto_fair_value(
        &self,
        market: &str,
    ) -> Option<crate::strategies::crypto_15m::FairValue> {
        let idx = self.markets.find(market)?;
        self.crypto.as_ref()?.fair_value(self.clock.now(), idx)
    }

    /// Cross-venue pairs found so far, with why blocked ones are never traded.
    pub fn pairs(&self) -> Vec<PairView> {
        self.cross
            .as_ref()
            .map(|c| c.pairs(&self.markets))
            .unwrap_or_default()
    }

    pub fn is_enabled(&self, kind: StrategyKind) -> bool {
        match kind {
            StrategyKind::ComplementArb => self.complement.is_some(),
            StrategyKind::CrossVenueArb => self.cross.is_some(),
            StrategyKind::Crypto15m => self.crypto.is_some(),
            StrategyKind::NewsArb => self.news.is_some(),
        }
    }

    /// Turns the kill switch on or off (on rejects every new order).
    pub fn set_kill_switch(&mut self, on: bool) {
        self.risk.set_kill_switch(on);
    }

    /// A failure outside the engine (a venue error in live execution, a feed
    /// that keeps failing) counts towards the strategy's breaker.
    pub fn record_failure(&mut self, kind: StrategyKind, reason: impl Into<String>) {
        let now = self.clock.now();
        self.breakers[kind.index()].record_failure(now, reason);
    }

    pub fn record_success(&mut self, kind: StrategyKind) {
        self.breakers[kind.index()].record_success();
    }

    /// Marks a strategy degraded outside the event stream: only for a worker
    /// that has no market data feed at all (nothing to record or replay).
    /// Live feeds report through [`EventKind::FeedHealth`] events.
    pub fn set_degraded(&mut self, kind: StrategyKind, reason: Option<String>) {
        self.degraded[kind.index()] = reason;
    }

    /// Health of every enabled strategy.
    pub fn health(&self) -> Vec<StrategyHealth> {
        let now = self.clock.now();
        StrategyKind::ALL
            .into_iter()
            .filter(|k| self.is_enabled(*k))
            .map(|kind| {
                let breaker = &self.breakers[kind.index()];
                let state = breaker.state(now);
                let rate_limit = self.rate_limits[kind.index()]
                    .as_ref()
                    .filter(|r| r.until.is_none_or(|u| now < u));
                let internal = match kind {
                    StrategyKind::Crypto15m => {
                        self.crypto.as_ref().and_then(|c| c.health_issue(now))
                    }
                    StrategyKind::NewsArb => self.news.as_ref().and_then(NewsArb::health_issue),
                    _ => None,
                };
                let (status, reason) = if let BreakerState::Open { until } = state {
                    (
                        HealthStatus::BreakerOpen,
                        Some(format!(
                            "circuit breaker open until {} after {} consecutive failures; last: {}",
                            until.0,
                            breaker.consecutive_failures(),
                            breaker.last_failure().unwrap_or("unknown")
                        )),
                    )
                } else if let Some(limit) = rate_limit {
                    (HealthStatus::RateLimited, Some(limit.reason.clone()))
                } else if state == BreakerState::HalfOpen {
                    (
                        HealthStatus::Degraded,
                        Some(format!(
                            "circuit breaker half-open: one trial allowed; last failure: {}",
                            breaker.last_failure().unwrap_or("unknown")
                        )),
                    )
                } else if let Some(reason) = self.degraded[kind.index()].clone().or(internal) {
                    (HealthStatus::Degraded, Some(reason))
                } else if breaker.consecutive_failures() > 0 {
                    (
                        HealthStatus::Degraded,
                        Some(format!(
                            "{} consecutive failures; last: {}",
                            breaker.consecutive_failures(),
                            breaker.last_failure().unwrap_or("unknown")
                        )),
                    )
                } else {
                    (HealthStatus::Ok, None)
                };
                StrategyHealth {
                    strategy: kind,
                    status,
                    reason,
                    breaker: state,
                    consecutive_failures: breaker.consecutive_failures(),
                }
            })
            .collect()
    }

    /// Processes a whole stream in paper (a replay, or a live channel
    /// drained into an iterator): each event's orders are filled by the
    /// paper exchange, and its decisions handed to `sink`. Data errors are
    /// counted in [`EngineStats::data_errors`] and do not stop the stream.
    pub fn run<I, F>(&mut self, events: I, mut sink: F)
    where
        I: IntoIterator<Item = Event>,
        F: FnMut(&[Decision]),
    {
        let mut out = Vec::with_capacity(16);
        let mut paper = crate::paper::PaperExchange::default();
        for event in events {
            out.clear();
            // The error is already counted; a replay skips an event it cannot apply.
            if self.on_event(&event, &mut out).is_err() {
                continue;
            }
            paper.execute(self, &mut out);
            if !out.is_empty() {
                sink(&out);
            }
        }
    }

    /// Processes one event, appending its decisions to `out`.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<Decision>) -> Result<(), EngineError> {
        self.clock.observe(event.ts);
        let now = self.clock.now();
        self.stats.events += 1;
        self.risk.roll_day(now, &self.portfolio, &self.markets);
        let result = self.dispatch(now, event, out);
        if result.is_err() {
            self.stats.data_errors += 1;
        }
        if !self.proposals.is_empty() {
            self.execute_proposals(now, out);
        }
        result
    }

    fn dispatch(
        &mut self,
        now: Timestamp,
        event: &Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        match &event.kind {
            EventKind::Book(snapshot) => {
                let idx = self.markets.apply_snapshot(snapshot)?;
                self.on_book_changed(now, idx);
            }
            EventKind::BookDelta(delta) => {
                let idx = self.markets.apply_delta(delta)?;
                self.on_book_changed(now, idx);
            }
            EventKind::Spot(spot) => {
                if let Some(s) = self.crypto.as_mut()
                    && self.breakers[StrategyKind::Crypto15m.index()].allows(now)
                {
                    s.on_spot(
                        now,
                        spot.venue,
                        &spot.asset,
                        spot.price,
                        event.ts,
                        &self.markets,
                        &mut self.proposals,
                    );
                }
            }
            EventKind::Trade(trade) => {
                let idx = self
                    .markets
                    .find(trade.market.as_str())
                    .ok_or_else(|| BookError::UnknownMarket(trade.market.clone()))?;
                let state = self.markets.get_mut(idx);
                let outcomes = state.last_trade.len();
                let slot =
                    state
                        .last_trade
                        .get_mut(trade.outcome)
                        .ok_or(BookError::UnknownOutcome {
                            market: trade.market.clone(),
                            outcome: trade.outcome,
                            outcomes,
                        })?;
                *slot = Some(trade.price);
            }
            EventKind::Tick => {
                if let Some(s) = self.crypto.as_mut()
                    && self.breakers[StrategyKind::Crypto15m.index()].allows(now)
                {
                    s.on_tick(now, &self.markets, &mut self.proposals);
                }
                for limit in &mut self.rate_limits {
                    if limit
                        .as_ref()
                        .is_some_and(|l| l.until.is_some_and(|u| now >= u))
                    {
                        *limit = None;
                    }
                }
            }
            EventKind::Headline(headline) => {
                if let Some(s) = self.news.as_mut()
                    && self.breakers[StrategyKind::NewsArb.index()].allows(now)
                {
                    s.on_headline(now, headline, &self.markets, &mut self.proposals);
                }
            }
            EventKind::Market(def) => {
                let (idx, _) = self.markets.upsert((**def).clone());
                self.book_carried();
                if let Some(s) = self.complement.as_mut() {
                    s.on_market_listed(idx);
                }
                if let Some(s) = self.cross.as_mut() {
                    s.on_market_listed(now, &self.markets, idx, out);
                }
                let def = &self.markets.get(idx).def;
                if let Some(s) = self.crypto.as_mut() {
                    s.on_market_listed(idx, def);
                }
                if let Some(s) = self.news.as_mut() {
                    s.on_market_listed(idx, def);
                }
            }
            EventKind::FeedHealth(health) => {
                let idx = health.strategy.index();
                self.degraded[idx] = health.degraded.clone();
                self.rate_limits[idx] = health.rate_limited.clone();
            }
            EventKind::Resolved(resolution) => {
                let idx = self
                    .markets
                    .find(resolution.market.as_str())
                    .ok_or_else(|| BookError::UnknownMarket(resolution.market.clone()))?;
                let state = self.markets.get_mut(idx);
                if resolution.outcome >= state.books.len() {
                    return Err(BookError::UnknownOutcome {
                        market: resolution.market.clone(),
                        outcome: resolution.outcome,
                        outcomes: state.books.len(),
                    }
                    .into());
                }
                if state.resolved.is_none() {
                    state.resolved = Some(resolution.outcome);
                    let venue = state.def.venue;
                    for payout in self.portfolio.settle(venue, idx, resolution.outcome) {
                        out.push(Decision::Settlement(Settlement {
                            ts: now,
                            strategy: payout.strategy,
                            market: resolution.market.clone(),
                            winning_outcome: resolution.outcome,
                            payout: payout.payout,
                            realised_pnl: payout.realised_pnl,
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn on_book_changed(&mut self, now: Timestamp, idx: MarketIdx) {
        if let Some(s) = self.complement.as_mut()
            && self.breakers[StrategyKind::ComplementArb.index()].allows(now)
        {
            s.evaluate(now, &self.markets, idx, &mut self.proposals);
        }
        if let Some(s) = self.cross.as_mut()
            && s.watches(idx)
            && self.breakers[StrategyKind::CrossVenueArb.index()].allows(now)
        {
            s.evaluate(now, &self.markets, idx, &mut self.proposals);
        }
        if let Some(s) = self.crypto.as_mut()
            && s.watches(idx)
            && self.breakers[StrategyKind::Crypto15m.index()].allows(now)
        {
            s.evaluate(now, &self.markets, idx, &mut self.proposals);
        }
        if let Some(s) = self.news.as_mut()
            && s.watches(idx)
            && self.breakers[StrategyKind::NewsArb.index()].allows(now)
        {
            s.evaluate(now, &self.markets, idx, &mut self.proposals);
        }
    }

    fn execute_proposals(&mut self, now: Timestamp, out: &mut Vec<Decision>) {
        let mut proposals = std::mem::take(&mut self.proposals);
        for proposal in proposals.drain(..) {
            self.execute(now, proposal, out);
        }
        self.proposals = proposals;
    }

    /// Risk-checks a proposal as a batch, then emits each leg as an
    /// immediate-or-cancel order for the executor (the same in every mode).
    fn execute(&mut self, now: Timestamp, proposal: Proposal, out: &mut Vec<Decision>) {
        let id = OpportunityId(self.next_opportunity);
        self.next_opportunity += 1;
        self.stats.opportunities += 1;
        let strategy = proposal.strategy;
        let mut opportunity = Opportunity {
            id,
            strategy,
            detected_at: now,
            expected_profit: proposal.edge * proposal.size,
            edge: proposal.edge,
            legs: proposal.legs,
            summary: proposal.summary,
            executed_at: None,
            rejection: None,
        };
        if let Err(violation) = self
            .risk
            .check(&opportunity.legs, &self.portfolio, &self.markets)
        {
            self.stats.rejections += 1;
            let reason = violation.to_string();
            opportunity.rejection = Some(reason.clone());
            out.push(Decision::Opportunity(opportunity));
            out.push(Decision::Rejected(Rejection {
                opportunity: id,
                strategy,
                ts: now,
                violation,
                reason,
            }));
            return;
        }
        let at = out.len();
        opportunity.executed_at = Some(now);
        out.push(Decision::Opportunity(opportunity));
        let mut in_flight = InFlight {
            id,
            strategy,
            open: 0,
            failure: None,
            reason: None,
            counted: false,
            venue_failed: false,
            filled: Vec::new(),
        };
        let Decision::Opportunity(opportunity) = &out[at] else {
            unreachable!("the opportunity was just pushed")
        };
        let mut orders = Vec::with_capacity(opportunity.legs.len());
        for leg in &opportunity.legs {
            if self.markets.find(leg.market.as_str()).is_none() {
                let reason = format!("leg market {} vanished before execution", leg.market);
                in_flight.counted = true;
                in_flight.failure.get_or_insert_with(|| reason.clone());
                in_flight.reason.get_or_insert(reason);
                continue;
            }
            let order_id = OrderId(self.next_order);
            self.next_order += 1;
            self.stats.orders += 1;
            self.risk.order_opened();
            in_flight.open += 1;
            orders.push(Decision::Order(Order {
                id: order_id,
                opportunity: id,
                strategy,
                ts: now,
                venue: leg.venue,
                market: leg.market.clone(),
                outcome: leg.outcome,
                side: leg.side,
                limit_price: leg.limit_price,
                size: leg.size,
            }));
        }
        out.append(&mut orders);
        if in_flight.open == 0 {
            self.opportunity_finished(now, in_flight);
            self.mark_unexecuted(&mut out[at..]);
        } else {
            self.in_flight.push(in_flight);
        }
    }

    /// The ids of every market the engine knows, for reports.
    pub fn market_ids(&self) -> Vec<MarketId> {
        self.markets.iter().map(|(_, m)| m.def.id.clone()).collect()
    }
}
