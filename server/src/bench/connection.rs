//! One keep-alive HTTP/1.1 connection to a replica: a benchmark connection sends
//! its requests one after the other on the same TCP connection, as a pooled
//! client would, so connection setup is not part of what is measured.
//!
//! The connection's I/O is driven by the task that sends the requests rather than
//! by a task of its own: a request and its answer then cost no wake-up of another
//! task (possibly on another thread), which would be load generator overhead
//! counted against the replicas beside it.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::Poll;

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

type Io = TokioIo<TcpStream>;

#[derive(Debug)]
pub struct Connection {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    /// Reads and writes the socket whenever a request is in flight.
    io: Pin<Box<http1::Connection<Io, Full<Bytes>>>>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Connection, String> {
        let stream = TcpStream::connect(target.address)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", target.address))?;
        // Requests are small and each waits for its answer: never delay them to coalesce.
        stream.set_nodelay(true).map_err(|error| error.to_string())?;
        let (sender, io) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|error| format!("HTTP handshake: {error}"))?;
        Ok(Connection { target: target.clone(), sender, io: Box::pin(io) })
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
        let Connection { sender, io, .. } = self;
        let exchange = async move {
            sender.ready().await.map_err(|error| format!("connection lost: {error}"))?;
            let response = sender.send_request(request).await.map_err(|error| format!("request failed: {error}"))?;
            let (parts, body) = response.into_parts();
            let body =
                body.collect().await.map_err(|error| format!("reading the response failed: {error}"))?.to_bytes();
            Ok(Response { status: parts.status, headers: parts.headers, body })
        };
        drive(io.as_mut(), exchange).await
    }
}

/// Runs `exchange` while driving the connection's I/O, until the exchange is done
/// or the connection ends (which fails the exchange).
async fn drive<T>(
    mut io: Pin<&mut http1::Connection<Io, Full<Bytes>>>,
    exchange: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let mut exchange = pin!(exchange);
    poll_fn(|context| {
        if let Poll::Ready(outcome) = exchange.as_mut().poll(context) {
            return Poll::Ready(outcome);
        }
        match io.as_mut().poll(context) {
            Poll::Pending => Poll::Pending,
            // The connection may have delivered the answer just before it ended.
            Poll::Ready(ended) => match exchange.as_mut().poll(context) {
                Poll::Ready(outcome) => Poll::Ready(outcome),
                Poll::Pending => Poll::Ready(Err(match ended {
                    Ok(()) => "the server closed the connection".to_string(),
                    Err(error) => format!("connection lost: {error}"),
                })),
            },
        }
    })
    .await
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
