//! A small blocking HTTP client for the notes API.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Per-request timeout: longer than the server's request timeout in the tests, so
/// that a 503 from the server normally arrives before the client gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::Null` when empty or not JSON.
    pub body: Value,
    pub text: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `code` of a JSON error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error")?.get("code")?.as_str()
    }
}

#[derive(Clone, Debug)]
pub struct NotesClient {
    pub base: String,
    http: Client,
}

impl NotesClient {
    pub fn new(base: String) -> NotesClient {
        let http = Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().expect("an HTTP client");
        NotesClient { base, http }
    }

    /// Sends one request; `identity` is (client id, request number) for exactly-once retries.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, String)],
    ) -> reqwest::Result<HttpResponse> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(HttpResponse { status, headers, body, text })
    }

    pub fn get_path(&self, path: &str) -> reqwest::Result<HttpResponse> {
        self.send(Method::GET, path, None, &[])
    }

    pub fn json(&self, method: Method, path: &str, body: &Value) -> reqwest::Result<HttpResponse> {
        self.send(method, path, Some(("application/json", body.to_string().into_bytes())), &[])
    }
}
