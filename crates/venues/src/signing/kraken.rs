//! Kraken: `API-Sign = base64(HMAC-SHA512(base64decode(secret),
//! path ‖ SHA256(nonce ‖ postdata)))`, path starting at `/0/private`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};

use super::AuthHeaders;
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// Kraken API key pair.
#[derive(Debug, Clone)]
pub struct KrakenCredentials {
    /// API key, sent as `API-Key`.
    pub api_key: SecretString,
    /// Base64 private key.
    pub private_key: SecretString,
}

/// The `API-Sign` value for a form-encoded POST to `uri_path`.
pub fn api_sign(
    private_key_b64: &SecretString,
    uri_path: &str,
    nonce: u64,
    post_data: &str,
) -> Result<String, VenueError> {
    let key = STANDARD
        .decode(private_key_b64.expose_secret().trim())
        .map_err(|_| {
            VenueError::new(
                Api::Kraken,
                format!("POST {uri_path}"),
                ErrorKind::Signing {
                    detail: "the Kraken private key is not valid base64".to_owned(),
                },
            )
        })?;
    let mut inner = Sha256::new();
    inner.update(nonce.to_string().as_bytes());
    inner.update(post_data.as_bytes());
    let mut mac = Hmac::<Sha512>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(uri_path.as_bytes());
    mac.update(&inner.finalize());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// `API-Key` and `API-Sign` headers.
pub fn headers(
    creds: &KrakenCredentials,
    uri_path: &str,
    nonce: u64,
    post_data: &str,
) -> Result<AuthHeaders, VenueError> {
    let mut headers = AuthHeaders::new();
    headers.push("API-Key", creds.api_key.expose_secret());
    headers.push(
        "API-Sign",
        api_sign(&creds.private_key, uri_path, nonce, post_data)?,
    );
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_published_api_sign_vector() {
        let key = SecretString::from(
            "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
        );
        let sign = api_sign(
            &key,
            "/0/private/AddOrder",
            1616492376594,
            "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
        );
        assert_eq!(
            sign.as_deref(),
            Ok(
                "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
            )
        );
    }

    #[test]
    fn a_key_that_is_not_base64_is_a_signing_error_without_the_key() {
        let key = SecretString::from("not base64 !!! sekrit");
        let err = api_sign(&key, "/0/private/Balance", 1, "nonce=1").unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Signing { .. }));
        let text = err.to_string();
        assert!(text.contains("Kraken"), "{text}");
        assert!(!text.contains("sekrit"), "{text}");
    }
}
