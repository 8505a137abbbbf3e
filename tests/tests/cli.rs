//! The `noted` command line: help, cluster files, the dev cluster, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use noted_tests::{NotesClient, noted_binary, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

#[test]
fn help_explains_every_command() {
    let output = Command::new(noted_binary()).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["dev", "serve", "config", "--log-format"] {
        assert!(help.contains(word), "{help}");
    }
    let output = Command::new(noted_binary()).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["--config", "--id", "NOTED_SECRET", "--test-faults"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn config_init_writes_a_valid_file_and_bad_files_are_refused_by_field() {
    let output = Command::new(noted_binary()).args(["config", "init", "--replicas", "3"]).output().unwrap();
    assert!(output.status.success());
    let mut file: Value = serde_json::from_slice(&output.stdout).expect("a JSON cluster file");
    assert_eq!(file["replicas"].as_array().map(Vec::len), Some(3));
    assert_eq!(file["protocol"], "vr");

    file["secret"] = json!("short");
    let path = std::env::temp_dir().join(format!("noted-bad-config-{}.json", std::process::id()));
    std::fs::write(&path, file.to_string()).unwrap();
    let output = Command::new(noted_binary()).args(["serve", "--id", "0", "--config"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("secret"), "{error}");
}

/// A dev cluster on `data_dir` (`--log-format json`): the process, its guard, the
/// reader of its log lines, and its three URLs.
fn start_dev_cluster(data_dir: &std::path::Path) -> (std::process::Child, KillOnDrop, LogReader, Vec<String>) {
    let mut child = Command::new(noted_binary())
        .args(["dev", "--http-port-base", "0", "--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env_remove("NOTED_STORAGE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Drained on its own thread, so that noted never blocks on a full pipe.
    let stderr = child.stderr.take().unwrap();
    let log_reader =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut urls = Vec::new();
    while urls.len() < 3 {
        let line = lines.next().expect("noted dev prints its URLs").unwrap();
        if let Some(url) = line.split_whitespace().find(|word| word.starts_with("http://")) {
            urls.push(url.to_string());
        }
    }
    // The rest of stdout is read to its end: noted must never write to a closed pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    (child, guard, log_reader, urls)
}

type LogReader = std::thread::JoinHandle<Vec<String>>;

/// SIGTERM, then the exit status and the log lines.
fn stop_dev_cluster(
    mut child: std::process::Child,
    guard: KillOnDrop,
    log_reader: LogReader,
) -> (std::process::ExitStatus, Vec<String>) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut exit = None;
    wait_until("noted dev to exit after SIGTERM", Duration::from_secs(15), || {
        exit = child.try_wait().unwrap();
        exit.is_some()
    });
    // It has exited: nothing is left to kill, and its pid may be reused.
    std::mem::forget(guard);
    (exit.unwrap(), log_reader.join().unwrap())
}

#[test]
fn the_dev_cluster_serves_shuts_down_on_sigterm_and_keeps_its_notes_across_restarts() {
    let data_dir = std::env::temp_dir().join(format!("noted-e2e-dev-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let (child, guard, log_reader, urls) = start_dev_cluster(&data_dir);
    let client = NotesClient::new(urls[1].clone());
    let mut created = None;
    wait_until("the dev cluster to serve", Duration::from_secs(30), || {
        created = client
            .json(Method::POST, "/notes", &json!({ "title": "dev" }))
            .ok()
            .filter(|response| response.status == 201);
        created.is_some()
    });
    let read = NotesClient::new(urls[2].clone()).get_path("/notes/1").unwrap();
    assert_eq!(read.status, 200, "{}", read.text);

    let (exit, log_lines) = stop_dev_cluster(child, guard, log_reader);
    assert!(!log_lines.is_empty(), "noted logs");
    for line in &log_lines {
        let log: Value = serde_json::from_str(line).expect("--log-format json writes JSON lines");
        assert!(log.get("fields").is_some(), "{line}");
    }
    assert!(log_lines.iter().any(|line| line.contains("replicate (ordered)")), "the log tells the replication story");
    assert!(exit.success(), "a clean exit: {exit:?}");

    // Started again on the same directory, the cluster still holds the note.
    let (child, guard, log_reader, urls) = start_dev_cluster(&data_dir);
    let mut read = None;
    wait_until("the restarted dev cluster to serve the note", Duration::from_secs(30), || {
        read = NotesClient::new(urls[0].clone()).get_path("/notes/1").ok().filter(|response| response.status == 200);
        read.is_some()
    });
    assert_eq!(read.unwrap().body["title"], "dev");
    let (exit, _) = stop_dev_cluster(child, guard, log_reader);
    assert!(exit.success(), "a clean exit: {exit:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn text_logs_written_to_a_file_are_plain_and_name_each_replica_once() {
    let log_path = std::env::temp_dir().join(format!("noted-e2e-plain-log-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(noted_binary())
        .args(["dev", "--http-port-base", "0", "--storage", "memory"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("noted dev prints its URLs").unwrap();
        if let Some(url) = line.split_whitespace().find(|word| word.starts_with("http://")) {
            break url.to_string();
        }
    };
    let client = NotesClient::new(url);
    wait_until("the dev cluster to serve", Duration::from_secs(30), || {
        client
            .json(Method::POST, "/notes", &json!({ "title": "plain logs" }))
            .is_ok_and(|response| response.status == 201)
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    wait_until("noted dev to exit after SIGTERM", Duration::from_secs(15), || child.try_wait().unwrap().is_some());
    std::mem::forget(guard);

    let log = std::fs::read(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("replicate (ordered)"), "the log tells the replication story:\n{text}");
    assert!(!log.contains(&0x1b), "a log file holds no escape sequences:\n{text}");
    for id in 0..3 {
        let span = format!("replica{{id={id}}}");
        assert!(text.contains(&span), "lines name replica {id}:\n{text}");
        assert!(!text.contains(&format!("{span}:replica{{")), "the replica span is printed once:\n{text}");
    }
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}
