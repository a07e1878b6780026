//! The HTTP client every REST connector goes through.
//!
//! It applies, in order: the venue gate (geo-block, ban, `Retry-After`
//! pause), the endpoint's rate limiters, the request with a timeout, and the
//! retry policy:
//!
//! - `429` pauses the venue for `Retry-After` (1 s when absent) and retries
//!   while the wait is within [`RetryPolicy::max_retry_after`] (idempotent
//!   requests only: a signed request would resend a stale timestamp);
//! - `418` bans the venue until `Retry-After` ends (2 minutes when absent):
//!   no request is sent until then, callers get [`ErrorKind::Banned`];
//! - `451` marks the venue geo-blocked for this host, for good;
//! - `5xx` and transport errors on idempotent requests are retried with
//!   jittered exponential backoff, a bounded number of times.
//!
//! Waiting goes through a [`Clock`], so tests can assert the exact waits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{ErrorKind, VenueError};
use crate::model::Api;
use crate::ratelimit::RateLimiter;
use crate::signing::AuthHeaders;

/// Time source and sleeper, injectable for tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
    /// Sleeps for `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock (tokio's, so a paused runtime clock applies).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A test clock: `sleep` returns at once, advances `now` and records the wait.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    state: Mutex<(Duration, Vec<Duration>)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            state: Mutex::new((Duration::ZERO, Vec::new())),
        }
    }
}

impl ManualClock {
    /// A clock at an arbitrary start.
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves time forward without recording a sleep.
    pub fn advance(&self, by: Duration) {
        self.lock().0 += by;
    }
    /// Every sleep requested so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().1.clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Vec<Duration>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.lock().0
    }
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut state = self.lock();
        state.0 += duration;
        state.1.push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// Retry and timeout policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// First backoff after a 5xx or transport error.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` the client waits out by itself; beyond it the
    /// caller gets [`ErrorKind::RateLimited`].
    pub max_retry_after: Duration,
    /// Ban length after a `418` without `Retry-After`.
    pub default_ban: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            default_ban: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Jittered exponential backoff before attempt `attempt + 1`: a random
    /// duration in `[b/2, b]` with `b = min(base × 2^(attempt-1), max)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        let ceiling = self
            .base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let ceiling_ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(ceiling_ms / 2..=ceiling_ms))
    }
}

/// Options shared by every connector.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Clock used for waits and bans.
    pub clock: Arc<dyn Clock>,
    /// `User-Agent` (Coinbase rejects requests without one).
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            clock: Arc::new(TokioClock),
            user_agent: concat!("polybot-venues/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct GateState {
    geo_blocked: bool,
    banned_until: Option<Instant>,
    paused_until: Option<Instant>,
}

/// Per-venue state learnt from the venue's answers.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Json(String),
    Form(String),
}

/// One request to send.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: Method,
    /// Path below the base URL, starting with `/`, without query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// A pre-built query string (signed requests: the bytes must match the signature).
    pub raw_query: Option<String>,
    pub body: Option<Body>,
    pub auth: Option<AuthHeaders>,
    pub limits: Vec<(&'a RateLimiter, u32)>,
    /// Safe to resend after a 5xx or transport error.
    pub idempotent: bool,
}

impl<'a> Request<'a> {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            raw_query: None,
            body: None,
            auth: None,
            limits: Vec::new(),
            idempotent: true,
        }
    }
    pub fn post(path: impl Into<String>, body: Body) -> Self {
        Self {
            method: Method::POST,
            body: Some(body),
            idempotent: false,
            ..Self::get(path)
        }
    }
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }
    pub fn query_opt(self, key: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }
    pub fn limit(mut self, limiter: &'a RateLimiter, cost: u32) -> Self {
        self.limits.push((limiter, cost));
        self
    }
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A venue's HTTP client.
#[derive(Debug)]
pub(crate) struct HttpClient {
    api: Api,
    base: String,
    client: reqwest::Client,
    gate: Gate,
    options: ClientOptions,
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl HttpClient {
    pub fn new(api: Api, base: &str, options: &ClientOptions) -> Result<Self, VenueError> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone())
            .build()
            .map_err(|e| {
                VenueError::new(
                    api,
                    "",
                    ErrorKind::Config {
                        detail: format!("cannot build the HTTP client: {e}"),
                    },
                )
            })?;
        Ok(Self {
            api,
            base: base.trim_end_matches('/').to_owned(),
            client,
            gate: Gate::default(),
            options: options.clone(),
        })
    }

    pub fn api(&self) -> Api {
        self.api
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn err(&self, endpoint: impl Into<String>, kind: ErrorKind) -> VenueError {
        VenueError::new(self.api, endpoint, kind)
    }

    /// Checks the gate; waits out a `Retry-After` pause.
    async fn pass_gate(&self, endpoint: &str) -> Result<(), VenueError> {
        let clock = &self.options.clock;
        let wait = {
            let state = self.gate.lock();
            let now = clock.now();
            if state.geo_blocked {
                return Err(self.err(endpoint, ErrorKind::GeoBlocked).with_status(451));
            }
            if let Some(until) = state.banned_until.filter(|u| *u > now) {
                return Err(self
                    .err(
                        endpoint,
                        ErrorKind::Banned {
                            remaining: until - now,
                        },
                    )
                    .with_status(418));
            }
            state.paused_until.filter(|u| *u > now).map(|u| u - now)
        };
        if let Some(wait) = wait {
            clock.sleep(wait).await;
        }
        Ok(())
    }

    /// Sends with the gate, the limiters and the retry policy.
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, VenueError> {
        let endpoint = req.endpoint();
        let policy = &self.options.retry;
        let clock = &self.options.clock;
        let secrets: Vec<String> = req
            .auth
            .iter()
            .flat_map(|a| a.iter().map(|(_, v)| v.to_owned()))
            .collect();
        let max_attempts = if req.idempotent {
            policy.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pass_gate(&endpoint).await?;
            for (limiter, cost) in &req.limits {
                limiter.acquire(*cost).await;
            }
            let result = self.build(req)?.send().await;
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout {
                            after: self.options.timeout,
                        }
                    } else {
                        ErrorKind::Unreachable {
                            detail: transport_detail(&e),
                        }
                    };
                    if attempt < max_attempts {
                        tracing::warn!(venue = %self.api, endpoint, attempt, "transport error, retrying");
                        clock.sleep(policy.backoff(attempt)).await;
                        continue;
                    }
                    return Err(self.err(&endpoint, kind));
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    return Err(self.err(
                        &endpoint,
                        ErrorKind::Unreachable {
                            detail: format!("reading the body failed: {}", transport_detail(&e)),
                        },
                    ));
                }
            };
            if status.is_success() {
                return Ok(Response { headers, body });
            }
            let fail = |kind: ErrorKind| {
                self.err(&endpoint, kind)
                    .with_status(status.as_u16())
                    .with_body(&body)
                    .redact(&secrets)
            };
            let retry_after = retry_after(&headers);
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    self.gate.lock().paused_until = Some(clock.now() + wait);
                    if attempt < max_attempts && wait <= policy.max_retry_after {
                        tracing::warn!(venue = %self.api, endpoint, ?wait, "429: waiting Retry-After");
                        continue;
                    }
                    return Err(fail(ErrorKind::RateLimited { retry_after }));
                }
                s if s.as_u16() == 418 => {
                    let ban = retry_after.unwrap_or(policy.default_ban);
                    self.gate.lock().banned_until = Some(clock.now() + ban);
                    tracing::error!(venue = %self.api, endpoint, ?ban, "418: IP banned");
                    return Err(fail(ErrorKind::Banned { remaining: ban }));
                }
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS => {
                    self.gate.lock().geo_blocked = true;
                    tracing::error!(venue = %self.api, endpoint, "451: geo-blocked");
                    return Err(fail(ErrorKind::GeoBlocked));
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(fail(ErrorKind::Unauthorized));
                }
                s if s.is_server_error() => {
                    if attempt < max_attempts {
                        tracing::warn!(venue = %self.api, endpoint, status = s.as_u16(), attempt, "server error, retrying");
                        clock.sleep(policy.backoff(attempt)).await;
                        continue;
                    }
                    return Err(fail(ErrorKind::Server { attempts: attempt }));
                }
                _ => return Err(fail(ErrorKind::Status)),
            }
        }
    }

    fn build(&self, req: &Request<'_>) -> Result<reqwest::RequestBuilder, VenueError> {
        let mut url = format!("{}{}", self.base, req.path);
        if let Some(raw) = &req.raw_query {
            url.push('?');
            url.push_str(raw);
        }
        let mut builder = self.client.request(req.method.clone(), url);
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        match &req.body {
            Some(Body::Json(text)) => {
                builder = builder
                    .header("content-type", "application/json")
                    .body(text.clone());
            }
            Some(Body::Form(text)) => {
                builder = builder
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(text.clone());
            }
            None => {}
        }
        if let Some(auth) = &req.auth {
            for (name, value) in auth.iter() {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    self.err(
                        req.endpoint(),
                        ErrorKind::Signing {
                            detail: format!("{name:?} is not a valid header name"),
                        },
                    )
                })?;
                let mut value = HeaderValue::from_str(value).map_err(|_| {
                    self.err(
                        req.endpoint(),
                        ErrorKind::Signing {
                            detail: format!("header {name} has characters HTTP does not allow"),
                        },
                    )
                })?;
                value.set_sensitive(true);
                builder = builder.header(name, value);
            }
        }
        Ok(builder)
    }

    /// Sends and decodes JSON.
    pub async fn json<T: DeserializeOwned>(&self, req: &Request<'_>) -> Result<T, VenueError> {
        let response = self.send(req).await?;
        self.decode(&req.endpoint(), &response.body)
    }

    /// Decodes JSON, mapping failures to [`ErrorKind::Decode`] with an excerpt.
    pub fn decode<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &[u8],
    ) -> Result<T, VenueError> {
        serde_json::from_slice(body).map_err(|e| {
            self.err(
                endpoint,
                ErrorKind::Decode {
                    detail: e.to_string(),
                },
            )
            .with_body(body)
        })
    }
}

fn transport_detail(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_connect() {
        parts.push("connection failed".to_owned());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(without_url_text(e));
    }
    parts.dedup();
    parts.join(": ")
}

/// The error text without the URL (a signed URL carries its signature).
fn without_url_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}
