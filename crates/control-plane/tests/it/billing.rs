//! Billing end to end, with nothing reaching Stripe: plans refuse what they
//! do not include (402 naming the entitlement), Stripe's webhooks are
//! verified by the documented signature scheme and applied once each in
//! event order, a lapsed payment stops the worker after the grace period and
//! a paid invoice starts it again, a plan change replaces the worker at the
//! plan's size, and Checkout runs against a local Stripe stand-in.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use chrono::Utc;
use common::{Harness, OPERATOR};
use polybot_control_plane::billing::BillingSettings;
use polybot_control_plane::billing::webhook::sign;
use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::settings::Settings;
use polybot_core::TenantId;
use polybot_launcher::{Instance, LaunchError, LaunchSpec, Launcher, Phase};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// Billing configured with `grace` and a Stripe stand-in at `api_base`.
fn configure(h: &mut Harness, grace: Duration, api_base: &str) {
    h.state.settings = Arc::new(Settings {
        billing: BillingSettings {
            stripe_api_key: Some(SecretString::from("sk_test_standin".to_owned())),
            webhook_secret: Some(SecretString::from(WEBHOOK_SECRET.to_owned())),
            api_base: api_base.to_owned(),
            grace,
            ..BillingSettings::default()
        },
        ..Settings::default()
    });
}

/// Posts `event` to the webhook, signed now (or with `signature`).
async fn deliver(h: &Harness, event: &Value, signature: Option<&str>) -> common::Reply {
    let payload = event.to_string();
    let signed = sign(
        payload.as_bytes(),
        WEBHOOK_SECRET.as_bytes(),
        Utc::now().timestamp(),
    );
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/webhooks/stripe")
        .header("content-type", "application/json")
        .header("stripe-signature", signature.unwrap_or(&signed))
        .body(axum::body::Body::from(payload))
        .unwrap();
    h.raw(request).await
}

/// A Stripe event of `kind` about `object`, created `ago` seconds ago.
fn event(id: &str, kind: &str, ago: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "type": kind,
        "created": Utc::now().timestamp() - ago,
        "data": {"object": object},
    })
}

async fn billing(h: &Harness, tenant: &str) -> Value {
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{tenant}/billing"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

/// Puts `tenant` on `plan` with Stripe customer `customer`, as a completed
/// Checkout would.
async fn subscribe(h: &Harness, tenant: &str, plan: &str, customer: &str, ago: i64) {
    let reply = deliver(
        h,
        &event(
            &format!("evt_checkout_{customer}"),
            "checkout.session.completed",
            ago,
            json!({"object": "checkout.session", "client_reference_id": tenant, "customer": customer,
                   "subscription": format!("sub_{customer}"), "payment_status": "paid",
                   "metadata": {"plan": plan, "tenant_id": tenant}}),
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.body["outcome"]
            .as_str()
            .unwrap()
            .starts_with("applied"),
        "{}",
        reply.text
    );
}

fn the_entitlement(reply: &common::Reply, field: &str, entitlement: &str) {
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(reply.body["type"], "/problems/plan-entitlement");
    let errors = reply.body["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["field"] == field
            && e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("entitlement {entitlement}"))),
        "{}",
        reply.text
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_plan_refuses_what_it_does_not_include_naming_the_entitlement(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    // Onboarding on the free plan with a strategy and a venue it lacks: nothing stored.
    let reply = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "acme", "plan": "free-paper",
                        "strategies": {"news_arb": {}},
                        "exchange_keys": {"binance_us": {"api_key": "A", "secret_key": "B"}}})),
        )
        .await;
    the_entitlement(&reply, "strategies.news_arb", "strategies");
    the_entitlement(&reply, "exchange_keys.binance_us", "venues");
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
    // An unknown plan is a 422 on the field.
    let reply = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "acme", "plan": "gold"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "plan");

    let id = h
        .onboard(
            json!({"name": "acme", "plan": "free-paper", "strategies": {"complement_arb": {}}}),
        )
        .await;
    assert_eq!(billing(&h, &id).await["plan"]["id"], "free-paper");
    let reply = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"strategies": {"complement_arb": {}, "cross_venue_arb": {}}})),
        )
        .await;
    the_entitlement(&reply, "strategies.cross_venue_arb", "strategies");
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/exchange-keys"),
            Some(OPERATOR),
            Some(json!({"binance_us": {"api_key": "A", "secret_key": "B"}})),
        )
        .await;
    the_entitlement(&reply, "exchange_keys.binance_us", "venues");
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/alert-channels"),
            Some(OPERATOR),
            Some(json!({"channels": [
                {"kind": "telegram", "chat_id": "-1001234", "bot_token": "123456:AAbbCCddEEffGGhhIIjjKKllMMnn"}
            ]})),
        )
        .await;
    the_entitlement(&reply, "channels[0].kind", "alert_channels");
    // Two tokens, the free plan's cap; the third is refused.
    for expected in [StatusCode::CREATED, StatusCode::CREATED] {
        let reply = h
            .call(
                Method::POST,
                &format!("/tenants/{id}/tokens"),
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(reply.status, expected, "{}", reply.text);
    }
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    the_entitlement(&reply, "tokens", "max_tokens");
    assert_eq!(
        h.count("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
            .await,
        2
    );

    // Upgrading lifts the limits; a downgrade the configuration exceeds is refused.
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/plan"),
            Some(OPERATOR),
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["plan"]["id"], "pro");
    let reply = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"strategies": {"complement_arb": {}, "cross_venue_arb": {}}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/plan"),
            Some(OPERATOR),
            Some(json!({"plan": "free-paper"})),
        )
        .await;
    the_entitlement(&reply, "strategies.cross_venue_arb", "strategies");
    assert_eq!(billing(&h, &id).await["plan"]["id"], "pro");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_webhook_without_a_valid_fresh_signature_changes_nothing(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    configure(&mut h, Duration::ZERO, "http://127.0.0.1:9");
    let id = h.onboard(json!({"name": "acme", "plan": "pro"})).await;
    subscribe(&h, &id, "pro", "cus_a", 100).await;
    let failed = event(
        "evt_fail",
        "invoice.payment_failed",
        10,
        json!({"object": "invoice", "customer": "cus_a"}),
    );
    let payload = failed.to_string();
    let now = Utc::now().timestamp();
    let cases = [
        None,
        Some(sign(payload.as_bytes(), b"whsec_wrong", now)),
        Some(sign(
            payload.as_bytes(),
            WEBHOOK_SECRET.as_bytes(),
            now - 301,
        )),
        Some(format!("t={now}")),
    ];
    for signature in cases {
        let mut request = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/webhooks/stripe");
        if let Some(signature) = &signature {
            request = request.header("stripe-signature", signature);
        }
        let reply = h
            .raw(
                request
                    .body(axum::body::Body::from(payload.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{signature:?}");
        assert_eq!(reply.headers["content-type"], "application/problem+json");
    }
    assert_eq!(billing(&h, &id).await["payment_state"], "active");
    assert_eq!(
        h.count("SELECT count(*) FROM stripe_events WHERE id = 'evt_fail'")
            .await,
        0
    );
    // Without a configured secret the endpoint is closed, not open.
    h.state.settings = Arc::new(Settings::default());
    let reply = deliver(&h, &failed, None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn events_apply_once_in_event_order_and_only_to_their_tenant(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    configure(&mut h, Duration::from_secs(3600), "http://127.0.0.1:9");
    let a = h.onboard(json!({"name": "a", "plan": "pro"})).await;
    let b = h.onboard(json!({"name": "b", "plan": "pro"})).await;
    subscribe(&h, &a, "pro", "cus_a", 1000).await;
    subscribe(&h, &b, "pro", "cus_b", 1000).await;

    // A failure, delivered twice: applied once.
    let failed = event(
        "evt_a_failed",
        "invoice.payment_failed",
        500,
        json!({"object": "invoice", "customer": "cus_a"}),
    );
    let first = deliver(&h, &failed, None).await;
    assert_eq!(first.body["outcome"], "applied: payment past_due");
    let again = deliver(&h, &failed, None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(
        again.body["outcome"]
            .as_str()
            .unwrap()
            .starts_with("duplicate"),
        "{}",
        again.text
    );
    let lapsed_since = billing(&h, &a).await["lapsed_since"].clone();
    // A payment made after it, then the earlier subscription update arriving late.
    let paid = event(
        "evt_a_paid",
        "invoice.paid",
        100,
        json!({"object": "invoice", "customer": "cus_a"}),
    );
    assert_eq!(
        deliver(&h, &paid, None).await.body["outcome"],
        "applied: payment active"
    );
    let late = event(
        "evt_a_sub_late",
        "customer.subscription.updated",
        400,
        json!({"object": "subscription", "id": "sub_cus_a", "customer": "cus_a", "status": "past_due"}),
    );
    let reply = deliver(&h, &late, None).await;
    assert!(
        reply.body["outcome"].as_str().unwrap().starts_with("stale"),
        "{}",
        reply.text
    );
    let a_billing = billing(&h, &a).await;
    assert_eq!(a_billing["payment_state"], "active");
    assert_eq!(a_billing["lapsed_since"], Value::Null);
    assert_ne!(lapsed_since, Value::Null);
    // None of it reached b.
    let b_billing = billing(&h, &b).await;
    assert_eq!(b_billing["payment_state"], "active");
    assert_eq!(b_billing["stripe_customer_id"], "cus_b");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM audit_log WHERE tenant_id = '{b}' AND actor = 'stripe'"
        ))
        .await,
        1,
        "only b's own checkout"
    );
    // A cancellation of b does not touch a; an event for an unknown customer touches no one.
    let deleted = event(
        "evt_b_deleted",
        "customer.subscription.deleted",
        5,
        json!({"object": "subscription", "id": "sub_cus_b", "customer": "cus_b", "status": "canceled"}),
    );
    assert_eq!(
        deliver(&h, &deleted, None).await.body["outcome"],
        "applied: payment canceled"
    );
    let stranger = event(
        "evt_x",
        "invoice.paid",
        5,
        json!({"object": "invoice", "customer": "cus_x", "metadata": {"tenant_id": b}}),
    );
    let reply = deliver(&h, &stranger, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        billing(&h, &b).await["payment_state"],
        "canceled",
        "{}",
        reply.text
    );
    assert_eq!(billing(&h, &a).await["payment_state"], "active");
    // A customer's event naming another tenant applies to neither.
    let crossed = event(
        "evt_crossed",
        "invoice.paid",
        1,
        json!({"object": "invoice", "customer": "cus_a", "metadata": {"tenant_id": b}}),
    );
    let reply = deliver(&h, &crossed, None).await;
    assert!(
        reply.body["outcome"]
            .as_str()
            .unwrap()
            .starts_with("ignored"),
        "{}",
        reply.text
    );
    assert_eq!(billing(&h, &b).await["payment_state"], "canceled");
}

/// A worker size: CPU units and MiB; `None` is the launcher's default.
type Size = Option<(u32, u32)>;

/// Runs whatever it is asked to and remembers the size of each start.
#[derive(Debug, Default)]
struct SizedLauncher {
    running: Mutex<HashMap<TenantId, Instance>>,
    sizes: Mutex<HashMap<TenantId, Size>>,
    starts: Mutex<Vec<(TenantId, Size)>>,
}

#[async_trait]
impl Launcher for SizedLauncher {
    fn kind(&self) -> &'static str {
        "sized"
    }

    fn set_worker_size(
        &self,
        tenant: TenantId,
        size: Option<(u32, u32)>,
    ) -> Result<(), LaunchError> {
        self.sizes.lock().unwrap().insert(tenant, size);
        Ok(())
    }

    async fn ensure_spec(&self, _spec: &LaunchSpec) -> Result<(), LaunchError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        Ok(self.running.lock().unwrap().values().cloned().collect())
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let size = self
            .sizes
            .lock()
            .unwrap()
            .get(&spec.tenant)
            .copied()
            .flatten();
        self.starts.lock().unwrap().push((spec.tenant, size));
        let instance = Instance {
            id: format!("w-{}-{}", spec.tenant, self.starts.lock().unwrap().len()),
            tenant: spec.tenant,
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Running,
            started_at: Utc::now(),
        };
        self.running
            .lock()
            .unwrap()
            .insert(spec.tenant, instance.clone());
        Ok(instance)
    }

    async fn stop(&self, instance: &Instance, _reason: &str) -> Result<(), LaunchError> {
        self.running.lock().unwrap().remove(&instance.tenant);
        Ok(())
    }
}

impl SizedLauncher {
    fn running(&self, tenant: &str) -> Option<Instance> {
        self.running
            .lock()
            .unwrap()
            .values()
            .find(|i| i.tenant.to_string() == tenant)
            .cloned()
    }
}

async fn status(h: &Harness, tenant: &str) -> Value {
    h.call(
        Method::GET,
        &format!("/tenants/{tenant}/status"),
        Some(OPERATOR),
        None,
    )
    .await
    .body
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_failed_payment_stops_the_worker_after_grace_and_a_paid_invoice_starts_it(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    configure(&mut h, Duration::from_secs(600), "http://127.0.0.1:9");
    let a = h.onboard(json!({"name": "a", "plan": "pro"})).await;
    let b = h.onboard(json!({"name": "b", "plan": "pro"})).await;
    subscribe(&h, &a, "pro", "cus_a", 5000).await;
    subscribe(&h, &b, "pro", "cus_b", 5000).await;
    let launcher = Arc::new(SizedLauncher::default());
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    reconciler.payment_grace = Duration::from_secs(600);
    assert_eq!(reconciler.pass().await.unwrap().started, 2);

    // Failed 5 minutes ago: within the grace period, the worker runs on.
    let failed = event(
        "evt_failed",
        "invoice.payment_failed",
        300,
        json!({"object": "invoice", "customer": "cus_a"}),
    );
    deliver(&h, &failed, None).await;
    assert_eq!(reconciler.pass().await.unwrap().stopped, 0);
    assert!(launcher.running(&a).is_some());
    assert_eq!(billing(&h, &a).await["payment_hold"], Value::Null);

    // The grace period is over: a's worker stops, with the reason in its status; b's runs on.
    reconciler.payment_grace = Duration::from_secs(60);
    configure(&mut h, Duration::from_secs(60), "http://127.0.0.1:9");
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.stopped, 1, "{report:?}");
    assert!(launcher.running(&a).is_none());
    assert!(launcher.running(&b).is_some());
    let held = status(&h, &a).await;
    assert_eq!(held["state"], "active");
    assert_eq!(held["desired"], "stopped");
    assert!(
        held["last_error"]
            .as_str()
            .unwrap()
            .starts_with("paused for payment: the pro plan's payment is past due since"),
        "{held}"
    );
    // The tenant cannot lift it by resuming.
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{a}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{a}/resume"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reconciler.pass().await.unwrap().started, 0);
    assert!(launcher.running(&a).is_none());
    let seen = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/billing"),
            Some(&token),
            None,
        )
        .await;
    assert!(
        seen.body["payment_hold"]
            .as_str()
            .unwrap()
            .starts_with("paused for payment"),
        "the tenant sees why: {}",
        seen.text
    );

    // Paid: the next pass starts it again.
    let paid = event(
        "evt_paid",
        "invoice.paid",
        1,
        json!({"object": "invoice", "customer": "cus_a"}),
    );
    assert_eq!(
        deliver(&h, &paid, None).await.body["outcome"],
        "applied: payment active"
    );
    assert_eq!(reconciler.pass().await.unwrap().started, 1);
    assert!(launcher.running(&a).is_some());
    assert_eq!(status(&h, &a).await["desired"], "running");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_plan_change_replaces_the_worker_at_the_new_size(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let a = h.onboard(json!({"name": "a", "plan": "free-paper"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    let launcher = Arc::new(SizedLauncher::default());
    let reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    assert_eq!(reconciler.pass().await.unwrap().started, 2);
    let first = launcher.running(&a).unwrap();
    let tenant_a: TenantId = TenantId::from_uuid(a.parse().unwrap());
    let tenant_b: TenantId = TenantId::from_uuid(b.parse().unwrap());
    {
        let starts = launcher.starts.lock().unwrap();
        assert!(starts.contains(&(tenant_a, Some((256, 512)))));
        assert!(
            starts.contains(&(tenant_b, None)),
            "no plan: the default size"
        );
    }

    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{a}/plan"),
            Some(OPERATOR),
            Some(json!({"plan": "live"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Stop, then start at the live plan's size; b is left alone.
    assert_eq!(reconciler.pass().await.unwrap().stopped, 1);
    assert_eq!(reconciler.pass().await.unwrap().started, 1);
    let second = launcher.running(&a).unwrap();
    assert_ne!(second.spec_hash, first.spec_hash);
    assert_eq!(
        launcher.starts.lock().unwrap().last(),
        Some(&(tenant_a, Some((1024, 2048))))
    );
    assert_eq!(launcher.starts.lock().unwrap().len(), 3);
}

/// What the Stripe stand-in was asked.
#[derive(Debug, Default)]
struct Asked {
    calls: Vec<(String, String, String)>,
}

async fn stripe_standin() -> (String, Arc<Mutex<Asked>>) {
    use axum::extract::State;
    use axum::routing::post;
    let asked = Arc::new(Mutex::new(Asked::default()));
    async fn record(
        State(asked): State<Arc<Mutex<Asked>>>,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::Json<Value> {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        asked
            .lock()
            .unwrap()
            .calls
            .push((uri.path().to_owned(), auth, body));
        match uri.path() {
            "/v1/customers" => axum::Json(json!({"id": "cus_new", "object": "customer"})),
            _ => axum::Json(
                json!({"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.test/cs_test_1"}),
            ),
        }
    }
    let app = axum::Router::new()
        .route("/v1/customers", post(record))
        .route("/v1/checkout/sessions", post(record))
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), asked)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn checkout_creates_the_customer_once_and_a_session_for_the_plans_price(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    let (base, asked) = stripe_standin().await;
    configure(&mut h, Duration::from_secs(3600), &base);
    sqlx::query("UPDATE plans SET stripe_price_id = 'price_pro' WHERE id = 'pro'")
        .execute(&h.pool)
        .await
        .unwrap();
    let id = h.onboard(json!({"name": "acme"})).await;
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/billing/checkout"),
            Some(OPERATOR),
            Some(json!({"plan": "free-paper"})),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no Stripe price"
    );
    for _ in 0..2 {
        let reply = h
            .call(
                Method::POST,
                &format!("/tenants/{id}/billing/checkout"),
                Some(OPERATOR),
                Some(json!({"plan": "pro"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.body["url"], "https://checkout.stripe.test/cs_test_1");
        assert_eq!(reply.body["stripe_customer_id"], "cus_new");
        assert!(!reply.text.contains("sk_test_standin"));
    }
    let asked: Vec<(String, String, String)> = asked.lock().unwrap().calls.clone();
    let paths: Vec<&str> = asked.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/v1/customers",
            "/v1/checkout/sessions",
            "/v1/checkout/sessions"
        ]
    );
    assert!(
        asked
            .iter()
            .all(|(_, auth, _)| auth == "Bearer sk_test_standin")
    );
    let customer: HashMap<String, String> = url::form_urlencoded::parse(asked[0].2.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(customer["metadata[tenant_id]"], id);
    let session: HashMap<String, String> = url::form_urlencoded::parse(asked[1].2.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(session["mode"], "subscription");
    assert_eq!(session["customer"], "cus_new");
    assert_eq!(session["client_reference_id"], id);
    assert_eq!(session["line_items[0][price]"], "price_pro");
    assert_eq!(session["line_items[0][quantity]"], "1");
    assert_eq!(session["metadata[plan]"], "pro");
    assert_eq!(billing(&h, &id).await["stripe_customer_id"], "cus_new");
}

async fn tenant_token(h: &Harness, tenant: &str) -> String {
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn api_calls_are_counted_per_tenant_and_replicas_add_theirs(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let a = h.onboard(json!({"name": "acme"})).await;
    let b = h.onboard(json!({"name": "beta"})).await;
    let (token_a, token_b) = (tenant_token(&h, &a).await, tenant_token(&h, &b).await);
    // A second replica on the same database, with its own counters.
    let mut replica = h.state.clone();
    replica.api_calls = polybot_control_plane::billing::calls::ApiCalls::default();
    let other = Harness {
        state: replica,
        pool: h.pool.clone(),
        options: h.options.clone(),
    };
    for _ in 0..3 {
        let reply = h
            .call(Method::GET, &format!("/tenants/{a}"), Some(&token_a), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    for _ in 0..2 {
        let reply = other
            .call(Method::GET, &format!("/tenants/{a}"), Some(&token_a), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let reply = h
        .call(Method::GET, &format!("/tenants/{b}"), Some(&token_b), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Another tenant's id is refused, and still a call by its token.
    let reply = h
        .call(Method::GET, &format!("/tenants/{a}"), Some(&token_b), None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    // Operator calls are not a tenant's usage; nothing is written per request.
    assert_eq!(billing(&h, &a).await["usage"]["api_calls"], 0);
    let (tenant_a, tenant_b) = (
        TenantId::from_uuid(a.parse().unwrap()),
        TenantId::from_uuid(b.parse().unwrap()),
    );
    assert_eq!(h.state.api_calls.pending(tenant_a), 3);
    assert_eq!(h.state.api_calls.pending(tenant_b), 2);
    assert_eq!(other.state.api_calls.pending(tenant_a), 2);

    assert_eq!(h.state.api_calls.flush(&h.state.db).await.unwrap(), 5);
    assert_eq!(
        other.state.api_calls.flush(&other.state.db).await.unwrap(),
        2
    );
    assert_eq!(h.state.api_calls.pending(tenant_a), 0);
    assert_eq!(billing(&h, &a).await["usage"]["api_calls"], 5);
    assert_eq!(billing(&h, &b).await["usage"]["api_calls"], 2);
    // Flushing again adds nothing.
    assert_eq!(h.state.api_calls.flush(&h.state.db).await.unwrap(), 0);
    assert_eq!(
        h.count("SELECT sum(api_calls)::bigint FROM tenant_usage")
            .await,
        7
    );
    // The tenant sees its own count (that request is counted too, later).
    let own = h
        .call(
            Method::GET,
            &format!("/tenants/{b}/billing"),
            Some(&token_b),
            None,
        )
        .await;
    assert_eq!(own.body["usage"]["api_calls"], 2, "{}", own.text);
    assert_eq!(h.state.api_calls.pending(tenant_b), 1);
    // Every tenant's usage is for operators.
    let all = h
        .call(Method::GET, "/billing/usage", Some(&token_b), None)
        .await;
    assert_eq!(all.status, StatusCode::FORBIDDEN, "{}", all.text);
    let all = h
        .call(Method::GET, "/billing/usage", Some(OPERATOR), None)
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let calls: Vec<(&str, i64)> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["api_calls"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(calls, vec![("acme", 5), ("beta", 2)]);
    let bad = h
        .call(
            Method::GET,
            "/billing/usage?month=2027-13",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.body["errors"][0]["field"], "month", "{}", bad.text);
}

/// A Stripe stand-in for meter events: every POST as received, and (as
/// Stripe does) the events counted once per identifier.
#[derive(Debug, Default)]
struct Meter {
    received: Vec<HashMap<String, String>>,
    counted: HashMap<String, HashMap<String, String>>,
}

async fn meter_standin() -> (String, Arc<Mutex<Meter>>) {
    use axum::extract::State;
    use axum::routing::post;
    let meter = Arc::new(Mutex::new(Meter::default()));
    async fn record(State(meter): State<Arc<Mutex<Meter>>>, body: String) -> axum::Json<Value> {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let mut meter = meter.lock().unwrap();
        meter.received.push(form.clone());
        let id = form["identifier"].clone();
        meter.counted.entry(id.clone()).or_insert(form);
        axum::Json(json!({"object": "billing.meter_event", "identifier": id}))
    }
    let app = axum::Router::new()
        .route("/v1/billing/meter_events", post(record))
        .with_state(meter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), meter)
}

fn reporter(h: &Harness, base: &str) -> polybot_control_plane::billing::meter::Reporter {
    polybot_control_plane::billing::meter::Reporter::new(
        h.state.db.clone(),
        polybot_control_plane::billing::stripe::Stripe::new(
            base,
            SecretString::from("sk_test_standin".to_owned()),
        ),
    )
}

/// (identifier, event name, customer, value, timestamp) of each event.
fn events(forms: &[&HashMap<String, String>]) -> Vec<(String, String, String, String, String)> {
    let mut events: Vec<_> = forms
        .iter()
        .map(|f| {
            (
                f["identifier"].clone(),
                f["event_name"].clone(),
                f["payload[stripe_customer_id]"].clone(),
                f["payload[value]"].clone(),
                f["timestamp"].clone(),
            )
        })
        .collect();
    events.sort();
    events
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn metered_usage_is_reported_to_stripe_once_per_tenant_day_and_metric(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let mut h = Harness::new(pool_opts, options).await;
    let (base, meter) = meter_standin().await;
    configure(&mut h, Duration::from_secs(3600), &base);
    let a = h.onboard(json!({"name": "acme"})).await;
    let b = h.onboard(json!({"name": "beta"})).await;
    let c = h.onboard(json!({"name": "gamma"})).await;
    subscribe(&h, &a, "live", "cus_a", 60).await;
    subscribe(&h, &b, "live", "cus_b", 60).await;
    subscribe(&h, &c, "pro", "cus_c", 60).await;

    let today = Utc::now().date_naive();
    let day = |back: u64| today - chrono::Days::new(back);
    let noon = |d: chrono::NaiveDate| d.and_hms_opt(12, 0, 0).unwrap().and_utc();
    // Metering begins: nothing is sent for the days before.
    let summary = reporter(&h, &base).pass(noon(day(3))).await.unwrap();
    assert_eq!((summary.tenants, summary.events), (2, 0));
    assert!(meter.lock().unwrap().received.is_empty());

    // a: 90 minutes of worker time, two orders and 7 API calls three days
    // ago, 4 API calls two days ago; b: one order two days ago; c (not
    // metered): API calls.
    let insert = |sql: &'static str, tenant: &str, at: chrono::DateTime<Utc>| {
        let pool = h.pool.clone();
        let tenant: uuid::Uuid = tenant.parse().unwrap();
        async move {
            sqlx::query(sql)
                .bind(tenant)
                .bind(at)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    const MINUTES: &str = "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         SELECT $1, $2 + g * interval '1 minute', 60000, 60000 FROM generate_series(0, 89) g";
    const ORDER: &str = "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, mode, executed_at) \
         VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'buy', 0.5, 10, 'paper', $2)";
    const CALLS_7: &str =
        "INSERT INTO tenant_usage (tenant_id, day, api_calls) VALUES ($1, $2::date, 7)";
    const CALLS_4: &str =
        "INSERT INTO tenant_usage (tenant_id, day, api_calls) VALUES ($1, $2::date, 4)";
    insert(MINUTES, &a, noon(day(3))).await;
    insert(ORDER, &a, noon(day(3))).await;
    insert(ORDER, &a, noon(day(3))).await;
    insert(CALLS_7, &a, noon(day(3))).await;
    insert(CALLS_4, &a, noon(day(2))).await;
    insert(ORDER, &b, noon(day(2))).await;
    insert(CALLS_7, &c, noon(day(3))).await;

    let now = noon(today);
    let summary = reporter(&h, &base).pass(now).await.unwrap();
    assert_eq!((summary.days, summary.events, summary.errors), (6, 5, 0));
    let end = |d: chrono::NaiveDate| {
        (noon(d) + chrono::Duration::seconds(12 * 3600 - 1))
            .timestamp()
            .to_string()
    };
    let expected = {
        let e = |tenant: &str,
                 d: chrono::NaiveDate,
                 metric: &str,
                 event: &str,
                 customer: &str,
                 value: &str| {
            (
                format!("polybot-{tenant}-{d}-{metric}"),
                event.to_owned(),
                customer.to_owned(),
                value.to_owned(),
                end(d),
            )
        };
        let mut v = vec![
            e(
                &a,
                day(3),
                "worker_minutes",
                "polybot_worker_minutes",
                "cus_a",
                "90",
            ),
            e(&a, day(3), "orders", "polybot_orders", "cus_a", "2"),
            e(&a, day(3), "api_calls", "polybot_api_calls", "cus_a", "7"),
            e(&a, day(2), "api_calls", "polybot_api_calls", "cus_a", "4"),
            e(&b, day(2), "orders", "polybot_orders", "cus_b", "1"),
        ];
        v.sort();
        v
    };
    {
        let meter = meter.lock().unwrap();
        assert_eq!(events(&meter.received.iter().collect::<Vec<_>>()), expected);
    }
    assert_eq!(h.count("SELECT count(*) FROM usage_reports").await, 5);
    let shown = billing(&h, &a).await;
    assert_eq!(
        shown["usage_reported_until"].as_str().unwrap()[..10],
        today.to_string(),
        "{shown}"
    );

    // A restarted reporter, now and later in the day, sends nothing again.
    for later in [now, now + chrono::Duration::hours(6)] {
        let summary = reporter(&h, &base).pass(later).await.unwrap();
        assert_eq!(summary.events, 0);
    }
    assert_eq!(meter.lock().unwrap().received.len(), 5);

    // A reporter that died after sending a's calls of two days ago and
    // before recording them resends the same identifier: Stripe counts it once.
    sqlx::query("DELETE FROM usage_reports WHERE identifier = $1")
        .bind(format!("polybot-{a}-{}-api_calls", day(2)))
        .execute(&h.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE tenant_billing SET reported_until = $2 WHERE tenant_id = $1")
        .bind(a.parse::<uuid::Uuid>().unwrap())
        .bind(day(2).and_hms_opt(0, 0, 0).unwrap().and_utc())
        .execute(&h.pool)
        .await
        .unwrap();
    let summary = reporter(&h, &base).pass(now).await.unwrap();
    assert_eq!(summary.events, 1);
    let meter = meter.lock().unwrap();
    assert_eq!(meter.received.len(), 6);
    assert_eq!(
        events(&meter.counted.values().collect::<Vec<_>>()),
        expected
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_dashboard_shows_plan_payment_and_usage_to_operators_and_each_tenant_its_own(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    use crate::dashboard::Agent;
    let mut h = Harness::new(pool_opts, options).await;
    configure(&mut h, Duration::from_secs(3600), "http://127.0.0.1:9");
    let a = h.onboard(json!({"name": "acme"})).await;
    let b = h.onboard(json!({"name": "beta"})).await;
    subscribe(&h, &a, "pro", "cus_a", 60).await;
    let token_a = tenant_token(&h, &a).await;
    let tenant_a = TenantId::from_uuid(a.parse().unwrap());
    h.state.api_calls.record(tenant_a);
    h.state.api_calls.record(tenant_a);
    h.state.api_calls.flush(&h.state.db).await.unwrap();

    let operator = Agent::sign_in(&h, OPERATOR).await;
    let page = operator.get(&format!("/ui/tenants/{a}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let section = &page.text[page
        .text
        .find("<table id=\"billing\">")
        .expect("a billing section")..];
    let section = &section[..section.find("</table>").unwrap()];
    assert!(
        section.contains("Pro (<code>pro</code>) · 49 USD a month"),
        "{section}"
    );
    assert!(
        section.contains("<span class=\"badge active\">active</span>"),
        "{section}"
    );
    assert!(
        section
            .contains("0 worker-hours at 512 CPU units / 1024 MiB, 0 orders (0 live), 2 API calls"),
        "{section}"
    );
    let page = operator.get(&format!("/ui/tenants/{b}")).await;
    assert!(
        page.text.contains("none: not limited, not billed"),
        "{}",
        page.text
    );
    let overview = operator.get("/ui/billing").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    let table = &overview.text[overview.text.find("id=\"billing-overview\"").unwrap()..];
    let acme = &table[table.find(">acme</a>").unwrap()..];
    let acme = &acme[..acme.find("</tr>").unwrap()];
    assert_eq!(
        acme,
        ">acme</a></td><td>pro</td><td>49</td><td><span class=\"badge active\">active</span></td><td>0</td><td>0</td><td>2</td>"
    );
    assert!(
        table.contains(">beta</a></td><td>none</td><td>-</td>"),
        "{table}"
    );

    // The tenant sees its own billing, and not the operators' page.
    let tenant = Agent::sign_in(&h, &token_a).await;
    let own = tenant.get(&format!("/ui/tenants/{a}")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert!(own.text.contains("<table id=\"billing\">"), "{}", own.text);
    assert!(own.text.contains("2 API calls"), "{}", own.text);
    assert_eq!(
        tenant.get("/ui/billing").await.status,
        StatusCode::FORBIDDEN
    );
}
