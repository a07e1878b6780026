//! The event processor: one event in, decisions out, for one tenant.
//!
//! Each event updates the market state, wakes only the strategies keyed to
//! what changed (a book wakes the strategies watching that market, a spot price
//! the 15-minute markets of that asset, a headline the news rules), and every
//! proposal then goes through the tenant's risk checks and paper execution.
//! Nothing here does I/O or reads the wall clock.

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{StrategiesConfig, StrategyKind, Venue};
use polybot_core::validation::FieldError;

use crate::breaker::{BreakerState, CircuitBreaker};
use crate::clock::{Clock, Timestamp};
use crate::decision::{
    Cancel, Decision, Fill, Opportunity, OpportunityId, Order, OrderId, Rejection, Settlement,
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
use crate::types::{MarketId, MarketIdx};

/// Who fills the engine's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// The engine's simulated exchange: each order takes the book's depth
    /// at once, with the venue's fee formula (replays, paper tenants).
    #[default]
    Paper,
    /// A venue: the engine emits orders and books the fills the worker
    /// reports back ([`Engine::venue_fill`], [`Engine::order_finished`]).
    Venue,
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
    execution: Execution,
    /// Positions the venue held before the engine started whose market has
    /// not been listed yet: booked into the portfolio when it is.
    unlisted_carried: Vec<CarriedPosition>,
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
            execution: Execution::Paper,
            unlisted_carried: Vec::new(),
        })
    }

    /// Chooses who fills the orders; the decisions are the same either way.
    pub fn set_execution(&mut self, execution: Execution) {
        self.execution = execution;
    }

    pub fn execution(&self) -> Execution {
        self.execution
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
        let idx = self.markets.find(order.market.as_str())?;
        let outcomes = self.markets.get(idx).books.len();
        let notional = size * avg_price;
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
        Some(Decision::Fill(fill))
    }

    /// The venue is done with `order` (filled, killed, refused, cancelled,
    /// or in shadow mode never sent): it no longer counts as open, and when
    /// `failed` its strategy's breaker counts a failure. Returns the cancel
    /// of the unfilled rest, if any, with `reason` (or the
    /// immediate-or-cancel explanation).
    pub fn order_finished(
        &mut self,
        order: &Order,
        filled: Decimal,
        reason: Option<String>,
        failed: bool,
    ) -> Option<Decision> {
        self.risk.order_closed();
        let now = self.clock.now();
        let breaker = &mut self.breakers[order.strategy.index()];
        match (&reason, failed) {
            (Some(reason), true) => breaker.record_failure(now, reason.clone()),
            (None, true) => breaker.record_failure(now, "the venue failed the order"),
            (_, false) => breaker.record_success(),
        }
        if filled >= order.size {
            return None;
        }
        self.stats.cancels += 1;
        Some(Decision::Cancel(Cancel {
            order: order.id,
            ts: now,
            market: order.market.clone(),
            remaining: order.size - filled,
            reason: reason.unwrap_or_else(|| {
                format!(
                    "immediate-or-cancel: {filled} of {} {} {} filled at or better than {}",
                    order.size, order.market, order.outcome, order.limit_price
                )
            }),
        }))
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

    /// Books every carried position whose market is now listed.
    fn book_carried(&mut self) {
        if self.unlisted_carried.is_empty() {
            return;
        }
        let markets = &self.markets;
        let portfolio = &mut self.portfolio;
        let risk = &mut self.risk;
        self.unlisted_carried.retain(|c| {
            let listed = markets.iter().find_map(|(idx, state)| {
                let def = &state.def;
                let outcome = match &def.venue_ids {
                    Some(ids) if ids.market == c.venue_market => {
                        ids.instruments.iter().position(|i| *i == c.instrument)?
                    }
                    // A Kalshi market is its ticker; the venue names a
                    // position `TICKER:yes` or `TICKER:no`.
                    None if def.venue == Venue::Kalshi && def.id.as_str() == c.venue_market => {
                        let side = c.instrument.strip_prefix(c.venue_market.as_str())?;
                        ["yes", "no"].iter().position(|s| side == format!(":{s}"))?
                    }
                    _ => return None,
                };
                Some((idx, state.books.len(), outcome))
            });
            match listed {
                Some((idx, outcomes, outcome)) if outcome < outcomes => {
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

    /// Processes a whole stream (a replay, or a live channel drained into an
    /// iterator), handing each event's decisions to `sink`. Data errors are
    /// counted in [`EngineStats::data_errors`] and do not stop the stream.
    pub fn run<I, F>(&mut self, events: I, mut sink: F)
    where
        I: IntoIterator<Item = Event>,
        F: FnMut(&[Decision]),
    {
        let mut out = Vec::with_capacity(16);
        for event in events {
            out.clear();
            // The error is already counted; a replay skips an event it cannot apply.
            if self.on_event(&event, &mut out).is_err() {
                continue;
            }
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

    /// Risk-checks a proposal as a batch, then paper-executes each leg as an
    /// immediate-or-cancel order against the book as it is now.
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
        let legs = opportunity.legs.clone();
        opportunity.executed_at = Some(now);
        out.push(Decision::Opportunity(opportunity));
        let mut failure: Option<String> = None;
        let mut filled_any = false;
        let mut filled_legs: Vec<(MarketIdx, usize)> = Vec::with_capacity(2);
        for leg in legs {
            let Some(idx) = self.markets.find(leg.market.as_str()) else {
                failure = Some(format!(
                    "leg market {} vanished before execution",
                    leg.market
                ));
                continue;
            };
            let order_id = OrderId(self.next_order);
            self.next_order += 1;
            self.stats.orders += 1;
            self.risk.order_opened();
            out.push(Decision::Order(Order {
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
            if self.execution == Execution::Venue {
                // The worker sends it and reports back.
                continue;
            }
            let state = self.markets.get_mut(idx);
            let fees = state.fees;
            let outcomes = state.books.len();
            let sweep = state.books[leg.outcome].take(leg.side, leg.limit_price, leg.size, &fees);
            if sweep.filled > Decimal::ZERO {
                filled_any = true;
                self.stats.fills += 1;
                let mut fill = Fill {
                    order: order_id,
                    opportunity: id,
                    strategy,
                    ts: now,
                    venue: leg.venue,
                    market: leg.market.clone(),
                    outcome: leg.outcome,
                    side: leg.side,
                    size: sweep.filled,
                    avg_price: sweep.avg_price(),
                    notional: sweep.notional,
                    fee: sweep.fee,
                    realised_pnl: Decimal::ZERO,
                };
                fill.realised_pnl = self.portfolio.apply_fill(idx, outcomes, &fill);
                filled_legs.push((idx, leg.outcome));
                out.push(Decision::Fill(fill));
            }
            if sweep.filled < leg.size {
                let remaining = leg.size - sweep.filled;
                let reason = format!(
                    "immediate-or-cancel: {} of {} {} {} filled at or better than {}",
                    sweep.filled, leg.size, leg.market, leg.outcome, leg.limit_price
                );
                self.stats.cancels += 1;
                out.push(Decision::Cancel(Cancel {
                    order: order_id,
                    ts: now,
                    market: leg.market.clone(),
                    remaining,
                    reason: reason.clone(),
                }));
                failure.get_or_insert(reason);
            }
            self.risk.order_closed();
        }
        // A cross-venue pair's two legs pay exactly 1 together: the
        // accounting values them as a set, so the locked edge shows.
        if strategy == StrategyKind::CrossVenueArb
            && let [a, b] = filled_legs[..]
        {
            self.portfolio.hedge(strategy, a, b);
        }
        if self.execution == Execution::Venue {
            if let Some(reason) = failure
                && let Decision::Opportunity(o) = &mut out[at]
            {
                o.rejection = Some(reason);
            }
            return;
        }
        if !filled_any && let Decision::Opportunity(o) = &mut out[at] {
            o.executed_at = None;
            o.rejection = failure.clone();
        }
        let breaker = &mut self.breakers[strategy.index()];
        match failure {
            Some(reason) => breaker.record_failure(now, reason),
            None => breaker.record_success(),
        }
    }

    /// The ids of every market the engine knows, for reports.
    pub fn market_ids(&self) -> Vec<MarketId> {
        self.markets.iter().map(|(_, m)| m.def.id.clone()).collect()
    }
}
