//! Venue fee formulas for takers (every order the engine sends takes liquidity).
//!
//! - Polymarket: `C × rate × (p × (1 − p))^exponent`, takers only (VENUES.md
//!   §8); the rate and exponent are each market's own, read from the CLOB's
//!   market info (`fd.r`, `fd.e`), never a constant. Rounded down to 5
//!   decimals, as the venue's accounting does (nautilus_trader [3P]).
//! - Kalshi: per fill, `rate × C × P × (1 − P)` rounded up to $0.0001, then
//!   the exchange's rounding fee and per-order accumulator
//!   ([`KalshiFeeAccumulator`], docs.kalshi.com `fee_rounding`); for one
//!   fill at a whole-cent price this is `ceil_to_cent(rate × C × P × (1 − P))`
//!   (VENUES.md §2). Takers pay [`KALSHI_TAKER_RATE`], makers
//!   [`KALSHI_MAKER_RATE`].
//! - CEX (Binance US, Coinbase, Kraken): a percentage of the notional, rounded
//!   up to 8 decimals so that a fee is never under-counted.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use polybot_core::strategy::Venue;

/// How one market charges a taker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum FeeModel {
    /// `C·rate·(p·(1−p))^exponent`, floored to 5 decimals.
    Polymarket { rate: Decimal, exponent: u32 },
    /// `ceil_to_cent(rate·C·p·(1−p))`.
    Kalshi { rate: Decimal },
    /// `rate × notional`.
    Percentage { rate: Decimal },
}

pub use polybot_core::fees::{
    KALSHI_CENT, KALSHI_MAKER_RATE, KALSHI_TAKER_RATE, KalshiFeeAccumulator, KalshiFillFee,
};

/// An order's fee added up fill by fill, rounded as its venue rounds it.
#[derive(Debug, Clone, Copy)]
pub struct FeeTally {
    model: FeeModel,
    buying: bool,
    /// Polymarket and CEX: the fee before rounding; Kalshi: the net so far.
    sum: Decimal,
    kalshi: KalshiFeeAccumulator,
}

impl FeeTally {
    /// Adds one fill (one level of a sweep).
    pub fn add(&mut self, size: Decimal, price: Decimal) {
        match self.model {
            FeeModel::Kalshi { rate } => {
                self.sum += self.kalshi.fill(size, price, rate, self.buying).net;
            }
            model => self.sum += model.raw_fee(size, price),
        }
    }

    /// The order's fee.
    pub fn total(&self) -> Decimal {
        match self.model {
            FeeModel::Kalshi { .. } => self.sum.normalize(),
            model => model.round(self.sum),
        }
    }
}

impl FeeModel {
    /// The venue's taker model at `rate` (the market's category rate for
    /// Polymarket, the account's tier for a CEX).
    pub const fn for_venue(venue: Venue, rate: Decimal) -> Self {
        match venue {
            Venue::Polymarket => FeeModel::Polymarket { rate, exponent: 1 },
            Venue::Kalshi => FeeModel::Kalshi { rate },
            Venue::BinanceUs | Venue::Coinbase | Venue::Kraken => FeeModel::Percentage { rate },
        }
    }

    /// The fee on one buy filled at once: `size` at `price`.
    pub fn fee(&self, size: Decimal, price: Decimal) -> Decimal {
        let mut tally = self.tally(true);
        tally.add(size, price);
        tally.total()
    }

    /// An empty tally for one order (`buying` or selling: Kalshi's rounding
    /// floors the balance change, which differs between the two).
    pub fn tally(&self, buying: bool) -> FeeTally {
        FeeTally {
            model: *self,
            buying,
            sum: Decimal::ZERO,
            kalshi: KalshiFeeAccumulator::default(),
        }
    }

    /// The fee before the venue's rounding: what one level of a fill adds to
    /// an order's total, which is rounded once with [`FeeModel::round`].
    #[inline]
    pub fn raw_fee(&self, size: Decimal, price: Decimal) -> Decimal {
        match *self {
            FeeModel::Polymarket { rate, exponent } => {
                let base = price * (Decimal::ONE - price);
                let mut factor = base;
                for _ in 1..exponent {
                    factor *= base;
                }
                if exponent == 0 {
                    factor = Decimal::ONE;
                }
                size * rate * factor
            }
            FeeModel::Kalshi { rate } => size * rate * price * (Decimal::ONE - price),
            FeeModel::Percentage { rate } => size * price * rate,
        }
    }

    /// The fee per share at `price`, before rounding (for edge estimates).
    #[inline]
    pub fn per_share(&self, price: Decimal) -> Decimal {
        self.raw_fee(Decimal::ONE, price)
    }

    /// The venue's rounding of an order's total fee (Kalshi's is per fill:
    /// see [`FeeTally`]; this rounds a single total up to the cent).
    pub fn round(&self, raw: Decimal) -> Decimal {
        match self {
            FeeModel::Polymarket { .. } => raw.round_dp_with_strategy(5, RoundingStrategy::ToZero),
            FeeModel::Kalshi { .. } => {
                raw.round_dp_with_strategy(2, RoundingStrategy::AwayFromZero)
            }
            FeeModel::Percentage { .. } => {
                raw.round_dp_with_strategy(8, RoundingStrategy::AwayFromZero)
            }
        }
        .normalize()
    }
}

/// Polymarket taker fee on `size` shares at `price` with the market's `rate`
/// (exponent 1).
pub fn polymarket_taker_fee(size: Decimal, price: Decimal, rate: Decimal) -> Decimal {
    FeeModel::Polymarket { rate, exponent: 1 }.fee(size, price)
}

/// Kalshi taker fee on `contracts` at `price`, rounded up to the cent.
pub fn kalshi_taker_fee(contracts: Decimal, price: Decimal) -> Decimal {
    FeeModel::Kalshi {
        rate: KALSHI_TAKER_RATE,
    }
    .fee(contracts, price)
}

/// A CEX taker fee: `rate` (0.001 = 0.1 %) of the notional.
pub fn cex_taker_fee(quantity: Decimal, price: Decimal, rate: Decimal) -> Decimal {
    FeeModel::Percentage { rate }.fee(quantity, price)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn polymarket_charges_1_75_on_100_crypto_shares_at_0_50() {
        assert_eq!(
            polymarket_taker_fee(dec!(100), dec!(0.50), dec!(0.07)),
            dec!(1.75)
        );
    }

    #[test]
    fn a_polymarket_exponent_raises_p_times_one_minus_p() {
        // 100 × 0.25 × (0.5 × 0.5)² = 1.5625
        let model = FeeModel::Polymarket {
            rate: dec!(0.25),
            exponent: 2,
        };
        assert_eq!(model.fee(dec!(100), dec!(0.50)), dec!(1.5625));
    }

    #[test]
    fn a_fee_free_polymarket_category_charges_nothing() {
        assert_eq!(
            polymarket_taker_fee(dec!(100), dec!(0.50), dec!(0)),
            dec!(0)
        );
    }

    #[test]
    fn polymarket_fees_are_floored_to_five_decimals() {
        // 3 × 0.07 × 0.33 × 0.67 = 0.0464310
        assert_eq!(
            polymarket_taker_fee(dec!(3), dec!(0.33), dec!(0.07)),
            dec!(0.04643)
        );
    }

    #[test]
    fn kalshi_charges_1_75_on_100_contracts_at_0_50() {
        assert_eq!(kalshi_taker_fee(dec!(100), dec!(0.50)), dec!(1.75));
    }

    #[test]
    fn kalshi_rounds_every_published_example_up_to_the_cent() {
        assert_eq!(kalshi_taker_fee(dec!(1), dec!(0.50)), dec!(0.02));
        assert_eq!(kalshi_taker_fee(dec!(10), dec!(0.30)), dec!(0.15));
        assert_eq!(kalshi_taker_fee(dec!(100), dec!(0.05)), dec!(0.34));
    }

    // VENUES.md §2's table (taker 0.07, maker 0.0175).
    #[test]
    fn kalshi_taker_and_maker_fees_match_the_published_table() {
        let maker = FeeModel::Kalshi {
            rate: KALSHI_MAKER_RATE,
        };
        for (count, price, taker, maker_fee) in [
            (dec!(1), dec!(0.50), dec!(0.02), dec!(0.01)),
            (dec!(100), dec!(0.50), dec!(1.75), dec!(0.44)),
            (dec!(10), dec!(0.30), dec!(0.15), dec!(0.04)),
            (dec!(100), dec!(0.05), dec!(0.34), dec!(0.09)),
        ] {
            assert_eq!(kalshi_taker_fee(count, price), taker, "{count} @ {price}");
            assert_eq!(maker.fee(count, price), maker_fee, "{count} @ {price}");
        }
    }

    #[test]
    fn a_kalshi_sweep_tallies_fees_level_by_level_with_the_accumulator() {
        let model = FeeModel::Kalshi {
            rate: KALSHI_TAKER_RATE,
        };
        let mut tally = model.tally(true);
        for _ in 0..4 {
            tally.add(dec!(1), dec!(0.50));
        }
        assert_eq!(tally.total(), dec!(0.07));
        // Selling: revenue is positive, the floor still rounds against us.
        let mut sell = model.tally(false);
        sell.add(dec!(1), dec!(0.50));
        assert_eq!(sell.total(), dec!(0.02));
    }

    #[test]
    fn a_cex_fee_is_a_percentage_of_the_notional() {
        assert_eq!(
            cex_taker_fee(dec!(0.5), dec!(65000), dec!(0.001)),
            dec!(32.5)
        );
        assert_eq!(
            FeeModel::for_venue(Venue::Kraken, dec!(0.0026)).fee(dec!(0.01), dec!(60000.10)),
            dec!(1.5600026)
        );
    }
}
