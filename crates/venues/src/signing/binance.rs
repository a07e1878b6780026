//! Binance / Binance US: `hex(HMAC-SHA256(secretKey, query ‖ body))`.
//!
//! The signed string is the query string and the request body concatenated
//! with no separator (VENUES.md V1, "mixed query + body").

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::AuthHeaders;

/// Binance API key pair.
#[derive(Debug, Clone)]
pub struct BinanceCredentials {
    /// API key, sent as `X-MBX-APIKEY`.
    pub api_key: SecretString,
    /// Secret key, used only to compute signatures.
    pub secret_key: SecretString,
}

/// `hex(HMAC-SHA256(secret, query ‖ body))`; either part may be empty.
pub fn signature(secret: &SecretString, query: &str, body: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(query.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Appends `&signature=…` to a query string that already carries `timestamp`.
pub fn signed_query(creds: &BinanceCredentials, query: &str) -> String {
    let sig = signature(&creds.secret_key, query, "");
    if query.is_empty() {
        format!("signature={sig}")
    } else {
        format!("{query}&signature={sig}")
    }
}

/// The `X-MBX-APIKEY` header.
pub fn headers(creds: &BinanceCredentials) -> AuthHeaders {
    let mut headers = AuthHeaders::new();
    headers.push("X-MBX-APIKEY", creds.api_key.expose_secret());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    #[test]
    fn v1_query_string_vector() {
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            signature(&secret(), payload, ""),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // The same payload as a body only signs identically.
        assert_eq!(
            signature(&secret(), "", payload),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }

    #[test]
    fn v1_mixed_query_and_body_are_joined_without_a_separator() {
        assert_eq!(
            signature(
                &secret(),
                "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
            ),
            "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
        );
    }

    #[test]
    fn v1_non_ascii_symbol_vector() {
        let payload = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            signature(&secret(), payload, ""),
            "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
        );
    }

    #[test]
    fn signed_query_appends_the_signature_and_headers_carry_the_key() {
        let creds = BinanceCredentials {
            api_key: SecretString::from(
                "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
            ),
            secret_key: secret(),
        };
        let q = signed_query(
            &creds,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        );
        assert!(q.ends_with(
            "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        ));
        assert_eq!(
            headers(&creds).get("X-MBX-APIKEY"),
            Some("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A")
        );
        assert!(!format!("{creds:?}").contains(SECRET));
    }
}
