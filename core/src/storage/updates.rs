//! Durable storage for the primary-backup protocols (remote-write, local-write),
//! sans-IO, in the data directory format of [`super`]: the same superblock copies,
//! the same checkpoints, and a write-ahead log of the updates this replica applied
//! after its checkpoint, in the order it applied them (one `Entry` record each).
//!
//! One rule covers both protocols: nothing leaves the replica (no message, no reply)
//! before every write decided before it is synced and, after a new checkpoint, before
//! every superblock copy names it. So whatever a peer or a client learnt from this
//! replica is on its disk: a backup acknowledges only synced updates, a primary or
//! owner sends an update (and answers its client) only once it is synced, and a
//! restart never takes back what anyone saw.
//!
//! Group commit: the updates of one input are one write; at most one sync is in
//! flight, and the next covers everything written meanwhile.
//!
//! The log is bounded: once its updates pass `log_bytes_max`, the next input writes a
//! new generation (the state after every applied update in `checkpoint.<g+1>`, and a
//! `wal.<g+1>` that holds only a head record with the rest of the protocol's state, if
//! it keeps more than a store and a client table), and the superblock names it once both are synced; the old files are
//! removed once every copy names the new ones. A state replaced wholesale (a snapshot
//! installed from a peer) is written the same way.
//!
//! A restart ([`open_updates`]) reads the best superblock copy, its checkpoint, and
//! the longest intact chain of updates after it. Updates are only appended and a sync
//! covers every write before it, so a crash tears or loses only writes after every
//! synced one: the intact chain holds everything synced. The restarted replica writes
//! a new generation before it sends anything, so that it never appends after a torn
//! tail, and so that what it read (which may include writes no sync covered, still
//! only in a cache) is durable before anyone learns of it.
//!
//! Outside the model: damage to synced bytes, and lost disks. A damaged checkpoint or
//! a superblock with no intact copy is refused at start ([`OpenError`]); a damaged log
//! record cannot be told from a crash's torn write and ends the log there, which can
//! lose updates this replica acknowledged.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client_table::ClientTable;
use crate::config::{Config, Defect};
use crate::ids::{ClusterId, ReplicaId};
use crate::protocol::Outputs;
use crate::replica::Output;
use crate::store::NoteStore;

use super::format::{RecordKind, chain_seed, decode_record, encode_record};
use super::open::{best_superblock, read_checkpoint};
use super::{DiskFile, DiskImage, OpenError, SUPERBLOCK_COPIES, StorageOp, Superblock, encode_checkpoint};

/// A primary-backup replica's state as its data directory holds it.
#[derive(Debug)]
pub(crate) struct RecoveredUpdates<T> {
    pub superblock: Superblock,
    /// Which superblock copies hold the winning sequence (the others are rewritten).
    pub copies_current: [bool; SUPERBLOCK_COPIES as usize],
    /// The state after `superblock.checkpoint_op` updates.
    pub store: NoteStore,
    pub client_table: ClientTable,
    /// The updates applied after the checkpoint, in the order they were applied.
    pub updates: Vec<T>,
    /// Checkpoints and logs of other generations: older ones a crash kept from removal
    /// (an older superblock copy may still name them), and newer ones a crash
    /// interrupted before any intact copy named them.
    pub stale_files: Vec<DiskFile>,
}

/// Reads the data directory of `config`'s replica, whose log holds updates of type `T`.
pub(crate) fn open_updates<T: DeserializeOwned>(
    config: &Config,
    disk: &DiskImage,
) -> Result<RecoveredUpdates<T>, OpenError> {
    let (superblock, copies_current) = best_superblock(config, disk)?;
    let generation = superblock.generation;
    let (store, client_table) = read_checkpoint(config, disk, superblock)
        .map_err(|reason| OpenError::CheckpointDamaged { file: DiskFile::Checkpoint { generation }.name(), reason })?;
    let wal_file = DiskFile::Wal { generation };
    let wal = disk.get(&wal_file).map(Vec::as_slice).unwrap_or_default();
    let mut chain = chain_seed(config.cluster, config.replica, wal_file);
    let (mut offset, mut updates) = (0, Vec::new());
    while offset < wal.len() {
        // A crash's torn or lost write: nothing after it was synced.
        let Ok(record) = decode_record(&wal[offset..], chain) else { break };
        // An intact record that is not this protocol's update was never written by it.
        let update = (record.kind == RecordKind::Entry)
            .then(|| postcard::from_bytes::<T>(record.body).ok())
            .flatten()
            .ok_or_else(|| OpenError::OtherProtocol { file: wal_file.name(), record: updates.len() as u64 })?;
        updates.push(update);
        offset += record.length;
        chain = record.checksum;
    }
    let stale_files = disk
        .keys()
        .copied()
        .filter(|file| match file {
            DiskFile::Wal { generation: other } | DiskFile::Checkpoint { generation: other } => *other != generation,
            DiskFile::Superblock { .. } => false,
        })
        .collect();
    Ok(RecoveredUpdates { superblock, copies_current, store, client_table, updates, stale_files })
}

/// An output decided while writes before it were not yet durable.
#[derive(Debug)]
struct Held {
    /// Every write numbered below this must be synced ...
    write: u64,
    /// ... and every superblock copy hold this sequence.
    sequence: u64,
    output: Output,
}

#[derive(Clone, Copy, Debug)]
struct SyncInFlight {
    id: u64,
    /// Every write numbered below this is covered.
    covers_before: u64,
    /// The superblock copy this sync makes durable, with the sequence it holds.
    copy: Option<(u8, u64)>,
}

/// What a primary-backup replica has asked to be on disk, what is durable, and the
/// outputs that wait for it.
#[derive(Debug)]
pub(crate) struct UpdateJournal {
    cluster: ClusterId,
    replica: ReplicaId,
    defect: Option<Defect>,
    /// A new generation is written once the log file grows past this.
    wal_bytes_max: u64,
    /// The latest superblock; `copies[i]` is the sequence copy `i` durably holds.
    superblock: Superblock,
    copies: [u64; SUPERBLOCK_COPIES as usize],
    /// `wal.<superblock.generation>`: where the next record goes, and what it chains to.
    wal_offset: u64,
    wal_chain: u64,
    /// The bytes of the generation's head record: the updates after it are what grows.
    wal_head_bytes: u64,
    /// The updates applied since the last input, encoded, to be written at its end.
    pending: Vec<Vec<u8>>,
    /// The next input writes a new generation: the journal has never written one, or
    /// the replica restarted, or its state was replaced wholesale.
    generation_needed: bool,
    next_write: u64,
    synced_before: u64,
    next_sync_id: u64,
    in_flight: Option<SyncInFlight>,
    held: Vec<Held>,
    /// Files to remove once every superblock copy holds `retire_at` or later.
    retiring: Vec<DiskFile>,
    retire_at: u64,
    /// Files of generations after the live one, removed before the next generation is
    /// written: appending to a file an interrupted attempt at the same generation left
    /// would continue that attempt's chain.
    stale: Vec<DiskFile>,
}

impl UpdateJournal {
    /// The journal of a replica with an empty data directory: its first input writes
    /// the first generation, and nothing leaves before every superblock copy names it.
    pub(crate) fn unformatted(config: &Config) -> UpdateJournal {
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
        UpdateJournal {
            cluster: config.cluster,
            replica: config.replica,
            defect: config.defect,
            wal_bytes_max: config.limits.log_bytes_max as u64,
            superblock,
            copies: [0; SUPERBLOCK_COPIES as usize],
            wal_offset: 0,
            wal_chain: 0,
            wal_head_bytes: 0,
            pending: Vec::new(),
            generation_needed: true,
            next_write: 0,
            synced_before: 0,
            next_sync_id: 1,
            in_flight: None,
            held: Vec::new(),
            retiring: Vec::new(),
            retire_at: 0,
            stale: Vec::new(),
        }
    }

    /// The journal of a replica restarted from its data directory: its first input
    /// writes a new generation, and the current one is removed once that is durable.
    pub(crate) fn reopened<T>(config: &Config, recovered: &RecoveredUpdates<T>) -> UpdateJournal {
        let mut journal = UpdateJournal::unformatted(config);
        let superblock = recovered.superblock;
        journal.superblock = superblock;
        for (copy, current) in recovered.copies_current.iter().enumerate() {
            // A stale or damaged copy is rewritten with the new generation.
            journal.copies[copy] = if *current { superblock.sequence } else { 0 };
        }
        let live = superblock.generation;
        journal.retire_at = superblock.sequence + 1;
        for file in &recovered.stale_files {
            match file {
                DiskFile::Wal { generation } | DiskFile::Checkpoint { generation } if *generation > live => {
                    journal.stale.push(*file);
                }
                // Removed with the live generation, once every copy names the next one.
                _ => journal.retiring.push(*file),
            }
        }
        journal
    }

    /// Records an update this replica just applied; written at the end of the input.
    pub(crate) fn append<T: Serialize>(&mut self, update: &T) {
        self.pending.push(postcard::to_allocvec(update).expect("plain data always encodes"));
    }

    /// The replica's state was replaced wholesale (a snapshot from a peer): no list of
    /// updates leads to it, so the next input writes it as a new generation.
    pub(crate) fn replace_state(&mut self) {
        self.generation_needed = true;
    }

    /// Whether the next [`UpdateJournal::after_input`] writes a new generation: a
    /// protocol whose state is more than its store and client table gives it the rest
    /// then, as the first record of the new log.
    pub(crate) fn writes_generation(&self) -> bool {
        let updates_bytes = self.wal_offset - self.wal_head_bytes;
        self.generation_needed || (updates_bytes > self.wal_bytes_max && !self.pending.is_empty())
    }

    /// Writes what the input changed (`applied` updates in all make `store` and
    /// `client_table`; a new generation's log starts with `head`, if given), holds
    /// every message and reply in `outputs` that must wait for it, and starts the next
    /// sync if none is in flight.
    pub(crate) fn after_input<H: Serialize>(
        &mut self,
        applied: u64,
        store: &NoteStore,
        client_table: &ClientTable,
        head: Option<&H>,
        outputs: &mut Outputs,
    ) {
        if self.writes_generation() {
            self.write_generation(applied, store, client_table, head, outputs);
        } else if !self.pending.is_empty() {
            let mut bytes = Vec::new();
            for body in std::mem::take(&mut self.pending) {
                self.wal_chain = encode_record(&mut bytes, RecordKind::Entry, self.wal_chain, &body);
            }
            let file = DiskFile::Wal { generation: self.superblock.generation };
            let offset = self.wal_offset;
            self.wal_offset += bytes.len() as u64;
            self.write(StorageOp::Write { file, offset, bytes }, outputs);
        }
        self.hold(outputs);
        self.pump(outputs);
    }

    /// Takes a sync's completion: releases what it covers, and starts the next step.
    /// A completion the journal did not ask for (a host's bug) is ignored.
    pub(crate) fn on_synced(&mut self, id: u64, outputs: &mut Outputs) {
        let Some(in_flight) = self.in_flight.filter(|in_flight| in_flight.id == id) else { return };
        self.in_flight = None;
        self.synced_before = self.synced_before.max(in_flight.covers_before);
        if let Some((copy, sequence)) = in_flight.copy {
            self.copies[usize::from(copy)] = sequence;
        }
        let held = std::mem::take(&mut self.held);
        for held in held {
            if self.held.is_empty() && self.covered(held.write, held.sequence) {
                outputs.push(held.output);
            } else {
                // Outputs leave in the order they were decided.
                self.held.push(held);
            }
        }
        self.pump(outputs);
    }

    fn write(&mut self, op: StorageOp, outputs: &mut Outputs) {
        self.next_write += 1;
        outputs.storage(op);
    }

    /// A new generation: the state after `applied` updates in `checkpoint.<g+1>`, and an
    /// empty `wal.<g+1>`; the superblock names them once both are synced.
    fn write_generation<H: Serialize>(
        &mut self,
        applied: u64,
        store: &NoteStore,
        client_table: &ClientTable,
        head: Option<&H>,
        outputs: &mut Outputs,
    ) {
        let generation = self.superblock.generation + 1;
        for file in std::mem::take(&mut self.stale) {
            self.write(StorageOp::Remove { file }, outputs);
        }
        let bytes = encode_checkpoint(self.cluster, self.replica, generation, applied, store, client_table);
        self.write(StorageOp::Write { file: DiskFile::Checkpoint { generation }, offset: 0, bytes }, outputs);
        let mut wal_chain = chain_seed(self.cluster, self.replica, DiskFile::Wal { generation });
        let mut bytes = Vec::new();
        if let Some(head) = head {
            let body = postcard::to_allocvec(head).expect("plain data always encodes");
            wal_chain = encode_record(&mut bytes, RecordKind::Entry, wal_chain, &body);
        }
        // Written even when empty, so that a directory listing shows the generation whole.
        let wal_offset = bytes.len() as u64;
        self.write(StorageOp::Write { file: DiskFile::Wal { generation }, offset: 0, bytes }, outputs);
        if self.superblock.generation > 0 {
            let old = self.superblock.generation;
            self.retiring.push(DiskFile::Wal { generation: old });
            self.retiring.push(DiskFile::Checkpoint { generation: old });
        }
        self.pending.clear();
        self.generation_needed = false;
        self.wal_offset = wal_offset;
        self.wal_head_bytes = wal_offset;
        self.wal_chain = wal_chain;
        self.superblock.generation = generation;
        self.superblock.checkpoint_op = applied;
        self.superblock.sequence += 1;
        self.retire_at = self.superblock.sequence;
        // Until the superblock names it, a restart reads the old generation, which lacks
        // what the checkpoint holds: what waits now waits for the new superblock too.
        for held in &mut self.held {
            held.sequence = self.superblock.sequence;
        }
    }

    fn hold(&mut self, outputs: &mut Outputs) {
        let (write, sequence) = (self.next_write, self.superblock.sequence);
        if self.held.is_empty() && self.covered(write, sequence) {
            return;
        }
        let held = &mut self.held;
        outputs.retain(|output| match output {
            Output::Send { .. } | Output::Reply { .. } => {
                held.push(Held { write, sequence, output: output.clone() });
                false
            }
            Output::Event(_) | Output::Storage(_) => true,
        });
    }

    fn covered(&self, write: u64, sequence: u64) -> bool {
        let synced_before = match self.defect {
            // The deliberate bug: the last write of a group commit counts as synced.
            Some(Defect::AcknowledgeBeforeSync) => self.synced_before + 1,
            _ => self.synced_before,
        };
        write <= synced_before && sequence <= self.durable_sequence()
    }

    /// The superblock sequence every copy durably holds.
    fn durable_sequence(&self) -> u64 {
        *self.copies.iter().min().expect("copies")
    }

    /// One sync in flight at a time: the writes since the last, else the next superblock
    /// copy that lags (written only once everything before it is synced).
    fn pump(&mut self, outputs: &mut Outputs) {
        if self.in_flight.is_some() || self.superblock.generation == 0 {
            return;
        }
        if self.durable_sequence() >= self.retire_at && !self.retiring.is_empty() {
            for file in std::mem::take(&mut self.retiring) {
                self.write(StorageOp::Remove { file }, outputs);
            }
        }
        let mut copy = None;
        if self.synced_before == self.next_write {
            let sequence = self.superblock.sequence;
            // The copies furthest behind first: a crash tears at most the copy being
            // written, and the copies that hold the latest durable sequence go last.
            let lagging = (0..SUPERBLOCK_COPIES)
                .filter(|copy| self.copies[usize::from(*copy)] < sequence)
                .min_by_key(|copy| (self.copies[usize::from(*copy)], *copy));
            if let Some(lagging) = lagging {
                let bytes = self.superblock.encode(lagging);
                let file = DiskFile::Superblock { copy: lagging };
                self.write(StorageOp::Write { file, offset: 0, bytes }, outputs);
                copy = Some((lagging, sequence));
            }
        }
        if self.synced_before < self.next_write {
            let id = self.next_sync_id;
            self.next_sync_id += 1;
            self.in_flight = Some(SyncInFlight { id, covers_before: self.next_write, copy });
            outputs.storage(StorageOp::Sync { id });
        }
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.synced_before <= self.next_write, "only writes made are synced");
        assert!(self.durable_sequence() <= self.superblock.sequence, "no copy is ahead of the superblock");
        assert!(self.pending.is_empty(), "every update applied is written at the end of its input");
        if let Some(in_flight) = self.in_flight {
            assert!(in_flight.covers_before <= self.next_write && in_flight.covers_before > self.synced_before);
        }
        for pair in self.held.windows(2) {
            assert!(pair[0].write <= pair[1].write, "held outputs leave in the order they were decided");
        }
    }
}

#[cfg(test)]
mod tests;
