//! Recording what clients saw as a lin-history v1 history, for the checker.

use std::sync::Mutex;
use std::time::Instant;

use noted_sim::history::{Event, Header, History, ModelName};
use serde_json::{Map, Value, json};

use crate::client::HttpResponse;

/// A history shared by the workload's clients. Events are appended under one lock,
/// so line order is real-time order: a call is recorded before its request is
/// sent, a completion after its response arrived.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    state: Mutex<(History, u64)>,
}

impl Recorder {
    pub fn new(source: &str) -> Recorder {
        let mut header = Header::new(ModelName::Notes);
        header.source = Some(source.to_string());
        Recorder { started: Instant::now(), state: Mutex::new((History::new(header), 0)) }
    }

    fn push(&self, make: impl FnOnce(&mut u64) -> Event) -> u64 {
        let mut state = self.state.lock().expect("no recorder thread panics while holding the lock");
        let (history, next_id) = &mut *state;
        let time = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let event = make(next_id).at(time);
        let id = event.id;
        history.events.push(event);
        id
    }

    /// Records the invocation of an operation and returns its id.
    pub fn call(&self, client: u64, function: &str, input: Value) -> u64 {
        self.push(|next_id| {
            let id = *next_id;
            *next_id += 1;
            Event::call(id, client, function, Some(input))
        })
    }

    pub fn ok(&self, id: u64, client: u64, output: Value) {
        self.push(|_| Event::ok(id, client, Some(output)));
    }

    /// The outcome is unknown: the client gave up waiting.
    pub fn info(&self, id: u64, client: u64) {
        self.push(|_| Event::info(id, client));
    }

    pub fn history(&self) -> History {
        self.state.lock().expect("no recorder thread panics while holding the lock").0.clone()
    }
}

/// The user's object of a note as the API returns it: metadata removed.
pub fn user_object(note: &Value) -> Value {
    let mut object: Map<String, Value> = note.as_object().cloned().unwrap_or_default();
    for key in ["id", "version", "created_at", "updated_at"] {
        object.remove(key);
    }
    Value::Object(object)
}

/// The model's output for a definite HTTP answer to `function`, or `None` when the
/// answer says nothing definite (503, or an unexpected status).
pub fn model_output(function: &str, response: &HttpResponse) -> Option<Value> {
    let error = |code: &str| Some(json!({ "error": { "code": code } }));
    match response.status {
        404 => error("not_found"),
        412 => error("precondition_failed"),
        200 | 201 | 204 => Some(match function {
            "create" => json!({ "id": response.body["id"], "version": response.body["version"] }),
            "get" => json!({ "note": user_object(&response.body), "version": response.body["version"] }),
            "put" | "patch" => json!({ "version": response.body["version"] }),
            "delete" => json!({}),
            "list" => {
                let notes = response.body["notes"].as_array().cloned().unwrap_or_default();
                let notes: Vec<Value> = notes
                    .iter()
                    .map(|note| json!({ "id": note["id"], "version": note["version"], "note": user_object(note) }))
                    .collect();
                json!({ "notes": notes })
            }
            other => panic!("unknown function {other}"),
        }),
        _ => None,
    }
}
