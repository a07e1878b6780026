//! Kalshi: `KALSHI-ACCESS-SIGNATURE = base64(RSA-PSS-SHA256(timestamp_ms ‖
//! METHOD ‖ path))`, MGF1-SHA256, salt length 32, where the path includes
//! `/trade-api/v2` and excludes the query string. PSS is salted, so tests
//! verify with the public key instead of comparing bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PSS_SHA256, RsaKeyPair};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use secrecy::{ExposeSecret, SecretString};

use super::AuthHeaders;
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// A Kalshi API key: its id and RSA private key. Signing is ring's RSA-PSS
/// (constant-time, blinded), with SHA-256, MGF1-SHA256 and a 32-byte salt,
/// as Kalshi asks.
pub struct KalshiSigner {
    key_id: String,
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for KalshiSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KalshiSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn key_error(detail: &str) -> VenueError {
    VenueError::new(
        Api::Kalshi,
        "",
        ErrorKind::Signing {
            detail: detail.to_owned(),
        },
    )
}

impl KalshiSigner {
    /// From the key id and a PEM private key (PKCS#8 or PKCS#1).
    pub fn from_pem(key_id: impl Into<String>, pem: &SecretString) -> Result<Self, VenueError> {
        let pem = pem.expose_secret().trim();
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| key_error("the Kalshi private key is not a PKCS#8 or PKCS#1 RSA PEM"))?;
        // The DER is zeroized on drop; ring keeps its own copy of the key.
        let der = key
            .to_pkcs1_der()
            .map_err(|_| key_error("the Kalshi private key could not be encoded"))?;
        let key = RsaKeyPair::from_der(der.as_bytes()).map_err(|e| {
            key_error(&format!(
                "the Kalshi private key is not usable for RSA-PSS signing ({e}; a 2048- to 8192-bit RSA key is)"
            ))
        })?;
        Ok(Self {
            key_id: key_id.into(),
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The exact string signed: `timestamp_ms ‖ METHOD ‖ path-without-query`.
    pub fn message(timestamp_ms: i64, method: &str, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        format!("{timestamp_ms}{method}{path}")
    }

    /// Base64 RSA-PSS signature of [`Self::message`].
    pub fn sign(&self, timestamp_ms: i64, method: &str, path: &str) -> String {
        let message = Self::message(timestamp_ms, method, path);
        let mut signature = vec![0; self.key.public().modulus_len()];
        // ring fails only when the system's random source does (the salt):
        // nothing safe can be sent then, and no request goes out unsigned
        // (the `rsa` crate's signer panicked in the same case).
        if let Err(e) = self.key.sign(
            &RSA_PSS_SHA256,
            &self.rng,
            message.as_bytes(),
            &mut signature,
        ) {
            panic!("RSA-PSS signing failed (the system's random source): {e}");
        }
        STANDARD.encode(signature)
    }

    /// `KALSHI-ACCESS-KEY`, `KALSHI-ACCESS-TIMESTAMP`, `KALSHI-ACCESS-SIGNATURE`.
    pub fn headers(&self, timestamp_ms: i64, method: &str, path: &str) -> AuthHeaders {
        let mut headers = AuthHeaders::new();
        headers.push("KALSHI-ACCESS-KEY", self.key_id.clone());
        headers.push("KALSHI-ACCESS-TIMESTAMP", timestamp_ms.to_string());
        headers.push(
            "KALSHI-ACCESS-SIGNATURE",
            self.sign(timestamp_ms, method, path),
        );
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::pss::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    use sha2::Sha256;

    const PKCS8: &str = include_str!("../../tests/fixtures/kalshi_test_key_pkcs8.pem");
    const PKCS1: &str = include_str!("../../tests/fixtures/kalshi_test_key_pkcs1.pem");
    const PUBLIC: &str = include_str!("../../tests/fixtures/kalshi_test_key_pub.pem");

    fn verify(message: &str, signature_b64: &str) -> bool {
        let public = RsaPublicKey::from_public_key_pem(PUBLIC)
            .unwrap_or_else(|e| panic!("test public key: {e}"));
        let verifier = VerifyingKey::<Sha256>::new(public);
        let Ok(bytes) = STANDARD.decode(signature_b64) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        verifier.verify(message.as_bytes(), &signature).is_ok()
    }

    #[test]
    fn the_message_is_the_documented_shape_without_the_query() {
        assert_eq!(
            KalshiSigner::message(1703123456789, "GET", "/trade-api/v2/portfolio/balance"),
            "1703123456789GET/trade-api/v2/portfolio/balance"
        );
        assert_eq!(
            KalshiSigner::message(1, "GET", "/trade-api/v2/portfolio/orders?limit=5"),
            "1GET/trade-api/v2/portfolio/orders"
        );
    }

    #[test]
    fn signatures_from_either_pem_format_verify_with_the_public_key() {
        for pem in [PKCS8, PKCS1] {
            let signer = KalshiSigner::from_pem("key-id-1", &SecretString::from(pem))
                .unwrap_or_else(|e| panic!("{e}"));
            let headers = signer.headers(1703123456789, "GET", "/trade-api/v2/portfolio/balance");
            assert_eq!(headers.get("KALSHI-ACCESS-KEY"), Some("key-id-1"));
            assert_eq!(
                headers.get("KALSHI-ACCESS-TIMESTAMP"),
                Some("1703123456789")
            );
            let signature = headers.get("KALSHI-ACCESS-SIGNATURE").unwrap_or_default();
            assert!(verify(
                "1703123456789GET/trade-api/v2/portfolio/balance",
                signature
            ));
            // A different message does not verify: the signature covers the path.
            assert!(!verify(
                "1703123456789GET/trade-api/v2/portfolio/orders",
                signature
            ));
        }
    }

    // Kalshi's PSS parameters: SHA-256, MGF1-SHA256, a salt as long as the
    // digest (32 bytes). A verifier expecting any other salt length refuses
    // the signature, so this pins the length, not just the scheme.
    #[test]
    fn the_salt_is_as_long_as_the_sha256_digest() {
        let signer = KalshiSigner::from_pem("id", &SecretString::from(PKCS8))
            .unwrap_or_else(|e| panic!("{e}"));
        let message = "1703123456789POST/trade-api/v2/portfolio/orders";
        let signature = signer.sign(1703123456789, "POST", "/trade-api/v2/portfolio/orders");
        let bytes = STANDARD.decode(&signature).unwrap_or_default();
        // A 2048-bit key signs 256 bytes.
        assert_eq!(bytes.len(), 256);
        let signature = Signature::try_from(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let public = RsaPublicKey::from_public_key_pem(PUBLIC)
            .unwrap_or_else(|e| panic!("test public key: {e}"));
        for (salt_len, verifies) in [(32, true), (20, false), (0, false), (64, false)] {
            let verifier = VerifyingKey::<Sha256>::new_with_salt_len(public.clone(), salt_len);
            assert_eq!(
                verifier.verify(message.as_bytes(), &signature).is_ok(),
                verifies,
                "salt length {salt_len}"
            );
        }
        // Salted: signing twice gives two different signatures, both valid.
        let again = signer.sign(1703123456789, "POST", "/trade-api/v2/portfolio/orders");
        assert_ne!(STANDARD.encode(&bytes), again);
        assert!(verify(message, &again));
    }

    #[test]
    fn a_bad_pem_is_a_signing_error_that_does_not_echo_the_key() {
        let err = KalshiSigner::from_pem("id", &SecretString::from("-----BEGIN nonsense sekrit"))
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Signing { .. }));
        assert!(!err.to_string().contains("sekrit"));
        assert!(err.to_string().contains("Kalshi"));
    }
}
