//! A simulated disk per replica: what a replica wrote, what a sync made durable,
//! and what a crash leaves of the rest.
//!
//! Writes and removals wait in order until a sync covers them. A sync completes
//! after a drawn latency (with a long tail); only then is what it covers durable.
//! A crash (power loss) keeps each write not yet covered with some chance, and
//! tears some of those it keeps: only a prefix of the bytes lands, the rest of
//! the range keeps what it held. Reads at restart see the durable files.

use std::collections::BTreeMap;

use noted_core::storage::{DiskFile, DiskImage, StorageOp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::options::StorageOptions;

#[derive(Clone, Debug)]
enum Pending {
    Write { file: DiskFile, offset: u64, bytes: Vec<u8> },
    Remove { file: DiskFile },
}

/// What a crash did to the writes that no sync covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashDamage {
    pub lost: usize,
    pub kept: usize,
    pub torn: usize,
}

#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: DiskImage,
    /// Writes and removals not yet durable, in order, each with its number.
    pending: Vec<(u64, Pending)>,
    next_number: u64,
    /// Syncs asked for and not completed: each covers the pending operations numbered below its mark.
    syncs: BTreeMap<u64, u64>,
}

impl SimDisk {
    /// A disk holding `files`, durable.
    pub fn formatted(files: Vec<(DiskFile, Vec<u8>)>) -> SimDisk {
        SimDisk { files: files.into_iter().collect(), ..SimDisk::default() }
    }

    /// An empty disk: one that was replaced, or whose contents were lost.
    pub fn blank() -> SimDisk {
        SimDisk::default()
    }

    /// Whether the disk holds no superblock: a replica starting on it has no state.
    pub fn is_blank(&self) -> bool {
        !self.files.keys().any(|file| matches!(file, DiskFile::Superblock { .. }))
    }

    pub fn image(&self) -> &DiskImage {
        &self.files
    }

    /// Takes one storage operation from the replica; a sync's id is returned, to
    /// complete it later with [`SimDisk::complete_sync`].
    pub fn take(&mut self, op: StorageOp) -> Option<u64> {
        let number = self.next_number;
        match op {
            StorageOp::Write { file, offset, bytes } => {
                self.pending.push((number, Pending::Write { file, offset, bytes }));
                self.next_number += 1;
                None
            }
            StorageOp::Remove { file } => {
                self.pending.push((number, Pending::Remove { file }));
                self.next_number += 1;
                None
            }
            StorageOp::Sync { id } => {
                self.syncs.insert(id, number);
                Some(id)
            }
        }
    }

    /// Makes what sync `id` covers durable; false for a sync this disk was not asked for.
    pub fn complete_sync(&mut self, id: u64) -> bool {
        let Some(mark) = self.syncs.remove(&id) else { return false };
        let covered = self.pending.partition_point(|(number, _)| *number < mark);
        for (_, pending) in self.pending.drain(..covered).collect::<Vec<_>>() {
            apply(&mut self.files, pending, None);
        }
        true
    }

    /// Power loss: each operation no sync covered lands with the options' chance,
    /// and a write that lands may be torn. Syncs in flight never complete.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng, options: &StorageOptions) -> CrashDamage {
        let mut damage = CrashDamage::default();
        for (_, pending) in std::mem::take(&mut self.pending) {
            if !rng.random_bool(f64::from(options.unsynced_kept_per_mille) / 1000.0) {
                damage.lost += 1;
                continue;
            }
            let tear = match &pending {
                Pending::Write { bytes, .. }
                    if !bytes.is_empty() && rng.random_bool(f64::from(options.torn_per_mille) / 1000.0) =>
                {
                    damage.torn += 1;
                    Some(rng.random_range(0..bytes.len()))
                }
                _ => {
                    damage.kept += 1;
                    None
                }
            };
            apply(&mut self.files, pending, tear);
        }
        self.syncs.clear();
        damage
    }
}

/// Which part of a disk a corruption strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptionTarget {
    /// One of the last records of the newest log file: entries that may be acknowledged.
    LogTail,
    /// One superblock copy.
    SuperblockCopy,
    /// The newest checkpoint.
    Checkpoint,
}

impl SimDisk {
    /// Flips one byte of the target (as a sector that rots, or a write that went
    /// astray, would change it); returns what was hit, or `None` when the target
    /// does not exist yet.
    pub fn corrupt(&mut self, rng: &mut ChaCha8Rng, target: CorruptionTarget) -> Option<String> {
        let file = match target {
            CorruptionTarget::LogTail => self.newest(|file| matches!(file, DiskFile::Wal { .. }))?,
            CorruptionTarget::Checkpoint => self.newest(|file| matches!(file, DiskFile::Checkpoint { .. }))?,
            CorruptionTarget::SuperblockCopy => DiskFile::Superblock { copy: rng.random_range(0..4) },
        };
        let contents = self.files.get_mut(&file).filter(|contents| !contents.is_empty())?;
        let window = match target {
            CorruptionTarget::LogTail => contents.len().min(2_048),
            _ => contents.len(),
        };
        let at = contents.len() - 1 - rng.random_range(0..window);
        contents[at] ^= 1 << rng.random_range(0..8u32);
        Some(format!("{} byte {at}", file.name()))
    }

    fn newest(&self, kind: impl Fn(&DiskFile) -> bool) -> Option<DiskFile> {
        self.files.keys().filter(|file| kind(file)).max().copied()
    }
}

/// Carries out one operation on the files; `tear` keeps only that many bytes of a write.
fn apply(files: &mut DiskImage, pending: Pending, tear: Option<usize>) {
    match pending {
        Pending::Write { file, offset, bytes } => {
            let landed = &bytes[..tear.unwrap_or(bytes.len())];
            let contents = files.entry(file).or_default();
            let start = usize::try_from(offset).expect("simulated files fit in memory");
            if contents.len() < start + landed.len() {
                contents.resize(start + landed.len(), 0);
            }
            contents[start..start + landed.len()].copy_from_slice(landed);
        }
        Pending::Remove { file } => {
            files.remove(&file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn write(generation: u64, offset: u64, bytes: &[u8]) -> StorageOp {
        StorageOp::Write { file: DiskFile::Wal { generation }, offset, bytes: bytes.to_vec() }
    }

    #[test]
    fn a_sync_makes_durable_only_what_came_before_it() {
        let mut disk = SimDisk::blank();
        disk.take(write(1, 0, b"abc"));
        assert_eq!(disk.take(StorageOp::Sync { id: 7 }), Some(7));
        disk.take(write(1, 3, b"def"));
        assert!(disk.complete_sync(7));
        assert!(!disk.complete_sync(7));
        assert_eq!(disk.image()[&DiskFile::Wal { generation: 1 }], b"abc");
        let options = StorageOptions { unsynced_kept_per_mille: 0, ..StorageOptions::MEMORY };
        let damage = disk.crash(&mut ChaCha8Rng::seed_from_u64(1), &options);
        assert_eq!(damage, CrashDamage { lost: 1, kept: 0, torn: 0 });
        assert_eq!(disk.image()[&DiskFile::Wal { generation: 1 }], b"abc");
    }

    #[test]
    fn a_torn_write_lands_in_part() {
        let mut disk = SimDisk::blank();
        disk.take(write(1, 0, b"0123456789"));
        let options = StorageOptions { unsynced_kept_per_mille: 1000, torn_per_mille: 1000, ..StorageOptions::MEMORY };
        let damage = disk.crash(&mut ChaCha8Rng::seed_from_u64(3), &options);
        assert_eq!(damage.torn, 1);
        let landed = &disk.image()[&DiskFile::Wal { generation: 1 }];
        assert!(landed.len() < 10 && b"0123456789".starts_with(landed));
    }
}
