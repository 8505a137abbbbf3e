//! The workload: what clients ask for, and how their answers read in the history.
//!
//! Operations skew toward a few hot notes so that concurrent writes and reads of
//! the same note are common. Every write's body carries a unique token, so any
//! value read back names the one write that produced it.

use std::collections::BTreeMap;

use noted_core::{ClientId, Consistency, NoteId, Operation, Refusal, Reply, RequestNumber, Version};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::options::WorkloadOptions;

/// One operation a client is about to issue.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedOperation {
    pub operation: Operation,
    pub consistency: Consistency,
}

impl PlannedOperation {
    /// Whether the operation belongs in the linearizable history (local reads may be stale: they do not).
    pub fn is_recorded(&self) -> bool {
        self.consistency == Consistency::Linearizable
    }
}

/// How a reply completes an operation in the history.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// The output is known (including errors that reveal state).
    Ok(Value),
    /// The operation certainly had no effect.
    Fail,
}

#[derive(Debug)]
pub struct Workload {
    options: WorkloadOptions,
    rng: ChaCha8Rng,
    /// Ids learned from replies, in the order first seen.
    known_ids: Vec<NoteId>,
    /// The latest version seen of each note, for conditional writes that should succeed.
    versions: BTreeMap<NoteId, Version>,
}

impl Workload {
    pub fn new(options: WorkloadOptions, rng: ChaCha8Rng) -> Workload {
        Workload { options, rng, known_ids: Vec::new(), versions: BTreeMap::new() }
    }

    /// Whether the next request of a roaming client goes to a replica of its choosing.
    pub fn is_roaming(&mut self) -> bool {
        self.rng.random_range(0..1000) < self.options.roaming_clients_per_mille
    }

    pub fn random_index(&mut self, count: usize) -> usize {
        self.rng.random_range(0..count)
    }

    pub fn think_time_nanos(&mut self) -> u64 {
        let max = u64::try_from(self.options.think_time_max.as_nanos()).unwrap_or(u64::MAX);
        self.rng.random_range(0..=max)
    }

    /// The next operation of `client`'s request `request_number`.
    pub fn next_operation(&mut self, client: ClientId, request_number: RequestNumber) -> PlannedOperation {
        let token = format!("{client}.{request_number}");
        let choice = self.rng.random_range(0..100u32);
        if self.known_ids.is_empty() || choice < self.options.creates_per_cent {
            let body = self.body(&token);
            return linearizable(Operation::Create { body });
        }
        let operation = match choice {
            40..=47 if self.options.lists => {
                let after = if self.rng.random_bool(0.5) { None } else { Some(NoteId(self.pick_id().0 - 1)) };
                let limit = if self.rng.random_bool(0.5) { None } else { Some(self.rng.random_range(1..=3)) };
                Operation::List { after, limit }
            }
            15..=47 => Operation::Get { id: self.pick_id() },
            48..=67 => {
                let id = self.pick_id();
                let body = self.body(&token);
                Operation::Replace { id, body, if_match: self.if_match(id) }
            }
            68..=90 => {
                let id = self.pick_id();
                Operation::Patch { id, patch: self.patch(&token), if_match: self.if_match(id) }
            }
            _ => {
                let id = self.pick_id();
                Operation::Delete { id, if_match: self.if_match(id) }
            }
        };
        let local = operation.is_read() && self.rng.random_range(0..1000) < self.options.local_reads_per_mille;
        PlannedOperation { operation, consistency: if local { Consistency::Local } else { Consistency::Linearizable } }
    }

    /// Learns note ids and versions from a reply, so later operations name real notes.
    pub fn observe(&mut self, reply: &Reply) {
        let mut learn = |id: NoteId, version: Option<Version>| {
            if !self.known_ids.contains(&id) {
                self.known_ids.push(id);
            }
            if let Some(version) = version {
                self.versions.insert(id, version);
            }
        };
        match reply {
            Reply::Note { note } => learn(note.id, Some(note.version)),
            Reply::Page { page } => page.notes.iter().for_each(|note| learn(note.id, Some(note.version))),
            Reply::Refused { refusal: Refusal::VersionMismatch { id, actual, .. } } => learn(*id, Some(*actual)),
            Reply::Deleted { .. } | Reply::Refused { .. } => {}
        }
    }

    /// Mostly a hot note, sometimes any known note, rarely one not created yet.
    fn pick_id(&mut self) -> NoteId {
        let hot = self.known_ids.len().min(usize::try_from(self.options.hot_notes).unwrap_or(1)).max(1);
        let roll = self.rng.random_range(0..100u32);
        if roll < 70 {
            self.known_ids[self.rng.random_range(0..hot)]
        } else if roll < 95 {
            self.known_ids[self.rng.random_range(0..self.known_ids.len())]
        } else {
            let highest = self.known_ids.iter().max().map_or(0, |id| id.0);
            NoteId(highest + self.rng.random_range(1..=2))
        }
    }

    /// A version to compare against: usually the latest seen (likely to match), else a random one.
    fn if_match(&mut self, id: NoteId) -> Option<Version> {
        if self.rng.random_range(0..1000) >= self.options.conditional_per_mille {
            return None;
        }
        match self.versions.get(&id) {
            Some(version) if self.rng.random_bool(0.7) => Some(*version),
            _ => Some(self.rng.random_range(1..=4)),
        }
    }

    /// A note's body: its token, a title, and in some seeds a padding that makes it large.
    fn body(&mut self, token: &str) -> Value {
        let mut body = json!({ "token": token, "title": self.word() });
        if self.options.padding_bytes_max > 0 {
            let padding = self.rng.random_range(0..=self.options.padding_bytes_max);
            body["pad"] = Value::from("p".repeat(padding));
        }
        body
    }

    fn patch(&mut self, token: &str) -> Value {
        let mut members = Map::new();
        members.insert("token".into(), Value::from(token));
        match self.rng.random_range(0..3u32) {
            0 => members.insert("tag".into(), Value::from(self.word())),
            1 => members.insert("tag".into(), Value::Null),
            _ => members.insert("meta".into(), json!({ "color": self.word() })),
        };
        Value::Object(members)
    }

    fn word(&mut self) -> &'static str {
        const WORDS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
        WORDS[self.rng.random_range(0..WORDS.len())]
    }
}

fn linearizable(operation: Operation) -> PlannedOperation {
    PlannedOperation { operation, consistency: Consistency::Linearizable }
}

/// The history's function name and input for an operation (lin-history, notes model).
pub fn history_call(operation: &Operation) -> (&'static str, Value) {
    let mut input = Map::new();
    let put_if_match = |input: &mut Map<String, Value>, if_match: &Option<Version>| {
        if let Some(version) = if_match {
            input.insert("if_match".into(), Value::from(*version));
        }
    };
    let function = match operation {
        Operation::Create { body } => {
            input.insert("body".into(), body.clone());
            "create"
        }
        Operation::Get { id } => {
            input.insert("id".into(), Value::from(id.0));
            "get"
        }
        Operation::List { after, limit } => {
            if let Some(after) = after {
                input.insert("after".into(), Value::from(after.0));
            }
            if let Some(limit) = limit {
                input.insert("limit".into(), Value::from(*limit));
            }
            "list"
        }
        Operation::Replace { id, body, if_match } => {
            input.insert("id".into(), Value::from(id.0));
            input.insert("body".into(), body.clone());
            put_if_match(&mut input, if_match);
            "put"
        }
        Operation::Patch { id, patch, if_match } => {
            input.insert("id".into(), Value::from(id.0));
            input.insert("patch".into(), patch.clone());
            put_if_match(&mut input, if_match);
            "patch"
        }
        Operation::Delete { id, if_match } => {
            input.insert("id".into(), Value::from(id.0));
            put_if_match(&mut input, if_match);
            "delete"
        }
    };
    (function, Value::Object(input))
}

fn error(code: &str) -> Value {
    json!({ "error": { "code": code } })
}

/// How `reply` to `operation` completes it in the history.
pub fn history_completion(operation: &Operation, reply: &Reply) -> Completion {
    let output = match reply {
        Reply::Refused { refusal } => match refusal {
            Refusal::Unavailable { .. } => return Completion::Fail,
            Refusal::NotFound { .. } => error("not_found"),
            Refusal::VersionMismatch { .. } => error("precondition_failed"),
            Refusal::Invalid { .. } => error("invalid"),
        },
        Reply::Note { note } => match operation {
            Operation::Create { .. } => json!({ "id": note.id.0, "version": note.version }),
            Operation::Get { .. } => json!({ "note": Value::Object((*note.body).clone()), "version": note.version }),
            _ => json!({ "version": note.version }),
        },
        Reply::Page { page } => {
            let notes: Vec<Value> = page
                .notes
                .iter()
                .map(|note| json!({ "id": note.id.0, "version": note.version, "note": Value::Object((*note.body).clone()) }))
                .collect();
            json!({ "notes": notes, "more": page.next_after.is_some() })
        }
        Reply::Deleted { .. } => json!({}),
    };
    Completion::Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_writes_carry_if_match_in_the_history() {
        let operation = Operation::Delete { id: NoteId(3), if_match: Some(2) };
        assert_eq!(history_call(&operation), ("delete", json!({ "id": 3, "if_match": 2 })));
    }

    #[test]
    fn unavailable_is_a_certain_failure_and_not_found_an_observation() {
        let get = Operation::Get { id: NoteId(1) };
        let unavailable = Reply::refused(Refusal::unavailable("no quorum"));
        assert_eq!(history_completion(&get, &unavailable), Completion::Fail);
        let missing = Reply::refused(Refusal::NotFound { id: NoteId(1) });
        assert_eq!(history_completion(&get, &missing), Completion::Ok(error("not_found")));
    }
}
