//! Cross-venue pairs in the worker: an opportunity of cross-venue
//! arbitrage whose two orders go to Polymarket and Kalshi is executed as
//! one pair ([`polybot_venues::execution::pair`]): both legs sent at once,
//! a broken pair completed or unwound within the tenant's limits
//! (`risk.pair_max_slippage`, `risk.pair_max_latency_ms`,
//! `risk.pair_max_repair_ms`), every fill booked into the engine, and the
//! pair written to the tenant's paired-position ledger: `open` before
//! either leg is sent, settled once the legs and their repair are done.
//!
//! On start ([`Execution::recover_pairs`]) the pairs a stopped worker left
//! `open` are settled from both venues' fills: each leg's trades are the
//! tenant's trades of that leg's instrument and side at its venue from the
//! pair's opening until its time limits ran out; a pair found unequal is
//! repaired as a fresh one would be.
//!
//! Not here: SQL (the store's `repo::pairs`), the decisions (the engine's).

use std::time::Duration;

use polybot_core::TenantId;
use polybot_core::risk::RiskLimits;
use polybot_core::strategy::{StrategyKind, Venue};
use polybot_engine::{Clock, Decision, Engine, Order, OrderEnd, Side};
use polybot_store::Db;
use polybot_store::repo::pairs::{self, Settled};
use polybot_venues::execution::pair::{
    PairLeg, PairLimits, PairOrder, PairOutcome, Step, execute_pair, repair_pair,
};
use polybot_venues::execution::{
    ClientOrderId, ExecError, OrderRequest, OrderSide, OrderState, Placed, TimeInForce, VenueFill,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Execution, OrderReport};

/// Fills this long before a pair's opening still count towards it (clocks
/// apart).
const CLOCK_MARGIN_MS: i64 = 5_000;

/// Where a live worker's pairs are recorded.
#[derive(Debug, Clone)]
pub struct PairBook {
    pub db: Db,
    pub tenant: TenantId,
}

/// The tenant's pair limits from its risk settings.
pub fn pair_limits(risk: &RiskLimits) -> PairLimits {
    PairLimits {
        max_latency: Duration::from_millis(risk.pair_max_latency_ms),
        max_repair: Duration::from_millis(risk.pair_max_repair_ms),
        max_slippage: risk.pair_max_slippage,
    }
}

/// The two orders of `orders` that form a cross-venue pair, Polymarket's
/// first, starting at `i`: two orders of one cross-venue opportunity, one
/// on each venue.
pub(super) fn pair_at(orders: &[Order], i: usize) -> Option<[Order; 2]> {
    let (a, b) = (orders.get(i)?, orders.get(i + 1)?);
    if a.strategy != StrategyKind::CrossVenueArb || a.opportunity != b.opportunity {
        return None;
    }
    if orders
        .get(i + 2)
        .is_some_and(|c| c.opportunity == a.opportunity)
    {
        return None;
    }
    match (a.venue, b.venue) {
        (Venue::Polymarket, Venue::Kalshi) => Some([a.clone(), b.clone()]),
        (Venue::Kalshi, Venue::Polymarket) => Some([b.clone(), a.clone()]),
        _ => None,
    }
}

fn side_name(side: OrderSide) -> &'static str {
    match side {
        OrderSide::Buy => "buy",
        OrderSide::Sell => "sell",
    }
}

/// One order of a pair as the ledger shows it.
fn ledger_order(venue: &str, outcome: &str, order: &PairOrder) -> Value {
    let (cash, fees) = order.cash_and_fees();
    let filled = order.filled();
    let avg = if filled.is_zero() {
        Value::Null
    } else {
        json!((cash / filled).round_dp(6).normalize().to_string())
    };
    json!({
        "leg": order.leg,
        "step": order.step,
        "venue": venue,
        "market": order.request.market,
        "instrument": order.request.instrument,
        "outcome": outcome,
        "side": side_name(order.request.side),
        "price": order.request.price.normalize().to_string(),
        "size": order.request.size.normalize().to_string(),
        "filled": filled.normalize().to_string(),
        "avg_price": avg,
        "fees": fees.normalize().to_string(),
        "client_order_id": order.request.client_id,
        "venue_order_id": order.placed.as_ref().map(|p| p.venue_order_id.clone()),
        "state": order.placed.as_ref().map(|p| p.state),
        "trade_ids": order.placed.as_ref().map(|p| p.trade_ids.clone()).unwrap_or_default(),
        "error": order.error,
    })
}

/// What happens at resolution, in words.
fn resolution(legs: &[PairLeg; 2], outcomes: &[String; 2], outcome: &PairOutcome) -> String {
    let matched = outcome.matched();
    let mut parts = Vec::new();
    if !matched.is_zero() {
        let cost = (matched * (outcome.cost_per_share(0) + outcome.cost_per_share(1)))
            .round_dp(6)
            .normalize();
        parts.push(format!(
            "{} complete sets ({} {} on polymarket {} + {} {} on kalshi {}) pay {} whichever way \
             the markets resolve, against {cost} paid with fees",
            matched.normalize(),
            matched.normalize(),
            outcomes[0],
            legs[0].request.market,
            matched.normalize(),
            outcomes[1],
            legs[1].request.market,
            matched.normalize(),
        ));
    }
    for leg in 0..2 {
        let excess = outcome.held[leg] - matched;
        if excess > Decimal::ZERO {
            parts.push(format!(
                "{} {} shares on {} {} are unhedged: they pay {} if {} wins, nothing otherwise",
                excess.normalize(),
                outcomes[leg],
                legs[leg].venue,
                legs[leg].request.market,
                excess.normalize(),
                outcomes[leg],
            ));
        }
    }
    if parts.is_empty() {
        "nothing is held: nothing happens at resolution".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The client id of a repair order (`step`, `attempt`) of the engine's
/// order `decision`: apart from every engine order number (top bit set).
fn repair_id(
    tenant: &[u8; 16],
    epoch: i64,
    decision: u64,
    step: Step,
    attempt: u32,
) -> ClientOrderId {
    let attempt = u64::from(attempt.min(15));
    ClientOrderId::derive(
        tenant,
        epoch,
        (1 << 63) | (decision << 8) | (step.code() << 4) | attempt,
    )
}

/// The pair's ledger id: its first leg's client order id.
fn pair_id(first: ClientOrderId) -> Uuid {
    Uuid::parse_str(&first.to_string())
        .unwrap_or_else(|_| unreachable!("a client id is 32 hex digits"))
}

impl Execution {
    /// Runs pairs within `limits` (the tenant's risk settings; the
    /// defaults until set).
    pub fn set_pair_limits(&mut self, limits: PairLimits) {
        self.pair_limits = Some(limits);
    }

    /// Records pairs in the tenant's paired-position ledger (live).
    pub fn track_pairs(&mut self, db: Db, tenant: TenantId) {
        self.pairs = Some(PairBook { db, tenant });
    }

    fn limits(&self) -> PairLimits {
        self.pair_limits
            .unwrap_or_else(|| pair_limits(&RiskLimits::default()))
    }

    /// Executes a cross-venue pair (Polymarket's leg first). Returns a
    /// report per leg; a lost lease stops the worker (everything done
    /// before is booked first).
    pub(super) async fn execute_pair<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        orders: [Order; 2],
        decisions: &mut Vec<Decision>,
    ) -> Result<Vec<OrderReport>, ExecError> {
        let ids = [
            ClientOrderId::derive(&self.tenant, self.epoch, orders[0].id.0),
            ClientOrderId::derive(&self.tenant, self.epoch, orders[1].id.0),
        ];
        let mut legs = Vec::with_capacity(2);
        let mut refused = None;
        for (order, id) in orders.iter().zip(ids) {
            match self.request(engine, order, id).await {
                Ok((executor, request, rules)) => legs.push(PairLeg {
                    size_decimals: if order.venue == Venue::Kalshi && rules.min_size >= Decimal::ONE
                    {
                        0
                    } else {
                        2
                    },
                    executor,
                    venue: order.venue.as_str(),
                    request,
                    rules,
                }),
                Err(reason) => {
                    refused = Some((order.venue, reason));
                    break;
                }
            }
        }
        let outcomes = orders.clone().map(|o| outcome_name(engine, &o));
        let legs: [PairLeg; 2] = match (refused, legs.try_into()) {
            (None, Ok(legs)) => legs,
            (refused, _) => {
                let (venue, reason) = refused.unwrap_or((
                    orders[0].venue,
                    "the pair's legs could not be built".to_owned(),
                ));
                return Ok(self.not_sent(engine, &orders, ids, venue, &reason, decisions));
            }
        };
        let limits = self.limits();
        let id = pair_id(ids[0]);
        let planned = json!(
            (0..2)
                .map(|leg| ledger_order(
                    legs[leg].venue,
                    &outcomes[leg],
                    &PairOrder {
                        leg,
                        step: Step::Entry,
                        request: legs[leg].request.clone(),
                        placed: None,
                        error: None,
                        in_doubt: false,
                        refused: false,
                    }
                ))
                .collect::<Vec<_>>()
        );
        if let Some(book) = &self.pairs {
            let opened = async {
                let mut tx = book.db.fenced(book.tenant, self.epoch).await?;
                pairs::open(
                    &mut tx,
                    id,
                    orders[0].strategy.as_str(),
                    orders[0].opportunity.0 as i64,
                    &planned,
                )
                .await?;
                tx.commit().await
            };
            match opened.await {
                Ok(()) => {}
                Err(
                    e @ (polybot_store::DbError::Fenced { .. }
                    | polybot_store::DbError::LeaseMissing { .. }),
                ) => {
                    let epoch = match e {
                        polybot_store::DbError::Fenced { current, .. } => current,
                        _ => self.epoch,
                    };
                    let reason = e.to_string();
                    for order in &orders {
                        decisions.extend(engine.order_finished(
                            order,
                            Decimal::ZERO,
                            OrderEnd::Withdrawn(reason.clone()),
                        ));
                    }
                    return Err(ExecError::Fenced { epoch });
                }
                Err(e) => {
                    let reason = format!(
                        "the paired-position ledger could not be written, so neither leg was sent: {e}"
                    );
                    return Ok(self.not_sent(
                        engine,
                        &orders,
                        ids,
                        orders[0].venue,
                        &reason,
                        decisions,
                    ));
                }
            }
        }
        let (tenant, epoch) = (self.tenant, self.epoch);
        let decisions_of = [orders[0].id.0, orders[1].id.0];
        let outcome = execute_pair(&legs, &limits, |leg, step, attempt| {
            repair_id(&tenant, epoch, decisions_of[leg], step, attempt)
        })
        .await;
        let reports = self.book_pair(engine, &orders, &legs, &outcome, decisions);
        self.settle_pair(id, &legs, &outcomes, &outcome, None).await;
        match outcome.stopped {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }

    /// Neither leg was sent: both finish with `reason`.
    fn not_sent<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        orders: &[Order; 2],
        ids: [ClientOrderId; 2],
        venue: Venue,
        reason: &str,
        decisions: &mut Vec<Decision>,
    ) -> Vec<OrderReport> {
        orders
            .iter()
            .zip(ids)
            .map(|(order, id)| {
                let (why, failed) = if order.venue == venue {
                    (reason.to_owned(), true)
                } else {
                    (format!("not sent: the pair's other leg could not be: {reason}"), false)
                };
                let end = if failed {
                    OrderEnd::Failed(why.clone())
                } else {
                    OrderEnd::Withdrawn(why.clone())
                };
                decisions.extend(engine.order_finished(order, Decimal::ZERO, end));
                OrderReport {
                    opportunity: order.opportunity.0,
                    details: json!({
                        "order": order.id.0, "client_order_id": id, "state": "not_sent", "error": why,
                    }),
                }
            })
            .collect()
    }

    /// Books every fill of the pair into the engine (an unwind as a sale of
    /// its leg) and finishes both entry orders. Returns a report per leg.
    fn book_pair<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        orders: &[Order; 2],
        legs: &[PairLeg; 2],
        outcome: &PairOutcome,
        decisions: &mut Vec<Decision>,
    ) -> Vec<OrderReport> {
        for o in &outcome.orders {
            let Some(placed) = &o.placed else { continue };
            let mut order = orders[o.leg].clone();
            if o.request.side == OrderSide::Sell {
                order.side = Side::Sell;
                order.limit_price = o.request.price;
            }
            for fill in &placed.fills {
                if self.booked.insert(fill.trade_id.clone()) {
                    decisions.extend(engine.venue_fill(&order, fill.size, fill.price, fill.fee));
                }
            }
            self.booked.extend(placed.trade_ids.iter().cloned());
        }
        let summary = json!({
            "status": outcome.status,
            "matched": outcome.matched().normalize().to_string(),
            "held": outcome.held.map(|h| h.normalize().to_string()),
            "locked_edge": outcome.locked_edge().normalize().to_string(),
            "realised_loss": outcome.realised_loss().normalize().to_string(),
            "note": outcome.note,
        });
        let mut reports = Vec::with_capacity(2);
        for leg in 0..2 {
            let order = &orders[leg];
            let entries: Vec<&PairOrder> = outcome
                .orders
                .iter()
                .filter(|o| o.leg == leg && matches!(o.step, Step::Entry | Step::Recheck))
                .collect();
            let filled: Decimal = entries.iter().map(|o| o.filled()).sum();
            let answered = entries.iter().rev().find_map(|o| o.placed.as_ref());
            let error = entries.iter().find_map(|o| o.error.clone());
            let end = match (answered, &error) {
                (None, Some(error)) => OrderEnd::Failed(error.clone()),
                _ => OrderEnd::Matched,
            };
            decisions.extend(engine.order_finished(order, filled, end));
            let repairs: Vec<Value> = outcome
                .orders
                .iter()
                .filter(|o| o.leg == leg && matches!(o.step, Step::Complete | Step::Unwind))
                .map(|o| ledger_order(legs[leg].venue, "", o))
                .collect();
            let mut details = json!({
                "order": order.id.0,
                "client_order_id": legs[leg].request.client_id,
                "venue_order_id": answered.map(|p| p.venue_order_id.clone()),
                "state": answered.map_or(
                    if entries.last().is_some_and(|o| o.in_doubt) { "in_doubt" } else { "refused" },
                    |p| state_name(p.state),
                ),
                "filled": filled.normalize().to_string(),
                "recovered": answered.is_some_and(|p| p.recovered),
                "wire": answered.and_then(|p| serde_json::from_str::<Value>(&p.wire).ok()).unwrap_or(Value::Null),
                "pair": summary,
                "repairs": repairs,
            });
            if let Some(error) = error {
                details["error"] = json!(error);
            }
            reports.push(OrderReport {
                opportunity: order.opportunity.0,
                details,
            });
        }
        tracing::info!(status = outcome.status.as_str(), matched = %outcome.matched(), "cross-venue pair executed");
        reports
    }

    /// Writes how the pair ended to the ledger. A failed write leaves the
    /// pair `open`: the next start settles it from the venues' fills.
    async fn settle_pair(
        &self,
        id: Uuid,
        legs: &[PairLeg; 2],
        outcomes: &[String; 2],
        outcome: &PairOutcome,
        recovered: Option<&str>,
    ) {
        let Some(book) = &self.pairs else { return };
        let orders: Vec<Value> = outcome
            .orders
            .iter()
            .map(|o| ledger_order(legs[o.leg].venue, &outcomes[o.leg], o))
            .collect();
        let orders = Value::Array(orders);
        let text = resolution(legs, outcomes, outcome);
        let note = match (recovered, &outcome.note) {
            (Some(r), Some(n)) => Some(format!("{r}; {n}")),
            (Some(r), None) => Some(r.to_owned()),
            (None, n) => n.clone(),
        };
        let settled = Settled {
            status: outcome.status.as_str(),
            matched: outcome.matched().normalize(),
            locked_edge: outcome.locked_edge().normalize(),
            realised_loss: outcome.realised_loss().normalize(),
            legs: &orders,
            resolution: &text,
            note: note.as_deref(),
        };
        let written = async {
            let mut tx = book.db.fenced(book.tenant, self.epoch).await?;
            pairs::settle(&mut tx, id, &settled).await?;
            tx.commit().await
        };
        if let Err(e) = written.await {
            tracing::warn!(pair = %id, error = %e, "the pair's outcome could not be written; the next start settles it from the venues' fills");
        }
    }

    /// Settles the pairs a stopped worker left `open` from both venues'
    /// fills, repairing any found unequal. Returns what was done per pair.
    pub async fn recover_pairs<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        decisions: &mut Vec<Decision>,
    ) -> Result<Vec<Value>, crate::WorkerError> {
        let Some(book) = self.pairs.clone() else {
            return Ok(Vec::new());
        };
        let limits = self.limits();
        let open = {
            let mut tx = book.db.tenant(book.tenant).await?;
            let open = pairs::open_pairs(&mut tx).await?;
            tx.commit().await?;
            open
        };
        let mut done = Vec::new();
        for (n, pair) in open.into_iter().enumerate() {
            let entries = pair.legs.as_array().cloned().unwrap_or_default();
            let Some(legs) = self.recovered_legs(&entries).await else {
                tracing::warn!(pair = %pair.id, "an open pair's legs are not executable here; left open");
                continue;
            };
            let outcomes = [0, 1].map(|i| {
                entries[i]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            });
            let from = pair.opened_at.timestamp_millis() - CLOCK_MARGIN_MS;
            let until = pair.opened_at.timestamp_millis()
                + i64::try_from((limits.max_latency + limits.max_repair).as_millis())
                    .unwrap_or(i64::MAX / 2)
                + CLOCK_MARGIN_MS;
            let mut found = Vec::new();
            for (leg, l) in legs.iter().enumerate() {
                let fills = l.executor.fills(from).await.map_err(|e| {
                    anyhow::anyhow!("recovering pair {} from {}'s fills: {e}", pair.id, l.venue)
                })?;
                for side in [OrderSide::Buy, OrderSide::Sell] {
                    let mine: Vec<VenueFill> = fills
                        .iter()
                        .filter(|f| {
                            f.market == l.request.market
                                && (f.instrument.eq_ignore_ascii_case(&l.request.instrument)
                                    || f.instrument.eq_ignore_ascii_case(&format!(
                                        "{}:{}",
                                        l.request.market, l.request.instrument
                                    )))
                                && f.side == side
                                && f.ts <= until
                        })
                        .cloned()
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    found.push(recovered_order(leg, side, &l.request, mine));
                }
            }
            let decision = (1 << 62) | ((n as u64) << 8);
            let tenant = self.tenant;
            let epoch = self.epoch;
            let outcome = repair_pair(&legs, &limits, found, |leg, step, attempt| {
                ClientOrderId::derive(
                    &tenant,
                    epoch,
                    decision | ((leg as u64) << 7) | (step.code() << 4) | u64::from(attempt),
                )
            })
            .await;
            // What the repair sent is booked now; the recovered fills were
            // counted by the start's reconciliation (the venue's positions).
            let repaired: Vec<&PairOrder> = outcome
                .orders
                .iter()
                .filter(|o| matches!(o.step, Step::Complete | Step::Unwind))
                .collect();
            for o in &repaired {
                let Some(placed) = &o.placed else { continue };
                let Some(order) = carried_order(engine, &legs[o.leg], o) else {
                    continue;
                };
                for fill in &placed.fills {
                    if self.booked.insert(fill.trade_id.clone()) {
                        decisions
                            .extend(engine.venue_fill(&order, fill.size, fill.price, fill.fee));
                    }
                }
            }
            self.settle_pair(
                pair.id,
                &legs,
                &outcomes,
                &outcome,
                Some(&format!(
                    "recovered at start (epoch {}) from both venues' fills after the worker of epoch {} stopped mid-pair",
                    self.epoch, pair.epoch
                )),
            )
            .await;
            done.push(json!({
                "pair": pair.id,
                "status": outcome.status,
                "held": outcome.held.map(|h| h.normalize().to_string()),
            }));
            if let Some(e) = outcome.stopped {
                return Err(anyhow::anyhow!("recovering pair {}: {e}", pair.id).into());
            }
        }
        Ok(done)
    }

    /// The legs of an open pair as its ledger row planned them.
    async fn recovered_legs(&mut self, entries: &[Value]) -> Option<[PairLeg; 2]> {
        let mut legs = Vec::with_capacity(2);
        for entry in entries.iter().take(2) {
            let venue = match entry["venue"].as_str()? {
                "polymarket" => Venue::Polymarket,
                "kalshi" => Venue::Kalshi,
                _ => return None,
            };
            let executor = self.executor_for(venue)?;
            let market = entry["market"].as_str()?.to_owned();
            let rules = match self.rules.get(&market) {
                Some(rules) => rules.clone(),
                None => {
                    let rules = executor.market_rules(&market).await.ok()?;
                    self.rules.insert(market.clone(), rules.clone());
                    rules
                }
            };
            let decimal = |field: &str| entry[field].as_str()?.parse::<Decimal>().ok();
            let request = OrderRequest {
                client_id: ClientOrderId::derive(&self.tenant, self.epoch, 0),
                market,
                instrument: entry["instrument"].as_str()?.to_owned(),
                side: OrderSide::Buy,
                price: decimal("price")?,
                size: decimal("size")?,
                time_in_force: TimeInForce::ImmediateOrCancel,
            };
            legs.push(PairLeg {
                size_decimals: if venue == Venue::Kalshi && rules.min_size >= Decimal::ONE {
                    0
                } else {
                    2
                },
                executor,
                venue: venue.as_str(),
                request,
                rules,
            });
        }
        legs.try_into().ok()
    }
}

/// The fills of one leg and side found at the venue, as one order.
fn recovered_order(
    leg: usize,
    side: OrderSide,
    request: &OrderRequest,
    fills: Vec<VenueFill>,
) -> PairOrder {
    let filled: Decimal = fills.iter().map(|f| f.size).sum();
    PairOrder {
        leg,
        step: if side == OrderSide::Buy {
            Step::Recheck
        } else {
            Step::Unwind
        },
        request: OrderRequest {
            side,
            size: filled,
            ..request.clone()
        },
        placed: Some(Placed {
            client_id: request.client_id,
            venue_order_id: fills[0].venue_order_id.clone(),
            state: OrderState::Closed,
            filled,
            trade_ids: fills.iter().map(|f| f.trade_id.clone()).collect(),
            fills,
            recovered: true,
            wire: String::new(),
        }),
        error: None,
        in_doubt: false,
        refused: false,
    }
}

/// An engine order for a repair of a recovered pair's leg, when its market
/// is listed.
fn carried_order<C: Clock>(engine: &Engine<C>, leg: &PairLeg, o: &PairOrder) -> Option<Order> {
    let state = engine.market(&leg.request.market).or_else(|| {
        engine
            .market_ids()
            .into_iter()
            .find(|id| {
                engine
                    .market(id.as_str())
                    .and_then(|m| m.def.venue_ids.as_ref())
                    .is_some_and(|ids| ids.market == leg.request.market)
            })
            .and_then(|id| engine.market(id.as_str()))
    })?;
    let outcome = match &state.def.venue_ids {
        Some(ids) => ids
            .instruments
            .iter()
            .position(|i| *i == leg.request.instrument)?,
        None => usize::from(leg.request.instrument.eq_ignore_ascii_case("no")),
    };
    Some(Order {
        id: polybot_engine::OrderId(0),
        opportunity: polybot_engine::OpportunityId(0),
        strategy: StrategyKind::CrossVenueArb,
        ts: engine.now(),
        venue: if leg.venue == "kalshi" {
            Venue::Kalshi
        } else {
            Venue::Polymarket
        },
        market: state.def.id.clone(),
        outcome,
        side: match o.request.side {
            OrderSide::Buy => Side::Buy,
            OrderSide::Sell => Side::Sell,
        },
        limit_price: o.request.price,
        size: o.request.size,
    })
}

fn state_name(state: OrderState) -> &'static str {
    match state {
        OrderState::Open => "open",
        OrderState::Filled => "filled",
        OrderState::Closed => "closed",
        OrderState::Pending => "pending",
        OrderState::NotSent => "not_sent",
    }
}

/// The name of an order's outcome (`Yes`, `No`).
fn outcome_name<C: Clock>(engine: &Engine<C>, order: &Order) -> String {
    engine
        .market(order.market.as_str())
        .and_then(|m| m.def.outcomes.get(order.outcome).cloned())
        .unwrap_or_else(|| order.outcome.to_string())
}
