//! Issue 16 #9: dashboard cookies were not `Secure` by default, there was no
//! HSTS, and the CSP allowed inline scripts.

use crate::common::{Harness, OPERATOR};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use polybot_control_plane::settings::Settings;
use polybot_control_plane::{App, Config};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The sign-in page's `Set-Cookie` header.
async fn login_cookie(h: &Harness) -> String {
    let page = h.call(Method::GET, "/ui/login", None, None).await;
    page.headers["set-cookie"].to_str().unwrap().to_owned()
}

#[test]
fn cookies_are_secure_unless_the_listener_is_loopback_or_the_setting_says_otherwise() {
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let v6_loopback: SocketAddr = "[::1]:8080".parse().unwrap();
    let default = Settings::default();
    assert!(!default.for_listener(loopback).cookies_secure());
    assert!(!default.for_listener(v6_loopback).cookies_secure());
    assert!(default.for_listener(public).cookies_secure());
    let forced = Settings {
        secure_cookies: Some(true),
        ..Settings::default()
    };
    assert!(forced.for_listener(loopback).cookies_secure());
    let off = Settings {
        secure_cookies: Some(false),
        ..Settings::default()
    };
    assert!(!off.for_listener(public).cookies_secure());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_app_on_a_public_address_sets_secure_cookies(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    let config = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        operator_token: Some(secrecy::SecretString::from(OPERATOR.to_owned())),
        operator_token_file: None,
    };
    let app = App::build(&config, h.state.clone()).await.unwrap();
    assert_eq!(app.state().settings.secure_cookies, Some(true));
    h.state = app.state().clone();
    assert!(login_cookie(&h).await.contains("; Secure"));

    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let mut state = h.state.clone();
    state.settings = Arc::new(Settings::default());
    let app = App::build(&config, state).await.unwrap();
    h.state = app.state().clone();
    assert!(!login_cookie(&h).await.contains("Secure"));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn hsts_is_sent_when_the_request_came_over_tls(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    for path in ["/healthz", "/ui/login", "/fleet"] {
        let reply = h
            .call_with(
                Method::GET,
                path,
                Some(OPERATOR),
                None,
                &[("x-forwarded-proto", "https")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.headers["strict-transport-security"], "max-age=63072000",
            "{path}"
        );
        let plain = h.call(Method::GET, path, Some(OPERATOR), None).await;
        assert!(
            !plain.headers.contains_key("strict-transport-security"),
            "{path}"
        );
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_csp_allows_no_inline_script_and_pages_carry_none(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let page = h.call(Method::GET, "/ui/login", None, None).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap();
    assert_eq!(script_src, "script-src 'self'");
    assert!(!csp.contains("unsafe-eval"));
    assert!(
        page.text
            .contains("<script src=\"/ui/app.js\" defer></script>")
    );
    let script = h.call(Method::GET, "/ui/app.js", None, None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text.contains("data-confirm"));
    // No page the dashboard renders has an inline handler or inline script.
    for source in [
        include_str!("../../src/dashboard/pages.rs"),
        include_str!("../../src/dashboard/pages/fleet_view.rs"),
        include_str!("../../src/dashboard/pages/tenant_view.rs"),
        include_str!("../../src/dashboard/mod.rs"),
    ] {
        for handler in [
            " onsubmit=",
            " onchange=",
            " onclick=",
            " onload=",
            "<script>",
        ] {
            assert!(!source.contains(handler), "{handler} in a dashboard page");
        }
    }
}
