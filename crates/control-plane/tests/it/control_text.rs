//! Issue 16 #7: text with NUL (or another control character) in any field
//! was a 500 (PostgreSQL cannot store NUL). Each such field is now a 422
//! naming it, nothing is stored, and the server keeps serving.

use crate::common::{Harness, OPERATOR};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The field names of a 422 problem.
fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn control_characters_in_any_text_field_are_a_422_naming_the_field(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    for bad in ["\u{0}", "\u{7}"] {
        let cases: Vec<(Method, String, Value, &str)> = vec![
            (
                Method::POST,
                "/tenants".into(),
                json!({"name": format!("a{bad}b")}),
                "name",
            ),
            (
                Method::PATCH,
                format!("/tenants/{id}"),
                json!({"name": format!("x{bad}")}),
                "name",
            ),
            (
                Method::PATCH,
                format!("/tenants/{id}"),
                json!({"strategies": {"complement_arb": {}}, "mode": format!("paper{bad}")}),
                "mode",
            ),
            (
                Method::POST,
                format!("/tenants/{id}/tokens"),
                json!({"label": format!("ci{bad}")}),
                "label",
            ),
            (
                Method::PUT,
                format!("/tenants/{id}/exchange-keys"),
                json!({"kalshi": {"key_id": format!("k{bad}")}}),
                "kalshi.key_id",
            ),
            (
                Method::PUT,
                format!("/tenants/{id}/alert-channels"),
                json!({"channels": [{"kind": "webhook", "url": "https://hooks.example.com/x",
                    "secret": format!("0123456789abcdef{bad}")}]}),
                "channels[0].secret",
            ),
            (
                Method::PUT,
                "/alert-channels".into(),
                json!({"channels": [{"kind": "webhook",
                    "url": format!("https://hooks.example.com/{bad}"), "secret": "0123456789abcdef"}]}),
                "channels[0].url",
            ),
        ];
        for (method, uri, body, field) in cases {
            let reply = h
                .call(method.clone(), &uri, Some(OPERATOR), Some(body))
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {uri}: {}",
                reply.text
            );
            assert_eq!(
                reply.headers["content-type"], "application/problem+json",
                "{method} {uri}"
            );
            assert_eq!(
                fields(&reply.body),
                vec![field.to_owned()],
                "{method} {uri}"
            );
        }
    }
    for query in ["state=%00", "worker=run%07", "limit=5&state=active%00"] {
        let reply = h
            .call(
                Method::GET,
                &format!("/fleet?{query}"),
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            reply.text
        );
        assert_eq!(fields(&reply.body).len(), 1, "{query}");
        assert!(["state", "worker"].contains(&fields(&reply.body)[0].as_str()));
    }
    let reply = h
        .call(Method::GET, "/tenants?name=%00", Some(OPERATOR), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&reply.body), vec!["name".to_owned()]);

    // Nothing was stored, the tenant kept its name, and the server still serves.
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);
    let reply = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(OPERATOR), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["name"], "acme");
    let reply = h
        .call(Method::GET, "/fleet?state=active", Some(OPERATOR), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["items"].as_array().map(Vec::len), Some(1));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_name_with_a_line_break_or_a_bidi_override_is_refused(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    for name in [
        "two\nlines",
        "tab\there",
        "evil\u{202E}gpj",
        "zero\u{200B}width",
    ] {
        let reply = h
            .call(
                Method::POST,
                "/tenants",
                Some(OPERATOR),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(fields(&reply.body), vec!["name".to_owned()], "{name:?}");
    }
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
}
