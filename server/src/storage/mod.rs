//! Where a replica keeps its state: in memory only, or in a data directory
//! ([`data_dir`]) that the core's durable storage writes through an
//! [`executor`] thread.

pub mod data_dir;
pub mod executor;

use std::path::PathBuf;

use noted_core::storage::OpenError;
use noted_core::{Config, Instant, Replica};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use data_dir::DataDir;
pub use executor::{FileSizes, StorageHandle, Unsynced};

use crate::failure::Failure;

/// `"storage"` in the cluster file, `--storage` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageChoice {
    /// A data directory: the replica survives restarts, power cuts and damaged files.
    Disk,
    /// Memory only: a replica that stops loses its state and recovers it from its peers.
    Memory,
}

impl StorageChoice {
    pub fn name(self) -> &'static str {
        match self {
            StorageChoice::Disk => "disk",
            StorageChoice::Memory => "memory",
        }
    }
}

/// One replica's storage, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageSettings {
    Memory,
    Disk { dir: PathBuf, unsynced: Unsynced },
}

impl StorageSettings {
    pub fn data_dir(&self) -> Option<&PathBuf> {
        match self {
            StorageSettings::Memory => None,
            StorageSettings::Disk { dir, .. } => Some(dir),
        }
    }
}

/// The data directory of `replica` when none is named: `./noted-data/replica-<id>`.
pub fn default_data_dir(replica: u8) -> PathBuf {
    PathBuf::from("noted-data").join(format!("replica-{replica}"))
}

/// Creates a replica's data directory for a new cluster: locks it, refuses one
/// that holds data already, writes the bootstrap state and syncs it.
pub fn init(config: &Config, dir: &std::path::Path) -> Result<(), Failure> {
    let locked = DataDir::lock(dir)?;
    locked.format(noted_core::storage::format(config))
}

/// A replica started from its storage, and its locked data directory (disk).
pub fn open_replica(
    config: Config,
    settings: &StorageSettings,
    now: Instant,
) -> Result<(Replica, Option<DataDir>), Failure> {
    let StorageSettings::Disk { dir, .. } = settings else {
        let replica = Replica::new(config, now).map_err(|error| Failure::general(error.to_string()))?;
        return Ok((replica, None));
    };
    let locked = DataDir::lock(dir)?;
    let image = locked.read_image()?;
    let refused = |error: OpenError| Failure::data_dir(format!("{}: {error}", dir.display()));
    let replica = match Replica::open(config.clone(), &image, now) {
        Ok(replica) => {
            let status = replica.status();
            info!(
                data_dir = %dir.display(),
                view = status.view,
                op_number = status.op_number,
                commit_number = status.applied,
                repairing = status.repairing,
                "replica restarted from its data directory"
            );
            replica
        }
        // A primary-backup replica recovers nothing from its peers by itself: a primary or
        // an owner that started empty would hand out sequences and note ids again.
        Err(OpenError::Unformatted) if config.protocol != noted_core::ProtocolKind::Vr => {
            return Err(refused(OpenError::Unformatted));
        }
        // No superblock: this replica never promised anything from this directory (a
        // new disk, or a crash before the bootstrap's superblocks were synced).
        Err(OpenError::Unformatted) => {
            warn!(
                data_dir = %dir.display(),
                "the data directory holds no replica state: this replica recovers its state from its peers; \
                 a new cluster is created with `noted init` on each replica's data directory"
            );
            Replica::new(config, now).map_err(|error| Failure::general(error.to_string()))?
        }
        Err(OpenError::Config(reason)) => return Err(Failure::general(reason)),
        Err(error) => return Err(refused(error)),
    };
    Ok((replica, Some(locked)))
}
