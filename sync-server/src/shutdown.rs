//! Turning SIGINT and SIGTERM into a cancellation.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM. A second signal exits at
/// once, for an operator who does not want to wait for the flush.
pub async fn on_signal(token: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down: flushing documents (signal again to exit at once)");
    token.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting without waiting");
    std::process::exit(130);
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
