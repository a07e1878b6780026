//! The process's TLS crypto provider. Two are built in (ring, which the
//! project's HTTP and WebSocket clients use, and aws-lc, which the Polymarket
//! SDK's HTTP client brings); rustls then chooses neither by itself, and a
//! WebSocket connect would panic. Ring is installed once, before the first
//! connection that asks rustls for the process default.

use std::sync::Once;

pub(crate) fn install_crypto_provider() {
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
