//! Heartbeats over UDP: every second each replica tells every peer who it is,
//! where its client API is, and how far along it is. They feed `/status` (last
//! contact, lag) and never carry protocol messages, so losing them is harmless.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noted_core::ReplicaId;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::PeerTable;
use super::auth::{FrameAuth, LENGTH_PREFIX_BYTES};
use crate::driver::DriverHandle;
use crate::metrics::Metrics;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
const DATAGRAM_BYTES_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub replica: u8,
    pub client_address: SocketAddr,
    pub role: String,
    pub view: Option<u64>,
    pub op_number: u64,
    pub applied: u64,
}

/// Sends a heartbeat to every peer each [`HEARTBEAT_INTERVAL`], until shutdown.
pub async fn send_forever(
    socket: Arc<UdpSocket>,
    me: ReplicaId,
    client_address: SocketAddr,
    peers: Vec<(ReplicaId, SocketAddr)>,
    auth: FrameAuth,
    driver: DriverHandle,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let status = driver.status();
        let heartbeat = Heartbeat {
            replica: me.0,
            client_address,
            role: crate::http::status::role_name(status.role),
            view: status.view,
            op_number: status.op_number,
            applied: status.applied,
        };
        let payload = serde_json::to_vec(&heartbeat).expect("a heartbeat always encodes");
        let datagram = auth.seal_bytes(&payload);
        for (peer, address) in &peers {
            if let Err(error) = socket.send_to(&datagram, address).await {
                debug!(%peer, %address, %error, "heartbeat not sent");
            }
        }
    }
}

/// Records every authenticated heartbeat in `table`, until shutdown.
pub async fn receive_forever(
    socket: Arc<UdpSocket>,
    me: ReplicaId,
    replica_count: u8,
    auth: FrameAuth,
    table: Arc<PeerTable>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let Ok((length, _from)) = received else { continue };
        let heartbeat = buffer
            .get(LENGTH_PREFIX_BYTES..length)
            .and_then(|body| auth.open_bytes(body).ok())
            .and_then(|payload| serde_json::from_slice::<Heartbeat>(payload).ok())
            .filter(|heartbeat| heartbeat.replica != me.0 && heartbeat.replica < replica_count);
        match heartbeat {
            Some(heartbeat) => {
                metrics.heartbeat_received();
                table.heartbeat_from(heartbeat);
            }
            None => metrics.heartbeat_rejected(),
        }
    }
}
