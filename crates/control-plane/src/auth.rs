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

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
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
/// How long a token lookup is cached; a revoked token stops working within it.
const CACHE_TTL: Duration = Duration::from_secs(15);

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

/// Token hash → who it is and when that was looked up.
type CacheMap = HashMap<Vec<u8>, (Caller, Instant)>;

/// Cached token lookups, so that a request costs no extra database round trip.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<CacheMap>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = self.entries.lock().ok()?;
        let (caller, at) = entries.get(hash)?;
        (at.elapsed() < CACHE_TTL).then_some(*caller)
    }

    fn put(&self, hash: Vec<u8>, caller: Caller) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            entries.insert(hash, (caller, Instant::now()));
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
    let caller = if token.starts_with(OPERATOR_PREFIX) {
        let mut op = db.operator().await?;
        let found = tokens::is_operator(&mut op, &hash).await?;
        op.commit().await?;
        found.then_some(Caller::Operator)
    } else if token.starts_with(TENANT_PREFIX) {
        let mut op = db.operator().await?;
        let found = tokens::tenant_for(&mut op, &hash).await?;
        op.commit().await?;
        found.map(Caller::Tenant)
    } else {
        None
    };
    let caller = caller.ok_or(ApiError::Unauthorized)?;
    cache.put(hash, caller);
    Ok(caller)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Several extractors of one request may ask (`Operator`, `TenantAccess`).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let caller = crate::throttle::authenticate_throttled(
            state,
            &parts.headers,
            &parts.extensions,
            token,
        )
        .await?;
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

/// Makes sure an operator token exists and returns it when this call created
/// or was given it:
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
    tokens::register_operator(
        &mut op,
        Uuid::new_v4(),
        &hash_token(token.expose_secret()),
        "operator",
    )
    .await?;
    op.commit().await?;
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

/// Creates a token for `tenant`; the plaintext is returned once, only its hash is kept.
pub async fn create_tenant_token(
    tx: &mut polybot_store::TenantTx,
    label: &str,
) -> Result<(Uuid, SecretString), DbError> {
    let token = new_token(TENANT_PREFIX);
    let id = Uuid::new_v4();
    tokens::insert_tenant_token(tx, id, &hash_token(token.expose_secret()), label).await?;
    Ok((id, token))
}
