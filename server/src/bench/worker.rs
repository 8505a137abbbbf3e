//! One benchmark connection: draws operations, sends them, measures and records them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, header};
use noted_check::recording::{self, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::connection::{Connection, Response, Target};
use super::mix::{OperationKind, OperationMix};
use super::report::Tally;
use crate::http::notes::{CLIENT_ID_HEADER, REQUEST_NUMBER_HEADER};

/// Pause before reconnecting after a lost connection, so a stopped replica is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// Notes a list request asks for.
const LIST_LIMIT: u32 = 10;

/// When the measured phase ends.
#[derive(Debug)]
pub enum Limit {
    Duration(Duration),
    /// Operations left to start, shared by every connection.
    Operations(AtomicU64),
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub mix: OperationMix,
    pub note_bytes: usize,
    pub local_reads: bool,
    pub request_timeout: Duration,
    /// The highest note id any create returned: reads and updates pick ids up to it.
    pub highest_id: AtomicU64,
    /// Measured operations completed, for the progress bar.
    pub completed: AtomicU64,
    pub limit: Limit,
    pub recorder: Option<Recorder>,
}

#[derive(Debug)]
pub struct Worker {
    /// The connection's client number in the history.
    index: u64,
    /// The client id the server's client table knows this connection by.
    client_id: HeaderValue,
    request_number: u64,
    target: Target,
    connection: Option<Connection>,
    shared: Arc<Shared>,
    random: StdRng,
}

/// One request, described for the wire and for the history.
struct Request {
    method: Method,
    path: String,
    body: Option<(&'static str, Bytes)>,
    /// The operation's input in the notes model, when the run is recorded.
    input: Option<Value>,
}

impl Worker {
    pub fn new(index: u64, target: Target, shared: Arc<Shared>, seed: u64) -> Worker {
        let mut random = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let client_id = HeaderValue::from(random.random::<u64>() >> 1);
        Worker { index, client_id, request_number: 0, target, connection: None, shared, random }
    }

    /// Creates `count` notes, unmeasured; gives up at the first create that goes
    /// unanswered while no note exists yet, so that a cluster that is not up is
    /// reported at once rather than after `count` timeouts.
    pub async fn prefill(mut self, count: u64) -> (Worker, Tally) {
        let mut tally = Tally::default();
        for _ in 0..count {
            let answered = self.perform(OperationKind::Create, &mut tally).await;
            if !answered && self.shared.highest_id.load(Ordering::Relaxed) == 0 {
                break;
            }
        }
        (self, Tally::default())
    }

    /// Sends operations until the limit is reached.
    pub async fn measure(mut self, deadline: Option<Instant>) -> (Worker, Tally) {
        let mut tally = Tally::default();
        while self.may_start(deadline) {
            let kind = self.shared.mix.choose(&mut self.random);
            self.perform(kind, &mut tally).await;
            self.shared.completed.fetch_add(1, Ordering::Relaxed);
        }
        (self, tally)
    }

    fn may_start(&self, deadline: Option<Instant>) -> bool {
        match (&self.shared.limit, deadline) {
            (Limit::Duration(_), Some(deadline)) => Instant::now() < deadline,
            (Limit::Operations(left), _) => {
                left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_ok()
            }
            (Limit::Duration(_), None) => false,
        }
    }

    /// Sends one operation and records it; `true` when the server answered.
    async fn perform(&mut self, kind: OperationKind, tally: &mut Tally) -> bool {
        let mut request = self.request(kind, self.shared.recorder.is_some());
        self.request_number += 1;
        let shared = Arc::clone(&self.shared);
        let recorder = shared.recorder.as_ref();
        let call = recorder
            .zip(request.input.take())
            .map(|(recorder, input)| recorder.call(self.index, kind.model_function(), input));
        let started = Instant::now();
        let response = tokio::time::timeout(self.shared.request_timeout, self.send(&request)).await;
        let latency = started.elapsed();
        let response = match response {
            Ok(Ok(response)) => Some(response),
            Ok(Err(_)) | Err(_) => {
                // The connection may be mid-request: start a fresh one.
                self.connection = None;
                None
            }
        };
        let definite = response.as_ref().is_some_and(|response| {
            response.status.is_success()
                || matches!(response.status, StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED)
        });
        tally.record(kind, latency, definite);
        if kind == OperationKind::Create
            && let Some(id) = response.as_ref().and_then(created_id)
        {
            self.shared.highest_id.fetch_max(id, Ordering::Relaxed);
        }
        if let (Some(recorder), Some(call)) = (recorder, call) {
            let output = response.as_ref().and_then(|response| {
                let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                recording::model_output(kind.model_function(), response.status.as_u16(), &body)
            });
            match output {
                Some(output) => recorder.ok(call, self.index, output),
                None => recorder.info(call, self.index),
            }
        }
        response.is_some()
    }

    async fn send(&mut self, request: &Request) -> Result<Response, String> {
        if self.connection.is_none() {
            match Connection::open(&self.target).await {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    return Err(error);
                }
            }
        }
        let connection = self.connection.as_mut().expect("opened above");
        let headers = [
            (CLIENT_ID_HEADER, self.client_id.clone()),
            (REQUEST_NUMBER_HEADER, HeaderValue::from(self.request_number)),
        ];
        connection.send(request.method.clone(), &request.path, &headers, request.body.clone()).await
    }

    fn request(&mut self, kind: OperationKind, recorded: bool) -> Request {
        let highest = self.shared.highest_id.load(Ordering::Relaxed).max(1);
        let id = self.random.random_range(1..=highest);
        let consistency = if self.shared.local_reads { "consistency=local&" } else { "" };
        let get_query = if self.shared.local_reads { "?consistency=local" } else { "" };
        let input = |make: &dyn Fn() -> Value| recorded.then(make);
        let word = format!("w{}", self.random.random_range(0..1_000_000u32));
        let json_body = |value: &Value| Some(("application/json", Bytes::from(value.to_string())));
        match kind {
            OperationKind::Create => {
                let body = self.note_body(&word);
                Request {
                    method: Method::POST,
                    path: "/notes".into(),
                    body: json_body(&body),
                    input: input(&|| json!({ "body": body })),
                }
            }
            OperationKind::Get => Request {
                method: Method::GET,
                path: format!("/notes/{id}{get_query}"),
                body: None,
                input: input(&|| json!({ "id": id })),
            },
            OperationKind::List => Request {
                method: Method::GET,
                path: format!("/notes?{consistency}limit={LIST_LIMIT}"),
                body: None,
                input: input(&|| json!({ "limit": LIST_LIMIT })),
            },
            OperationKind::Replace => {
                let body = self.note_body(&word);
                Request {
                    method: Method::PUT,
                    path: format!("/notes/{id}"),
                    body: json_body(&body),
                    input: input(&|| json!({ "id": id, "body": body })),
                }
            }
            OperationKind::Patch => {
                let patch = json!({ "tag": word });
                Request {
                    method: Method::PATCH,
                    path: format!("/notes/{id}"),
                    body: Some(("application/merge-patch+json", Bytes::from(patch.to_string()))),
                    input: input(&|| json!({ "id": id, "patch": patch })),
                }
            }
            OperationKind::Delete => Request {
                method: Method::DELETE,
                path: format!("/notes/{id}"),
                body: None,
                input: input(&|| json!({ "id": id })),
            },
        }
    }

    /// A note whose JSON is about `note_bytes` long.
    fn note_body(&self, title: &str) -> Value {
        let overhead = r#"{"title":"","text":""}"#.len() + title.len();
        json!({ "title": title, "text": "x".repeat(self.shared.note_bytes.saturating_sub(overhead)) })
    }
}

/// The id in a 201's `Location: /notes/ID`.
fn created_id(response: &Response) -> Option<u64> {
    if response.status != StatusCode::CREATED {
        return None;
    }
    let location = response.headers.get(header::LOCATION)?.to_str().ok()?;
    location.strip_prefix("/notes/")?.parse().ok()
}
