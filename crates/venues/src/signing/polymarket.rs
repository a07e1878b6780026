//! Polymarket CLOB authentication.
//!
//! - **L2** (every private CLOB call): `HMAC-SHA256(base64url_decode(secret),
//!   timestamp ‖ METHOD ‖ path ‖ body)`, encoded as URL-safe base64 with the
//!   `=` padding kept. Sign exactly the bytes sent: compact and spaced JSON
//!   give different signatures, and the path excludes the query string.
//! - **L1** (creating or deriving API keys): an EIP-712 `ClobAuth` signature
//!   by the wallet key, domain `{name:"ClobAuthDomain", version:"1", chainId}`.
//!
//! Order signing (EIP-712 `Order` on the CTF exchange) is not here yet.

use std::fmt;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use k256::ecdsa::SigningKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sha3::{Digest, Keccak256};

use super::AuthHeaders;
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// Polygon mainnet chain id.
pub const POLYGON: u64 = 137;
/// Polygon Amoy testnet chain id.
pub const AMOY: u64 = 80002;

/// The message L1 signatures attest.
pub const CLOB_AUTH_MESSAGE: &str = "This message attests that I control the given wallet";

/// Polymarket CLOB API credentials (from `POST /auth/api-key`).
#[derive(Debug, Clone)]
pub struct PolymarketApiCredentials {
    /// The wallet address (`0x…`), sent as `POLY_ADDRESS`; not secret.
    pub address: String,
    /// API key (a UUID).
    pub api_key: SecretString,
    /// Base64url HMAC secret.
    pub secret: SecretString,
    /// Passphrase.
    pub passphrase: SecretString,
}

fn decode_engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

fn encode_engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new().with_encode_padding(true),
    )
}

fn signing_error(endpoint: &str, detail: &str) -> VenueError {
    VenueError::new(
        Api::PolymarketClob,
        endpoint,
        ErrorKind::Signing {
            detail: detail.to_owned(),
        },
    )
}

/// Decodes the secret as the TS client does: either base64 alphabet, and
/// characters outside it stripped.
fn decode_secret(secret: &SecretString) -> Option<Vec<u8>> {
    let cleaned: String = secret
        .expose_secret()
        .chars()
        .filter_map(|c| match c {
            '+' => Some('-'),
            '/' => Some('_'),
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    decode_engine().decode(cleaned).ok()
}

/// The L2 signature over `timestamp ‖ method ‖ path ‖ body`.
pub fn l2_signature(
    secret: &SecretString,
    timestamp: i64,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, VenueError> {
    let key = decode_secret(secret)
        .ok_or_else(|| signing_error(path, "the CLOB API secret is not valid base64"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(l2_message(timestamp, method, path, body).as_bytes());
    Ok(encode_engine().encode(mac.finalize().into_bytes()))
}

/// The exact string L2 signs. `path` must not carry the query string.
pub fn l2_message(timestamp: i64, method: &str, path: &str, body: Option<&str>) -> String {
    let path = path.split('?').next().unwrap_or(path);
    format!("{timestamp}{method}{path}{}", body.unwrap_or(""))
}

/// The five L2 headers.
pub fn l2_headers(
    creds: &PolymarketApiCredentials,
    timestamp: i64,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<AuthHeaders, VenueError> {
    let mut headers = AuthHeaders::new();
    headers.push("POLY_ADDRESS", creds.address.clone());
    headers.push(
        "POLY_SIGNATURE",
        l2_signature(&creds.secret, timestamp, method, path, body)?,
    );
    headers.push("POLY_TIMESTAMP", timestamp.to_string());
    headers.push("POLY_API_KEY", creds.api_key.expose_secret());
    headers.push("POLY_PASSPHRASE", creds.passphrase.expose_secret());
    Ok(headers)
}

/// A wallet key that signs L1 (EIP-712 `ClobAuth`) messages.
pub struct L1Signer {
    key: SigningKey,
    address: [u8; 20],
}

impl fmt::Debug for L1Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L1Signer")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

fn u256(value: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&value.to_be_bytes());
    out
}

impl L1Signer {
    /// From a hex private key, with or without `0x`.
    pub fn from_private_key(key: &SecretString) -> Result<Self, VenueError> {
        let text = key.expose_secret().trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(text)
            .map_err(|_| signing_error("L1", "the wallet private key is not hex"))?;
        let key = SigningKey::from_slice(&bytes)
            .map_err(|_| signing_error("L1", "the wallet private key is not a secp256k1 key"))?;
        let point = key.verifying_key().to_encoded_point(false);
        let hash = keccak(&point.as_bytes()[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Ok(Self { key, address })
    }

    /// The wallet address, lower-case `0x…`.
    pub fn address(&self) -> String {
        format!("0x{}", hex::encode(self.address))
    }

    /// The EIP-712 digest of `ClobAuth{address, timestamp, nonce, message}`.
    pub fn clob_auth_digest(&self, chain_id: u64, timestamp: &str, nonce: u64) -> [u8; 32] {
        let domain_type = keccak(b"EIP712Domain(string name,string version,uint256 chainId)");
        let mut domain = Vec::with_capacity(128);
        domain.extend_from_slice(&domain_type);
        domain.extend_from_slice(&keccak(b"ClobAuthDomain"));
        domain.extend_from_slice(&keccak(b"1"));
        domain.extend_from_slice(&u256(chain_id));
        let domain_separator = keccak(&domain);

        let struct_type =
            keccak(b"ClobAuth(address address,string timestamp,uint256 nonce,string message)");
        let mut data = Vec::with_capacity(160);
        data.extend_from_slice(&struct_type);
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(&self.address);
        data.extend_from_slice(&keccak(timestamp.as_bytes()));
        data.extend_from_slice(&u256(nonce));
        data.extend_from_slice(&keccak(CLOB_AUTH_MESSAGE.as_bytes()));
        let struct_hash = keccak(&data);

        let mut message = Vec::with_capacity(66);
        message.extend_from_slice(&[0x19, 0x01]);
        message.extend_from_slice(&domain_separator);
        message.extend_from_slice(&struct_hash);
        keccak(&message)
    }

    /// The `0x`-hex `r ‖ s ‖ v` signature (v = 27 or 28).
    pub fn sign_clob_auth(
        &self,
        chain_id: u64,
        timestamp: &str,
        nonce: u64,
    ) -> Result<String, VenueError> {
        let digest = self.clob_auth_digest(chain_id, timestamp, nonce);
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(&digest)
            .map_err(|_| signing_error("L1", "secp256k1 signing failed"))?;
        let mut out = signature.to_bytes().to_vec();
        out.push(27 + recovery.to_byte());
        Ok(format!("0x{}", hex::encode(out)))
    }

    /// `POLY_ADDRESS`, `POLY_SIGNATURE`, `POLY_TIMESTAMP`, `POLY_NONCE`.
    pub fn l1_headers(
        &self,
        chain_id: u64,
        timestamp: i64,
        nonce: u64,
    ) -> Result<AuthHeaders, VenueError> {
        let ts = timestamp.to_string();
        let mut headers = AuthHeaders::new();
        headers.push("POLY_ADDRESS", self.address());
        headers.push("POLY_SIGNATURE", self.sign_clob_auth(chain_id, &ts, nonce)?);
        headers.push("POLY_TIMESTAMP", ts);
        headers.push("POLY_NONCE", nonce.to_string());
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn sign(secret: &str, ts: i64, method: &str, path: &str, body: Option<&str>) -> String {
        l2_signature(&SecretString::from(secret), ts, method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn v3_l2_py_and_ts_sdk_vector_with_spaced_json() {
        assert_eq!(
            sign(
                SECRET,
                1000000,
                "test-sign",
                "/orders",
                Some(r#"{"hash": "0x123"}"#)
            ),
            "ZwAdJKvoYRlEKDkNMwd5BuwNNtg93kNaR_oU2HrfVvc="
        );
    }

    #[test]
    fn v3_l2_rust_sdk_vector_with_compact_json() {
        assert_eq!(
            l2_message(1000000, "test-sign", "/orders", Some(r#"{"hash":"0x123"}"#)),
            r#"1000000test-sign/orders{"hash":"0x123"}"#
        );
        assert_eq!(
            sign(
                SECRET,
                1000000,
                "test-sign",
                "/orders",
                Some(r#"{"hash":"0x123"}"#)
            ),
            "4gJVbox-R6XlDK4nlaicig0_ANVL1qdcahiL8CXfXLM="
        );
    }

    #[test]
    fn v3_l2_headers_for_a_get_without_body() {
        let creds = PolymarketApiCredentials {
            address: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".to_owned(),
            api_key: SecretString::from("00000000-0000-0000-0000-000000000000"),
            secret: SecretString::from(SECRET),
            passphrase: SecretString::from(
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
        };
        let headers = l2_headers(&creds, 1, "GET", "/", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            headers.get("POLY_SIGNATURE"),
            Some("eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4=")
        );
        assert_eq!(headers.get("POLY_TIMESTAMP"), Some("1"));
        assert_eq!(
            headers.get("POLY_API_KEY"),
            Some("00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            headers.get("POLY_PASSPHRASE"),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        );
        assert_eq!(
            headers.get("POLY_ADDRESS"),
            Some("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
        );
    }

    #[test]
    fn v3_l2_message_for_a_post_and_the_query_string_is_not_signed() {
        assert_eq!(
            l2_message(1, "POST", "/path", Some(r#"{"foo":"bar"}"#)),
            r#"1POST/path{"foo":"bar"}"#
        );
        assert_eq!(l2_message(1, "GET", "/book?token_id=1", None), "1GET/book");
    }

    #[test]
    fn v3_l2_base64url_and_standard_secrets_sign_alike_and_junk_is_stripped() {
        let url_safe = sign(
            "--_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            1000000,
            "test-sign",
            "/orders",
            Some(r#"{"hash": "0x123"}"#),
        );
        let standard = sign(
            "++/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            1000000,
            "test-sign",
            "/orders",
            Some(r#"{"hash": "0x123"}"#),
        );
        assert_eq!(url_safe, standard);
        assert_ne!(url_safe, "ZwAdJKvoYRlEKDkNMwd5BuwNNtg93kNaR_oU2HrfVvc=");
        assert_eq!(
            sign(
                "AAAAAAAAA^^AAAAAAAA<>AAAAA||AAAAAAAAAAAAAAAAAAAAA=",
                1000000,
                "test-sign",
                "/orders",
                Some(r#"{"hash": "0x123"}"#)
            ),
            "ZwAdJKvoYRlEKDkNMwd5BuwNNtg93kNaR_oU2HrfVvc="
        );
    }

    #[test]
    fn v3_l1_eip712_clob_auth_vector() {
        let signer = L1Signer::from_private_key(&SecretString::from(
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            signer.address(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        assert_eq!(
            signer
                .sign_clob_auth(AMOY, "10000000", 23)
                .unwrap_or_else(|e| panic!("{e}")),
            "0xf62319a987514da40e57e2f4d7529f7bac38f0355bd88bb5adbb3768d80de6c1682518e0af677d5260366425f4361e7b70c25ae232aff0ab2331e2b164a1aedc1b"
        );
        let headers = signer
            .l1_headers(AMOY, 10000000, 23)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(headers.get("POLY_NONCE"), Some("23"));
        assert_eq!(headers.get("POLY_TIMESTAMP"), Some("10000000"));
        let debug = format!("{signer:?}");
        assert!(!debug.contains("ac0974bec39a17e3"), "{debug}");
    }
}
