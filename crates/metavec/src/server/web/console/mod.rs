//! The web console: one page of plain HTML, JS and CSS compiled into the binary (no CDN, no build
//! step), which talks to the HTTP API like any client. With a key set on the server, the page asks
//! for it and keeps it in the tab's sessionStorage; the server stores nothing.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tonic::Status;

use super::{ApiError, HttpState};

const INDEX: &str = include_str!("index.html");
const JS: &str = include_str!("console.js");
const CSS: &str = include_str!("console.css");

/// The page and its files; the plot's route is keyed with the API's.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
        .route(
            "/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
}

/// The quality-latency SVG of the last `metavec bench --plot` (`--bench-plot PATH`), read anew on
/// each request so that a new bench run shows without a restart. A read, for either key; 204
/// without `--bench-plot`, 404 while its file is missing.
pub async fn bench_plot(State(s): State<HttpState>) -> Response {
    // No plot configured is not an error (the page says how to configure one): no content.
    let Some(path) = s.bench_plot.clone() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let read = path.clone();
    match tokio::task::spawn_blocking(move || std::fs::read(read))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => ApiError(Status::not_found(format!(
            "bench plot {}: {e} (run metavec bench --plot {} first)",
            path.display(),
            path.display()
        )))
        .into_response(),
    }
}
