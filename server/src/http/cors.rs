//! Cross-origin use of the API (CORS) and the origin check of the change feed.
//!
//! With `allowed_origins` in the cluster file, a browser app served from one of
//! those origins may call the API: preflight `OPTIONS` requests are answered with
//! the methods and the request headers noted reads, and answers carry
//! `Access-Control-Allow-Origin` and expose `ETag`. A preflight from any other
//! origin is refused with 403. The `/notes/watch` WebSocket, which browsers open
//! across origins without asking, accepts the page's own origin, the allowed ones,
//! and clients that send no `Origin` (programs, not pages).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Methods of the API a cross-origin page may use.
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// The request headers noted reads.
pub const ALLOWED_HEADERS: &str = "content-type, if-match, if-none-match, noted-client-id, noted-request-number";
/// Response headers a cross-origin page may read besides the safelisted ones.
pub const EXPOSED_HEADERS: &str = "etag, location, noted-freshness";
/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_SECONDS: &str = "600";

/// The origins (`scheme://host[:port]`, or `*` for any) whose pages may use the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    pub fn new(origins: Vec<String>) -> AllowedOrigins {
        AllowedOrigins { origins: origins.into_iter().map(|origin| origin.trim_end_matches('/').to_owned()).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }
}

/// Answers preflights and marks answers to allowed origins; everything else passes through.
pub async fn cors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if app.allowed_origins.is_empty() {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin else { return next.run(request).await };
    let allowed = app.allowed_origins.allows(&origin);
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return preflight(&origin, allowed, request.headers());
    }
    let mut response = next.run(request).await;
    if allowed {
        let headers = response.headers_mut();
        allow_origin(headers, &origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    } else {
        response.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

fn preflight(origin: &str, allowed: bool, request: &HeaderMap) -> Response {
    let method_allowed = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|method| ALLOWED_METHODS.split(", ").any(|allowed| allowed == method.trim()));
    if !allowed || !method_allowed {
        let reason = if allowed { "this method is not allowed across origins" } else { "origin not allowed" };
        let mut response = ApiError::new(StatusCode::FORBIDDEN, "cors_refused", reason).into_response();
        response.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow_origin(headers, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS));
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// Whether a WebSocket request may open the change feed: no `Origin` (not a page),
/// the page's own origin (the `Host` it connects to), or an allowed origin.
pub fn websocket_origin_allowed(headers: &HeaderMap, allowed: &AllowedOrigins) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let same_origin = host.is_some_and(|host| {
        origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|rest| rest == host)
    });
    same_origin || allowed.allows(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap())).collect()
    }

    #[test]
    fn origins_match_exactly_or_by_star() {
        let allowed = AllowedOrigins::new(vec!["https://app.example/".into()]);
        assert!(allowed.allows("https://app.example"));
        assert!(!allowed.allows("https://app.example.evil"));
        assert!(!allowed.allows("http://app.example"));
        assert!(AllowedOrigins::new(vec!["*".into()]).allows("https://anything"));
        assert!(!AllowedOrigins::default().allows("https://app.example"));
    }

    #[test]
    fn the_feed_accepts_programs_its_own_page_and_allowed_origins() {
        let allowed = AllowedOrigins::new(vec!["https://app.example".into()]);
        assert!(websocket_origin_allowed(&headers(&[("host", "127.0.0.1:7001")]), &allowed));
        let own = headers(&[("host", "127.0.0.1:7001"), ("origin", "http://127.0.0.1:7001")]);
        assert!(websocket_origin_allowed(&own, &AllowedOrigins::default()));
        let listed = headers(&[("host", "127.0.0.1:7001"), ("origin", "https://app.example")]);
        assert!(websocket_origin_allowed(&listed, &allowed));
        let hostile = headers(&[("host", "127.0.0.1:7001"), ("origin", "https://evil.example")]);
        assert!(!websocket_origin_allowed(&hostile, &allowed));
    }
}
