//! Reading a data directory at start: the best superblock copy, the checkpoint
//! it names, and the longest intact chain of the log after it.

use std::collections::BTreeMap;

use crate::client_table::ClientTable;
use crate::config::{Config, Defect};
use crate::ids::ReplicaId;
use crate::protocol::vr::Entry;
use crate::snapshot::{Chunk, Download, Progress};
use crate::store::NoteStore;
use crate::time::Instant;

use super::format::{RECORD_HEADER_BYTES, RecordError, RecordKind, chain_seed, decode_record, decode_record_unchained};
use super::{CheckpointHead, DiskFile, SUPERBLOCK_COPIES, Superblock};

/// Why a data directory cannot be opened. Each is refused at start, with this
/// message: nothing is overwritten.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Config(String),
    #[error("the data directory holds no superblock: it is not a replica's (create the cluster first)")]
    Unformatted,
    #[error("no superblock copy is intact: {0}")]
    NoIntactSuperblock(String),
    #[error("the data directory belongs to cluster {found}, not to cluster {expected}")]
    ForeignCluster { found: u64, expected: u64 },
    #[error("the data directory belongs to replica {found}, not to replica {expected}")]
    OtherReplica { found: ReplicaId, expected: ReplicaId },
    #[error("the data directory belongs to a cluster of {found} replicas, not {expected}")]
    OtherClusterSize { found: u8, expected: u8 },
    #[error("the data directory was written in format version {found}; this release reads version {supported}")]
    UnknownVersion { found: u16, supported: u16 },
    #[error("the live checkpoint ({file}) is damaged: {reason}")]
    CheckpointDamaged { file: String, reason: String },
    #[error(
        "record {record} of {file} is intact but not what this replica's protocol writes: the data directory was written by another protocol"
    )]
    OtherProtocol { file: String, record: u64 },
}

/// The files of a data directory, by name.
pub type DiskImage = BTreeMap<DiskFile, Vec<u8>>;

/// A replica's state as its data directory holds it.
#[derive(Debug)]
pub struct Recovered {
    pub superblock: Superblock,
    /// Which superblock copies hold the winning sequence (the others are rewritten).
    pub copies_current: [bool; SUPERBLOCK_COPIES as usize],
    pub store: NoteStore,
    pub client_table: ClientTable,
    /// The op the state holds: the checkpoint's, or 0 when the checkpoint was damaged.
    pub log_start: u64,
    /// The entries after `log_start`, consecutive.
    pub entries: Vec<Entry>,
    /// The entries up to here are committed (executed again at restart).
    pub commit_number: u64,
    /// Where the intact chain of the log ends, and its last checksum: appends continue there.
    pub wal_end: u64,
    pub wal_chain: u64,
    /// What stopped the log's chain before the end of the file, if anything did (a
    /// torn or lost write of a crash).
    pub wal_stopped_by: Option<RecordError>,
    /// How much of the log file its records prove synced.
    pub wal_proven: u64,
    /// Damage that is not a crash's torn or lost write (the checkpoint, or a log record
    /// that was once whole): the replica repairs from its peers.
    pub damage: Option<String>,
    /// Files of generations newer than the superblock names: a checkpoint a crash
    /// interrupted before the superblock named it. Never read, never written again
    /// (records written anew from the start of such a file would leave older ones
    /// after them that still continue the chain), and removed.
    pub orphans: Vec<DiskFile>,
}

/// Reads the data directory of `config`'s replica.
pub fn open(config: &Config, disk: &DiskImage) -> Result<Recovered, OpenError> {
    let (superblock, copies_current) = best_superblock(config, disk)?;
    let generation = superblock.generation;
    let orphans: Vec<DiskFile> = disk
        .keys()
        .copied()
        .filter(|file| match file {
            DiskFile::Wal { generation: newer } | DiskFile::Checkpoint { generation: newer } => *newer > generation,
            DiskFile::Superblock { .. } => false,
        })
        .collect();
    let checkpoint_file = DiskFile::Checkpoint { generation };
    let (store, client_table) = match read_checkpoint(config, disk, superblock) {
        Ok(state) => state,
        Err(reason) => {
            // Nothing after a damaged checkpoint can be executed: the replica starts with
            // no state, keeps its promises (the superblock), and takes the state from its peers.
            let damage = format!("{}: {reason}", checkpoint_file.name());
            return Ok(Recovered {
                superblock,
                copies_current,
                store: NoteStore::new(config.limits.store),
                client_table: ClientTable::new(config.limits.clients_max),
                log_start: 0,
                entries: Vec::new(),
                commit_number: 0,
                wal_end: 0,
                wal_chain: 0,
                wal_stopped_by: None,
                wal_proven: 0,
                damage: Some(damage),
                orphans,
            });
        }
    };
    let wal = disk.get(&DiskFile::Wal { generation }).map(Vec::as_slice).unwrap_or_default();
    let seed = chain_seed(config.cluster, config.replica, DiskFile::Wal { generation });
    let mut entries: Vec<Entry> = Vec::new();
    let mut commit_number = superblock.checkpoint_op;
    let (mut offset, mut chain, mut stopped_by) = (0usize, seed, None);
    let checkpoint_op = superblock.checkpoint_op;
    while offset < wal.len() {
        let record = match decode_record(&wal[offset..], chain) {
            Ok(record) => record,
            Err(error) => {
                stopped_by = Some(error);
                break;
            }
        };
        let last = checkpoint_op + entries.len() as u64;
        let fits = match record.kind {
            RecordKind::Entry => match postcard::from_bytes::<Entry>(record.body) {
                Ok(entry) if entry.op_number > checkpoint_op && entry.op_number <= last + 1 => {
                    let index = (entry.op_number - checkpoint_op - 1) as usize;
                    // The same entry written again leaves the ones after it in place.
                    if entries.get(index) != Some(&entry) {
                        entries.truncate(index);
                        entries.push(entry);
                    }
                    true
                }
                _ => false,
            },
            RecordKind::Durable => postcard::from_bytes::<u64>(record.body).is_ok(),
            RecordKind::Commit => match postcard::from_bytes::<u64>(record.body) {
                Ok(committed) => {
                    commit_number = commit_number.max(committed);
                    true
                }
                Err(_) => false,
            },
            RecordKind::Truncate => match postcard::from_bytes::<u64>(record.body) {
                Ok(after) if after >= checkpoint_op && after >= commit_number.min(last) && after <= last => {
                    entries.truncate((after - checkpoint_op) as usize);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !fits {
            // An intact record that does not continue the log: a write that landed in the wrong place.
            stopped_by = Some(RecordError::Chain);
            break;
        }
        offset += record.length;
        chain = record.checksum;
    }
    // A commit record may have landed without the entries after it.
    let commit_number = commit_number.min(checkpoint_op + entries.len() as u64);
    let proven = durable_proof(wal, superblock.wal_start_bytes);
    let damage = match &stopped_by {
        Some(error) if (offset as u64) < proven && config.defect != Some(Defect::TruncateDamagedLog) => Some(format!(
            "{} at byte {offset} (synced through byte {proven}): {error}",
            DiskFile::Wal { generation }.name()
        )),
        _ => None,
    };
    Ok(Recovered {
        superblock,
        copies_current,
        store,
        client_table,
        log_start: checkpoint_op,
        entries,
        commit_number,
        wal_end: offset as u64,
        wal_chain: chain,
        wal_stopped_by: stopped_by,
        wal_proven: proven,
        damage,
        orphans,
    })
}

/// How much of a log file was synced, as far as its own records prove: the highest
/// offset any intact `Durable` record names (wherever it lies, even past a break in
/// the chain: every record in a generation's file was written by this replica),
/// and the rewritten start of the generation. A break before it is damage to
/// synced bytes; a break at or after it is what a crash left of writes no
/// acknowledgement waited for.
fn durable_proof(wal: &[u8], start_bytes: u64) -> u64 {
    let mut proven = start_bytes;
    let mut at = 0;
    while at + RECORD_HEADER_BYTES <= wal.len() {
        match decode_record_unchained(&wal[at..]) {
            Ok((record, _)) => {
                if record.kind == RecordKind::Durable
                    && let Ok(offset) = postcard::from_bytes::<u64>(record.body)
                {
                    proven = proven.max(offset);
                }
                at += record.length;
            }
            Err(_) => at += 1,
        }
    }
    proven
}

pub(super) fn best_superblock(
    config: &Config,
    disk: &DiskImage,
) -> Result<(Superblock, [bool; SUPERBLOCK_COPIES as usize]), OpenError> {
    let mut copies: Vec<Option<Superblock>> = Vec::new();
    let mut any_file = false;
    let mut problems = Vec::new();
    for copy in 0..SUPERBLOCK_COPIES {
        let file = DiskFile::Superblock { copy };
        let Some(bytes) = disk.get(&file) else {
            copies.push(None);
            continue;
        };
        any_file = true;
        // Another cluster's or replica's copy chains to another seed: read it
        // against its own seed first, to say whose it is.
        let decoded =
            decode_record(bytes, chain_seed(config.cluster, config.replica, file)).or_else(|error| match error {
                RecordError::Chain => decode_record(bytes, foreign_seed(bytes, copy).unwrap_or(0)),
                other => Err(other),
            });
        match decoded {
            Ok(record) if record.kind == RecordKind::Superblock => {
                match postcard::from_bytes::<Superblock>(record.body) {
                    Ok(superblock) => {
                        if superblock.cluster != config.cluster {
                            return Err(OpenError::ForeignCluster {
                                found: superblock.cluster.0,
                                expected: config.cluster.0,
                            });
                        }
                        if superblock.replica != config.replica {
                            return Err(OpenError::OtherReplica {
                                found: superblock.replica,
                                expected: config.replica,
                            });
                        }
                        if superblock.replica_count != config.replica_count {
                            return Err(OpenError::OtherClusterSize {
                                found: superblock.replica_count,
                                expected: config.replica_count,
                            });
                        }
                        copies.push(Some(superblock));
                    }
                    Err(error) => {
                        problems.push(format!("{}: {error}", file.name()));
                        copies.push(None);
                    }
                }
            }
            Ok(_) => {
                problems.push(format!("{}: not a superblock record", file.name()));
                copies.push(None);
            }
            Err(RecordError::UnknownVersion(found)) => {
                return Err(OpenError::UnknownVersion { found, supported: super::FORMAT_VERSION });
            }
            Err(error) => {
                problems.push(format!("{}: {error}", file.name()));
                copies.push(None);
            }
        }
    }
    if !any_file || first_superblock_interrupted(disk, &copies, &problems) {
        return Err(OpenError::Unformatted);
    }
    let best = copies.iter().flatten().max_by_key(|superblock| superblock.sequence).copied();
    let Some(best) = best else {
        return Err(OpenError::NoIntactSuperblock(problems.join("; ")));
    };
    let mut current = [false; SUPERBLOCK_COPIES as usize];
    for (index, copy) in copies.iter().enumerate() {
        current[index] = copy.is_some_and(|copy| copy == best);
    }
    Ok((best, current))
}

/// Whether the only superblock file is copy 0, cut short: the replica crashed while
/// writing its first superblock. Copies are written one at a time, each synced
/// before the next, and a replica promises nothing before every copy is synced; so
/// this directory holds no promise, and the replica starts as one with no state.
/// (Damage to a copy that was once complete leaves the others intact.)
fn first_superblock_interrupted(disk: &DiskImage, copies: &[Option<Superblock>], problems: &[String]) -> bool {
    let present: Vec<DiskFile> = (0..SUPERBLOCK_COPIES)
        .map(|copy| DiskFile::Superblock { copy })
        .filter(|file| disk.contains_key(file))
        .collect();
    let Some(bytes) = disk.get(&DiskFile::Superblock { copy: 0 }) else { return false };
    present == [DiskFile::Superblock { copy: 0 }]
        && copies.iter().all(Option::is_none)
        && problems.len() == 1
        && (bytes.len() < RECORD_HEADER_BYTES + 8 || bytes.iter().all(|byte| *byte == 0) || {
            matches!(decode_record(bytes, 0), Err(RecordError::Truncated))
        })
}

/// The seed a superblock copy of another cluster or replica chains to, read from
/// its own body: only to name whose copy it is in the refusal.
fn foreign_seed(bytes: &[u8], copy: u8) -> Option<u64> {
    let body = bytes.get(super::format::RECORD_HEADER_BYTES..)?;
    let superblock: Superblock = postcard::take_from_bytes(body).ok()?.0;
    Some(chain_seed(superblock.cluster, superblock.replica, DiskFile::Superblock { copy }))
}

pub(super) fn read_checkpoint(
    config: &Config,
    disk: &DiskImage,
    superblock: Superblock,
) -> Result<(NoteStore, ClientTable), String> {
    let file = DiskFile::Checkpoint { generation: superblock.generation };
    let bytes = disk.get(&file).ok_or("the file is missing")?;
    let mut chain = chain_seed(config.cluster, config.replica, file);
    let head = decode_record(bytes, chain).map_err(|error| format!("head: {error}"))?;
    if head.kind != RecordKind::CheckpointHead {
        return Err("the first record is not a checkpoint head".into());
    }
    let head_body: CheckpointHead = postcard::from_bytes(head.body).map_err(|error| format!("head: {error}"))?;
    if head_body.op != superblock.checkpoint_op {
        return Err(format!(
            "it holds the state after op {}, the superblock names op {}",
            head_body.op, superblock.checkpoint_op
        ));
    }
    let me = config.replica;
    let mut download = Download::new(me, head_body.manifest, Instant::ZERO);
    let (mut offset, mut index) = (head.length, 0u64);
    chain = head.checksum;
    while !download.is_complete() {
        let record = decode_record(&bytes[offset..], chain).map_err(|error| format!("chunk {index}: {error}"))?;
        if record.kind != RecordKind::CheckpointChunk {
            return Err(format!("chunk {index}: another kind of record"));
        }
        let chunk: Chunk = postcard::from_bytes(record.body).map_err(|error| format!("chunk {index}: {error}"))?;
        match download.accept(me, chunk, &config.limits.store, None) {
            Ok(Progress::More | Progress::Complete) => {}
            Ok(Progress::Ignored) | Err(_) => return Err(format!("chunk {index} does not continue the checkpoint")),
        }
        offset += record.length;
        chain = record.checksum;
        index += 1;
    }
    download.install(config.limits.store, None)
}
