//! Verdicts on the sample histories, tricky cases, and a comparison with a brute-force
//! checker on small random histories.

use std::path::PathBuf;

use super::*;

fn data_path(relative: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/")).join(relative)
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
        Verdict::Unknown { steps } => panic!("gave up after {steps} steps"),
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
    let verdict = check_with(&history, &CheckOptions { step_budget: 10 }).expect("valid");
    assert_eq!(verdict, Verdict::Unknown { steps: 10 });
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
