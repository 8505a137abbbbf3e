//! Operations endpoints: `/status`, `/metrics`, `/healthz`.

use axum::Json;
use axum::extract::State;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use noted_core::{ReplicaId, Role};
use serde_json::json;

use super::AppState;
use crate::peer::PeerReport;

pub fn role_name(role: Role) -> String {
    match role {
        Role::Primary => "primary".into(),
        Role::Backup => "backup".into(),
        Role::Owner { .. } => "owner".into(),
        Role::ViewChange => "view_change".into(),
        Role::Recovering => "recovering".into(),
    }
}

pub async fn status(State(app): State<AppState>) -> Response {
    let status = app.driver.status();
    let peers: Vec<PeerReport> = app
        .replicas
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != app.me.index())
        .map(|(index, addresses)| {
            let replica = ReplicaId(u8::try_from(index).expect("replica ids fit in u8"));
            let contact = app.peers.contact(replica);
            let last_contact = [contact.last_message, contact.last_heartbeat].into_iter().flatten().max();
            let reported = contact.reported;
            PeerReport {
                replica: replica.0,
                peer_address: addresses.peer.to_string(),
                client_address: addresses.client.to_string(),
                last_contact_ms_ago: last_contact.map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
                view: reported.as_ref().and_then(|heartbeat| heartbeat.view),
                role: reported.as_ref().map(|heartbeat| heartbeat.role.clone()),
                op_number: reported.as_ref().map(|heartbeat| heartbeat.op_number),
                applied: reported.as_ref().map(|heartbeat| heartbeat.applied),
                lag: reported.as_ref().map(|heartbeat| status.applied.saturating_sub(heartbeat.applied)),
                wire_version: contact.wire_version,
            }
        })
        .collect();
    Json(json!({
        "replica": status.replica.0,
        "cluster": app.cluster,
        "protocol": status.protocol,
        "role": role_name(status.role),
        "items_owned": match status.role { Role::Owner { items_owned } => Some(items_owned), _ => None },
        "view": status.view,
        "op_number": status.op_number,
        "commit_number": status.applied,
        "applied": status.applied,
        "pending_requests": status.pending_requests,
        "messages_dropped": status.counters.messages_dropped,
        "requests_refused_overloaded": status.counters.requests_refused_overloaded,
        "client_address": app.replicas[app.me.index()].client.to_string(),
        "storage": storage_report(&app, status.repairing),
        "peers": peers,
    }))
    .into_response()
}

/// The data directory's state: `{"kind": "memory"}`, or its path, log and
/// checkpoint sizes, syncs and repairs.
fn storage_report(app: &AppState, repairing: bool) -> serde_json::Value {
    let Some(data_dir) = &app.data_dir else { return json!({ "kind": "memory" }) };
    let report = app.metrics.storage_report();
    json!({
        "kind": "disk",
        "data_dir": data_dir,
        "repairing": repairing,
        "wal_bytes": report.wal_bytes,
        "checkpoint_bytes": report.checkpoint_bytes,
        "syncs": report.syncs,
        "sync_seconds_mean": report.sync_seconds_mean,
        "bytes_written": report.bytes_written,
        "repairs_started": report.repairs_started,
        "repairs_completed": report.repairs_completed,
        "stalled": report.stalled,
        "stalls": report.stalls,
    })
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], app.metrics.render()).into_response()
}

/// How long the driver may take to answer a ping before noted calls itself unhealthy.
const DRIVER_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Healthy while the replica's driver takes inputs; 503 when it stopped or is stuck.
pub async fn healthz(State(app): State<AppState>) -> Response {
    if app.driver.is_responsive(DRIVER_PING_TIMEOUT).await {
        return Json(json!({ "status": "ok" })).into_response();
    }
    let body = json!({ "status": "unhealthy", "reason": "the replica's driver is not taking inputs" });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
