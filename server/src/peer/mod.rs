//! Transport between replicas.
//!
//! - [`tcp`]: protocol messages. Each replica dials every peer for its own
//!   outgoing direction and only writes on that connection; it accepts the
//!   peers' connections and only reads from them. So a pair of replicas shares
//!   two connections, one per direction, and no side has to decide who dials.
//!   Connections are re-dialled with exponential back-off and jitter; each
//!   peer has a bounded send queue that drops its oldest frame when full (the
//!   protocols retransmit what matters). Snapshot chunks wait in a lane of their
//!   own, written one at a time and only when no other frame waits: a state
//!   transfer never sits in front of prepares and commits.
//! - [`auth`]: every frame carries the cluster id and an HMAC-SHA256 with the
//!   cluster's shared secret; anything else is dropped and counted.
//! - [`guard`]: per address, a cap on open connections and a slowly refilled
//!   allowance of rejected frames; a flooding connection is closed.
//! - [`handshake`]: every connection starts by agreeing on a wire protocol
//!   version; a peer with none in common is refused, and logged once.
//! - [`warn_limit`]: warnings about bad peer input are rate-limited (every drop is
//!   counted in `/metrics`).
//! - [`udp`]: heartbeats only (who is alive, at which view and op number), for
//!   `/status`; losing them costs nothing. Each carries its sender's boot id and
//!   sequence number inside the MAC: a replayed or stale one is dropped.
//! - [`faults`]: test-only loss and delay of outgoing frames.

pub mod auth;
pub mod faults;
pub mod guard;
pub mod handshake;
pub mod tcp;
pub mod udp;
pub mod warn_limit;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant as StdInstant;

use noted_core::wire::Envelope;
use noted_core::{ClusterId, Message, ReplicaId};
use serde::Serialize;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use auth::FrameAuth;
use faults::{FaultDecision, TestFaults};

/// What this replica last heard of each peer, for `/status`.
#[derive(Debug)]
pub struct PeerTable {
    contacts: Mutex<Vec<PeerContact>>,
}

#[derive(Clone, Debug, Default)]
pub struct PeerContact {
    pub last_message: Option<StdInstant>,
    pub last_heartbeat: Option<StdInstant>,
    pub reported: Option<udp::Heartbeat>,
    /// The wire protocol version of this replica's connection to the peer.
    pub wire_version: Option<u16>,
}

/// One peer as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    pub replica: u8,
    pub peer_address: String,
    pub client_address: String,
    /// Milliseconds since the last authenticated message or heartbeat; `null` if never.
    pub last_contact_ms_ago: Option<u64>,
    pub view: Option<u64>,
    pub role: Option<String>,
    pub op_number: Option<u64>,
    pub applied: Option<u64>,
    /// How many updates this replica has applied that the peer had not, at its last heartbeat.
    pub lag: Option<u64>,
    /// The wire protocol version agreed on this replica's connection to the peer;
    /// `null` before the first or after a refused handshake.
    pub wire_version: Option<u16>,
}

impl PeerTable {
    pub fn new(replica_count: usize) -> PeerTable {
        PeerTable { contacts: Mutex::new(vec![PeerContact::default(); replica_count]) }
    }

    fn with<T>(&self, update: impl FnOnce(&mut Vec<PeerContact>) -> T) -> T {
        let mut contacts = self.contacts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut contacts)
    }

    pub fn message_from(&self, peer: ReplicaId) {
        self.with(|contacts| {
            if let Some(contact) = contacts.get_mut(peer.index()) {
                contact.last_message = Some(StdInstant::now());
            }
        });
    }

    /// Records `heartbeat` if it is newer, by (boot, sequence), than the last one
    /// recorded of its replica; `false` for a replayed or stale one, which changes nothing.
    pub fn heartbeat_from(&self, heartbeat: udp::Heartbeat) -> bool {
        self.with(|contacts| {
            let Some(contact) = contacts.get_mut(usize::from(heartbeat.replica)) else { return false };
            if contact.reported.as_ref().is_some_and(|last| last.order() >= heartbeat.order()) {
                return false;
            }
            contact.last_heartbeat = Some(StdInstant::now());
            contact.reported = Some(heartbeat);
            true
        })
    }

    /// The version agreed on the connection to `peer`, or `None` when it was refused.
    pub fn wire_version_with(&self, peer: ReplicaId, version: Option<u16>) {
        self.with(|contacts| {
            if let Some(contact) = contacts.get_mut(peer.index()) {
                contact.wire_version = version;
            }
        });
    }

    pub fn contact(&self, peer: ReplicaId) -> PeerContact {
        self.with(|contacts| contacts.get(peer.index()).cloned().unwrap_or_default())
    }
}

/// Snapshot chunks queued for one peer at most; the receiver asks for one at a time.
const BULK_FRAMES_MAX: usize = 4;

/// The two lanes of sealed frames for one peer, each bounded.
#[derive(Debug)]
pub struct SendQueue {
    lanes: Mutex<Lanes>,
    frames_max: usize,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Lanes {
    /// Protocol traffic: prepares, acknowledgements, commits, requests, replies.
    urgent: VecDeque<Vec<u8>>,
    /// Snapshot chunks.
    bulk: VecDeque<Vec<u8>>,
}

/// Which lane a frame waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Urgent,
    Bulk,
}

impl SendQueue {
    pub fn new(frames_max: usize) -> SendQueue {
        assert!(frames_max > 0, "a send queue holds at least one frame");
        SendQueue { lanes: Mutex::new(Lanes::default()), frames_max, ready: Notify::new() }
    }

    /// Queues `frame` in `lane`; returns `true` when the lane's oldest frame was
    /// dropped to make room.
    pub fn push(&self, lane: Lane, frame: Vec<u8>) -> bool {
        let overflowed = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (frames, frames_max) = match lane {
                Lane::Urgent => (&mut lanes.urgent, self.frames_max),
                Lane::Bulk => (&mut lanes.bulk, BULK_FRAMES_MAX),
            };
            let overflowed = frames.len() >= frames_max;
            if overflowed {
                frames.pop_front();
            }
            frames.push_back(frame);
            overflowed
        };
        self.ready.notify_one();
        overflowed
    }

    /// Waits for frames, then moves to the end of `batch` every urgent frame, so
    /// that one write carries them all; or, when none waits, one bulk frame.
    pub async fn pop_all(&self, batch: &mut Vec<u8>) {
        loop {
            {
                let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if !lanes.urgent.is_empty() {
                    for frame in lanes.urgent.drain(..) {
                        batch.extend_from_slice(&frame);
                    }
                    return;
                }
                if let Some(frame) = lanes.bulk.pop_front() {
                    batch.extend_from_slice(&frame);
                    return;
                }
            }
            self.ready.notified().await;
        }
    }
}

/// The driver's side of the transport: seals messages and queues them per peer.
#[derive(Debug)]
pub struct Outbox {
    me: ReplicaId,
    cluster: ClusterId,
    auth: FrameAuth,
    queues: Vec<Arc<SendQueue>>,
    faults: TestFaults,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn new(
        me: ReplicaId,
        cluster: ClusterId,
        auth: FrameAuth,
        queues: Vec<Arc<SendQueue>>,
        faults: TestFaults,
        metrics: Arc<Metrics>,
    ) -> Outbox {
        Outbox { me, cluster, auth, queues, faults, metrics }
    }

    pub fn send(&self, to: ReplicaId, message: Message) {
        let Some(queue) = self.queues.get(to.index()).filter(|_| to != self.me) else {
            self.metrics.peer_dropped("transport", "no_such_peer");
            return;
        };
        let kind = message.kind();
        let lane = if message.is_bulk() { Lane::Bulk } else { Lane::Urgent };
        let frame = self.auth.seal(&Envelope { cluster: self.cluster, from: self.me, to, message });
        self.metrics.peer_sent(to.0, kind, frame.len());
        match self.faults.decide() {
            FaultDecision::Deliver => self.enqueue(queue, lane, frame),
            FaultDecision::Drop => self.metrics.peer_dropped("transport", "test_fault_loss"),
            FaultDecision::Delay(delay) => {
                let queue = Arc::clone(queue);
                let metrics = Arc::clone(&self.metrics);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if queue.push(lane, frame) {
                        metrics.peer_dropped("transport", "queue_full");
                    }
                });
            }
        }
    }

    fn enqueue(&self, queue: &SendQueue, lane: Lane, frame: Vec<u8>) {
        if queue.push(lane, frame) {
            self.metrics.peer_dropped("transport", "queue_full");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_frame() {
        let queue = SendQueue::new(2);
        assert!(!queue.push(Lane::Urgent, vec![1]));
        assert!(!queue.push(Lane::Urgent, vec![2]));
        assert!(queue.push(Lane::Urgent, vec![3]));
        let mut batch = Vec::new();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![2, 3]);
    }

    #[tokio::test]
    async fn queued_frames_leave_together() {
        let queue = SendQueue::new(4);
        queue.push(Lane::Urgent, vec![1, 2]);
        queue.push(Lane::Urgent, vec![3]);
        let mut batch = vec![0];
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![0, 1, 2, 3]);
        queue.push(Lane::Urgent, vec![4]);
        batch.clear();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![4]);
    }

    #[tokio::test]
    async fn bulk_frames_leave_one_at_a_time_and_only_when_nothing_else_waits() {
        let queue = SendQueue::new(8);
        queue.push(Lane::Bulk, vec![10]);
        queue.push(Lane::Bulk, vec![11]);
        queue.push(Lane::Urgent, vec![1]);
        let mut batch = Vec::new();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![1], "the prepare goes first, though queued last");
        batch.clear();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![10], "one chunk per write");
        queue.push(Lane::Urgent, vec![2]);
        batch.clear();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![2], "what arrived during the chunk's write comes before the next chunk");
        for chunk in 20..30 {
            queue.push(Lane::Bulk, vec![chunk]);
        }
        batch.clear();
        queue.pop_all(&mut batch).await;
        assert_eq!(batch, vec![26], "the bulk lane keeps its newest {BULK_FRAMES_MAX} chunks");
    }
}
