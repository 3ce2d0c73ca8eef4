//! Operator endpoints: `/healthz` (process alive), `/readyz` (model loaded,
//! store open, source connected) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// Shared readiness flag, set once the worker can process events.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

async fn readyz(State(ready): State<Readiness>) -> (StatusCode, &'static str) {
    if ready.0.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics() -> (StatusCode, String) {
    match crate::telemetry::prometheus() {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n".into()),
    }
}

/// Bind `listen` and serve in the background; returns the bound address.
/// A bind failure is reported, not fatal: the worker's job is the stream.
pub async fn serve(listen: &str, ready: Readiness) -> Option<SocketAddr> {
    serve_with(listen, ready, Router::new()).await
}

/// [`serve`] with more routes beside the operator endpoints (the preview page).
pub async fn serve_with(listen: &str, ready: Readiness, extra: Router) -> Option<SocketAddr> {
    crate::telemetry::prometheus();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
        .merge(extra);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(listen, error = %e, "cannot serve /healthz, /readyz and /metrics (http.listen)");
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(%addr, "serving /healthz, /readyz, /metrics and the preview page (/)");
    Some(addr)
}
