//! The `{{name}}` placeholder language of the JSON templates in `deploy/ecs/`.
//!
//! A template is valid JSON whose string values may hold placeholders. A
//! string that is exactly one placeholder (`"{{cpu}}"`) becomes the variable's
//! JSON value, whatever its type; a placeholder inside a longer string
//! (`"polybot-t-{{tenant_id}}"`) is replaced by the variable's text.
//! Rendering works on the parsed JSON tree, never on the text, so a variable
//! cannot inject JSON, and an unknown or left-over placeholder is an error
//! rather than a task definition that AWS rejects (or, worse, accepts).
//!
//! Terraform renders the control-plane templates with the same syntax
//! (`infra/control_plane.tf`); this module is the worker's renderer.

use std::collections::BTreeMap;

use serde_json::Value;

/// Values for a template's placeholders, by name.
pub type Vars = BTreeMap<&'static str, Value>;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is not valid JSON: {0}")]
    Json(String),
    #[error("the template uses {{{{{0}}}}}, which has no value")]
    UnknownPlaceholder(String),
    #[error("the template has an unterminated placeholder in {0:?}")]
    Unterminated(String),
    #[error("{{{{{0}}}}} is not text, so it can only stand alone in a string")]
    NotText(String),
}

/// Renders `template` with `vars`.
pub fn render(template: &str, vars: &Vars) -> Result<Value, TemplateError> {
    let mut value: Value =
        serde_json::from_str(template).map_err(|e| TemplateError::Json(e.to_string()))?;
    substitute(&mut value, vars)?;
    Ok(value)
}

/// The placeholder names a template uses, sorted and without repeats.
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let value: Value =
        serde_json::from_str(template).map_err(|e| TemplateError::Json(e.to_string()))?;
    let mut names = Vec::new();
    collect(&value, &mut names)?;
    names.sort();
    names.dedup();
    Ok(names)
}

fn collect(value: &Value, names: &mut Vec<String>) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => {
            for piece in split(s)? {
                if let Piece::Placeholder(name) = piece {
                    names.push(name.to_owned());
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect(v, names)),
        Value::Object(map) => map.values().try_for_each(|v| collect(v, names)),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn substitute(value: &mut Value, vars: &Vars) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => {
            if let Some(new) = render_string(s, vars)? {
                *value = new;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, vars)),
        Value::Object(map) => map.values_mut().try_for_each(|v| substitute(v, vars)),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// `None` when the string has no placeholder.
fn render_string(s: &str, vars: &Vars) -> Result<Option<Value>, TemplateError> {
    let pieces = split(s)?;
    if !pieces.iter().any(|p| matches!(p, Piece::Placeholder(_))) {
        return Ok(None);
    }
    let lookup = |name: &str| {
        vars.get(name)
            .ok_or_else(|| TemplateError::UnknownPlaceholder(name.to_owned()))
    };
    if let [Piece::Placeholder(name)] = pieces.as_slice() {
        return lookup(name).map(|v| Some(v.clone()));
    }
    let mut out = String::with_capacity(s.len());
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(name) => match lookup(name)? {
                Value::String(text) => out.push_str(text),
                Value::Number(n) => out.push_str(&n.to_string()),
                _ => return Err(TemplateError::NotText(name.to_owned())),
            },
        }
    }
    Ok(Some(Value::String(out)))
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn split(s: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unterminated(s.to_owned()))?;
        let name = &after[..end];
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(TemplateError::Unterminated(s.to_owned()));
        }
        pieces.push(Piece::Placeholder(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> Vars {
        Vars::from([
            ("name", json!("alpha")),
            ("count", json!(3)),
            ("list", json!(["a", "b"])),
        ])
    }

    #[test]
    fn a_lone_placeholder_takes_the_variables_json_type() {
        let out = render(r#"{"n": "{{count}}", "l": "{{list}}"}"#, &vars()).unwrap();
        assert_eq!(out, json!({"n": 3, "l": ["a", "b"]}));
    }

    #[test]
    fn placeholders_inside_text_are_replaced_by_their_text() {
        let out = render(r#"["x-{{name}}-{{count}}", "plain"]"#, &vars()).unwrap();
        assert_eq!(out, json!(["x-alpha-3", "plain"]));
    }

    #[test]
    fn a_variable_cannot_inject_json() {
        let vars = Vars::from([("name", json!("\", \"evil\": \"1"))]);
        let out = render(r#"{"a": "{{name}}"}"#, &vars).unwrap();
        assert_eq!(out, json!({"a": "\", \"evil\": \"1"}));
    }

    #[test]
    fn an_unknown_placeholder_is_an_error_naming_it() {
        let err = render(r#"{"a": "{{nope}}"}"#, &vars()).unwrap_err();
        assert_eq!(err, TemplateError::UnknownPlaceholder("nope".into()));
        assert_eq!(
            err.to_string(),
            "the template uses {{nope}}, which has no value"
        );
    }

    #[test]
    fn an_unterminated_placeholder_is_an_error() {
        let err = render(r#"{"a": "x-{{name"}"#, &vars()).unwrap_err();
        assert_eq!(err, TemplateError::Unterminated("x-{{name".into()));
    }

    #[test]
    fn a_list_cannot_be_embedded_in_text() {
        let err = render(r#"{"a": "x-{{list}}"}"#, &vars()).unwrap_err();
        assert_eq!(err, TemplateError::NotText("list".into()));
    }

    #[test]
    fn placeholders_lists_each_name_once() {
        let names = placeholders(r#"{"a": "{{b}}-{{a}}", "c": ["{{a}}"]}"#).unwrap();
        assert_eq!(names, vec!["a".to_owned(), "b".to_owned()]);
    }
}
