//! `GET /notes/watch`: the replica's change feed over a WebSocket.
//!
//! One text message per committed change, in commit order, or a snapshot when the
//! watcher starts fresh or asks for changes the replica no longer keeps (see
//! [`crate::feed`]). The server pings every [`PING_EVERY`]; a watcher that cannot
//! keep up is closed with a reason that says where to resume.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::AppState;
use super::error::ApiError;
use crate::feed::{FeedMessage, Subscription};

/// How often the server pings a watcher, so that idle connections stay open
/// through proxies and dead ones are noticed.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// A send that takes longer than this means the watcher stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// The last commit the watcher has seen: it resumes after it.
    from: Option<u64>,
}

pub async fn watch(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<WatchParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let result = async {
        if !super::cors::websocket_origin_allowed(&headers, &app.allowed_origins) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "pages of this origin may not open the change feed (see allowed_origins)",
            ));
        }
        let Query(params) =
            params.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        let upgrade = upgrade
            .map_err(|rejection| ApiError::new(rejection.status(), "websocket_required", rejection.body_text()))?;
        let subscription =
            app.driver.watch(params.from).await.ok_or_else(|| ApiError::unavailable("the replica is stopping"))?;
        Ok::<_, ApiError>(upgrade.on_upgrade(move |socket| stream(socket, subscription)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Why a watcher's stream ended, when the server ends it.
enum Ending {
    /// The watcher closed, vanished or stopped reading: nothing more to say.
    Gone,
    Close {
        code: u16,
        reason: String,
    },
}

async fn stream(mut socket: WebSocket, subscription: Subscription) {
    let ending = send_feed(&mut socket, subscription).await;
    if let Ending::Close { code, reason } = ending {
        debug!(code, %reason, "closing a watcher");
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
}

async fn send_feed(socket: &mut WebSocket, subscription: Subscription) -> Ending {
    let Subscription { backlog, mut live, known_through } = subscription;
    let mut last_sent = known_through;
    for message in backlog {
        if !send(socket, Message::Text(message.json)).await {
            return Ending::Gone;
        }
        last_sent = last_sent.max(message.commit);
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        // Each branch's future is dropped before its body runs, so the bodies may use the socket.
        tokio::select! {
            incoming = socket.recv() => match incoming {
                // Pongs and anything else a watcher says are ignored; the feed is one-way.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Ending::Gone,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if !send(socket, Message::Ping(Default::default())).await {
                    return Ending::Gone;
                }
            }
            next = live.recv() => match next {
                Ok(FeedMessage { commit, .. }) if commit <= last_sent => {}
                Ok(FeedMessage { commit, json }) => {
                    if !send(socket, Message::Text(json)).await {
                        return Ending::Gone;
                    }
                    last_sent = commit;
                }
                Err(RecvError::Lagged(missed)) => {
                    return Ending::Close {
                        code: close_code::AGAIN,
                        reason: format!("too slow: {missed} messages behind; resume with ?from={last_sent}"),
                    };
                }
                Err(RecvError::Closed) => {
                    return Ending::Close {
                        code: close_code::AWAY,
                        reason: format!("replica stopping; resume with ?from={last_sent}"),
                    };
                }
            }
        }
    }
}

/// Sends one message; `false` when the watcher is gone or stopped reading.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await, Ok(Ok(())))
}
