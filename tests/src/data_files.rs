//! Reading and damaging the files of a stopped replica's data directory, as a
//! rotting sector or a stray write would.

use std::path::{Path, PathBuf};

use noted_core::storage::format::{RECORD_HEADER_BYTES, RecordKind, decode_record_unchained};

/// One record of a data directory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAt {
    pub offset: usize,
    pub kind: RecordKind,
    pub body_bytes: usize,
}

/// The records of a data directory file, from its start to the first that does not decode.
pub fn records(bytes: &[u8]) -> Vec<RecordAt> {
    let mut found = Vec::new();
    let mut offset = 0;
    while let Ok((record, _)) = decode_record_unchained(&bytes[offset..]) {
        found.push(RecordAt { offset, kind: record.kind, body_bytes: record.body.len() });
        offset += record.length;
    }
    found
}

/// The newest `<stem>.<generation>` file of a data directory (`wal`, `checkpoint`).
pub fn newest(dir: &Path, stem: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let generation: u64 = name.strip_prefix(stem)?.strip_prefix('.')?.parse().ok()?;
            Some((generation, dir.join(name)))
        })
        .max()
        .map(|(_, path)| path)
}

/// Flips one bit of the byte in the middle of `record`'s body in `path`.
pub fn flip_body_byte(path: &Path, record: RecordAt) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let at = record.offset + RECORD_HEADER_BYTES + record.body_bytes / 2;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes)
}

/// Flips a byte in the body of record number `pick` (modulo the count) of the
/// newest log file whose kind `wanted` accepts; says what it hit.
pub fn flip_in_newest_log(dir: &Path, pick: usize, wanted: impl Fn(RecordKind) -> bool) -> Result<String, String> {
    let wal = newest(dir, "wal").ok_or_else(|| format!("no log file in {}", dir.display()))?;
    let bytes = std::fs::read(&wal).map_err(|error| format!("cannot read {}: {error}", wal.display()))?;
    let candidates: Vec<RecordAt> = records(&bytes).into_iter().filter(|record| wanted(record.kind)).collect();
    if candidates.is_empty() {
        return Err(format!("{} holds no such record", wal.display()));
    }
    let record = candidates[pick % candidates.len()];
    flip_body_byte(&wal, record).map_err(|error| format!("cannot write {}: {error}", wal.display()))?;
    Ok(format!("a {:?} record at byte {} of {}", record.kind, record.offset, wal.display()))
}

/// Flips a byte in the body of superblock copy `copy`.
pub fn flip_in_superblock(dir: &Path, copy: u8) -> Result<String, String> {
    let path = dir.join(format!("superblock.{copy}"));
    let bytes = std::fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let record = *records(&bytes).first().ok_or_else(|| format!("{} holds no record", path.display()))?;
    flip_body_byte(&path, record).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(format!("superblock copy {copy} in {}", dir.display()))
}
