//! Hostile and mismatched peers: replayed and forged heartbeats, and replicas
//! that speak different wire protocol versions.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use noted_tests::checks::metric;
use noted_tests::{Cluster, ClusterOptions, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

/// [length][cluster id][32-byte MAC]: what comes before a heartbeat's JSON.
const HEARTBEAT_HEADER_BYTES: usize = 4 + 8 + 32;
/// Forged heartbeats per second in the flood test, and for how long.
const FORGED_PER_SECOND: u64 = 20_000;
const FLOOD_SECONDS: u64 = 3;
/// Writes per second the client sends while the flood is measured (and before, for comparison).
const WRITES_PER_SECOND: u64 = 50;
const NOTICE_TIMEOUT: Duration = Duration::from_secs(20);

/// What `replica`'s `/status` says of `peer`.
fn peer_report(cluster: &Cluster, replica: usize, peer: usize) -> Value {
    let status = cluster.status(replica).expect("the replica answers /status");
    let peers = status["peers"].as_array().expect("a list of peers").clone();
    peers.into_iter().find(|report| report["replica"] == peer).expect("the peer is listed")
}

fn write_notes(cluster: &Cluster, via: usize, count: usize, title: &str) {
    for _ in 0..count {
        let created = cluster.client(via).json(Method::POST, "/notes", &json!({ "title": title })).unwrap();
        assert_eq!(created.status, 201, "{}", created.text);
    }
}

fn rejected_heartbeats(cluster: &Cluster, replica: usize, reason: &str) -> u64 {
    metric(cluster, replica, &format!("noted_heartbeats_rejected_total{{reason=\"{reason}\"}}"))
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let ticks_per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse::<u64>().ok())
        .unwrap_or(100);
    ticks as f64 / ticks_per_second as f64
}

#[test]
fn replayed_heartbeats_of_a_real_peer_leave_status_unchanged() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    // Replica 2's heartbeat port becomes a tap: the others keep sending it their heartbeats.
    cluster.kill(2);
    let tap = UdpSocket::bind(cluster.addresses[2].heartbeat).expect("the stopped replica's heartbeat address");
    tap.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write_notes(&cluster, 0, 5, "before the capture");
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    while captured.len() < 3 && started.elapsed() < NOTICE_TIMEOUT {
        let mut buffer = [0u8; 2048];
        if let Ok((length, from)) = tap.recv_from(&mut buffer)
            && from == cluster.addresses[0].heartbeat
        {
            captured.push(buffer[..length].to_vec());
        }
    }
    assert!(captured.len() >= 3, "replica 0's heartbeats were captured");
    let captured_op_number = captured
        .iter()
        .map(|datagram| serde_json::from_slice::<Value>(&datagram[HEARTBEAT_HEADER_BYTES..]).unwrap())
        .map(|heartbeat| heartbeat["op_number"].as_u64().unwrap())
        .max()
        .unwrap();

    write_notes(&cluster, 0, 5, "after the capture");
    wait_until("replica 1 to hear of replica 0's later state", NOTICE_TIMEOUT, || {
        peer_report(&cluster, 1, 0)["op_number"].as_u64().is_some_and(|op| op > captured_op_number)
    });
    // Replica 0 stops: from now on only the replayed datagrams come from its address.
    cluster.kill(0);
    let replayer = UdpSocket::bind(cluster.addresses[0].heartbeat).expect("the stopped replica's heartbeat address");
    let before = peer_report(&cluster, 1, 0);
    let replayed_before = rejected_heartbeats(&cluster, 1, "replayed");
    let replays = 3;
    for _ in 0..replays {
        for datagram in &captured {
            replayer.send_to(datagram, cluster.addresses[1].heartbeat).unwrap();
        }
    }
    let expected = replayed_before + (replays * captured.len()) as u64;
    wait_until("the replays to be counted", NOTICE_TIMEOUT, || {
        rejected_heartbeats(&cluster, 1, "replayed") >= expected
    });
    let after = peer_report(&cluster, 1, 0);
    for field in ["view", "role", "op_number", "applied"] {
        assert_eq!(before[field], after[field], "{field} of replica 0 in replica 1's /status: {before} then {after}");
    }
    let contact = |report: &Value| report["last_contact_ms_ago"].as_u64().expect("replica 0 was heard from");
    assert!(contact(&after) >= contact(&before), "the last contact is not refreshed by replays: {before} then {after}");
    println!(
        "replayed {} genuine heartbeats of replica 0 from its address; replica 1 counted them as replayed \
         and its /status kept op_number {} (the captured ones said at most {captured_op_number})",
        replays * captured.len(),
        after["op_number"]
    );
}

/// Sends writes through `via` at [`WRITES_PER_SECOND`] until `stop`; counts successes and failures.
fn paced_writer(cluster: &Cluster, via: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let client = cluster.client(via);
    std::thread::spawn(move || {
        let (mut written, mut failed) = (0u64, 0u64);
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let created = client.json(Method::POST, "/notes", &json!({ "title": "under a flood" }));
            if created.is_ok_and(|response| response.status == 201) {
                written += 1;
            } else {
                failed += 1;
            }
            let next = started + Duration::from_micros((written + failed) * 1_000_000 / WRITES_PER_SECOND);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        (written, failed)
    })
}

#[test]
fn forged_heartbeats_are_dropped_for_microseconds_each_while_writes_go_on() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    let target = 1;
    // The forger sends from replica 2's own heartbeat address, so every datagram
    // passes the sender check and costs the target a MAC verification.
    cluster.kill(2);
    let forger = UdpSocket::bind(cluster.addresses[2].heartbeat).expect("the stopped replica's heartbeat address");
    let pid = cluster.pid(target).expect("the target runs");
    let mut forged = vec![0u8; 200];
    forged[..4].copy_from_slice(&196u32.to_be_bytes());
    forged[4..12].copy_from_slice(&cluster.cluster_id.to_be_bytes());
    let period = Duration::from_secs(FLOOD_SECONDS);

    // The same paced writes without, then with, the flood: the difference in CPU is the flood's.
    let mut measure = |flood: bool| {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = paced_writer(&cluster, 0, Arc::clone(&stop));
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        let sent = AtomicU64::new(0);
        while started.elapsed() < period {
            if flood {
                let due = started.elapsed().as_micros() as u64 * FORGED_PER_SECOND / 1_000_000;
                while sent.load(Ordering::Relaxed) < due {
                    let count = sent.fetch_add(1, Ordering::Relaxed);
                    forged[12..20].copy_from_slice(&count.to_be_bytes());
                    let _ = forger.send_to(&forged, cluster.addresses[target].heartbeat);
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let cpu = cpu_seconds(pid) - cpu_before;
        stop.store(true, Ordering::Relaxed);
        let (written, failed) = writer.join().unwrap();
        (cpu, sent.into_inner(), written, failed)
    };
    let (quiet_cpu, _, quiet_written, quiet_failed) = measure(false);
    let dropped_before = rejected_heartbeats(&cluster, target, "bad_mac");
    let (flood_cpu, sent, written, failed) = measure(true);
    wait_until("the last forged datagrams to be counted", Duration::from_secs(5), || {
        rejected_heartbeats(&cluster, target, "bad_mac") > dropped_before
    });
    std::thread::sleep(Duration::from_millis(500));
    let dropped = rejected_heartbeats(&cluster, target, "bad_mac") - dropped_before;

    assert_eq!(quiet_failed, 0, "every write succeeds without the flood ({quiet_written} written)");
    assert_eq!(failed, 0, "every write succeeds under the flood ({written} written)");
    assert!(written >= 10, "writes went on under the flood: {written}");
    assert!(dropped >= sent / 2, "most forged datagrams reached noted and were counted: {dropped} of {sent}");
    let per_datagram_us = (flood_cpu - quiet_cpu).max(0.0) / dropped as f64 * 1e6;
    println!(
        "forged heartbeats: {sent} sent in {FLOOD_SECONDS}s ({FORGED_PER_SECOND}/s) from a peer's address, {dropped} \
         counted as bad_mac by replica {target}; its CPU time with {WRITES_PER_SECOND} writes/s: {flood_cpu:.2}s with \
         the flood, {quiet_cpu:.2}s without; {per_datagram_us:.1} µs of CPU per dropped datagram; {written} writes \
         under the flood, none failed"
    );
}

/// Lines of `replica`'s log that report a refused version.
fn refusal_lines(cluster: &Cluster, replica: usize) -> Vec<String> {
    cluster.log_of(replica).lines().filter(|line| line.contains("no common version")).map(str::to_owned).collect()
}

#[test]
fn a_peer_with_no_common_version_is_refused_once_and_the_cluster_goes_on() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    // Replica 2 comes back speaking only a version the others do not.
    cluster.kill(2);
    cluster.options.replica_args = vec![(2, vec!["--test-wire-versions".into(), "2".into()])];
    cluster.restart(2);
    let refused = |replica| {
        metric(&cluster, replica, "noted_peer_messages_dropped_total{stage=\"handshake\",reason=\"no_common_version\"}")
    };
    // Each side dials the other again every few seconds: several refusals, one line each.
    wait_until("several refused handshakes", Duration::from_secs(40), || refused(0) >= 3 && refused(2) >= 3);
    write_notes(&cluster, 1, 3, "the cluster goes on");

    for replica in [0, 1] {
        let lines = refusal_lines(&cluster, replica);
        assert_eq!(lines.len(), 1, "replica {replica} logs the refusal once: {lines:#?}");
        assert!(lines[0].contains("peer R2 speaks"), "{}", lines[0]);
        assert!(lines[0].contains("versions 2 and this replica 1"), "{}", lines[0]);
        assert_eq!(peer_report(&cluster, 2, replica)["wire_version"], Value::Null, "replica 2 has no connection");
    }
    let lines = refusal_lines(&cluster, 2);
    assert_eq!(lines.len(), 2, "replica 2 logs the refusal once per peer: {lines:#?}");
    assert_eq!(peer_report(&cluster, 0, 1)["wire_version"], 1);
    println!(
        "refused handshakes: replica 0 {}, replica 2 {}; log lines: replica 0 {:?}",
        refused(0),
        refused(2),
        refusal_lines(&cluster, 0)
    );
}

#[test]
fn peers_with_overlapping_version_ranges_agree_on_the_highest_common_one() {
    let ranges = ["1-3", "2-4", "2"];
    let options = ClusterOptions {
        replica_args: (0u8..)
            .zip(ranges)
            .map(|(replica, range)| (replica, vec!["--test-wire-versions".to_owned(), range.to_owned()]))
            .collect(),
        ..ClusterOptions::vr()
    };
    let cluster = Cluster::start(options);
    write_notes(&cluster, 2, 3, "overlapping versions");
    let expected = [(0, 1, 3), (1, 0, 3), (0, 2, 2), (2, 0, 2), (1, 2, 2), (2, 1, 2)];
    for (replica, peer, version) in expected {
        wait_until("the connection's version in /status", NOTICE_TIMEOUT, || {
            peer_report(&cluster, replica, peer)["wire_version"] == version
        });
    }
    for replica in 0..3 {
        assert!(refusal_lines(&cluster, replica).is_empty(), "no refusals: {:?}", refusal_lines(&cluster, replica));
    }
}
