//! Worker claims: how a worker proves its tenant to the database when it
//! logs in with the fleet's shared worker login.
//!
//! Workers reach PostgreSQL through a transaction-mode pooler (PgBouncer), so
//! they cannot each log in as a role of their own (that would be a server
//! pool per tenant). They share one login, a member of `polybot_worker`, and
//! every transaction a worker opens sets its claim first
//! (`set_config('polybot.worker_claim', …, true)`). The policy function
//! `polybot.current_tenant()` verifies it (migration 0020):
//!
//! ```text
//! v1.<tenant uuid>.<expiry, Unix seconds>.<HMAC-SHA256, 64 hex>
//! ```
//!
//! The HMAC key is the tenant's own, readable only by the table owner. The
//! control plane mints a claim at onboarding ([`mint_in`]) and hands it to
//! the worker inside its `DATABASE_URL` (the `polybot_claim` query
//! parameter, see [`split_claim_from_url`]); offboarding revokes every claim
//! of the tenant ([`revoke_in`]). A forged, expired, revoked or other
//! tenant's claim binds no tenant, and the worker sees no rows.
//!
//! What does not live here: the HMAC itself (computed by the database, which
//! alone holds the keys).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::TenantId;

use crate::{DbError, OperatorTx, TenantTx};

/// The query parameter of a worker's `DATABASE_URL` that carries its claim.
pub const URL_PARAMETER: &str = "polybot_claim";

/// How long a minted claim is valid unless the caller says otherwise: the
/// control plane mints a fresh one whenever it writes the tenant's secret.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A claim as the worker holds it. Only built from well-formed text, so it
/// can be sent inside the statement that opens a transaction. Its `Debug`
/// hides the MAC, which is what makes it a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerClaim {
    text: String,
    tenant: TenantId,
    expires_at: DateTime<Utc>,
}

/// Why a text is not a claim. Never quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "a worker claim has the form v1.<tenant uuid>.<expiry in Unix seconds>.<64 hex digits>"
    )]
    Malformed,
}

impl WorkerClaim {
    /// The tenant it claims (not yet verified: only the database can).
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// When the database stops honouring it.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The claim's text, to set in a transaction. A credential: never log it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }
}

impl FromStr for WorkerClaim {
    type Err = ClaimError;

    fn from_str(text: &str) -> Result<Self, ClaimError> {
        let mut parts = text.split('.');
        let (Some("v1"), Some(tenant), Some(expiry), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ClaimError::Malformed);
        };
        // The database accepts only the lowercase, hyphenated form.
        let tenant_ok = tenant.len() == 36
            && tenant
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-');
        let uuid = uuid::Uuid::parse_str(tenant).map_err(|_| ClaimError::Malformed)?;
        let expiry_ok =
            (1..=12).contains(&expiry.len()) && expiry.bytes().all(|b| b.is_ascii_digit());
        let mac_ok = mac.len() == 64
            && mac
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !(tenant_ok && expiry_ok && mac_ok) || uuid.hyphenated().to_string() != tenant {
            return Err(ClaimError::Malformed);
        }
        let seconds: i64 = expiry.parse().map_err(|_| ClaimError::Malformed)?;
        let expires_at = DateTime::from_timestamp(seconds, 0).ok_or(ClaimError::Malformed)?;
        Ok(Self {
            text: text.to_owned(),
            tenant: TenantId::from_uuid(uuid),
            expires_at,
        })
    }
}

impl fmt::Debug for WorkerClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerClaim")
            .field("tenant", &self.tenant)
            .field("expires_at", &self.expires_at)
            .field("mac", &"[REDACTED]")
            .finish()
    }
}

/// Takes the claim out of a worker's `DATABASE_URL`: returns the URL
/// without it (what the driver connects with) and the claim, if there was
/// one. A URL that does not parse is returned as it is, for the caller's own
/// error; a claim that is there but malformed is an error.
pub fn split_claim_from_url(url: &str) -> Result<(String, Option<WorkerClaim>), ClaimError> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok((url.to_owned(), None));
    };
    let mut claim = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| {
            if key == URL_PARAMETER {
                claim = Some(value.into_owned());
                None
            } else {
                Some((key.into_owned(), value.into_owned()))
            }
        })
        .collect();
    let Some(claim) = claim else {
        return Ok((url.to_owned(), None));
    };
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), Some(claim.parse()?)))
}

/// Mints a claim for the transaction's tenant, valid for `valid_for`; the
/// tenant's key is created on first use. Control plane only.
pub async fn mint_in(tx: &mut TenantTx, valid_for: Duration) -> Result<WorkerClaim, DbError> {
    let tenant = tx.tenant();
    let seconds = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX);
    let text: String = sqlx::query_scalar(
        "SELECT polybot.mint_worker_claim($1, $2::bigint * interval '1 second')",
    )
    .bind(tenant.as_uuid())
    .bind(seconds)
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("minting the worker's database claim"))?;
    text.parse().map_err(|e: ClaimError| DbError::Query {
        context: "minting the worker's database claim",
        source: sqlx::Error::Protocol(e.to_string()),
    })
}

/// Revokes every claim of the transaction's tenant (its key is deleted): the
/// next statement of a worker holding one sees no rows. False if it had none.
pub async fn revoke_in(tx: &mut TenantTx) -> Result<bool, DbError> {
    let tenant = tx.tenant();
    sqlx::query_scalar("SELECT polybot.revoke_worker_claims($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("revoking the worker's database claims"))
}

/// The tenants whose last minted claim expires within `within`, soonest
/// first, at most `max`: what the control plane renews. Control plane only.
pub async fn expiring(
    op: &mut OperatorTx,
    within: Duration,
    max: u32,
) -> Result<Vec<TenantId>, DbError> {
    let seconds = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT polybot.worker_claims_expiring($1::bigint * interval '1 second', $2)",
    )
    .bind(seconds)
    .bind(i32::try_from(max).unwrap_or(i32::MAX))
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("listing the worker claims to renew"))?;
    Ok(ids.into_iter().map(TenantId::from_uuid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn claim_text(tenant: &str) -> String {
        format!("v1.{tenant}.1893456000.{MAC}")
    }

    #[test]
    fn a_well_formed_claim_names_its_tenant_and_expiry() {
        let tenant = TenantId::new();
        let claim: WorkerClaim = claim_text(&tenant.to_string()).parse().unwrap();
        assert_eq!(claim.tenant(), tenant);
        assert_eq!(claim.expires_at().timestamp(), 1_893_456_000);
        assert_eq!(claim.expose_secret(), claim_text(&tenant.to_string()));
    }

    #[test]
    fn anything_that_could_break_out_of_the_statement_is_refused() {
        let tenant = TenantId::new().to_string();
        for text in [
            String::new(),
            format!("v2.{tenant}.1.{MAC}"),
            format!("v1.{}.1.{MAC}", tenant.to_uppercase()),
            format!("v1.{}.1.{MAC}", tenant.replace('-', "")),
            format!("v1.{tenant}.1.{MAC}.extra"),
            format!("v1.{tenant}.-1.{MAC}"),
            format!("v1.{tenant}.1234567890123.{MAC}"),
            format!("v1.{tenant}.1.{}", &MAC[..63]),
            format!("v1.{tenant}.1.{}'", &MAC[..63]),
            format!("v1.{tenant}.1.{}", MAC.to_uppercase()),
            format!("v1.{tenant}'); DROP TABLE trades; --.1.{MAC}"),
        ] {
            assert_eq!(
                text.parse::<WorkerClaim>(),
                Err(ClaimError::Malformed),
                "{text}"
            );
        }
    }

    #[test]
    fn the_debug_form_hides_the_mac() {
        let claim: WorkerClaim = claim_text(&TenantId::new().to_string()).parse().unwrap();
        let shown = format!("{claim:?}");
        assert!(!shown.contains(MAC), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn the_claim_is_taken_out_of_the_url_and_the_rest_is_kept() {
        let tenant = TenantId::new().to_string();
        let url = format!(
            "postgres://w:pw@pooler:6432/polybot?sslmode=require&polybot_claim={}",
            claim_text(&tenant)
        );
        let (rest, claim) = split_claim_from_url(&url).unwrap();
        assert_eq!(rest, "postgres://w:pw@pooler:6432/polybot?sslmode=require");
        assert_eq!(claim.unwrap().expose_secret(), claim_text(&tenant));

        let only = format!("postgres://w@h/db?polybot_claim={}", claim_text(&tenant));
        assert_eq!(split_claim_from_url(&only).unwrap().0, "postgres://w@h/db");

        let none = "postgres://polybot_t_x:pw@db/polybot";
        let (rest, claim) = split_claim_from_url(none).unwrap();
        assert_eq!((rest.as_str(), claim), (none, None));

        let bad = "postgres://w@h/db?polybot_claim=v1.nope";
        assert_eq!(split_claim_from_url(bad), Err(ClaimError::Malformed));
    }
}
