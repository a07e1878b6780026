//! Exact decimal parsing from venue JSON.
//!
//! Venues send prices as strings (`"0.5600"`) or as JSON numbers (Alpaca's
//! `27539.494`, gamma's `bestBid`). Going through `f64` would lose digits, so
//! these helpers read the literal text of the JSON value and parse that.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::value::RawValue;

/// Parses a decimal from text, plain or scientific (`1e-5`).
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("not a decimal: {text:?}"))
}

fn from_raw(raw: &RawValue) -> Result<Option<Decimal>, String> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if inner.trim().is_empty() {
            return Ok(None);
        }
        return parse_decimal(&inner).map(Some);
    }
    parse_decimal(text).map(Some)
}

/// A required decimal, from a JSON string or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dec(pub Decimal);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        match from_raw(&raw).map_err(D::Error::custom)? {
            Some(v) => Ok(Dec(v)),
            None => Err(D::Error::custom("expected a decimal, found null or empty")),
        }
    }
}

/// An optional decimal: `null`, `""` and a missing field (with
/// `#[serde(default)]`) are `None`; anything else must parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptDec(pub Option<Decimal>);

impl<'de> Deserialize<'de> for OptDec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Option::<Box<RawValue>>::deserialize(d)?;
        match raw {
            None => Ok(OptDec(None)),
            Some(raw) => from_raw(&raw).map(OptDec).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[derive(Deserialize)]
    struct Row {
        a: Dec,
        #[serde(default)]
        b: OptDec,
        #[serde(default)]
        c: OptDec,
    }

    #[test]
    fn numbers_and_strings_parse_exactly() {
        let row: Row = serde_json::from_str(r#"{"a":27539.494,"b":"0.5600","c":null}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.a.0, dec!(27539.494));
        assert_eq!(row.b.0, Some(dec!(0.5600)));
        assert_eq!(row.c.0, None);
        let row: Row =
            serde_json::from_str(r#"{"a":"1e-5","b":""}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.a.0, dec!(0.00001));
        assert_eq!(row.b.0, None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(serde_json::from_str::<Row>(r#"{"a":"abc"}"#).is_err());
        assert!(serde_json::from_str::<Row>(r#"{"a":null}"#).is_err());
    }
}
