//! The `/metrics` endpoint: a minimal axum router around [`Metrics::render`].
//!
//! Kept apart from the registry so the metric definitions do not depend on the HTTP stack. The
//! listener is bound by the caller (the driver reports its address in `RC_METRICS_ENDPOINT` and
//! a listen failure is a startup error, GO-COMPAT §3), so this only serves.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;

/// Content type of the exposition (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` (and `HEAD`) with [`Metrics::render`] and [`CONTENT_TYPE`]; every other
/// path answers 404 (another method on `/metrics`: 405). Runs until the task is aborted or
/// accepting fails for good; per-connection errors are handled inside and do not end it.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).await
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .fallback(not_found)
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found; metrics are at /metrics\n",
    )
}
