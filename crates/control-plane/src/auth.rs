//! Bearer tokens: one operator token (or more), and per-tenant tokens.
//!
//! Tokens are random, shown once, and stored as SHA-256 hashes (the rows are
//! `polybot_store::repo::tokens`'). A tenant token sees and changes only its
//! own tenant; any other tenant's id answers 404, exactly as if it did not
//! exist.
//!
//! Handlers ask through extractors: [`Caller`] (who, or 401), [`Operator`]
//! (an operator, or 403) and [`TenantAccess`] (the `{id}` tenant, if the
//! caller may see it, or 404).
//!
//! Tenant tokens expire ([`TokenLifetime`]) and can be revoked. Lookups are
//! cached for [`CACHE_TTL`]: a cached token is still refused once it has
//! expired, and a revocation clears this process's cache at once, so only
//! another control-plane replica may honour a revoked token, for at most
//! [`CACHE_TTL`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_store::repo::tokens;
use polybot_store::{Db, DbError};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

const OPERATOR_PREFIX: &str = "pbo_";
const TENANT_PREFIX: &str = "pbt_";
/// How long a token lookup is cached; a token revoked through another
/// control-plane replica stops working here within it.
pub const CACHE_TTL: Duration = Duration::from_secs(15);
/// How many unrevoked, unexpired tokens a tenant may hold.
pub const MAX_TOKENS_PER_TENANT: i64 = 20;

/// A tenant token's lifetime in days: [`TokenLifetime::DEFAULT`] unless
/// asked, never more than [`TokenLifetime::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(i64);

impl TokenLifetime {
    pub const DEFAULT: TokenLifetime = TokenLifetime(90);
    pub const MAX: TokenLifetime = TokenLifetime(365);

    /// `days` if it is between 1 and the maximum.
    pub fn days(days: i64) -> Option<Self> {
        (1..=Self::MAX.0)
            .contains(&days)
            .then_some(TokenLifetime(days))
    }

    pub fn as_days(self) -> i64 {
        self.0
    }

    /// When a token created at `now` expires, to the microsecond the
    /// database keeps (so what is shown is what is stored).
    pub fn expiry(self, now: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::SubsecRound as _;
        (now + chrono::Duration::days(self.0)).trunc_subsecs(6)
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(TenantId),
}

impl Caller {
    /// The audit log's `actor`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Tenant(id) => format!("tenant:{id}"),
        }
    }

    /// Whether this caller may see `tenant` (if not, answer 404).
    pub fn may_see(&self, tenant: TenantId) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Tenant(own) => *own == tenant,
        }
    }

    /// The scope of idempotency keys.
    pub fn scope(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Tenant(id) => format!("tenant:{id}"),
        }
    }
}

/// A new random token with its kind's prefix.
fn new_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Token hash → who it is, until when the token is valid (none for operator
/// tokens), and when that was looked up.
type CacheMap = HashMap<Vec<u8>, (Caller, Option<DateTime<Utc>>, Instant)>;

/// Cached token lookups, so that a request costs no extra database round trip.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<CacheMap>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = self.entries.lock().ok()?;
        let (caller, expires_at, at) = entries.get(hash)?;
        let unexpired = expires_at.is_none_or(|e| e > Utc::now());
        (at.elapsed() < CACHE_TTL && unexpired).then_some(*caller)
    }

    fn put(&self, hash: Vec<u8>, caller: Caller, expires_at: Option<DateTime<Utc>>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, _, at)| at.elapsed() < CACHE_TTL);
            }
            entries.insert(hash, (caller, expires_at, Instant::now()));
        }
    }

    /// Forgets every cached lookup (after a revocation or an offboarding).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Resolves a bearer token to its caller.
pub async fn authenticate(db: &Db, cache: &TokenCache, token: &str) -> Result<Caller, ApiError> {
    let hash = hash_token(token);
    if let Some(caller) = cache.get(&hash) {
        return Ok(caller);
    }
    let found = if token.starts_with(OPERATOR_PREFIX) {
        let mut op = db.operator().await?;
        let found = tokens::is_operator(&mut op, &hash).await?;
        op.commit().await?;
        found.then_some((Caller::Operator, None))
    } else if token.starts_with(TENANT_PREFIX) {
        let mut op = db.operator().await?;
        let found = tokens::use_tenant_token(&mut op, &hash).await?;
        op.commit().await?;
        found.map(|t| (Caller::Tenant(t.tenant), Some(t.expires_at)))
    } else {
        None
    };
    let (caller, expires_at) = found.ok_or(ApiError::Unauthorized)?;
    cache.put(hash, caller, expires_at);
    Ok(caller)
}

/// The request's bearer token, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Several extractors of one request may ask (`Operator`, `TenantAccess`).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let caller = crate::throttle::authenticate_throttled(
            state,
            &parts.headers,
            &parts.extensions,
            token,
        )
        .await?;
        if let Caller::Tenant(tenant) = caller {
            state.api_calls.record(tenant);
        }
        parts.extensions.insert(caller);
        Ok(caller)
    }
}

/// An operator's request: any other caller is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator;

impl Operator {
    /// The check itself, for callers that already hold a [`Caller`] (the dashboard).
    pub fn check(caller: Caller) -> Result<Self, ApiError> {
        match caller {
            Caller::Operator => Ok(Operator),
            Caller::Tenant(_) => Err(ApiError::Forbidden("only an operator token may do this")),
        }
    }

    pub fn caller(self) -> Caller {
        Caller::Operator
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Operator::check(Caller::from_request_parts(parts, state).await?)
    }
}

/// The tenant of the `{id}` path parameter, once the caller may see it: an
/// operator sees every tenant, a tenant token only its own; any other id
/// answers 404, exactly as if the tenant did not exist. Whether the tenant
/// exists is the handler's to find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantAccess {
    pub caller: Caller,
    pub tenant: TenantId,
}

impl TenantAccess {
    /// The check itself, for callers that already hold a [`Caller`] (the dashboard).
    pub fn check(caller: Caller, id: Uuid) -> Result<Self, ApiError> {
        let tenant = TenantId::from_uuid(id);
        if caller.may_see(tenant) {
            Ok(TenantAccess { caller, tenant })
        } else {
            Err(ApiError::NotFound("tenant"))
        }
    }
}

impl FromRequestParts<AppState> for TenantAccess {
    /// A bad `{id}` keeps axum's own rejection (400), as with `Path<Uuid>`.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let axum::extract::Path(id) = axum::extract::Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        TenantAccess::check(caller, id).map_err(IntoResponse::into_response)
    }
}

/// Makes sure the configured operator token is the one live operator token
/// (every other is revoked) and returns it:
/// - `given` (from `POLYBOT_OPERATOR_TOKEN`) is registered if new;
/// - else the token in `file` (the data dir's `operator-token`) is registered;
/// - else a new token is created and written to `file` with mode 0600.
pub async fn ensure_operator_token(
    db: &Db,
    given: Option<&SecretString>,
    file: Option<&Path>,
) -> anyhow::Result<Option<SecretString>> {
    let token = match (given, file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) if path.exists() => {
            SecretString::from(std::fs::read_to_string(path)?.trim().to_owned())
        }
        (None, Some(path)) => {
            let token = new_token(OPERATOR_PREFIX);
            write_private(path, token.expose_secret())?;
            tracing::info!(path = %path.display(), "created the operator token");
            token
        }
        (None, None) => anyhow::bail!(
            "no operator token: set POLYBOT_OPERATOR_TOKEN (a string starting with {OPERATOR_PREFIX}) or give a data dir"
        ),
    };
    if !token.expose_secret().starts_with(OPERATOR_PREFIX) || token.expose_secret().len() < 24 {
        anyhow::bail!(
            "the operator token must start with {OPERATOR_PREFIX} and have at least 24 characters"
        );
    }
    let mut op = db.operator().await?;
    // The configured token is the only one: configuring a new one and
    // restarting is how it is rotated (docs/operators.md).
    let revoked = tokens::install_sole_operator(
        &mut op,
        Uuid::new_v4(),
        &hash_token(token.expose_secret()),
        "operator",
    )
    .await?;
    op.commit().await?;
    if revoked > 0 {
        tracing::info!(
            revoked,
            "revoked the earlier operator token(s): the configured one replaces them"
        );
    }
    Ok(Some(token))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// Creates a token for `tenant` valid until `expires_at`; the plaintext is
/// returned once, only its hash is kept.
pub async fn create_tenant_token(
    tx: &mut polybot_store::TenantTx,
    label: &str,
    expires_at: DateTime<Utc>,
) -> Result<(Uuid, SecretString), DbError> {
    let token = new_token(TENANT_PREFIX);
    let id = Uuid::new_v4();
    tokens::insert_tenant_token(
        tx,
        id,
        &hash_token(token.expose_secret()),
        label,
        expires_at,
    )
    .await?;
    Ok((id, token))
}
