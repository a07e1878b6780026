//! Forms generated from the typed configuration's JSON Schema
//! (`polybot_core::schema`): one fieldset per strategy (a checkbox runs it),
//! the risk limits and the exchange keys, rendered server-side (the CSP runs
//! no inline script), and the way back from the posted fields to the JSON the
//! API takes.
//!
//! The schema decides each input: booleans are checkboxes, integers number
//! inputs, decimals text (the API parses them exactly), a list of venues one
//! checkbox per venue, a list of words a comma-separated text, a list of
//! objects (curated pairs, news rules) one row per item plus an empty one.
//! Doc comments are the help, `Default`s the initial values.
//!
//! Validation is not here: the posted fields become the API's JSON body and
//! the API's own handler checks it, so its errors (by JSON path, which is also
//! each input's name) are shown beside their inputs.
//!
//! Form field names are the JSON paths: `strategies.crypto_15m.min_edge`,
//! `strategies.news_arb.rules[0].keywords`, `risk.max_daily_loss`,
//! `exchange_keys.kalshi.key_id`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use polybot_core::schema::{field_order, tenant_config_schema};
use polybot_core::validation::FieldError;
use serde_json::{Map, Value};

use super::Html;

/// The schema, generated once.
pub static SCHEMA: LazyLock<Value> = LazyLock::new(tenant_config_schema);

/// Posted (or initial) values by field name; a name may repeat (checkboxes).
#[derive(Debug, Default, Clone)]
pub struct Values(BTreeMap<String, Vec<String>>);

impl Values {
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k.clone()).or_default().push(v.clone());
        }
        Self(map)
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn one(&self, name: &str) -> &str {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .map(|s| s.trim())
            .unwrap_or("")
    }

    fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Drops every exchange key field: they are never shown again.
    pub fn forget_keys(&mut self) {
        self.0.retain(|k, _| !k.starts_with("exchange_keys."));
    }

    fn set(&mut self, name: String, values: Vec<String>) {
        self.0.insert(name, values);
    }

    /// The values a form shows for a config: `strategies` and `risk` as the
    /// API stores them, every field the config leaves out at its default. A
    /// strategy absent from `strategies` is shown with its defaults, unticked.
    pub fn of_config(strategies: &Value, risk: &Value) -> Self {
        let mut values = Values::default();
        for (name, def) in strategy_defs() {
            let path = format!("strategies.{name}");
            let given = strategies.get(name).filter(|v| v.is_object());
            flatten(def, given.unwrap_or(&Value::Null), &path, &mut values);
            let run =
                given.is_some_and(|g| g.get("enabled").and_then(Value::as_bool) != Some(false));
            if given.is_some() {
                values.set(format!("{path}.configured"), vec!["1".to_owned()]);
            }
            values.set(
                format!("{path}.enabled"),
                if run {
                    vec!["on".to_owned()]
                } else {
                    Vec::new()
                },
            );
        }
        flatten(definition("RiskLimits"), risk, "risk", &mut values);
        values
    }
}

fn definition(name: &str) -> &'static Value {
    &SCHEMA["$defs"][name]
}

/// The definition a property refers to (`$ref`, or the first `anyOf` that does).
fn resolve(property: &Value) -> &Value {
    let reference = property.get("$ref").or_else(|| {
        property
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|alts| alts.iter().find_map(|a| a.get("$ref")))
    });
    match reference.and_then(Value::as_str) {
        Some(r) => &SCHEMA["$defs"][r.trim_start_matches("#/$defs/")],
        None => property,
    }
}

/// Each strategy's name and definition, in the schema's order.
fn strategy_defs() -> Vec<(&'static str, &'static Value)> {
    definition("StrategiesConfig")["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, p)| (name.as_str(), resolve(p)))
                .collect()
        })
        .unwrap_or_default()
}

/// A definition's name as `$defs` keys it.
fn def_name(def: &Value) -> &'static str {
    SCHEMA["$defs"]
        .as_object()
        .and_then(|defs| {
            defs.iter()
                .find(|(_, d)| std::ptr::eq(*d, def))
                .map(|(name, _)| name.as_str())
        })
        .unwrap_or("")
}

/// The fields of a definition, in the struct's order.
fn fields(def: &'static Value) -> Vec<(&'static str, &'static Value)> {
    let props = &def["properties"];
    field_order(def_name(def))
        .iter()
        .filter_map(|name| props.get(*name).map(|p| (*name, p)))
        .collect()
}

/// How a property is entered.
enum Kind<'a> {
    Bool,
    Integer,
    Decimal,
    Text {
        optional: bool,
    },
    /// A list of one of these names.
    Choices(Vec<&'a str>),
    /// A list of words.
    Words,
    /// A list of objects of this definition.
    Rows(&'a Value),
}

fn kind(property: &'static Value) -> Kind<'static> {
    let types: Vec<&str> = match &property["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if property["format"] == "decimal" {
        return Kind::Decimal;
    }
    match types.first().copied() {
        Some("boolean") => Kind::Bool,
        Some("integer") => Kind::Integer,
        Some("array") => {
            let items = resolve(&property["items"]);
            if let Some(names) = items["enum"].as_array() {
                Kind::Choices(names.iter().filter_map(Value::as_str).collect())
            } else if items["type"] == "object" {
                Kind::Rows(items)
            } else {
                Kind::Words
            }
        }
        _ => Kind::Text {
            optional: types.contains(&"null"),
        },
    }
}

/// Writes the values of `given` (a config object, or null for all defaults)
/// under `path`.
fn flatten(def: &'static Value, given: &Value, path: &str, values: &mut Values) {
    for (name, property) in fields(def) {
        let field = format!("{path}.{name}");
        let value = given
            .get(name)
            .filter(|v| !v.is_null())
            .unwrap_or(&property["default"]);
        let shown: Vec<String> = match kind(property) {
            Kind::Bool => {
                if value.as_bool() == Some(true) {
                    vec!["on".to_owned()]
                } else {
                    Vec::new()
                }
            }
            Kind::Choices(_) => value
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            Kind::Words => vec![
                value
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ],
            Kind::Rows(item) => {
                for (i, row) in value.as_array().into_iter().flatten().enumerate() {
                    flatten(item, row, &format!("{field}[{i}]"), values);
                }
                continue;
            }
            Kind::Integer | Kind::Decimal | Kind::Text { .. } => vec![match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }],
        };
        values.set(field, shown);
    }
}

/// The JSON object the fields under `path` make; `None` for a row left empty.
fn unflatten(def: &'static Value, values: &Values, path: &str) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, property) in fields(def) {
        let field = format!("{path}.{name}");
        let text = values.one(&field);
        let value = match kind(property) {
            Kind::Bool => Value::Bool(values.all(&field).iter().any(|v| v == "on")),
            // Text that is no number goes as it is: the API names the field.
            Kind::Integer if text.is_empty() => continue,
            Kind::Integer => text
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.to_owned())),
            Kind::Decimal | Kind::Text { optional: true } if text.is_empty() => continue,
            Kind::Decimal | Kind::Text { .. } => Value::String(text.to_owned()),
            Kind::Choices(_) => Value::Array(
                values
                    .all(&field)
                    .iter()
                    .map(|v| Value::String(v.clone()))
                    .collect(),
            ),
            Kind::Words => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|w| !w.is_empty())
                    .map(|w| Value::String(w.to_owned()))
                    .collect(),
            ),
            Kind::Rows(item) => Value::Array(
                (0..row_count(values, &field))
                    .map(|i| format!("{field}[{i}]"))
                    .filter(|row| !row_is_empty(values, row))
                    .map(|row| Value::Object(unflatten(item, values, &row)))
                    .collect(),
            ),
        };
        object.insert(name.to_owned(), value);
    }
    object
}

/// How many rows of the list `field` the form has.
fn row_count(values: &Values, field: &str) -> usize {
    let prefix = format!("{field}[");
    values
        .0
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|rest| rest.split(']').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

fn row_is_empty(values: &Values, row: &str) -> bool {
    let prefix = format!("{row}.");
    values
        .0
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .all(|(_, v)| v.iter().all(|s| s.trim().is_empty()))
}

/// Whether the form is for a new tenant or edits one (where a strategy that
/// is unticked stays configured, switched off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Create,
    Edit,
}

/// The `strategies` object the form's fields make: the ticked strategies
/// (and, when editing, the configured ones, switched off when unticked).
pub fn strategies_of(values: &Values, purpose: Purpose) -> Value {
    let mut object = Map::new();
    for (name, def) in strategy_defs() {
        let path = format!("strategies.{name}");
        let run = values
            .all(&format!("{path}.enabled"))
            .iter()
            .any(|v| v == "on");
        let keep = purpose == Purpose::Edit && values.has(&format!("{path}.configured"));
        if run || keep {
            let mut section = unflatten(def, values, &path);
            section.insert("enabled".to_owned(), Value::Bool(run));
            object.insert(name.to_owned(), Value::Object(section));
        }
    }
    Value::Object(object)
}

/// The `risk` object the form's fields make.
pub fn risk_of(values: &Values) -> Value {
    Value::Object(unflatten(definition("RiskLimits"), values, "risk"))
}

/// The `exchange_keys` object: each venue with at least one field filled in;
/// `None` when no key was given.
pub fn keys_of(values: &Values) -> Option<Value> {
    let mut object = Map::new();
    for (venue, fields) in polybot_core::keys::venue_key_fields() {
        let given: Map<String, Value> = fields
            .iter()
            .filter_map(|(field, _, _)| {
                let text = values.one(&format!("exchange_keys.{venue}.{field}"));
                (!text.is_empty()).then(|| ((*field).to_owned(), Value::String(text.to_owned())))
            })
            .collect();
        if !given.is_empty() {
            object.insert(venue.to_owned(), Value::Object(given));
        }
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// Renders inputs and the errors that belong to them, remembering which
/// errors were shown so that the rest can be listed apart.
pub struct Form<'a> {
    pub h: Html,
    values: &'a Values,
    errors: &'a [FieldError],
    shown: BTreeSet<usize>,
}

impl<'a> Form<'a> {
    pub fn new(values: &'a Values, errors: &'a [FieldError]) -> Self {
        Self {
            h: Html::new(),
            values,
            errors,
            shown: BTreeSet::new(),
        }
    }

    /// The errors of exactly `field`.
    pub fn errors_of(&mut self, field: &str) {
        for (i, e) in self.errors.iter().enumerate() {
            if e.field == field {
                self.shown.insert(i);
                self.h
                    .raw("<span class=\"field-error\" data-field=\"")
                    .text(&e.field)
                    .raw("\">")
                    .text(e)
                    .raw("</span>");
            }
        }
    }

    /// The errors no input showed.
    pub fn unshown(&self) -> Vec<&'a FieldError> {
        self.errors
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.shown.contains(i))
            .map(|(_, e)| e)
            .collect()
    }

    /// One fieldset per strategy: a checkbox that runs it, then its fields.
    pub fn strategies(&mut self) {
        self.h.raw("<div id=\"strategies\">");
        self.errors_of("strategies");
        for (name, def) in strategy_defs() {
            let path = format!("strategies.{name}");
            let enabled = format!("{path}.enabled");
            self.h
                .raw("<fieldset class=\"strategy\" data-strategy=\"")
                .text(name)
                .raw("\"><legend><label class=\"inline\"><input type=\"checkbox\" name=\"")
                .text(&enabled)
                .raw("\" id=\"")
                .text(id_of(&enabled))
                .raw("\" value=\"on\"");
            if self.values.all(&enabled).iter().any(|v| v == "on") {
                self.h.raw(" checked");
            }
            self.h
                .raw("> Run <code>")
                .text(name)
                .raw("</code></label></legend>");
            if self.values.has(&format!("{path}.configured")) {
                self.h
                    .raw("<input type=\"hidden\" name=\"")
                    .text(format!("{path}.configured"))
                    .raw("\" value=\"1\">");
            }
            if let Some(help) = def["description"].as_str() {
                self.h.el("<p class=\"help\">", one_line(help), "</p>");
            }
            self.errors_of(&path);
            self.errors_of(&enabled);
            self.object(def, &path);
            self.h.raw("</fieldset>");
        }
        self.h.raw("</div>");
    }

    /// The risk limits' fieldset.
    pub fn risk(&mut self) {
        let def = definition("RiskLimits");
        self.h
            .raw("<fieldset id=\"risk\"><legend>Risk limits</legend>");
        if let Some(help) = def["description"].as_str() {
            self.h.el("<p class=\"help\">", one_line(help), "</p>");
        }
        self.errors_of("risk");
        self.object(def, "risk");
        self.h.raw("</fieldset>");
    }

    /// Exchange keys, write-only: inputs never filled in, a venue left empty
    /// is not sent.
    pub fn keys(&mut self, legend: &'static str) {
        self.h
            .raw("<fieldset id=\"exchange-keys\"><legend>")
            .raw(legend)
            .raw("</legend><p class=\"help\">Write-only: after saving only a masked fingerprint is shown. Leave a venue empty to give it no keys.</p>");
        self.errors_of("exchange_keys");
        for (venue, fields) in polybot_core::keys::venue_key_fields() {
            let vpath = format!("exchange_keys.{venue}");
            self.h
                .raw("<details><summary>")
                .text(venue)
                .raw("</summary>");
            self.errors_of(&vpath);
            for (field, required, multiline) in fields {
                let name = format!("{vpath}.{field}");
                self.h.raw("<label>").text(field);
                if !required {
                    self.h.raw(" (optional)");
                }
                if multiline {
                    self.h
                        .raw(" <textarea rows=\"3\" autocomplete=\"off\" spellcheck=\"false\" name=\"")
                        .text(&name)
                        .raw("\" id=\"")
                        .text(id_of(&name))
                        .raw("\"></textarea>");
                } else {
                    self.h
                        .raw(" <input type=\"password\" autocomplete=\"new-password\" name=\"")
                        .text(&name)
                        .raw("\" id=\"")
                        .text(id_of(&name))
                        .raw("\">");
                }
                self.h.raw("</label>");
                self.errors_of(&name);
            }
            self.h.raw("</details>");
        }
        self.h.raw("</fieldset>");
    }

    fn object(&mut self, def: &'static Value, path: &str) {
        for (name, property) in fields(def) {
            if name == "enabled" && path.starts_with("strategies.") && !path.contains('[') {
                continue;
            }
            self.field(&format!("{path}.{name}"), name, property);
        }
    }

    fn field(&mut self, field: &str, label: &str, property: &'static Value) {
        let id = id_of(field);
        let value = self.values.one(field).to_owned();
        match kind(property) {
            Kind::Bool => {
                self.h
                    .raw("<label><input type=\"checkbox\" value=\"on\" name=\"")
                    .text(field)
                    .raw("\" id=\"")
                    .text(&id)
                    .raw("\"");
                if self.values.all(field).iter().any(|v| v == "on") {
                    self.h.raw(" checked");
                }
                self.h.raw("> ").text(label);
                self.help(property);
                self.h.raw("</label>");
            }
            Kind::Choices(names) => {
                self.h
                    .raw("<div class=\"choices\" id=\"")
                    .text(&id)
                    .raw("\"><span class=\"label\">")
                    .text(label)
                    .raw("</span>");
                for choice in names {
                    self.h
                        .raw("<label class=\"inline\"><input type=\"checkbox\" name=\"")
                        .text(field)
                        .raw("\" value=\"")
                        .text(choice)
                        .raw("\"");
                    if self.values.all(field).iter().any(|v| v.as_str() == choice) {
                        self.h.raw(" checked");
                    }
                    self.h.raw("> ").text(choice).raw("</label> ");
                }
                self.help(property);
                self.h.raw("</div>");
            }
            Kind::Rows(item) => {
                self.h
                    .raw("<div class=\"rows\" id=\"")
                    .text(&id)
                    .raw("\"><span class=\"label\">")
                    .text(label)
                    .raw("</span>");
                self.help(property);
                self.errors_of(field);
                // The rows given, and one more left empty to add an item.
                for i in 0..=row_count(self.values, field) {
                    let row = format!("{field}[{i}]");
                    self.h.raw("<fieldset class=\"row\"><legend>");
                    self.h.text(label).raw(" ").text(i + 1).raw("</legend>");
                    self.errors_of(&row);
                    self.object(item, &row);
                    self.h.raw("</fieldset>");
                }
                self.h.raw("</div>");
                return;
            }
            Kind::Integer | Kind::Decimal | Kind::Words | Kind::Text { .. } => {
                self.h.raw("<label>").text(label).raw(" <input name=\"");
                self.h.text(field).raw("\" id=\"").text(&id).raw("\" ");
                match kind(property) {
                    Kind::Integer => {
                        self.h.raw("type=\"number\" step=\"1\"");
                        if let Some(min) = property["minimum"].as_u64() {
                            self.h.raw(" min=\"").text(min).raw("\"");
                        }
                    }
                    Kind::Decimal => {
                        self.h.raw("type=\"text\" inputmode=\"decimal\"");
                    }
                    Kind::Words => {
                        self.h
                            .raw("type=\"text\" placeholder=\"separated by commas\"");
                    }
                    _ => {
                        self.h.raw("type=\"text\"");
                    }
                }
                self.h.raw(" value=\"").text(&value).raw("\">");
                self.help(property);
                self.h.raw("</label>");
            }
        }
        self.errors_of(field);
    }

    fn help(&mut self, property: &Value) {
        if let Some(help) = property["description"].as_str() {
            self.h
                .el(" <small class=\"help\">", one_line(help), "</small>");
        }
        if let Some(default) = property.get("default").filter(|d| !d.is_null()) {
            let text = match default {
                Value::String(s) if s.is_empty() => return,
                Value::String(s) => s.clone(),
                Value::Array(a) if a.is_empty() => return,
                Value::Array(a) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            self.h
                .el(" <small class=\"default\">default ", text, "</small>");
        }
    }
}

/// An element id for a field name (dots and brackets are awkward in selectors).
pub fn id_of(field: &str) -> String {
    field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Doc comments wrap; help reads as one line, without Markdown backquotes.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('`', "")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Values {
        Values::from_pairs(
            &list
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn the_initial_values_are_the_schemas_defaults() {
        let values = Values::of_config(&json!({"complement_arb": {}}), &json!({}));
        assert_eq!(values.one("strategies.complement_arb.min_edge"), "0.01");
        assert_eq!(values.all("strategies.complement_arb.enabled"), ["on"]);
        assert!(values.all("strategies.crypto_15m.enabled").is_empty());
        assert_eq!(values.one("strategies.crypto_15m.assets"), "BTC, ETH");
        assert_eq!(
            values.all("strategies.complement_arb.venues"),
            ["polymarket", "kalshi"]
        );
        assert_eq!(values.one("risk.max_daily_loss"), "250");
    }

    #[test]
    fn ticked_strategies_become_the_apis_json() {
        let values = pairs(&[
            ("strategies.complement_arb.enabled", "on"),
            ("strategies.complement_arb.min_edge", "0.02"),
            ("strategies.complement_arb.venues", "kalshi"),
            ("strategies.complement_arb.scan_interval_secs", "7"),
            ("strategies.crypto_15m.min_edge", "0.9"),
            ("strategies.news_arb.enabled", "on"),
            ("strategies.news_arb.rules[0].market", "m1"),
            ("strategies.news_arb.rules[0].outcome", "Yes"),
            ("strategies.news_arb.rules[0].keywords", "fed, cut"),
            ("strategies.news_arb.rules[0].fair_price", "0.8"),
            ("strategies.news_arb.rules[1].market", ""),
            ("strategies.news_arb.newsapi_query", ""),
        ]);
        let strategies = strategies_of(&values, Purpose::Create);
        assert_eq!(strategies["complement_arb"]["min_edge"], "0.02");
        assert_eq!(strategies["complement_arb"]["venues"], json!(["kalshi"]));
        assert_eq!(strategies["complement_arb"]["scan_interval_secs"], 7);
        assert_eq!(strategies["complement_arb"]["enabled"], true);
        assert!(strategies.get("crypto_15m").is_none(), "unticked");
        let rules = strategies["news_arb"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "the empty row is no rule");
        assert_eq!(rules[0]["keywords"], json!(["fed", "cut"]));
        assert!(strategies["news_arb"].get("newsapi_query").is_none());
        let parsed = polybot_core::strategy::parse_strategies(&strategies).unwrap();
        assert_eq!(parsed.news_arb.unwrap().rules[0].market, "m1");
    }

    #[test]
    fn editing_keeps_an_unticked_strategy_switched_off() {
        let values = pairs(&[("strategies.crypto_15m.configured", "1")]);
        let strategies = strategies_of(&values, Purpose::Edit);
        assert_eq!(strategies["crypto_15m"]["enabled"], false);
        assert!(strategies_of(&values, Purpose::Create)["crypto_15m"].is_null());
    }

    #[test]
    fn a_config_round_trips_through_the_form() {
        let stored = json!({
            "cross_venue_arb": {"pairs": [{"polymarket": "pm-1", "kalshi": "KX-1", "inverted": true}]},
            "crypto_15m": {"enabled": false, "min_edge": "0.07"}
        });
        let values = Values::of_config(&stored, &json!({"max_daily_loss": "90"}));
        let strategies = strategies_of(&values, Purpose::Edit);
        let parsed = polybot_core::strategy::parse_strategies(&strategies).unwrap();
        let cross = parsed.cross_venue_arb.unwrap();
        assert_eq!(cross.pairs[0].kalshi, "KX-1");
        assert!(cross.pairs[0].inverted);
        let crypto = parsed.crypto_15m.unwrap();
        assert!(!crypto.enabled);
        assert_eq!(crypto.min_edge.to_string(), "0.07");
        assert!(parsed.complement_arb.is_none());
        assert_eq!(risk_of(&values)["max_daily_loss"], "90");
    }

    #[test]
    fn keys_are_sent_only_for_venues_given() {
        let values = pairs(&[
            ("exchange_keys.kalshi.key_id", "k"),
            ("exchange_keys.kalshi.private_key_pem", ""),
            ("exchange_keys.coinbase.api_key", ""),
        ]);
        assert_eq!(keys_of(&values), Some(json!({"kalshi": {"key_id": "k"}})));
        assert_eq!(keys_of(&Values::default()), None);
    }

    #[test]
    fn every_strategy_field_is_rendered_with_its_help() {
        let values = Values::of_config(&json!({}), &json!({}));
        let mut form = Form::new(&values, &[]);
        form.strategies();
        form.risk();
        let html = form.h.finish();
        for name in [
            "strategies.crypto_15m.spot_venues",
            "strategies.news_arb.rules[0].fair_price",
            "strategies.cross_venue_arb.pairs[0].inverted",
            "risk.kill_switch",
        ] {
            assert!(html.contains(&format!("name=\"{name}\"")), "{name}");
        }
        assert!(html.contains("Largest set size per opportunity, in shares."));
    }
}
