//! Request signing for each venue's private API (Polymarket's is the
//! official SDK's, in [`crate::execution::polymarket`]), exactly as VENUES.md
//! describes it, checked against the venues' published test vectors.
//!
//! Keys arrive as `secrecy` types and are exposed only inside the functions
//! that compute a MAC or a signature. The header sets these functions return
//! ([`AuthHeaders`]) print only header names in `Debug`. Nothing here does
//! I/O; the connectors attach the headers to their requests.

pub mod alpaca;
pub mod binance;
pub mod coinbase;
pub mod kalshi;
pub mod kraken;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Authentication headers for one request. Values may be secrets (Alpaca's
/// secret key, passphrases), so `Debug` shows the names only.
#[derive(Default)]
pub struct AuthHeaders {
    entries: Vec<(&'static str, SecretString)>,
}

impl AuthHeaders {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header.
    pub fn push(&mut self, name: &'static str, value: impl Into<String>) {
        self.entries.push((name, SecretString::from(value.into())));
    }

    /// The value of a header, exposed (for attaching it to a request or a test).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.expose_secret())
    }

    /// Header names, in insertion order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(n, _)| *n).collect()
    }

    /// Every header with its exposed value.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries.iter().map(|(n, v)| (*n, v.expose_secret()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for AuthHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHeaders")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_headers_debug_shows_names_but_not_values() {
        let mut headers = AuthHeaders::new();
        headers.push("APCA-API-SECRET-KEY", "very-secret-value");
        let text = format!("{headers:?}");
        assert!(text.contains("APCA-API-SECRET-KEY"), "{text}");
        assert!(!text.contains("very-secret-value"), "{text}");
        assert_eq!(
            headers.get("apca-api-secret-key"),
            Some("very-secret-value")
        );
    }
}
