//! `noted bench` against a real cluster: a short run whose history is recorded and
//! checked, and a report that adds up.

use std::process::Command;

use noted_check::history::History;
use noted_tests::{Cluster, ClusterOptions, noted_binary};
use serde_json::Value;

#[test]
fn a_short_bench_run_reports_and_its_history_is_linearizable() {
    let cluster = Cluster::start(ClusterOptions::vr());
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let history_path = cluster.directory.join("bench-history.jsonl");
    let output = Command::new(noted_binary())
        .args(["bench", "--url", &urls.join(","), "--connections", "4", "--operations", "150"])
        .args(["--mix", "create=2,get=3,list=1,replace=2,patch=1,delete=1", "--prefill", "10", "--json", "--check"])
        .arg("--history")
        .arg(&history_path)
        .output()
        .expect("noted bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "noted bench failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let report: Value = serde_json::from_str(stdout.trim()).expect("--json prints one JSON object");
    assert_eq!(report["operations"], 150);
    assert_eq!(report["answered"].as_u64().unwrap() + report["failed"].as_u64().unwrap(), 150);
    assert!(report["per_second"].as_f64().unwrap() > 0.0);
    let latency = &report["latency_us"];
    assert!(latency["p50"].as_u64() <= latency["p99"].as_u64() && latency["p99"].as_u64() <= latency["max"].as_u64());
    let by_operation = report["by_operation"].as_object().expect("per-operation figures");
    let counted: u64 = by_operation.values().map(|entry| entry["answered"].as_u64().unwrap()).sum();
    assert_eq!(counted, report["answered"].as_u64().unwrap());
    assert_eq!(report["history"]["verdict"], "linearizable");

    let history = History::parse_jsonl(&std::fs::read_to_string(&history_path).expect("the history was written"))
        .expect("the history is a valid lin-history");
    let operations = history.operations().expect("the history is well formed");
    assert_eq!(operations.len(), 160, "the prefill's creates and the measured operations");
}

#[test]
fn a_bench_run_without_a_cluster_fails_with_a_reason() {
    // A port nobody listens on: the prefill creates nothing.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = Command::new(noted_binary())
        .args(["bench", "--url", &format!("http://{unused}"), "--operations", "5", "--timeout-ms", "500"])
        .output()
        .expect("noted bench runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("the prefill created no note"));
}

#[test]
fn sending_to_the_primary_reaches_only_the_primary() {
    let cluster = Cluster::start(ClusterOptions::vr());
    cluster.wait_until_serving();
    let primary = cluster.primary().expect("a primary");
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let output = Command::new(noted_binary())
        .args(["bench", "--url", &urls.join(","), "--send-to", "primary", "--connections", "3"])
        .args(["--operations", "60", "--mix", "create=1", "--prefill", "6", "--json"])
        .output()
        .expect("noted bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "noted bench failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.trim()).expect("--json prints one JSON object");
    assert_eq!(report["settings"]["send_to"], "primary");
    assert_eq!(report["answered"], 60);

    // Backups would have counted any create sent to them (and forwarded it).
    let creates_counted = |replica: usize| -> u64 {
        let metrics = cluster.client(replica).get_path("/metrics").expect("metrics answer");
        metrics
            .text
            .lines()
            .filter(|line| line.starts_with("noted_http_requests_total{route=\"/notes\",method=\"POST\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(creates_counted(primary), 66, "the prefill's and the measured creates");
    for backup in (0..cluster.replica_count()).filter(|replica| *replica != primary) {
        assert_eq!(creates_counted(backup), 0, "replica {backup} is a backup and was sent nothing");
    }
}
