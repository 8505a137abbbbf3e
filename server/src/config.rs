//! The cluster file: one JSON document that every replica of a cluster shares.
//!
//! ```json
//! {
//!   "cluster": 1,
//!   "protocol": "vr",
//!   "secret": "a long random string shared by the replicas",
//!   "replicas": [
//!     { "client": "127.0.0.1:7001", "peer": "127.0.0.1:7101", "heartbeat": "127.0.0.1:7201" },
//!     { "client": "127.0.0.1:7002", "peer": "127.0.0.1:7102", "heartbeat": "127.0.0.1:7202" },
//!     { "client": "127.0.0.1:7003", "peer": "127.0.0.1:7103", "heartbeat": "127.0.0.1:7203" }
//!   ]
//! }
//! ```
//!
//! - `protocol`: `vr` (default), `remote-write` (with `"primary": N`) or `local-write`.
//! - `replicas[i]`: replica `i`'s client (HTTP) address, peer (TCP) address and
//!   heartbeat (UDP) address.
//! - `storage`: `disk` (each replica keeps its state in its data directory,
//!   `--data-dir`, by default `./noted-data/replica-<id>`; the default for vr) or
//!   `memory` (a replica that stops loses its state and recovers it from its peers;
//!   the default for remote-write and local-write, whose fault models then allow no
//!   crash of the primary, or of any replica).
//! - optional `timing` (`retransmit_timeout_ms`, `heartbeat_interval_ms`,
//!   `view_change_timeout_ms`), `limits` (core's [`noted_core::Limits`] field names),
//!   `request_timeout_ms` (how long an HTTP request waits for the replica, then 503),
//!   `request_body_bytes_max`, `header_read_timeout_ms` (how long a client may take to
//!   send a request's headers before its connection is closed),
//!   `peer_queue_frames_max`, `allowed_origins` (origins such as
//!   `"https://app.example"`, or `"*"`, whose pages may use the API across origins:
//!   see [`crate::http::cors`]), and `test_faults`
//!   (see [`crate::peer::faults`]; for tests only).
//!
//! Unknown fields are errors, so that a misspelt option is never silently ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use noted_core::config::StorageKind;
use noted_core::{ClusterId, Config, Limits, ProtocolKind, ReplicaId, Timing};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::peer::faults::TestFaults;
use crate::storage::{StorageChoice, StorageSettings, Unsynced, default_data_dir};

/// Shortest shared secret accepted: the HMAC key of every peer frame.
pub const SECRET_BYTES_MIN: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub cluster: u64,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// remote-write: the fixed primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<u8>,
    pub secret: String,
    pub replicas: Vec<ReplicaAddresses>,
    /// `disk` (vr's default) or `memory` (the primary-backup protocols keep their
    /// state in memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_request_body_bytes_max")]
    pub request_body_bytes_max: usize,
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    #[serde(default = "default_peer_queue_frames_max")]
    pub peer_queue_frames_max: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_faults: Option<TestFaults>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAddresses {
    /// HTTP, for clients.
    pub client: SocketAddr,
    /// TCP, for protocol messages between replicas.
    pub peer: SocketAddr,
    /// UDP, for heartbeats between replicas.
    pub heartbeat: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingFile {
    pub retransmit_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub view_change_timeout_ms: u64,
}

fn default_protocol() -> String {
    "vr".into()
}

fn default_request_timeout_ms() -> u64 {
    5_000
}

fn default_request_body_bytes_max() -> usize {
    // Core limits a note body to 64 KiB of compact JSON; pretty-printed input may be larger.
    256 * 1024
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_peer_queue_frames_max() -> usize {
    4096
}

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(transparent)]
    Core(#[from] noted_core::ConfigError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigFileError {
    ConfigFileError::Invalid { field: field.into(), reason: reason.into() }
}

/// Everything one replica needs to run, checked.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub core: Config,
    pub secret: Vec<u8>,
    pub replicas: Vec<ReplicaAddresses>,
    pub request_timeout: Duration,
    pub request_body_bytes_max: usize,
    pub header_read_timeout: Duration,
    pub peer_queue_frames_max: usize,
    pub allowed_origins: Vec<String>,
    /// The wire protocol versions offered in peer handshakes.
    pub wire_versions: noted_core::wire::VersionRange,
    pub test_faults: TestFaults,
    pub storage: StorageSettings,
}

impl NodeSettings {
    pub fn me(&self) -> ReplicaId {
        self.core.replica
    }

    pub fn addresses(&self) -> ReplicaAddresses {
        self.replicas[self.me().index()]
    }
}

impl ClusterFile {
    pub fn read(path: &Path) -> Result<ClusterFile, ConfigFileError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: display.clone(), source })?;
        serde_json::from_str(&text).map_err(|source| ConfigFileError::Parse { path: display, source })
    }

    /// A loopback cluster of `replica_count` replicas, ports counted up from `port_base`.
    pub fn loopback(cluster: u64, replica_count: u8, port_base: u16, secret: String) -> ClusterFile {
        let replicas = (0..u16::from(replica_count))
            .map(|index| {
                let at = |offset: u16| SocketAddr::from(([127, 0, 0, 1], port_base + offset + index));
                ReplicaAddresses { client: at(0), peer: at(100), heartbeat: at(200) }
            })
            .collect();
        ClusterFile {
            cluster,
            protocol: default_protocol(),
            primary: None,
            secret,
            replicas,
            storage: None,
            timing: None,
            limits: None,
            request_timeout_ms: default_request_timeout_ms(),
            request_body_bytes_max: default_request_body_bytes_max(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            peer_queue_frames_max: default_peer_queue_frames_max(),
            allowed_origins: Vec::new(),
            test_faults: None,
        }
    }

    fn protocol_kind(&self) -> Result<ProtocolKind, ConfigFileError> {
        match (self.protocol.as_str(), self.primary) {
            ("vr", None) => Ok(ProtocolKind::Vr),
            ("local-write", None) => Ok(ProtocolKind::LocalWrite),
            ("remote-write", Some(primary)) => Ok(ProtocolKind::RemoteWrite { primary: ReplicaId(primary) }),
            ("remote-write", None) => Err(invalid("primary", "remote-write needs the fixed primary's replica id")),
            ("vr" | "local-write", Some(_)) => {
                Err(invalid("primary", format!("only remote-write has a fixed primary, not {}", self.protocol)))
            }
            (other, _) => {
                Err(invalid("protocol", format!("unknown protocol {other:?}; use vr, remote-write or local-write")))
            }
        }
    }

    /// Checks the whole file for replica `replica` and builds its settings.
    pub fn settings_for(&self, replica: u8) -> Result<NodeSettings, ConfigFileError> {
        if self.secret.len() < SECRET_BYTES_MIN {
            return Err(invalid("secret", format!("must be at least {SECRET_BYTES_MIN} bytes long")));
        }
        let replica_count = u8::try_from(self.replicas.len())
            .map_err(|_| invalid("replicas", format!("{} replicas is too many", self.replicas.len())))?;
        if replica >= replica_count {
            return Err(invalid("id", format!("replica {replica} is not in a cluster of {replica_count} replicas")));
        }
        self.check_addresses_are_distinct()?;
        if self.request_timeout_ms == 0 {
            return Err(invalid("request_timeout_ms", "must be greater than zero"));
        }
        if self.request_body_bytes_max == 0 {
            return Err(invalid("request_body_bytes_max", "must be greater than zero"));
        }
        if self.header_read_timeout_ms == 0 {
            return Err(invalid("header_read_timeout_ms", "must be greater than zero"));
        }
        if self.peer_queue_frames_max == 0 {
            return Err(invalid("peer_queue_frames_max", "must be greater than zero"));
        }
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            let well_formed = origin == "*"
                || (origin.starts_with("http://") || origin.starts_with("https://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok();
            if !well_formed {
                return Err(invalid(
                    format!("allowed_origins[{index}]"),
                    format!("{origin:?} is no origin: use scheme://host[:port], or \"*\""),
                ));
            }
        }
        let test_faults = self.test_faults.unwrap_or_default();
        test_faults.validate().map_err(|reason| invalid("test_faults", reason))?;
        let mut core = Config::new(
            ClusterId(self.cluster),
            ReplicaId(replica),
            replica_count,
            self.protocol_kind()?,
            self.cluster.rotate_left(8) ^ u64::from(replica),
        );
        if let Some(timing) = self.timing {
            core.timing = Timing {
                retransmit_timeout: Duration::from_millis(timing.retransmit_timeout_ms),
                heartbeat_interval: Duration::from_millis(timing.heartbeat_interval_ms),
                view_change_timeout: Duration::from_millis(timing.view_change_timeout_ms),
            };
        }
        if let Some(limits) = self.limits {
            core.limits = limits;
        }
        let storage = match (self.storage, core.protocol) {
            (Some(StorageChoice::Memory), _) | (None, ProtocolKind::RemoteWrite { .. } | ProtocolKind::LocalWrite) => {
                StorageSettings::Memory
            }
            (Some(StorageChoice::Disk), _) | (None, ProtocolKind::Vr) => {
                core.storage = StorageKind::Disk;
                let unsynced =
                    if test_faults.lose_unsynced_writes { Unsynced::HeldInMemory } else { Unsynced::Written };
                StorageSettings::Disk { dir: default_data_dir(replica), unsynced }
            }
        };
        core.validate()?;
        Ok(NodeSettings {
            core,
            secret: self.secret.as_bytes().to_vec(),
            replicas: self.replicas.clone(),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            request_body_bytes_max: self.request_body_bytes_max,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            peer_queue_frames_max: self.peer_queue_frames_max,
            allowed_origins: self.allowed_origins.clone(),
            wire_versions: noted_core::wire::WIRE_VERSIONS,
            test_faults,
            storage,
        })
    }

    fn check_addresses_are_distinct(&self) -> Result<(), ConfigFileError> {
        let mut seen = std::collections::BTreeMap::new();
        for (index, replica) in self.replicas.iter().enumerate() {
            for (kind, address) in
                [("client", replica.client), ("peer", replica.peer), ("heartbeat", replica.heartbeat)]
            {
                let field = format!("replicas[{index}].{kind}");
                if address.port() == 0 {
                    return Err(invalid(field, "a cluster file names fixed ports; 0 is not one"));
                }
                if let Some(other) = seen.insert(address, field.clone()) {
                    return Err(invalid(field, format!("{address} is also {other}")));
                }
            }
        }
        Ok(())
    }
}

/// A random secret for a new cluster, as hex.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ClusterFile {
        ClusterFile::loopback(7, 3, 7001, "0123456789abcdef0123".into())
    }

    #[test]
    fn a_loopback_file_is_valid_for_every_replica() {
        for replica in 0..3 {
            let settings = file().settings_for(replica).unwrap();
            assert_eq!(settings.me(), ReplicaId(replica));
            assert_eq!(settings.core.protocol, ProtocolKind::Vr);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut bad = file();
        bad.secret = "short".into();
        assert!(bad.settings_for(0).unwrap_err().to_string().starts_with("secret:"));
        let mut bad = file();
        bad.protocol = "remote-write".into();
        assert!(bad.settings_for(0).unwrap_err().to_string().starts_with("primary:"));
        let mut bad = file();
        bad.replicas[2].peer = bad.replicas[0].client;
        assert!(bad.settings_for(0).unwrap_err().to_string().starts_with("replicas[2].peer:"));
        let mut bad = file();
        bad.protocol = "local-write".into();
        bad.primary = Some(0);
        assert!(bad.settings_for(0).unwrap_err().to_string().starts_with("primary:"));
        let mut bad = file();
        bad.protocol = "paxos".into();
        assert!(bad.settings_for(0).unwrap_err().to_string().starts_with("protocol:"));
        assert!(file().settings_for(3).unwrap_err().to_string().starts_with("id:"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let example: ClusterFile = serde_json::from_str(include_str!("../examples/cluster.json")).unwrap();
        for replica in 0..3 {
            example.settings_for(replica).unwrap();
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let mut json = serde_json::to_value(file()).unwrap();
        json["request_timout_ms"] = 5.into();
        let error = serde_json::from_value::<ClusterFile>(json).unwrap_err().to_string();
        assert!(error.contains("request_timout_ms"), "{error}");
    }

    #[test]
    fn every_protocol_may_keep_its_state_on_disk_and_only_vr_does_by_default() {
        for (protocol, primary) in [("vr", None), ("remote-write", Some(0)), ("local-write", None)] {
            let mut file = file();
            file.protocol = protocol.into();
            file.primary = primary;
            let default = file.settings_for(1).unwrap();
            assert_eq!(matches!(default.storage, StorageSettings::Disk { .. }), protocol == "vr", "{protocol}");
            file.storage = Some(StorageChoice::Disk);
            let on_disk = file.settings_for(1).unwrap();
            assert!(matches!(on_disk.storage, StorageSettings::Disk { .. }), "{protocol}");
            assert_eq!(on_disk.core.storage, StorageKind::Disk, "{protocol}");
        }
    }

    #[test]
    fn core_validation_is_applied() {
        let mut bad = file();
        bad.timing =
            Some(TimingFile { retransmit_timeout_ms: 0, heartbeat_interval_ms: 100, view_change_timeout_ms: 500 });
        assert!(bad.settings_for(0).unwrap_err().to_string().contains("timing.retransmit_timeout"));
    }
}
