//! The client API over HTTP/1.1 and HTTP/2 (axum).

pub mod cors;
pub mod error;
pub mod linger;
pub mod notes;
pub mod page;
pub mod serve;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use noted_core::ReplicaId;

use crate::config::ReplicaAddresses;
use crate::driver::DriverHandle;
use crate::metrics::Metrics;
use crate::peer::PeerTable;
use error::ApiError;

/// What every request handler shares, behind one `Arc`: axum clones the state
/// for each request, and one reference count is cheaper than a channel sender,
/// a watch receiver and four `Arc`s.
pub type AppState = Arc<App>;

#[derive(Debug)]
pub struct App {
    pub driver: DriverHandle,
    pub metrics: Arc<Metrics>,
    pub peers: Arc<PeerTable>,
    pub me: ReplicaId,
    pub cluster: u64,
    pub replicas: Arc<Vec<ReplicaAddresses>>,
    pub request_timeout: Duration,
    /// Largest note body, as core counts it: bodies over it are refused before they are replicated.
    pub note_bytes_max: usize,
    /// Largest request body read; a longer one is refused with 413.
    pub request_body_bytes_max: usize,
    /// Origins whose pages may use the API and the change feed (see [`cors`]).
    pub allowed_origins: cors::AllowedOrigins,
    /// The data directory (disk storage); `None` with memory storage.
    pub data_dir: Option<String>,
}

pub fn router(app: AppState) -> Router {
    let request_body_bytes_max = app.request_body_bytes_max;
    Router::new()
        .route("/", get(page::index))
        .route("/notes", get(notes::list).post(notes::create))
        .route("/notes/watch", get(watch::watch))
        .route("/notes/{id}", get(notes::get).put(notes::replace).patch(notes::patch).delete(notes::delete))
        .route("/status", get(status::status))
        .route("/metrics", get(status::metrics))
        .route("/healthz", get(status::healthz))
        .fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(request_body_bytes_max))
        .layer(middleware::from_fn_with_state(app.clone(), cors::cors))
        .layer(middleware::from_fn_with_state(app.clone(), record_request))
        .with_state(app)
}

/// Counts every request by route, method and status, and times it.
async fn record_request(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.uri().path());
    let method = method_label(request.method());
    let response = next.run(request).await.into_response();
    app.metrics.http_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// The method as a metrics label of bounded cardinality.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route a path belongs to, as a metrics label of bounded cardinality.
/// (Metrics are recorded around the router, before it has matched the path.)
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/notes" => "/notes",
        "/notes/watch" => "/notes/watch",
        "/status" => "/status",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        _ if path.strip_prefix("/notes/").is_some_and(|id| !id.is_empty() && !id.contains('/')) => "/notes/{id}",
        _ => "unmatched",
    }
}
