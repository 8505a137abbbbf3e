//! The journal: what a vr replica has asked to be on disk, what is durable, and
//! the messages that wait for it.
//!
//! After every input the replica hands its state to [`Journal::after_input`],
//! which writes what changed (log entries, the superblock, a checkpoint) and
//! holds back each message that promises something not yet durable. A sync
//! completion ([`Journal::on_synced`]) releases what it covers.
//!
//! Writes are numbered; a message is held with the number of the next write, the
//! superblock sequence and the end of the log file when it was decided, and
//! leaves once every write before that number is synced, every superblock copy
//! holds that sequence, and a synced `Durable` record proves the log file synced
//! up to that end (see [`super::format::RecordKind::Durable`]: what lets a restart
//! tell a crash's torn write, never acknowledged, from damage to synced bytes).

use std::collections::VecDeque;

use crate::client_table::ClientTable;
use crate::config::Defect;
use crate::ids::{ClusterId, ReplicaId};
use crate::message::Message as AnyMessage;
use crate::protocol::Outputs;
use crate::protocol::vr::Message;
use crate::protocol::vr::log::Log;
use crate::replica::Output;
use crate::store::NoteStore;

use super::format::{RecordKind, chain_seed, encode_record};
use super::{CheckpointWriter, DiskFile, Recovered, SUPERBLOCK_COPIES, StorageOp, Superblock, encode_checkpoint};

/// What the journal needs of the replica's state after an input.
pub(crate) struct ReplicaState<'a> {
    pub view: u64,
    pub log_view: u64,
    pub commit_number: u64,
    pub log: &'a Log,
    /// The lowest op whose entry changed since the previous input; at or below
    /// the log's checkpoint when the executed state itself was replaced.
    pub changed_from: Option<u64>,
    /// The replica is repairing damage from its peers (see [`super::Superblock::repairing`]).
    pub repairing: bool,
    pub store: &'a NoteStore,
    pub client_table: &'a ClientTable,
}

#[derive(Debug)]
struct Held {
    write: u64,
    sequence: u64,
    proof: u64,
    to: ReplicaId,
    message: AnyMessage,
}

#[derive(Clone, Copy, Debug)]
struct SyncInFlight {
    id: u64,
    /// Every write numbered below this is covered.
    covers_before: u64,
    /// The superblock copy this sync makes durable, with the sequence it holds.
    copy: Option<(u8, u64)>,
    /// The log file's length when the sync was asked for, and the highest `Durable`
    /// record among the writes it covers.
    generation: u64,
    wal_offset: u64,
    marker: u64,
}

/// A checkpoint taken because the log file grew, written a chunk per input while
/// the log goes on in the live generation: acknowledgements never wait for the
/// whole state to be encoded and synced, only for the switch to the new
/// generation once the checkpoint is durable.
#[derive(Debug)]
struct CheckpointInProgress {
    generation: u64,
    /// The state after this op, which the log in memory keeps the entries after.
    op: u64,
    writer: CheckpointWriter,
    offset: u64,
    /// The number of the latest write of the file, and whether it was the last.
    last_write: u64,
    written: bool,
}

#[derive(Debug)]
pub(crate) struct Journal {
    cluster: ClusterId,
    replica: ReplicaId,
    defect: Option<Defect>,
    /// A checkpoint is taken once the log file grows past this.
    wal_bytes_max: u64,
    /// The latest superblock; `copies[i]` is the sequence copy `i` durably holds.
    superblock: Superblock,
    copies: [u64; SUPERBLOCK_COPIES as usize],
    /// `wal.<superblock.generation>`: where the next record goes, and what it chains to.
    wal_offset: u64,
    wal_chain: u64,
    /// The ops written to the log file after `written_after`, with their view and the
    /// offset where their record ends.
    written: VecDeque<(u64, u64, u64)>,
    /// Bytes of the log file a completed sync covers; the last `Durable` record
    /// written, and the highest one synced (or the synced start of the generation).
    synced_offset: u64,
    marker_written: u64,
    proven_offset: u64,
    /// The `Durable` record in the writes not yet covered by a sync in flight.
    marker_pending: u64,
    /// Where the last record other than a `Durable` one ends: what a message vouches
    /// for (proving the `Durable` records themselves would never end).
    content_end: u64,
    written_after: u64,
    /// The commit number last written to the log file.
    commit_written: u64,
    next_write: u64,
    synced_before: u64,
    next_sync_id: u64,
    in_flight: Option<SyncInFlight>,
    held: Vec<Held>,
    /// The current superblock vouches for the writes numbered below this (the log it
    /// promises, the generation it names): a copy is written only once they are
    /// synced, and may then share a sync with any later write.
    superblock_needs_before: u64,
    /// New generations are numbered above this: the newest on disk at restart, or
    /// begun since, so that no file is written again from its start over older records.
    generation_floor: u64,
    in_progress: Option<CheckpointInProgress>,
    /// Files to remove once every superblock copy holds `retire_at` or later.
    retiring: Vec<DiskFile>,
    retire_at: u64,
    /// A new generation is written at the next input: the log file ends in a crash's
    /// torn write or in damage, and appending after it would hide what it was.
    fresh_generation: bool,
    /// While false (a replica that started with no data directory and has not
    /// recovered yet), nothing is written: the first write is a checkpoint.
    formatted: bool,
}

/// The log file size at which a replica takes a checkpoint: staggered between
/// half of `log_bytes_max` and all of it by replica, so that replicas that hold
/// the same log do not all freeze their state at the same moment (a primary
/// whose backups all pause at once cannot commit meanwhile).
fn checkpoint_threshold(config: &crate::Config) -> u64 {
    let max = config.limits.log_bytes_max as u64;
    let step = max / (2 * u64::from(config.replica_count.max(1)));
    max - step * u64::from(config.replica.0)
}

/// Messages that promise this replica's view, log view or log.
fn promises(message: &AnyMessage) -> bool {
    matches!(
        message,
        AnyMessage::Vr(
            Message::PrepareOk { .. }
                | Message::StartViewChange { .. }
                | Message::DoViewChange { .. }
                | Message::StartView { .. }
                | Message::ConfirmViewOk { .. }
                | Message::RecoveryResponse { .. }
        )
    )
}

impl Journal {
    /// The journal of a replica with no data directory yet: it writes nothing until
    /// it holds state, then starts with a checkpoint.
    pub(crate) fn unformatted(config: &crate::Config) -> Journal {
        let superblock = Superblock {
            cluster: config.cluster,
            replica: config.replica,
            replica_count: config.replica_count,
            sequence: 0,
            view: 0,
            log_view: 0,
            epoch: 0,
            generation: 0,
            checkpoint_op: 0,
            repairing: false,
            wal_start_bytes: 0,
        };
        Journal {
            cluster: config.cluster,
            replica: config.replica,
            defect: config.defect,
            wal_bytes_max: checkpoint_threshold(config),
            superblock,
            copies: [0; SUPERBLOCK_COPIES as usize],
            wal_offset: 0,
            wal_chain: 0,
            written: VecDeque::new(),
            synced_offset: 0,
            marker_written: 0,
            proven_offset: 0,
            marker_pending: 0,
            content_end: 0,
            written_after: 0,
            commit_written: 0,
            next_write: 0,
            synced_before: 0,
            next_sync_id: 1,
            in_flight: None,
            held: Vec::new(),
            retiring: Vec::new(),
            retire_at: 0,
            superblock_needs_before: 0,
            generation_floor: 0,
            in_progress: None,
            formatted: false,
            fresh_generation: false,
        }
    }

    /// The journal of a replica restarted from its data directory.
    pub(crate) fn reopened(config: &crate::Config, recovered: &Recovered) -> Journal {
        let mut journal = Journal::unformatted(config);
        let superblock = recovered.superblock;
        journal.superblock = superblock;
        for (copy, current) in recovered.copies_current.iter().enumerate() {
            // A stale or damaged copy is rewritten by the next superblock write.
            journal.copies[copy] = if *current { superblock.sequence } else { 0 };
        }
        if journal.copies.iter().any(|sequence| *sequence < superblock.sequence) {
            // Rewrite the stale copies now.
            journal.superblock.sequence += 1;
        }
        journal.wal_offset = recovered.wal_end;
        journal.wal_chain = recovered.wal_chain;
        journal.commit_written = recovered.commit_number;
        // Nothing on disk is known synced yet: the first sync covers the file as it is,
        // and a `Durable` record after it proves it.
        journal.written =
            recovered.entries.iter().map(|entry| (entry.op_number, entry.view, recovered.wal_end)).collect();
        journal.next_write = 1;
        journal.superblock_needs_before = journal.next_write;
        journal.proven_offset = recovered.wal_proven;
        journal.content_end = recovered.wal_end;
        journal.marker_written = recovered.wal_proven;
        journal.formatted = true;
        journal.fresh_generation = recovered.wal_stopped_by.is_some() || recovered.damage.is_some();
        journal.written_after = recovered.log_start;
        journal.generation_floor = recovered
            .orphans
            .iter()
            .map(|file| match file {
                DiskFile::Wal { generation } | DiskFile::Checkpoint { generation } => *generation,
                DiskFile::Superblock { .. } => 0,
            })
            .max()
            .unwrap_or(0);
        // Nothing names them: they may go at once.
        journal.retiring.clone_from(&recovered.orphans);
        journal.retire_at = 0;
        journal
    }

    /// The superblock sequence every copy durably holds.
    pub(crate) fn durable_sequence(&self) -> u64 {
        *self.copies.iter().min().expect("copies")
    }

    /// The last op of this replica's log that is durable, with the view and log view
    /// of the current superblock; `None` while the superblock is being rewritten.
    pub(crate) fn durable_op(&self) -> Option<u64> {
        if self.durable_sequence() < self.superblock.sequence {
            return None;
        }
        let durable = self.written.iter().rev().find(|(_, _, end)| *end <= self.proven_offset);
        Some(durable.map_or(self.written_after, |(op, _, _)| *op))
    }

    /// Writes what changed in `state`, holds the messages in `outputs` that promise
    /// what is not durable yet, and starts the next sync if none is in flight.
    pub(crate) fn after_input(&mut self, state: &ReplicaState<'_>, recovering: bool, outputs: &mut Outputs) {
        if !self.formatted && recovering {
            return;
        }
        let sequence_before = self.superblock.sequence;
        let mut checkpoint_needed = !self.formatted || std::mem::take(&mut self.fresh_generation);
        let promised = (state.view, state.log_view, state.repairing);
        if promised != (self.superblock.view, self.superblock.log_view, self.superblock.repairing) {
            assert!(state.view >= self.superblock.view || !self.formatted, "a promised view never goes back");
            self.superblock.view = state.view;
            self.superblock.log_view = state.log_view;
            self.superblock.repairing = state.repairing;
            self.superblock.sequence += 1;
        }
        if let Some(changed_from) = state.changed_from
            && changed_from <= state.log.checkpoint()
        {
            // Changed entries were executed and dropped, or the state was replaced by a
            // snapshot: the log file cannot say how to reach the state; a checkpoint can.
            checkpoint_needed = true;
        }
        if !checkpoint_needed && state.log.checkpoint() > self.written_after + self.written.len() as u64 {
            checkpoint_needed = true;
        }
        let switch_due = self
            .in_progress
            .as_ref()
            .is_some_and(|checkpoint| checkpoint.written && self.synced_before > checkpoint.last_write);
        if switch_due && self.in_progress.as_ref().is_some_and(|checkpoint| state.log.checkpoint() > checkpoint.op) {
            // The log in memory no longer holds every entry after it: it cannot start a generation.
            checkpoint_needed = true;
        }
        if checkpoint_needed {
            self.abandon_checkpoint_in_progress();
            self.write_checkpoint(state, outputs);
        } else if switch_due {
            let checkpoint = self.in_progress.take().expect("checked above");
            self.start_generation(state, checkpoint.generation, checkpoint.op, outputs);
        } else {
            if self.in_progress.is_none()
                && self.wal_offset > self.wal_bytes_max
                && state.commit_number > self.written_after
            {
                self.begin_checkpoint(state, outputs);
            }
            self.write_log_changes(state, outputs);
            self.continue_checkpoint(outputs);
        }
        if self.superblock.sequence != sequence_before {
            self.superblock_needs_before = self.next_write;
        }
        self.hold_promises(outputs);
        self.pump(outputs);
    }

    /// Takes a sync's completion: releases what it covers, and starts the next step.
    /// A completion the journal did not ask for (a host's bug) is ignored.
    pub(crate) fn on_synced(&mut self, id: u64, outputs: &mut Outputs) -> bool {
        let Some(in_flight) = self.in_flight.filter(|in_flight| in_flight.id == id) else {
            return false;
        };
        self.in_flight = None;
        self.synced_before = self.synced_before.max(in_flight.covers_before);
        if in_flight.generation == self.superblock.generation {
            // Offsets of an older generation's file say nothing of the new one's.
            self.synced_offset = self.synced_offset.max(in_flight.wal_offset);
            self.proven_offset = self.proven_offset.max(in_flight.marker);
        }
        if let Some((copy, sequence)) = in_flight.copy {
            self.copies[usize::from(copy)] = sequence;
        }
        if self.durable_sequence() >= self.superblock.sequence {
            self.proven_offset = self.proven_offset.max(self.superblock.wal_start_bytes);
        }
        self.release(outputs);
        self.pump(outputs);
        true
    }

    fn write(&mut self, op: StorageOp, outputs: &mut Outputs) -> u64 {
        let number = self.next_write;
        self.next_write += 1;
        outputs.storage(op);
        number
    }

    /// Appends the log's changes since the last input: new entries, or a new suffix
    /// from the first entry that differs (entries with the same op and view are the
    /// same entry), or a truncation.
    fn write_log_changes(&mut self, state: &ReplicaState<'_>, outputs: &mut Outputs) {
        let written_last = self.written_after + self.written.len() as u64;
        // Everything at or below the in-memory checkpoint is committed and was written.
        let floor = self.written_after.max(state.log.checkpoint());
        // An entry is named by its op and view: two logs that agree on an entry agree
        // on every entry before it. So the last agreeing entry is found from the end,
        // and entries truncated and appended again unchanged are not written again
        // (a crash that tore such a rewrite would take the acknowledged ones after it).
        let mut matched = written_last.min(state.log.op_number());
        while matched > floor {
            let (op, view, _) = self.written[(matched - self.written_after - 1) as usize];
            debug_assert_eq!(op, matched);
            if state.log.get(matched).is_some_and(|entry| entry.view == view) {
                break;
            }
            matched -= 1;
        }
        let matched = matched.max(floor);
        if matched >= state.log.op_number() && matched >= written_last {
            return;
        }
        let mut bytes = Vec::new();
        self.write_durable_record(&mut bytes);
        // Commit records name only entries already written before them, so that a
        // crash that keeps any prefix of this batch never marks as committed an entry
        // the log file holds an older version of; and one follows each committed entry
        // the batch writes, so that what such a prefix leaves uncommitted stays
        // within the bounds the replica keeps in memory.
        let commit_number = state.commit_number;
        let committed_before = commit_number.min(matched);
        if committed_before > self.commit_written {
            self.write_commit_record(&mut bytes, committed_before);
        }
        if matched < written_last && matched >= state.log.op_number() {
            let body = postcard::to_allocvec(&matched).expect("plain data always encodes");
            self.wal_chain = encode_record(&mut bytes, RecordKind::Truncate, self.wal_chain, &body);
        }
        self.written.truncate((matched - self.written_after) as usize);
        for op in matched + 1..=state.log.op_number() {
            let entry = state.log.get(op).expect("the log holds every op after its checkpoint");
            let body = postcard::to_allocvec(entry).expect("plain data always encodes");
            self.wal_chain = encode_record(&mut bytes, RecordKind::Entry, self.wal_chain, &body);
            self.written.push_back((op, entry.view, self.wal_offset + bytes.len() as u64));
            if op <= commit_number && op > self.commit_written {
                self.write_commit_record(&mut bytes, op);
            }
        }
        let file = DiskFile::Wal { generation: self.superblock.generation };
        let offset = self.wal_offset;
        self.wal_offset += bytes.len() as u64;
        self.content_end = self.wal_offset;
        self.write(StorageOp::Write { file, offset, bytes }, outputs);
    }

    /// First in a batch: what the syncs so far proved of the log file's content.
    fn write_durable_record(&mut self, bytes: &mut Vec<u8>) {
        let proven = self.synced_offset.min(self.content_end);
        if proven > self.marker_written {
            let body = postcard::to_allocvec(&proven).expect("plain data always encodes");
            self.wal_chain = encode_record(bytes, RecordKind::Durable, self.wal_chain, &body);
            self.marker_written = proven;
            self.marker_pending = proven;
        }
    }

    fn write_commit_record(&mut self, bytes: &mut Vec<u8>, commit_number: u64) {
        let body = postcard::to_allocvec(&commit_number).expect("plain data always encodes");
        self.wal_chain = encode_record(bytes, RecordKind::Commit, self.wal_chain, &body);
        self.commit_written = commit_number;
    }

    /// The op after which the log in memory must keep its entries, while a
    /// checkpoint of the state after it is being written.
    pub(crate) fn entries_kept_after(&self) -> Option<u64> {
        self.in_progress.as_ref().map(|checkpoint| checkpoint.op)
    }

    fn next_generation(&mut self) -> u64 {
        let generation = self.superblock.generation.max(self.generation_floor) + 1;
        self.generation_floor = generation;
        generation
    }

    /// A new generation at once: the state after the commit number in
    /// `checkpoint.<g>`, the entries after it in `wal.<g>`.
    fn write_checkpoint(&mut self, state: &ReplicaState<'_>, outputs: &mut Outputs) {
        let generation = self.next_generation();
        let op = state.commit_number;
        let bytes = encode_checkpoint(self.cluster, self.replica, generation, op, state.store, state.client_table);
        self.write(StorageOp::Write { file: DiskFile::Checkpoint { generation }, offset: 0, bytes }, outputs);
        self.start_generation(state, generation, op, outputs);
    }

    /// Freezes the state after the commit number and writes the checkpoint's head;
    /// [`Journal::continue_checkpoint`] writes the rest a chunk per input.
    fn begin_checkpoint(&mut self, state: &ReplicaState<'_>, outputs: &mut Outputs) {
        let generation = self.next_generation();
        let op = state.commit_number;
        let (writer, bytes) =
            CheckpointWriter::begin(self.cluster, self.replica, generation, op, state.store, state.client_table);
        let offset = bytes.len() as u64;
        let last_write =
            self.write(StorageOp::Write { file: DiskFile::Checkpoint { generation }, offset: 0, bytes }, outputs);
        self.in_progress = Some(CheckpointInProgress { generation, op, writer, offset, last_write, written: false });
    }

    fn continue_checkpoint(&mut self, outputs: &mut Outputs) {
        let Some(mut checkpoint) = self.in_progress.take() else { return };
        if !checkpoint.written {
            match checkpoint.writer.next(1) {
                Some(bytes) => {
                    let file = DiskFile::Checkpoint { generation: checkpoint.generation };
                    let offset = checkpoint.offset;
                    checkpoint.offset += bytes.len() as u64;
                    checkpoint.last_write = self.write(StorageOp::Write { file, offset, bytes }, outputs);
                }
                None => checkpoint.written = true,
            }
        }
        self.in_progress = Some(checkpoint);
    }

    /// A checkpoint being written that will never be named: its file goes with the
    /// next generation's predecessors, and its generation is never written again.
    fn abandon_checkpoint_in_progress(&mut self) {
        if let Some(checkpoint) = self.in_progress.take() {
            self.retiring.push(DiskFile::Checkpoint { generation: checkpoint.generation });
        }
    }

    /// Starts generation `generation`, whose checkpoint (written already) holds the
    /// state after `op`: the entries after it in `wal.<generation>`; the superblock
    /// names them once both are synced, and the old generation goes once every copy
    /// names the new.
    fn start_generation(&mut self, state: &ReplicaState<'_>, generation: u64, op: u64, outputs: &mut Outputs) {
        assert!(op >= state.log.checkpoint() && op <= state.commit_number, "the log holds every entry after {op}");
        let mut bytes = Vec::new();
        self.wal_chain = chain_seed(self.cluster, self.replica, DiskFile::Wal { generation });
        self.written.clear();
        self.written_after = op;
        self.commit_written = op;
        for next in op + 1..=state.log.op_number() {
            let entry = state.log.get(next).expect("the log holds every op after its checkpoint");
            let body = postcard::to_allocvec(entry).expect("plain data always encodes");
            self.wal_chain = encode_record(&mut bytes, RecordKind::Entry, self.wal_chain, &body);
            self.written.push_back((next, entry.view, bytes.len() as u64));
        }
        if state.commit_number > op {
            // Committed since the checkpoint's state was frozen.
            self.write_commit_record(&mut bytes, state.commit_number);
        }
        self.wal_offset = bytes.len() as u64;
        self.content_end = self.wal_offset;
        // Offsets of the new file: what is proven starts again, from its synced start.
        self.synced_offset = 0;
        self.marker_written = 0;
        self.marker_pending = 0;
        self.proven_offset = 0;
        self.superblock.wal_start_bytes = self.wal_offset;
        self.write(StorageOp::Write { file: DiskFile::Wal { generation }, offset: 0, bytes }, outputs);
        if self.formatted {
            let old = self.superblock.generation;
            self.retiring.push(DiskFile::Wal { generation: old });
            self.retiring.push(DiskFile::Checkpoint { generation: old });
        }
        self.superblock.generation = generation;
        self.superblock.checkpoint_op = op;
        self.superblock.sequence += 1;
        self.retire_at = self.superblock.sequence;
        self.formatted = true;
        // What waits now waits for the new generation's superblock, which proves its start.
        let (sequence, proof) = (self.superblock.sequence, self.content_end);
        for held in &mut self.held {
            held.sequence = held.sequence.max(sequence);
            held.proof = proof;
        }
    }

    fn hold_promises(&mut self, outputs: &mut Outputs) {
        let (write, sequence, proof) = (self.next_write, self.superblock.sequence, self.content_end);
        if self.covered(write, sequence, proof) {
            return;
        }
        let held = &mut self.held;
        outputs.retain(|output| match output {
            Output::Send { to, message } if promises(message) => {
                held.push(Held { write, sequence, proof, to: *to, message: message.clone() });
                false
            }
            _ => true,
        });
    }

    fn covered(&self, write: u64, sequence: u64, proof: u64) -> bool {
        if self.defect == Some(Defect::AcknowledgeBeforeSync) {
            // The deliberate bug: the last write of a group commit counts as synced.
            return write <= self.synced_before + 1 && sequence <= self.durable_sequence();
        }
        write <= self.synced_before && sequence <= self.durable_sequence() && proof <= self.proven_offset
    }

    fn release(&mut self, outputs: &mut Outputs) {
        let held = std::mem::take(&mut self.held);
        for held in held {
            if self.covered(held.write, held.sequence, held.proof) {
                outputs.send(held.to, held.message);
            } else {
                self.held.push(held);
            }
        }
    }

    /// One sync in flight at a time: the writes since the last, else the next
    /// superblock copy that lags (written only once everything before it is synced).
    fn pump(&mut self, outputs: &mut Outputs) {
        if self.in_flight.is_some() || !self.formatted {
            return;
        }
        if self.durable_sequence() >= self.retire_at && !self.retiring.is_empty() {
            for file in std::mem::take(&mut self.retiring) {
                self.write(StorageOp::Remove { file }, outputs);
            }
        }
        if self.synced_before == self.next_write && self.marker_written < self.synced_offset.min(self.content_end) {
            // Nothing else to write: a batch of just the proof, so that acknowledgements
            // leave and the primary counts itself.
            let mut bytes = Vec::new();
            self.write_durable_record(&mut bytes);
            let file = DiskFile::Wal { generation: self.superblock.generation };
            let offset = self.wal_offset;
            self.wal_offset += bytes.len() as u64;
            self.write(StorageOp::Write { file, offset, bytes }, outputs);
        }
        let mut copy = None;
        if self.synced_before >= self.superblock_needs_before {
            let sequence = self.superblock.sequence;
            if let Some(lagging) = (0..SUPERBLOCK_COPIES).find(|copy| self.copies[usize::from(*copy)] < sequence) {
                let bytes = self.superblock.encode(lagging);
                self.write(
                    StorageOp::Write { file: DiskFile::Superblock { copy: lagging }, offset: 0, bytes },
                    outputs,
                );
                copy = Some((lagging, sequence));
            }
        }
        if self.synced_before < self.next_write {
            let id = self.next_sync_id;
            self.next_sync_id += 1;
            let marker = std::mem::take(&mut self.marker_pending);
            self.in_flight = Some(SyncInFlight {
                id,
                covers_before: self.next_write,
                copy,
                generation: self.superblock.generation,
                wal_offset: self.wal_offset,
                marker,
            });
            outputs.storage(StorageOp::Sync { id });
        }
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.synced_before <= self.next_write, "only writes made are synced");
        assert!(self.durable_sequence() <= self.superblock.sequence, "no copy is ahead of the superblock");
        if let Some(in_flight) = self.in_flight {
            assert!(in_flight.covers_before <= self.next_write && in_flight.covers_before > self.synced_before);
        }
        if let (Some(first), Some(last)) = (self.written.front(), self.written.back()) {
            assert_eq!(first.0, self.written_after + 1, "the log file starts after its checkpoint");
            assert_eq!(last.0, self.written_after + self.written.len() as u64, "the log file is contiguous");
        }
    }
}
