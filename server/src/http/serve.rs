//! Serving client connections (HTTP/1.1 and HTTP/2 on one port) with a deadline on
//! request headers, so that a client dribbling a request a byte at a time holds a
//! connection for a bounded time only.
//!
//! hyper enforces the deadline on every HTTP/1 request head once it knows the
//! protocol; before that, while it is still telling HTTP/1 from HTTP/2, and for a
//! connection's first request in either protocol, the deadline is enforced here.
//!
//! Every connection closes lingering (see [`super::linger`]), so that an early
//! error reaches a client still sending its body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::linger::LingeringStream;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown`, then waits for the requests
/// in flight on open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, header_read_timeout: Duration, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    // The change feed's WebSocket over HTTP/2 is an extended CONNECT (RFC 8441).
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "cannot accept a client connection");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let first_request = Arc::new(AtomicBool::new(false));
        let service = {
            let first_request = Arc::clone(&first_request);
            let router = router.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                first_request.store(true, Ordering::Relaxed);
                router.clone().oneshot(request.map(axum::body::Body::new))
            })
        };
        let stream = LingeringStream::new(stream);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        debug!(%remote, %error, "client connection ended with an error");
                    }
                }
                () = no_request_within(header_read_timeout, &first_request) => {
                    debug!(%remote, "no request headers in time; closing the client connection");
                }
            }
        });
    }
    graceful.shutdown().await;
}

/// Ends after `timeout` unless a request has arrived by then; never ends otherwise.
async fn no_request_within(timeout: Duration, first_request: &AtomicBool) {
    tokio::time::sleep(timeout).await;
    if first_request.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}
