//! `noted dev`: a three-replica cluster in one process, for trying noted out.
//!
//! The replicas are separate tasks with separate drivers that talk real TCP and
//! UDP over loopback, exactly as separate processes would. With disk storage (vr's
//! default) the cluster lives in `./noted-data/`: `cluster.json` (its id and
//! secret) and `replica-<id>/` per replica, so stopping and starting it again
//! keeps every note.

use std::net::SocketAddr;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::cli::{DevArgs, ProtocolArg};
use crate::config::{ClusterFile, ReplicaAddresses, random_secret};
use crate::failure::Failure;
use crate::node::{self, BoundSockets};
use crate::storage::{StorageChoice, StorageSettings};

const DEV_REPLICAS: u16 = 3;
/// The dev cluster's identity in its data directory.
const CLUSTER_FILE: &str = "cluster.json";

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> Result<(), Failure> {
    let storage = match (args.storage, args.protocol) {
        (Some(storage), _) => storage,
        (None, ProtocolArg::Vr) => StorageChoice::Disk,
        (None, _) => StorageChoice::Memory,
    };
    let mut bound = Vec::new();
    for index in 0..DEV_REPLICAS {
        let http_port = if args.http_port_base == 0 { 0 } else { args.http_port_base + index };
        let any_port = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let wanted = ReplicaAddresses { client: any_port(http_port), peer: any_port(0), heartbeat: any_port(0) };
        bound.push(BoundSockets::bind(wanted).await?);
    }
    let addresses: Vec<ReplicaAddresses> =
        bound.iter().map(BoundSockets::addresses).collect::<Result<_, _>>().map_err(|error| error.to_string())?;
    let (mut file, created) = match storage {
        StorageChoice::Memory => (ClusterFile::loopback(rand::random::<u64>() >> 16, 3, 1, random_secret()), true),
        StorageChoice::Disk => cluster_in(&args.data_dir, args.protocol)?,
    };
    file.replicas = addresses.clone();
    file.protocol = args.protocol.name().into();
    file.primary = (args.protocol == ProtocolArg::RemoteWrite).then_some(0);
    file.test_faults = args.test_faults;
    file.storage = Some(storage);
    let mut settings: Vec<_> = (0u8..)
        .take(bound.len())
        .map(|index| file.settings_for(index))
        .collect::<Result<_, _>>()
        .map_err(|error| error.to_string())?;
    for (index, settings) in settings.iter_mut().enumerate() {
        if let StorageSettings::Disk { dir, .. } = &mut settings.storage {
            *dir = args.data_dir.join(format!("replica-{index}"));
            if created {
                crate::storage::init(&settings.core, dir)?;
            }
        }
    }

    println!("noted dev: a {} cluster of {DEV_REPLICAS} replicas on loopback", args.protocol.name());
    match storage {
        StorageChoice::Disk if created => println!("  new cluster; its data is in {}", args.data_dir.display()),
        StorageChoice::Disk => println!("  its data is in {} (every note kept)", args.data_dir.display()),
        StorageChoice::Memory => println!("  memory storage: the notes are gone when it stops"),
    }
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

/// The dev cluster of `data_dir`: the one it holds, or a new one (`true`) when it
/// holds none yet. Its addresses are chosen again at each start.
fn cluster_in(data_dir: &Path, protocol: ProtocolArg) -> Result<(ClusterFile, bool), Failure> {
    let path = data_dir.join(CLUSTER_FILE);
    if path.exists() {
        let file = ClusterFile::read(&path).map_err(|error| Failure::data_dir(error.to_string()))?;
        if file.protocol != protocol.name() {
            return Err(Failure::data_dir(format!(
                "{} holds a {} cluster, not {}: use another --data-dir, or --storage memory",
                data_dir.display(),
                file.protocol,
                protocol.name()
            )));
        }
        return Ok((file, false));
    }
    let replica_dirs: Vec<_> = (0..DEV_REPLICAS).map(|index| data_dir.join(format!("replica-{index}"))).collect();
    if let Some(taken) = replica_dirs.iter().find(|dir| dir.exists()) {
        return Err(Failure::data_dir(format!(
            "{} has no {CLUSTER_FILE} but holds {}: it is not a dev cluster's data directory",
            data_dir.display(),
            taken.display()
        )));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|error| Failure::data_dir(format!("cannot create {}: {error}", data_dir.display())))?;
    let mut file = ClusterFile::loopback(rand::random::<u64>() >> 16, 3, 1, random_secret());
    file.protocol = protocol.name().into();
    let text = serde_json::to_string_pretty(&file).expect("a cluster file always encodes") + "\n";
    std::fs::write(&path, text)
        .map_err(|error| Failure::data_dir(format!("cannot write {}: {error}", path.display())))?;
    Ok((file, true))
}
