//! `noted dev`: a three-replica cluster in one process, for trying noted out.
//!
//! The replicas are separate tasks with separate drivers that talk real TCP and
//! UDP over loopback, exactly as separate processes would.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::cli::{DevArgs, ProtocolArg};
use crate::config::{ClusterFile, ReplicaAddresses, random_secret};
use crate::node::{self, BoundSockets};

const DEV_REPLICAS: u16 = 3;

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> Result<(), String> {
    let mut bound = Vec::new();
    for index in 0..DEV_REPLICAS {
        let http_port = if args.http_port_base == 0 { 0 } else { args.http_port_base + index };
        let any_port = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let wanted = ReplicaAddresses { client: any_port(http_port), peer: any_port(0), heartbeat: any_port(0) };
        bound.push(BoundSockets::bind(wanted).await?);
    }
    let addresses: Vec<ReplicaAddresses> =
        bound.iter().map(BoundSockets::addresses).collect::<Result<_, _>>().map_err(|error| error.to_string())?;
    let mut file = ClusterFile::loopback(rand::random::<u64>() >> 16, 3, 1, random_secret());
    file.replicas = addresses.clone();
    file.protocol = args.protocol.name().into();
    file.primary = (args.protocol == ProtocolArg::RemoteWrite).then_some(0);
    file.test_faults = args.test_faults;
    let settings: Vec<_> = (0u8..)
        .take(bound.len())
        .map(|index| file.settings_for(index))
        .collect::<Result<_, _>>()
        .map_err(|error| error.to_string())?;

    println!("noted dev: a {} cluster of {DEV_REPLICAS} replicas on loopback", args.protocol.name());
    for (index, replica) in addresses.iter().enumerate() {
        println!("  replica {index}: http://{}", replica.client);
    }
    let first = addresses[0].client;
    println!("try:");
    println!("  curl -i -X POST http://{first}/notes -H 'content-type: application/json' -d '{{\"title\":\"hello\"}}'");
    println!("  curl -i http://{}/notes/1", addresses[1].client);
    println!("  curl -s http://{}/status", addresses[2].client);
    println!("Ctrl-C stops the cluster.");

    let mut replicas = tokio::task::JoinSet::new();
    for (settings, sockets) in settings.into_iter().zip(bound) {
        replicas.spawn(node::run(settings, sockets, shutdown.clone()));
    }
    let mut outcome = Ok(());
    while let Some(finished) = replicas.join_next().await {
        if let Ok(Err(error)) = finished {
            shutdown.cancel();
            outcome = Err(error);
        }
    }
    outcome
}
