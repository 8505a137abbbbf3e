//! Durable storage, sans-IO: the replica decides what must be on disk
//! before which message leaves, and says so as [`StorageOp`]s; the host writes,
//! syncs, and reports each sync's completion as [`crate::Input::Synced`].
//!
//! A data directory holds:
//!
//! ```text
//! superblock.0 .. superblock.3   the same superblock, four copies, each one record
//! checkpoint.<g>                 the store and client table after some op, in records
//! wal.<g>                        the write-ahead log: the entries after that op
//! ```
//!
//! Every byte is inside a checksummed record chained to the one before it
//! ([`format`]). The **superblock** names the cluster and replica, the view this
//! replica promised (`view`) and the view whose log it holds (`log_view`), and
//! the generation `g` of the live checkpoint and log. The copies are rewritten
//! one at a time, each synced before the next, so a torn or lost write damages
//! at most one copy, and the intact copy with the highest sequence number wins.
//!
//! What must be durable before what, for vr (see [`journal`]; the primary-backup
//! protocols keep their own, simpler rule in [`updates`]):
//! - an entry before this replica acknowledges it (`PrepareOk`), and before a
//!   primary counts itself towards the entry's commit quorum;
//! - the view and log view before any message that promises them
//!   (`StartViewChange`, `DoViewChange`, `StartView`, `PrepareOk`,
//!   `ConfirmViewOk`, `RecoveryResponse`);
//! - a superblock copy only after the writes it vouches for are synced (the log
//!   it promises, the generation it names), so the superblock never names a log
//!   that is not on disk; it may share its sync with later writes;
//! - a new checkpoint and the log after it are written to new files and synced
//!   before the superblock names them; the old files are removed only once
//!   every copy names the new ones. A checkpoint the log's size calls for (at a
//!   size staggered by replica) is written a chunk per input while the log goes
//!   on in the live generation; a crash before the superblock names it leaves an
//!   orphan that the restart removes, and its generation is never written again.
//!
//! Group commit: at most one sync is in flight; the writes that arrive meanwhile
//! are covered together by the next.
//!
//! On restart ([`open`]) the replica reads the best superblock copy, the
//! checkpoint it names and the longest chain of intact records of the log after
//! it. A sync covers every write before it, and an entry is acknowledged only
//! once synced: the records lost or torn by a crash come after every record
//! that was synced, so the intact chain holds every entry this replica ever
//! acknowledged.

pub mod format;
pub(crate) mod journal;
mod open;
#[cfg(test)]
mod tests;
pub(crate) mod updates;

use serde::{Deserialize, Serialize};

use crate::client_table::ClientTable;
use crate::ids::{ClusterId, ReplicaId};
use crate::snapshot::{Chunk, Image, Manifest};
use crate::store::NoteStore;
use crate::time::Instant;

pub use format::{FORMAT_VERSION, RecordError};
pub use open::{DiskImage, OpenError, Recovered, open};

use format::{RecordKind, chain_seed, encode_record};

/// How many copies of the superblock a data directory holds.
pub const SUPERBLOCK_COPIES: u8 = 4;

/// A file of a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DiskFile {
    Superblock { copy: u8 },
    Wal { generation: u64 },
    Checkpoint { generation: u64 },
}

impl DiskFile {
    /// The file's name in the data directory.
    pub fn name(self) -> String {
        match self {
            DiskFile::Superblock { copy } => format!("superblock.{copy}"),
            DiskFile::Wal { generation } => format!("wal.{generation}"),
            DiskFile::Checkpoint { generation } => format!("checkpoint.{generation}"),
        }
    }

    /// The file a name in a data directory stands for; `None` for any other name.
    pub fn parse(name: &str) -> Option<DiskFile> {
        let (stem, number) = name.split_once('.')?;
        if number.is_empty()
            || !number.bytes().all(|byte| byte.is_ascii_digit())
            || number.starts_with('0') && number.len() > 1
        {
            return None;
        }
        let number: u64 = number.parse().ok()?;
        match stem {
            "superblock" => u8::try_from(number)
                .ok()
                .filter(|copy| *copy < SUPERBLOCK_COPIES)
                .map(|copy| DiskFile::Superblock { copy }),
            "wal" => Some(DiskFile::Wal { generation: number }),
            "checkpoint" => Some(DiskFile::Checkpoint { generation: number }),
            _ => None,
        }
    }
}

/// One thing the host does to the data directory, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageOp {
    /// Writes `bytes` at `offset`, creating the file if it does not exist (files
    /// are written from their start, and only ever extended or overwritten).
    Write { file: DiskFile, offset: u64, bytes: Vec<u8> },
    /// Removes the file.
    Remove { file: DiskFile },
    /// Makes every write and removal before it durable (the files' data and the
    /// directory), then gives [`crate::Input::Synced`] with this `id`. A sync that
    /// fails is fatal: the host stops the replica, which recovers on restart.
    Sync { id: u64 },
}

/// The superblock: who this data directory belongs to, what this replica
/// promised, and where its state is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superblock {
    pub cluster: ClusterId,
    pub replica: ReplicaId,
    pub replica_count: u8,
    /// Grows with every change; the intact copy with the highest wins.
    pub sequence: u64,
    /// The highest view this replica took part in: it never acts in an older one.
    pub view: u64,
    /// The view whose log the write-ahead log holds.
    pub log_view: u64,
    /// The configuration epoch (one fixed configuration so far: 0).
    pub epoch: u64,
    /// `checkpoint.<generation>` and `wal.<generation>` are live.
    pub generation: u64,
    /// The checkpoint holds the state after this op.
    pub checkpoint_op: u64,
    /// The replica found its log or checkpoint damaged and has not yet taken the
    /// current view's log from its peers: until then it claims no log in a view
    /// change (a damaged entry may be one it acknowledged).
    pub repairing: bool,
    /// How many bytes `wal.<generation>` held when the checkpoint was taken (the
    /// entries after it, rewritten): synced before this superblock was written.
    pub wal_start_bytes: u64,
}

impl Superblock {
    /// One copy, as one record chained to the copy's seed.
    pub fn encode(&self, copy: u8) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("plain data always encodes");
        let mut bytes = Vec::with_capacity(format::RECORD_HEADER_BYTES + body.len());
        encode_record(
            &mut bytes,
            RecordKind::Superblock,
            chain_seed(self.cluster, self.replica, DiskFile::Superblock { copy }),
            &body,
        );
        bytes
    }
}

/// Pieces per checkpoint chunk record: at most this many bytes of the store's
/// bound each, so a record is read and checked in bounded memory, and a replica
/// encodes one of them per input while it writes a checkpoint.
const CHECKPOINT_CHUNK_BYTES: usize = 256 * 1024;

/// The head record of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointHead {
    op: u64,
    manifest: Manifest,
}

/// The bytes of `checkpoint.<generation>`: the state after `op`.
pub fn encode_checkpoint(
    cluster: ClusterId,
    replica: ReplicaId,
    generation: u64,
    op: u64,
    store: &NoteStore,
    client_table: &ClientTable,
) -> Vec<u8> {
    let (mut writer, mut bytes) = CheckpointWriter::begin(cluster, replica, generation, op, store, client_table);
    while let Some(more) = writer.next(usize::MAX) {
        bytes.extend_from_slice(&more);
    }
    bytes
}

/// A checkpoint encoded a few chunks at a time, from a frozen image of the state
/// (whose notes share their bodies with the store): the same bytes as
/// [`encode_checkpoint`], without holding up the replica for all of them at once.
#[derive(Debug)]
pub(crate) struct CheckpointWriter {
    image: Image,
    next_chunk: u64,
    chain: u64,
}

impl CheckpointWriter {
    /// The writer, and the head record that starts the file.
    pub(crate) fn begin(
        cluster: ClusterId,
        replica: ReplicaId,
        generation: u64,
        op: u64,
        store: &NoteStore,
        client_table: &ClientTable,
    ) -> (CheckpointWriter, Vec<u8>) {
        let image = Image::freeze(op, store, client_table, CHECKPOINT_CHUNK_BYTES, Instant::ZERO);
        let mut bytes = Vec::new();
        let head = CheckpointHead { op, manifest: *image.manifest() };
        let seed = chain_seed(cluster, replica, DiskFile::Checkpoint { generation });
        let body = postcard::to_allocvec(&head).expect("plain data always encodes");
        let chain = encode_record(&mut bytes, RecordKind::CheckpointHead, seed, &body);
        (CheckpointWriter { image, next_chunk: 0, chain }, bytes)
    }

    /// The next chunk records, at least one and about `bytes_max` in all; `None` once
    /// every chunk was given.
    pub(crate) fn next(&mut self, bytes_max: usize) -> Option<Vec<u8>> {
        if self.next_chunk >= self.image.manifest().chunks {
            return None;
        }
        let mut bytes = Vec::new();
        while self.next_chunk < self.image.manifest().chunks && (bytes.is_empty() || bytes.len() < bytes_max) {
            let chunk: Chunk = self.image.chunk(self.next_chunk).expect("every chunk of the manifest");
            let body = postcard::to_allocvec(&chunk).expect("plain data always encodes");
            self.chain = encode_record(&mut bytes, RecordKind::CheckpointChunk, self.chain, &body);
            self.next_chunk += 1;
        }
        Some(bytes)
    }
}

/// The files of a new replica's data directory, for the cluster's creation: view
/// 0, an empty store, an empty log. The host writes them and syncs them (and the
/// directory) before it starts the replica with [`crate::Replica::open`].
pub fn format(config: &crate::Config) -> Vec<(DiskFile, Vec<u8>)> {
    let (cluster, replica) = (config.cluster, config.replica);
    let store = NoteStore::new(config.limits.store);
    let table = ClientTable::new(config.limits.clients_max);
    let superblock = Superblock {
        cluster,
        replica,
        replica_count: config.replica_count,
        sequence: 1,
        view: 0,
        log_view: 0,
        epoch: 0,
        generation: 1,
        checkpoint_op: 0,
        repairing: false,
        wal_start_bytes: 0,
    };
    let mut files = vec![
        (DiskFile::Checkpoint { generation: 1 }, encode_checkpoint(cluster, replica, 1, 0, &store, &table)),
        (DiskFile::Wal { generation: 1 }, Vec::new()),
    ];
    for copy in 0..SUPERBLOCK_COPIES {
        files.push((DiskFile::Superblock { copy }, superblock.encode(copy)));
    }
    files
}
