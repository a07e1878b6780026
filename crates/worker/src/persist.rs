//! What the worker writes: the engine's decisions as rows, kept in a batch and
//! written in one fenced tenant transaction per flush.
//!
//! - an `Opportunity` becomes an `opportunities` row (`executed_at` set when
//!   it was acted on; a risk rejection or an unfilled order is in `details`,
//!   and in shadow and live modes what the executor did with each order:
//!   client and venue ids, state, the signed order as sent or, in shadow,
//!   as it would have been sent);
//! - a `Fill` becomes a `trades` row (average price, size, fee, the PnL the
//!   accounting says it realised — zero for a buy, fees being their own
//!   column — and mode);
//! - a `CarriedFill` (a fill of an order found open at the venue when the
//!   worker started) becomes a `trades` row of strategy `carried`, with no
//!   opportunity, its id derived from the venue's trade id;
//! - a `Settlement` becomes a `trades` row with side `settle`, one per
//!   strategy that held the market, carrying the PnL the resolution realised,
//!   so that the trades' realised PnL and fees add up to the portfolio's;
//! - balances are upserted per venue from the portfolio.
//!
//! Row ids are derived from the run's key and the engine's sequence numbers,
//! so a worker that replays the same recording again after a restart writes
//! nothing twice (`ON CONFLICT DO NOTHING`). Every write checks the lease
//! epoch: a fenced worker's flush fails and writes nothing. The statements
//! are the store's ([`polybot_store::repo`]); this module decides the rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use polybot_core::Mode;
use polybot_core::strategy::{StrategyKind, Venue};
use polybot_engine::{
    CarriedFill, Clock, Decision, Engine, Fill, Opportunity, PairBlocked, Settlement, Side,
    Timestamp,
};
use polybot_store::repo::balances::{self, NewBalance};
use polybot_store::repo::opportunities::{self, NewOpportunity};
use polybot_store::repo::trades::{self, NewTrade};
use polybot_store::{Db, DbError};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The owner of what the venue held before the worker started (positions
/// and the fills of orders found open then): no strategy.
pub const CARRIED: &str = "carried";

/// The currency a venue's cash is held in.
pub fn cash_asset(venue: Venue) -> &'static str {
    match venue {
        Venue::Polymarket => "USDC",
        _ => "USD",
    }
}

fn time(ts: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts.millis()).unwrap_or(DateTime::UNIX_EPOCH)
}

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub opportunities: u64,
    pub trades: u64,
    pub balances: u64,
}

/// Decisions turned into rows, waiting for the next flush.
#[derive(Debug)]
pub struct Recorder {
    /// Makes row ids unique per run and stable across replays of one recording.
    run_key: [u8; 32],
    mode: Mode,
    opportunities: Vec<NewOpportunity>,
    trades: Vec<NewTrade>,
    /// Balances as last written, to skip unchanged upserts.
    written_balances: Vec<(Venue, Decimal)>,
    /// What the executor did with each opportunity's orders (shadow and
    /// live), by opportunity number, until its row is made.
    orders: HashMap<u64, Vec<Value>>,
    /// Fills recorded per order: an order the venue fills in several
    /// trades gets a row per trade.
    fills_per_order: HashMap<u64, u32>,
    pub totals: Written,
}

impl Recorder {
    /// `run_key` names the run: the recording's content hash for a replay, a
    /// random value for a live stream. `mode` is what the trade rows say:
    /// `live` only for a live executor's fills.
    pub fn new(run_key: [u8; 32], mode: Mode) -> Self {
        Self {
            run_key,
            mode,
            opportunities: Vec::new(),
            trades: Vec::new(),
            written_balances: Vec::new(),
            orders: HashMap::new(),
            fills_per_order: HashMap::new(),
            totals: Written::default(),
        }
    }

    /// Keeps the executor's reports for the opportunities' rows (call
    /// before [`Recorder::record`] with the same event's decisions).
    pub fn note_orders(&mut self, reports: Vec<crate::execution::OrderReport>) {
        for report in reports {
            self.orders
                .entry(report.opportunity)
                .or_default()
                .push(report.details);
        }
    }

    /// Rows waiting to be written.
    pub fn pending(&self) -> usize {
        self.opportunities.len() + self.trades.len()
    }

    fn id(&self, kind: &[u8], seq: u64, extra: &[u8]) -> Uuid {
        let mut hash = Sha256::new();
        hash.update(self.run_key);
        hash.update(kind);
        hash.update(seq.to_be_bytes());
        hash.update(extra);
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    fn opportunity_id(&self, seq: u64) -> Uuid {
        self.id(b"opportunity", seq, &[])
    }

    /// Turns one event's decisions into rows.
    pub fn record<C: Clock>(&mut self, engine: &Engine<C>, decisions: &[Decision]) {
        for decision in decisions {
            match decision {
                Decision::Opportunity(o) => {
                    let orders = self.orders.remove(&o.id.0);
                    let mut row = self.opportunity_row(o);
                    if let Some(orders) = orders {
                        row.details["orders"] = Value::Array(orders);
                    }
                    self.opportunities.push(row);
                }
                Decision::Fill(f) => {
                    let nth = self.fills_per_order.entry(f.order.0).or_default();
                    let row_of_order = *nth;
                    *nth += 1;
                    let row = self.fill_row(engine, f, row_of_order);
                    self.trades.push(row);
                }
                Decision::CarriedFill(f) => {
                    let row = self.carried_fill_row(engine, f);
                    self.trades.push(row);
                }
                Decision::Settlement(s) => {
                    let row = self.settlement_row(engine, s);
                    self.trades.push(row);
                }
                Decision::PairBlocked(p) => {
                    let row = self.refused_pair_row(p);
                    self.opportunities.push(row);
                }
                // Orders and cancels are in the opportunity's and the
                // trade's details; rejections in the opportunity's.
                Decision::Order(_) | Decision::Cancel(_) | Decision::Rejected(_) => {}
            }
        }
    }

    /// A cross-venue pair that is never traded, as a refused opportunity:
    /// no edge or size, `details.refused` saying which markets and why.
    /// `GET /tenants/{id}/pairs/refused` lists them (each pair's latest: one
    /// row per pair and run); the opportunity lists and counts leave them out.
    fn refused_pair_row(&self, p: &PairBlocked) -> NewOpportunity {
        let mut key = p.polymarket.as_str().as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(p.kalshi.as_str().as_bytes());
        NewOpportunity {
            id: self.id(b"refused-pair", 0, &key),
            strategy: StrategyKind::CrossVenueArb.as_str().to_owned(),
            venue: "polymarket+kalshi".to_owned(),
            market: format!("{} / {}", p.polymarket.as_str(), p.kalshi.as_str()),
            description: p.reason.clone(),
            edge: None,
            expected_profit: None,
            size: None,
            details: json!({
                "refused": {
                    "polymarket": p.polymarket.as_str(),
                    "kalshi": p.kalshi.as_str(),
                    "reason": p.reason,
                    "basis_risk": p.basis_risk,
                }
            }),
            detected_at: time(p.ts),
            executed_at: None,
        }
    }

    fn opportunity_row(&self, o: &Opportunity) -> NewOpportunity {
        let mut venues: Vec<&str> = Vec::with_capacity(2);
        let mut markets: Vec<&str> = Vec::with_capacity(2);
        for leg in &o.legs {
            if !venues.contains(&leg.venue.as_str()) {
                venues.push(leg.venue.as_str());
            }
            if !markets.contains(&leg.market.as_str()) {
                markets.push(leg.market.as_str());
            }
        }
        let legs: Vec<Value> = o
            .legs
            .iter()
            .map(|l| {
                json!({
                    "venue": l.venue,
                    "market": l.market,
                    "outcome": l.outcome,
                    "side": l.side,
                    "limit_price": l.limit_price.normalize().to_string(),
                    "size": l.size.normalize().to_string(),
                    "expected_avg_price": l.expected_avg_price.round_dp(6).normalize().to_string(),
                    "expected_fee": l.expected_fee.normalize().to_string(),
                })
            })
            .collect();
        let mut details = json!({ "sequence": o.id.0, "legs": legs });
        if let Some(reason) = &o.rejection {
            details["not_executed"] = Value::String(reason.clone());
        }
        NewOpportunity {
            id: self.opportunity_id(o.id.0),
            strategy: o.strategy.as_str().to_owned(),
            venue: venues.join("+"),
            market: markets.join(" / "),
            description: o.summary.clone(),
            // Per-unit edges come from divisions (28 digits); six places
            // are finer than any venue's tick and a millionth of a cent.
            edge: Some(o.edge.round_dp(6).normalize()),
            expected_profit: Some(o.expected_profit.round_dp(6).normalize()),
            size: Some(o.legs.first().map(|l| l.size).unwrap_or_default()),
            details,
            detected_at: time(o.detected_at),
            executed_at: o.executed_at.map(time),
        }
    }

    /// `nth` counts the order's earlier fills: the first keeps the id a
    /// replay has always given it.
    fn fill_row<C: Clock>(&self, engine: &Engine<C>, f: &Fill, nth: u32) -> NewTrade {
        let extra = if nth == 0 {
            Vec::new()
        } else {
            nth.to_be_bytes().to_vec()
        };
        NewTrade {
            id: self.id(b"fill", f.order.0, &extra),
            opportunity_id: Some(self.opportunity_id(f.opportunity.0)),
            strategy: f.strategy.as_str().to_owned(),
            venue: f.venue.as_str().to_owned(),
            market: f.market.as_str().to_owned(),
            side: match f.side {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
            .to_owned(),
            outcome: outcome_name(engine, f.market.as_str(), f.outcome),
            price: f.avg_price.round_dp(6).normalize(),
            size: f.size.normalize(),
            fee: f.fee.normalize(),
            realized_pnl: f.realised_pnl.normalize(),
            details: json!({
                "order": f.order.0,
                "notional": f.notional.normalize().to_string(),
                "mode": self.mode,
            }),
            executed_at: time(f.ts),
        }
    }

    fn carried_fill_row<C: Clock>(&self, engine: &Engine<C>, f: &CarriedFill) -> NewTrade {
        NewTrade {
            id: self.id(b"carried fill", 0, f.trade_id.as_bytes()),
            opportunity_id: None,
            strategy: CARRIED.to_owned(),
            venue: f.venue.as_str().to_owned(),
            market: f.market.as_str().to_owned(),
            side: match f.side {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
            .to_owned(),
            outcome: outcome_name(engine, f.market.as_str(), f.outcome),
            price: f.avg_price.round_dp(6).normalize(),
            size: f.size.normalize(),
            fee: f.fee.normalize(),
            realized_pnl: f.realised_pnl.normalize(),
            details: json!({
                "trade_id": f.trade_id,
                "venue_order_id": f.venue_order_id,
                "notional": f.notional.normalize().to_string(),
                "mode": self.mode,
            }),
            executed_at: time(f.ts),
        }
    }

    fn settlement_row<C: Clock>(&self, engine: &Engine<C>, s: &Settlement) -> NewTrade {
        let venue = engine
            .market(s.market.as_str())
            .map_or("unknown", |m| m.def.venue.as_str());
        NewTrade {
            id: self.id(
                b"settlement",
                s.strategy.index() as u64,
                s.market.as_str().as_bytes(),
            ),
            opportunity_id: None,
            strategy: s.strategy.as_str().to_owned(),
            venue: venue.to_owned(),
            market: s.market.as_str().to_owned(),
            side: "settle".to_owned(),
            outcome: outcome_name(engine, s.market.as_str(), s.winning_outcome),
            price: Decimal::ONE,
            size: s.payout.normalize(),
            fee: Decimal::ZERO,
            realized_pnl: s.realised_pnl.normalize(),
            details: json!({ "payout": s.payout.normalize().to_string() }),
            executed_at: time(s.ts),
        }
    }

    /// Writes the batch and any changed balance in one transaction fenced by
    /// `epoch`. On failure the batch is kept for the next attempt.
    pub async fn flush(
        &mut self,
        db: &Db,
        tenant: polybot_core::TenantId,
        epoch: i64,
        balances: &[(Venue, Decimal)],
    ) -> Result<Written, DbError> {
        let balances_changed = balances != self.written_balances.as_slice();
        if self.pending() == 0 && !balances_changed {
            return Ok(Written::default());
        }
        let mut tx = db.fenced(tenant, epoch).await?;
        let written = Written {
            opportunities: opportunities::insert_batch(&mut tx, &self.opportunities).await?,
            trades: trades::insert_batch(&mut tx, &self.trades, self.mode).await?,
            balances: if balances_changed {
                balances::upsert(&mut tx, &cash_balances(balances)).await?
            } else {
                0
            },
        };
        tx.commit().await?;
        self.opportunities.clear();
        self.trades.clear();
        if balances_changed {
            self.written_balances = balances.to_vec();
        }
        self.totals.opportunities += written.opportunities;
        self.totals.trades += written.trades;
        self.totals.balances += written.balances;
        Ok(written)
    }
}

fn outcome_name<C: Clock>(engine: &Engine<C>, market: &str, outcome: usize) -> String {
    engine
        .market(market)
        .and_then(|m| m.def.outcomes.get(outcome).cloned())
        .unwrap_or_else(|| outcome.to_string())
}

/// The portfolio's cash per venue, as balance rows.
fn cash_balances(balances: &[(Venue, Decimal)]) -> Vec<NewBalance> {
    balances
        .iter()
        .map(|(venue, amount)| NewBalance {
            venue: venue.as_str().to_owned(),
            asset: cash_asset(*venue).to_owned(),
            amount: amount.normalize(),
        })
        .collect()
}
