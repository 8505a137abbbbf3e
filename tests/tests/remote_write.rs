//! Three `noted serve` processes running remote-write (fixed primary R0).
//!
//! remote-write does not survive a crash of its primary: the test shows the
//! documented behaviour instead of recovery.

use noted_tests::checks::{
    bad_input_is_refused, converged_notes, every_operation_through, retried_create_is_exactly_once,
};
use noted_tests::hostile::{hostile_http_input_is_refused, hostile_peer_frames_are_dropped};
use noted_tests::{Cluster, ClusterOptions};
use std::sync::atomic::Ordering;
use std::time::Duration;

use noted_tests::wait_until;
use noted_tests::workload::Workload;
use reqwest::Method;
use serde_json::json;

#[test]
fn every_operation_through_every_replica_leaves_identical_stores() {
    let cluster = Cluster::start(ClusterOptions::remote_write());
    for via in 0..cluster.replica_count() {
        every_operation_through(&cluster, via);
    }
    retried_create_is_exactly_once(&cluster);
    let notes = converged_notes(&cluster, &[0, 1, 2]);
    assert_eq!(notes["notes"].as_array().map(Vec::len), Some(1), "{notes}");
}

#[test]
fn bad_input_is_refused_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(ClusterOptions::remote_write());
    bad_input_is_refused(&cluster);
    hostile_http_input_is_refused(&cluster);
    hostile_peer_frames_are_dropped(&cluster);
}

#[test]
fn after_the_primary_is_killed_writes_get_503_and_backups_keep_what_was_acknowledged() {
    let mut cluster = Cluster::start(ClusterOptions::remote_write());
    let mut acknowledged = Vec::new();
    for index in 0..12 {
        let via = index % cluster.replica_count();
        let response = cluster.client(via).json(Method::POST, "/notes", &json!({ "n": index })).unwrap();
        assert_eq!(response.status, 201, "{}", response.text);
        acknowledged.push(response.body["id"].as_u64().unwrap());
    }
    cluster.kill(0);

    for backup in [1, 2] {
        let response = cluster.client(backup).json(Method::POST, "/notes", &json!({ "n": "late" })).unwrap();
        assert_eq!(response.status, 503, "{}", response.text);
        assert_eq!(response.header("retry-after"), Some("1"));
        assert!(matches!(response.error_code(), Some("timeout" | "unavailable")), "{}", response.text);
    }
    let notes = converged_notes(&cluster, &[1, 2]);
    let ids: Vec<u64> = notes["notes"].as_array().unwrap().iter().filter_map(|note| note["id"].as_u64()).collect();
    assert_eq!(ids, acknowledged, "every acknowledged write is on both backups");
}

#[test]
fn a_killed_backup_restarts_empty_and_catches_up() {
    let mut cluster = Cluster::start(ClusterOptions::remote_write());
    for index in 0..5 {
        let response = cluster.client(0).json(Method::POST, "/notes", &json!({ "n": index })).unwrap();
        assert_eq!(response.status, 201, "{}", response.text);
    }
    cluster.kill(2);
    cluster.restart(2);
    for index in 5..10 {
        let response = cluster.client(1).json(Method::POST, "/notes", &json!({ "n": index })).unwrap();
        assert_eq!(response.status, 201, "{}", response.text);
    }
    let notes = converged_notes(&cluster, &[0, 1, 2]);
    assert_eq!(notes["notes"].as_array().map(Vec::len), Some(10), "{notes}");
}

#[test]
fn a_workload_through_a_backup_crash_and_restart_is_linearizable() {
    let mut cluster = Cluster::start(ClusterOptions::remote_write());
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let workload = Workload::new(urls, "noted-tests remote-write: SIGKILL a backup under load, restart it empty");
    let clients = workload.spawn_clients(4, 23);
    let writes_so_far = || workload.highest_id.load(Ordering::Relaxed);
    wait_until("the workload to get going", Duration::from_secs(20), || writes_so_far() >= 40);
    cluster.kill(2);
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart(2);
    let after_restart = writes_so_far();
    wait_until("writes to go on after the restart", Duration::from_secs(30), || writes_so_far() >= after_restart + 40);
    workload.finish_and_check(&cluster, clients, 23);
}
