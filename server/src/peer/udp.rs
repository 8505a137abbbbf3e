//! Heartbeats over UDP: every second each replica tells every peer who it is,
//! where its client API is, and how far along it is. They feed `/status` (last
//! contact, lag) and never carry protocol messages, so losing them is harmless.
//!
//! Anyone can send datagrams, and anyone on the path can record and resend a
//! genuine one. So a datagram is dropped, cheapest check first, unless it comes
//! from a peer's heartbeat address, carries a valid MAC, decodes, names that peer,
//! and is newer than the last one recorded of it: each heartbeat carries its
//! sender's boot id (the wall-clock microsecond it started, so a restarted replica
//! counts as newer) and a sequence number, both inside the MAC. Every drop is
//! counted by reason in `noted_heartbeats_rejected_total`; none is logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noted_core::ReplicaId;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::PeerTable;
use super::auth::{FrameAuth, LENGTH_PREFIX_BYTES, Rejection};
use crate::driver::DriverHandle;
use crate::metrics::Metrics;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
const DATAGRAM_BYTES_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub replica: u8,
    /// When the sender started, in microseconds since the Unix epoch.
    pub boot: u64,
    /// Counts the sender's heartbeats since it started.
    pub sequence: u64,
    pub client_address: SocketAddr,
    pub role: String,
    pub view: Option<u64>,
    pub op_number: u64,
    pub applied: u64,
}

impl Heartbeat {
    /// Later heartbeats of one replica compare greater.
    pub fn order(&self) -> (u64, u64) {
        (self.boot, self.sequence)
    }
}

/// This process's boot id: now, in microseconds since the Unix epoch.
pub fn boot_id() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
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
    let boot = boot_id();
    for sequence in 1.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let status = driver.status();
        let heartbeat = Heartbeat {
            replica: me.0,
            boot,
            sequence,
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

/// Records every authenticated, fresh heartbeat from `peers` (replica, heartbeat
/// address) in `table`, until shutdown.
pub async fn receive_forever(
    socket: Arc<UdpSocket>,
    peers: Vec<(ReplicaId, SocketAddr)>,
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
        let Ok((length, from)) = received else { continue };
        match check(&buffer[..length], from, &peers, &auth).map(|heartbeat| table.heartbeat_from(heartbeat)) {
            Ok(true) => metrics.heartbeat_received(),
            Ok(false) => metrics.heartbeat_rejected("replayed"),
            Err(reason) => metrics.heartbeat_rejected(reason),
        }
    }
}

/// The heartbeat in `datagram` from `from`, or why it is dropped.
fn check(
    datagram: &[u8],
    from: SocketAddr,
    peers: &[(ReplicaId, SocketAddr)],
    auth: &FrameAuth,
) -> Result<Heartbeat, &'static str> {
    let sender = peers.iter().find(|(_, address)| sent_from(*address, from)).map(|(replica, _)| *replica);
    let sender = sender.ok_or("unknown_sender")?;
    let body = datagram.get(LENGTH_PREFIX_BYTES..).ok_or(Rejection::TooShort.label())?;
    let payload = auth.open_bytes(body).map_err(Rejection::label)?;
    let heartbeat = serde_json::from_slice::<Heartbeat>(payload).map_err(|_| Rejection::Malformed.label())?;
    if heartbeat.replica != sender.0 {
        return Err(Rejection::WrongSender.label());
    }
    Ok(heartbeat)
}

/// Whether a datagram from `from` may come from the socket bound to `configured`:
/// the same port, and the same address unless the socket listens on every address.
fn sent_from(configured: SocketAddr, from: SocketAddr) -> bool {
    configured.port() == from.port() && (configured.ip().is_unspecified() || configured.ip() == from.ip())
}

#[cfg(test)]
mod tests {
    use noted_core::ClusterId;

    use super::*;

    fn heartbeat(replica: u8, boot: u64, sequence: u64) -> Heartbeat {
        Heartbeat {
            replica,
            boot,
            sequence,
            client_address: "127.0.0.1:7001".parse().unwrap(),
            role: "backup".into(),
            view: Some(1),
            op_number: sequence,
            applied: sequence,
        }
    }

    #[test]
    fn only_a_peers_address_authentic_bytes_and_its_own_id_pass() {
        let auth = FrameAuth::new(ClusterId(1), b"the cluster's secret");
        let peer: SocketAddr = "127.0.0.2:7202".parse().unwrap();
        let peers = [(ReplicaId(1), peer)];
        let datagram = auth.seal_bytes(&serde_json::to_vec(&heartbeat(1, 5, 1)).unwrap());
        assert_eq!(check(&datagram, peer, &peers, &auth), Ok(heartbeat(1, 5, 1)));
        assert_eq!(check(&datagram, "127.0.0.2:9999".parse().unwrap(), &peers, &auth), Err("unknown_sender"));
        let mut forged = datagram.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(check(&forged, peer, &peers, &auth), Err("bad_mac"));
        let impostor = auth.seal_bytes(&serde_json::to_vec(&heartbeat(2, 5, 1)).unwrap());
        assert_eq!(check(&impostor, peer, &peers, &auth), Err("wrong_sender"));
        assert_eq!(check(&auth.seal_bytes(b"{}"), peer, &peers, &auth), Err("malformed"));
        assert_eq!(check(&[1], peer, &peers, &auth), Err("too_short"));
        assert!(sent_from("0.0.0.0:7202".parse().unwrap(), peer));
    }

    #[test]
    fn a_replayed_or_stale_heartbeat_changes_nothing() {
        let table = PeerTable::new(3);
        assert!(table.heartbeat_from(heartbeat(1, 5, 2)));
        assert!(!table.heartbeat_from(heartbeat(1, 5, 2)), "the same one again");
        assert!(!table.heartbeat_from(heartbeat(1, 5, 1)), "an older one");
        assert!(!table.heartbeat_from(heartbeat(1, 4, 9)), "one of an earlier boot");
        assert_eq!(table.contact(ReplicaId(1)).reported, Some(heartbeat(1, 5, 2)));
        assert!(table.heartbeat_from(heartbeat(1, 6, 1)), "the replica restarted");
    }
}
