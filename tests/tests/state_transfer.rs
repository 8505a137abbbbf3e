//! A store of more than 64 MiB moves between real `noted serve` processes in
//! bounded chunks: a backup, then the primary, is SIGKILLed and restarted with
//! empty memory while a client keeps writing, recovers by state transfer, and
//! every replica converges. Also: a panic in the driver ends the process, and a
//! driver that stops taking inputs makes `/healthz` unhealthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use noted_tests::checks::{converged_notes, metric};
use noted_tests::{Cluster, ClusterOptions, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

/// Notes written before the restarts, and the largest body core accepts (64 KiB of compact JSON).
const NOTES: usize = 1_120;
const BODY_BYTES_MAX: usize = 64 * 1024;
const STORE_BYTES_MIN: u64 = 64 * 1024 * 1024;
const WRITER_THREADS: usize = 8;
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A body of exactly `bytes` of compact JSON: sizes vary from 56 KiB up to the maximum.
fn body(index: usize) -> Value {
    let bytes = BODY_BYTES_MAX - (index % 9) * 1024;
    let title = format!("note {index:05}");
    let overhead = json!({ "title": title, "text": "" }).to_string().len();
    json!({ "title": title, "text": "t".repeat(bytes - overhead) })
}

fn fill(cluster: &Cluster) -> u64 {
    let written = Arc::new(AtomicU64::new(0));
    let threads: Vec<JoinHandle<()>> = (0..WRITER_THREADS)
        .map(|thread| {
            let client = cluster.client(cluster.primary().expect("a primary"));
            let written = Arc::clone(&written);
            std::thread::spawn(move || {
                for index in (thread..NOTES).step_by(WRITER_THREADS) {
                    let body = body(index);
                    let response = client.json(Method::POST, "/notes", &body).expect("the primary answers");
                    assert_eq!(response.status, 201, "{}", response.text);
                    written.fetch_add(body.to_string().len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writer thread");
    }
    written.load(Ordering::Relaxed)
}

/// A client that keeps creating small notes through every replica in turn until told to stop.
struct BackgroundWriter {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    /// Creates answered with an error or not at all: each may still have been
    /// committed (no retry identity is sent, so none is deduplicated).
    uncertain: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundWriter {
    fn start(cluster: &Cluster) -> BackgroundWriter {
        let clients: Vec<_> = (0..cluster.replica_count()).map(|replica| cluster.client(replica)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let uncertain = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, acknowledged, uncertain) =
                (Arc::clone(&stop), Arc::clone(&acknowledged), Arc::clone(&uncertain));
            std::thread::spawn(move || {
                let mut attempt = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    attempt += 1;
                    let client = &clients[attempt % clients.len()];
                    let created = client.json(Method::POST, "/notes", &json!({ "during": "transfer", "n": attempt }));
                    if created.is_ok_and(|response| response.status == 201) {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    } else {
                        uncertain.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        BackgroundWriter { stop, acknowledged, uncertain, thread: Some(thread) }
    }

    fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Stops writing: the creates acknowledged, and those whose outcome is unknown.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the background writer");
        }
        (self.acknowledged(), self.uncertain.load(Ordering::Relaxed))
    }
}

/// Bytes of snapshot chunks `replica` received, from every peer.
fn chunk_bytes_received(cluster: &Cluster, replica: usize) -> u64 {
    (0..cluster.replica_count())
        .map(|peer| {
            metric(
                cluster,
                replica,
                &format!("noted_peer_bytes_received_total{{peer=\"{peer}\",kind=\"snapshot_chunk\"}}"),
            )
        })
        .sum()
}

/// Kills `replica`, restarts it with empty memory and waits until it takes part
/// again with the others' state; prints how long that took and how much came in chunks.
fn kill_and_recover(cluster: &mut Cluster, replica: usize, writer: &BackgroundWriter, label: &str) {
    cluster.kill(replica);
    let killed_at = Instant::now();
    let acknowledged_before = writer.acknowledged();
    cluster.restart(replica);
    wait_until(&format!("{label} R{replica} to recover"), RECOVERY_TIMEOUT, || {
        let Some(status) = cluster.status(replica) else { return false };
        let serving = matches!(status["role"].as_str(), Some("primary" | "backup"));
        let applied = status["applied"].as_u64().unwrap_or(0);
        serving && applied >= NOTES as u64
    });
    let took = killed_at.elapsed();
    let bytes = chunk_bytes_received(cluster, replica);
    println!(
        "state transfer to the restarted {label} R{replica}: {:.1} MiB in snapshot chunks, recovered {:.2} s after \
         the kill; {} writes acknowledged meanwhile",
        bytes as f64 / (1024.0 * 1024.0),
        took.as_secs_f64(),
        writer.acknowledged() - acknowledged_before,
    );
    assert!(bytes >= STORE_BYTES_MIN, "the store came in snapshot chunks: {bytes} bytes");
    let sent = metric(cluster, replica, "noted_peer_messages_received_total{peer=\"0\",kind=\"snapshot_chunk\"}")
        + metric(cluster, replica, "noted_peer_messages_received_total{peer=\"1\",kind=\"snapshot_chunk\"}")
        + metric(cluster, replica, "noted_peer_messages_received_total{peer=\"2\",kind=\"snapshot_chunk\"}");
    assert!(sent >= 64, "in many chunks, each within the bound: {sent} chunks");
}

#[test]
fn a_restarted_replica_recovers_a_store_over_64_mib_in_chunks_while_clients_write() {
    let mut cluster = Cluster::start(ClusterOptions { request_timeout_ms: 10_000, ..ClusterOptions::vr() });
    let written = fill(&cluster);
    assert!(written >= STORE_BYTES_MIN, "{written} bytes of notes");
    println!("wrote {NOTES} notes, {:.1} MiB of bodies", written as f64 / (1024.0 * 1024.0));

    let writer = BackgroundWriter::start(&cluster);
    let primary = cluster.primary().expect("a primary");
    let backup = (0..3).find(|replica| *replica != primary).expect("a backup");
    kill_and_recover(&mut cluster, backup, &writer, "backup");
    cluster.wait_until_serving();
    let primary = cluster.primary().expect("a primary");
    kill_and_recover(&mut cluster, primary, &writer, "primary");
    cluster.wait_until_serving();
    let (acknowledged, uncertain) = writer.finish();
    assert!(acknowledged > 0, "clients kept writing through both transfers");

    let notes = converged_notes(&cluster, &[0, 1, 2]);
    let stored = notes["notes"].as_array().map_or(0, Vec::len) as u64;
    let written = NOTES as u64 + acknowledged;
    assert!(
        (written..=written + uncertain).contains(&stored),
        "every acknowledged note is on every replica, and at most the uncertain ones besides: {stored} stored, \
         {written} acknowledged, {uncertain} uncertain"
    );
}

#[test]
fn a_panic_in_the_driver_ends_the_process_with_a_log_line() {
    let options = ClusterOptions { test_faults: Some(json!({ "panic_at_request": 2 })), ..ClusterOptions::vr() };
    let mut cluster = Cluster::start(options);
    let replica = 1;
    for _ in 0..2 {
        let _ = cluster.client(replica).get_path("/notes/1?consistency=local");
    }
    let mut code = None;
    wait_until("the replica to exit", Duration::from_secs(10), || {
        code = cluster.exit_code(replica);
        code.is_some()
    });
    assert_eq!(code, Some(70), "a panic exits with EX_SOFTWARE");
    let log = cluster.log_of(replica);
    let panic_line = log.lines().find(|line| line.contains("panic: ")).unwrap_or_default();
    assert!(panic_line.contains("driver panics on client request 2"), "the log says why: {panic_line}");
    assert!(panic_line.contains("driver.rs"), "and where: {panic_line}");
}

#[test]
fn a_driver_that_stops_taking_inputs_is_unhealthy() {
    let options = ClusterOptions { test_faults: Some(json!({ "stall_at_request": 1 })), ..ClusterOptions::vr() };
    let cluster = Cluster::start(options);
    let replica = 2;
    let healthz = || cluster.client(replica).get_path("/healthz").map(|response| response.status).unwrap_or(0);
    assert_eq!(healthz(), 200);
    let _ = cluster.client(replica).get_path("/notes/1?consistency=local");
    wait_until("/healthz to say unhealthy", Duration::from_secs(10), || healthz() == 503);
    let body = cluster.client(replica).get_path("/healthz").expect("answers").body;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(cluster.client(0).get_path("/healthz").map(|response| response.status).ok(), Some(200));
}
