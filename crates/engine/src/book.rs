//! Order books: bids and asks kept best-first (bids descending, asks
//! ascending), updated by snapshots and per-level deltas without allocating
//! once their capacity is reached.
//!
//! Venues send books in their own order (Polymarket and Kalshi send ascending
//! arrays, best bid last); the engine sorts on the way in.

use rust_decimal::Decimal;

use crate::fees::FeeModel;
use crate::types::{BookSide, Level, Side};

/// One outcome's book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderBook {
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// The result of walking a book for a taker order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sweep {
    /// Size that can be taken within the limit.
    pub filled: Decimal,
    /// Sum of price × size over the levels taken.
    pub notional: Decimal,
    /// The order's fee, rounded as the venue rounds it.
    pub fee: Decimal,
    /// The worst price reached.
    pub worst_price: Decimal,
}

impl Sweep {
    /// Average price per unit, or zero when nothing filled.
    pub fn avg_price(&self) -> Decimal {
        if self.filled.is_zero() {
            Decimal::ZERO
        } else {
            self.notional / self.filled
        }
    }
}

impl OrderBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Best-first bids.
    pub fn bids(&self) -> &[Level] {
        &self.bids
    }

    /// Best-first asks.
    pub fn asks(&self) -> &[Level] {
        &self.asks
    }

    pub fn best_bid(&self) -> Option<Level> {
        self.bids.first().copied()
    }

    pub fn best_ask(&self) -> Option<Level> {
        self.asks.first().copied()
    }

    pub fn levels(&self, side: BookSide) -> &[Level] {
        match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        }
    }

    /// Replaces one side with `levels` (any order; empty sizes dropped).
    pub fn replace_side(&mut self, side: BookSide, levels: &[Level]) {
        let target = match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        };
        target.clear();
        target.extend(levels.iter().filter(|l| l.size > Decimal::ZERO).copied());
        match side {
            BookSide::Bid => target.sort_unstable_by_key(|l| std::cmp::Reverse(l.price)),
            BookSide::Ask => target.sort_unstable_by_key(|a| a.price),
        }
        // Venues never send a price twice; if one did, keep one of them.
        target.dedup_by(|later, first| later.price == first.price);
    }

    /// Replaces one side with levels mirrored from the other outcome's
    /// opposite side: a Kalshi YES bid at p is a NO ask at 1 − p.
    pub fn replace_side_mirrored(&mut self, side: BookSide, source: &[Level]) {
        let target = match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        };
        target.clear();
        // The source is best-first on its side, so mirrored it is best-first too.
        target.extend(
            source
                .iter()
                .map(|l| Level::new(Decimal::ONE - l.price, l.size)),
        );
    }

    /// Sets the size at `price` (zero removes the level).
    pub fn set_level(&mut self, side: BookSide, price: Decimal, size: Decimal) {
        let (levels, found) = match side {
            BookSide::Bid => {
                let found = self.bids.binary_search_by(|l| price.cmp(&l.price));
                (&mut self.bids, found)
            }
            BookSide::Ask => {
                let found = self.asks.binary_search_by(|l| l.price.cmp(&price));
                (&mut self.asks, found)
            }
        };
        match found {
            Ok(i) if size <= Decimal::ZERO => {
                levels.remove(i);
            }
            Ok(i) => levels[i].size = size,
            Err(_) if size <= Decimal::ZERO => {}
            Err(i) => levels.insert(i, Level::new(price, size)),
        }
    }

    /// What a taker order of `size` at `limit` would get, without changing the book.
    pub fn sweep(&self, side: Side, limit: Decimal, size: Decimal, fees: &FeeModel) -> Sweep {
        let levels = match side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        };
        let mut out = Sweep::default();
        let mut fee = fees.tally(side == Side::Buy);
        for level in levels {
            let within = match side {
                Side::Buy => level.price <= limit,
                Side::Sell => level.price >= limit,
            };
            if !within || out.filled >= size {
                break;
            }
            let take = level.size.min(size - out.filled);
            out.filled += take;
            out.notional += take * level.price;
            fee.add(take, level.price);
            out.worst_price = level.price;
        }
        out.fee = fee.total();
        out
    }

    /// Takes `size` at `limit` out of the book (a paper fill consumes the
    /// liquidity it took, until the venue's next snapshot restores the truth).
    pub fn take(&mut self, side: Side, limit: Decimal, size: Decimal, fees: &FeeModel) -> Sweep {
        let result = self.sweep(side, limit, size, fees);
        let levels = match side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        };
        let mut left = result.filled;
        let mut emptied = 0;
        for level in levels.iter_mut() {
            if left <= Decimal::ZERO {
                break;
            }
            let take = level.size.min(left);
            level.size -= take;
            left -= take;
            if level.size <= Decimal::ZERO {
                emptied += 1;
            }
        }
        levels.drain(..emptied);
        result
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn book() -> OrderBook {
        let mut b = OrderBook::new();
        // As Polymarket sends them: ascending, best bid last.
        b.replace_side(
            BookSide::Bid,
            &[
                Level::new(dec!(0.30), dec!(100)),
                Level::new(dec!(0.40), dec!(100)),
            ],
        );
        b.replace_side(
            BookSide::Ask,
            &[
                Level::new(dec!(0.70), dec!(100)),
                Level::new(dec!(0.60), dec!(100)),
            ],
        );
        b
    }

    #[test]
    fn levels_are_kept_best_first_on_both_sides() {
        let b = book();
        assert_eq!(b.best_bid(), Some(Level::new(dec!(0.40), dec!(100))));
        assert_eq!(b.best_ask(), Some(Level::new(dec!(0.60), dec!(100))));
        assert_eq!(b.bids()[1].price, dec!(0.30));
        assert_eq!(b.asks()[1].price, dec!(0.70));
    }

    #[test]
    fn a_delta_inserts_updates_and_removes_levels_in_place() {
        let mut b = book();
        b.set_level(BookSide::Bid, dec!(0.45), dec!(10));
        b.set_level(BookSide::Ask, dec!(0.60), dec!(5));
        b.set_level(BookSide::Ask, dec!(0.70), dec!(0));
        b.set_level(BookSide::Ask, dec!(0.80), dec!(0));
        assert_eq!(b.best_bid(), Some(Level::new(dec!(0.45), dec!(10))));
        assert_eq!(b.asks(), &[Level::new(dec!(0.60), dec!(5))]);
    }

    #[test]
    fn a_buy_walks_the_asks_up_to_its_limit() {
        let b = book();
        let fees = FeeModel::Polymarket {
            rate: dec!(0.07),
            exponent: 1,
        };
        let s = b.sweep(Side::Buy, dec!(0.70), dec!(150), &fees);
        assert_eq!(s.filled, dec!(150));
        assert_eq!(s.notional, dec!(95)); // 100 × 0.60 + 50 × 0.70
        // 100·0.07·0.6·0.4 + 50·0.07·0.7·0.3 = 1.68 + 0.735
        assert_eq!(s.fee, dec!(2.415));
        assert_eq!(s.worst_price, dec!(0.70));
        let capped = b.sweep(Side::Buy, dec!(0.65), dec!(150), &fees);
        assert_eq!(capped.filled, dec!(100));
    }

    #[test]
    fn taking_liquidity_removes_it_from_the_book() {
        let mut b = book();
        let fees = FeeModel::Kalshi { rate: dec!(0.07) };
        let s = b.take(Side::Sell, dec!(0.30), dec!(120), &fees);
        assert_eq!(s.filled, dec!(120));
        assert_eq!(b.bids(), &[Level::new(dec!(0.30), dec!(80))]);
    }

    #[test]
    fn a_mirrored_side_prices_each_level_at_one_minus() {
        let mut no = OrderBook::new();
        let yes = book();
        no.replace_side_mirrored(BookSide::Ask, yes.bids());
        assert_eq!(no.best_ask(), Some(Level::new(dec!(0.60), dec!(100))));
        assert_eq!(no.asks()[1].price, dec!(0.70));
    }
}
