//! A write-heavy workload of clients that retry exactly-once, recorded for the checker.
//!
//! Each client runs on its own thread with its own client id. An operation keeps its
//! request number across retries (after a 503 or a timeout, on the next replica),
//! so the replicated client table answers a retry instead of executing it again.
//! An operation that never gets a definite answer is recorded as `info`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use reqwest::Method;
use serde_json::{Value, json};

use noted_check::checker::{Verdict, check};

use crate::checks::{CONVERGENCE_TIMEOUT, notes_once_converged};
use crate::client::NotesClient;
use crate::cluster::Cluster;
use crate::history::{Recorder, model_output, recorder};

/// How long one operation is retried before the client gives up on it.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// What the clients learned, beyond the history.
#[derive(Debug, Default)]
pub struct Observed {
    /// Notes whose create was acknowledged, with the token in their body.
    pub acknowledged_creates: Vec<(u64, String)>,
    /// Tokens of every create attempted (acknowledged or not).
    pub attempted_tokens: BTreeSet<String>,
    /// Notes some client tried to delete (whatever the outcome).
    pub delete_attempted: BTreeSet<u64>,
    pub retries: u64,
    pub unknown_outcomes: u64,
}

/// What [`Workload::finish_and_verify`] found.
#[derive(Debug)]
pub struct Findings {
    /// Each broken guarantee, in words; empty when all held.
    pub violations: Vec<String>,
    /// Why the linearizability check decided nothing (the checker gave up), if it did
    /// not: neither a pass nor a broken guarantee.
    pub undecided: Option<String>,
    /// What the workload did, in one line.
    pub summary: String,
}

#[derive(Debug)]
pub struct Workload {
    pub urls: Vec<String>,
    pub recorder: Arc<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub observed: Arc<Mutex<Observed>>,
    /// The highest note id any client has seen.
    pub highest_id: Arc<AtomicU64>,
    /// How long each client waits between two operations: long runs keep their
    /// history small enough to check.
    pub think_time: Duration,
}

impl Workload {
    pub fn new(urls: Vec<String>, source: &str) -> Workload {
        Workload {
            urls,
            recorder: Arc::new(recorder(source)),
            stop: Arc::new(AtomicBool::new(false)),
            observed: Arc::new(Mutex::new(Observed::default())),
            highest_id: Arc::new(AtomicU64::new(0)),
            think_time: Duration::ZERO,
        }
    }

    /// Starts `clients` threads that run until [`Workload::stop`] is set.
    pub fn spawn_clients(&self, clients: u64, seed: u64) -> Vec<std::thread::JoinHandle<()>> {
        (0..clients)
            .map(|client| {
                let mut worker = Worker {
                    client,
                    client_id: seed.wrapping_mul(1000) + client + 1,
                    request_number: 0,
                    clients: self.urls.iter().cloned().map(NotesClient::new).collect(),
                    recorder: Arc::clone(&self.recorder),
                    observed: Arc::clone(&self.observed),
                    highest_id: Arc::clone(&self.highest_id),
                    random: rand::SeedableRng::seed_from_u64(seed ^ client),
                };
                let stop = Arc::clone(&self.stop);
                let think_time = self.think_time;
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        worker.one_operation();
                        std::thread::sleep(think_time);
                    }
                })
            })
            .collect()
    }

    /// Stops the clients, reads everything back, waits for the replicas to agree and
    /// checks: no create twice, no acknowledged create lost, and a linearizable history.
    pub fn finish_and_check(&self, cluster: &Cluster, clients: Vec<std::thread::JoinHandle<()>>, seed: u64) {
        let findings = self.finish_and_verify(cluster, clients, seed, CONVERGENCE_TIMEOUT);
        assert!(findings.violations.is_empty(), "{}", findings.violations.join("\n"));
        assert!(findings.undecided.is_none(), "{}", findings.undecided.unwrap_or_default());
        eprintln!("workload: {}", findings.summary);
    }

    /// Like [`Workload::finish_and_check`], but returns what is wrong instead of panicking.
    pub fn finish_and_verify(
        &self,
        cluster: &Cluster,
        clients: Vec<std::thread::JoinHandle<()>>,
        seed: u64,
        convergence_timeout: Duration,
    ) -> Findings {
        self.stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().expect("a workload client panicked");
        }
        let mut violations = Vec::new();
        if let Err(stopped) = self.read_back_everything(seed) {
            violations.push(stopped);
        }
        let replicas: Vec<usize> = (0..cluster.replica_count()).collect();
        let stored = match notes_once_converged(cluster, &replicas, convergence_timeout) {
            Ok(notes) => notes["notes"].as_array().cloned().unwrap_or_default(),
            Err(copies) => {
                let counts: Vec<String> = copies
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|copy| copy["notes"].as_array().map_or("no answer".into(), |notes| notes.len().to_string()))
                    .collect();
                violations.push(format!(
                    "the replicas did not converge within {convergence_timeout:?} (notes per replica: {})",
                    counts.join(", ")
                ));
                // Judge lost writes by the first replica's copy.
                copies[0]["notes"].as_array().cloned().unwrap_or_default()
            }
        };
        let observed = self.observed.lock().unwrap();
        let mut tokens: Vec<&str> = stored.iter().filter_map(|note| note["token"].as_str()).collect();
        let stored_count = tokens.len();
        tokens.sort_unstable();
        tokens.dedup();
        if tokens.len() != stored_count {
            violations.push(format!("{} notes are a retried create made twice", stored_count - tokens.len()));
        }
        let by_id: BTreeMap<u64, &Value> =
            stored.iter().filter_map(|note| Some((note["id"].as_u64()?, note))).collect();
        let mut lost = Vec::new();
        for (id, token) in &observed.acknowledged_creates {
            if observed.delete_attempted.contains(id) {
                continue;
            }
            // A put replaces the whole object, token included; a patch keeps it.
            let note = by_id.get(id).copied();
            let intact = note.is_some_and(|note| note.get("token").is_none_or(|stored| stored == token.as_str()));
            if !intact {
                lost.push(format!("{id} ({token}): now {}", note.map_or("absent".into(), Value::to_string)));
            }
        }
        if !lost.is_empty() {
            let shown: Vec<&String> = lost.iter().take(5).collect();
            violations.push(format!("{} acknowledged creates were lost, e.g. {shown:?}", lost.len()));
        }
        let history = self.recorder.history();
        let saved = cluster.save("history.jsonl", &history.to_jsonl());
        let checking = Instant::now();
        let verdict = check(&history);
        let check_took = checking.elapsed();
        let mut undecided = None;
        match verdict {
            Ok(Verdict::Linearizable) => {}
            Ok(Verdict::NotLinearizable(counterexample)) => {
                let ids = &counterexample.operation_ids;
                violations.push(format!(
                    "the history is not linearizable: {}; {} operations without a linearization, the first {:?}; \
                     history in {}",
                    counterexample.reason,
                    ids.len(),
                    &ids[..ids.len().min(12)],
                    saved.display()
                ));
            }
            Ok(Verdict::Unknown { steps, .. }) => {
                undecided = Some(format!(
                    "the checker gave up after {steps} search steps, so linearizability is unknown; history in {}",
                    saved.display()
                ))
            }
            Err(error) => violations.push(format!("the history is malformed: {error}; in {}", saved.display())),
        }
        let summary = format!(
            "{} events, {} acknowledged creates, {} retries, {} unknown outcomes, {} notes stored, \
             checked in {check_took:.1?}; history in {}",
            history.events.len(),
            observed.acknowledged_creates.len(),
            observed.retries,
            observed.unknown_outcomes,
            stored.len(),
            saved.display()
        );
        Findings { violations, undecided, summary }
    }

    /// Linearizable reads of every note id seen, recorded in the history, so that
    /// a lost write shows up in the check. Gives up (and says so) when
    /// [`READ_BACK_UNKNOWN_MAX`] reads in a row got no answer: the cluster is down.
    pub fn read_back_everything(&self, seed: u64) -> Result<(), String> {
        let mut worker = Worker {
            client: 999,
            client_id: seed.wrapping_mul(1000) + 999,
            request_number: 0,
            clients: self.urls.iter().cloned().map(NotesClient::new).collect(),
            recorder: Arc::clone(&self.recorder),
            observed: Arc::clone(&self.observed),
            highest_id: Arc::clone(&self.highest_id),
            random: rand::SeedableRng::seed_from_u64(seed),
        };
        let mut unknown_in_a_row = 0;
        for id in 1..=self.highest_id.load(Ordering::Relaxed) + 1 {
            let read = worker.perform("get", json!({ "id": id }), Method::GET, format!("/notes/{id}"), None, None);
            unknown_in_a_row = if read.is_some() { 0 } else { unknown_in_a_row + 1 };
            if unknown_in_a_row == READ_BACK_UNKNOWN_MAX {
                return Err(format!(
                    "reading every note back stopped at note {id}: {READ_BACK_UNKNOWN_MAX} reads in a row got no answer"
                ));
            }
        }
        Ok(())
    }
}

/// See [`Workload::read_back_everything`].
const READ_BACK_UNKNOWN_MAX: u32 = 3;

struct Worker {
    /// The client's number in the history.
    client: u64,
    client_id: u64,
    request_number: u64,
    clients: Vec<NotesClient>,
    recorder: Arc<Recorder>,
    observed: Arc<Mutex<Observed>>,
    highest_id: Arc<AtomicU64>,
    random: StdRng,
}

impl Worker {
    fn some_id(&mut self) -> u64 {
        let highest = self.highest_id.load(Ordering::Relaxed);
        self.random.random_range(1..=highest + 1)
    }

    fn one_operation(&mut self) {
        let choice = self.random.random_range(0..100);
        let id = self.some_id();
        let path = format!("/notes/{id}");
        let word = format!("w{}", self.random.random_range(0..1000));
        match choice {
            0..38 => {
                let token = format!("c{}-r{}", self.client_id, self.request_number + 1);
                self.observed.lock().unwrap().attempted_tokens.insert(token.clone());
                let body = json!({ "title": word, "token": token });
                let output =
                    self.perform("create", json!({ "body": body }), Method::POST, "/notes".into(), Some(body), None);
                if let Some(output) = output
                    && let Some(id) = output["id"].as_u64()
                {
                    self.highest_id.fetch_max(id, Ordering::Relaxed);
                    self.observed.lock().unwrap().acknowledged_creates.push((id, token));
                }
            }
            38..55 => {
                self.perform("get", json!({ "id": id }), Method::GET, path, None, None);
            }
            55..60 => self.list(),
            60..72 => {
                let body = json!({ "title": word });
                self.perform("put", json!({ "id": id, "body": body }), Method::PUT, path, Some(body), None);
            }
            72..84 => {
                let patch = json!({ "extra": word });
                self.perform("patch", json!({ "id": id, "patch": patch }), Method::PATCH, path, Some(patch), None);
            }
            84..95 => {
                // Compare-and-set: read the version, then write only if it is unchanged.
                let Some(read) = self.perform("get", json!({ "id": id }), Method::GET, path.clone(), None, None) else {
                    return;
                };
                let Some(version) = read["version"].as_u64() else { return };
                let body = json!({ "title": word, "cas": true });
                let input = json!({ "id": id, "body": body, "if_match": version });
                self.perform("put", input, Method::PUT, path, Some(body), Some(version));
            }
            _ => {
                self.observed.lock().unwrap().delete_attempted.insert(id);
                self.perform("delete", json!({ "id": id }), Method::DELETE, path, None, None);
            }
        }
    }

    /// A linearizable list, one page: the first page (up to the server's page size),
    /// a few notes from the start (`limit`), the notes after one near the newest
    /// (`after`), or a few after any note (both). Recorded with the input as sent and
    /// the page as answered, `more` from its `next_after`.
    fn list(&mut self) {
        let highest = self.highest_id.load(Ordering::Relaxed);
        let (after, limit) = match self.random.random_range(0..4) {
            0 => (None, None),
            1 => (None, Some(self.random.random_range(1..=10u64))),
            2 => (Some(highest.saturating_sub(self.random.random_range(0..20))), None),
            _ => (Some(self.random.random_range(0..=highest)), Some(self.random.random_range(1..=10u64))),
        };
        let mut input = json!({});
        let mut query = Vec::new();
        if let Some(after) = after {
            input["after"] = json!(after);
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            input["limit"] = json!(limit);
            query.push(format!("limit={limit}"));
        }
        let path = if query.is_empty() { "/notes".to_string() } else { format!("/notes?{}", query.join("&")) };
        self.perform("list", input, Method::GET, path, None, None);
    }

    /// One logical operation: retried with the same request number until a definite
    /// answer or the deadline. Returns the model output of a definite answer.
    fn perform(
        &mut self,
        function: &str,
        input: Value,
        method: Method,
        path: String,
        body: Option<Value>,
        if_match: Option<u64>,
    ) -> Option<Value> {
        self.request_number += 1;
        let mut headers = vec![
            ("noted-client-id", self.client_id.to_string()),
            ("noted-request-number", self.request_number.to_string()),
        ];
        if let Some(version) = if_match {
            headers.push(("if-match", format!("\"{version}\"")));
        }
        let content_type = if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
        let operation = self.recorder.call(self.client, function, input);
        let deadline = Instant::now() + OPERATION_DEADLINE;
        let mut replica = self.random.random_range(0..self.clients.len());
        let mut first_try = true;
        loop {
            if !first_try {
                self.observed.lock().unwrap().retries += 1;
            }
            first_try = false;
            let payload = body.as_ref().map(|body| (content_type, body.to_string().into_bytes()));
            let response = self.clients[replica].send(method.clone(), &path, payload, &headers);
            if let Ok(response) = &response {
                assert_ne!(
                    response.status, 400,
                    "{function} {path}: the workload sends valid requests: {}",
                    response.text
                );
                if response.header("noted-freshness").is_some_and(|freshness| freshness.starts_with("possibly-stale")) {
                    // Served from the replica's own copy (local-write serves lists so): not a
                    // linearizable answer, so the history says only that the read happened.
                    self.recorder.info(operation, self.client);
                    return None;
                }
                if let Some(output) = model_output(function, response) {
                    self.recorder.ok(operation, self.client, output.clone());
                    return Some(output);
                }
            }
            if Instant::now() >= deadline {
                self.recorder.info(operation, self.client);
                self.observed.lock().unwrap().unknown_outcomes += 1;
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
            replica = (replica + 1) % self.clients.len();
        }
    }
}
