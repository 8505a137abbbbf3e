//! Recording what real clients of noted's HTTP API saw, as a lin-history
//! [`History`] for the checker: used by the end-to-end tests and by `noted bench`.
//!
//! The host supplies the clock (microseconds since some start): nothing here reads
//! time, so the module stays as deterministic as the rest of the crate.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::history::{Event, Header, History, ModelName};

/// Microseconds since the recording started, read by the host.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// A history shared by concurrent clients. Events are appended under one lock and
/// the clock is read under it, so line order is real-time order and times never
/// decrease: a call is recorded before its request is sent, a completion after its
/// response arrived.
pub struct Recorder {
    clock: Clock,
    state: Mutex<(History, u64)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder of a notes history whose header names `source`.
    pub fn new(source: &str, clock: Clock) -> Recorder {
        let mut header = Header::new(ModelName::Notes);
        header.source = Some(source.to_string());
        Recorder { clock, state: Mutex::new((History::new(header), 0)) }
    }

    fn push(&self, make: impl FnOnce(&mut u64) -> Event) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (history, next_id) = &mut *state;
        let event = make(next_id).at((self.clock)());
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

    /// The outcome is unknown: the client gave up waiting, or the answer said nothing definite.
    pub fn info(&self, id: u64, client: u64) {
        self.push(|_| Event::info(id, client));
    }

    pub fn history(&self) -> History {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).0.clone()
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

/// The model's output for a definite HTTP answer (`status`, JSON `body`) to
/// `function`, or `None` when the answer says nothing definite (503, or an
/// unexpected status). `function` is one of the notes model's: create, get, put,
/// patch, delete, list.
pub fn model_output(function: &str, status: u16, body: &Value) -> Option<Value> {
    let error = |code: &str| Some(json!({ "error": { "code": code } }));
    match status {
        404 => error("not_found"),
        412 => error("precondition_failed"),
        200 | 201 | 204 => match function {
            "create" => Some(json!({ "id": body["id"], "version": body["version"] })),
            "get" => Some(json!({ "note": user_object(body), "version": body["version"] })),
            "put" | "patch" => Some(json!({ "version": body["version"] })),
            "delete" => Some(json!({})),
            "list" => {
                let notes = body["notes"].as_array().map(Vec::as_slice).unwrap_or_default();
                let notes: Vec<Value> = notes
                    .iter()
                    .map(|note| json!({ "id": note["id"], "version": note["version"], "note": user_object(note) }))
                    .collect();
                // `next_after` names the page's last note when more notes follow it:
                // the model's `more`. A body without it (not noted's) says nothing of more.
                match body.get("next_after") {
                    Some(next_after) => Some(json!({ "notes": notes, "more": !next_after.is_null() })),
                    None => Some(json!({ "notes": notes })),
                }
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::checker::{Verdict, check};

    fn counting_clock() -> Clock {
        let ticks = AtomicU64::new(0);
        Box::new(move || ticks.fetch_add(1, Ordering::Relaxed))
    }

    #[test]
    fn a_recorded_history_is_checked() {
        let recorder = Recorder::new("test", counting_clock());
        let create = recorder.call(0, "create", json!({ "body": { "title": "a" } }));
        let created = json!({ "id": 1, "version": 1, "title": "a" });
        recorder.ok(create, 0, model_output("create", 201, &created).unwrap());
        let get = recorder.call(1, "get", json!({ "id": 1 }));
        recorder.ok(get, 1, model_output("get", 200, &created).unwrap());
        let lost = recorder.call(0, "delete", json!({ "id": 1 }));
        recorder.info(lost, 0);
        assert_eq!(check(&recorder.history()).unwrap(), Verdict::Linearizable);

        let wrong = recorder.call(1, "get", json!({ "id": 1 }));
        let other = json!({ "id": 1, "version": 1, "title": "b" });
        recorder.ok(wrong, 1, model_output("get", 200, &other).unwrap());
        assert!(matches!(check(&recorder.history()).unwrap(), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn only_definite_answers_have_an_output() {
        assert_eq!(model_output("get", 404, &Value::Null), Some(json!({ "error": { "code": "not_found" } })));
        assert_eq!(model_output("put", 503, &Value::Null), None);
        assert_eq!(model_output("frobnicate", 200, &Value::Null), None);
        assert_eq!(user_object(&json!({ "id": 3, "version": 2, "title": "t" })), json!({ "title": "t" }));
        let page = json!({ "next_after": 4, "notes": [{ "id": 4, "version": 1, "title": "t" }] });
        let listed = json!([{ "id": 4, "version": 1, "note": { "title": "t" } }]);
        assert_eq!(model_output("list", 200, &page), Some(json!({ "notes": listed, "more": true })));
        let last = json!({ "next_after": null, "notes": [] });
        assert_eq!(model_output("list", 200, &last), Some(json!({ "notes": [], "more": false })));
    }
}
