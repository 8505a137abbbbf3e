//! The on-disk record: every byte noted writes to a data directory is inside one.
//!
//! ```text
//! offset  bytes  field
//!      0      4  magic "ntd\0"
//!      4      2  format version (FORMAT_VERSION)
//!      6      1  kind (RecordKind)
//!      7      1  zero
//!      8      4  body length
//!     12      4  zero
//!     16      8  chain: the checksum of the record before this one in its file
//!                (the first record chains to its file's seed)
//!     24      8  body checksum (XXH3-64)
//!     32      8  header checksum (XXH3-64 of bytes 0..32)
//!     40      n  body: postcard
//! ```
//!
//! The header checksum is the record's checksum, and the next record's chain. A
//! torn write fails a checksum; a lost write breaks the chain of the record after
//! it; a write that landed in another file, or at another place in its file,
//! chains to the wrong record or seed. The seed of a file names the cluster, the
//! replica and the file, so a record copied from another data directory never
//! fits either.

use xxhash_rust::xxh3::xxh3_64;

use crate::ids::{ClusterId, ReplicaId};

use super::DiskFile;

/// The version of every record noted writes. A data directory holding another
/// version is refused at start, never reinterpreted.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: [u8; 4] = *b"ntd\0";

pub const RECORD_HEADER_BYTES: usize = 40;

/// No record body is larger: a larger length is damage, not a record.
pub const RECORD_BODY_BYTES_MAX: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A log entry (write-ahead log).
    Entry = 1,
    /// Every entry after `after` is gone (write-ahead log).
    Truncate = 2,
    /// The head of a checkpoint: what the state holds, and after which op.
    CheckpointHead = 3,
    /// A chunk of a checkpoint's pieces.
    CheckpointChunk = 4,
    /// One copy of the superblock.
    Superblock = 5,
    /// Every entry up to this op is committed (write-ahead log): on restart they are
    /// executed at once, so what is uncommitted stays within its bound.
    Commit = 6,
    /// Every byte of this log file before this offset is synced (write-ahead log).
    /// A replica acknowledges an entry only once such a record covering it is
    /// itself synced: on restart, damage before the highest of these offsets is
    /// damage to what was synced, and anything after it was never acknowledged.
    Durable = 7,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::Entry,
            2 => RecordKind::Truncate,
            3 => RecordKind::CheckpointHead,
            4 => RecordKind::CheckpointChunk,
            5 => RecordKind::Superblock,
            6 => RecordKind::Commit,
            7 => RecordKind::Durable,
            _ => return None,
        })
    }
}

/// Why bytes are not a record that continues the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the file ends inside a record")]
    Truncated,
    #[error("no record starts here")]
    NoMagic,
    #[error("the header checksum does not match")]
    HeaderChecksum,
    #[error("format version {0}; this release reads version {FORMAT_VERSION}")]
    UnknownVersion(u16),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("a body of {0} bytes")]
    TooLarge(u64),
    #[error("the body checksum does not match")]
    BodyChecksum,
    #[error("the record does not follow the one before it")]
    Chain,
}

/// One record, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: RecordKind,
    pub body: &'a [u8],
    /// The record's checksum: the chain of the next record.
    pub checksum: u64,
    /// Header and body.
    pub length: usize,
}

/// The chain of the first record of `file` in the data directory of `replica` of `cluster`.
pub fn chain_seed(cluster: ClusterId, replica: ReplicaId, file: DiskFile) -> u64 {
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(b"noted");
    seed.extend_from_slice(&cluster.0.to_le_bytes());
    seed.push(replica.0);
    let (tag, number) = match file {
        DiskFile::Superblock { copy } => (0u8, u64::from(copy)),
        DiskFile::Wal { generation } => (1, generation),
        DiskFile::Checkpoint { generation } => (2, generation),
    };
    seed.push(tag);
    seed.extend_from_slice(&number.to_le_bytes());
    xxh3_64(&seed)
}

/// Appends a record of `kind` with `body`, chained to `chain`, to `out`; returns its checksum.
pub fn encode_record(out: &mut Vec<u8>, kind: RecordKind, chain: u64, body: &[u8]) -> u64 {
    assert!(body.len() <= RECORD_BODY_BYTES_MAX, "a record body of {} bytes", body.len());
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&chain.to_le_bytes());
    out.extend_from_slice(&xxh3_64(body).to_le_bytes());
    let checksum = xxh3_64(&out[start..start + 32]);
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(body);
    debug_assert_eq!(out.len() - start, RECORD_HEADER_BYTES + body.len());
    checksum
}

/// The record at the start of `bytes`, which must chain to `chain`.
pub fn decode_record(bytes: &[u8], chain: u64) -> Result<RecordRef<'_>, RecordError> {
    let (record, record_chain) = decode_record_unchained(bytes)?;
    if record_chain != chain {
        return Err(RecordError::Chain);
    }
    Ok(record)
}

/// The record at the start of `bytes`, whatever it chains to (returned beside it):
/// for reading past a break in a chain.
pub fn decode_record_unchained(bytes: &[u8]) -> Result<(RecordRef<'_>, u64), RecordError> {
    let header = bytes.get(..RECORD_HEADER_BYTES).ok_or(RecordError::Truncated)?;
    if header[..4] != MAGIC {
        return Err(RecordError::NoMagic);
    }
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("eight bytes"));
    let checksum = field(32);
    if xxh3_64(&header[..32]) != checksum {
        return Err(RecordError::HeaderChecksum);
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    let kind = RecordKind::from_byte(header[6]).ok_or(RecordError::UnknownKind(header[6]))?;
    let length = u64::from(u32::from_le_bytes(header[8..12].try_into().expect("four bytes")));
    if length > RECORD_BODY_BYTES_MAX as u64 {
        return Err(RecordError::TooLarge(length));
    }
    let body = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length as usize).ok_or(RecordError::Truncated)?;
    if xxh3_64(body) != field(24) {
        return Err(RecordError::BodyChecksum);
    }
    Ok((RecordRef { kind, body, checksum, length: RECORD_HEADER_BYTES + body.len() }, field(16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> u64 {
        chain_seed(ClusterId(7), ReplicaId(1), DiskFile::Wal { generation: 1 })
    }

    #[test]
    fn records_round_trip_in_a_chain() {
        let mut bytes = Vec::new();
        let first = encode_record(&mut bytes, RecordKind::Entry, seed(), b"one");
        let second = encode_record(&mut bytes, RecordKind::Truncate, first, b"two");
        let one = decode_record(&bytes, seed()).unwrap();
        assert_eq!((one.kind, one.body, one.checksum), (RecordKind::Entry, &b"one"[..], first));
        let two = decode_record(&bytes[one.length..], one.checksum).unwrap();
        assert_eq!((two.kind, two.body, two.checksum), (RecordKind::Truncate, &b"two"[..], second));
        assert_eq!(one.length + two.length, bytes.len());
    }

    #[test]
    fn every_flipped_byte_and_every_tear_is_detected() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Entry, seed(), b"a body of some length");
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            assert!(decode_record(&damaged, seed()).is_err(), "byte {index} flipped");
        }
        for length in 0..bytes.len() {
            assert!(decode_record(&bytes[..length], seed()).is_err(), "torn at {length}");
        }
    }

    #[test]
    fn a_record_of_another_file_replica_or_cluster_does_not_chain() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Entry, seed(), b"x");
        for other in [
            chain_seed(ClusterId(8), ReplicaId(1), DiskFile::Wal { generation: 1 }),
            chain_seed(ClusterId(7), ReplicaId(2), DiskFile::Wal { generation: 1 }),
            chain_seed(ClusterId(7), ReplicaId(1), DiskFile::Wal { generation: 2 }),
            chain_seed(ClusterId(7), ReplicaId(1), DiskFile::Checkpoint { generation: 1 }),
        ] {
            assert_eq!(decode_record(&bytes, other), Err(RecordError::Chain));
        }
    }

    #[test]
    fn another_version_is_named_not_misread() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Entry, seed(), b"x");
        bytes[4] = 9;
        let checksum = xxh3_64(&bytes[..32]);
        bytes[32..40].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode_record(&bytes, seed()), Err(RecordError::UnknownVersion(9)));
    }
}
