//! The process's TLS crypto provider. Two are built in (ring, which the
//! project's HTTP and WebSocket clients use, and aws-lc, which the Polymarket
//! SDK's HTTP client brings); rustls then chooses neither by itself, and a
//! WebSocket connect would panic. Ring is installed once, before the first
//! connection that asks rustls for the process default.

use std::sync::Once;

/// Installs ring as the process's rustls provider unless one is installed;
/// every rustls client built from the process default (the WebSocket
/// connector, the market-data Redis client) calls it first.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; that
        // one is kept.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            rustls::crypto::ring::default_provider()
                .install_default()
                .unwrap_or_else(|_| tracing::debug!("a TLS crypto provider was installed first"));
        }
    });
}
