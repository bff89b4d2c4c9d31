//! The fleet page's HTTP routes (`GET /`, `/api/fleet`, `/page.js`, `/page.css`), handed to
//! the metrics listener as an extra router (`metrics::serve_extra`), which keeps its
//! connection limits and timeouts and its own `/metrics`. Read-only: `GET` (and `HEAD`) only.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::page::{PageData, SCRIPT, STYLE, Source, render_html};

/// Headers of every page response: nothing but this origin's own script and style may run or
/// load, the page cannot be framed, nothing is cached.
const PAGE_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The page's routes over `source`.
pub fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(page_html))
        .route("/api/fleet", get(page_json))
        .route("/page.js", get(page_script))
        .route("/page.css", get(page_style))
        .with_state(source)
}

async fn page_data(source: &Source) -> PageData {
    let view = source.view().await;
    PageData::new(source.node(), view, jiff::Timestamp::now())
}

async fn page_html(State(source): State<Source>) -> impl IntoResponse {
    let d = page_data(&source).await;
    (
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render_html(&d),
    )
}

async fn page_json(State(source): State<Source>) -> impl IntoResponse {
    let d = page_data(&source).await;
    let status = if d.error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&d)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the fleet: {e}\"}}")),
    )
}

async fn page_script() -> impl IntoResponse {
    (
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn page_style() -> impl IntoResponse {
    (
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE,
    )
}
