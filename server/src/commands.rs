//! What `noted serve`, `noted init` and `noted config init` do.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{DataInitArgs, InitArgs, ProtocolArg, ServeArgs};
use crate::config::{ClusterFile, random_secret};
use crate::failure::Failure;
use crate::node::{self, BoundSockets};
use crate::storage::StorageSettings;

pub async fn serve(args: ServeArgs, shutdown: CancellationToken) -> Result<(), Failure> {
    let mut file = ClusterFile::read(&args.config).map_err(|error| error.to_string())?;
    apply_overrides(&mut file, &args);
    let mut settings = file.settings_for(args.id).map_err(|error| format!("{}: {error}", args.config.display()))?;
    if let (StorageSettings::Disk { dir, .. }, Some(data_dir)) = (&mut settings.storage, &args.data_dir) {
        dir.clone_from(data_dir);
    }
    if let Some(versions) = args.test_wire_versions {
        warn!(%versions, "test wire versions are on: peer handshakes offer these, not the versions spoken");
        settings.wire_versions = versions;
    }
    let mut addresses = settings.addresses();
    if let Some(client_address) = args.client_address {
        addresses.client = client_address;
    }
    let sockets = BoundSockets::bind(addresses).await?;
    let bound = sockets.addresses().map_err(|error| error.to_string())?;
    announce(args.id, file.protocol.as_str(), bound.client, bound.peer, bound.heartbeat);
    match settings.storage.data_dir() {
        Some(dir) => {
            info!(replica = args.id, protocol = file.protocol, cluster = file.cluster, data_dir = %dir.display(), "replica starting with disk storage: opening its data directory")
        }
        None => info!(
            replica = args.id,
            protocol = file.protocol,
            cluster = file.cluster,
            "replica starting with empty memory (memory storage)"
        ),
    }
    node::run(settings, sockets, shutdown).await
}

/// `noted init`: formats this replica's data directory for a new cluster.
pub fn init(args: &DataInitArgs) -> Result<(), Failure> {
    let mut file = ClusterFile::read(&args.config).map_err(|error| error.to_string())?;
    if let Some(cluster) = args.cluster_id {
        file.cluster = cluster;
    }
    let settings = file.settings_for(args.id).map_err(|error| format!("{}: {error}", args.config.display()))?;
    let dir = match (&settings.storage, &args.data_dir) {
        (StorageSettings::Memory, _) => {
            return Err(Failure::general(format!(
                "{}: replica {} keeps its state in memory (\"storage\": \"memory\"): it has no data directory",
                args.config.display(),
                args.id
            )));
        }
        (StorageSettings::Disk { .. }, Some(dir)) => dir.clone(),
        (StorageSettings::Disk { dir, .. }, None) => dir.clone(),
    };
    crate::storage::init(&settings.core, &dir)?;
    println!("noted: created replica {} of cluster {} in {}", args.id, file.cluster, dir.display());
    Ok(())
}

/// One line on stdout that scripts and tests may wait for.
fn announce(id: u8, protocol: &str, client: SocketAddr, peer: SocketAddr, heartbeat: SocketAddr) {
    println!(
        "noted: replica {id} ({protocol}) serving clients at http://{client}, peers at {peer}, heartbeats at {heartbeat}"
    );
}

fn apply_overrides(file: &mut ClusterFile, args: &ServeArgs) {
    if let Some(cluster) = args.cluster_id {
        file.cluster = cluster;
    }
    if let Some(secret) = &args.secret {
        file.secret.clone_from(secret);
    }
    if let Some(protocol) = args.protocol {
        file.protocol = protocol.name().into();
        if protocol != ProtocolArg::RemoteWrite {
            file.primary = None;
        }
    }
    if let Some(primary) = args.primary {
        file.primary = Some(primary);
    }
    if let Some(timeout) = args.request_timeout_ms {
        file.request_timeout_ms = timeout;
    }
    if let Some(faults) = args.test_faults {
        file.test_faults = Some(faults);
    }
    if let Some(storage) = args.storage {
        file.storage = Some(storage);
    }
}

pub fn config_init(args: &InitArgs) -> Result<(), String> {
    let cluster = args.cluster_id.unwrap_or_else(|| rand::random::<u64>() >> 16);
    let mut file = ClusterFile::loopback(cluster, args.replicas, args.port_base, random_secret());
    file.protocol = args.protocol.name().into();
    file.primary = (args.protocol == ProtocolArg::RemoteWrite).then_some(args.primary);
    for replica in 0..args.replicas {
        file.settings_for(replica).map_err(|error| error.to_string())?;
    }
    let text = serde_json::to_string_pretty(&file).expect("a cluster file always encodes") + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
