//! Alpaca: no signing, the key id and secret travel as plain headers
//! (`APCA-API-KEY-ID`, `APCA-API-SECRET-KEY`), so both are treated as secrets.

use secrecy::{ExposeSecret, SecretString};

use super::AuthHeaders;

/// Alpaca API key (paper and live keys differ).
#[derive(Debug, Clone)]
pub struct AlpacaCredentials {
    /// `APCA-API-KEY-ID`.
    pub key_id: SecretString,
    /// `APCA-API-SECRET-KEY`.
    pub secret_key: SecretString,
}

/// The two Alpaca headers.
pub fn headers(creds: &AlpacaCredentials) -> AuthHeaders {
    let mut headers = AuthHeaders::new();
    headers.push("APCA-API-KEY-ID", creds.key_id.expose_secret());
    headers.push("APCA-API-SECRET-KEY", creds.secret_key.expose_secret());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpaca_headers_carry_both_keys_and_debug_hides_them() {
        let creds = AlpacaCredentials {
            key_id: SecretString::from("PKTEST"),
            secret_key: SecretString::from("topsecretvalue"),
        };
        let headers = headers(&creds);
        assert_eq!(headers.get("APCA-API-KEY-ID"), Some("PKTEST"));
        assert_eq!(headers.get("APCA-API-SECRET-KEY"), Some("topsecretvalue"));
        assert!(!format!("{creds:?} {headers:?}").contains("topsecretvalue"));
    }
}
