//! Exchange keys: accepted at onboarding, validated, stored as a secret, and
//! afterwards only ever shown as a fingerprint keyed with the deployment's
//! [`FingerprintKey`].
//!
//! Key material lives in [`SecretString`]s: it never appears in `Debug`, in
//! error messages (validation names the field and the rule, never the value)
//! or in API responses.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::validation::{FieldError, field_path, unknown_field};

/// The deployment's key for fingerprints of secrets (exchange keys, alert
/// channel secrets): HMAC-SHA256 under it, so that a fingerprint shown by
/// the API cannot be brute-forced back to a weak secret without the key, and
/// the same secret has unrelated fingerprints in two deployments. Derived
/// from the master key (`polybot_secrets::local::MasterKey::fingerprint_key`),
/// so it is as stable as that key.
pub struct FingerprintKey(SecretBox<[u8; 32]>);

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey([REDACTED])")
    }
}

impl FingerprintKey {
    /// How the fingerprints this key makes begin.
    pub const PREFIX: &'static str = "hmac-sha256:";
    /// Hex digits kept of the MAC: 128 bits, beyond guessing or collision.
    pub const HEX_DIGITS: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// `hmac-sha256:` and the first 32 hex digits of the MAC over `parts`,
    /// each preceded by its length (so no two lists of parts collide).
    pub fn fingerprint<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("{}{}", Self::PREFIX, &digest[..Self::HEX_DIGITS])
    }
}

/// The JSON path of the keys in an onboarding request.
pub const KEYS_PATH: &str = "exchange_keys";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A secp256k1 private key: 64 hex digits, `0x` optional.
    EvmPrivateKey,
    /// A PEM-encoded RSA private key (PKCS#1 or PKCS#8).
    RsaPem,
    /// Standard or URL-safe base64.
    Base64,
    /// A token without whitespace.
    Token,
}

struct FieldSpec {
    name: &'static str,
    required: bool,
    format: Format,
}

const fn f(name: &'static str, required: bool, format: Format) -> FieldSpec {
    FieldSpec {
        name,
        required,
        format,
    }
}

/// Each venue and the fields its keys have.
const VENUES: &[(&str, &[FieldSpec])] = &[
    (
        "polymarket",
        &[
            f("private_key", true, Format::EvmPrivateKey),
            f("api_key", false, Format::Token),
            f("secret", false, Format::Base64),
            f("passphrase", false, Format::Token),
        ],
    ),
    (
        "kalshi",
        &[
            f("key_id", true, Format::Token),
            f("private_key_pem", true, Format::RsaPem),
        ],
    ),
    (
        "binance_us",
        &[
            f("api_key", true, Format::Token),
            f("secret_key", true, Format::Token),
        ],
    ),
    (
        "coinbase",
        &[
            f("api_key", true, Format::Token),
            f("secret", true, Format::Base64),
            f("passphrase", true, Format::Token),
        ],
    ),
    (
        "kraken",
        &[
            f("api_key", true, Format::Token),
            f("private_key", true, Format::Base64),
        ],
    ),
    (
        "alpaca",
        &[
            f("key_id", true, Format::Token),
            f("secret_key", true, Format::Token),
        ],
    ),
    ("newsapi", &[f("api_key", true, Format::Token)]),
    (
        "ibkr",
        &[
            f("username", true, Format::Token),
            f("password", true, Format::Token),
        ],
    ),
];

/// The venues keys can be given for.
pub fn venue_names() -> impl Iterator<Item = &'static str> {
    VENUES.iter().map(|(v, _)| *v)
}

/// Each venue's key fields as forms ask for them: (field, required, multi-line).
pub fn venue_key_fields() -> impl Iterator<Item = (&'static str, Vec<(&'static str, bool, bool)>)> {
    VENUES.iter().map(|(venue, specs)| {
        let fields = specs
            .iter()
            .map(|s| (s.name, s.required, s.format == Format::RsaPem))
            .collect();
        (*venue, fields)
    })
}

/// A tenant's exchange keys: venue → field → secret value.
#[derive(Clone, Default)]
pub struct ExchangeKeys {
    venues: BTreeMap<&'static str, BTreeMap<&'static str, SecretString>>,
}

impl fmt::Debug for ExchangeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (venue, fields) in &self.venues {
            map.entry(venue, &fields.keys().collect::<Vec<_>>());
        }
        map.finish()
    }
}

impl ExchangeKeys {
    pub fn is_empty(&self) -> bool {
        self.venues.is_empty()
    }

    /// The venues keys were given for.
    pub fn venues(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.venues.keys().copied()
    }

    /// One key field, e.g. `get("kalshi", "key_id")`.
    pub fn get(&self, venue: &str, field: &str) -> Option<&SecretString> {
        self.venues.get(venue)?.get(field)
    }

    /// A fingerprint per venue, keyed ([`FingerprintKey::fingerprint`] over
    /// the venue and its fields' names and values). It tells keys apart
    /// without revealing them.
    pub fn fingerprints(&self, key: &FingerprintKey) -> BTreeMap<&'static str, String> {
        self.venues
            .iter()
            .map(|(venue, fields)| {
                let mut parts: Vec<&[u8]> = vec![venue.as_bytes()];
                for (name, value) in fields {
                    parts.push(name.as_bytes());
                    parts.push(value.expose_secret().as_bytes());
                }
                (*venue, key.fingerprint(parts))
            })
            .collect()
    }

    /// The plaintext JSON `{venue: {field: value}}`, for the secret store only.
    pub fn to_secret_json(&self) -> SecretString {
        let mut root = Map::new();
        for (venue, fields) in &self.venues {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.expose_secret().to_owned())))
                .collect();
            root.insert((*venue).to_owned(), Value::Object(obj));
        }
        SecretString::from(Value::Object(root).to_string())
    }

    /// Reads what [`to_secret_json`](Self::to_secret_json) wrote (or an API
    /// request's `exchange_keys`), validating every field.
    pub fn from_secret_json(json: &SecretString) -> Result<Self, Vec<FieldError>> {
        let value: Value = serde_json::from_str(json.expose_secret())
            .map_err(|_| vec![FieldError::new(KEYS_PATH, "is not valid JSON")])?;
        parse_exchange_keys(&value)
    }
}

/// Parses and validates an `exchange_keys` object, reporting every bad field.
/// Messages name the field and the rule, never the value.
pub fn parse_exchange_keys(value: &Value) -> Result<ExchangeKeys, Vec<FieldError>> {
    let Value::Object(given) = value else {
        return Err(vec![FieldError::new(
            KEYS_PATH,
            "expected an object keyed by venue",
        )]);
    };
    let names: Vec<&str> = VENUES.iter().map(|(v, _)| *v).collect();
    let mut keys = ExchangeKeys::default();
    let mut errors = Vec::new();
    for (venue, fields) in given {
        let vpath = field_path(KEYS_PATH, venue);
        let Some((venue, specs)) = VENUES.iter().find(|(v, _)| v == venue) else {
            let mut err = unknown_field(&vpath, venue, &names);
            err.message = err.message.replacen("unknown field", "unknown venue", 1);
            errors.push(err);
            continue;
        };
        if fields.is_null() {
            continue;
        }
        let Value::Object(fields) = fields else {
            errors.push(FieldError::new(vpath, "expected an object of key fields"));
            continue;
        };
        let field_names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        let mut parsed = BTreeMap::new();
        for (name, v) in fields {
            let fpath = field_path(&vpath, name);
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                errors.push(unknown_field(&fpath, name, &field_names));
                continue;
            };
            let Value::String(text) = v else {
                errors.push(FieldError::new(fpath, "expected a string"));
                continue;
            };
            match check_format(spec.format, text) {
                Ok(()) => {
                    parsed.insert(spec.name, SecretString::from(text.clone()));
                }
                Err(rule) => errors.push(FieldError::new(fpath, rule)),
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !fields.contains_key(spec.name) {
                errors.push(FieldError::new(
                    field_path(&vpath, spec.name),
                    "is required for this venue",
                ));
            }
        }
        if *venue == "polymarket" {
            let api: Vec<bool> = ["api_key", "secret", "passphrase"]
                .iter()
                .map(|n| fields.contains_key(*n))
                .collect();
            if api.iter().any(|b| *b) && !api.iter().all(|b| *b) {
                errors.push(FieldError::new(
                    vpath.clone(),
                    "api_key, secret and passphrase go together: give all three or none (they can be derived from private_key)",
                ));
            }
        }
        if !parsed.is_empty() {
            keys.venues.insert(venue, parsed);
        }
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

fn check_format(format: Format, text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        return Err("must not be empty");
    }
    if text.len() > 16_384 {
        return Err("is too long (16 KiB at most)");
    }
    match format {
        Format::Token => {
            if text.chars().any(char::is_whitespace) {
                return Err("must not contain whitespace");
            }
        }
        Format::EvmPrivateKey => {
            let hex = text.strip_prefix("0x").unwrap_or(text);
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("must be a private key of 64 hex digits (0x optional)");
            }
        }
        Format::Base64 => {
            if decode_base64(text).is_none() {
                return Err("must be base64");
            }
        }
        Format::RsaPem => check_pem(text)?,
    }
    Ok(())
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(text.trim()).ok())
}

fn check_pem(text: &str) -> Result<(), &'static str> {
    const MALFORMED: &str = "must be a PEM-encoded RSA private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)";
    let text = text.trim();
    let (begin, end) = if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        ("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----")
    } else if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        (
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
        )
    } else {
        return Err(MALFORMED);
    };
    let Some(body) = text
        .strip_prefix(begin)
        .and_then(|rest| rest.strip_suffix(end))
    else {
        return Err(MALFORMED);
    };
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(body) {
        // A DER SEQUENCE of a plausible size for a 1024-bit key or larger.
        Ok(der) if der.len() >= 600 && der.first() == Some(&0x30) => Ok(()),
        _ => Err(MALFORMED),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PK: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    #[test]
    fn valid_keys_parse_and_fingerprint_without_revealing_values() {
        let keys = parse_exchange_keys(&json!({
            "polymarket": {"private_key": PK},
            "binance_us": {"api_key": "BINANCEKEY123", "secret_key": "BINANCESECRET456"},
        }))
        .unwrap();
        assert_eq!(
            keys.venues().collect::<Vec<_>>(),
            vec!["binance_us", "polymarket"]
        );
        let key = FingerprintKey::from_bytes([1; 32]);
        let fps = keys.fingerprints(&key);
        assert!(fps["polymarket"].starts_with("hmac-sha256:"));
        assert_eq!(fps["polymarket"].len(), "hmac-sha256:".len() + 32);
        let debug = format!("{keys:?}");
        assert!(
            !debug.contains("BINANCESECRET456") && !debug.contains(&PK[2..]),
            "{debug}"
        );
        // Round trip through the secret's JSON.
        let again = ExchangeKeys::from_secret_json(&keys.to_secret_json()).unwrap();
        assert_eq!(again.fingerprints(&key), fps);
    }

    #[test]
    fn a_fingerprint_depends_on_the_deployments_key_and_is_never_the_plain_hash() {
        use sha2::Digest;
        let keys = parse_exchange_keys(&json!({"polymarket": {"private_key": PK}})).unwrap();
        let here = keys.fingerprints(&FingerprintKey::from_bytes([1; 32]));
        let there = keys.fingerprints(&FingerprintKey::from_bytes([2; 32]));
        assert_ne!(here["polymarket"], there["polymarket"]);
        // Neither is (a prefix of) the unkeyed hash the fingerprint used to be.
        let mut plain = sha2::Sha256::new();
        plain.update(b"polymarket\0private_key\0");
        plain.update(PK.as_bytes());
        let plain = hex::encode(plain.finalize());
        for fp in [&here["polymarket"], &there["polymarket"]] {
            let digits = fp.trim_start_matches(FingerprintKey::PREFIX);
            assert!(!plain.starts_with(digits), "{fp}");
            assert!(!plain.contains(&digits[..12]), "{fp}");
        }
        assert_eq!(
            format!("{:?}", FingerprintKey::from_bytes([1; 32])),
            "FingerprintKey([REDACTED])"
        );
    }

    #[test]
    fn every_bad_field_is_reported_by_path_without_its_value() {
        let errors = parse_exchange_keys(&json!({
            "kalshi": {"key_id": "k-1", "private_key_pem": "not a pem SECRETVALUE"},
            "binance_us": {"api_key": "A", "secret": "B"},
            "bitmex": {"api_key": "x"},
            "polymarket": {"private_key": "0x1234", "api_key": "only-this"},
        }))
        .unwrap_err();
        // Errors follow the request's key order, which depends on serde_json's
        // `preserve_order`; compare them sorted.
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "exchange_keys.binance_us.secret",
                "exchange_keys.binance_us.secret_key",
                "exchange_keys.bitmex",
                "exchange_keys.kalshi.private_key_pem",
                "exchange_keys.polymarket",
                "exchange_keys.polymarket.private_key",
            ]
        );
        let secret = errors
            .iter()
            .find(|e| e.field == "exchange_keys.binance_us.secret")
            .unwrap();
        assert!(
            secret.message.contains("`secret_key`"),
            "{}",
            secret.message
        );
        assert!(errors.iter().all(|e| !e.message.contains("SECRETVALUE")));
    }

    #[test]
    fn a_truncated_pem_is_malformed() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----";
        assert!(check_pem(pem).is_err());
    }
}
