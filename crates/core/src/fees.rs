//! Fee formulas the venues publish, shared by the engine (edge checks,
//! paper fills) and the venue connectors (booking live fills). No I/O.
//!
//! Kalshi (docs.kalshi.com, "Fee Rounding"; rates from VENUES.md §2): every
//! fill's trade fee is `rate × C × P × (1 − P)` rounded up to $0.0001; the
//! balance change (`revenue − trade_fee`, revenue negative for a buyer) is
//! floored to the member's balance precision and the difference charged as
//! a rounding fee; a per-order accumulator adds the rounding fees up and,
//! each time they reach a cent, rebates that cent, so many small fills cost
//! what one equivalent fill would. For one fill at a whole-cent price the
//! net is `ceil_to_cent(rate × C × P × (1 − P))`.
//!
//! The rate is the series' own ([`KalshiSeriesFees`], from `GET /series`):
//! `fee_multiplier × 0.07` for takers, and `fee_multiplier × 0.0175` for
//! makers only on series whose `fee_type` is `quadratic_with_maker_fees`.

use rust_decimal::Decimal;
use serde::Serialize;

/// Kalshi's published taker rate.
pub const KALSHI_TAKER_RATE: Decimal = Decimal::from_parts(7, 0, 0, false, 2);
/// Kalshi's published maker rate (a quarter of the taker's), for series
/// that charge makers.
pub const KALSHI_MAKER_RATE: Decimal = Decimal::from_parts(175, 0, 0, false, 4);
/// A non-direct member's balance moves in whole cents.
pub const KALSHI_CENT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// How a Kalshi series charges (its `fee_type` in `GET /series/{ticker}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KalshiFeeType {
    /// `quadratic`: takers pay `0.07 × M × C × P × (1 − P)`; makers nothing.
    Quadratic,
    /// `quadratic_with_maker_fees`: takers as above, makers
    /// `0.0175 × M × C × P × (1 − P)`.
    QuadraticWithMakerFees,
}

impl KalshiFeeType {
    /// The series' `fee_type` as the exchange spells it. `flat` and any type
    /// not listed here are refused: their formula is not published in a
    /// form this platform can check, and guessing a fee would misprice every
    /// edge on the series.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "quadratic" => Ok(KalshiFeeType::Quadratic),
            "quadratic_with_maker_fees" => Ok(KalshiFeeType::QuadraticWithMakerFees),
            other => Err(format!(
                "Kalshi fee_type {other:?} is not supported (only \"quadratic\" and \"quadratic_with_maker_fees\")"
            )),
        }
    }
}

/// One Kalshi series' fee schedule: its type and its multiplier `M`
/// (`fee_multiplier`: 1 for most series, 0.5 for the S&P 500 and Nasdaq-100
/// series, 0 for fee-free ones). The rates are the published
/// [`KALSHI_TAKER_RATE`] and [`KALSHI_MAKER_RATE`] scaled by `M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KalshiSeriesFees {
    pub fee_type: KalshiFeeType,
    pub multiplier: Decimal,
}

impl Default for KalshiSeriesFees {
    /// The general schedule: quadratic, multiplier 1.
    fn default() -> Self {
        Self {
            fee_type: KalshiFeeType::Quadratic,
            multiplier: Decimal::ONE,
        }
    }
}

impl KalshiSeriesFees {
    /// The series' schedule from its `fee_type` and `fee_multiplier`;
    /// a negative multiplier or an unsupported type is an error.
    pub fn new(fee_type: &str, multiplier: Decimal) -> Result<Self, String> {
        if multiplier.is_sign_negative() {
            return Err(format!("Kalshi fee_multiplier {multiplier} is negative"));
        }
        Ok(Self {
            fee_type: KalshiFeeType::parse(fee_type)?,
            multiplier,
        })
    }

    /// What a taker pays per `C × P × (1 − P)`.
    pub fn taker_rate(&self) -> Decimal {
        (KALSHI_TAKER_RATE * self.multiplier).normalize()
    }

    /// What a maker pays per `C × P × (1 − P)`: zero unless the series
    /// charges makers.
    pub fn maker_rate(&self) -> Decimal {
        match self.fee_type {
            KalshiFeeType::Quadratic => Decimal::ZERO,
            KalshiFeeType::QuadraticWithMakerFees => {
                (KALSHI_MAKER_RATE * self.multiplier).normalize()
            }
        }
    }

    /// The rate of a fill, taker or maker.
    pub fn rate(&self, taker: bool) -> Decimal {
        if taker {
            self.taker_rate()
        } else {
            self.maker_rate()
        }
    }
}

/// What one Kalshi fill costs in fees, as the exchange books it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KalshiFillFee {
    /// `rate × C × P × (1 − P)`, rounded up to $0.0001.
    pub trade_fee: Decimal,
    /// What brings the balance back to its precision (floor of the change).
    pub rounding_fee: Decimal,
    /// Whole cents the order's accumulator gives back.
    pub rebate: Decimal,
    /// `trade_fee + rounding_fee − rebate`, never negative.
    pub net: Decimal,
}

/// Kalshi's per-order fee accumulator (docs.kalshi.com, "Fee Rounding"):
/// each fill's trade fee is rounded up to $0.0001; the balance change
/// (`revenue − trade_fee`, revenue negative for a buyer) is floored to the
/// member's balance precision and the difference charged as a rounding fee;
/// the accumulator adds up the rounding fees of the order's fills and, each
/// time it reaches a cent, rebates that cent. So many small fills cost what
/// one equivalent fill would. One accumulator per order, across its taker
/// and maker fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KalshiFeeAccumulator {
    /// The member's balance precision: $0.01, or $0.0001 for direct members.
    precision: Decimal,
    accumulated: Decimal,
}

impl Default for KalshiFeeAccumulator {
    fn default() -> Self {
        Self::new(KALSHI_CENT)
    }
}

impl KalshiFeeAccumulator {
    /// An order's accumulator for a member whose balance moves in steps of
    /// `precision`.
    pub fn new(precision: Decimal) -> Self {
        Self {
            precision,
            accumulated: Decimal::ZERO,
        }
    }

    /// The rounding carried so far (below a cent after every fill).
    pub fn accumulated(&self) -> Decimal {
        self.accumulated
    }

    /// Books one fill of `count` contracts at `price`, charged at `rate`
    /// (the taker or maker rate), bought (`buying`) or sold.
    pub fn fill(
        &mut self,
        count: Decimal,
        price: Decimal,
        rate: Decimal,
        buying: bool,
    ) -> KalshiFillFee {
        let trade_fee = (rate * count * price * (Decimal::ONE - price))
            .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::AwayFromZero);
        let notional = count * price;
        let revenue = if buying { -notional } else { notional };
        let change = revenue - trade_fee;
        let floored = (change / self.precision).floor() * self.precision;
        let rounding_fee = change - floored;
        self.accumulated += rounding_fee;
        let mut rebate = Decimal::ZERO;
        while self.accumulated >= KALSHI_CENT {
            self.accumulated -= KALSHI_CENT;
            rebate += KALSHI_CENT;
        }
        let net = (trade_fee + rounding_fee - rebate).max(Decimal::ZERO);
        KalshiFillFee {
            trade_fee: trade_fee.normalize(),
            rounding_fee: rounding_fee.normalize(),
            rebate: rebate.normalize(),
            net: net.normalize(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    /// One order filled at once on a series, as the exchange books it.
    fn order_fee(fees: KalshiSeriesFees, taker: bool, count: Decimal, price: Decimal) -> Decimal {
        KalshiFeeAccumulator::default()
            .fill(count, price, fees.rate(taker), true)
            .net
    }

    // Kalshi's fee schedule: the general formula's examples (VENUES.md §2),
    // the half-rate S&P 500 / Nasdaq-100 series (multiplier 0.5), makers
    // paying only on series that say so, and fee-free series.
    #[test]
    fn series_fees_match_the_published_examples() {
        let general = KalshiSeriesFees::new("quadratic", dec!(1)).unwrap();
        let makers = KalshiSeriesFees::new("quadratic_with_maker_fees", dec!(1)).unwrap();
        let half = KalshiSeriesFees::new("quadratic", dec!(0.5)).unwrap();
        let free = KalshiSeriesFees::new("quadratic", dec!(0)).unwrap();
        for (count, price, taker, maker) in [
            (dec!(1), dec!(0.50), dec!(0.02), dec!(0.01)),
            (dec!(100), dec!(0.50), dec!(1.75), dec!(0.44)),
            (dec!(10), dec!(0.30), dec!(0.15), dec!(0.04)),
            (dec!(100), dec!(0.05), dec!(0.34), dec!(0.09)),
        ] {
            assert_eq!(
                order_fee(general, true, count, price),
                taker,
                "{count} @ {price}"
            );
            assert_eq!(
                order_fee(makers, true, count, price),
                taker,
                "{count} @ {price}"
            );
            assert_eq!(
                order_fee(makers, false, count, price),
                maker,
                "{count} @ {price}"
            );
            assert_eq!(
                order_fee(general, false, count, price),
                dec!(0),
                "{count} @ {price}"
            );
        }
        // 0.035 × 100 × 0.5 × 0.5 = 0.875, up to the cent.
        assert_eq!(half.taker_rate(), dec!(0.035));
        assert_eq!(order_fee(half, true, dec!(100), dec!(0.50)), dec!(0.88));
        assert_eq!(order_fee(half, true, dec!(1), dec!(0.50)), dec!(0.01));
        assert_eq!(order_fee(free, true, dec!(100), dec!(0.50)), dec!(0));
        assert_eq!(makers.maker_rate(), dec!(0.0175));
        assert_eq!(general.maker_rate(), dec!(0));
    }

    #[test]
    fn an_unknown_or_flat_kalshi_fee_type_is_refused_not_guessed() {
        assert_eq!(
            KalshiSeriesFees::new("flat", dec!(1)).unwrap_err(),
            "Kalshi fee_type \"flat\" is not supported (only \"quadratic\" and \"quadratic_with_maker_fees\")"
        );
        assert!(KalshiSeriesFees::new("quadratic", dec!(-1)).is_err());
        assert_eq!(KalshiSeriesFees::default().taker_rate(), dec!(0.07));
    }

    // docs.kalshi.com "Fee Rounding": the three components of one fill.
    #[test]
    fn a_kalshi_fill_pays_a_centicent_trade_fee_plus_the_rounding_to_the_cent() {
        let mut acc = KalshiFeeAccumulator::default();
        let fee = acc.fill(dec!(1), dec!(0.50), KALSHI_TAKER_RATE, true);
        assert_eq!(
            fee,
            KalshiFillFee {
                trade_fee: dec!(0.0175),
                rounding_fee: dec!(0.0025),
                rebate: dec!(0),
                net: dec!(0.02),
            }
        );
        assert_eq!(acc.accumulated(), dec!(0.0025));
    }

    // Three one-lot matches at the subpenny $0.055 cost what one 3-lot fill
    // costs: $0.015 in all.
    #[test]
    fn subpenny_one_lot_fills_cost_what_one_equivalent_fill_costs() {
        let mut acc = KalshiFeeAccumulator::default();
        let fills: Vec<KalshiFillFee> = (0..3)
            .map(|_| acc.fill(dec!(1), dec!(0.055), KALSHI_TAKER_RATE, true))
            .collect();
        assert!(fills.iter().all(|f| f.trade_fee == dec!(0.0037)));
        assert!(fills.iter().all(|f| f.rounding_fee == dec!(0.0013)));
        let total: Decimal = fills.iter().map(|f| f.net).sum();
        let single =
            KalshiFeeAccumulator::default().fill(dec!(3), dec!(0.055), KALSHI_TAKER_RATE, true);
        assert_eq!(single.trade_fee, dec!(0.011));
        assert_eq!(total, dec!(0.015));
        assert_eq!(single.net, total);
    }

    // Four one-lot taker fills at $0.50 overpay a cent in rounding; the
    // accumulator gives it back on the fourth, so the order pays $0.07 as a
    // single 4-lot fill would.
    #[test]
    fn the_kalshi_accumulator_rebates_each_whole_cent_of_rounding() {
        let mut acc = KalshiFeeAccumulator::default();
        let nets: Vec<Decimal> = (0..4)
            .map(|_| acc.fill(dec!(1), dec!(0.50), KALSHI_TAKER_RATE, true).net)
            .collect();
        assert_eq!(nets, vec![dec!(0.02), dec!(0.02), dec!(0.02), dec!(0.01)]);
        assert_eq!(acc.accumulated(), dec!(0));
        assert_eq!(
            KalshiFeeAccumulator::default()
                .fill(dec!(4), dec!(0.50), KALSHI_TAKER_RATE, true)
                .net,
            dec!(0.07)
        );
        // A direct member's balance keeps centicents: no rounding fee at all.
        let mut direct = KalshiFeeAccumulator::new(dec!(0.0001));
        assert_eq!(
            direct
                .fill(dec!(1), dec!(0.50), KALSHI_TAKER_RATE, true)
                .net,
            dec!(0.0175)
        );
    }
}
