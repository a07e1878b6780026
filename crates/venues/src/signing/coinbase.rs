//! Coinbase Exchange: `CB-ACCESS-SIGN = base64(HMAC-SHA256(base64decode(secret),
//! timestamp ‖ METHOD ‖ requestPath ‖ body))`, timestamp in integer seconds.
//!
//! Whether Exchange signs the query string as part of `requestPath` is
//! unconfirmed (VENUES.md §4); callers pass the path they send, query
//! included, as the legacy clients do.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::AuthHeaders;
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// Coinbase Exchange API key.
#[derive(Debug, Clone)]
pub struct CoinbaseCredentials {
    /// `CB-ACCESS-KEY`.
    pub api_key: SecretString,
    /// Base64 secret.
    pub secret: SecretString,
    /// `CB-ACCESS-PASSPHRASE`.
    pub passphrase: SecretString,
}

/// The `CB-ACCESS-SIGN` value.
pub fn signature(
    secret_b64: &SecretString,
    timestamp: i64,
    method: &str,
    request_path: &str,
    body: &str,
) -> Result<String, VenueError> {
    let key = STANDARD
        .decode(secret_b64.expose_secret().trim())
        .map_err(|_| {
            VenueError::new(
                Api::Coinbase,
                format!("{method} {request_path}"),
                ErrorKind::Signing {
                    detail: "the Coinbase secret is not valid base64".to_owned(),
                },
            )
        })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{timestamp}{method}{request_path}{body}").as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The four `CB-ACCESS-*` headers.
pub fn headers(
    creds: &CoinbaseCredentials,
    timestamp: i64,
    method: &str,
    request_path: &str,
    body: &str,
) -> Result<AuthHeaders, VenueError> {
    let mut headers = AuthHeaders::new();
    headers.push("CB-ACCESS-KEY", creds.api_key.expose_secret());
    headers.push(
        "CB-ACCESS-SIGN",
        signature(&creds.secret, timestamp, method, request_path, body)?,
    );
    headers.push("CB-ACCESS-TIMESTAMP", timestamp.to_string());
    headers.push("CB-ACCESS-PASSPHRASE", creds.passphrase.expose_secret());
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression vectors: computed independently (VENUES.md V4), not published.
    #[test]
    fn coinbase_regression_vector_for_a_get() {
        let secret = SecretString::from("dGVzdC1zZWNyZXQ=");
        assert_eq!(
            signature(&secret, 1700000000, "GET", "/accounts", "").as_deref(),
            Ok("55llONVRVtlryvpPMmBPVSTLWGnNNaVxXwJ2O9tyEoY=")
        );
    }

    #[test]
    fn coinbase_regression_vector_for_a_post_with_body() {
        let creds = CoinbaseCredentials {
            api_key: SecretString::from("key"),
            secret: SecretString::from("dGVzdC1zZWNyZXQ="),
            passphrase: SecretString::from("pass"),
        };
        let headers = headers(
            &creds,
            1700000000,
            "POST",
            "/orders",
            r#"{"price":"1.0","size":"1.0","side":"buy","product_id":"BTC-USD"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            headers.get("CB-ACCESS-SIGN"),
            Some("caZsCc1DNUUZlZYdO6OkiCpMQP5WhgkI1c6wAZ7UvcQ=")
        );
        assert_eq!(headers.get("CB-ACCESS-TIMESTAMP"), Some("1700000000"));
        assert_eq!(headers.get("CB-ACCESS-PASSPHRASE"), Some("pass"));
    }
}
