//! Three `noted serve` processes running local-write, whose primary role per note
//! moves to the replica where a write arrives. local-write tolerates no crash, so
//! these tests keep every process running.

use noted_tests::checks::{
    bad_input_is_refused, converged_notes, every_operation_through, retried_create_is_exactly_once,
};
use noted_tests::hostile::{hostile_http_input_is_refused, hostile_peer_frames_are_dropped};
use noted_tests::{Cluster, ClusterOptions};

#[test]
fn every_operation_through_every_replica_leaves_identical_stores() {
    let cluster = Cluster::start(ClusterOptions::local_write());
    for via in 0..cluster.replica_count() {
        every_operation_through(&cluster, via);
    }
    retried_create_is_exactly_once(&cluster);
    let notes = converged_notes(&cluster, &[0, 1, 2]);
    assert_eq!(notes["notes"].as_array().map(Vec::len), Some(1), "{notes}");
}

#[test]
fn bad_input_is_refused_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(ClusterOptions::local_write());
    bad_input_is_refused(&cluster);
    hostile_http_input_is_refused(&cluster);
    hostile_peer_frames_are_dropped(&cluster);
}
