//! Durable replicas on real processes: a whole cluster killed at once (also with
//! unsynced writes lost, as a power cut loses them; for every protocol), damaged files repaired from
//! the peers, and data directories that are not the replica's refused at start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use noted_core::storage::format::RecordKind;
use noted_tests::checks::{local_copy, metric};
use noted_tests::cluster::copy_directory;
use noted_tests::data_files::{flip_body_byte, flip_in_newest_log, newest, records};
use noted_tests::workload::Workload;
use noted_tests::{Cluster, ClusterOptions, noted_binary, wait_until};
use reqwest::Method;
use serde_json::json;

/// Clients write; every replica is SIGKILLed at the same moment in the middle of
/// the load and restarted; the clients go on. The history (which reads every note
/// back at the end) is linearizable and no acknowledged create is missing.
fn kill_the_whole_cluster_under_load(options: ClusterOptions, seed: u64, source: &str) {
    let mut cluster = Cluster::start(options);
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let workload = Workload::new(urls, source);
    let clients = workload.spawn_clients(4, seed);
    let writes_so_far = || workload.highest_id.load(Ordering::Relaxed);
    wait_until("the workload to get going", Duration::from_secs(30), || writes_so_far() >= 60);
    cluster.kill_all_at_once();
    let at_the_kill = writes_so_far();
    for replica in 0..cluster.replica_count() {
        cluster.restart(replica);
    }
    cluster.wait_until_serving();
    wait_until("writes to go on after the restart", Duration::from_secs(30), || writes_so_far() >= at_the_kill + 40);
    for replica in 0..cluster.replica_count() {
        let log = cluster.log_of(replica);
        assert!(log.contains("replica restarted from its data directory"), "replica {replica} read its disk:\n{log}");
    }
    workload.finish_and_check(&cluster, clients, seed);
}

#[test]
fn every_acknowledged_write_survives_killing_the_whole_cluster_at_once() {
    kill_the_whole_cluster_under_load(
        ClusterOptions::vr_on_disk(),
        31,
        "noted-tests durable: SIGKILL every replica at once under load, restart from disk",
    );
}

#[test]
fn every_acknowledged_write_survives_a_whole_cluster_power_cut() {
    // Unsynced writes live in the process's memory and die with it: only what the
    // syncs covered is on disk, so an acknowledgement sent before its sync loses data.
    let options =
        ClusterOptions { test_faults: Some(json!({ "lose_unsynced_writes": true })), ..ClusterOptions::vr_on_disk() };
    kill_the_whole_cluster_under_load(
        options,
        37,
        "noted-tests durable: power cut of every replica under load (unsynced writes lost), restart from disk",
    );
}

#[test]
fn every_acknowledged_write_of_the_primary_backup_protocols_survives_a_whole_cluster_power_cut() {
    for (protocol, options, seed) in
        [("remote-write", ClusterOptions::remote_write(), 41), ("local-write", ClusterOptions::local_write(), 43)]
    {
        let options =
            ClusterOptions { storage: "disk", test_faults: Some(json!({ "lose_unsynced_writes": true })), ..options };
        let source = format!(
            "noted-tests durable: power cut of every {protocol} replica under load (unsynced writes lost), \
             restart from disk"
        );
        kill_the_whole_cluster_under_load(options, seed, &source);
    }
}

/// Writes notes, stops `replica`, damages one of its files with `damage`, restarts
/// it: it repairs from its peers (log line and metrics) and answers reads.
fn damaged_replica_repairs(damage: impl FnOnce(&Path)) {
    let mut cluster = Cluster::start(ClusterOptions::vr_on_disk());
    let client = cluster.client(0);
    for index in 0..30 {
        let response = client.json(Method::POST, "/notes", &json!({ "title": format!("note {index}") })).unwrap();
        assert_eq!(response.status, 201, "{}", response.text);
    }
    let primary = cluster.primary().expect("a primary");
    let damaged = (primary + 1) % cluster.replica_count();
    cluster.kill(damaged);
    damage(&cluster.data_dir(damaged));
    cluster.restart(damaged);
    wait_until("the damaged replica to finish its repair", Duration::from_secs(30), || {
        metric(&cluster, damaged, "noted_storage_repairs_completed_total") >= 1
    });
    assert!(metric(&cluster, damaged, "noted_storage_repairs_started_total") >= 1);
    let log = cluster.log_of(damaged);
    assert!(log.contains("repair complete"), "the log says so:\n{log}");
    wait_until("the repaired replica to hold every note", Duration::from_secs(30), || {
        local_copy(&cluster, damaged)
            .is_some_and(|copy| copy["notes"].as_array().is_some_and(|notes| notes.len() == 30))
    });
    let read = cluster.client(damaged).get_path("/notes/1").unwrap();
    assert_eq!((read.status, read.body["title"].as_str()), (200, Some("note 0")), "{}", read.text);
    let status = cluster.status(damaged).unwrap();
    assert_eq!(status["storage"]["repairing"], false, "{status}");
}

#[test]
fn a_flipped_byte_in_a_committed_log_entry_is_repaired_from_the_peers() {
    damaged_replica_repairs(|dir| {
        // The first entry: op 1, committed long before the replica stopped.
        flip_in_newest_log(dir, 0, |kind| kind == RecordKind::Entry).unwrap();
    });
}

#[test]
fn a_flipped_byte_in_the_live_checkpoint_is_repaired_from_the_peers() {
    damaged_replica_repairs(|dir| {
        let checkpoint = newest(dir, "checkpoint").unwrap();
        let head = records(&std::fs::read(&checkpoint).unwrap())[0];
        flip_body_byte(&checkpoint, head).unwrap();
    });
}

/// `noted serve` of `replica` on `dir`, with more arguments; its exit code and stderr.
fn serve_once(cluster: &Cluster, replica: usize, dir: &Path, more: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(noted_binary())
        .args(["serve", "--config"])
        .arg(&cluster.config_path)
        .args(["--id", &replica.to_string(), "--data-dir"])
        .arg(dir)
        .args(more)
        .env_remove("NOTED_DATA_DIR")
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn data_directories_that_are_not_the_replicas_are_refused_at_start() {
    let mut cluster = Cluster::start(ClusterOptions::vr_on_disk());
    let response = cluster.client(0).json(Method::POST, "/notes", &json!({ "title": "kept" })).unwrap();
    assert_eq!(response.status, 201, "{}", response.text);
    cluster.kill(2);
    // Exit codes: 4 the directory is not this replica's, 5 another process holds it.
    let (code, error) = serve_once(&cluster, 2, &cluster.data_dir(0), &[]);
    assert_eq!(code, Some(5), "a directory in use by a running replica: {error}");
    assert!(error.contains("in use by another process"), "{error}");

    let other_replica = cluster.directory.join("copy-of-replica-0");
    copy_directory(&cluster.data_dir(0), &other_replica);
    let (code, error) = serve_once(&cluster, 2, &other_replica, &[]);
    assert_eq!(code, Some(4), "another replica's directory: {error}");
    assert!(error.contains("belongs to replica R0, not to replica R2"), "{error}");

    let other_cluster = (cluster.cluster_id + 1).to_string();
    let (code, error) = serve_once(&cluster, 2, &cluster.data_dir(2), &["--cluster-id", &other_cluster]);
    assert_eq!(code, Some(4), "another cluster's directory: {error}");
    assert!(error.contains(&format!("belongs to cluster {}", cluster.cluster_id)), "{error}");

    let newer = cluster.directory.join("newer-format");
    copy_directory(&cluster.data_dir(2), &newer);
    for copy in 0..4 {
        let path = newer.join(format!("superblock.{copy}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..32]);
        bytes[32..40].copy_from_slice(&checksum.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
    }
    let (code, error) = serve_once(&cluster, 2, &newer, &[]);
    assert_eq!(code, Some(4), "an unknown format version: {error}");
    assert!(error.contains("format version 2"), "{error}");

    // Nothing was overwritten: the replica starts on its own directory and serves.
    cluster.restart(2);
    cluster.wait_until_serving();
    let read = cluster.client(2).get_path("/notes/1").unwrap();
    assert_eq!((read.status, read.body["title"].as_str()), (200, Some("kept")), "{}", read.text);
}

/// A remote-write primary restarted on an empty directory would order writes from
/// sequence 1 again, and a local-write replica would hand out ids it handed out
/// before: a primary-backup replica on disk refuses to start without its state.
#[test]
fn a_primary_backup_replica_on_disk_refuses_an_empty_directory() {
    for options in [ClusterOptions::remote_write(), ClusterOptions::local_write()] {
        let protocol = options.protocol;
        let mut cluster = Cluster::start(ClusterOptions { storage: "disk", ..options });
        let response = cluster.client(1).json(Method::POST, "/notes", &json!({ "title": "kept" })).unwrap();
        assert_eq!(response.status, 201, "{protocol}: {}", response.text);
        let id = response.body["id"].as_u64().expect("a created note has an id");
        cluster.kill(0);
        let empty = cluster.directory.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let (code, error) = serve_once(&cluster, 0, &empty, &[]);
        assert_eq!(code, Some(4), "{protocol}, an empty directory: {error}");
        assert!(error.contains("holds no superblock"), "{protocol}: {error}");
        cluster.restart(0);
        cluster.wait_until_serving();
        let read = cluster.client(0).get_path(&format!("/notes/{id}")).unwrap();
        assert_eq!((read.status, read.body["title"].as_str()), (200, Some("kept")), "{protocol}: {}", read.text);
    }
}

/// `tests/fixtures/data-v1/` holds a dev cluster's data directory written by the
/// release whose data format is version 1 (see its README): this release reads it.
#[test]
fn the_data_directories_of_format_version_1_are_read() {
    let fixture = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/data-v1"));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("notes.json")).unwrap()).unwrap();
    let options = ClusterOptions { data_from: Some(fixture), ..ClusterOptions::vr_on_disk() };
    let cluster = Cluster::start(options);
    for replica in 0..cluster.replica_count() {
        let mut copy = None;
        wait_until("the replica to hold the fixture's notes", Duration::from_secs(30), || {
            copy = local_copy(&cluster, replica);
            copy.as_ref() == Some(&expected)
        });
    }
    let written = cluster.client(0).json(Method::POST, "/notes", &json!({ "title": "after the upgrade" })).unwrap();
    assert_eq!(written.status, 201, "{}", written.text);
}
