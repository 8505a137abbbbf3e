//! `GET /notes/watch`: the change feed over a real WebSocket, on every replica.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use noted_tests::{Cluster, ClusterOptions, NotesClient};
use reqwest::Method;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long a watcher waits for the changes it expects.
const FEED_TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking WebSocket client of one replica's feed.
struct Watcher {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Watcher {
    fn connect(cluster: &Cluster, replica: usize, query: &str) -> Watcher {
        let url = format!("ws://{}/notes/watch{query}", cluster.addresses[replica].client);
        let (mut socket, response) =
            tungstenite::connect(url.as_str()).unwrap_or_else(|error| panic!("connect to {url}: {error}"));
        assert_eq!(response.status().as_u16(), 101, "{url} switches protocols");
        if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
            // Short reads let `next_message` check its deadline.
            stream.set_read_timeout(Some(Duration::from_millis(200))).expect("set a read timeout");
        }
        Watcher { socket }
    }

    /// The next feed message, as JSON, within `timeout`; pings are answered by tungstenite.
    fn next_message(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).expect("feed messages are JSON"),
                Ok(Message::Close(frame)) => panic!("the feed closed: {frame:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(error))
                    if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(error) => panic!("reading the feed failed: {error}"),
            }
            assert!(Instant::now() < deadline, "no feed message within {timeout:?}");
        }
    }

    /// Changes up to and including `commit`.
    fn changes_through(&mut self, commit: u64) -> Vec<Value> {
        let mut changes = Vec::new();
        while changes.last().is_none_or(|change: &Value| change["commit"].as_u64() < Some(commit)) {
            changes.push(self.next_message(FEED_TIMEOUT));
        }
        changes
    }

    fn close(mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }
}

/// Creates, patches and deletes notes through every replica in turn; returns the
/// operations in the order they were acknowledged, which is commit order.
fn write_workload(cluster: &Cluster, notes: u64, first_id: u64) -> Vec<&'static str> {
    let mut operations = Vec::new();
    let client =
        |step: u64| -> NotesClient { cluster.client(usize::try_from(step).unwrap() % cluster.replica_count()) };
    for step in 0..notes {
        let created = client(step).json(Method::POST, "/notes", &json!({ "title": format!("note {step}") })).unwrap();
        assert_eq!(created.status, 201, "{}", created.text);
        operations.push("create");
    }
    for id in first_id..first_id + notes {
        let patched = client(id)
            .json(Method::PATCH, &format!("/notes/{id}"), &json!({ "body": format!("patched {id}") }))
            .unwrap();
        assert_eq!(patched.status, 200, "{}", patched.text);
        operations.push("patch");
        if id % 3 == 0 {
            let deleted = client(id + 1).send(Method::DELETE, &format!("/notes/{id}"), None, &[]).unwrap();
            assert_eq!(deleted.status, 204, "{}", deleted.text);
            operations.push("delete");
        }
    }
    operations
}

fn commits(changes: &[Value]) -> Vec<u64> {
    changes.iter().map(|change| change["commit"].as_u64().expect("a commit number")).collect()
}

#[test]
fn watchers_on_different_replicas_see_the_same_changes_and_resume_without_gaps_or_repeats() {
    let cluster = Cluster::start(ClusterOptions::vr());
    let mut on_first = Watcher::connect(&cluster, 0, "?from=0");
    let mut on_second = Watcher::connect(&cluster, 1, "?from=0");
    let mut resuming = Watcher::connect(&cluster, 2, "?from=0");

    let mut operations = write_workload(&cluster, 6, 1);
    let first_part = u64::try_from(operations.len()).unwrap();
    let mut resumed_changes = resuming.changes_through(first_part);
    resuming.close();
    // Written while the resuming watcher is away.
    operations.extend(write_workload(&cluster, 6, 7));
    let total = u64::try_from(operations.len()).unwrap();
    let mut resuming = Watcher::connect(&cluster, 2, &format!("?from={first_part}"));
    resumed_changes.extend(resuming.changes_through(total));

    let first_changes = on_first.changes_through(total);
    let second_changes = on_second.changes_through(total);
    assert_eq!(commits(&first_changes), (1..=total).collect::<Vec<_>>(), "every commit once, in order");
    let ops: Vec<&str> = first_changes.iter().map(|change| change["op"].as_str().unwrap()).collect();
    assert_eq!(ops, operations, "the feed's operations are the acknowledged writes, in order");
    assert_eq!(first_changes, second_changes, "two replicas, one sequence of changes");
    assert_eq!(resumed_changes, first_changes, "resuming with ?from= misses nothing and repeats nothing");

    let created = &first_changes[0];
    assert_eq!(created["id"], 1);
    assert_eq!(created["version"], 1);
    assert_eq!(created["note"]["title"], "note 0");
    assert_eq!(created["note"]["id"], 1, "the note carries its metadata");
    let deleted = first_changes.iter().find(|change| change["op"] == "delete").expect("a delete");
    assert!(deleted["note"].is_null() && deleted["version"].is_null(), "{deleted}");

    // Without ?from= a watcher starts from a snapshot of the store, then goes live.
    let mut fresh = Watcher::connect(&cluster, 1, "");
    let snapshot = fresh.next_message(FEED_TIMEOUT);
    assert_eq!(snapshot["snapshot"]["commit"], total, "{snapshot}");
    let listed = cluster.client(1).get_path("/notes?consistency=local").unwrap();
    assert_eq!(snapshot["snapshot"]["notes"], listed.body["notes"], "the snapshot is the store");
    let created = cluster.client(0).json(Method::POST, "/notes", &json!({ "title": "live" })).unwrap();
    assert_eq!(created.status, 201);
    let live = fresh.next_message(FEED_TIMEOUT);
    assert_eq!((live["commit"].as_u64(), live["op"].as_str()), (Some(total + 1), Some("create")), "{live}");
    for watcher in [on_first, on_second, resuming, fresh] {
        watcher.close();
    }

    let plain = cluster.client(0).get_path("/notes/watch").unwrap();
    assert!((400..500).contains(&plain.status), "{} {}", plain.status, plain.text);
    assert_eq!(plain.error_code(), Some("websocket_required"), "{}", plain.text);
    let bad_query = cluster.client(0).get_path("/notes/watch?from=yesterday").unwrap();
    assert_eq!(bad_query.error_code(), Some("invalid_query"), "{}", bad_query.text);

    // The web page that uses the feed is served by every replica.
    let page = cluster.client(2).get_path("/").unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text.contains("/notes/watch"), "the page watches the feed");
}

/// The notes a watcher knows after applying `messages` (snapshots and changes) to `notes`.
fn apply(notes: &mut std::collections::BTreeMap<u64, Value>, messages: &[Value]) {
    for message in messages {
        if let Some(snapshot) = message.get("snapshot") {
            notes.clear();
            for note in snapshot["notes"].as_array().expect("a snapshot's notes") {
                notes.insert(note["id"].as_u64().unwrap(), note.clone());
            }
        } else if message["op"] == "delete" {
            notes.remove(&message["id"].as_u64().unwrap());
        } else {
            notes.insert(message["id"].as_u64().unwrap(), message["note"].clone());
        }
    }
}

#[test]
fn a_watcher_of_a_restarted_replica_resumes_and_ends_with_the_clusters_notes() {
    let mut cluster = Cluster::start(ClusterOptions::vr());
    let backup = (0..3).find(|replica| Some(*replica) != cluster.primary()).expect("a backup");
    let writer = (0..3).find(|replica| *replica != backup).expect("another replica");
    let writing = cluster.client(writer);
    let create = |title: &str| {
        let created = writing.json(Method::POST, "/notes", &json!({ "title": title })).unwrap();
        assert_eq!(created.status, 201, "{}", created.text);
    };
    let mut watcher = Watcher::connect(&cluster, backup, "");
    let mut messages = vec![watcher.next_message(FEED_TIMEOUT)];
    for title in ["one", "two", "three"] {
        create(title);
    }
    messages.extend(watcher.changes_through(3));
    watcher.close();

    // The backup restarts with empty memory and recovers from its peers; the watcher
    // resumes after commit 3 and must end with the cluster's notes, with nothing twice.
    cluster.kill(backup);
    cluster.restart(backup);
    cluster.wait_until_serving();
    let mut watcher = Watcher::connect(&cluster, backup, "?from=3");
    for title in ["four", "five"] {
        create(title);
    }
    let mut resumed = Vec::new();
    while resumed.last().is_none_or(|message: &Value| {
        let commit = message["commit"].as_u64().or_else(|| message["snapshot"]["commit"].as_u64());
        commit < Some(5)
    }) {
        resumed.push(watcher.next_message(FEED_TIMEOUT));
    }
    let resumed_commits: Vec<u64> = resumed
        .iter()
        .map(|message| message["commit"].as_u64().or_else(|| message["snapshot"]["commit"].as_u64()).unwrap())
        .collect();
    assert!(resumed_commits.windows(2).all(|pair| pair[0] < pair[1]), "in order, none twice: {resumed_commits:?}");
    assert!(resumed_commits.iter().all(|commit| *commit > 3), "nothing the watcher had: {resumed_commits:?}");

    let mut known = std::collections::BTreeMap::new();
    apply(&mut known, &messages);
    apply(&mut known, &resumed);
    let listed = cluster.client(writer).get_path("/notes").unwrap();
    let expected: Vec<Value> = listed.body["notes"].as_array().unwrap().clone();
    assert_eq!(known.into_values().collect::<Vec<_>>(), expected, "the watcher's notes are the cluster's");
    watcher.close();
}
