//! The admin port that `serve` and `reconcile` share: health, readiness and metrics in plain HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;

/// The admin port: health, readiness and metrics (`encode_metrics` writes the Prometheus text),
/// in plain HTTP.
pub fn admin_router(
    encode_metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    ready: Arc<AtomicBool>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = encode_metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
}
