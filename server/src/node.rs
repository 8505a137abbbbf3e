//! One replica, wired up: its driver, its peer transport, its HTTP API.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use noted_core::ReplicaId;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, info_span, warn};

use crate::config::{NodeSettings, ReplicaAddresses};
use crate::driver::Driver;
use crate::failure::Failure;
use crate::http;
use crate::metrics::Metrics;
use crate::peer::auth::FrameAuth;
use crate::peer::handshake::VersionRefusals;
use crate::peer::{self, Outbox, PeerTable, SendQueue};

/// Extra time, past the request timeout, that in-flight requests get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A replica's three sockets, bound before it starts so that binding errors come first.
#[derive(Debug)]
pub struct BoundSockets {
    pub http: TcpListener,
    pub peer: TcpListener,
    pub heartbeat: UdpSocket,
}

impl BoundSockets {
    pub async fn bind(addresses: ReplicaAddresses) -> Result<BoundSockets, Failure> {
        let describe = |kind: &str, address, error: io::Error| {
            Failure::general(format!("cannot bind the {kind} address {address}: {error}"))
        };
        Ok(BoundSockets {
            http: TcpListener::bind(addresses.client)
                .await
                .map_err(|error| describe("client", addresses.client, error))?,
            peer: TcpListener::bind(addresses.peer).await.map_err(|error| describe("peer", addresses.peer, error))?,
            heartbeat: UdpSocket::bind(addresses.heartbeat)
                .await
                .map_err(|error| describe("heartbeat", addresses.heartbeat, error))?,
        })
    }

    /// The addresses actually bound (port 0 becomes the port the OS chose).
    pub fn addresses(&self) -> io::Result<ReplicaAddresses> {
        Ok(ReplicaAddresses {
            client: self.http.local_addr()?,
            peer: self.peer.local_addr()?,
            heartbeat: self.heartbeat.local_addr()?,
        })
    }
}

/// Runs one replica until `shutdown`, then stops accepting requests, answers or
/// fails those in flight, and closes the peer connections.
pub async fn run(settings: NodeSettings, sockets: BoundSockets, shutdown: CancellationToken) -> Result<(), Failure> {
    // Every log line of this replica's tasks names it once: dev runs three in one
    // process. A root span, so that a caller's span is not printed before it again.
    let span = info_span!(parent: None, "replica", id = settings.me().0);
    run_in_span(settings, sockets, shutdown, span.clone()).instrument(span).await
}

async fn run_in_span(
    settings: NodeSettings,
    sockets: BoundSockets,
    shutdown: CancellationToken,
    span: Span,
) -> Result<(), Failure> {
    let me = settings.me();
    let cluster = settings.core.cluster;
    let replica_count = settings.core.replica_count;
    let metrics = Arc::new(Metrics::default());
    let peers = Arc::new(PeerTable::new(usize::from(replica_count)));
    let auth = FrameAuth::new(cluster, &settings.secret);
    let queues: Vec<Arc<SendQueue>> =
        (0..replica_count).map(|_| Arc::new(SendQueue::new(settings.peer_queue_frames_max))).collect();
    if settings.test_faults.is_active() {
        warn!(faults = ?settings.test_faults, "test faults are on: outgoing peer frames are dropped or delayed");
    }
    let outbox = Outbox::new(me, cluster, auth.clone(), queues.clone(), settings.test_faults, Arc::clone(&metrics));
    if let Some(request) = settings.test_faults.panic_at_request {
        warn!(request, "test fault is on: the driver panics on this client request");
    }
    if let Some(request) = settings.test_faults.stall_at_request {
        warn!(request, "test fault is on: the driver stops taking inputs at this client request");
    }
    let (driver, driver_handle) =
        Driver::new(settings.core.clone(), &settings.storage, outbox, Arc::clone(&metrics), settings.test_faults)?;

    // The internals outlive the HTTP server, so that requests in flight can still be answered.
    let internals = CancellationToken::new();
    let mut driver_task = tokio::spawn(driver.run(internals.clone()).instrument(span.clone()));
    let heartbeat_socket = Arc::new(sockets.heartbeat);
    let peer_list: Vec<(ReplicaId, ReplicaAddresses)> = settings
        .replicas
        .iter()
        .enumerate()
        .map(|(index, addresses)| (ReplicaId(u8::try_from(index).expect("checked count")), *addresses))
        .filter(|(replica, _)| *replica != me)
        .collect();
    let local_peer_ip = settings.addresses().peer.ip();
    let refusals = Arc::new(VersionRefusals::new(usize::from(replica_count)));
    let dialing = peer::tcp::Dialing {
        me,
        versions: settings.wire_versions,
        auth: auth.clone(),
        refusals: Arc::clone(&refusals),
        peers: Arc::clone(&peers),
    };
    for (peer, addresses) in &peer_list {
        let queue = Arc::clone(&queues[peer.index()]);
        tokio::spawn(
            peer::tcp::send_forever(
                local_peer_ip,
                *peer,
                addresses.peer,
                queue,
                Arc::clone(&metrics),
                dialing.clone(),
                internals.clone(),
            )
            .instrument(span.clone()),
        );
    }
    let inbound = peer::tcp::Inbound {
        me,
        replica_count,
        versions: settings.wire_versions,
        refusals,
        warn_limit: Arc::default(),
        auth: auth.clone(),
        guard: Arc::default(),
        driver: driver_handle.clone(),
        peers: Arc::clone(&peers),
        metrics: Arc::clone(&metrics),
    };
    tokio::spawn(peer::tcp::receive_forever(sockets.peer, inbound, internals.clone()).instrument(span.clone()));
    tokio::spawn(
        peer::udp::send_forever(
            Arc::clone(&heartbeat_socket),
            me,
            settings.addresses().client,
            peer_list.iter().map(|(peer, addresses)| (*peer, addresses.heartbeat)).collect(),
            auth.clone(),
            driver_handle.clone(),
            internals.clone(),
        )
        .instrument(span.clone()),
    );
    tokio::spawn(
        peer::udp::receive_forever(
            heartbeat_socket,
            peer_list.iter().map(|(peer, addresses)| (*peer, addresses.heartbeat)).collect(),
            auth,
            Arc::clone(&peers),
            Arc::clone(&metrics),
            internals.clone(),
        )
        .instrument(span.clone()),
    );

    let app = Arc::new(http::App {
        driver: driver_handle,
        metrics,
        peers,
        me,
        cluster: cluster.0,
        replicas: Arc::new(settings.replicas.clone()),
        request_timeout: settings.request_timeout,
        note_bytes_max: settings.core.limits.store.body_bytes_max,
        request_body_bytes_max: settings.request_body_bytes_max,
        allowed_origins: http::cors::AllowedOrigins::new(settings.allowed_origins.clone()),
        data_dir: settings.storage.data_dir().map(|dir| dir.display().to_string()),
    });
    let router = http::router(app);
    let drain_limit = settings.request_timeout + SHUTDOWN_GRACE;
    // The HTTP server stops with `server_shutdown`: at the process's shutdown, or
    // when the driver stops by itself (its storage failed).
    let server_shutdown = shutdown.child_token();
    let server = http::serve::serve(sockets.http, router, settings.header_read_timeout, server_shutdown.clone());
    tokio::pin!(server);
    let stopped_by = tokio::select! {
        () = &mut server => None,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain_limit).await } => {
            warn!("requests still in flight after the grace period; closing anyway");
            None
        }
        finished = &mut driver_task => {
            server_shutdown.cancel();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await;
            Some(finished.ok().flatten())
        }
    };
    info!(replica = %me, "stopped accepting requests; closing peers");
    internals.cancel();
    let failure = match stopped_by {
        Some(failure) => failure,
        None => driver_task.await.ok().flatten(),
    };
    failure.map_or(Ok(()), Err)
}
