//! Two-leg execution of a cross-venue pair (a Polymarket leg and a Kalshi
//! leg that together pay exactly 1): both legs are sent at once as
//! immediate-or-cancel orders, each through its venue's [`Executor`], and
//! their answers are awaited for at most [`PairLimits::max_latency`].
//!
//! When the legs fill unequally the pair is repaired within the tenant's
//! limits ([`PairLimits`]), for at most `max_repair`:
//! 1. a leg whose answer was lost (a timeout, a 5xx) is asked for again with
//!    the same client order id, which never doubles it;
//! 2. the short leg is completed: its missing shares are bought again at up
//!    to its limit price plus `max_slippage`, unless the venue refused the
//!    leg outright (a refusal does not change on retry);
//! 3. what is still unmatched is unwound: the long leg's excess is sold at
//!    down to its average fill price minus `max_slippage`.
//!
//! Whatever stays unequal after that is a broken pair: the excess rides the
//! market and the ledger says so. The pair is sized to the smaller leg.
//!
//! Not here: what to trade (the engine), booking fills and the paired-
//! position ledger (the worker), and the lease (each executor asks its
//! [`super::Fence`] before every send; a fenced send stops the repair).

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use tokio::time::Instant;

use super::{
    ClientOrderId, ExecError, Executor, MarketRules, OrderRequest, OrderSide, OrderState, Placed,
    TimeInForce,
};

/// First pause between repair attempts on the same leg; it doubles.
const REPAIR_PAUSE: Duration = Duration::from_millis(50);
/// Completing and unwinding attempts per pair, each.
const REPAIR_ATTEMPTS: u32 = 3;

/// The tenant's limits on a pair (from its risk settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimits {
    /// How long both legs may take to answer.
    pub max_latency: Duration,
    /// How long completing or unwinding may take after that.
    pub max_repair: Duration,
    /// Price a repair order may give up, per share.
    pub max_slippage: Decimal,
}

/// One leg: the order as the engine decided it, in its venue's terms.
#[derive(Clone)]
pub struct PairLeg {
    pub executor: Arc<dyn Executor>,
    /// The venue's name, for the record.
    pub venue: &'static str,
    pub request: OrderRequest,
    pub rules: MarketRules,
    /// Decimals of the venue's lot (Kalshi: whole contracts, 0).
    pub size_decimals: u32,
}

impl std::fmt::Debug for PairLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairLeg")
            .field("venue", &self.venue)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Why an order of the pair was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The leg as decided.
    Entry,
    /// The same order asked for again after its answer was lost.
    Recheck,
    /// The short leg's missing shares, bought again.
    Complete,
    /// The long leg's excess, sold back.
    Unwind,
}

impl Step {
    /// A number per step, for deriving the repair orders' client ids.
    pub const fn code(self) -> u64 {
        match self {
            Step::Entry => 0,
            Step::Recheck => 1,
            Step::Complete => 2,
            Step::Unwind => 3,
        }
    }
}

/// One order of the pair and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairOrder {
    /// 0: the first leg (Polymarket's), 1: the second.
    pub leg: usize,
    pub step: Step,
    pub request: OrderRequest,
    /// The venue's answer, when one came.
    pub placed: Option<Placed>,
    /// Why there is no answer (or why the venue refused).
    pub error: Option<String>,
    /// The venue may have the order: it is asked for again.
    pub in_doubt: bool,
    /// The venue refused the order (or its rules did): not retried.
    pub refused: bool,
}

impl PairOrder {
    /// Shares filled.
    pub fn filled(&self) -> Decimal {
        self.placed.as_ref().map_or(Decimal::ZERO, |p| p.filled)
    }

    /// Shares held because of this order: bought positive, sold negative.
    pub fn held(&self) -> Decimal {
        match self.request.side {
            OrderSide::Buy => self.filled(),
            OrderSide::Sell => -self.filled(),
        }
    }

    /// (price × size summed, fees summed) over the order's fills.
    pub fn cash_and_fees(&self) -> (Decimal, Decimal) {
        self.placed
            .as_ref()
            .map_or((Decimal::ZERO, Decimal::ZERO), |p| {
                p.fills
                    .iter()
                    .fold((Decimal::ZERO, Decimal::ZERO), |(c, f), x| {
                        (c + x.price * x.size, f + x.fee)
                    })
            })
    }
}

/// How a pair ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    /// Sent, not finished: a worker stopped in between, or a leg is in
    /// doubt (its venue did not answer). The next start settles it.
    Open,
    /// Both legs filled equally at once.
    Locked,
    /// The short leg was completed: the legs are equal.
    Completed,
    /// The long leg's excess was sold back: the legs are equal.
    Unwound,
    /// The legs are still unequal: the excess rides the market.
    Broken,
    /// Neither leg filled: nothing is held.
    Unfilled,
}

impl PairStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PairStatus::Open => "open",
            PairStatus::Locked => "locked",
            PairStatus::Completed => "completed",
            PairStatus::Unwound => "unwound",
            PairStatus::Broken => "broken",
            PairStatus::Unfilled => "unfilled",
        }
    }
}

/// What a pair's execution did.
#[derive(Debug)]
pub struct PairOutcome {
    pub status: PairStatus,
    /// Every order sent, in order.
    pub orders: Vec<PairOrder>,
    /// Shares held per leg after everything.
    pub held: [Decimal; 2],
    /// Why the pair is broken, when it is.
    pub note: Option<String>,
    /// The lease was lost: nothing more was sent, and the worker stops.
    pub stopped: Option<ExecError>,
}

impl PairOutcome {
    /// Complete sets held: the smaller leg.
    pub fn matched(&self) -> Decimal {
        self.held[0].min(self.held[1]).max(Decimal::ZERO)
    }

    /// Per leg: what its buys cost per share, fees included (zero without buys).
    pub fn cost_per_share(&self, leg: usize) -> Decimal {
        let (cash, fees, shares) = self
            .orders
            .iter()
            .filter(|o| o.leg == leg && o.request.side == OrderSide::Buy)
            .fold(
                (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
                |(c, f, s), o| {
                    let (cash, fees) = o.cash_and_fees();
                    (c + cash, f + fees, s + o.filled())
                },
            );
        if shares.is_zero() {
            Decimal::ZERO
        } else {
            (cash + fees) / shares
        }
    }

    /// The profit the matched sets lock in: each pays 1 at resolution,
    /// against what its two shares cost with fees.
    pub fn locked_edge(&self) -> Decimal {
        let matched = self.matched();
        (matched * (Decimal::ONE - self.cost_per_share(0) - self.cost_per_share(1))).round_dp(6)
    }

    /// What unwinding lost: the cost of the shares sold back less what they
    /// brought after fees (negative when the sale made money).
    pub fn realised_loss(&self) -> Decimal {
        let mut loss = Decimal::ZERO;
        for o in self
            .orders
            .iter()
            .filter(|o| o.request.side == OrderSide::Sell)
        {
            let (cash, fees) = o.cash_and_fees();
            loss += o.filled() * self.cost_per_share(o.leg) - (cash - fees);
        }
        loss.round_dp(6)
    }
}

/// The outcome of one send: an answer, a failure, or no answer in time.
enum Sent {
    Placed(Placed),
    Failed(ExecError),
    TimedOut(Duration),
    /// The sending task died: whether the venue has the order is unknown.
    Lost(String),
}

/// Places `request` with bounded retries of retryable failures, giving up
/// at `deadline` (the order is then in doubt).
async fn place_until(
    executor: &dyn Executor,
    request: &OrderRequest,
    rules: &MarketRules,
    started: Instant,
    deadline: Instant,
) -> Sent {
    let mut pause = REPAIR_PAUSE;
    loop {
        match tokio::time::timeout_at(deadline, executor.place(request, rules)).await {
            Err(_) => return Sent::TimedOut(deadline.saturating_duration_since(started)),
            Ok(Ok(placed)) => return Sent::Placed(placed),
            Ok(Err(e)) if e.is_retryable() && Instant::now() + pause < deadline => {
                tracing::warn!(client_order_id = %request.client_id, error = %e, "pair leg not confirmed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Ok(Err(e)) => return Sent::Failed(e),
        }
    }
}

fn record(
    leg: usize,
    step: Step,
    request: OrderRequest,
    sent: Sent,
) -> (PairOrder, Option<ExecError>) {
    let mut order = PairOrder {
        leg,
        step,
        request,
        placed: None,
        error: None,
        in_doubt: false,
        refused: false,
    };
    let mut stop = None;
    match sent {
        Sent::Placed(placed) => order.placed = Some(placed),
        Sent::TimedOut(after) => {
            order.in_doubt = true;
            order.error = Some(format!(
                "no answer within {} ms: the order is in doubt",
                after.as_millis()
            ));
        }
        Sent::Lost(why) => {
            order.in_doubt = true;
            order.error = Some(why);
        }
        Sent::Failed(e) => {
            order.error = Some(e.to_string());
            match e {
                ExecError::InDoubt { .. } => order.in_doubt = true,
                ExecError::Rejected { .. } | ExecError::Rules { .. } => order.refused = true,
                ExecError::Fenced { .. } | ExecError::LeaseUnverified(_) => stop = Some(e),
                ExecError::Venue(_) => {}
            }
        }
    }
    (order, stop)
}

/// `price` on the tick: down for a buy (never above the limit), up for a
/// sell (never below it), kept within `[tick, 1 − tick]`.
fn on_tick(price: Decimal, tick: Decimal, side: OrderSide) -> Decimal {
    let steps = price / tick;
    let steps = match side {
        OrderSide::Buy => steps.round_dp_with_strategy(0, RoundingStrategy::ToZero),
        OrderSide::Sell => steps.round_dp_with_strategy(0, RoundingStrategy::AwayFromZero),
    };
    (steps * tick).clamp(tick, Decimal::ONE - tick).normalize()
}

/// Executes a pair: both legs at once, then the repair. `client_id` names
/// each repair order (leg, step, attempt); the entries keep their own.
/// Never returns early: a lost lease stops the sending and is handed back
/// in [`PairOutcome::stopped`] with everything that was done.
pub async fn execute_pair<F>(
    legs: &[PairLeg; 2],
    limits: &PairLimits,
    mut client_id: F,
) -> PairOutcome
where
    F: FnMut(usize, Step, u32) -> ClientOrderId,
{
    let started = Instant::now();
    let entry_deadline = started + limits.max_latency;
    // Each leg is its own task: on a multi-threaded runtime the two
    // signatures (Kalshi's RSA-PSS is most of the cost) run side by side.
    let spawn = |leg: &PairLeg| {
        let (executor, request, rules) =
            (leg.executor.clone(), leg.request.clone(), leg.rules.clone());
        tokio::spawn(async move {
            place_until(executor.as_ref(), &request, &rules, started, entry_deadline).await
        })
    };
    let (a, b) = (spawn(&legs[0]), spawn(&legs[1]));
    let (a, b) = tokio::join!(a, b);
    let joined = |r: Result<Sent, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Sent::Lost(format!("the leg's task ended before its answer: {e}")))
    };
    let (a, b) = (joined(a), joined(b));
    let mut orders = Vec::with_capacity(4);
    let mut stopped = None;
    for (leg, sent) in [(0, a), (1, b)] {
        let (order, stop) = record(leg, Step::Entry, legs[leg].request.clone(), sent);
        orders.push(order);
        stopped = stopped.or(stop);
    }
    // An IOC the venue still holds (Polymarket's delayed matching) is
    // cancelled: the pair cannot wait for it.
    for order in &orders {
        if let Some(placed) = &order.placed
            && matches!(placed.state, OrderState::Open | OrderState::Pending)
            && stopped.is_none()
            && let Err(e) = legs[order.leg]
                .executor
                .cancel(&placed.venue_order_id)
                .await
        {
            tracing::warn!(venue = legs[order.leg].venue, order = %placed.venue_order_id, error = %e, "cancelling a pair leg's rest failed");
        }
    }

    repair(legs, limits, orders, stopped, &mut client_id).await
}

/// Repairs a pair whose orders so far are `orders` (a worker's start
/// recovering a pair its predecessor left open, from the venues' fills):
/// completes or unwinds it within `limits` as [`execute_pair`] would.
pub async fn repair_pair<F>(
    legs: &[PairLeg; 2],
    limits: &PairLimits,
    orders: Vec<PairOrder>,
    mut client_id: F,
) -> PairOutcome
where
    F: FnMut(usize, Step, u32) -> ClientOrderId,
{
    repair(legs, limits, orders, None, &mut client_id).await
}

async fn repair<F>(
    legs: &[PairLeg; 2],
    limits: &PairLimits,
    mut orders: Vec<PairOrder>,
    mut stopped: Option<ExecError>,
    client_id: &mut F,
) -> PairOutcome
where
    F: FnMut(usize, Step, u32) -> ClientOrderId,
{
    let repair_started = Instant::now();
    let repair_deadline = repair_started + limits.max_repair;
    let mut completes = 0;
    let mut unwinds = 0;
    let mut rechecked = [false; 2];
    let mut note = None;
    let held = |orders: &[PairOrder]| {
        let mut held = [Decimal::ZERO; 2];
        for o in orders {
            held[o.leg] += o.held();
        }
        held
    };
    loop {
        let now = held(&orders);
        if stopped.is_some() || now[0] == now[1] && !orders.iter().any(|o| o.in_doubt) {
            break;
        }
        if Instant::now() >= repair_deadline {
            note = Some(format!(
                "the repair ran out of its {} ms",
                limits.max_repair.as_millis()
            ));
            break;
        }
        // 1. A lost answer: ask again with the same client id.
        if let Some(i) = orders
            .iter()
            .position(|o| o.in_doubt && o.step == Step::Entry && !rechecked[o.leg])
        {
            let leg = orders[i].leg;
            rechecked[leg] = true;
            let sent = place_until(
                legs[leg].executor.as_ref(),
                &legs[leg].request,
                &legs[leg].rules,
                repair_started,
                repair_deadline,
            )
            .await;
            let (order, stop) = record(leg, Step::Recheck, legs[leg].request.clone(), sent);
            stopped = stopped.or(stop);
            // The answer replaces the lost one (it is the same order).
            orders[i].in_doubt = false;
            orders[i].error = Some(format!(
                "{}; asked for again",
                orders[i].error.as_deref().unwrap_or("no answer")
            ));
            orders.push(order);
            continue;
        }
        if orders.iter().any(|o| o.in_doubt) {
            note = Some("a leg's order is still in doubt after it was asked for again".to_owned());
            break;
        }
        let (long, short) = if now[0] > now[1] { (0, 1) } else { (1, 0) };
        let excess = now[long] - now[short];
        // 2. Complete the short leg, unless its venue refused it.
        let refused = orders
            .iter()
            .any(|o| o.leg == short && o.step == Step::Entry && o.refused);
        let short_leg = &legs[short];
        let size = excess.round_dp_with_strategy(short_leg.size_decimals, RoundingStrategy::ToZero);
        if !refused && completes < REPAIR_ATTEMPTS && size >= short_leg.rules.min_size {
            if completes > 0 {
                tokio::time::sleep(REPAIR_PAUSE * completes).await;
            }
            let request = OrderRequest {
                client_id: client_id(short, Step::Complete, completes),
                size: size.normalize(),
                price: on_tick(
                    short_leg.request.price + limits.max_slippage,
                    short_leg.rules.tick_size,
                    OrderSide::Buy,
                ),
                side: OrderSide::Buy,
                time_in_force: TimeInForce::ImmediateOrCancel,
                ..short_leg.request.clone()
            };
            completes += 1;
            let sent = place_until(
                short_leg.executor.as_ref(),
                &request,
                &short_leg.rules,
                repair_started,
                repair_deadline,
            )
            .await;
            let (order, stop) = record(short, Step::Complete, request, sent);
            stopped = stopped.or(stop);
            orders.push(order);
            continue;
        }
        // 3. Unwind the long leg's excess.
        let long_leg = &legs[long];
        let size = excess.round_dp_with_strategy(long_leg.size_decimals, RoundingStrategy::ToZero);
        if unwinds >= REPAIR_ATTEMPTS || size < long_leg.rules.min_size || size.is_zero() {
            note = Some(format!(
                "{excess} {} shares on {} could not be matched or sold back within the limits",
                long_leg.request.instrument, long_leg.venue
            ));
            break;
        }
        if unwinds > 0 {
            tokio::time::sleep(REPAIR_PAUSE * unwinds).await;
        }
        let bought = orders
            .iter()
            .filter(|o| o.leg == long && o.request.side == OrderSide::Buy && !o.filled().is_zero())
            .fold((Decimal::ZERO, Decimal::ZERO), |(c, s), o| {
                (c + o.cash_and_fees().0, s + o.filled())
            });
        let average = if bought.1.is_zero() {
            long_leg.request.price
        } else {
            bought.0 / bought.1
        };
        let request = OrderRequest {
            client_id: client_id(long, Step::Unwind, unwinds),
            size: size.normalize(),
            price: on_tick(
                average - limits.max_slippage,
                long_leg.rules.tick_size,
                OrderSide::Sell,
            ),
            side: OrderSide::Sell,
            time_in_force: TimeInForce::ImmediateOrCancel,
            ..long_leg.request.clone()
        };
        unwinds += 1;
        let sent = place_until(
            long_leg.executor.as_ref(),
            &request,
            &long_leg.rules,
            repair_started,
            repair_deadline,
        )
        .await;
        let (order, stop) = record(long, Step::Unwind, request, sent);
        stopped = stopped.or(stop);
        orders.push(order);
    }

    let held = held(&orders);
    let filled_any = orders.iter().any(|o| !o.filled().is_zero());
    let step_filled = |step: Step| {
        orders
            .iter()
            .any(|o| o.step == step && !o.filled().is_zero())
    };
    let status = if orders.iter().any(|o| o.in_doubt) {
        // Whether the venue has the order is not known: the pair stays
        // open, and the next start settles it from the venues' fills.
        if note.is_none() {
            note = Some("a leg's order is in doubt".to_owned());
        }
        PairStatus::Open
    } else if held[0] != held[1] {
        if note.is_none() {
            note = Some(match &stopped {
                Some(e) => format!("the repair stopped: {e}"),
                None => "the legs filled unequally".to_owned(),
            });
        }
        PairStatus::Broken
    } else if !filled_any {
        PairStatus::Unfilled
    } else if step_filled(Step::Unwind) {
        PairStatus::Unwound
    } else if step_filled(Step::Complete) {
        PairStatus::Completed
    } else {
        PairStatus::Locked
    };
    PairOutcome {
        status,
        orders,
        held,
        note,
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    /// An order of `leg` that filled `size` at `price` with `fee`.
    fn filled(
        leg: usize,
        step: Step,
        side: OrderSide,
        price: Decimal,
        size: Decimal,
        fee: Decimal,
    ) -> PairOrder {
        let request = OrderRequest {
            client_id: ClientOrderId::derive(&[9; 16], 1, leg as u64),
            market: format!("m{leg}"),
            instrument: "yes".to_owned(),
            side,
            price,
            size,
            time_in_force: TimeInForce::ImmediateOrCancel,
        };
        let fill = super::super::VenueFill {
            trade_id: format!("t{leg}{price}"),
            venue_order_id: format!("o{leg}"),
            market: request.market.clone(),
            instrument: request.instrument.clone(),
            side,
            price,
            size,
            fee,
            ts: 0,
        };
        PairOrder {
            leg,
            step,
            placed: Some(Placed {
                client_id: request.client_id,
                venue_order_id: format!("o{leg}"),
                state: OrderState::Closed,
                filled: size,
                fills: vec![fill],
                trade_ids: Vec::new(),
                recovered: false,
                wire: String::new(),
            }),
            request,
            error: None,
            in_doubt: false,
            refused: false,
        }
    }

    #[test]
    fn the_matched_sets_lock_their_edge_and_the_sold_excess_its_loss() {
        let orders = vec![
            filled(
                0,
                Step::Entry,
                OrderSide::Buy,
                dec!(0.40),
                dec!(100),
                dec!(1.68),
            ),
            filled(
                1,
                Step::Entry,
                OrderSide::Buy,
                dec!(0.50),
                dec!(60),
                dec!(1.05),
            ),
            filled(
                0,
                Step::Unwind,
                OrderSide::Sell,
                dec!(0.38),
                dec!(40),
                dec!(0.65968),
            ),
        ];
        let outcome = PairOutcome {
            status: PairStatus::Unwound,
            orders,
            held: [dec!(60), dec!(60)],
            note: None,
            stopped: None,
        };
        assert_eq!(outcome.matched(), dec!(60));
        assert_eq!(outcome.cost_per_share(0), dec!(0.4168));
        assert_eq!(outcome.cost_per_share(1), dec!(0.5175));
        assert_eq!(outcome.locked_edge(), dec!(3.942));
        assert_eq!(outcome.realised_loss(), dec!(2.13168));
    }

    #[test]
    fn repair_prices_stay_on_the_tick_and_inside_the_payout() {
        assert_eq!(on_tick(dec!(0.527), dec!(0.01), OrderSide::Buy), dec!(0.52));
        assert_eq!(
            on_tick(dec!(0.521), dec!(0.01), OrderSide::Sell),
            dec!(0.53)
        );
        assert_eq!(on_tick(dec!(1.01), dec!(0.01), OrderSide::Buy), dec!(0.99));
        assert_eq!(
            on_tick(dec!(-0.01), dec!(0.01), OrderSide::Sell),
            dec!(0.01)
        );
    }
}
