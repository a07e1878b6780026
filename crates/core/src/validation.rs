//! Field-level validation errors and the parser that collects all of them.
//!
//! The control plane turns a `Vec<FieldError>` into a 422 that lists every bad
//! field at once, so a config is never parsed with a plain `serde_json::from_value`
//! (which stops at the first error). [`parse_section`] checks a JSON object field
//! by field instead: unknown or misnamed fields (with a "did you mean" hint),
//! fields of the wrong type, and then the section's own semantic rules.
//!
//! What does not live here: the configs themselves (see [`crate::strategy`] and
//! [`crate::risk`]).

use std::collections::BTreeSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One bad field: its JSON path (`strategies.crypto_15m.min_edge`,
/// `strategies.news_arb.rules[2].fair_price`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// `parent.name`, or `name` at the root.
pub fn field_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// A config object that can be checked field by field.
///
/// `Default` must be a valid value: a field that fails to parse is replaced by
/// its default so that the remaining fields can still be checked.
pub trait Section: Serialize + DeserializeOwned + Default {
    /// Every field name the section accepts, spelled as in JSON.
    const FIELDS: &'static [&'static str];

    /// Semantic rules on a well-typed value; `path` is the JSON path of `self`.
    fn validate_at(&self, path: &str) -> Vec<FieldError>;

    /// Checks a field that holds nested sections (so that their errors carry
    /// the nested path), pushing its errors. Returns `false` for fields it does
    /// not handle, which are then checked as a whole.
    fn check_nested(
        _field: &str,
        _value: &Value,
        _path: &str,
        _errors: &mut Vec<FieldError>,
    ) -> bool {
        false
    }
}

/// Parses `value` as the section `T` found at `path`, reporting every bad field.
pub fn parse_section<T: Section>(value: &Value, path: &str) -> Result<T, Vec<FieldError>> {
    let Value::Object(given) = value else {
        return Err(vec![FieldError::new(
            path,
            format!("expected an object, found {}", json_kind(value)),
        )]);
    };
    let defaults = match serde_json::to_value(T::default()) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => Map::new(),
    };
    let mut errors = Vec::new();
    let mut bad_fields = BTreeSet::new();
    let mut merged = defaults.clone();
    for (key, field_value) in given {
        let fpath = field_path(path, key);
        if !T::FIELDS.contains(&key.as_str()) {
            errors.push(unknown_field(&fpath, key, T::FIELDS));
            bad_fields.insert(key.clone());
            continue;
        }
        let before = errors.len();
        if T::check_nested(key, field_value, &fpath, &mut errors) && errors.len() > before {
            bad_fields.insert(key.clone());
            continue;
        }
        // Try this one field on top of the defaults: an error is then this field's.
        let mut trial = defaults.clone();
        trial.insert(key.clone(), field_value.clone());
        match serde_json::from_value::<T>(Value::Object(trial)) {
            Ok(_) => {
                merged.insert(key.clone(), field_value.clone());
            }
            Err(err) => {
                errors.push(FieldError::new(fpath, err.to_string()));
                bad_fields.insert(key.clone());
            }
        }
    }
    match serde_json::from_value::<T>(Value::Object(merged)) {
        Ok(section) => {
            for err in section.validate_at(path) {
                if !bad_fields.contains(top_field(path, &err.field)) {
                    errors.push(err);
                }
            }
            if errors.is_empty() {
                Ok(section)
            } else {
                Err(errors)
            }
        }
        Err(err) => {
            // Every field parsed alone, but not together: report it on the section.
            errors.push(FieldError::new(path, err.to_string()));
            Err(errors)
        }
    }
}

/// The first path component below `path` of `field` (`min_edge` for
/// `strategies.x.min_edge` under `strategies.x`).
fn top_field<'a>(path: &str, field: &'a str) -> &'a str {
    let rest = if path.is_empty() {
        field
    } else {
        field
            .strip_prefix(path)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(field)
    };
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    &rest[..end]
}

/// The error for a field name the section does not have, with a suggestion
/// when the name is close to a real one.
pub fn unknown_field(path: &str, name: &str, known: &[&str]) -> FieldError {
    match closest(name, known) {
        Some(suggestion) => FieldError::new(
            path,
            format!("unknown field `{name}`; did you mean `{suggestion}`?"),
        ),
        None => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            FieldError::new(
                path,
                format!(
                    "unknown field `{name}`; expected one of {}",
                    list.join(", ")
                ),
            )
        }
    }
}

/// The known name closest to `name`, if close enough to be a likely typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lowered = name.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (edit_distance(&lowered, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks each element of an array of nested sections at `path[i]`; used by
/// [`Section::check_nested`] implementations.
pub fn check_section_array<T: Section>(value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Err(errs) = parse_section::<T>(item, &format!("{path}[{i}]")) {
                    errors.extend(errs);
                }
            }
        }
        other => errors.push(FieldError::new(
            path,
            format!("expected an array, found {}", json_kind(other)),
        )),
    }
}

/// Collects semantic errors for one section; the small vocabulary the configs use.
#[derive(Debug)]
pub struct Checker<'a> {
    path: &'a str,
    errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    pub fn new(path: &'a str) -> Self {
        Self {
            path,
            errors: Vec::new(),
        }
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(field_path(self.path, field), message));
    }

    /// A probability-like price strictly between 0 and 1 when `exclusive`, or in [0, 1).
    pub fn probability(&mut self, field: &str, value: Decimal, exclusive_low: bool) {
        let low_ok = if exclusive_low {
            value > Decimal::ZERO
        } else {
            value >= Decimal::ZERO
        };
        if !low_ok || value >= Decimal::ONE {
            let low = if exclusive_low { "(0" } else { "[0" };
            self.fail(
                field,
                format!("must be in {low}, 1) (a price or probability), got {value}"),
            );
        }
    }

    pub fn positive(&mut self, field: &str, value: Decimal) {
        if value <= Decimal::ZERO {
            self.fail(field, format!("must be greater than 0, got {value}"));
        }
    }

    pub fn non_negative(&mut self, field: &str, value: Decimal) {
        if value < Decimal::ZERO {
            self.fail(field, format!("must not be negative, got {value}"));
        }
    }

    pub fn int_range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    pub fn non_empty_text(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(field, "is required and must not be empty");
        }
    }

    pub fn merge(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    pub fn path(&self) -> &str {
        self.path
    }

    pub fn finish(self) -> Vec<FieldError> {
        self.errors
    }
}

/// Why `text` cannot be stored as free text, if it cannot: NUL (which
/// PostgreSQL refuses in `text` and `jsonb`) and every other control character
/// except tab, line feed and carriage return, which multi-line values such as
/// PEM keys need.
pub fn text_problem(text: &str) -> Option<String> {
    text.chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| {
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            )
        })
}

/// Why `text` is not a name (a one-line label a person reads), if it is not:
/// no control characters at all, and none of the invisible formatting
/// characters (zero-width, bidirectional overrides) that make two names look
/// alike or a name display as something else.
pub fn name_problem(text: &str) -> Option<String> {
    text.chars()
        .find(|&c| c.is_control() || is_invisible_format(c))
        .map(|c| {
            format!(
                "must be printable text (found U+{:04X}, a control or formatting character)",
                u32::from(c)
            )
        })
}

/// Unicode format characters (category Cf) that change how text displays
/// without being seen.
fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB
    )
}

/// Every string and object key in `value` that [`text_problem`] refuses, each
/// named by its JSON path below `path` (`channels[0].secret`).
pub fn check_json_text(value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::String(text) => {
            if let Some(message) = text_problem(text) {
                errors.push(FieldError::new(path, message));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_json_text(item, &format!("{path}[{i}]"), errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let here = field_path(path, key);
                if let Some(message) = text_problem(key) {
                    errors.push(FieldError::new(here, format!("(the field name) {message}")));
                    continue;
                }
                check_json_text(item, &here, errors);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Serde helpers for `Decimal` fields in user-written configs: written back as
/// strings (exact), read from strings or JSON numbers (users type `0.02`).
pub mod decimal {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Text(String),
        Number(serde_json::Number),
    }

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let text = match Lenient::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a decimal number or a string"))?
        {
            Lenient::Text(t) => t,
            // serde_json prints the shortest exact form (0.02, not 0.0200000004).
            Lenient::Number(n) => n.to_string(),
        };
        Decimal::from_str(text.trim())
            .or_else(|_| Decimal::from_scientific(text.trim()))
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a decimal number")))
    }

    /// The JSON Schema of such a field: a decimal number, given as a string
    /// (as the API writes it) or a number.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number"], "format": "decimal"})
    }

    /// The same for `Option<Decimal>`.
    pub mod option {
        /// The JSON Schema of an optional decimal field.
        pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({"type": ["string", "number", "null"], "format": "decimal"})
        }

        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            value: &Option<Decimal>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.collect_str(v),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Decimal>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Decimal);
            Option::<Wrap>::deserialize(deserializer).map(|w| w.map(|Wrap(d)| d))
        }
    }
}

/// Tests: `section` serialized has exactly the fields `fields` lists (in any
/// order: serde_json's `preserve_order` may be on in the workspace).
#[cfg(test)]
pub(crate) fn assert_fields_match<T: Serialize>(section: &T, fields: &[&str]) {
    let value = serde_json::to_value(section).expect("a section serializes");
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a section serializes to an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut fields = fields.to_vec();
    fields.sort_unstable();
    assert_eq!(keys, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_one_letter_away_gets_a_suggestion() {
        let err = unknown_field(
            "strategies.x.scan_interval_sec",
            "scan_interval_sec",
            &["min_edge", "scan_interval_secs"],
        );
        assert_eq!(
            err.message,
            "unknown field `scan_interval_sec`; did you mean `scan_interval_secs`?"
        );
    }

    #[test]
    fn an_unrelated_name_lists_the_known_fields() {
        let err = unknown_field("risk.colour", "colour", &["kill_switch", "max_open_orders"]);
        assert_eq!(
            err.message,
            "unknown field `colour`; expected one of `kill_switch`, `max_open_orders`"
        );
    }

    #[test]
    fn the_top_field_of_a_nested_path_is_its_first_component() {
        assert_eq!(
            top_field("strategies.news_arb", "strategies.news_arb.rules[2].x"),
            "rules"
        );
        assert_eq!(top_field("risk", "risk.kill_switch"), "kill_switch");
        assert_eq!(top_field("", "min_edge"), "min_edge");
    }

    #[test]
    fn nul_and_bell_are_refused_in_text_but_line_breaks_are_not() {
        assert_eq!(
            text_problem("a\u{0}b").as_deref(),
            Some("must not contain control characters (found U+0000)")
        );
        assert_eq!(
            text_problem("ring\u{7}").as_deref(),
            Some("must not contain control characters (found U+0007)")
        );
        assert_eq!(text_problem("-----BEGIN KEY-----\r\nabc\n\tend"), None);
    }

    #[test]
    fn a_name_is_refused_with_a_line_break_or_a_bidi_override() {
        assert!(name_problem("two\nlines").is_some());
        assert!(name_problem("evil\u{202E}gpj.exe").is_some());
        assert!(name_problem("zero\u{200B}width").is_some());
        assert_eq!(name_problem("Zoë's desk — 2"), None);
    }

    #[test]
    fn control_characters_are_reported_at_their_json_path() {
        let value = serde_json::json!({
            "channels": [{"kind": "webhook", "secret": "s\u{0}"}],
            "ok": "fine",
            "bad\u{7}key": 1,
        });
        let mut errors = Vec::new();
        check_json_text(&value, "", &mut errors);
        let fields: BTreeSet<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            BTreeSet::from(["channels[0].secret", "bad\u{7}key"])
        );
    }

    #[test]
    fn decimals_are_read_from_numbers_and_strings_exactly() {
        #[derive(Deserialize)]
        struct S {
            #[serde(with = "decimal")]
            a: Decimal,
            #[serde(with = "decimal")]
            b: Decimal,
        }
        let s: S = serde_json::from_value(serde_json::json!({"a": 0.02, "b": "1.75"})).unwrap();
        assert_eq!(s.a.to_string(), "0.02");
        assert_eq!(s.b.to_string(), "1.75");
    }
}
