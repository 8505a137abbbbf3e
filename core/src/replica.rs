//! The replica: one `Input` in, the effects out, one deadline queried.

use serde::{Deserialize, Serialize};

use crate::client_table::ClientTable;
use crate::config::{Config, ConfigError, ProtocolKind};
use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::message::Message;
use crate::operation::{ClientRequest, Refusal, Reply};
use crate::protocol::local_write::LocalWrite;
use crate::protocol::remote_write::RemoteWrite;
use crate::protocol::vr::Vr;
use crate::protocol::{Outputs, Protocol};
use crate::storage::{DiskImage, OpenError, StorageOp};
use crate::store::{Change, NoteStore};
use crate::time::Instant;
use crate::wire::size;

/// Everything that can happen to a replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A client's request, arriving at this replica.
    Request(ClientRequest),
    /// A message from another replica, already checked against the envelope
    /// (cluster id and receiver) by [`crate::wire`].
    Message { from: ReplicaId, message: Message },
    /// The deadline returned by [`Replica::next_timeout`] has passed.
    Timeout,
    /// Every storage operation before [`StorageOp::Sync`] with this `id` is durable.
    Synced { id: u64 },
    /// The host cannot carry out this replica's writes (the disk is full, or writes
    /// fail) and keeps retrying them in order. The replica stops taking part in
    /// anything that would make it write or promise: a primary steps down, a backup
    /// takes no prepares, until [`Input::StorageResumed`].
    StorageStalled,
    /// The writes the host was retrying went through.
    StorageResumed,
}

/// Everything a replica asks its host to do or to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    Send {
        to: ReplicaId,
        message: Message,
    },
    /// The answer to the request `(client, request_number)`, for the host that holds the client.
    Reply {
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        freshness: Freshness,
    },
    Event(Event),
    /// Something to write to the data directory, or a sync to wait for (durable storage only).
    Storage(StorageOp),
}

/// Whether a read reflects every acknowledged write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Ordered with the writes: linearizable (all writes, and linearizable reads).
    Ordered,
    /// Served from this replica's copy, which had applied updates up to `applied`
    /// and may lag the ordering replica.
    PossiblyStale { applied: u64 },
}

/// What happened inside a replica, for logs, metrics and traces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A peer message was refused; counted in [`Counters::messages_dropped`].
    Dropped {
        from: ReplicaId,
        reason: DropReason,
    },
    /// A request was sent on to the replica that orders it.
    Forwarded {
        client: ClientId,
        request_number: RequestNumber,
        to: ReplicaId,
    },
    /// A write was given its place in the order and sent to the backups.
    Ordered {
        sequence: u64,
        client: ClientId,
        request_number: RequestNumber,
        operation: String,
    },
    /// Every backup acknowledged the write: its client is answered.
    Acknowledged {
        sequence: u64,
        client: ClientId,
        request_number: RequestNumber,
    },
    /// Updates were sent again to a replica that had not acknowledged them.
    Retransmitted {
        to: ReplicaId,
        first_sequence: u64,
        entries: usize,
    },
    /// A replica behind the retained log was sent the whole state.
    SnapshotSent {
        to: ReplicaId,
        sequence: u64,
    },
    SnapshotInstalled {
        from: ReplicaId,
        sequence: u64,
    },
    /// The primary role of one item moved here (local-write).
    OwnershipAcquired {
        item: String,
        epoch: u64,
        from: ReplicaId,
    },
    /// The primary role of one item moved away (local-write).
    OwnershipHandedOff {
        item: String,
        epoch: u64,
        to: ReplicaId,
    },
    /// vr: this replica started a view change to `view`.
    ViewChangeStarted {
        view: u64,
    },
    /// vr: `view` started with `primary` as its primary.
    ViewStarted {
        view: u64,
        primary: ReplicaId,
    },
    /// vr: this replica finished recovery and takes part again.
    Recovered {
        view: u64,
        op_number: u64,
    },
    /// A write took effect on this replica's store: the change feed, in the order
    /// this replica applied writes.
    Committed {
        change: Change,
    },
    /// A request was refused because a bounded queue was full.
    Overloaded {
        queue: String,
    },
}

/// Why a peer message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A message of another protocol than the cluster's.
    WrongProtocol,
    /// A message only the primary may send, from a replica that is not the primary;
    /// or one only the primary may receive, at a replica that is not.
    NotPrimary,
    /// A sequence or acknowledgement beyond anything the sender could know.
    ImpossibleSequence,
    /// A message that would make this replica write or promise, while its disk is
    /// stalled (see [`Input::StorageStalled`]).
    StorageStalled,
    /// An update that contradicts one already applied or buffered.
    Conflicting,
    /// Too far ahead to buffer; the sender retransmits later.
    TooFarAhead,
    /// A message that names an item or epoch this replica cannot accept.
    StaleEpoch,
    /// A chunk of another snapshot than the one being received, or a snapshot
    /// whose pieces do not match its digest.
    SnapshotMismatch,
}

impl DropReason {
    /// The reason as a metrics label, as it is spelt in JSON.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::WrongProtocol => "wrong_protocol",
            DropReason::NotPrimary => "not_primary",
            DropReason::ImpossibleSequence => "impossible_sequence",
            DropReason::StorageStalled => "storage_stalled",
            DropReason::Conflicting => "conflicting",
            DropReason::TooFarAhead => "too_far_ahead",
            DropReason::StaleEpoch => "stale_epoch",
            DropReason::SnapshotMismatch => "snapshot_mismatch",
        }
    }
}

/// Counts of things that went wrong or were refused, kept by the replica itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub messages_dropped: u64,
    pub requests_refused_overloaded: u64,
}

/// The role a replica plays now, for `/status` and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Backup,
    /// local-write: the primary role is per note; this replica holds it for `items_owned` items.
    Owner {
        items_owned: u64,
    },
    /// vr: a view change is under way.
    ViewChange,
    /// vr: restarted with empty memory, learning the state before taking part.
    Recovering,
}

/// A replica's view of itself, for `/status`, traces and the simulator's checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub replica: ReplicaId,
    pub protocol: String,
    pub role: Role,
    /// vr: the current view.
    pub view: Option<u64>,
    /// The last operation this replica holds (applied or not): vr's op number.
    pub op_number: u64,
    /// Updates applied to this replica's store: vr's commit number.
    pub applied: u64,
    /// Requests waiting here for other replicas.
    pub pending_requests: usize,
    /// vr with durable storage: repairing a damaged log or checkpoint from peers.
    pub repairing: bool,
    /// The host cannot write to this replica's disk (see [`Input::StorageStalled`]).
    #[serde(default)]
    pub storage_stalled: bool,
    pub counters: Counters,
}

#[derive(Debug)]
enum Engine {
    RemoteWrite(RemoteWrite),
    LocalWrite(LocalWrite),
    Vr(Vr),
}

/// One replica of a noted cluster, as a deterministic state machine.
#[derive(Debug)]
pub struct Replica {
    engine: Engine,
    /// The latest time given; time never goes backwards.
    now: Instant,
    counters: Counters,
    /// Requests carrying more JSON than a note may hold are refused on arrival.
    body_bytes_max: usize,
}

impl Replica {
    /// A replica with empty memory: a fresh start, or a restart after a crash.
    pub fn new(config: Config, now: Instant) -> Result<Replica, ConfigError> {
        config.validate()?;
        let body_bytes_max = config.limits.store.body_bytes_max;
        let engine = match config.protocol {
            ProtocolKind::RemoteWrite { primary } => Engine::RemoteWrite(RemoteWrite::new(config, primary, now)),
            ProtocolKind::LocalWrite => Engine::LocalWrite(LocalWrite::new(config, now)),
            ProtocolKind::Vr => Engine::Vr(Vr::new(config, now)),
        };
        Ok(Replica { engine, now, counters: Counters::default(), body_bytes_max })
    }

    /// A replica restarted from its data directory (`config.storage` is disk).
    /// Refuses, with the reason, a directory of another cluster, replica or protocol,
    /// of an unknown format, or with no intact superblock; a primary-backup replica
    /// also refuses a damaged checkpoint (vr repairs one from its peers).
    pub fn open(config: Config, disk: &DiskImage, now: Instant) -> Result<Replica, OpenError> {
        config.validate().map_err(|error| OpenError::Config(error.to_string()))?;
        if config.storage != crate::config::StorageKind::Disk {
            return Err(OpenError::Config("a data directory is opened with \"storage\": \"disk\"".into()));
        }
        let body_bytes_max = config.limits.store.body_bytes_max;
        let engine = match config.protocol {
            ProtocolKind::Vr => {
                let recovered = crate::storage::open(&config, disk)?;
                Engine::Vr(Vr::reopen(config, recovered, now))
            }
            ProtocolKind::RemoteWrite { .. } => {
                let recovered = crate::storage::updates::open_updates(&config, disk)?;
                Engine::RemoteWrite(RemoteWrite::reopen(config, recovered, now)?)
            }
            ProtocolKind::LocalWrite => {
                let recovered = crate::storage::updates::open_updates(&config, disk)?;
                Engine::LocalWrite(LocalWrite::reopen(config, recovered, now)?)
            }
        };
        Ok(Replica { engine, now, counters: Counters::default(), body_bytes_max })
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        assert!(now >= self.now, "time went backwards: {now} after {}", self.now);
        self.now = now;
        let mut outputs = Outputs::default();
        let body_bytes_max = self.body_bytes_max;
        let protocol = self.protocol_mut();
        match input {
            Input::Request(request) if size::operation_text_bytes(&request.operation) > body_bytes_max => {
                // Refused before it enters any message: every message's bound rests on it.
                let refusal =
                    Refusal::invalid(format!("the request's body is over the limit of {body_bytes_max} bytes"));
                outputs.refuse(request.client, request.request_number, refusal);
            }
            Input::Request(request) => protocol.on_request(now, request, &mut outputs),
            Input::Message { from, message } => protocol.on_message(now, from, message, &mut outputs),
            Input::Timeout => protocol.on_timeout(now, &mut outputs),
            Input::Synced { id } => protocol.on_synced(now, id, &mut outputs),
            Input::StorageStalled => protocol.on_storage_stalled(now, true, &mut outputs),
            Input::StorageResumed => protocol.on_storage_stalled(now, false, &mut outputs),
        }
        self.protocol_mut().check_invariants();
        for change in self.protocol_mut().store_mut().take_changes() {
            outputs.event(Event::Committed { change });
        }
        let outputs = outputs.into_vec();
        for output in &outputs {
            match output {
                Output::Event(Event::Dropped { .. }) => self.counters.messages_dropped += 1,
                Output::Event(Event::Overloaded { .. }) => self.counters.requests_refused_overloaded += 1,
                _ => {}
            }
        }
        outputs
    }

    /// When the host should next give [`Input::Timeout`]; `None` when nothing is scheduled.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.protocol().next_timeout()
    }

    pub fn store(&self) -> &NoteStore {
        self.protocol().store()
    }

    pub fn client_table(&self) -> &ClientTable {
        self.protocol().client_table()
    }

    pub fn status(&self) -> Status {
        let mut status = self.protocol().status();
        status.counters = self.counters;
        status
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn protocol(&self) -> &dyn Protocol {
        match &self.engine {
            Engine::RemoteWrite(engine) => engine,
            Engine::LocalWrite(engine) => engine,
            Engine::Vr(engine) => engine,
        }
    }

    fn protocol_mut(&mut self) -> &mut dyn Protocol {
        match &mut self.engine {
            Engine::RemoteWrite(engine) => engine,
            Engine::LocalWrite(engine) => engine,
            Engine::Vr(engine) => engine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn drop_reason_labels_are_their_json_names() {
        for reason in [
            DropReason::WrongProtocol,
            DropReason::NotPrimary,
            DropReason::ImpossibleSequence,
            DropReason::Conflicting,
            DropReason::TooFarAhead,
            DropReason::StaleEpoch,
            DropReason::SnapshotMismatch,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.label());
        }
    }
}
