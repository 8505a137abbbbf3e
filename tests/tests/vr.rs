//! Three `noted serve` processes running Viewstamped Replication.

use std::sync::atomic::Ordering;
use std::time::Duration;

use noted_tests::checks::{
    bad_input_is_refused, converged_notes, every_operation_through, http2_is_served, metric,
    retried_create_is_exactly_once,
};
use noted_tests::hostile::{
    hostile_http_input_is_refused, hostile_peer_frames_are_dropped, replayed_old_view_messages_are_dropped,
    slow_clients_are_cut_off,
};
use noted_tests::workload::Workload;
use noted_tests::{Cluster, ClusterOptions, wait_until};
use serde_json::json;

#[test]
fn every_operation_through_every_replica_leaves_identical_stores() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    for via in 0..cluster.replica_count() {
        every_operation_through(&cluster, via);
    }
    retried_create_is_exactly_once(&cluster);
    http2_is_served(&cluster);
    wait_until("heartbeats to report every peer", Duration::from_secs(10), || {
        cluster.status(0).is_some_and(|status| {
            let peers = status["peers"].as_array().cloned().unwrap_or_default();
            peers.len() == 2 && peers.iter().all(|peer| peer["last_contact_ms_ago"].is_u64() && peer["lag"].is_u64())
        })
    });
    let notes = converged_notes(&cluster, &[0, 1, 2]);
    assert_eq!(notes["notes"].as_array().map(Vec::len), Some(1), "only the retried create is left: {notes}");

    let backup = (0..3).find(|replica| Some(*replica) != cluster.primary()).unwrap();
    assert_eq!(cluster.terminate(backup, Duration::from_secs(10)), Some(0), "SIGTERM is a clean shutdown");
    let survivors: Vec<usize> = (0..3).filter(|replica| *replica != backup).collect();
    let created = cluster.client(survivors[0]).json(reqwest::Method::POST, "/notes", &json!({ "after": "sigterm" }));
    assert_eq!(created.unwrap().status, 201, "two of three replicas still make a quorum");

    cluster.kill(survivors[1]);
    let stranded = cluster.client(survivors[0]).json(reqwest::Method::POST, "/notes", &json!({ "quorum": false }));
    let stranded = stranded.unwrap();
    assert_eq!(stranded.status, 503, "one replica alone has no quorum: {}", stranded.text);
    assert_eq!(stranded.header("retry-after"), Some("1"));
    let local = cluster.client(survivors[0]).get_path("/notes?consistency=local").unwrap();
    assert_eq!(local.status, 200, "local reads are served without a quorum: {}", local.text);
}

#[test]
fn under_test_faults_in_the_transport_the_history_stays_linearizable() {
    let options = ClusterOptions { test_faults: Some(json!({ "loss": 0.05, "delay_ms": 5 })), ..ClusterOptions::vr() };
    let cluster = Cluster::start(options);
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let workload = Workload::new(urls, "noted-tests vr: 5% loss and up to 5 ms delay of peer frames");
    let clients = workload.spawn_clients(3, 11);
    wait_until("writes under faults", Duration::from_secs(30), || workload.highest_id.load(Ordering::Relaxed) >= 60);
    workload.finish_and_check(&cluster, clients, 11);
    let lost: u64 = (0..3)
        .map(|replica| {
            metric(
                &cluster,
                replica,
                "noted_peer_messages_dropped_total{stage=\"transport\",reason=\"test_fault_loss\"}",
            )
        })
        .sum();
    assert!(lost > 0, "the transport dropped frames on purpose");
}

#[test]
fn bad_input_is_refused_and_the_cluster_keeps_serving() {
    let header_read_timeout = Duration::from_secs(1);
    let options = ClusterOptions {
        header_read_timeout_ms: Some(u64::try_from(header_read_timeout.as_millis()).unwrap()),
        ..ClusterOptions::vr()
    };
    let cluster = Cluster::start(options);
    bad_input_is_refused(&cluster);
    hostile_http_input_is_refused(&cluster);
    slow_clients_are_cut_off(&cluster, header_read_timeout);
    replayed_old_view_messages_are_dropped(&cluster);
    // Last: the flood it ends with leaves this host's allowance of rejected frames spent for a while.
    hostile_peer_frames_are_dropped(&cluster);
}

#[test]
fn a_killed_primary_restarts_empty_and_recovers_without_losing_acknowledged_writes() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let seed = 7;
    let workload = Workload::new(urls, "noted-tests vr: SIGKILL the primary under load, restart it empty");
    let clients = workload.spawn_clients(4, seed);

    let writes_so_far = || workload.highest_id.load(Ordering::Relaxed);
    wait_until("the workload to get going", Duration::from_secs(20), || writes_so_far() >= 50);
    let old_primary = cluster.primary().expect("a primary");
    cluster.kill(old_primary);
    let before_new_primary = writes_so_far();
    wait_until("another replica to become primary", Duration::from_secs(30), || {
        cluster.primary().is_some_and(|primary| primary != old_primary)
    });
    wait_until("writes to go on without the old primary", Duration::from_secs(30), || {
        writes_so_far() >= before_new_primary + 50
    });
    cluster.restart(old_primary);
    wait_until("the restarted replica to recover", Duration::from_secs(30), || {
        matches!(cluster.role(old_primary).as_deref(), Some("backup" | "primary"))
    });
    let after_recovery = writes_so_far();
    wait_until("writes to go on after recovery", Duration::from_secs(30), || writes_so_far() >= after_recovery + 50);
    workload.finish_and_check(&cluster, clients, seed);
    let view_changes: u64 = (0..3).map(|replica| metric(&cluster, replica, "noted_view_changes_total")).sum();
    assert!(view_changes > 0, "the primary's crash caused a view change");
}
