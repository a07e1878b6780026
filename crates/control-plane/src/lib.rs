//! The control plane: the `/tenants` API, durable onboarding and offboarding,
//! and the operator endpoints (`/healthz`, `/readyz`, `/openapi.json`).
//!
//! [`router`] builds the axum router from an [`AppState`] (handlers are tested
//! through it without a port); [`App::build`] binds a listener (port 0 is
//! fine) and [`App::run_until_stopped`] serves until the cancellation token
//! fires, then drains requests and background onboarding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use polybot_core::TenantId;
use polybot_secrets::SecretStore;
use polybot_store::Db;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi;

pub mod alerts;
pub mod auth;
pub mod billing;
pub mod dashboard;
pub mod data;
pub mod error;
pub mod login_move;
pub mod metrics;
pub mod paging;
pub mod pairs;
pub mod provision;
pub mod query_text;
pub mod reconcile;
pub mod rollout;
pub mod serve;
pub mod settings;
pub mod status;
pub mod tenants;
pub mod throttle;
pub mod worker_settings;

pub use provision::{Provisioner, SharedLogin, WorkerDatabase};

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub secrets: Arc<dyn SecretStore>,
    pub provisioner: Provisioner,
    pub tokens: auth::TokenCache,
    /// Failed-authentication budgets (brute-force protection).
    pub throttle: throttle::AuthThrottle,
    /// Wakes the reconciler early after a change.
    pub reconcile: Arc<Notify>,
    pub tasks: TaskTracker,
    /// In-process metrics (HTTP, reconciler, launcher, alerts) for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Dashboard, `/metrics` and alerting settings.
    pub settings: Arc<settings::Settings>,
    /// Seals alert channel secrets. [`AppState::new`] starts with a key that
    /// lives as long as the process; `polybot` sets the master key's.
    pub channel_key: Arc<alerts::ChannelKey>,
    /// Tenants' API calls not yet written to `tenant_usage`.
    pub api_calls: billing::calls::ApiCalls,
    /// Whether the launcher runs worker images a rollout may change (ECS);
    /// `false` (local processes) refuses image rollouts with a 422.
    pub worker_images: bool,
    /// The local launcher's bound on workers, checked before a tenant is
    /// onboarded or resumed; `None` (ECS, tests) admits every tenant.
    pub local_workers: Option<Arc<tenants::capacity::LocalWorkers>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("secrets", &self.secrets.kind())
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(db: Db, secrets: Arc<dyn SecretStore>, worker_db: WorkerDatabase) -> Self {
        let reconcile = Arc::new(Notify::new());
        let provisioner =
            Provisioner::new(db.clone(), secrets.clone(), worker_db, reconcile.clone());
        Self {
            db,
            secrets,
            provisioner,
            tokens: auth::TokenCache::default(),
            throttle: throttle::AuthThrottle::default(),
            reconcile,
            tasks: TaskTracker::new(),
            metrics: metrics::Metrics::default(),
            settings: Arc::new(settings::Settings::default()),
            channel_key: Arc::new(alerts::ChannelKey::ephemeral()),
            api_calls: billing::calls::ApiCalls::default(),
            worker_images: false,
            local_workers: None,
        }
    }

    /// Runs `tenant`'s onboarding in the background (a restart resumes it if
    /// this process dies first).
    pub fn start_provisioning(&self, tenant: TenantId) {
        let provisioner = self.provisioner.clone();
        self.tasks.spawn(async move {
            if let Err(err) = provisioner.run(tenant).await {
                tracing::warn!(%tenant, error = %err, "onboarding did not complete");
            }
        });
    }

    /// Asks the reconciler for an early pass, on whichever replica leads.
    pub fn wake(&self) {
        wake_leader(&self.db, &self.reconcile);
    }
}

/// Wakes this replica's reconciler and announces the change to the others
/// (`NOTIFY`, [`polybot_store::wakeups`]), so that a change accepted by a
/// standby reaches the leader at once rather than at its next backstop pass.
/// The announcement is sent in the background: a failure to send it only
/// delays the pass, and is logged.
pub(crate) fn wake_leader(db: &polybot_store::Db, local: &Notify) {
    local.notify_one();
    let db = db.clone();
    tokio::spawn(async move {
        if let Err(err) = polybot_store::wakeups::announce(&db).await {
            tracing::warn!(error = %err, "could not announce a change to the reconciler leader");
        }
    });
}

#[derive(OpenApi)]
#[openapi(
    info(title = "PolyBot Cloud control plane", description = "Tenants, their workers, and their status."),
    paths(
        tenants::create, tenants::list, tenants::get, tenants::patch, tenants::rotate_keys,
        tenants::pause, tenants::resume, tenants::delete, tenants::create_token, tenants::list_tokens, tenants::revoke_token, status::get, status::fleet,
        healthz, readyz, metrics::metrics,
        data::opportunities, data::trades, data::balances, data::pnl, pairs::list, data::refused_pairs,
        alerts::get_tenant_channels, alerts::put_tenant_channels, alerts::get_operator_channels, alerts::put_operator_channels,
        billing::api::list_plans, billing::api::get, billing::api::set_plan, billing::api::checkout, billing::api::usage, billing::webhook::receive,
        rollout::start, rollout::current, rollout::get, rollout::pause, rollout::resume, rollout::abort,
        login_move::move_to_shared_login
    ),
    components(schemas(
        tenants::TenantView, tenants::TenantPage, tenants::ProvisioningView, tenants::TokenCreated, tenants::CreateTokenRequest, tenants::TokenView, tenants::TokenList,
        tenants::CreateTenantRequest, tenants::UpdateTenantRequest, status::StatusView, status::FleetPage, status::WorkerView, status::HeartbeatView,
        alerts::ChannelsView, alerts::ChannelView, alerts::ChannelsRequest,
        data::OpportunityView, data::OpportunityPage, data::TradeView, data::TradePage,
        data::BalanceView, data::BalancePage, data::PnlView, data::StrategyPnl, data::PositionView,
        pairs::PairView, pairs::PairPage,
        data::RefusedPairView, data::RefusedPairList,
        billing::api::PlanView, billing::api::PlanList, billing::api::BillingView, billing::api::UsageView, billing::api::CheckoutView, billing::api::UsageList, billing::api::TenantUsageView,
        rollout::StartRolloutRequest, rollout::RolloutView, rollout::ProgressView, rollout::ReachedView,
        login_move::MoveRequest, login_move::MoveView, login_move::MovedTenantView,
        error::Problem
    )),
    tags(
        (name = "tenants", description = "Onboarding, configuration, lifecycle and tokens of tenants."),
        (name = "status", description = "Each tenant's desired and actual worker state."),
        (name = "data", description = "A tenant's opportunities, trades, balances, paired positions and profit."),
        (name = "alerts", description = "Where alerts are sent: a tenant's channels and the operator's."),
        (name = "billing", description = "Plans, a tenant's payment state and usage, Stripe Checkout and webhooks."),
        (name = "fleet", description = "Fleet-wide rollouts of a worker image or worker settings, and the move of older tenants to the shared worker login (operators only)."),
        (name = "operations", description = "Liveness, readiness and Prometheus metrics."),
    ),
    modifiers(&BearerAuth, &ServingLimits),
    security(("bearer" = []))
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The responses the serving layers add to every operation: 408 when a
/// request is not received and answered within `serve::REQUEST_TIMEOUT`, and,
/// wherever a bearer token is checked, 429 with `Retry-After` once a client
/// or token prefix has used up its authentication-failure budget (`throttle`).
struct ServingLimits;

impl utoipa::Modify for ServingLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, path::Operation, schema::Type,
        };
        let problem = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
        };
        let timeout =
            problem("the request's headers and body were not received and answered in time (60 s)")
                .build();
        let throttled = problem(
            "too many failed authentications from this client or for this token prefix; retry after `Retry-After` seconds",
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("seconds to wait before trying again"))
                .build(),
        )
        .build();
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("408".to_owned())
                    .or_insert_with(|| timeout.clone().into());
                // `security(())` marks the operations that check no token.
                let public = operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| requirements.iter().all(is_empty_requirement));
                if !public {
                    responses
                        .entry("429".to_owned())
                        .or_insert_with(|| throttled.clone().into());
                } else if let Some(declared) = responses.get_mut("429") {
                    // A public operation that spends the same budget (the
                    // Stripe webhook's bad signatures) answers the same way.
                    *declared = throttled.clone().into();
                }
            }
        }
    }
}

fn is_empty_requirement(requirement: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(requirement).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", operation_id = "get_liveness", tag = "operations",
    security(()),
    responses(
        (status = 200, description = "alive", body = String, content_type = "text/plain"),
    )
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and its migrations are current.
#[utoipa::path(get, path = "/readyz", operation_id = "get_readiness", tag = "operations",
    security(()),
    responses(
        (status = 200, description = "ready: the database answers and its migrations are current", body = String, content_type = "text/plain"),
        (status = 503, description = "the database is unreachable or its migrations are not current", body = error::Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.migrations_current().await {
        Ok(true) => (StatusCode::OK, "ready").into_response(),
        Ok(false) => error::ApiError::Unavailable(
            "database migrations are not current: run `polybot migrate`".into(),
        )
        .into_response(),
        Err(err) => {
            error::ApiError::Unavailable(format!("database unreachable: {err}")).into_response()
        }
    }
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("route")
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/tenants/{id}",
            get(tenants::get)
                .patch(tenants::patch)
                .delete(tenants::delete),
        )
        .route("/tenants/{id}/status", get(status::get))
        .route("/tenants/{id}/opportunities", get(data::opportunities))
        .route("/tenants/{id}/trades", get(data::trades))
        .route("/tenants/{id}/balances", get(data::balances))
        .route("/tenants/{id}/pnl", get(data::pnl))
        .route("/tenants/{id}/pairs", get(pairs::list))
        .route("/tenants/{id}/pairs/refused", get(data::refused_pairs))
        .route("/fleet", get(status::fleet))
        .route("/fleet/rollouts", post(rollout::start))
        .route("/fleet/rollouts/current", get(rollout::current))
        .route("/fleet/rollouts/{id}", get(rollout::get))
        .route("/fleet/rollouts/{id}/pause", post(rollout::pause))
        .route("/fleet/rollouts/{id}/resume", post(rollout::resume))
        .route("/fleet/rollouts/{id}/abort", post(rollout::abort))
        .route(
            "/fleet/shared-login-moves",
            post(login_move::move_to_shared_login),
        )
        .route("/tenants/{id}/exchange-keys", put(tenants::rotate_keys))
        .route("/tenants/{id}/pause", post(tenants::pause))
        .route("/tenants/{id}/resume", post(tenants::resume))
        .route(
            "/tenants/{id}/tokens",
            post(tenants::create_token).get(tenants::list_tokens),
        )
        .route(
            "/tenants/{id}/tokens/{token_id}",
            axum::routing::delete(tenants::revoke_token),
        )
        .route("/metrics", get(metrics::metrics))
        .route(
            "/tenants/{id}/alert-channels",
            get(alerts::get_tenant_channels).put(alerts::put_tenant_channels),
        )
        .route(
            "/alert-channels",
            get(alerts::get_operator_channels).put(alerts::put_operator_channels),
        )
        .route("/plans", get(billing::api::list_plans))
        .route("/tenants/{id}/billing", get(billing::api::get))
        .route("/tenants/{id}/plan", put(billing::api::set_plan))
        .route(
            "/tenants/{id}/billing/checkout",
            post(billing::api::checkout),
        )
        .route("/billing/usage", get(billing::api::usage))
        .route("/webhooks/stripe", post(billing::webhook::receive))
        .merge(dashboard::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(query_text::refuse_control_text))
        .layer(axum::middleware::from_fn(serve::strict_transport))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_http,
        ))
        .with_state(state)
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `POLYBOT_OPERATOR_TOKEN`, if given.
    pub operator_token: Option<SecretString>,
    /// Where the operator token is written when none is given (`<data-dir>/operator-token`).
    pub operator_token_file: Option<PathBuf>,
}

/// A bound, ready-to-run control plane.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Registers the operator token, binds the listener, and resumes any
    /// onboarding a previous process left unfinished.
    pub async fn build(config: &Config, mut state: AppState) -> anyhow::Result<Self> {
        auth::ensure_operator_token(
            &state.db,
            config.operator_token.as_ref(),
            config.operator_token_file.as_deref(),
        )
        .await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let bound = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("reading the listener's address: {e}"))?;
        state.settings = Arc::new(state.settings.for_listener(bound));
        let resumed = state.provisioner.resume_all().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished onboarding");
        }
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` is cancelled, then finishes in-flight requests and
    /// background onboarding.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let tasks = self.state.tasks.clone();
        // Stopped after serving, so that the last requests' calls are written.
        let counting = CancellationToken::new();
        tasks.spawn(self.state.api_calls.clone().run(
            self.state.db.clone(),
            billing::calls::FLUSH_EVERY,
            counting.clone(),
        ));
        let served = serve::serve(
            self.listener,
            router(self.state),
            serve::Limits::default(),
            stop,
        )
        .await;
        counting.cancel();
        tasks.close();
        tasks.wait().await;
        served
    }
}
