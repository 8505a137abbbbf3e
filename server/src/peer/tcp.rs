//! Protocol messages over TCP: one outgoing connection per peer, dialled by the
//! sender, and a listener that reads the peers' connections. Each connection
//! starts with a [`handshake`](super::handshake) on the wire protocol version.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use noted_core::ReplicaId;
use noted_core::wire::VersionRange;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, warn};

use super::auth::{FRAME_BODY_BYTES_MAX, FrameAuth, LENGTH_PREFIX_BYTES, Rejection};
use super::guard::{Admitted, InboundGuard};
use super::handshake::{self, Answer, HANDSHAKE_TIMEOUT, HandshakeError, Hello, VersionRefusals};
use super::warn_limit::WarnLimit;
use super::{PeerTable, SendQueue};
use crate::driver::DriverHandle;
use crate::metrics::Metrics;

const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// Pause before dialling again a peer that speaks no common version: it changes
/// only when one of the two is upgraded.
const VERSION_RETRY_DELAY: Duration = Duration::from_secs(5);

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

/// What the dialling side of a handshake needs: who this replica is, the versions
/// it speaks, and where agreements and refusals are recorded.
#[derive(Clone, Debug)]
pub struct Dialing {
    pub me: ReplicaId,
    pub versions: VersionRange,
    pub auth: FrameAuth,
    pub refusals: Arc<VersionRefusals>,
    pub peers: Arc<PeerTable>,
}

impl Dialing {
    /// Agrees on a version with `peer` over `stream`; on a refusal, logs it once and
    /// says how long to wait before dialling again.
    async fn handshake(&self, stream: &mut TcpStream, peer: ReplicaId, metrics: &Metrics) -> Result<u16, Duration> {
        let hello = Hello { from: self.me, to: peer, versions: self.versions };
        match handshake::offer(stream, &self.auth, hello).await {
            Ok(version) => {
                self.refusals.agreed(peer);
                self.peers.wire_version_with(peer, Some(version));
                Ok(version)
            }
            Err(HandshakeError::NoCommonVersion { theirs }) => {
                metrics.peer_dropped("handshake", "no_common_version");
                self.peers.wire_version_with(peer, None);
                if self.refusals.refused(peer, theirs) {
                    warn!(
                        %peer, theirs = %theirs, ours = %self.versions,
                        "peer {peer} speaks wire protocol versions {theirs} and this replica {}: no common version, \
                         so they cannot talk until one is upgraded (dialling again quietly every {}s)",
                        self.versions, VERSION_RETRY_DELAY.as_secs()
                    );
                }
                Err(VERSION_RETRY_DELAY)
            }
            Err(error) => {
                metrics.peer_dropped("handshake", "failed");
                debug!(%peer, ?error, "peer handshake failed; will dial again");
                Err(Duration::ZERO)
            }
        }
    }
}

/// Keeps a connection to `peer` open and writes `queue`'s frames to it, until shutdown.
pub async fn send_forever(
    local: IpAddr,
    peer: ReplicaId,
    address: SocketAddr,
    queue: Arc<SendQueue>,
    metrics: Arc<Metrics>,
    dialing: Dialing,
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
        let version = match dialing.handshake(&mut stream, peer, &metrics).await {
            Ok(version) => version,
            Err(wait) => {
                let delay = wait.max(backoff.next());
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        metrics.peer_connected();
        info!(%peer, %address, wire_version = version, "connected to peer");
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
                dialing.peers.wire_version_with(peer, None);
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
    pub versions: VersionRange,
    pub refusals: Arc<VersionRefusals>,
    pub warn_limit: Arc<WarnLimit>,
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
        let reading = async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = connection.read(stream, remote, &admitted) => {}
            }
        };
        // In the replica's span, as the listener is: its log lines name the replica.
        tokio::spawn(reading.instrument(Span::current()));
    }
}

/// Why reading a peer connection stops.
#[derive(Debug)]
struct Closed;

impl Inbound {
    async fn read(self, stream: TcpStream, remote: SocketAddr, admitted: &Admitted) {
        debug!(%remote, "peer connection accepted");
        let mut reader = BufReader::new(stream);
        let mut body = Vec::new();
        let handshake = self.accept_handshake(&mut reader, &mut body, remote, admitted);
        let Ok(Ok(peer)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else {
            debug!(%remote, "no handshake from the peer connection; closing it");
            return;
        };
        loop {
            if self.read_frame(&mut reader, &mut body, remote).await.is_err() {
                return;
            }
            let opened = match self.auth.open(&body, self.me) {
                // The handshake named the sender: the connection carries its frames only.
                Ok(envelope) if envelope.from == peer => Ok(envelope),
                Ok(_) => Err(Rejection::WrongSender),
                Err(rejection) => Err(rejection),
            };
            let envelope = match opened {
                Ok(envelope) => envelope,
                Err(rejection) => {
                    if self.rejected(remote, rejection, admitted).is_err() {
                        return;
                    }
                    continue;
                }
            };
            self.peers.message_from(envelope.from);
            self.metrics.peer_received(envelope.from.0, envelope.message.kind(), LENGTH_PREFIX_BYTES + body.len());
            if !self.driver.deliver(envelope.from, envelope.message).await {
                return;
            }
        }
    }

    /// Reads the next frame's body into `body`; `Err` when the connection ends or
    /// cannot be trusted to be in step any more.
    async fn read_frame(
        &self,
        reader: &mut BufReader<TcpStream>,
        body: &mut Vec<u8>,
        remote: SocketAddr,
    ) -> Result<(), Closed> {
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
        if reader.read_exact(&mut prefix).await.is_err() {
            debug!(%remote, "peer connection closed");
            return Err(Closed);
        }
        let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
        if length > FRAME_BODY_BYTES_MAX {
            self.metrics.peer_dropped("transport", "too_large");
            self.warn_limit.warn(|| warn!(%remote, length, "peer frame over the size limit; closing the connection"));
            return Err(Closed);
        }
        // Grown as the bytes arrive: a length prefix alone allocates nothing.
        body.clear();
        let read = reader.take(u64::try_from(length).unwrap_or(u64::MAX)).read_to_end(body).await;
        if read.is_err() || body.len() != length {
            return Err(Closed);
        }
        Ok(())
    }

    /// Counts a dropped frame and charges it to the address; `Err` when the
    /// address has sent too many and the connection is closed.
    fn rejected(&self, remote: SocketAddr, rejection: Rejection, admitted: &Admitted) -> Result<(), Closed> {
        self.metrics.peer_dropped("transport", rejection.label());
        self.warn_limit.warn(|| warn!(%remote, reason = rejection.label(), "dropped a peer frame"));
        admitted.rejected().map_err(|refusal| {
            self.metrics.peer_dropped("transport", refusal.label());
            self.warn_limit
                .warn(|| warn!(%remote, "too many rejected peer frames from this address; closing the connection"));
            Closed
        })
    }

    /// Reads frames until an authentic hello, answers it, and returns the peer
    /// when a version is agreed.
    async fn accept_handshake(
        &self,
        reader: &mut BufReader<TcpStream>,
        body: &mut Vec<u8>,
        remote: SocketAddr,
        admitted: &Admitted,
    ) -> Result<ReplicaId, Closed> {
        let hello = loop {
            self.read_frame(reader, body, remote).await?;
            match self.auth.open_bytes(body) {
                Ok(inner) => break Hello::decode(inner),
                Err(rejection) => self.rejected(remote, rejection, admitted)?,
            }
        };
        let hello = match hello {
            None => Err(Rejection::Malformed),
            Some(hello) if hello.to != self.me => Err(Rejection::WrongReceiver),
            Some(hello) if hello.from == self.me || hello.from.0 >= self.replica_count => Err(Rejection::WrongSender),
            Some(hello) => Ok(hello),
        };
        // An authentic frame that is no valid hello: the sender is not in step.
        let hello = hello.map_err(|rejection| {
            let _ = self.rejected(remote, rejection, admitted);
            Closed
        })?;
        let answer = handshake::decide(self.versions, hello.versions);
        let stream = reader.get_mut();
        stream.write_all(&self.auth.seal_bytes(&answer.encode())).await.map_err(|_| Closed)?;
        match answer {
            Answer::Agree { version } => {
                self.refusals.agreed(hello.from);
                debug!(%remote, peer = %hello.from, wire_version = version, "peer connection agreed on a version");
                Ok(hello.from)
            }
            Answer::Refuse { .. } => {
                self.metrics.peer_dropped("handshake", "no_common_version");
                if self.refusals.refused(hello.from, hello.versions) {
                    warn!(
                        peer = %hello.from, theirs = %hello.versions, ours = %self.versions,
                        "peer {} speaks wire protocol versions {} and this replica {}: no common version, \
                         so its connections are refused until one is upgraded",
                        hello.from, hello.versions, self.versions
                    );
                }
                let _ = stream.shutdown().await;
                Err(Closed)
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
