//! One keep-alive HTTP/1.1 connection to a replica: a benchmark connection sends
//! its requests one after the other on the same TCP connection, as a pooled
//! client would, so connection setup is not part of what is measured.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where a benchmark sends requests: a replica's client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: SocketAddr,
    /// The `Host` header: the address as given.
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://HOST:PORT` (a trailing `/` allowed) or `HOST:PORT`, resolving the host.
    pub async fn resolve(url: &str) -> Result<Target, String> {
        let authority = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || url.starts_with("https://") {
            return Err(format!("{url:?} is not http://HOST:PORT"));
        }
        let address = tokio::net::lookup_host(authority)
            .await
            .map_err(|error| format!("cannot resolve {authority}: {error}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to no address"))?;
        let host = HeaderValue::from_str(authority).map_err(|_| format!("{authority:?} is not a valid host"))?;
        Ok(Target { address, host })
    }
}

/// A response, with its body read whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug)]
pub struct Connection {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Connection, String> {
        let stream = TcpStream::connect(target.address)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", target.address))?;
        // Requests are small and each waits for its answer: never delay them to coalesce.
        stream.set_nodelay(true).map_err(|error| error.to_string())?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|error| format!("HTTP handshake: {error}"))?;
        // The connection task ends when the sender is dropped or the server closes.
        tokio::spawn(connection);
        Ok(Connection { target: target.clone(), sender })
    }

    /// Sends one request and reads the whole response. `headers` are added to `Host`
    /// (and `Content-Type` when there is a body).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, HeaderValue)],
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response, String> {
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, self.target.host.clone());
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|error| format!("cannot build the request: {error}"))?;
        self.sender.ready().await.map_err(|error| format!("connection lost: {error}"))?;
        let response = self.sender.send_request(request).await.map_err(|error| format!("request failed: {error}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|error| format!("reading the response failed: {error}"))?.to_bytes();
        Ok(Response { status: parts.status, headers: parts.headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_http_urls_or_addresses() {
        let target = Target::resolve("http://127.0.0.1:7001/").await.unwrap();
        assert_eq!(target.address, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:7001");
        assert_eq!(Target::resolve("127.0.0.1:9").await.unwrap().address.port(), 9);
        assert!(Target::resolve("https://127.0.0.1:7001").await.is_err());
        assert!(Target::resolve("http://127.0.0.1:7001/notes").await.is_err());
        assert!(Target::resolve("").await.is_err());
    }
}
