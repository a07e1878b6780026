//! The dashboard on the real router and database: sign-in and sessions,
//! CSRF, every page, the onboarding form's validation, the actions, and a
//! tenant session's confinement to its own tenant.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Harness, OPERATOR, Reply, TEST_PEM};
use polybot_control_plane::dashboard::escape;
use polybot_core::TenantId;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `name=…` in the reply's Set-Cookie headers.
fn set_cookie(reply: &Reply, name: &str) -> Option<(String, String)> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, v.to_owned())
        })
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A user agent with one session cookie.
pub(crate) struct Agent<'a> {
    h: &'a Harness,
    cookie: String,
}

impl<'a> Agent<'a> {
    pub(crate) async fn sign_in(h: &'a Harness, token: &str) -> Agent<'a> {
        let page = h.call(Method::GET, "/ui/login", None, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let (login_cookie, _) = set_cookie(&page, "pb_login").expect("a login cookie");
        let reply = h
            .raw(
                Request::post("/ui/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("cookie", format!("pb_login={login_cookie}"))
                    .body(Body::from(form(&[
                        ("csrf", &csrf_of(&page.text)),
                        ("token", token),
                    ])))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        let (session, header) = set_cookie(&reply, "pb_session").expect("a session cookie");
        assert!(header.contains("HttpOnly"), "{header}");
        assert!(header.contains("SameSite=Strict"), "{header}");
        assert!(header.contains("Path=/"), "{header}");
        Agent {
            h,
            cookie: format!("pb_session={session}"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.h
            .raw(
                Request::get(path)
                    .header("cookie", &self.cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.h
            .raw(
                Request::post(path)
                    .header("cookie", &self.cookie)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(form(fields)))
                    .unwrap(),
            )
            .await
    }

    async fn csrf(&self) -> String {
        csrf_of(&self.get("/ui/fleet").await.text)
    }
}

fn location(reply: &Reply) -> String {
    reply.headers["location"].to_str().unwrap().to_owned()
}

async fn seed_activity(h: &Harness, tenant: &str) {
    let id: Uuid = tenant.parse().unwrap();
    let mut tx = h.state.db.tenant(TenantId::from_uuid(id)).await.unwrap();
    for sql in [
        "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'started', 'worker 4242 started (spec abc)')",
        "INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, 1, \
            '{\"phase\": \"running\", \"strategies\": {\"complement_arb\": {\"status\": \"ok\", \"breaker\": \"open\"}}, \"venues\": {\"polymarket\": {\"status\": \"ok\"}, \"binance\": {\"status\": \"geo_blocked\"}}}')",
        "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, description, edge, executed_at) \
            VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'will-it-rain', 'YES+NO < 1', 0.031, '2026-01-02 03:04:05+00')",
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
            VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'will-it-rain', 'buy', 0.48, 10, 1.25, now() - interval '2 hours')",
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
            VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'will-it-rain', 'sell', 0.51, 10, -0.5, now() - interval '1 hour')",
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
            VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'will-it-rain', 'buy', 0.47, 10, 2)",
        "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, 'polymarket', 'USDC', 1002.75)",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn signing_in_needs_a_valid_token_and_the_login_forms_csrf_cookie(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    // Not signed in: every page sends to the sign-in page.
    for path in [
        "/",
        "/ui/fleet",
        "/ui/tenants/new",
        "/ui/tenants/00000000-0000-0000-0000-000000000001",
    ] {
        let reply = h.call(Method::GET, path, None, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        let to = location(&reply);
        assert!(to == "/ui/login" || to == "/ui/fleet", "{path} → {to}");
    }
    let page = h.call(Method::GET, "/ui/login", None, None).await;
    let csrf = csrf_of(&page.text);
    let (cookie, header) = set_cookie(&page, "pb_login").unwrap();
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"));
    // A router served without a known listener errs on the safe side.
    assert!(
        header.contains("; Secure"),
        "Secure unless the listener is loopback"
    );
    let post = |fields: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut request =
            Request::post("/ui/login").header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            request = request.header("cookie", format!("pb_login={c}"));
        }
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        request.body(Body::from(body)).unwrap()
    };
    // Without the double-submit cookie, or with another value: refused.
    let reply = h
        .raw(post(
            vec![("csrf", csrf.clone()), ("token", OPERATOR.into())],
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&reply, "pb_session").is_none());
    let reply = h
        .raw(post(
            vec![("csrf", "forged".into()), ("token", OPERATOR.into())],
            Some(cookie.clone()),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A wrong token: 401 and the message, no session.
    let reply = h
        .raw(post(
            vec![
                ("csrf", csrf.clone()),
                ("token", "pbo_wrong-token-0123456789abcdefgh".into()),
            ],
            Some(cookie.clone()),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.text.contains("That token is not valid"),
        "{}",
        reply.text
    );
    assert!(set_cookie(&reply, "pb_session").is_none());
    // The session row stores hashes only.
    let agent = Agent::sign_in(&h, OPERATOR).await;
    let session_value = agent.cookie.trim_start_matches("pb_session=").to_owned();
    let stored: i64 = h
        .count(&format!(
            "SELECT count(*) FROM dashboard_sessions WHERE id_hash = sha256('{session_value}'::bytea) \
             AND token_hash = sha256('{OPERATOR}'::bytea) AND position('{session_value}'::bytea in id_hash) = 0"
        ))
        .await;
    assert_eq!(stored, 1);
    // Signing out needs the session's CSRF token, then ends the session.
    let reply = agent.post("/ui/logout", &[("csrf", "nope")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let csrf = agent.csrf().await;
    let reply = agent.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&agent.get("/ui/fleet").await), "/ui/login");
    assert_eq!(h.count("SELECT count(*) FROM dashboard_sessions").await, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_fleet_page_shows_every_tenant_with_worker_health_and_filters(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h
        .onboard(json!({"name": "alpha <b>&", "strategies": {"complement_arb": {}}}))
        .await;
    let beta = h.onboard(json!({"name": "beta"})).await;
    seed_activity(&h, &alpha).await;
    let agent = Agent::sign_in(&h, OPERATOR).await;
    let page = agent.get("/ui/fleet").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = &page.text;
    // No whole-page reload (it would erase a filter being typed): the
    // figures and the table update from the live part, the filter kept.
    assert!(!html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("<div id=\"fleet-live\" data-live=\"/ui/fleet/live\">"));
    let live = agent.get("/ui/fleet/live?q=beta").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.headers["cache-control"], "no-store");
    let live: Value = serde_json::from_str(&live.text).unwrap();
    let live = live["html"].as_str().unwrap();
    assert!(live.contains(&format!("data-tenant=\"{beta}\"")), "{live}");
    assert!(!live.contains(&format!("data-tenant=\"{alpha}\"")));
    assert!(
        !live.contains("fleet-filter"),
        "the filter form is not replaced"
    );
    assert!(
        agent
            .get("/ui/fleet?q=be%20ta")
            .await
            .text
            .contains("data-live=\"/ui/fleet/live?q=be%20ta\"")
    );
    // Names are escaped, never markup.
    assert!(html.contains("alpha &lt;b&gt;&amp;"), "{html}");
    assert!(!html.contains("alpha <b>"));
    assert!(html.contains(&format!("data-tenant=\"{alpha}\"")));
    assert!(html.contains(&format!("data-tenant=\"{beta}\"")));
    assert!(html.contains("<strong id=\"count-tenants\">2</strong>"));
    assert!(html.contains("<strong id=\"count-desired\">2</strong>"));
    // Per-strategy health, the open breaker, today's PnL (2 today; 1.25 and
    // −0.5 earlier today or yesterday depending on the hour, so check total).
    assert!(html.contains("complement_arb: ok"), "{html}");
    assert!(html.contains("<span class=\"badge open\">complement_arb</span>"));
    // The tenant selector lists both.
    assert!(html.contains(&format!("<option value=\"{alpha}\">")));
    // Filters.
    let filtered = agent.get("/ui/fleet?q=beta").await.text;
    assert!(filtered.contains(&format!("data-tenant=\"{beta}\"")));
    assert!(!filtered.contains(&format!("data-tenant=\"{alpha}\"")));
    let none = agent.get("/ui/fleet?state=paused").await.text;
    assert!(none.contains("No tenant matches."));
    // The selector's target.
    let reply = agent.get(&format!("/ui/go?tenant={beta}")).await;
    assert_eq!(location(&reply), format!("/ui/tenants/{beta}"));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_tenant_page_shows_timeline_trading_data_pnl_chart_and_audit_and_its_buttons_work(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h
        .onboard(json!({"name": "alpha", "strategies": {"complement_arb": {}},
            "exchange_keys": {"kalshi": {"key_id": "kalshi-key-id-0001", "private_key_pem": TEST_PEM}}}))
        .await;
    seed_activity(&h, &alpha).await;
    let agent = Agent::sign_in(&h, OPERATOR).await;
    let page = agent.get(&format!("/ui/tenants/{alpha}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let html = &page.text;
    for needle in [
        "<h1 id=\"tenant-name\">alpha</h1>",
        "worker 4242 started (spec abc)", // timeline
        "YES+NO &lt; 1",                  // opportunity, escaped
        "2026-01-02 03:04:05",            // its executed_at
        "<td class=\"num\">0.48</td>",    // a trade, at the venue's precision
        "<td class=\"num\">1002.75</td>", // balance, in cents
        "<svg id=\"pnl-chart\"",          // the chart
        "<polyline",
        "class=\"trade-marker\"",      // the trades on it
        "id=\"pnl-chart-last\">2.75<", // cumulative PnL net of fees
        "<section id=\"trader\">",
        "<svg id=\"daily-chart\"",
        "id=\"strategy-pnl\"",
        "Heartbeat <span id=\"heartbeat\">", // "… s ago", never "never ago"
        "tenant.create",                     // audit log
        "polymarket</td><td><span class=\"badge ok\">ok", // venues
        "geo_blocked",
        "id=\"action-pause\"",
        "id=\"action-resume\"",
        "id=\"action-offboard\"",
    ] {
        assert!(
            html.contains(needle),
            "no {needle:?} in the tenant page:\n{html}"
        );
    }
    // An active tenant can be paused, not resumed.
    assert!(
        html.contains("id=\"action-pause\">Pause</button>"),
        "{html}"
    );
    assert!(html.contains("id=\"action-resume\" disabled"), "{html}");
    assert!(!html.contains("never ago"));
    assert!(html.contains(&format!("data-live=\"/ui/tenants/{alpha}/live\"")));
    let live = agent.get(&format!("/ui/tenants/{alpha}/live")).await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.text);
    let live: Value = serde_json::from_str(&live.text).unwrap();
    let live = live["html"].as_str().unwrap();
    assert!(live.contains("<section id=\"trader\">"), "{live}");
    assert!(live.contains("<table id=\"trades\">"), "{live}");
    // Keys: a fingerprint, never the key.
    assert!(html.contains("kalshi hmac-sha256:"));
    assert!(!html.contains("kalshi-key-id-0001"));
    assert!(!html.contains("PRIVATE KEY"));

    // Pause, through the form: the CSRF token is required.
    let path = format!("/ui/tenants/{alpha}/pause");
    let reply = agent.post(&path, &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text.contains("This form has expired"));
    let csrf = csrf_of(html);
    let reply = agent.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert!(location(&reply).starts_with(&format!("/ui/tenants/{alpha}?notice=Paused")));
    let page = agent.get(&location(&reply)).await;
    assert!(
        page.text
            .contains("<p class=\"notice\" id=\"notice\">Paused (state paused)"),
        "{}",
        page.text
    );
    let state = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(state.body["state"], "paused");
    // Pausing twice is fine; resuming a paused tenant activates it.
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/resume"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let state = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(state.body["state"], "active");
    let audit = h
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE tenant_id = '{alpha}' AND action IN ('tenant.pause', 'tenant.resume') AND actor = 'operator'"
        ))
        .await;
    assert_eq!(audit, 2);
    // Offboard.
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/offboard"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let state = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert!(matches!(
        state.body["state"].as_str(),
        Some("offboarding" | "offboarded")
    ));
    // A conflict renders the API's message.
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/pause"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply
            .text
            .contains("cannot pause a tenant that is offboard"),
        "{}",
        reply.text
    );
    // An unknown action or tenant.
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/explode"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = agent.get(&format!("/ui/tenants/{}", Uuid::new_v4())).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_onboarding_form_validates_like_the_api_and_never_shows_keys_again(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let agent = Agent::sign_in(&h, OPERATOR).await;
    let page = agent.get("/ui/tenants/new").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.text);
    // The form is the schema's: every strategy, its fields at their defaults,
    // the risk limits, write-only key inputs; no JSON to type.
    for input in [
        "name=\"strategies.complement_arb.enabled\"",
        "name=\"strategies.crypto_15m.spot_venues\" value=\"kraken\" checked",
        "name=\"strategies.cross_venue_arb.min_edge\" id=\"strategies-cross_venue_arb-min_edge\" type=\"text\" inputmode=\"decimal\" value=\"0.02\"",
        "name=\"strategies.news_arb.rules[0].keywords\"",
        "name=\"risk.max_open_orders\" id=\"risk-max_open_orders\" type=\"number\" step=\"1\" min=\"0\" value=\"20\"",
        "type=\"password\" autocomplete=\"new-password\" name=\"exchange_keys.kalshi.key_id\"",
    ] {
        assert!(page.text.contains(input), "no `{input}` in\n{}", page.text);
    }
    assert!(
        page.text
            .contains("Smallest set size worth trading, in shares.")
    );
    // The schema the form is rendered from is served as it is.
    let schema = h.call(Method::GET, "/ui/config-schema", None, None).await;
    assert_eq!(schema.status, StatusCode::OK);
    assert_eq!(
        schema.body["$defs"]["Crypto15mConfig"]["properties"]["min_edge"]["default"],
        "0.03"
    );
    assert!(!page.text.contains("<textarea name=\"strategies\""));
    let reply = agent
        .post(
            "/ui/tenants/new",
            &[
                ("csrf", &csrf),
                ("name", ""),
                ("mode", "live"),
                ("strategies.complement_arb.enabled", "on"),
                ("strategies.complement_arb.min_edge", "lots"),
                ("strategies.complement_arb.venues", "polymarket"),
                ("risk.max_daily_loss", "-5"),
                ("exchange_keys.kalshi.key_id", "visible-key-id-77"),
            ],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    // The API's answer to the same body: every one of its messages is on the page.
    let api = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({
                "name": "", "mode": "live",
                "strategies": {"complement_arb": {"min_edge": "lots", "venues": ["polymarket"]}},
                "risk": {"max_daily_loss": "-5"},
                "exchange_keys": {"kalshi": {"key_id": "visible-key-id-77"}},
            })),
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = api.body["errors"].as_array().unwrap();
    assert!(errors.len() >= 4, "{}", api.text);
    for e in errors {
        let line = format!(
            "{}: {}",
            e["field"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        );
        assert!(
            reply.text.contains(&escape(&line)),
            "the form does not show `{line}`:\n{}",
            reply.text
        );
    }
    // Each beside its field.
    assert!(reply.text.contains("data-field=\"name\""));
    assert!(reply.text.contains(
        "value=\"lots\"> <small class=\"help\">Minimum profit per complete set after fees"
    ));
    assert!(
        reply.text.contains(
            "<span class=\"field-error\" data-field=\"strategies.complement_arb.min_edge\">"
        ),
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains(&escape(
            "mode: a tenant starts in paper; once onboarded, switch it to shadow or live"
        )),
        "the form refuses live mode like the API:\n{}",
        reply.text
    );
    // What was typed comes back, except the keys.
    assert!(reply.text.contains("name=\"risk.max_daily_loss\" id=\"risk-max_daily_loss\" type=\"text\" inputmode=\"decimal\" value=\"-5\""));
    assert!(!reply.text.contains("visible-key-id-77"));
    assert!(reply.text.contains("Exchange keys are never shown again"));
    assert_eq!(
        h.count("SELECT count(*) FROM tenants").await,
        0,
        "nothing created"
    );

    // Text in a number field is that field's error, as the API words it.
    let reply = agent
        .post(
            "/ui/tenants/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("mode", "paper"),
                ("strategies.crypto_15m.enabled", "on"),
                ("strategies.crypto_15m.scan_interval_secs", "soon"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.text.contains(
            "<span class=\"field-error\" data-field=\"strategies.crypto_15m.scan_interval_secs\">"
        ),
        "{}",
        reply.text
    );

    // Without the CSRF token: refused, nothing created.
    let reply = agent.post("/ui/tenants/new", &[("name", "sneaky")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // A valid form: created, onboarding runs, the page shows fingerprints only.
    let reply = agent
        .post(
            "/ui/tenants/new",
            &[
                ("csrf", &csrf),
                ("idempotency_key", "form-1"),
                ("name", "gamma"),
                ("mode", "paper"),
                ("strategies.complement_arb.enabled", "on"),
                ("strategies.complement_arb.venues", "polymarket"),
                ("strategies.complement_arb.venues", "kalshi"),
                ("exchange_keys.kalshi.key_id", "visible-key-id-77"),
                ("exchange_keys.kalshi.private_key_pem", TEST_PEM),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let to = location(&reply);
    let id = to
        .trim_start_matches("/ui/tenants/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    h.wait_for_state(&id, "active").await;
    let page = agent.get(&to).await;
    assert!(
        page.text
            .contains("Created: onboarding runs in the background.")
    );
    assert!(page.text.contains("kalshi hmac-sha256:"));
    assert!(!page.text.contains("visible-key-id-77"));
    // The same form posted twice (a double click) creates one tenant.
    let again = agent
        .post(
            "/ui/tenants/new",
            &[
                ("csrf", &csrf),
                ("idempotency_key", "form-1"),
                ("name", "gamma"),
                ("mode", "paper"),
                ("strategies.complement_arb.enabled", "on"),
                ("strategies.complement_arb.venues", "polymarket"),
                ("strategies.complement_arb.venues", "kalshi"),
                ("exchange_keys.kalshi.key_id", "visible-key-id-77"),
                ("exchange_keys.kalshi.private_key_pem", TEST_PEM),
            ],
        )
        .await;
    assert_eq!(location(&again).split('?').next(), to.split('?').next());
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_session_sees_only_its_own_tenant(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let beta = h.onboard(json!({"name": "beta-secret-name"})).await;
    seed_activity(&h, &beta).await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = Agent::sign_in(&h, &token).await;
    // Its own page.
    let own = agent.get(&format!("/ui/tenants/{alpha}")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(
        !own.text.contains("id=\"action-offboard\""),
        "offboarding is for operators"
    );
    // Another tenant's page, by path or selector: 404, as if it did not exist.
    for path in [
        format!("/ui/tenants/{beta}"),
        format!("/ui/go?tenant={beta}"),
    ] {
        let reply = agent.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!reply.text.contains("beta-secret-name"));
    }
    let csrf = csrf_of(&own.text);
    let reply = agent
        .post(&format!("/ui/tenants/{beta}/pause"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let beta_state = h
        .call(
            Method::GET,
            &format!("/tenants/{beta}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(beta_state.body["state"], "active");
    // The fleet is just itself.
    let fleet = agent.get("/ui/fleet").await.text;
    assert!(fleet.contains(&format!("data-tenant=\"{alpha}\"")));
    assert!(!fleet.contains(&beta));
    assert!(!fleet.contains("beta-secret-name"));
    // Onboarding is for operators.
    assert_eq!(
        agent.get("/ui/tenants/new").await.status,
        StatusCode::FORBIDDEN
    );
    // The API agrees: beta's data is a 404 for this token.
    for path in [
        format!("/tenants/{beta}"),
        format!("/tenants/{beta}/status"),
        format!("/tenants/{beta}/alert-channels"),
    ] {
        let reply = h.call(Method::GET, &path, Some(&token), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Pausing its own tenant works.
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/pause"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    // Offboarding the tenant ends its sessions.
    let reply = h
        .call(
            Method::DELETE,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(location(&agent.get("/ui/fleet").await), "/ui/login");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_tenant_page_shows_an_operator_hold_that_the_tenant_cannot_lift(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/pause"),
            Some(OPERATOR),
            Some(json!({"reason": "card <declined>"})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    let agent = Agent::sign_in(&h, &token).await;
    let page = agent.get(&format!("/ui/tenants/{alpha}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(&escape(
            "Held by an operator: card <declined>. Only an operator can resume it."
        )),
        "{}",
        page.text
    );
    let csrf = csrf_of(&page.text);
    let reply = agent
        .post(&format!("/ui/tenants/{alpha}/resume"), &[("csrf", &csrf)])
        .await;
    assert_ne!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let state = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(state.body["state"], "paused");
    assert_eq!(state.body["held_by_operator"], true);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_edits_its_strategies_and_risk_and_replaces_its_keys_in_the_settings_forms(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h
        .onboard(json!({"name": "alpha", "strategies": {"complement_arb": {"min_edge": "0.02"}}}))
        .await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = Agent::sign_in(&h, &token).await;
    let tenant_page = agent.get(&format!("/ui/tenants/{alpha}")).await;
    assert!(tenant_page.text.contains(&format!(
        "href=\"/ui/tenants/{alpha}/settings\" id=\"settings-link\""
    )));
    let settings = format!("/ui/tenants/{alpha}/settings");
    let page = agent.get(&settings).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.text);
    // The form shows the stored config: complement_arb ticked at its 0.02.
    assert!(page.text.contains(
        "name=\"strategies.complement_arb.enabled\" id=\"strategies-complement_arb-enabled\" value=\"on\" checked"
    ));
    assert!(page.text.contains("id=\"strategies-complement_arb-min_edge\" type=\"text\" inputmode=\"decimal\" value=\"0.02\""));
    assert!(
        page.text
            .contains("name=\"strategies.complement_arb.configured\"")
    );

    // A bad value is that field's error; nothing is saved.
    let bad = agent
        .post(
            &format!("{settings}/config"),
            &[
                ("csrf", &csrf),
                ("strategies.complement_arb.configured", "1"),
                ("strategies.complement_arb.enabled", "on"),
                ("strategies.complement_arb.venues", "polymarket"),
                ("strategies.complement_arb.min_edge", "2"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text.contains(
            "<span class=\"field-error\" data-field=\"strategies.complement_arb.min_edge\">"
        ),
        "{}",
        bad.text
    );
    assert!(
        bad.text.contains("value=\"2\""),
        "what was typed comes back"
    );

    // complement_arb switched off (its settings kept), crypto_15m on, a risk limit.
    let saved = agent
        .post(
            &format!("{settings}/config"),
            &[
                ("csrf", &csrf),
                ("strategies.complement_arb.configured", "1"),
                ("strategies.complement_arb.venues", "polymarket"),
                ("strategies.complement_arb.min_edge", "0.02"),
                ("strategies.crypto_15m.enabled", "on"),
                ("strategies.crypto_15m.assets", "BTC"),
                ("strategies.crypto_15m.spot_venues", "coinbase"),
                ("strategies.crypto_15m.spot_venues", "kraken"),
                ("strategies.crypto_15m.min_edge", "0.04"),
                ("risk.max_daily_loss", "120"),
                ("risk.kill_switch", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    let tenant = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}"),
            Some(OPERATOR),
            None,
        )
        .await
        .body;
    let strategies = &tenant["strategies"];
    assert_eq!(strategies["complement_arb"]["enabled"], false);
    assert_eq!(strategies["complement_arb"]["min_edge"], "0.02");
    assert_eq!(strategies["crypto_15m"]["enabled"], true);
    assert_eq!(strategies["crypto_15m"]["min_edge"], "0.04");
    assert_eq!(strategies["crypto_15m"]["assets"], json!(["BTC"]));
    assert_eq!(
        strategies["crypto_15m"]["spot_venues"],
        json!(["coinbase", "kraken"])
    );
    assert_eq!(tenant["risk"]["max_daily_loss"], "120");
    assert_eq!(tenant["risk"]["kill_switch"], true);
    let page = agent.get(&location(&saved)).await;
    assert!(
        page.text.contains("Saved: the worker restarts"),
        "{}",
        page.text
    );

    // Keys: write-only, every error beside its field, fingerprints after.
    let reply = agent
        .post(&format!("{settings}/keys"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("enter the keys of at least one venue"));
    let reply = agent
        .post(
            &format!("{settings}/keys"),
            &[
                ("csrf", &csrf),
                ("exchange_keys.kalshi.key_id", "secret-key-id-4242"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.text.contains(
            "<span class=\"field-error\" data-field=\"exchange_keys.kalshi.private_key_pem\">"
        ),
        "{}",
        reply.text
    );
    assert!(!reply.text.contains("secret-key-id-4242"));
    let reply = agent
        .post(
            &format!("{settings}/keys"),
            &[
                ("csrf", &csrf),
                ("exchange_keys.kalshi.key_id", "secret-key-id-4242"),
                ("exchange_keys.kalshi.private_key_pem", TEST_PEM),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let page = agent.get(&location(&reply)).await;
    assert!(page.text.contains("kalshi hmac-sha256:"), "{}", page.text);
    assert!(!page.text.contains("secret-key-id-4242"));
    assert!(page.text.contains("Keys replaced"));
    // Alert channels: errors by field, then saved; the secret is write-only.
    let reply = agent
        .post(
            &format!("{settings}/channels"),
            &[
                ("csrf", &csrf),
                ("channels[0].kind", "telegram"),
                ("channels[0].target", "not a chat"),
                ("channels[0].secret", "nope"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["channels[0].chat_id", "channels[0].bot_token"] {
        assert!(
            reply
                .text
                .contains(&format!("data-field=\"{}\"", escape(field))),
            "{field}: {}",
            reply.text
        );
    }
    let bot_token = "123456:AAbbCCddEEffGGhhIIjjKKllMMnn";
    let reply = agent
        .post(
            &format!("{settings}/channels"),
            &[
                ("csrf", &csrf),
                ("channels[0].kind", "telegram"),
                ("channels[0].target", "-1001234"),
                ("channels[0].secret", bot_token),
                ("channels[1].kind", "webhook"),
                ("channels[1].target", ""),
                ("channels[1].secret", ""),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let stored = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}/alert-channels"),
            Some(OPERATOR),
            None,
        )
        .await
        .body;
    assert_eq!(stored["channels"].as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored["channels"][0]["target"], "-1001234");
    let page = agent.get(&location(&reply)).await;
    assert!(
        page.text.contains("telegram -1001234 hmac-sha256:"),
        "{}",
        page.text
    );
    assert!(!page.text.contains(bot_token));
    let tenant_page = agent.get(&format!("/ui/tenants/{alpha}")).await;
    assert!(
        !tenant_page
            .text
            .contains("PUT /tenants/{id}/alert-channels")
    );

    // Tokens: the tenant's session lists, creates and revokes.
    assert!(page.text.contains("id=\"tokens\""));
    assert!(page.text.contains("id=\"create-token\""));
    assert!(page.text.contains("id=\"token-bound\""));
    let operator = Agent::sign_in(&h, OPERATOR).await;
    let page = operator.get(&settings).await;
    let op_csrf = csrf_of(&page.text);
    let created = operator
        .post(
            &format!("{settings}/tokens"),
            &[
                ("csrf", &op_csrf),
                ("label", "ci"),
                ("expires_in_days", "7"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let new_token = created
        .text
        .split("<code id=\"new-token\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(new_token.starts_with("pbt_"), "{new_token}");
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body;
    let ci = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = format!("/tenants/{alpha}");
    assert_eq!(
        h.call(Method::GET, &own, Some(&new_token), None)
            .await
            .status,
        StatusCode::OK
    );
    // The tenant revokes it from its own settings page.
    let reply = agent
        .post(
            &format!("/ui/tenants/{alpha}/tokens/{ci}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(
        h.call(Method::GET, &own, Some(&new_token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A tenant session creates a token that never outlives the token it
    // signed in with: without a lifetime it ends with that token, a week
    // is granted, a year is refused with the reason.
    let expiry_of = |listed: &Value, pred: &dyn Fn(&Value) -> bool| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| pred(t))
            .unwrap()["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let list = || async {
        h.call(
            Method::GET,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body
    };
    let created = agent
        .post(
            &format!("{settings}/tokens"),
            &[("csrf", &csrf), ("label", "from-session")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.text.contains("<code id=\"new-token\">pbt_"));
    let listed = list().await;
    let signed_in_with = expiry_of(&listed, &|t| t["label"] == "");
    assert_eq!(
        expiry_of(&listed, &|t| t["label"] == "from-session"),
        signed_in_with
    );
    let created = agent
        .post(
            &format!("{settings}/tokens"),
            &[("csrf", &csrf), ("label", "week"), ("expires_in_days", "7")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let week = expiry_of(&list().await, &|t| t["label"] == "week");
    assert!(week < signed_in_with, "{week} {signed_in_with}");
    let refused = agent
        .post(
            &format!("{settings}/tokens"),
            &[
                ("csrf", &csrf),
                ("label", "year"),
                ("expires_in_days", "365"),
            ],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert!(
        refused
            .text
            .contains("expires_in_days: a tenant token cannot create a token that outlives itself"),
        "{}",
        refused.text
    );
    assert!(!list().await.to_string().contains("\"label\":\"year\""));

    // Without the CSRF token: refused.
    let reply = agent
        .post(
            &format!("{settings}/config"),
            &[("risk.max_daily_loss", "1")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_operator_sets_the_operator_wide_alert_channels_in_a_form(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let operator = Agent::sign_in(&h, OPERATOR).await;
    let page = operator.get("/ui/alert-channels").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text
            .contains("id=\"edit-channels\" action=\"/ui/alert-channels\"")
    );
    let csrf = csrf_of(&page.text);
    let reply = operator
        .post(
            "/ui/alert-channels",
            &[
                ("csrf", &csrf),
                ("channels[0].kind", "webhook"),
                ("channels[0].target", "ftp://x"),
                ("channels[0].secret", "short"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.text.contains("data-field=\"channels[0].url\""),
        "{}",
        reply.text
    );
    assert!(!reply.text.contains("value=\"short\""));
    let reply = operator
        .post(
            "/ui/alert-channels",
            &[
                ("csrf", &csrf),
                ("channels[0].kind", "telegram"),
                ("channels[0].target", "@polybot_ops"),
                ("channels[0].secret", "123456:AAbbCCddEEffGGhhIIjjKKllMMnn"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let stored = h
        .call(Method::GET, "/alert-channels", Some(OPERATOR), None)
        .await
        .body;
    assert_eq!(stored["channels"][0]["target"], "@polybot_ops", "{stored}");
    assert!(
        operator
            .get(&location(&reply))
            .await
            .text
            .contains("telegram @polybot_ops hmac-sha256:")
    );
    // A tenant's session may not.
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = Agent::sign_in(&h, &token).await;
    assert_eq!(
        tenant.get("/ui/alert-channels").await.status,
        StatusCode::FORBIDDEN
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_rollout_page_shows_progress_and_its_buttons_pause_resume_and_abort(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let operator = Agent::sign_in(&h, OPERATOR).await;
    let empty = operator.get("/ui/rollout").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.text.contains("id=\"rollout-none\""), "{}", empty.text);
    assert!(
        operator
            .get("/ui/fleet")
            .await
            .text
            .contains("<a href=\"/ui/rollout\" id=\"nav-rollout\">Rollout</a>")
    );
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    h.onboard(json!({"name": "beta"})).await;
    let started = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"settings": {"POLYBOT_LOG": "debug"}, "per_minute": 20})),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    let page = operator.get("/ui/rollout").await;
    assert!(
        page.text.contains(
            "<div class=\"card\" id=\"rollout-progress\"><strong>0</strong> of 2 done, 0 rolling, 2 pending</div>"
        ),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("<code>POLYBOT_LOG=debug</code>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"rollout-pause\""), "{}", page.text);
    let fleet = operator.get("/ui/fleet").await;
    assert!(
        fleet.text.contains(
            "<p class=\"notice\" id=\"fleet-rollout\"><a href=\"/ui/rollout\">Rollout 1</a> running: 0 of 2 tenants done, 0 rolling.</p>"
        ),
        "{}",
        fleet.text
    );
    assert!(!page.text.contains("id=\"rollout-resume\""));

    // A form without the session's CSRF token changes nothing.
    let forged = operator.post("/ui/rollout/1/pause", &[("csrf", "x")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let csrf = csrf_of(&page.text);
    let paused = operator
        .post("/ui/rollout/1/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.text);
    assert_eq!(location(&paused), "/ui/rollout");
    let page = operator.get("/ui/rollout").await;
    assert!(
        page.text.contains("paused by the operator"),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"rollout-resume\""), "{}", page.text);
    let resumed = operator
        .post("/ui/rollout/1/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let aborted = operator
        .post("/ui/rollout/1/abort", &[("csrf", &csrf)])
        .await;
    assert_eq!(aborted.status, StatusCode::SEE_OTHER);
    let rollout = h
        .call(Method::GET, "/fleet/rollouts/1", Some(OPERATOR), None)
        .await;
    assert_eq!(rollout.body["state"], "aborted", "{}", rollout.text);
    let page = operator.get("/ui/rollout").await;
    assert!(!page.text.contains("id=\"rollout-abort\""), "{}", page.text);
    // Done or aborted: the API's 409, shown by the dashboard.
    let again = operator
        .post("/ui/rollout/1/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    // Tenants' sessions may not see or act on it.
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = Agent::sign_in(&h, &token).await;
    assert_eq!(
        tenant.get("/ui/rollout").await.status,
        StatusCode::FORBIDDEN
    );
}
