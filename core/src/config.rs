//! A replica's configuration, checked once by [`Config::validate`] at start-up.

use core::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ClusterId, ReplicaId};
use crate::store::StoreLimits;
use crate::wire::FRAME_PAYLOAD_BYTES_MAX;
use crate::wire::size;

/// Largest cluster: replica ids are `u8`, and quorum arithmetic stays small.
pub const REPLICAS_MAX: u8 = 16;

/// The replication protocol a cluster runs. Every replica of a cluster must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum ProtocolKind {
    /// Primary-backup with a fixed primary: see [`crate::protocol::remote_write`].
    RemoteWrite { primary: ReplicaId },
    /// Primary-backup with the primary role of each note migrating to the writer:
    /// see [`crate::protocol::local_write`].
    LocalWrite,
    /// Viewstamped Replication Revisited: see [`crate::protocol::vr`]. The default.
    Vr,
}

impl ProtocolKind {
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::RemoteWrite { .. } => "remote-write",
            ProtocolKind::LocalWrite => "local-write",
            ProtocolKind::Vr => "vr",
        }
    }
}

/// Named timeouts; each protocol documents which it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// How long a sender waits for an acknowledgement before sending again.
    pub retransmit_timeout: Duration,
    /// How often an ordering replica tells the others where it stands, so that a
    /// replica that lost messages or memory learns it is behind.
    pub heartbeat_interval: Duration,
    /// How long a backup waits without hearing from the primary before it starts a
    /// view change, and how long a view change may take before the next is tried;
    /// each with up to half again of seeded jitter (vr).
    pub view_change_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            retransmit_timeout: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(100),
            view_change_timeout: Duration::from_millis(500),
        }
    }
}

/// Bounds on every queue and table a replica keeps, and on what one message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub store: StoreLimits,
    /// Clients remembered by the client table; must exceed the clients active at once.
    pub clients_max: usize,
    /// Requests a replica holds while waiting for others (forwarded or being replicated).
    pub pending_requests_max: usize,
    /// Updates kept for retransmission or buffered out of order.
    pub log_entries_max: usize,
    /// vr: what the retained log may weigh (counted as [`crate::wire::size`]
    /// bounds entries) before executed entries are discarded, as for `log_entries_max`.
    pub log_bytes_max: usize,
    /// Updates carried by one message.
    pub entries_per_message_max: usize,
    /// What one message may carry of entries, notes or client records, counted as
    /// [`crate::wire::size`] bounds them: batches of updates, pieces of a
    /// snapshot, a page of a list. At least one whole note or entry always fits.
    pub message_bytes_max: usize,
    /// vr: what the log may hold after the commit number, counted the same way. A
    /// primary refuses writes beyond it, and a view change carries at most this
    /// much of a log (always every uncommitted entry).
    pub uncommitted_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            store: StoreLimits::default(),
            clients_max: 4096,
            pending_requests_max: 1024,
            log_entries_max: 8192,
            log_bytes_max: 32 * 1024 * 1024,
            entries_per_message_max: 64,
            message_bytes_max: 1024 * 1024,
            uncommitted_bytes_max: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub cluster: ClusterId,
    /// This replica.
    pub replica: ReplicaId,
    /// Replicas are `0..replica_count`.
    pub replica_count: u8,
    pub protocol: ProtocolKind,
    /// Seeds the replica's own generator (timer jitter): the only source of randomness.
    pub seed: u64,
    pub timing: Timing,
    pub limits: Limits,
    /// Where a vr replica keeps its state: memory alone, or a data directory too.
    #[serde(default)]
    pub storage: StorageKind,
    /// A deliberate bug, for proving that the simulator catches bugs. Never set
    /// outside tests: it is not read from configuration files.
    #[serde(skip)]
    pub defect: Option<Defect>,
}

/// Where a replica keeps its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// In memory only: a replica that restarts has lost its state and recovers it
    /// from its peers; the whole cluster stopping at once loses every note.
    #[default]
    Memory,
    /// A data directory as well ([`crate::storage`]): every protocol survives any
    /// number of replicas restarting at once.
    Disk,
}

/// Deliberate bugs the simulator's own tests switch on to show they are caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// A replica answers linearizable reads from its own copy instead of sending
    /// them to the replica that orders writes, and calls them fresh: reads can be
    /// stale (remote-write).
    ServeReadsLocally,
    /// A replica installs a snapshot as soon as one chunk of it has arrived,
    /// without waiting for the rest or checking its digest: it loses the notes
    /// of the chunks that had not arrived (every protocol that transfers snapshots).
    InstallIncompleteSnapshot,
    /// vr batches log entries (prepares, state transfer) by count alone, ignoring
    /// `message_bytes_max`: with large notes such a message outgrows its bound
    /// (and, with default limits, could outgrow a frame).
    UnboundedBatches,
    /// A vr replica that learns of a view it missed drops its uncommitted entries
    /// at once (as §5.2 says), although until it holds the new view's log it still
    /// claims its older log in a view change: an entry committed in that older view
    /// can be lost.
    DropUncommittedOnCatchUp,
    /// A replica with durable storage acknowledges the last entry of a group commit
    /// before the sync that covers it (vr), or sends and answers what the last write
    /// of a group commit holds before it is synced (remote-write, local-write): a
    /// crash of every replica can lose an acknowledged write.
    AcknowledgeBeforeSync,
    /// A vr replica that finds a damaged record in its log truncates the log there,
    /// as it would a crash's torn write, instead of repairing from its peers: an
    /// acknowledged entry it held can be lost in a view change.
    TruncateDamagedLog,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("replica_count is {0}; it must be between 1 and {REPLICAS_MAX}")]
    ReplicaCount(u8),
    #[error("replica {replica} is not in a cluster of {replica_count} replicas")]
    ReplicaOutOfRange { replica: ReplicaId, replica_count: u8 },
    #[error("protocol.primary {primary} is not in a cluster of {replica_count} replicas")]
    PrimaryOutOfRange { primary: ReplicaId, replica_count: u8 },
    #[error("timing.{0} must be greater than zero")]
    ZeroTimeout(&'static str),
    #[error("timing.view_change_timeout must be longer than timing.heartbeat_interval")]
    ViewChangeTimeoutTooShort,
    #[error("limits.{0} must be greater than zero")]
    ZeroLimit(&'static str),
    #[error("limits.entries_per_message_max must not exceed limits.log_entries_max")]
    MessageLargerThanLog,
    #[error(
        "limits.message_bytes_max is {message_bytes_max}; it must hold the largest note \
         (limits.store.body_bytes_max + {overhead} bytes = {needed})"
    )]
    MessageSmallerThanNote { message_bytes_max: usize, overhead: usize, needed: usize },
    #[error("limits.store.page_bytes_max must not exceed limits.message_bytes_max")]
    PageLargerThanMessage,
    #[error("limits.uncommitted_bytes_max must be at least limits.message_bytes_max")]
    UncommittedSmallerThanMessage,
    #[error("limits.log_bytes_max must be at least twice limits.uncommitted_bytes_max")]
    LogSmallerThanUncommitted,
    #[error(
        "limits.uncommitted_bytes_max is {0}; with what a message adds it must stay within the frame limit of \
         {frame} bytes (at most {max})",
        frame = FRAME_PAYLOAD_BYTES_MAX,
        max = FRAME_PAYLOAD_BYTES_MAX - size::MESSAGE_OVERHEAD_BYTES_MAX
    )]
    UncommittedOverFrame(usize),
}

impl Config {
    /// A configuration with default timing and limits.
    pub fn new(cluster: ClusterId, replica: ReplicaId, replica_count: u8, protocol: ProtocolKind, seed: u64) -> Config {
        Config {
            cluster,
            replica,
            replica_count,
            protocol,
            seed,
            timing: Timing::default(),
            limits: Limits::default(),
            storage: StorageKind::Memory,
            defect: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.replica_count == 0 || self.replica_count > REPLICAS_MAX {
            return Err(ConfigError::ReplicaCount(self.replica_count));
        }
        if self.replica.0 >= self.replica_count {
            return Err(ConfigError::ReplicaOutOfRange { replica: self.replica, replica_count: self.replica_count });
        }
        if let ProtocolKind::RemoteWrite { primary } = self.protocol
            && primary.0 >= self.replica_count
        {
            return Err(ConfigError::PrimaryOutOfRange { primary, replica_count: self.replica_count });
        }
        if self.timing.retransmit_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("retransmit_timeout"));
        }
        if self.timing.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroTimeout("heartbeat_interval"));
        }
        if self.timing.view_change_timeout <= self.timing.heartbeat_interval {
            return Err(ConfigError::ViewChangeTimeoutTooShort);
        }
        let limits = &self.limits;
        for (name, value) in [
            ("clients_max", limits.clients_max),
            ("pending_requests_max", limits.pending_requests_max),
            ("log_entries_max", limits.log_entries_max),
            ("entries_per_message_max", limits.entries_per_message_max),
            ("store.body_bytes_max", limits.store.body_bytes_max),
            ("store.list_limit_max", limits.store.list_limit_max as usize),
            ("store.page_bytes_max", limits.store.page_bytes_max),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if limits.entries_per_message_max > limits.log_entries_max {
            return Err(ConfigError::MessageLargerThanLog);
        }
        // Every message's bound follows from these (see `wire/size.rs`): the largest
        // is a view change's log, within uncommitted_bytes_max.
        let overhead = size::ENTRY_OVERHEAD_BYTES_MAX.max(size::REPLY_OVERHEAD_BYTES_MAX);
        let needed = limits.store.body_bytes_max.saturating_add(overhead);
        if limits.message_bytes_max < needed {
            return Err(ConfigError::MessageSmallerThanNote {
                message_bytes_max: limits.message_bytes_max,
                overhead,
                needed,
            });
        }
        if limits.store.page_bytes_max > limits.message_bytes_max {
            return Err(ConfigError::PageLargerThanMessage);
        }
        if limits.uncommitted_bytes_max < limits.message_bytes_max {
            return Err(ConfigError::UncommittedSmallerThanMessage);
        }
        if limits.uncommitted_bytes_max > FRAME_PAYLOAD_BYTES_MAX - size::MESSAGE_OVERHEAD_BYTES_MAX {
            return Err(ConfigError::UncommittedOverFrame(limits.uncommitted_bytes_max));
        }
        if limits.log_bytes_max / 2 < limits.uncommitted_bytes_max {
            return Err(ConfigError::LogSmallerThanUncommitted);
        }
        Ok(())
    }

    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> + use<> {
        (0..self.replica_count).map(ReplicaId)
    }

    /// Every replica but this one.
    pub fn peers(&self) -> impl Iterator<Item = ReplicaId> + use<> {
        let me = self.replica;
        self.replicas().filter(move |replica| *replica != me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(ClusterId(1), ReplicaId(0), 3, ProtocolKind::RemoteWrite { primary: ReplicaId(0) }, 7)
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let mut bad = config();
        bad.protocol = ProtocolKind::RemoteWrite { primary: ReplicaId(3) };
        assert_eq!(bad.validate().unwrap_err().to_string(), "protocol.primary R3 is not in a cluster of 3 replicas");
        let mut bad = config();
        bad.limits.clients_max = 0;
        assert_eq!(bad.validate(), Err(ConfigError::ZeroLimit("clients_max")));
        let mut bad = config();
        bad.replica = ReplicaId(5);
        assert_eq!(bad.validate(), Err(ConfigError::ReplicaOutOfRange { replica: ReplicaId(5), replica_count: 3 }));
    }

    #[test]
    fn peers_are_every_other_replica() {
        let mut config = config();
        config.replica = ReplicaId(1);
        assert_eq!(config.peers().collect::<Vec<_>>(), vec![ReplicaId(0), ReplicaId(2)]);
    }
}
