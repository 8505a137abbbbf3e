//! `GET /`: noted's web page, built into the binary so that it needs nothing else
//! at run time. It lists, creates, edits and deletes notes through the API, shows
//! other clients' changes live through `/notes/watch`, and shows the cluster from
//! `/status`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("page/index.html");

pub async fn index() -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        // The page changes with the binary; a stale copy would talk to a newer API.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, INDEX_HTML).into_response()
}
