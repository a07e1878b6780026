//! The one shutdown path: SIGTERM or Ctrl-C cancels a token that every loop
//! selects on.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM or SIGINT.
pub fn on_signal() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        // Cancel first: logging can fail (a closed stderr pipe) and must not
        // keep the process from stopping.
        let what = tokio::select! {
            _ = term.recv() => "SIGTERM received",
            _ = int.recv() => "interrupted",
        };
        cancel.cancel();
        tracing::info!("{what}, shutting down");
    });
    Ok(token)
}
