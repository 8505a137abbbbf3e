//! Verdicts on the sample histories, tricky cases, and a comparison with a brute-force
//! checker on small random histories.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn data_path(relative: &str) -> PathBuf {
    // The test data is the simulator's, beside this crate.
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/")).join(relative)
}

fn verdict_of_file(relative: &str) -> CheckReport {
    check_file(&data_path(relative)).unwrap_or_else(|error| panic!("{error}"))
}

const JEPSEN_EXPECTED: [(&str, bool); 5] =
    [("etcd_000", false), ("etcd_002", true), ("etcd_005", true), ("etcd_040", false), ("etcd_100", true)];

#[test]
fn jepsen_logs_give_their_documented_verdicts() {
    for (name, linearizable) in JEPSEN_EXPECTED {
        let report = verdict_of_file(&format!("jepsen-etcd/{name}.log"));
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}: {:?}", report.verdict);
        if !linearizable {
            assert!(matches!(report.verdict, Verdict::NotLinearizable(_)), "{name}: {:?}", report.verdict);
        }
    }
}

#[test]
fn jepsen_jsonl_files_give_their_documented_verdicts() {
    for (name, linearizable) in JEPSEN_EXPECTED {
        let report = verdict_of_file(&format!("jepsen-etcd/{name}.jsonl"));
        let expectation = report.expect.expect("the conversions say what they expect");
        assert_eq!(report.verdict.agrees_with(expectation), Some(true), "{name}: {:?}", report.verdict);
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}");
    }
}

#[test]
fn notes_histories_give_their_documented_verdicts() {
    let names = [
        ("n1-ok-basic", true),
        ("n2-bad-stale", false),
        ("n3-ok-unknown-create", true),
        ("n4-bad-id-order", false),
        ("n5-ok-concurrent-creates", true),
        ("n6-bad-unknown-create-too-late", false),
        ("n7-ok-two-shards-v2", true),
        ("n8-bad-stale-on-one-shard-v2", false),
    ];
    for (name, linearizable) in names {
        let report = verdict_of_file(&format!("notes-histories/{name}.jsonl"));
        assert_eq!(
            report.verdict.agrees_with(report.expect.expect("expect")),
            Some(true),
            "{name}: {:?}",
            report.verdict
        );
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Tricky cases, written as scripts.

/// Builds a history line by line with `t` equal to the line's order.
struct Script {
    history: History,
    time: u64,
}

impl Script {
    fn new(model: ModelName) -> Script {
        Script { history: History::new(crate::history::Header::new(model)), time: 0 }
    }

    fn push(&mut self, event: crate::history::Event) -> &mut Script {
        self.time += 1;
        self.history.events.push(event.at(self.time));
        self
    }

    fn call(&mut self, id: u64, client: u64, function: &str, input: Value) -> &mut Script {
        self.push(crate::history::Event::call(id, client, function, Some(input)))
    }

    fn ok(&mut self, id: u64, client: u64, output: Value) -> &mut Script {
        self.push(crate::history::Event::ok(id, client, Some(output)))
    }

    fn info(&mut self, id: u64, client: u64) -> &mut Script {
        self.push(crate::history::Event::info(id, client))
    }

    fn verdict(&self) -> Verdict {
        check(&self.history).unwrap_or_else(|error| panic!("{error}"))
    }
}

use serde_json::{Value, json};

fn is_linearizable(script: &Script) -> bool {
    match script.verdict() {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(_) => false,
        Verdict::Unknown { steps, .. } => panic!("gave up after {steps} steps"),
    }
}

#[test]
fn an_unknown_create_may_consume_an_id_or_not() {
    let mut consumed = Script::new(ModelName::Notes);
    consumed.call(0, 0, "create", json!({"body": {"a": 1}})).info(0, 0);
    consumed.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 2, "version": 1}));
    assert!(is_linearizable(&consumed), "the unknown create took id 1");

    let mut not_consumed = Script::new(ModelName::Notes);
    not_consumed.call(0, 0, "create", json!({"body": {"a": 1}})).info(0, 0);
    not_consumed.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 1, "version": 1}));
    not_consumed.call(2, 1, "get", json!({"id": 1})).ok(2, 1, json!({"note": {"b": 1}, "version": 1}));
    assert!(is_linearizable(&not_consumed), "the unknown create never happened, or happened later");

    let mut too_many = Script::new(ModelName::Notes);
    too_many.call(0, 0, "create", json!({"body": {"a": 1}})).info(0, 0);
    too_many.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 3, "version": 1}));
    assert!(!is_linearizable(&too_many), "one unknown create cannot consume two ids");

    let mut wrong_body = Script::new(ModelName::Notes);
    wrong_body.call(0, 0, "create", json!({"body": {"a": 1}})).info(0, 0);
    wrong_body.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 2, "version": 1}));
    wrong_body.call(2, 1, "get", json!({"id": 1})).ok(2, 1, json!({"note": {"b": 1}, "version": 1}));
    assert!(!is_linearizable(&wrong_body), "note 1 can only hold the unknown create's body");
}

#[test]
fn concurrent_creates_may_take_ids_in_either_order_but_not_against_real_time() {
    let mut swapped = Script::new(ModelName::Notes);
    swapped.call(0, 0, "create", json!({"body": {"a": 1}})).call(1, 1, "create", json!({"body": {"b": 1}}));
    swapped.ok(1, 1, json!({"id": 1, "version": 1})).ok(0, 0, json!({"id": 2, "version": 1}));
    assert!(is_linearizable(&swapped));

    let mut inverted = Script::new(ModelName::Notes);
    inverted.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 2}));
    inverted.call(1, 0, "create", json!({"body": {"b": 1}})).ok(1, 0, json!({"id": 1}));
    assert!(
        matches!(inverted.verdict(), Verdict::NotLinearizable(counterexample) if counterexample.operation_ids.len() == 2)
    );

    let mut duplicated = Script::new(ModelName::Notes);
    duplicated.call(0, 0, "create", json!({"body": {"a": 1}})).call(1, 1, "create", json!({"body": {"b": 1}}));
    duplicated.ok(1, 1, json!({"id": 1})).ok(0, 0, json!({"id": 1}));
    assert!(!is_linearizable(&duplicated));
}

/// The id counter couples notes: create 0 (id 1) must come before create 1 (id 2),
/// which returned before the get of note 1 was called, so that get cannot miss note 1.
/// Split naively per note id, each note alone would look fine.
#[test]
fn overlapping_creates_are_checked_together_with_their_notes() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"a": 1}}));
    script.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 2, "version": 1}));
    script.call(2, 1, "get", json!({"id": 1})).ok(2, 1, json!({"error": {"code": "not_found"}}));
    script.ok(0, 0, json!({"id": 1, "version": 1}));
    assert!(!is_linearizable(&script));

    let mut fine = Script::new(ModelName::Notes);
    fine.call(0, 0, "create", json!({"body": {"a": 1}}));
    fine.call(2, 1, "get", json!({"id": 1})).ok(2, 1, json!({"error": {"code": "not_found"}}));
    fine.call(1, 1, "create", json!({"body": {"b": 1}})).ok(1, 1, json!({"id": 2, "version": 1}));
    fine.ok(0, 0, json!({"id": 1, "version": 1}));
    assert!(is_linearizable(&fine));
}

#[test]
fn a_list_reads_every_note_at_one_instant() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 0, "create", json!({"body": {"b": 1}})).ok(1, 0, json!({"id": 2, "version": 1}));
    script.call(2, 0, "put", json!({"id": 1, "body": {"a": 2}}));
    script.call(3, 1, "list", json!({}));
    script.ok(2, 0, json!({"version": 2}));
    script.call(4, 0, "delete", json!({"id": 2, "if_match": 1}));
    let both_old =
        json!({"notes": [{"id": 1, "version": 1, "note": {"a": 1}}, {"id": 2, "version": 1, "note": {"b": 1}}]});
    let torn = json!({"notes": [{"id": 1, "version": 1, "note": {"a": 1}}]});
    let mut consistent = Script { history: script.history.clone(), time: script.time };
    consistent.ok(3, 1, both_old).ok(4, 0, json!({}));
    assert!(is_linearizable(&consistent));
    // Note 2 is gone but note 1 has not been replaced yet: the put returned before the delete was called.
    let mut stale = Script { history: script.history.clone(), time: script.time };
    stale.ok(3, 1, torn).ok(4, 0, json!({}));
    assert!(!is_linearizable(&stale));
}

#[test]
fn a_stale_read_is_not_linearizable() {
    let mut register = Script::new(ModelName::CasRegister);
    register.call(0, 0, "write", json!({"value": 1})).ok(0, 0, Value::Null);
    register.call(1, 1, "cas", json!({"from": 1, "to": 2})).ok(1, 1, json!({"ok": true}));
    register.call(2, 0, "read", Value::Null).ok(2, 0, json!({"value": 1}));
    assert!(!is_linearizable(&register));

    let mut notes = Script::new(ModelName::Notes);
    notes.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
    notes.call(1, 0, "patch", json!({"id": 1, "patch": {"a": null, "b": 2}})).ok(1, 0, json!({"version": 2}));
    notes.call(2, 1, "get", json!({"id": 1})).ok(2, 1, json!({"note": {"a": 1}, "version": 1}));
    assert!(!is_linearizable(&notes));
}

/// A read showing a body that only a write of unknown outcome could give proves the write took
/// effect before the read returned; a patch that can merge into that body leaves it unproved.
#[test]
fn a_write_of_unknown_outcome_is_bound_only_when_nothing_else_gives_the_body_read() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": 2}}));
    script.call(2, 0, "patch", json!({"id": 1, "patch": {"v": 2}})).ok(2, 0, json!({"version": 2}));
    script.call(3, 0, "get", json!({"id": 1})).ok(3, 0, json!({"note": {"v": 2}, "version": 2}));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": 2}, "version": 2}));
    assert!(is_linearizable(&script), "the patch gave the body; the put never took effect");

    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": 2}}));
    script.call(2, 0, "patch", json!({"id": 1, "patch": {"w": 2}})).ok(2, 0, json!({"version": 2}));
    script.call(3, 0, "get", json!({"id": 1})).ok(3, 0, json!({"note": {"v": 2}, "version": 3}));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": 2}, "version": 3}));
    assert!(is_linearizable(&script), "the put took effect after the patch, before the first get");
    script.call(5, 0, "put", json!({"id": 1, "body": {"v": 3}})).ok(5, 0, json!({"version": 4}));
    script.call(6, 0, "get", json!({"id": 1})).ok(6, 0, json!({"note": {"v": 2}, "version": 5}));
    assert!(!is_linearizable(&script), "the put took effect once, before the first get");
}

/// A list shows whether a note after its page exists when its page says `more`, and every
/// note after `after` when its page was not cut: a delete of unknown outcome that such a list
/// needs must be allowed to take effect before it.
#[test]
fn a_list_observes_deletes_beyond_its_page_only_through_more() {
    for (input, output) in [
        (json!({"limit": 1}), json!({"notes": [{"id": 1, "version": 1}], "more": false})),
        (json!({}), json!({"notes": [{"id": 1, "version": 1}]})),
    ] {
        let mut script = Script::new(ModelName::Notes);
        script.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
        script.call(1, 0, "create", json!({"body": {"a": 2}})).ok(1, 0, json!({"id": 2, "version": 1}));
        script.call(2, 1, "delete", json!({"id": 2}));
        script.call(3, 0, "list", input.clone()).ok(3, 0, output.clone());
        assert!(is_linearizable(&script), "{input}: the delete took effect before the list");
        let mut without_delete = Script::new(ModelName::Notes);
        without_delete.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
        without_delete.call(1, 0, "create", json!({"body": {"a": 2}})).ok(1, 0, json!({"id": 2, "version": 1}));
        without_delete.call(3, 0, "list", input.clone()).ok(3, 0, output);
        assert!(!is_linearizable(&without_delete), "{input}: note 2 exists");
    }
}

#[test]
fn preconditions_and_missing_notes_answer_as_the_format_says() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "delete", json!({"id": 1, "if_match": 4})).ok(0, 0, json!({"error": "not_found"}));
    script.call(1, 0, "create", json!({"body": {"a": 1}})).ok(1, 0, json!({"id": 1, "version": 1}));
    script.call(2, 0, "patch", json!({"id": 1, "patch": {"b": 1}, "if_match": 2}));
    script.ok(2, 0, json!({"error": {"code": "precondition_failed", "message": "version is 1"}}));
    script.call(3, 0, "patch", json!({"id": 1, "patch": {"b": 1}, "if_match": 1}));
    script.ok(3, 0, json!({"version": 2, "note": {"a": 1, "b": 1}}));
    assert!(is_linearizable(&script));
    script.call(4, 0, "put", json!({"id": 1, "body": {"c": 1}, "if_match": 1})).ok(4, 0, json!({"version": 3}));
    assert!(!is_linearizable(&script), "the note is at version 2");
}

#[test]
fn a_small_budget_gives_unknown() {
    let history =
        History::parse_jsonl(&std::fs::read_to_string(data_path("jepsen-etcd/etcd_002.jsonl")).expect("sample file"))
            .expect("valid");
    let verdict = check_with(&history, &CheckOptions::steps(10)).expect("valid");
    assert_eq!(verdict, Verdict::Unknown { steps: 10, limit: crate::checker::Exhaustion::Steps });
}

#[test]
fn bad_operations_are_errors_naming_the_line() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1}));
    script.call(1, 0, "get", json!({"id": "one"})).ok(1, 0, json!({}));
    match check(&script.history) {
        Err(CheckError::BadOperation { line, id, .. }) => assert_eq!((line, id), (4, 1)),
        other => panic!("{other:?}"),
    }
    let mut register = Script::new(ModelName::CasRegister);
    register.call(0, 0, "increment", json!({}));
    assert!(matches!(check(&register.history), Err(CheckError::BadOperation { line: 2, .. })));
}

#[test]
fn merge_patch_follows_rfc_7396_examples() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
        (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
    ];
    for (target, patch, expected) in cases {
        assert_eq!(notes::merge_patch(&target, &patch), expected, "{target} + {patch}");
    }
}

// ---------------------------------------------------------------------------
// Comparison with a brute-force checker on small random histories.
//
// Histories are simulated: operations get random intervals per client and, when
// they take effect, a random point inside the interval (or anywhere after the call,
// for an unknown outcome); a reference model, written independently of the checker's
// models, runs them in point order and gives the outputs. Half are then corrupted.

mod brute_force {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::{Value, json};

    use crate::history::{Event, Header, History, ModelName, Operation, Outcome};

    /// The reference state of either model.
    #[derive(Debug, Clone, Default)]
    pub(super) struct ReferenceState {
        register: Value,
        last_id: u64,
        notes: BTreeMap<u64, (Value, u64)>,
    }

    fn not_found() -> Value {
        json!({"error": {"code": "not_found"}})
    }

    /// Applies one operation and gives its full output (`Value::Null` for a register write).
    pub(super) fn reference_apply(state: &mut ReferenceState, function: &str, input: &Value) -> Value {
        let id = input["id"].as_u64().unwrap_or(0);
        let if_match = input["if_match"].as_u64();
        let precondition = |state: &ReferenceState| -> Result<(), Value> {
            match state.notes.get(&id) {
                None => Err(not_found()),
                Some((_, version)) if if_match.is_some_and(|expected| expected != *version) => {
                    Err(json!({"error": {"code": "precondition_failed"}}))
                }
                Some(_) => Ok(()),
            }
        };
        match function {
            "read" => json!({"value": state.register}),
            "write" => {
                state.register = input["value"].clone();
                Value::Null
            }
            "cas" => {
                let succeeded = state.register == input["from"];
                if succeeded {
                    state.register = input["to"].clone();
                }
                json!({"ok": succeeded})
            }
            "create" => {
                state.last_id += 1;
                state.notes.insert(state.last_id, (input["body"].clone(), 1));
                json!({"id": state.last_id, "version": 1})
            }
            "get" => match state.notes.get(&id) {
                Some((note, version)) => json!({"note": note, "version": version}),
                None => not_found(),
            },
            "list" => {
                let after = input["after"].as_u64().unwrap_or(0);
                let limit = input["limit"].as_u64().unwrap_or(u64::MAX) as usize;
                let following: Vec<Value> = state
                    .notes
                    .iter()
                    .filter(|(note_id, _)| **note_id > after)
                    .map(|(note_id, (note, version))| json!({"id": note_id, "version": version, "note": note}))
                    .collect();
                let mut notes: Vec<Value> = following.iter().take(limit).cloned().collect();
                // `page` (which the checker ignores) says how the page ends: as a server that says
                // whether more notes follow, or one that stops after one note when more follow.
                match input["page"].as_str() {
                    Some("more") => json!({ "notes": notes, "more": following.len() > notes.len() }),
                    Some("short") if following.len() >= 2 => {
                        notes.truncate(1);
                        json!({ "notes": notes, "more": true })
                    }
                    Some("short") => json!({ "notes": notes, "more": false }),
                    _ => json!({ "notes": notes }),
                }
            }
            "put" | "patch" => {
                if let Err(error) = precondition(state) {
                    return error;
                }
                let (note, version) = state.notes.get_mut(&id).expect("checked above");
                if function == "put" {
                    *note = input["body"].clone();
                } else {
                    // Top-level merge only: the generated patches are flat.
                    for (key, value) in input["patch"].as_object().expect("patches are objects") {
                        let fields = note.as_object_mut().expect("notes are objects");
                        if value.is_null() {
                            fields.remove(key);
                        } else {
                            fields.insert(key.clone(), value.clone());
                        }
                    }
                }
                *version += 1;
                json!({"version": *version})
            }
            "delete" => {
                if let Err(error) = precondition(state) {
                    return error;
                }
                state.notes.remove(&id);
                json!({})
            }
            other => panic!("no function {other}"),
        }
    }

    /// Whether some order of the operations (every `ok` one, any subset of the unknown ones)
    /// respects real time and gives every observed output.
    pub(super) fn is_linearizable(operations: &[Operation], initial: &ReferenceState) -> bool {
        let candidates: Vec<&Operation> =
            operations.iter().filter(|operation| operation.outcome != Outcome::Failed).collect();
        let required: u64 = candidates
            .iter()
            .enumerate()
            .filter(|(_, operation)| matches!(operation.outcome, Outcome::Ok(_)))
            .fold(0, |mask, (index, _)| mask | 1 << index);
        search(&candidates, required, 0, initial)
    }

    /// Whether a page that says `more` is one the format allows: the first notes after `after`
    /// (at most `limit`), all of them when it says `more: false`, and at least one but not all
    /// of them when it says `more: true`.
    fn page_matches(state: &ReferenceState, input: &Value, observed: &Value) -> bool {
        let after = input["after"].as_u64().unwrap_or(0);
        let limit = input["limit"].as_u64().unwrap_or(u64::MAX) as usize;
        let following: Vec<Value> = state
            .notes
            .iter()
            .filter(|(note_id, _)| **note_id > after)
            .map(|(note_id, (note, version))| json!({"id": note_id, "version": version, "note": note}))
            .collect();
        let (Some(Value::Array(shown)), Some(Value::Bool(more))) = (observed.get("notes"), observed.get("more")) else {
            return false;
        };
        let fields_known =
            observed.as_object().is_some_and(|fields| fields.keys().all(|key| key == "notes" || key == "more"));
        let count_allowed =
            if *more { !shown.is_empty() && shown.len() < following.len() } else { shown.len() == following.len() };
        fields_known && count_allowed && shown.len() <= limit && following.starts_with(shown)
    }

    fn search(candidates: &[&Operation], required: u64, done: u64, state: &ReferenceState) -> bool {
        if required & !done == 0 {
            return true;
        }
        for (index, operation) in candidates.iter().enumerate() {
            if done & (1 << index) != 0 {
                continue;
            }
            let blocked = candidates
                .iter()
                .enumerate()
                .any(|(other_index, other)| required & !done & (1 << other_index) != 0 && other.precedes(operation));
            if blocked {
                continue;
            }
            let mut next = state.clone();
            let output = reference_apply(&mut next, &operation.function, &operation.input);
            let observed_matches = match &operation.outcome {
                Outcome::Ok(Value::Null) | Outcome::Unknown | Outcome::Failed => true,
                Outcome::Ok(observed) if operation.function == "list" && observed.get("more").is_some() => {
                    page_matches(state, &operation.input, observed)
                }
                // A field the completion leaves out is not checked (the format says so), but
                // the absence of `error` means success.
                Outcome::Ok(Value::Object(observed)) => {
                    observed.contains_key("error") == output.get("error").is_some()
                        && observed.iter().all(|(field, value)| output.get(field) == Some(value))
                }
                Outcome::Ok(observed) => *observed == output,
            };
            if observed_matches && search(candidates, required, done | (1 << index), &next) {
                return true;
            }
        }
        false
    }

    fn random_call(
        rng: &mut ChaCha8Rng,
        pages: &mut ChaCha8Rng,
        model: ModelName,
        with_lists: bool,
        mix: Mix,
    ) -> (&'static str, Value) {
        let small = |rng: &mut ChaCha8Rng| rng.random_range(0..3u64);
        match model {
            ModelName::CasRegister => match rng.random_range(0..10) {
                0..4 => ("read", Value::Null),
                4..7 => ("write", json!({"value": small(rng)})),
                _ => (
                    "cas",
                    json!({"from": if rng.random_bool(0.2) { Value::Null } else { json!(small(rng)) }, "to": small(rng)}),
                ),
            },
            ModelName::Notes => {
                let many_creates = matches!(mix, Mix::UnknownCreates | Mix::CreatesAndPages);
                if many_creates && rng.random_bool(0.4) {
                    return ("create", json!({"body": {"v": small(rng)}}));
                }
                if mix == Mix::Unseen {
                    let id = rng.random_range(1..4u64);
                    let if_match = rng.random_bool(0.2).then(|| rng.random_range(1..4u64));
                    let mut call = match rng.random_range(0..10) {
                        0..3 => ("create", json!({"body": {"v": small(rng)}})),
                        3..5 => ("put", json!({"id": id, "body": {"v": small(rng)}})),
                        5..7 => ("patch", json!({"id": id, "patch": {"w": small(rng)}})),
                        7..8 => ("delete", json!({"id": id})),
                        _ => ("get", json!({"id": id})),
                    };
                    if let (Some(expected), "put" | "patch" | "delete") = (if_match, call.0) {
                        call.1["if_match"] = json!(expected);
                    }
                    return call;
                }
                if mix == Mix::UnknownWrites {
                    // Few notes, written often and deleted, and lists that show them all or stop
                    // after the first.
                    let id = rng.random_range(1..3u64);
                    return match rng.random_range(0..11) {
                        0..3 => ("create", json!({"body": {"v": small(rng)}})),
                        3..6 => ("put", json!({"id": id, "body": {"v": small(rng)}})),
                        // A patch of `v` can give a note the very body a put gives it.
                        6..7 => {
                            let field = if rng.random_bool(0.5) { "v" } else { "w" };
                            ("patch", json!({"id": id, "patch": {field: small(rng)}}))
                        }
                        7..8 => ("delete", json!({"id": id})),
                        8..10 => ("list", random_page(pages, json!({}))),
                        _ => ("get", json!({"id": id})),
                    };
                }
                let id = rng.random_range(1..if many_creates { 6 } else { 4u64 });
                let if_match = rng.random_bool(0.3).then(|| rng.random_range(1..4u64));
                let mut call = match rng.random_range(0..if with_lists { 20 } else { 17 }) {
                    0..5 => ("create", json!({"body": {"v": small(rng)}})),
                    5..9 => ("get", json!({"id": id})),
                    9..12 => ("put", json!({"id": id, "body": {"v": small(rng)}})),
                    12..15 => (
                        "patch",
                        json!({"id": id, "patch": {"v": if rng.random_bool(0.3) { Value::Null } else { json!(small(rng)) }, "w": small(rng)}}),
                    ),
                    15..17 => ("delete", json!({"id": id})),
                    _ => {
                        let mut input = json!({});
                        if rng.random_bool(0.5) {
                            input["after"] = json!(rng.random_range(0..3u64));
                        }
                        if rng.random_bool(0.5) {
                            input["limit"] = json!(rng.random_range(1..3u64));
                        }
                        ("list", random_page(pages, input))
                    }
                };
                if let (Some(expected), "put" | "patch" | "delete") = (if_match, call.0) {
                    call.1["if_match"] = json!(expected);
                }
                call
            }
        }
    }

    /// A list's input with how its page ends (see `reference_apply`).
    fn random_page(rng: &mut ChaCha8Rng, mut input: Value) -> Value {
        match rng.random_range(0..3) {
            0 => {}
            1 => input["page"] = json!("more"),
            _ => input["page"] = json!("short"),
        }
        input
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Ending {
        Ok,
        Fail,
        Info,
        Pending,
    }

    /// What a generated history is made of.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Mix {
        /// All functions, a few unknown outcomes.
        Everything,
        /// Many creates and many unknown outcomes: ids that only a create with an unknown
        /// outcome can have made, and creates that may or may not have taken effect.
        UnknownCreates,
        /// Many unknown outcomes of writes and deletes of several notes, and lists that show
        /// them.
        UnknownWrites,
        /// Many creates and many unknown outcomes, as `UnknownCreates`, and lists with pages
        /// that end at their limit or say whether more notes follow.
        CreatesAndPages,
        /// Many unknown outcomes of creates and writes, no list, and reads that report
        /// versions but no bodies: creates and writes that nothing tells apart.
        Unseen,
    }

    /// A valid history of `model`, simulated from `seed`.
    pub(super) fn generate(seed: u64, model: ModelName) -> (History, ReferenceState) {
        generate_mix(seed, model, Mix::Everything)
    }

    pub(super) fn generate_mix(seed: u64, model: ModelName, mix: Mix) -> (History, ReferenceState) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // How pages end is drawn apart, so that the rest of a seed's history stays as it was.
        let mut pages = ChaCha8Rng::seed_from_u64(seed ^ 0x7061_6765_7361_7061);
        let client_count = rng.random_range(1..4u64);
        let operation_count = rng.random_range(if mix == Mix::Everything { 1..8usize } else { 3..10usize });
        let with_lists = rng.random_bool(match mix {
            Mix::Everything => 0.5,
            Mix::UnknownCreates => 0.1,
            Mix::CreatesAndPages => 1.0,
            Mix::UnknownWrites => 0.8,
            Mix::Unseen => 0.0,
        });
        let mut initial = ReferenceState::default();
        let mut header = Header::new(model);
        if model == ModelName::CasRegister && rng.random_bool(0.3) {
            initial.register = json!(rng.random_range(0..3u64));
            header.init = Some(initial.register.clone());
        }
        let mut next_call_time: BTreeMap<u64, u64> = (0..client_count).map(|client| (client, 0)).collect();
        // (id, client, function, input, call time, end time, ending, effect point)
        let mut planned = Vec::new();
        for id in 0..operation_count as u64 {
            let clients: Vec<u64> = next_call_time.keys().copied().collect();
            let Some(&client) = clients.get(rng.random_range(0..clients.len().max(1))) else { break };
            let call_time = next_call_time[&client] + rng.random_range(0..3);
            let end_time = call_time + rng.random_range(0..5);
            // Out of 20: ok, failed, unknown, the rest left pending.
            let (ok, failed, unknown) = if mix == Mix::Everything { (15, 2, 2) } else { (12, 1, 5) };
            let ending = match rng.random_range(0..20) {
                roll if roll < ok => Ending::Ok,
                roll if roll < ok + failed => Ending::Fail,
                roll if roll < ok + failed + unknown => Ending::Info,
                _ => Ending::Pending,
            };
            // Points are in tenths of a time unit; the operation index breaks ties.
            let effect_point = match ending {
                Ending::Ok => Some(rng.random_range(call_time * 10..=end_time * 10)),
                Ending::Fail => None,
                Ending::Info | Ending::Pending => {
                    rng.random_bool(0.5).then(|| rng.random_range(call_time * 10..=(call_time + 8) * 10))
                }
            };
            if ending == Ending::Pending {
                next_call_time.remove(&client);
            } else {
                next_call_time.insert(client, end_time + 1);
            }
            let (function, input) = random_call(&mut rng, &mut pages, model, with_lists, mix);
            planned.push((id, client, function, input, call_time, end_time, ending, effect_point));
        }
        let mut effect_order: Vec<(u64, usize)> = planned
            .iter()
            .enumerate()
            .filter_map(|(index, operation)| operation.7.map(|point| (point, index)))
            .collect();
        effect_order.sort();
        let mut state = initial.clone();
        let mut outputs: BTreeMap<usize, Value> = BTreeMap::new();
        for (_, index) in effect_order {
            let (_, _, function, input, ..) = &planned[index];
            outputs.insert(index, reference_apply(&mut state, function, input));
        }
        // (time, completions after calls, index, event)
        let mut events: Vec<(u64, u8, usize, Event)> = Vec::new();
        for (index, (id, client, function, input, call_time, end_time, ending, _)) in planned.iter().enumerate() {
            let input = (!input.is_null()).then(|| input.clone());
            events.push((*call_time, 0, index, Event::call(*id, *client, function, input).at(*call_time)));
            let completion = match ending {
                Ending::Ok => {
                    let mut output = outputs.get(&index).cloned().filter(|output| !output.is_null());
                    if mix == Mix::Unseen
                        && let Some(Value::Object(fields)) = &mut output
                    {
                        fields.remove("note");
                    }
                    Event::ok(*id, *client, output)
                }
                Ending::Fail => Event::fail(*id, *client),
                Ending::Info => Event::info(*id, *client),
                Ending::Pending => continue,
            };
            events.push((*end_time, 1, index, completion.at(*end_time)));
        }
        events.sort_by_key(|(time, kind, index, _)| (*time, *kind, *index));
        let history = History { header, events: events.into_iter().map(|(.., event)| event).collect() };
        (history, initial)
    }

    fn corrupt_value(rng: &mut ChaCha8Rng, value: &mut Value) -> bool {
        let leaf_count = count_leaves(value);
        leaf_count > 0 && change_leaf(value, rng.random_range(0..leaf_count), &mut 0)
    }

    fn count_leaves(value: &Value) -> usize {
        match value {
            Value::Object(fields) => fields.values().map(count_leaves).sum(),
            Value::Array(items) => items.iter().map(count_leaves).sum(),
            _ => 1,
        }
    }

    /// Changes the `index`-th leaf (in walk order) to a different value.
    fn change_leaf(value: &mut Value, index: usize, seen: &mut usize) -> bool {
        match value {
            Value::Object(fields) => fields.values_mut().any(|field| change_leaf(field, index, seen)),
            Value::Array(items) => items.iter_mut().any(|item| change_leaf(item, index, seen)),
            leaf => {
                *seen += 1;
                if *seen - 1 != index {
                    return false;
                }
                *leaf = match leaf {
                    Value::Number(number) => match number.as_u64() {
                        Some(0) | None => json!(1),
                        Some(n) => json!(n - 1),
                    },
                    Value::Bool(flag) => json!(!*flag),
                    Value::String(code) if code == "not_found" => json!("precondition_failed"),
                    Value::String(_) => json!("not_found"),
                    _ => json!(0),
                };
                true
            }
        }
    }

    /// Changes one completed operation: a different output, or `fail` instead of `ok`.
    pub(super) fn corrupt(history: &mut History, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let completed: Vec<usize> = (0..history.events.len())
            .filter(|&index| history.events[index].kind == crate::history::EventKind::Ok)
            .collect();
        if completed.is_empty() {
            return;
        }
        let event = &mut history.events[completed[rng.random_range(0..completed.len())]];
        if rng.random_bool(0.2) {
            // A `fail` claims no effect, which may contradict what others observed.
            event.kind = crate::history::EventKind::Fail;
            event.output = None;
            return;
        }
        match event.output.as_mut() {
            Some(output) => {
                if !corrupt_value(&mut rng, output) {
                    *output = json!({"error": {"code": "not_found"}});
                }
            }
            // A write's output carries nothing to change: say it failed instead.
            None => event.kind = crate::history::EventKind::Fail,
        }
    }
}

fn compare_with_brute_force(seed: u64, model: ModelName, corrupted: bool) {
    compare_mix_with_brute_force(seed, model, brute_force::Mix::Everything, corrupted);
}

fn compare_mix_with_brute_force(seed: u64, model: ModelName, mix: brute_force::Mix, corrupted: bool) {
    let (mut history, initial) = brute_force::generate_mix(seed, model, mix);
    if corrupted {
        brute_force::corrupt(&mut history, seed);
    }
    let operations = history.operations().expect("generated histories are well formed");
    let expected = brute_force::is_linearizable(&operations, &initial);
    let verdict = check(&history).unwrap_or_else(|error| panic!("{error}\n{}", history.to_jsonl()));
    let found = match verdict {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(_) => false,
        Verdict::Unknown { steps, .. } => panic!("gave up after {steps} steps on\n{}", history.to_jsonl()),
    };
    assert_eq!(found, expected, "seed {seed}, corrupted {corrupted}:\n{}", history.to_jsonl());
    if !corrupted {
        assert!(expected, "a simulated history is linearizable: seed {seed}\n{}", history.to_jsonl());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 5000, ..Default::default() })]

    #[test]
    fn register_verdicts_agree_with_brute_force(seed: u64) {
        compare_with_brute_force(seed, ModelName::CasRegister, false);
        compare_with_brute_force(seed, ModelName::CasRegister, true);
    }

    #[test]
    fn notes_verdicts_agree_with_brute_force(seed: u64) {
        compare_with_brute_force(seed, ModelName::Notes, false);
        compare_with_brute_force(seed, ModelName::Notes, true);
    }

    #[test]
    fn notes_verdicts_with_unknown_writes_and_lists_agree_with_brute_force(seed: u64) {
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::UnknownWrites, false);
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::UnknownWrites, true);
    }

    #[test]
    fn notes_verdicts_with_writes_nothing_tells_apart_agree_with_brute_force(seed: u64) {
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::Unseen, false);
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::Unseen, true);
    }

    #[test]
    fn notes_verdicts_with_unknown_creates_agree_with_brute_force(seed: u64) {
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::UnknownCreates, false);
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::UnknownCreates, true);
    }

    #[test]
    fn notes_verdicts_with_unknown_creates_and_short_pages_agree_with_brute_force(seed: u64) {
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::CreatesAndPages, false);
        compare_mix_with_brute_force(seed, ModelName::Notes, brute_force::Mix::CreatesAndPages, true);
    }
}

/// Guards the comparison above against a generator that only makes easy cases.
#[test]
fn random_histories_cover_both_verdicts_and_both_notes_strategies() {
    let mut illegal_by_model: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut partitioned, mut whole, mut refuted_by_creates, mut refuted_by_note) = (0, 0, 0, 0);
    let seeds = 0..600u64;
    for seed in seeds.clone() {
        for (name, model) in [("register", ModelName::CasRegister), ("notes", ModelName::Notes)] {
            let (mut history, initial) = brute_force::generate(seed, model);
            brute_force::corrupt(&mut history, seed);
            let operations = history.operations().expect("well formed");
            if !brute_force::is_linearizable(&operations, &initial) {
                *illegal_by_model.entry(name).or_default() += 1;
            }
            if model == ModelName::Notes {
                let (mut prepared, scopes) = notes::prepare(&operations).expect("valid operations");
                let mut budget = search::Budget {
                    steps_left: STEP_BUDGET_DEFAULT,
                    deadline: None,
                    max_states: None,
                    peak_states: 0,
                    exhausted: None,
                };
                if projection::refute_by_note(&mut prepared.model, &prepared.operations, &scopes, &mut budget).is_some()
                {
                    refuted_by_note += 1;
                }
                match notes::plan(&prepared.operations, &scopes) {
                    notes::NotesPlan::Whole => whole += 1,
                    notes::NotesPlan::Partitions(_) => partitioned += 1,
                    notes::NotesPlan::Refuted { .. } => refuted_by_creates += 1,
                }
            }
        }
    }
    let seed_count = seeds.count();
    for name in ["register", "notes"] {
        let illegal = illegal_by_model.get(name).copied().unwrap_or(0);
        assert!(illegal * 5 > seed_count && illegal * 5 < seed_count * 4, "{name}: {illegal} of {seed_count} illegal");
    }
    assert!(partitioned * 5 > seed_count && whole * 5 > seed_count, "partitioned {partitioned}, whole {whole}");
    assert!(refuted_by_creates > 0, "no history was refuted by its creates alone");
    assert!(
        refuted_by_note * 10 > seed_count,
        "{refuted_by_note} of {seed_count} histories refuted one note at a time"
    );
}

#[test]
fn check_file_picks_the_reader_by_extension_and_counts_operations() {
    let from_log = verdict_of_file("jepsen-etcd/etcd_000.log");
    let from_jsonl = verdict_of_file("jepsen-etcd/etcd_000.jsonl");
    assert_eq!((from_log.model, from_log.operation_count, from_log.expect), (ModelName::CasRegister, 85, None));
    assert_eq!(from_jsonl.operation_count, 85);
    assert_eq!(from_jsonl.expect, Some(Expectation::Illegal));
    assert!(matches!(check_file(&data_path("no-such-file.jsonl")), Err(CheckFileError::Io { .. })));
}

#[test]
fn closed_groups_are_split_from_the_open_group_of_an_unknown_create() {
    let build = |ghost_body: Value| {
        let mut script = Script::new(ModelName::Notes);
        script.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
        script.call(1, 0, "create", json!({"body": {"b": 1}})).ok(1, 0, json!({"id": 2, "version": 1}));
        script.call(2, 1, "create", json!({"body": {"u": 1}})).info(2, 1);
        script.call(3, 0, "create", json!({"body": {"c": 1}})).ok(3, 0, json!({"id": 4, "version": 1}));
        script.call(4, 0, "get", json!({"id": 3})).ok(4, 0, json!({"note": ghost_body, "version": 1}));
        script.call(5, 0, "get", json!({"id": 1})).ok(5, 0, json!({"note": {"a": 1}, "version": 1}));
        script
    };
    let script = build(json!({"u": 1}));
    let operations = script.history.operations().expect("well formed");
    let (prepared, scopes) = notes::prepare(&operations).expect("valid");
    let notes::NotesPlan::Partitions(partitions) = notes::plan(&prepared.operations, &scopes) else {
        panic!("expected partitions");
    };
    let shapes: Vec<(notes::IdAssignment, usize)> =
        partitions.into_iter().map(|partition| (partition.ids, partition.operation_indices.len())).collect();
    assert_eq!(
        shapes,
        vec![
            (notes::IdAssignment::Sequence(vec![1]), 2),
            (notes::IdAssignment::Sequence(vec![2]), 1),
            // Id 3 is no known create's, and only create 2 was called before id 4 returned.
            (notes::IdAssignment::Sequence(vec![3, 4]), 3),
        ]
    );
    assert!(is_linearizable(&script));
    assert!(!is_linearizable(&build(json!({"c": 1}))), "note 3 can only be the unknown create's");
}

/// Guards the comparison with unknown creates against a generator that never makes the cases the
/// plan treats apart: an id only a create with an unknown outcome can have made, and closed groups
/// of creates whose ids are known after the call of a create whose id is unknown.
#[test]
fn random_histories_with_unknown_creates_bind_ids_and_close_later_groups() {
    let (mut bound, mut after_unknown, mut illegal) = (0, 0, 0);
    let seeds = 0..600u64;
    for seed in seeds.clone() {
        let (mut history, initial) =
            brute_force::generate_mix(seed, ModelName::Notes, brute_force::Mix::UnknownCreates);
        brute_force::corrupt(&mut history, seed);
        let operations = history.operations().expect("well formed");
        if !brute_force::is_linearizable(&operations, &initial) {
            illegal += 1;
        }
        let unknown_ids: Vec<u64> = operations
            .iter()
            .filter(|operation| matches!(operation.outcome, crate::history::Outcome::Unknown))
            .map(|operation| operation.id)
            .collect();
        let (prepared, scopes) = notes::prepare(&operations).expect("valid operations");
        bound += prepared
            .operations
            .iter()
            .zip(&scopes)
            .filter(|(operation, scope)| {
                unknown_ids.contains(&operation.id) && matches!(scope, notes::Scope::Create { known_id: Some(_) })
            })
            .count();
        // A create of a closed group returned after a create whose id is unknown was called.
        if let notes::NotesPlan::Partitions(partitions) = notes::plan(&prepared.operations, &scopes) {
            let first_unknown_create_call = prepared
                .operations
                .iter()
                .zip(&scopes)
                .filter(|(_, scope)| matches!(scope, notes::Scope::Create { known_id: None }))
                .map(|(operation, _)| operation.call_position)
                .min();
            let closed_create_returns = partitions
                .iter()
                .filter(|partition| matches!(partition.ids, notes::IdAssignment::Sequence(_)))
                .flat_map(|partition| &partition.operation_indices)
                .filter(|&&index| matches!(scopes[index], notes::Scope::Create { .. }))
                .filter_map(|&index| prepared.operations[index].return_position);
            if closed_create_returns.max().zip(first_unknown_create_call).is_some_and(|(last, first)| last > first) {
                after_unknown += 1;
            }
        }
    }
    assert!(bound > 30, "{bound} unknown creates given their ids");
    assert!(after_unknown > 30, "{after_unknown} histories with closed groups after an unknown create's call");
    assert!(illegal > 60 && illegal < 540, "{illegal} of 600 illegal");
}

/// Histories no one here wrote by hand, of the size users check: 10 clients, 1,000
/// operations, 2% unknown outcomes, 5% lists; each decided, and a planted stale read
/// reported with a handful of operations that include it.
#[test]
fn generated_histories_of_ten_clients_and_a_thousand_operations_are_decided() {
    use crate::gen_history::{GenOptions, Plant, generate_with_report};
    for seed in 0..6u64 {
        let options = GenOptions::new(seed, 10, 1_000);
        assert_eq!((options.unknown_share, options.list_share), (0.02, 0.05));
        let linearizable = generate_with_report(&options).history;
        assert_eq!(check(&linearizable).expect("well formed"), Verdict::Linearizable, "seed {seed}");
        let planted = generate_with_report(&GenOptions { plant: Some(Plant::StaleRead), ..options });
        let read = planted.planted.expect("a read to plant in");
        match check(&planted.history).expect("well formed") {
            Verdict::NotLinearizable(counterexample) => {
                let failing = &counterexample.operation_ids;
                assert!(failing.contains(&read.operation), "seed {seed}: {failing:?} lacks read {}", read.operation);
                assert!(failing.len() <= 20, "seed {seed}: {} operations named", failing.len());
            }
            verdict => panic!("seed {seed}: the planted stale read {} gave {verdict:?}", read.operation),
        }
    }
}

/// Two unknown writes of different notes that one list shows both took effect: neither can
/// sit right before the list alone, so the search must let one unknown outcome follow
/// another (the first version of the rule that an unknown outcome is followed by an
/// operation that conflicts with it refuted this linearizable history).
#[test]
fn two_unknown_writes_that_one_list_shows_may_both_precede_it() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"a": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 0, "create", json!({"body": {"b": 0}})).ok(1, 0, json!({"id": 2, "version": 1}));
    script.call(2, 1, "put", json!({"id": 1, "body": {"a": 1}})).info(2, 1);
    script.call(3, 2, "put", json!({"id": 2, "body": {"b": 1}})).info(3, 2);
    script.call(4, 0, "list", json!({})).ok(
        4,
        0,
        json!({"notes": [{"id": 1, "version": 2, "note": {"a": 1}}, {"id": 2, "version": 2, "note": {"b": 1}}]}),
    );
    assert!(is_linearizable(&script));
    script.call(5, 0, "get", json!({"id": 1})).ok(5, 0, json!({"note": {"a": 0}, "version": 1}));
    assert!(!is_linearizable(&script), "the list showed the write of note 1 done");
}

/// Two unknown writes of one note are told apart by a later read of its body, so the memo
/// must not treat them as interchangeable: the read shows the one called first, written
/// last.
#[test]
fn unknown_writes_whose_bodies_a_read_shows_are_not_interchangeable() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": "b"}}));
    script.call(2, 2, "put", json!({"id": 1, "body": {"v": "a"}}));
    script.info(1, 1).info(2, 2);
    script.call(3, 0, "put", json!({"id": 1, "body": {"v": "c"}})).ok(3, 0, json!({"version": 3}));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": "b"}, "version": 4}));
    assert!(is_linearizable(&script), "a, then c, then b");
}

/// Unknown writes of one note with different preconditions are not interchangeable, even
/// when nothing shows the note's body: only the conditional one could have come first here.
#[test]
fn unknown_writes_with_different_preconditions_are_not_interchangeable() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": "p"}}));
    script.call(2, 2, "put", json!({"id": 1, "body": {"v": "q"}, "if_match": 1}));
    script.info(1, 1).info(2, 2);
    script.call(3, 0, "put", json!({"id": 1, "body": {"v": "c"}})).ok(3, 0, json!({"version": 3}));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"version": 4}));
    assert!(is_linearizable(&script), "q, then c, then p");
}

/// A write that makes a version no output reports is refused while an operation that shows
/// the note at some version is left, but not because of a list that shows the note gone:
/// here the unknown put made version 2, which the conditional delete then required.
#[test]
fn a_list_that_shows_a_note_gone_does_not_hold_back_the_write_before_its_delete() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": 1}})).info(1, 1);
    script.call(2, 0, "delete", json!({"id": 1, "if_match": 2})).ok(2, 0, json!({}));
    script.call(3, 0, "list", json!({})).ok(3, 0, json!({"notes": []}));
    assert!(is_linearizable(&script));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": 0}, "version": 1}));
    assert!(!is_linearizable(&script), "the note is gone");
}

/// Conversely, a read that shows the note at version 1 after the unknown write's call rules
/// out that write before it; the write may still come after.
#[test]
fn a_write_no_output_reports_comes_after_every_read_of_an_older_version() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": 1}})).info(1, 1);
    script.call(2, 0, "get", json!({"id": 1})).ok(2, 0, json!({"note": {"v": 0}, "version": 1}));
    script.call(3, 0, "list", json!({})).ok(3, 0, json!({"notes": [{"id": 1, "version": 1, "note": {"v": 0}}]}));
    assert!(is_linearizable(&script), "the put never happened, or after the list");
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": 1}, "version": 2}));
    assert!(is_linearizable(&script), "the put happened after the list");
}

/// A list that returned before a create was called cannot show the note that create made.
#[test]
fn a_list_cannot_show_a_note_before_its_create_was_called() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "list", json!({})).ok(0, 0, json!({"notes": [{"id": 1, "version": 1, "note": {"v": 0}}]}));
    script.call(1, 0, "create", json!({"body": {"v": 0}})).ok(1, 0, json!({"id": 1, "version": 1}));
    assert!(!is_linearizable(&script));
    let mut empty = Script::new(ModelName::Notes);
    empty.call(0, 0, "list", json!({})).ok(0, 0, json!({"notes": []}));
    empty.call(1, 0, "create", json!({"body": {"v": 0}})).ok(1, 0, json!({"id": 1, "version": 1}));
    assert!(is_linearizable(&empty));
}

/// Which unknown writes of a note are linearized is part of a memo entry while the note
/// exists: here the two puts leave the same state whichever comes first, but only the
/// conditional one first leaves the other free to make version 3.
#[test]
fn unknown_writes_of_a_note_that_exists_are_remembered_apart() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 1, "put", json!({"id": 1, "body": {"v": "a"}}));
    script.call(2, 2, "put", json!({"id": 1, "body": {"v": "a"}, "if_match": 1}));
    script.info(1, 1).info(2, 2);
    script.call(3, 0, "get", json!({"id": 1})).ok(3, 0, json!({"note": {"v": "a"}, "version": 2}));
    script.call(4, 0, "get", json!({"id": 1})).ok(4, 0, json!({"note": {"v": "a"}, "version": 3}));
    assert!(is_linearizable(&script), "the conditional put, the first get, the other put");
}

/// Once a note is deleted for good, which of its unknown writes were linearized no longer
/// matters; the verdicts stay those of the model.
#[test]
fn unknown_writes_of_a_deleted_note_change_no_verdict() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"v": 0}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 0, "create", json!({"body": {"v": 0}})).ok(1, 0, json!({"id": 2, "version": 1}));
    script.call(2, 1, "put", json!({"id": 1, "body": {"v": "a"}}));
    script.call(3, 2, "patch", json!({"id": 1, "patch": {"w": 1}}));
    script.call(4, 3, "delete", json!({"id": 1}));
    script.info(2, 1).info(3, 2).info(4, 3);
    script.call(5, 0, "get", json!({"id": 2})).ok(5, 0, json!({"note": {"v": 0}, "version": 1}));
    script.call(6, 0, "list", json!({})).ok(6, 0, json!({"notes": [{"id": 2, "version": 1, "note": {"v": 0}}]}));
    assert!(is_linearizable(&script), "the delete took effect before the list");
    script.call(7, 0, "get", json!({"id": 1})).ok(7, 0, json!({"note": {"v": "a"}, "version": 2}));
    assert!(!is_linearizable(&script), "a deleted note is never seen again");
}

/// A write of unknown outcome that nothing shows a version of can still matter through a
/// write of unknown outcome with a precondition that its version lets take effect: here the
/// put makes version 2, the conditional delete removes the note, and a list shows it gone.
#[test]
fn a_write_nothing_shows_matters_through_a_conditional_write_after_it() {
    let mut script = Script::new(ModelName::Notes);
    script.call(0, 0, "create", json!({"body": {"a": 1}})).ok(0, 0, json!({"id": 1, "version": 1}));
    script.call(1, 0, "get", json!({"id": 1})).ok(1, 0, json!({"note": {"a": 1}, "version": 1}));
    script.call(2, 1, "put", json!({"id": 1, "body": {"a": 2}})).info(2, 1);
    script.call(3, 2, "delete", json!({"id": 1, "if_match": 2})).info(3, 2);
    script.call(4, 0, "list", json!({})).ok(4, 0, json!({"notes": []}));
    assert!(is_linearizable(&script), "the put made version 2, which the delete needed");
}
