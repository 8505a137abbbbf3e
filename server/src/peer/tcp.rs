//! Protocol messages over TCP: one outgoing connection per peer, dialled by the
//! sender, and a listener that reads the peers' connections.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use noted_core::ReplicaId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::auth::{FRAME_BODY_BYTES_MAX, FrameAuth, LENGTH_PREFIX_BYTES, Rejection};
use super::guard::{Admitted, InboundGuard};
use super::{PeerTable, SendQueue};
use crate::driver::DriverHandle;
use crate::metrics::Metrics;

const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Exponential back-off with jitter: each failure doubles the delay, up to a cap;
/// the delay actually waited is drawn from [delay / 2, delay] so that replicas
/// that lost each other at once do not redial in lockstep.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { delay: RECONNECT_DELAY_MIN }
    }

    fn next(&mut self) -> Duration {
        let current = self.delay;
        self.delay = (self.delay * 2).min(RECONNECT_DELAY_MAX);
        let half = current / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    fn reset(&mut self) {
        self.delay = RECONNECT_DELAY_MIN;
    }
}

/// Dials `address` from `local`, this replica's own peer address (any port), so
/// that a firewall can tell which replica a connection comes from even when
/// several replicas share a host. An unspecified `local` leaves the choice to the OS.
async fn dial(local: IpAddr, address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if !local.is_unspecified() && local.is_ipv4() == address.is_ipv4() {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.connect(address).await
}

/// Keeps a connection to `peer` open and writes `queue`'s frames to it, until shutdown.
pub async fn send_forever(
    local: IpAddr,
    peer: ReplicaId,
    address: SocketAddr,
    queue: Arc<SendQueue>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            stream = dial(local, address) => stream,
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                let delay = backoff.next();
                debug!(%peer, %address, %error, ?delay, "cannot reach peer; will dial again");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        // Protocol messages are small and latency-bound: never wait to coalesce them.
        let _ = stream.set_nodelay(true);
        backoff.reset();
        metrics.peer_connected();
        info!(%peer, %address, "connected to peer");
        // Frames queued while the previous write was in flight go out in one write:
        // under load, one system call carries many messages.
        let mut batch = Vec::new();
        loop {
            batch.clear();
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = stream.shutdown().await;
                    return;
                }
                () = queue.pop_all(&mut batch) => {}
            };
            if let Err(error) = stream.write_all(&batch).await {
                metrics.peer_dropped("transport", "connection_lost");
                warn!(%peer, %address, %error, "connection to peer lost; will dial again");
                break;
            }
        }
    }
}

/// What reading a peer connection needs: who this replica is, how to check
/// frames, what each address may cost, and where authenticated messages go.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub me: ReplicaId,
    pub replica_count: u8,
    pub auth: FrameAuth,
    pub guard: Arc<InboundGuard>,
    pub driver: DriverHandle,
    pub peers: Arc<PeerTable>,
    pub metrics: Arc<Metrics>,
}

/// Accepts the peers' connections and hands every authenticated message to the driver.
pub async fn receive_forever(listener: TcpListener, inbound: Inbound, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "cannot accept a peer connection");
                tokio::time::sleep(RECONNECT_DELAY_MIN).await;
                continue;
            }
        };
        let admitted = match inbound.guard.admit(remote.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                inbound.metrics.peer_dropped("transport", refusal.label());
                debug!(%remote, reason = refusal.label(), "refused a peer connection");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = inbound.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = connection.read(stream, remote, &admitted) => {}
            }
        });
    }
}

impl Inbound {
    async fn read(self, stream: TcpStream, remote: SocketAddr, admitted: &Admitted) {
        debug!(%remote, "peer connection accepted");
        let mut reader = BufReader::new(stream);
        let mut body = Vec::new();
        loop {
            let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
            if reader.read_exact(&mut prefix).await.is_err() {
                debug!(%remote, "peer connection closed");
                return;
            }
            let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
            if length > FRAME_BODY_BYTES_MAX {
                // The stream cannot be trusted to be in step any more: close it.
                self.metrics.peer_dropped("transport", "too_large");
                warn!(%remote, length, "peer frame over the size limit; closing the connection");
                return;
            }
            // Grown as the bytes arrive: a length prefix alone allocates nothing.
            body.clear();
            let read = (&mut reader).take(u64::try_from(length).unwrap_or(u64::MAX)).read_to_end(&mut body).await;
            if read.is_err() || body.len() != length {
                return;
            }
            let opened = match self.auth.open(&body, self.me) {
                Ok(envelope) if envelope.from != self.me && envelope.from.0 < self.replica_count => Ok(envelope),
                Ok(_) => Err(Rejection::WrongSender),
                Err(rejection) => Err(rejection),
            };
            let envelope = match opened {
                Ok(envelope) => envelope,
                Err(rejection) => {
                    self.metrics.peer_dropped("transport", rejection.label());
                    warn!(%remote, reason = rejection.label(), "dropped a peer frame");
                    if let Err(refusal) = admitted.rejected() {
                        self.metrics.peer_dropped("transport", refusal.label());
                        warn!(%remote, "too many rejected peer frames from this address; closing the connection");
                        return;
                    }
                    continue;
                }
            };
            self.peers.message_from(envelope.from);
            self.metrics.peer_received(envelope.from.0, envelope.message.kind(), LENGTH_PREFIX_BYTES + length);
            if !self.driver.deliver(envelope.from, envelope.message).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(delays.iter().all(|delay| *delay <= RECONNECT_DELAY_MAX));
        assert!(delays[9] >= RECONNECT_DELAY_MAX / 2);
        backoff.reset();
        assert!(backoff.next() <= RECONNECT_DELAY_MIN);
    }
}
