//! Primary-backup replication with a fixed primary: the remote-write protocol.
//!
//! The primary named in the configuration orders every write. Any replica accepts
//! any request: a write (or a linearizable read) that arrives at a backup is
//! forwarded to the primary, and the answer comes back the same way.
//!
//! ```text
//! client ── request ──▶ R1 (backup) ── Forward ──▶ R0 (primary)
//!                                                  executes, assigns sequence s
//!                        R1 ◀── Update{s} ──────── R0 ──── Update{s} ──▶ R2
//!                        R1 ── UpdateAck{s} ─────▶ R0 ◀─── UpdateAck{s} ─ R2
//! client ◀── reply ───── R1 ◀── ForwardReply ───── R0   (only after every backup acknowledged s)
//! ```
//!
//! An update leaves at once while fewer than two update messages to that backup are
//! unacknowledged; updates assigned meanwhile leave together in one message with the
//! next acknowledgement (batching under load).
//!
//! Backups apply updates strictly in sequence order: a duplicate is acknowledged
//! again and otherwise ignored, an update that arrives early is buffered (within
//! `log_entries_max`), and acknowledgements are cumulative. The primary keeps every
//! update some backup has not acknowledged and sends it again after
//! `retransmit_timeout`; it also sends a heartbeat every `heartbeat_interval`, so a
//! backup that lost messages, or its memory, learns how far behind it is. A backup
//! behind the primary's retained log is sent the manifest of a snapshot and
//! fetches it chunk by chunk ([`crate::snapshot`]); no message carries more than
//! `message_bytes_max` of updates, notes or client records.
//!
//! # Fault model
//!
//! Tolerated, with either storage: message loss, duplication, reordering and delay;
//! partitions (writes wait until every backup is reachable again, nothing is lost);
//! a backup that crashes and restarts (in memory, with empty memory: it catches up by
//! snapshot); pauses and clock skew (time only drives retransmission).
//!
//! In memory (`"storage": "memory"`), not tolerated: a crash of the primary. Its
//! memory is the only copy of the order of writes not yet on every backup, and
//! nothing elects a new primary; a primary that restarts empty assigns sequence
//! numbers and note ids from the start again. The simulator injects primary crashes
//! in memory only when asked to go beyond this model, to show exactly that.
//!
//! With disks (`"storage": "disk"`, [`crate::storage::updates`]), tolerated as well:
//! crashes of any replica, the primary included, and of every replica at once, at any
//! moment, with each disk keeping what was synced (and any part of the rest, torn or
//! not). A replica writes every update it applies and sends or answers nothing before
//! the write is synced: a backup acknowledges an update, and the primary sends it to
//! the backups or answers its client, only once it is on disk. So a restarted primary
//! holds every sequence any backup or client has seen, and carries on from there with
//! the same store, client table and next note id; it cannot reset a backup. While the
//! primary is down, writes wait (nothing elects another). Not tolerated: damage to
//! synced bytes, or a lost disk. A damaged checkpoint or superblock is refused at start
//! ([`crate::storage::OpenError`]), but a damaged log record reads as the end of the
//! log, so the primary could assign an acknowledged sequence again. Nothing repairs a
//! disk from peers: a backup whose directory is lost may start from a new one and
//! fetch a snapshot, but a primary started on a new directory resets the cluster.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::client_table::{Admission, ClientTable};
use crate::config::{Config, Defect, StorageKind};
use crate::hlc::Timestamp;
use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::message::Message as AnyMessage;
use crate::operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
use crate::protocol::{Outputs, PendingForwards, Protocol, SEQUENCE_NUMBER_MAX};
use crate::replica::{DropReason, Event, Freshness, Role, Status};
use crate::snapshot::{Chunk, Download, Images, Manifest, Progress, SnapshotId};
use crate::storage::updates::{RecoveredUpdates, UpdateJournal};
use crate::store::NoteStore;
use crate::time::Instant;
use crate::wire::size;

/// A snapshot chunk asked for this many times without an answer: the download is
/// abandoned until the primary names a snapshot again.
const CHUNK_REQUESTS_MAX: u32 = 6;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A request that arrived at a backup, on its way to the primary.
    Forward {
        request: ClientRequest,
    },
    /// The primary's answer to a forwarded request, for the replica holding the client.
    ForwardReply {
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
    },
    /// Updates in sequence order (possibly none: a heartbeat), and the primary's
    /// latest sequence so that the backup knows whether it is behind.
    Update {
        entries: Vec<Update>,
        latest_sequence: u64,
    },
    /// Cumulative: every update up to `applied` is applied. `behind` asks for what follows.
    UpdateAck {
        applied: u64,
        behind: bool,
    },
    /// The manifest of a snapshot of the whole replicated state, for a backup behind
    /// the retained log: it fetches the snapshot with `GetSnapshotChunk`.
    Snapshot {
        manifest: Manifest,
    },
    GetSnapshotChunk {
        snapshot: SnapshotId,
        chunk: u64,
    },
    SnapshotChunk {
        chunk: Chunk,
    },
    /// The primary no longer holds `snapshot`.
    SnapshotUnavailable {
        snapshot: SnapshotId,
    },
}

impl Message {
    /// Whether every sequence number in the message is at most [`SEQUENCE_NUMBER_MAX`].
    pub fn numbers_within_bounds(&self) -> bool {
        let within = |number: u64| number <= SEQUENCE_NUMBER_MAX;
        match self {
            Message::Update { entries, latest_sequence } => {
                within(*latest_sequence) && entries.iter().all(|update| within(update.sequence))
            }
            Message::UpdateAck { applied, .. } => within(*applied),
            Message::Snapshot { manifest } => within(manifest.id.sequence),
            Message::GetSnapshotChunk { snapshot, .. } | Message::SnapshotUnavailable { snapshot } => {
                within(snapshot.sequence)
            }
            Message::SnapshotChunk { chunk } => within(chunk.snapshot.sequence),
            Message::Forward { .. } | Message::ForwardReply { .. } => true,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Message::Forward { .. } => "forward",
            Message::ForwardReply { .. } => "forward_reply",
            Message::Update { .. } => "update",
            Message::UpdateAck { .. } => "update_ack",
            Message::Snapshot { .. } => "snapshot",
            Message::GetSnapshotChunk { .. } => "get_snapshot_chunk",
            Message::SnapshotChunk { .. } => "snapshot_chunk",
            Message::SnapshotUnavailable { .. } => "snapshot_unavailable",
        }
    }
}

/// One ordered write, as every replica executes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub sequence: u64,
    pub client: ClientId,
    pub request_number: RequestNumber,
    pub operation: Operation,
    pub timestamp: Timestamp,
}

#[derive(Debug)]
pub struct RemoteWrite {
    config: Config,
    primary: ReplicaId,
    store: NoteStore,
    client_table: ClientTable,
    /// The sequence of the last update applied here; at the primary, the last assigned.
    applied: u64,
    forwards: PendingForwards,
    role: RoleState,
    /// `applied` after the previous input, to assert it never goes back.
    applied_before: u64,
    /// With durable storage: every update applied here is written, and nothing leaves
    /// before what it reflects is synced.
    journal: Option<UpdateJournal>,
}

#[derive(Debug)]
enum RoleState {
    Primary(PrimaryState),
    Backup(BackupState),
}

#[derive(Debug)]
struct PrimaryState {
    /// Updates not yet acknowledged by every backup, in sequence order.
    log: VecDeque<Update>,
    backups: BTreeMap<ReplicaId, BackupProgress>,
    /// Writes executed here, waiting for every backup before their client is answered.
    waiting: BTreeMap<u64, Waiter>,
    heartbeat_at: Instant,
    /// Snapshots backups are fetching.
    images: Images,
}

#[derive(Debug)]
struct BackupProgress {
    /// Highest sequence this backup acknowledged: what the primary may count on.
    acknowledged: u64,
    /// Where to send from next: the backup's own latest report, which falls back
    /// when the backup restarted with empty memory.
    send_from: u64,
    /// The last sequence of each update message sent in order and not yet
    /// acknowledged, oldest first (see [`UPDATES_IN_FLIGHT_MAX`]).
    updates_in_flight: VecDeque<u64>,
    retransmit_at: Option<Instant>,
}

/// Update messages a backup may have unacknowledged at once. Writes that arrive
/// meanwhile leave together with the next acknowledgement: under load, one
/// message, one wake-up (and with disks one write and one sync) at the backup
/// for many writes, instead of one per write.
const UPDATES_IN_FLIGHT_MAX: usize = 2;

#[derive(Debug)]
struct Waiter {
    client: ClientId,
    request_number: RequestNumber,
    /// The replica holding the client.
    origin: ReplicaId,
    reply: Reply,
}

#[derive(Debug, Default)]
struct BackupState {
    /// Updates that arrived ahead of a gap, by sequence.
    buffered: BTreeMap<u64, Update>,
    /// The snapshot being fetched from the primary.
    download: Option<Download>,
}

impl RemoteWrite {
    pub(crate) fn new(config: Config, primary: ReplicaId, now: Instant) -> RemoteWrite {
        let role = if config.replica == primary {
            let backups = config
                .peers()
                .map(|peer| {
                    (
                        peer,
                        BackupProgress {
                            acknowledged: 0,
                            send_from: 1,
                            updates_in_flight: VecDeque::new(),
                            retransmit_at: None,
                        },
                    )
                })
                .collect();
            RoleState::Primary(PrimaryState {
                log: VecDeque::new(),
                backups,
                waiting: BTreeMap::new(),
                heartbeat_at: now + config.timing.heartbeat_interval,
                images: Images::default(),
            })
        } else {
            RoleState::Backup(BackupState::default())
        };
        RemoteWrite {
            store: NoteStore::new(config.limits.store),
            client_table: ClientTable::new(config.limits.clients_max),
            forwards: PendingForwards::new(config.limits.pending_requests_max),
            applied: 0,
            applied_before: 0,
            journal: (config.storage == StorageKind::Disk).then(|| UpdateJournal::unformatted(&config)),
            primary,
            role,
            config,
        }
    }

    /// A replica restarted from its data directory, with the store, client table and
    /// sequence it had synced (and perhaps more, which its journal makes durable before
    /// anything leaves). A primary keeps the updates after its checkpoint for backups
    /// that lack them (up to `log_entries_max`; a backup further behind fetches a
    /// snapshot), and learns from the backups' acknowledgements how far each one is.
    pub(crate) fn reopen(
        config: Config,
        recovered: RecoveredUpdates<Update>,
        now: Instant,
    ) -> Result<RemoteWrite, crate::storage::OpenError> {
        let journal = UpdateJournal::reopened(&config, &recovered);
        let primary = match config.protocol {
            crate::config::ProtocolKind::RemoteWrite { primary } => primary,
            _ => unreachable!("a remote-write replica is configured for remote-write"),
        };
        let mut replica = RemoteWrite::new(config, primary, now);
        let RecoveredUpdates { superblock, store, client_table, updates, .. } = recovered;
        replica.store.restore(store);
        replica.client_table = client_table;
        replica.applied = superblock.checkpoint_op;
        for (record, update) in updates.into_iter().enumerate() {
            if update.sequence != replica.applied + 1 || update.operation.is_read() {
                // Remote-write writes each update after the one before it: not its log.
                let file = crate::storage::DiskFile::Wal { generation: superblock.generation }.name();
                return Err(crate::storage::OpenError::OtherProtocol { file, record: record as u64 });
            }
            let reply = replica.store.execute(&update.operation, update.timestamp);
            replica.client_table.record(update.client, update.request_number, reply);
            replica.applied = update.sequence;
            if let RoleState::Primary(state) = &mut replica.role {
                state.log.push_back(update);
                if state.log.len() > replica.config.limits.log_entries_max {
                    state.log.pop_front();
                }
            }
        }
        replica.store.take_changes();
        replica.applied_before = replica.applied;
        if let RoleState::Primary(state) = &mut replica.role {
            for progress in state.backups.values_mut() {
                // Nothing is known of a backup until it acknowledges: the heartbeat
                // tells it the latest sequence, and it asks for what it lacks.
                progress.send_from = replica.applied + 1;
            }
        }
        replica.journal = Some(journal);
        Ok(replica)
    }

    /// Hands the state after an input to the journal, which writes what changed and
    /// holds what must wait for it.
    fn persist(&mut self, outputs: &mut Outputs) {
        if let Some(journal) = &mut self.journal {
            journal.after_input(self.applied, &self.store, &self.client_table, None::<&()>, outputs);
        }
    }

    fn me(&self) -> ReplicaId {
        self.config.replica
    }

    /// Answers the client wherever it is: here, or at the replica that forwarded the request.
    fn answer(
        &self,
        origin: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        outputs: &mut Outputs,
    ) {
        if origin == self.me() {
            outputs.reply(client, request_number, reply, Freshness::Ordered);
        } else {
            outputs.send(origin, wrap(Message::ForwardReply { client, request_number, reply }));
        }
    }

    fn order(&mut self, now: Instant, origin: ReplicaId, request: ClientRequest, outputs: &mut Outputs) {
        let RoleState::Primary(primary) = &mut self.role else {
            unreachable!("only the primary orders requests");
        };
        let ClientRequest { client, request_number, operation, .. } = request;
        if operation.is_read() {
            let reply = self.store.query(&operation);
            self.answer(origin, client, request_number, reply, outputs);
            return;
        }
        if let Some(waiter) = primary.waiting.values_mut().find(|waiter| waiter.client == client) {
            // A retry of a write still being replicated: answer wherever the latest copy came from.
            if waiter.request_number == request_number {
                waiter.origin = origin;
                return;
            }
        }
        match self.client_table.admit(client, request_number) {
            Admission::Retry(reply) => return self.answer(origin, client, request_number, reply, outputs),
            Admission::Stale => return,
            Admission::Execute => {}
        }
        let limits = &self.config.limits;
        if size::operation_text_bytes(&operation) > limits.store.body_bytes_max {
            let refusal = Refusal::invalid(format!(
                "the request's body is over the limit of {} bytes",
                limits.store.body_bytes_max
            ));
            return self.answer(origin, client, request_number, Reply::refused(refusal), outputs);
        }
        if primary.waiting.len() >= limits.pending_requests_max || primary.log.len() >= limits.log_entries_max {
            outputs.event(Event::Overloaded { queue: "replication".into() });
            let refusal = Refusal::unavailable("the primary's replication queue is full");
            return self.answer(origin, client, request_number, Reply::refused(refusal), outputs);
        }
        let sequence = self.applied + 1;
        let timestamp = Timestamp::next(now, self.store.last_timestamp());
        let reply = self.store.execute(&operation, timestamp);
        self.client_table.record(client, request_number, reply.clone());
        self.applied = sequence;
        outputs.event(Event::Ordered { sequence, client, request_number, operation: operation.name().into() });
        let update = Update { sequence, client, request_number, operation, timestamp };
        for (backup, progress) in &mut primary.backups {
            if progress.send_from == sequence && progress.updates_in_flight.len() < UPDATES_IN_FLIGHT_MAX {
                let message = Message::Update { entries: vec![update.clone()], latest_sequence: sequence };
                outputs.send(*backup, wrap(message));
                progress.send_from = sequence + 1;
                progress.updates_in_flight.push_back(sequence);
            }
            progress.retransmit_at.get_or_insert(now + self.config.timing.retransmit_timeout);
        }
        if let Some(journal) = &mut self.journal {
            journal.append(&update);
        }
        primary.log.push_back(update);
        primary.waiting.insert(sequence, Waiter { client, request_number, origin, reply });
        self.complete_acknowledged(outputs);
    }

    /// Answers every write all backups acknowledged and forgets updates no backup needs.
    fn complete_acknowledged(&mut self, outputs: &mut Outputs) {
        let RoleState::Primary(primary) = &mut self.role else { return };
        let everywhere = primary.backups.values().map(|progress| progress.acknowledged).min().unwrap_or(self.applied);
        while let Some(entry) = primary.waiting.first_entry() {
            if *entry.key() > everywhere {
                break;
            }
            let (sequence, waiter) = entry.remove_entry();
            outputs.event(Event::Acknowledged {
                sequence,
                client: waiter.client,
                request_number: waiter.request_number,
            });
            let Waiter { client, request_number, origin, reply } = waiter;
            if origin == self.config.replica {
                outputs.reply(client, request_number, reply, Freshness::Ordered);
            } else {
                outputs.send(origin, wrap(Message::ForwardReply { client, request_number, reply }));
            }
        }
        while primary.log.front().is_some_and(|update| update.sequence <= everywhere) {
            primary.log.pop_front();
        }
    }

    /// Sends a backup what it lacks, from `send_from`: updates, or a snapshot when
    /// they are no longer retained.
    fn catch_up(&mut self, now: Instant, backup: ReplicaId, outputs: &mut Outputs) {
        let RoleState::Primary(primary) = &mut self.role else { return };
        let progress = primary.backups.get_mut(&backup).expect("catch_up is called for a configured backup");
        progress.retransmit_at = Some(now + self.config.timing.retransmit_timeout);
        if progress.send_from > self.applied {
            return;
        }
        let oldest_retained = primary.log.front().map_or(self.applied + 1, |update| update.sequence);
        if progress.send_from < oldest_retained {
            // The backup fetches the snapshot, then acknowledges its sequence; the
            // updates after it are retained until then, as it has not acknowledged them.
            let manifest = primary.images.get_or_freeze(
                now,
                oldest_retained - 1,
                self.applied,
                &self.store,
                &self.client_table,
                self.config.limits.message_bytes_max,
            );
            outputs.send(backup, wrap(Message::Snapshot { manifest }));
            outputs.event(Event::SnapshotSent { to: backup, sequence: manifest.id.sequence });
            return;
        }
        let skip = usize::try_from(progress.send_from - oldest_retained).expect("the log fits in memory");
        let entries = one_message_of(&primary.log, skip, &self.config.limits);
        let first_sequence = entries.first().map_or(progress.send_from, |update| update.sequence);
        outputs.event(Event::Retransmitted { to: backup, first_sequence, entries: entries.len() });
        progress.send_from = first_sequence + entries.len() as u64;
        progress.updates_in_flight.clear();
        progress.updates_in_flight.push_back(progress.send_from - 1);
        outputs.send(backup, wrap(Message::Update { entries, latest_sequence: self.applied }));
    }

    fn on_update_ack(&mut self, now: Instant, from: ReplicaId, applied: u64, behind: bool, outputs: &mut Outputs) {
        let primary_applied = self.applied;
        let RoleState::Primary(primary) = &mut self.role else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        let Some(progress) = primary.backups.get_mut(&from) else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        if applied > primary_applied {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        let advanced = applied > progress.acknowledged;
        progress.acknowledged = progress.acknowledged.max(applied);
        while progress.updates_in_flight.front().is_some_and(|&last| last <= applied) {
            progress.updates_in_flight.pop_front();
        }
        if behind {
            progress.send_from = applied + 1;
        } else {
            progress.send_from = progress.send_from.max(applied + 1);
        }
        if progress.acknowledged == primary_applied {
            progress.retransmit_at = None;
        } else if advanced {
            // The backup keeps up: only a backup that stops acknowledging is sent updates again.
            progress.retransmit_at = Some(now + self.config.timing.retransmit_timeout);
        }
        let resend = behind && progress.send_from <= primary_applied;
        self.complete_acknowledged(outputs);
        if resend {
            self.catch_up(now, from, outputs);
        } else {
            self.send_waiting(from, outputs);
        }
    }

    /// Sends a backup, in one message, the writes that waited for an update message in
    /// flight to be acknowledged.
    fn send_waiting(&mut self, backup: ReplicaId, outputs: &mut Outputs) {
        let applied = self.applied;
        let RoleState::Primary(primary) = &mut self.role else { return };
        let progress = primary.backups.get_mut(&backup).expect("send_waiting is called for a configured backup");
        let oldest_retained = primary.log.front().map_or(applied + 1, |update| update.sequence);
        if progress.send_from > applied
            || progress.send_from < oldest_retained
            || progress.updates_in_flight.len() >= UPDATES_IN_FLIGHT_MAX
        {
            return; // Nothing waits, or the retransmission timer sends a snapshot.
        }
        let skip = usize::try_from(progress.send_from - oldest_retained).expect("the log fits in memory");
        let entries = one_message_of(&primary.log, skip, &self.config.limits);
        let Some(last) = entries.last() else { return };
        progress.send_from = last.sequence + 1;
        progress.updates_in_flight.push_back(last.sequence);
        outputs.send(backup, wrap(Message::Update { entries, latest_sequence: applied }));
    }

    fn on_update(&mut self, from: ReplicaId, entries: Vec<Update>, latest_sequence: u64, outputs: &mut Outputs) {
        let RoleState::Backup(backup) = &mut self.role else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        if from != self.primary {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        let body_bytes_max = self.config.limits.store.body_bytes_max;
        let oversized = entries.iter().any(|update| size::operation_text_bytes(&update.operation) > body_bytes_max);
        if oversized || entries.iter().any(|update| update.sequence > latest_sequence) {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        let buffer_end = self.applied + self.config.limits.log_entries_max as u64;
        for update in entries {
            if update.sequence <= self.applied {
                continue;
            }
            if update.sequence > buffer_end {
                outputs.drop_message(from, DropReason::TooFarAhead);
                break;
            }
            match backup.buffered.get(&update.sequence) {
                Some(buffered) if *buffered != update => outputs.drop_message(from, DropReason::Conflicting),
                Some(_) => {}
                None => {
                    backup.buffered.insert(update.sequence, update);
                }
            }
        }
        self.apply_buffered(from, outputs);
        let behind = self.applied < latest_sequence;
        outputs.send(from, wrap(Message::UpdateAck { applied: self.applied, behind }));
    }

    /// Applies buffered updates that follow what is applied, in sequence order.
    fn apply_buffered(&mut self, from: ReplicaId, outputs: &mut Outputs) {
        let RoleState::Backup(backup) = &mut self.role else { return };
        while let Some(entry) = backup.buffered.first_entry() {
            if *entry.key() > self.applied + 1 {
                break;
            }
            let update = entry.remove();
            if update.sequence <= self.applied {
                continue;
            }
            if self.client_table.admit(update.client, update.request_number) != Admission::Execute {
                outputs.drop_message(from, DropReason::Conflicting);
                continue;
            }
            let reply = self.store.execute(&update.operation, update.timestamp);
            self.client_table.record(update.client, update.request_number, reply);
            self.applied = update.sequence;
            if let Some(journal) = &mut self.journal {
                journal.append(&update);
            }
        }
    }

    /// The primary says this backup is behind its retained log: fetch the snapshot.
    fn on_snapshot(&mut self, now: Instant, from: ReplicaId, manifest: Manifest, outputs: &mut Outputs) {
        let RoleState::Backup(backup) = &mut self.role else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        if from != self.primary {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if manifest.id.sequence <= self.applied {
            return outputs.send(from, wrap(Message::UpdateAck { applied: self.applied, behind: false }));
        }
        if backup.download.as_ref().is_some_and(|download| *download.manifest() == manifest) {
            return; // Already fetching it: the primary repeats the manifest until acknowledged.
        }
        let download = Download::new(from, manifest, now);
        let complete = download.is_complete();
        backup.download = Some(download);
        if complete {
            return self.finish_download(from, outputs);
        }
        self.request_chunks(now, false, outputs);
    }

    /// Asks for the chunks the download may have in flight: those not yet asked
    /// for, or, `again`, every one in flight.
    fn request_chunks(&mut self, now: Instant, again: bool, outputs: &mut Outputs) {
        let wait = self.config.timing.retransmit_timeout;
        let RoleState::Backup(BackupState { download: Some(download), .. }) = &mut self.role else { return };
        let asked = if again { download.requests_again(now, wait) } else { download.requests(now, wait) };
        for (snapshot, chunk) in asked {
            outputs.send(download.source(), wrap(Message::GetSnapshotChunk { snapshot, chunk }));
        }
    }

    fn on_get_snapshot_chunk(
        &mut self,
        now: Instant,
        from: ReplicaId,
        snapshot: SnapshotId,
        index: u64,
        outputs: &mut Outputs,
    ) {
        let RoleState::Primary(primary) = &mut self.role else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        let message = match primary.images.chunk(now, snapshot, index) {
            Some(chunk) => Message::SnapshotChunk { chunk },
            None => Message::SnapshotUnavailable { snapshot },
        };
        outputs.send(from, wrap(message));
    }

    fn on_snapshot_chunk(&mut self, now: Instant, from: ReplicaId, chunk: Chunk, outputs: &mut Outputs) {
        let limits = self.config.limits.store;
        let defect = self.config.defect;
        let RoleState::Backup(BackupState { download: Some(download), .. }) = &mut self.role else {
            if chunk.snapshot.sequence > self.applied {
                outputs.drop_message(from, DropReason::SnapshotMismatch);
            }
            return; // A late copy of a chunk of a snapshot already installed.
        };
        match download.accept(from, chunk, &limits, defect) {
            Err(reason) => outputs.drop_message(from, reason),
            Ok(Progress::Ignored) => {}
            Ok(Progress::More) => self.request_chunks(now, false, outputs),
            Ok(Progress::Complete) => self.finish_download(from, outputs),
        }
    }

    fn on_snapshot_unavailable(&mut self, from: ReplicaId, snapshot: SnapshotId) {
        if let RoleState::Backup(backup) = &mut self.role
            && (backup.download.as_ref())
                .is_some_and(|download| download.source() == from && download.manifest().id == snapshot)
        {
            // The primary's next heartbeat finds this backup behind and names a new snapshot.
            backup.download = None;
        }
    }

    /// Installs the snapshot just fetched if its digest matches, then applies what
    /// was buffered after it and tells the primary.
    fn finish_download(&mut self, from: ReplicaId, outputs: &mut Outputs) {
        let RoleState::Backup(backup) = &mut self.role else { return };
        let download = backup.download.take().expect("a download just completed");
        let sequence = download.manifest().id.sequence;
        match download.install(self.config.limits.store, self.config.defect) {
            Ok((store, client_table)) if sequence > self.applied => {
                self.store.restore(store);
                self.client_table = client_table;
                self.applied = sequence;
                if let Some(journal) = &mut self.journal {
                    journal.replace_state();
                }
                backup.buffered.retain(|buffered_sequence, _| *buffered_sequence > sequence);
                outputs.event(Event::SnapshotInstalled { from, sequence });
                self.apply_buffered(from, outputs);
            }
            Ok(_) => {}
            Err(_) => outputs.drop_message(from, DropReason::SnapshotMismatch),
        }
        outputs.send(from, wrap(Message::UpdateAck { applied: self.applied, behind: false }));
    }
}

fn wrap(message: Message) -> AnyMessage {
    AnyMessage::RemoteWrite(message)
}

impl RemoteWrite {
    fn handle_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        if request.operation.is_read() && request.consistency == Consistency::Local {
            let reply = self.store.query(&request.operation);
            let freshness = Freshness::PossiblyStale { applied: self.applied };
            return outputs.reply(request.client, request.request_number, reply, freshness);
        }
        if request.operation.is_read() && self.config.defect == Some(Defect::ServeReadsLocally) {
            // The deliberate bug: a local read passed off as a linearizable one.
            let reply = self.store.query(&request.operation);
            return outputs.reply(request.client, request.request_number, reply, Freshness::Ordered);
        }
        if matches!(self.role, RoleState::Primary(_)) {
            return self.order(now, self.me(), request, outputs);
        }
        let (client, request_number) = (request.client, request.request_number);
        let retry_at = now + self.config.timing.retransmit_timeout;
        if !self.forwards.insert(request.clone(), self.primary, retry_at) {
            outputs.event(Event::Overloaded { queue: "forwards".into() });
            return outputs.refuse(client, request_number, Refusal::unavailable("too many requests in flight"));
        }
        outputs.event(Event::Forwarded { client, request_number, to: self.primary });
        outputs.send(self.primary, wrap(Message::Forward { request }));
    }

    fn handle_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        let AnyMessage::RemoteWrite(message) = message else {
            return outputs.drop_message(from, DropReason::WrongProtocol);
        };
        if !message.numbers_within_bounds() {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        match message {
            Message::Forward { request } => {
                if !matches!(self.role, RoleState::Primary(_)) {
                    return outputs.drop_message(from, DropReason::NotPrimary);
                }
                self.order(now, from, request, outputs);
            }
            Message::ForwardReply { client, request_number, reply } => {
                if from != self.primary {
                    return outputs.drop_message(from, DropReason::NotPrimary);
                }
                self.forwards.answer(client, request_number, reply, outputs);
            }
            Message::Update { entries, latest_sequence } => self.on_update(from, entries, latest_sequence, outputs),
            Message::UpdateAck { applied, behind } => self.on_update_ack(now, from, applied, behind, outputs),
            Message::Snapshot { manifest } => self.on_snapshot(now, from, manifest, outputs),
            Message::GetSnapshotChunk { snapshot, chunk } => {
                self.on_get_snapshot_chunk(now, from, snapshot, chunk, outputs)
            }
            Message::SnapshotChunk { chunk } => self.on_snapshot_chunk(now, from, chunk, outputs),
            Message::SnapshotUnavailable { snapshot } => self.on_snapshot_unavailable(from, snapshot),
        }
    }

    fn handle_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        let next_retry_at = now + self.config.timing.retransmit_timeout;
        for (to, request) in self.forwards.due(now, next_retry_at) {
            outputs.send(to, wrap(Message::Forward { request }));
        }
        if let RoleState::Backup(backup) = &mut self.role
            && let Some(download) = &backup.download
            && download.retry_at() <= now
        {
            if download.unanswered() < CHUNK_REQUESTS_MAX {
                self.request_chunks(now, true, outputs);
            } else {
                // The primary names a snapshot again once it finds this backup behind.
                backup.download = None;
            }
        }
        let RoleState::Primary(primary) = &mut self.role else { return };
        if primary.heartbeat_at <= now {
            primary.heartbeat_at = now + self.config.timing.heartbeat_interval;
            for backup in primary.backups.keys() {
                outputs.send(*backup, wrap(Message::Update { entries: Vec::new(), latest_sequence: self.applied }));
            }
        }
        let late: Vec<ReplicaId> = primary
            .backups
            .iter()
            .filter(|(_, progress)| progress.retransmit_at.is_some_and(|at| at <= now))
            .map(|(backup, _)| *backup)
            .collect();
        for backup in late {
            let RoleState::Primary(primary) = &mut self.role else { unreachable!() };
            let progress = primary.backups.get_mut(&backup).expect("late backups are configured backups");
            if progress.acknowledged >= self.applied {
                progress.retransmit_at = None;
                continue;
            }
            // Nothing acknowledged for a retransmission timeout: start again after what it acknowledged.
            progress.send_from = progress.acknowledged + 1;
            self.catch_up(now, backup, outputs);
        }
    }
}

/// The retained updates from position `skip` on that one message carries: at most
/// `entries_per_message_max`, and within `message_bytes_max` unless a single update
/// is larger on its own.
fn one_message_of(log: &VecDeque<Update>, skip: usize, limits: &crate::config::Limits) -> Vec<Update> {
    let mut bytes = 0;
    log.iter()
        .skip(skip)
        .take(limits.entries_per_message_max)
        .take_while(|update| {
            bytes += size::entry_bytes(&update.operation);
            bytes == size::entry_bytes(&update.operation) || bytes <= limits.message_bytes_max
        })
        .cloned()
        .collect()
}

impl Protocol for RemoteWrite {
    fn on_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        self.handle_request(now, request, outputs);
        self.persist(outputs);
    }

    fn on_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        self.handle_message(now, from, message, outputs);
        self.persist(outputs);
    }

    fn on_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        self.handle_timeout(now, outputs);
        self.persist(outputs);
    }

    fn on_synced(&mut self, _now: Instant, id: u64, outputs: &mut Outputs) {
        if let Some(journal) = &mut self.journal {
            journal.on_synced(id, outputs);
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        let forwards = self.forwards.next_retry_at();
        let primary = match &self.role {
            RoleState::Primary(primary) => primary,
            RoleState::Backup(backup) => {
                let download = backup.download.as_ref().map(Download::retry_at);
                return [forwards, download].into_iter().flatten().min();
            }
        };
        let retransmit = primary.backups.values().filter_map(|progress| progress.retransmit_at).min();
        [forwards, retransmit, Some(primary.heartbeat_at)].into_iter().flatten().min()
    }

    fn store(&self) -> &NoteStore {
        &self.store
    }

    fn store_mut(&mut self) -> &mut NoteStore {
        &mut self.store
    }

    fn client_table(&self) -> &ClientTable {
        &self.client_table
    }

    fn status(&self) -> Status {
        let (role, waiting) = match &self.role {
            RoleState::Primary(primary) => (Role::Primary, primary.waiting.len()),
            RoleState::Backup(_) => (Role::Backup, 0),
        };
        Status {
            replica: self.me(),
            protocol: "remote-write".into(),
            role,
            view: None,
            op_number: self.applied,
            applied: self.applied,
            pending_requests: waiting + self.forwards.len(),
            repairing: false,
            storage_stalled: false,
            counters: Default::default(),
        }
    }

    fn check_invariants(&mut self) {
        assert!(self.applied >= self.applied_before, "the applied sequence never goes back");
        self.applied_before = self.applied;
        self.forwards.check_invariants();
        if let Some(journal) = &self.journal {
            journal.check_invariants();
        }
        match &self.role {
            RoleState::Primary(primary) => {
                // Every retained update is visited only with debug assertions (the simulator's
                // tests); the ends, checked below, are enough for a release build.
                if cfg!(debug_assertions) {
                    for (expected, update) in (primary.log.front().map_or(0, |u| u.sequence)..).zip(&primary.log) {
                        assert_eq!(update.sequence, expected, "the retained log is contiguous");
                    }
                }
                if let Some(last) = primary.log.back() {
                    assert_eq!(last.sequence, self.applied, "the log ends at the last assigned sequence");
                }
                assert!(primary.log.len() <= self.config.limits.log_entries_max, "the log stays within its bound");
                for progress in primary.backups.values() {
                    assert!(progress.acknowledged <= self.applied, "no backup acknowledges the future");
                    assert!(progress.updates_in_flight.len() <= UPDATES_IN_FLIGHT_MAX, "update messages in flight");
                }
                if let Some((sequence, _)) = primary.waiting.last_key_value() {
                    assert!(*sequence <= self.applied, "only assigned sequences wait");
                }
            }
            RoleState::Backup(backup) => {
                if let Some((sequence, _)) = backup.buffered.first_key_value() {
                    assert!(*sequence > self.applied + 1, "a buffered update waits for a gap before it");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::ProtocolKind;
    use crate::hlc::Timestamp;
    use crate::ids::NoteId;
    use crate::replica::{Input, Output};
    use crate::store::Note;
    use crate::test_cluster::*;

    const PROTOCOL: ProtocolKind = ProtocolKind::RemoteWrite { primary: R0 };

    fn send(to: ReplicaId, message: Message) -> Output {
        Output::Send { to, message: wrap(message) }
    }

    fn created_note(at: Instant) -> Note {
        let timestamp = Timestamp(at.as_nanos());
        let body = json!({"title": "a"}).as_object().cloned().expect("an object");
        Note { id: NoteId(1), version: 1, created_at: timestamp, updated_at: timestamp, body: body.into() }
    }

    /// With two update messages unacknowledged, writes wait at the primary, and the
    /// next acknowledgement sends all of them in one message.
    #[test]
    fn writes_arriving_faster_than_acknowledgements_go_out_in_one_update() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 1);
        let sent_to_r1 = |outputs: Vec<Output>| -> Vec<usize> {
            outputs
                .into_iter()
                .filter_map(|output| match output {
                    Output::Send {
                        to: R1,
                        message: crate::message::Message::RemoteWrite(Message::Update { entries, .. }),
                    } => Some(entries.len()),
                    _ => None,
                })
                .collect()
        };
        let mut sent = Vec::new();
        for client in 1..=6 {
            let request = ClientRequest {
                client: ClientId(client),
                request_number: 1,
                operation: create(json!({"n": client})),
                consistency: Consistency::Linearizable,
            };
            sent.extend(sent_to_r1(cluster.input(R0, Input::Request(request))));
        }
        assert_eq!(sent, vec![1, 1], "two update messages in flight, the other writes wait");
        cluster.drop_in_flight();
        let outputs = cluster.deliver(R1, R0, wrap(Message::UpdateAck { applied: 1, behind: false }));
        assert_eq!(sent_to_r1(outputs), vec![4], "the four waiting writes leave together");
    }

    #[test]
    fn the_primary_answers_only_after_every_backup_acknowledged() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 1);
        let now = cluster.now;
        let request = ClientRequest {
            client: ClientId(7),
            request_number: 1,
            operation: create(json!({"title": "a"})),
            consistency: Consistency::Linearizable,
        };
        let update = Update {
            sequence: 1,
            client: ClientId(7),
            request_number: 1,
            operation: request.operation.clone(),
            timestamp: Timestamp(now.as_nanos()),
        };
        let update_message = Message::Update { entries: vec![update], latest_sequence: 1 };
        assert_eq!(
            cluster.input(R0, Input::Request(request)),
            vec![
                Output::Event(Event::Ordered {
                    sequence: 1,
                    client: ClientId(7),
                    request_number: 1,
                    operation: "create".into()
                }),
                send(R1, update_message.clone()),
                send(R2, update_message),
            ]
        );
        let ack = wrap(Message::UpdateAck { applied: 1, behind: false });
        assert_eq!(cluster.input(R0, Input::Message { from: R1, message: ack.clone() }), vec![]);
        assert_eq!(
            cluster.input(R0, Input::Message { from: R2, message: ack }),
            vec![
                Output::Event(Event::Acknowledged { sequence: 1, client: ClientId(7), request_number: 1 }),
                Output::Reply {
                    client: ClientId(7),
                    request_number: 1,
                    reply: Reply::Note { note: created_note(now) },
                    freshness: Freshness::Ordered
                },
            ]
        );
    }

    #[test]
    fn a_request_at_a_backup_is_forwarded_and_answered_there() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 2);
        cluster.request(R2, 7, 1, create(json!({"title": "a"})));
        cluster.run(1_000);
        assert_eq!(cluster.reply(7, 1), Some(&Reply::Note { note: created_note(Instant::from_millis(1_000)) }));
        assert_eq!(cluster.replies_to(7, 1), 1);
        cluster.assert_converged();
    }

    #[test]
    fn a_backup_serves_local_reads_from_its_own_copy() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 3);
        let outputs = cluster.input(
            R1,
            Input::Request(ClientRequest {
                client: ClientId(1),
                request_number: 1,
                operation: get(1),
                consistency: Consistency::Local,
            }),
        );
        assert_eq!(
            outputs,
            vec![Output::Reply {
                client: ClientId(1),
                request_number: 1,
                reply: Reply::refused(Refusal::NotFound { id: NoteId(1) }),
                freshness: Freshness::PossiblyStale { applied: 0 },
            }]
        );
    }

    #[test]
    fn updates_are_applied_in_sequence_order_and_duplicates_are_ignored() {
        let mut cluster = TestCluster::new(PROTOCOL, 2, 4);
        let update = |sequence: u64| Update {
            sequence,
            client: ClientId(sequence),
            request_number: 1,
            operation: create(json!({"n": sequence})),
            timestamp: Timestamp(sequence),
        };
        let deliver = |cluster: &mut TestCluster, sequence: u64| {
            let message = wrap(Message::Update { entries: vec![update(sequence)], latest_sequence: 2 });
            cluster.input(R1, Input::Message { from: R0, message })
        };
        assert_eq!(deliver(&mut cluster, 2), vec![send(R0, Message::UpdateAck { applied: 0, behind: true })]);
        assert_eq!(deliver(&mut cluster, 1), vec![send(R0, Message::UpdateAck { applied: 2, behind: false })]);
        assert_eq!(deliver(&mut cluster, 1), vec![send(R0, Message::UpdateAck { applied: 2, behind: false })]);
        let ids: Vec<u64> = cluster.replica(R1).store().notes().map(|note| note.body["n"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2], "note 1 is the update with sequence 1");
    }

    #[test]
    fn messages_only_the_primary_sends_are_dropped_from_a_backup() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 5);
        let message = wrap(Message::Update { entries: vec![], latest_sequence: 0 });
        assert_eq!(
            cluster.input(R1, Input::Message { from: R2, message }),
            vec![Output::Event(Event::Dropped { from: R2, reason: DropReason::NotPrimary })]
        );
        let impossible = wrap(Message::UpdateAck { applied: 99, behind: false });
        assert_eq!(
            cluster.input(R0, Input::Message { from: R1, message: impossible }),
            vec![Output::Event(Event::Dropped { from: R1, reason: DropReason::ImpossibleSequence })]
        );
        assert_eq!(cluster.replica(R0).counters().messages_dropped, 1);
    }

    #[test]
    fn a_retried_create_makes_one_note() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 6);
        cluster.request(R1, 7, 1, create(json!({"t": 1})));
        cluster.request(R1, 7, 1, create(json!({"t": 1})));
        cluster.run(1_000);
        cluster.request(R2, 7, 1, create(json!({"t": 1})));
        cluster.run(1_000);
        assert_eq!(cluster.replica(R0).store().len(), 1);
        assert!(matches!(cluster.reply(7, 1), Some(Reply::Note { note }) if note.id == NoteId(1)));
        cluster.assert_converged();
    }

    /// Three replicas, every kind of write, with messages lost, duplicated and reordered.
    #[test]
    fn converges_through_loss_duplication_and_reordering() {
        for seed in 0..50 {
            let mut cluster = TestCluster::new(PROTOCOL, 3, seed);
            cluster.loss_per_mille = 200;
            cluster.duplicate_per_mille = 200;
            cluster.reorder = true;
            every_kind_of_write(&mut cluster, seed, |cluster| cluster.run(10_000));
        }
    }

    #[test]
    fn a_backup_that_lost_its_memory_catches_up_by_snapshot() {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 8);
        for request_number in 1..=3 {
            cluster.request(R0, 1, request_number, create(json!({"n": request_number})));
            cluster.run(1_000);
        }
        let config = Config::new(crate::ids::ClusterId(1), R2, 3, PROTOCOL, 99);
        cluster.replicas[2] = crate::replica::Replica::new(config, cluster.now).expect("valid");
        cluster.now = cluster.now + core::time::Duration::from_secs(1);
        cluster.input(R0, Input::Timeout);
        cluster.run(1_000);
        assert_eq!(cluster.replica(R2).store().len(), 3);
        cluster.assert_converged();
    }
}
