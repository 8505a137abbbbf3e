//! What `noted serve` and `noted config init` do.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{InitArgs, ProtocolArg, ServeArgs};
use crate::config::{ClusterFile, random_secret};
use crate::node::{self, BoundSockets};

pub async fn serve(args: ServeArgs, shutdown: CancellationToken) -> Result<(), String> {
    let mut file = ClusterFile::read(&args.config).map_err(|error| error.to_string())?;
    apply_overrides(&mut file, &args);
    let mut settings = file.settings_for(args.id).map_err(|error| format!("{}: {error}", args.config.display()))?;
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
    info!(replica = args.id, protocol = file.protocol, cluster = file.cluster, "replica starting with empty memory");
    node::run(settings, sockets, shutdown).await
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
