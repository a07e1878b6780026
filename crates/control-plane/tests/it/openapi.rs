//! The OpenAPI document holds what the tools its users feed it to require
//! (validators, client generators), checked without those tools: every
//! operation has a unique operationId, declares its path parameters, and
//! describes its responses, errors as problem documents. The tools themselves
//! run in `crates/cli/tests/openapi_client.rs`.

use std::collections::BTreeMap;

use polybot_control_plane::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the document serializes")
}

/// The `{name}` segments of a path template.
fn template_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_operation_has_a_unique_descriptive_operation_id() {
    let doc = document();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        // A bare verb (`get`) says nothing in a generated client.
        assert!(
            id.contains('_'),
            "{method} {path}: operationId `{id}` should name its object too"
        );
        if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
            panic!("operationId `{id}` is used by both {other} and {method} {path}");
        }
    }
    assert!(seen.contains_key("create_tenant"), "{seen:?}");
    assert!(seen.contains_key("get_tenant_status"), "{seen:?}");
}

#[test]
fn every_path_parameter_is_declared_on_its_operation() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let declared: Vec<&str> = operation["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}: {p}");
                p["name"].as_str().expect("a parameter has a name")
            })
            .collect();
        let mut templated = template_parameters(&path);
        templated.sort();
        let mut declared_sorted: Vec<String> = declared.iter().map(|s| (*s).to_owned()).collect();
        declared_sorted.sort();
        assert_eq!(
            declared_sorted, templated,
            "{method} {path}: path parameters declared vs. in the template"
        );
    }
}

#[test]
fn every_response_is_described_and_errors_are_problem_documents() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} has no success response"
        );
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                !description.trim().is_empty(),
                "{method} {path} {status}: no description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}: an error is a problem document"
                );
            }
        }
    }
}

#[test]
fn every_operation_documents_the_timeout_and_every_authenticated_one_the_throttle() {
    let doc = document();
    let mut throttled = 0;
    for (method, path, operation) in operations(&doc) {
        let responses = &operation["responses"];
        assert!(
            responses["408"].is_object(),
            "{method} {path}: no 408 (the request timeout applies to every request)"
        );
        let public = operation["security"].as_array().is_some_and(|reqs| {
            reqs.iter()
                .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
        // The Stripe webhook checks no token, but a bad signature spends the
        // client's authentication-failure budget like a bad token does.
        let signed = path == "/webhooks/stripe";
        if public && !signed {
            assert!(
                responses["429"].is_null(),
                "{method} {path} checks no token"
            );
        } else {
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: a 429 without Retry-After"
            );
            throttled += 1;
        }
    }
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["responses"]["429"],
        Value::Null
    );
    assert!(throttled > 20, "only {throttled} operations document a 429");
}

#[test]
fn the_template_parameter_helper_reads_every_segment() {
    assert_eq!(
        template_parameters("/tenants/{id}/alert-channels/{channel}"),
        vec!["id".to_owned(), "channel".to_owned()]
    );
    assert!(template_parameters("/fleet").is_empty());
}
