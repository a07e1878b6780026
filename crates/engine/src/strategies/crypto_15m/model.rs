//! The fair value of a 15-minute up/down market, in `Decimal` throughout.
//!
//! `P(Up) = Φ(ln(S/S₀) / (σ·√τ))`: a driftless log-normal walk from the spot
//! `S` now, against the window's opening price `S₀`, over the `τ` seconds
//! left, with `σ²` the realised variance of spot returns per second. Ties pay
//! Up, which a continuous model gives zero weight; that is conservative for Up.
//!
//! No floats: `Φ` comes from a table built once from the erf series in
//! `Decimal` and interpolated linearly (step 0.01, error < 4·10⁻⁶), the square
//! root from `u128::isqrt` on the scaled mantissa, and `ln(1 + r)` from its
//! series (|r| is a fraction of a percent over 15 minutes).

use std::sync::OnceLock;

use rust_decimal::Decimal;

const TABLE_STEP_INV: i64 = 100;
const TABLE_MAX_Z: i64 = 6;
const TABLE_LEN: usize = (TABLE_MAX_Z * TABLE_STEP_INV) as usize + 1;

/// 2/√π.
const TWO_OVER_SQRT_PI: Decimal =
    Decimal::from_parts(2_109_428_519, 756_641_710, 611_695_572, false, 28);
/// 1/√2.
const INV_SQRT_2: Decimal = Decimal::from_parts(2_914_029_285, 733_767_332, 383_323_354, false, 28);

fn table() -> &'static [Decimal] {
    static TABLE: OnceLock<Vec<Decimal>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..TABLE_LEN)
            .map(|i| {
                let z = Decimal::new(i as i64, 2);
                (Decimal::ONE + erf(z * INV_SQRT_2)) / Decimal::TWO
            })
            .collect()
    })
}

/// Builds the Φ table (once per process), so that no decision pays for it.
pub fn warm_up() {
    debug_assert_eq!(table().len(), TABLE_LEN);
    std::hint::black_box(table());
}

/// erf(x) for 0 ≤ x ≤ 4.3 by its Maclaurin series; terms are built one from
/// the last so that no power overflows.
fn erf(x: Decimal) -> Decimal {
    let x2 = x * x;
    let mut term = x; // (-1)^n x^(2n+1) / n!
    let mut sum = x;
    let tiny = Decimal::new(1, 24);
    for n in 1..400i64 {
        term = term * -x2 / Decimal::from(n);
        let add = term / Decimal::from(2 * n + 1);
        sum += add;
        if add.abs() < tiny {
            break;
        }
    }
    (sum * TWO_OVER_SQRT_PI).min(Decimal::ONE)
}

/// The standard normal CDF Φ(z).
pub fn norm_cdf(z: Decimal) -> Decimal {
    let a = z.abs();
    let upper = if a >= Decimal::from(TABLE_MAX_Z) {
        Decimal::ONE
    } else {
        let scaled = a * Decimal::from(TABLE_STEP_INV);
        let i = scaled.trunc();
        let frac = scaled - i;
        let i = i.mantissa() as usize / 10usize.pow(i.scale());
        let t = table();
        t[i] + (t[i + 1] - t[i]) * frac
    };
    if z.is_sign_negative() {
        Decimal::ONE - upper
    } else {
        upper
    }
}

/// √x for x ≥ 0 (zero for negatives), to about 12 significant digits.
pub fn sqrt(x: Decimal) -> Decimal {
    if x <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let x = x.normalize();
    let mantissa = x.mantissa().unsigned_abs();
    let scale = i64::from(x.scale());
    // Find the finest result scale k whose squared scale fits in u128.
    for k in (0..=14i64).rev() {
        let exp = 2 * k - scale;
        let n = if exp >= 0 {
            10u128
                .checked_pow(exp as u32)
                .and_then(|p| mantissa.checked_mul(p))
        } else {
            10u128.checked_pow((-exp) as u32).map(|p| mantissa / p)
        };
        if let Some(n) = n {
            let root = n.isqrt();
            if let Ok(root) = i128::try_from(root)
                && let Ok(d) = Decimal::try_from_i128_with_scale(root, k as u32)
            {
                return d;
            }
        }
    }
    Decimal::ZERO
}

/// ln(1 + r) by its series to the fourth power: exact enough for |r| < 5 %
/// (error below 7·10⁻⁸), and a larger move makes the probability 0 or 1 anyway.
pub fn ln_1p(r: Decimal) -> Decimal {
    let r2 = r * r;
    let r3 = r2 * r;
    let r4 = r2 * r2;
    r - r2 / Decimal::TWO + r3 / Decimal::from(3) - r4 / Decimal::from(4)
}

/// P(price at the window's end ≥ `open`), given `spot` now, the variance of
/// returns per second and the seconds left.
pub fn prob_up(
    spot: Decimal,
    open: Decimal,
    variance_per_sec: Decimal,
    remaining_secs: Decimal,
) -> Decimal {
    if open <= Decimal::ZERO || spot <= Decimal::ZERO {
        return Decimal::new(5, 1);
    }
    let log_move = ln_1p((spot - open) / open);
    let sd = sqrt(variance_per_sec * remaining_secs);
    if sd.is_zero() {
        return if spot >= open {
            Decimal::ONE
        } else {
            Decimal::ZERO
        };
    }
    norm_cdf(log_move / sd)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn close(a: Decimal, b: Decimal, tol: Decimal) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn the_normal_cdf_matches_published_values() {
        assert_eq!(norm_cdf(dec!(0)), dec!(0.5));
        assert!(close(norm_cdf(dec!(1)), dec!(0.8413447461), dec!(0.000005)));
        assert!(close(
            norm_cdf(dec!(1.96)),
            dec!(0.9750021049),
            dec!(0.000005)
        ));
        assert!(close(
            norm_cdf(dec!(-1.2345)),
            dec!(0.1085083),
            dec!(0.000005)
        ));
        assert!(close(norm_cdf(dec!(3)), dec!(0.9986501020), dec!(0.000005)));
        assert_eq!(norm_cdf(dec!(7)), dec!(1));
        assert_eq!(norm_cdf(dec!(-7)), dec!(0));
    }

    #[test]
    fn the_table_is_exact_at_its_knots() {
        assert!(close(
            table()[100],
            dec!(0.841344746068542948585232545),
            dec!(0.00000000001)
        ));
    }

    #[test]
    fn square_roots_are_exact_to_twelve_digits() {
        assert_eq!(sqrt(dec!(4)), dec!(2));
        assert_eq!(sqrt(dec!(0.0001)), dec!(0.01));
        assert!(close(
            sqrt(dec!(2)),
            dec!(1.41421356237),
            dec!(0.00000000001)
        ));
        assert!(close(
            sqrt(dec!(0.0000000123)),
            dec!(0.000110905365),
            dec!(0.000000000001)
        ));
        assert_eq!(sqrt(dec!(-1)), dec!(0));
        assert!(close(sqrt(dec!(1e20)), dec!(1e10), dec!(0.001)));
    }

    #[test]
    fn ln_1p_agrees_with_the_log_for_small_moves() {
        // ln(1.01) = 0.00995033085
        assert!(close(
            ln_1p(dec!(0.01)),
            dec!(0.00995033085),
            dec!(0.0000000001)
        ));
    }

    #[test]
    fn at_the_opening_price_up_is_a_coin_flip_and_a_move_tilts_it() {
        let var = dec!(0.000001); // 0.1 % per √s
        assert_eq!(prob_up(dec!(100), dec!(100), var, dec!(400)), dec!(0.5));
        // σ√τ = 0.001·20 = 0.02; ln(1.02) / 0.02 = 0.990131 → Φ ≈ 0.838945
        let p = prob_up(dec!(102), dec!(100), var, dec!(400));
        assert!(close(p, dec!(0.838945), dec!(0.0001)), "{p}");
        let q = prob_up(dec!(98), dec!(100), var, dec!(400));
        assert!(q < dec!(0.16) && q > dec!(0.15), "{q}");
        assert_eq!(prob_up(dec!(100.01), dec!(100), var, dec!(0)), dec!(1));
    }
}
