//! Shrinks a failing history to the few operations that explain the violation:
//! delta debugging (Zeller's ddmin) over whole clients first, then over single
//! operations.
//!
//! Simply deleting operations would manufacture violations: without the create of
//! note 3, a read of note 3 is impossible on its own. So an operation left out of
//! the candidate set is *relaxed* rather than deleted: a read or a failed operation
//! is removed (a read only constrains, a failure had no effect), and a write keeps
//! its call but its outcome becomes unknown (it may have taken effect, or not). A
//! relaxed history allows every order the original allows, so if the checker still
//! refutes it, the operations kept whole really are inconsistent, with nothing but
//! "some writes may have happened" around them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::history::{Event, EventKind, History};

/// Operation ids in call order.
pub fn operation_ids(history: &History) -> Vec<u64> {
    history.events.iter().filter(|event| event.kind == EventKind::Call).map(|event| event.id).collect()
}

fn is_read(function: &str) -> bool {
    matches!(function, "get" | "list" | "read")
}

/// The note id an operation names in its input or reports in its output.
fn note_ids(event: &Event, ids: &mut BTreeSet<u64>) {
    for value in [&event.input, &event.output].into_iter().flatten() {
        if let Some(id) = value.get("id").and_then(Value::as_u64) {
            ids.insert(id);
        }
    }
}

/// `history` with every operation outside `whole` relaxed (see the module docs), and the
/// relaxed writes to notes that no whole operation names left out entirely.
pub fn relaxed_history(history: &History, whole: &BTreeSet<u64>) -> History {
    let mut functions: BTreeMap<u64, &str> = BTreeMap::new();
    let mut failed: BTreeSet<u64> = BTreeSet::new();
    let mut named: BTreeSet<u64> = BTreeSet::new();
    let mut whole_lists = false;
    for event in &history.events {
        if let Some(function) = &event.function {
            functions.insert(event.id, function);
        }
        if event.kind == EventKind::Fail {
            failed.insert(event.id);
        }
        if whole.contains(&event.id) {
            note_ids(event, &mut named);
            whole_lists |= event.function.as_deref() == Some("list");
        }
    }
    // A relaxed write to a note no whole operation names (and no whole list could see)
    // cannot matter; creates stay, because they move the id counter.
    // (Only sound while `whole` is not empty; an empty set keeps nothing anyway.)
    let mut unrelated: BTreeSet<u64> = BTreeSet::new();
    if !whole_lists {
        for event in history.events.iter().filter(|event| event.kind == EventKind::Call) {
            let mut ids = BTreeSet::new();
            note_ids(event, &mut ids);
            let function = event.function.as_deref().unwrap_or_default();
            if function != "create" && !ids.is_empty() && ids.is_disjoint(&named) {
                unrelated.insert(event.id);
            }
        }
    }
    // A relaxed write called after every whole operation returned can be ordered after them
    // all (or never): it cannot matter either.
    let last_whole_position = history.events.iter().rposition(|event| whole.contains(&event.id));
    let mut relaxed = History::new(history.header.clone());
    for (position, event) in history.events.iter().enumerate() {
        if last_whole_position.is_none_or(|last| position > last) && event.kind == EventKind::Call {
            unrelated.insert(event.id);
        }
        if whole.contains(&event.id) {
            relaxed.events.push(event.clone());
            continue;
        }
        let function = functions.get(&event.id).copied().unwrap_or_default();
        if is_read(function) || failed.contains(&event.id) || unrelated.contains(&event.id) {
            continue;
        }
        match event.kind {
            EventKind::Call => relaxed.events.push(event.clone()),
            EventKind::Ok | EventKind::Info => {
                let mut info = Event::info(event.id, event.client);
                info.time = event.time;
                relaxed.events.push(info);
            }
            EventKind::Fail => {}
        }
    }
    relaxed
}

/// The result of minimizing: the operations that explain the failure, and the history
/// that shows them (with relaxed writes around them).
#[derive(Debug, Clone, PartialEq)]
pub struct Minimized {
    pub history: History,
    /// Operations kept with their outcomes.
    pub whole: BTreeSet<u64>,
}

/// The smallest set of whole operations found for which `fails` holds of the relaxed
/// history; `fails(history)` must hold. `checks_max` bounds the calls to `fails`.
///
/// `hint`, when given, is a set of operations the checker already blamed (one partition
/// of the history): the search starts from it when it fails on its own.
pub fn minimize(
    history: &History,
    hint: Option<&[u64]>,
    checks_max: usize,
    mut fails: impl FnMut(&History) -> bool,
) -> Minimized {
    let mut checks = 0usize;
    let mut still_fails = |whole: &BTreeSet<u64>| {
        checks += 1;
        checks <= checks_max && fails(&relaxed_history(history, whole))
    };
    let hinted: Option<BTreeSet<u64>> = hint.map(|ids| ids.iter().copied().collect());
    if let Some(hinted) = hinted.filter(|hinted| hinted.len() < operation_ids(history).len() && still_fails(hinted)) {
        let operations: Vec<u64> = operation_ids(history).into_iter().filter(|id| hinted.contains(id)).collect();
        let operations = ddmin(operations, |candidate| still_fails(&candidate.iter().copied().collect()));
        let whole: BTreeSet<u64> = operations.into_iter().collect();
        return Minimized { history: relaxed_history(history, &whole), whole };
    }
    let clients: Vec<u64> =
        history.events.iter().map(|event| event.client).collect::<BTreeSet<_>>().into_iter().collect();
    let operations_of = |clients: &[u64]| -> BTreeSet<u64> {
        history.events.iter().filter(|event| clients.contains(&event.client)).map(|event| event.id).collect()
    };
    // Whole clients first: one check removes many operations.
    let clients = ddmin(clients, |candidate| still_fails(&operations_of(candidate)));
    let kept = operations_of(&clients);
    let operations: Vec<u64> = operation_ids(history).into_iter().filter(|id| kept.contains(id)).collect();
    let operations = ddmin(operations, |candidate| still_fails(&candidate.iter().copied().collect()));
    let whole: BTreeSet<u64> = operations.into_iter().collect();
    Minimized { history: relaxed_history(history, &whole), whole }
}

/// ddmin: removes chunks of ever finer granularity while the test still fails.
fn ddmin<T: Clone>(mut items: Vec<T>, mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut granularity = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(granularity);
        let mut reduced = false;
        let mut start = 0;
        while start < items.len() {
            let end = (start + chunk).min(items.len());
            let complement: Vec<T> = items[..start].iter().chain(&items[end..]).cloned().collect();
            if !complement.is_empty() && fails(&complement) {
                items = complement;
                granularity = (granularity - 1).max(2);
                reduced = true;
                break;
            }
            start = end;
        }
        if !reduced {
            if granularity >= items.len() {
                break;
            }
            granularity = (granularity * 2).min(items.len());
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Header, ModelName};
    use serde_json::json;

    #[test]
    fn ddmin_finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..40).collect();
        let minimal = ddmin(items, |candidate| candidate.contains(&7) && candidate.contains(&31));
        assert_eq!(minimal, vec![7, 31]);
    }

    #[test]
    fn relaxing_drops_reads_and_makes_writes_unknown() {
        let mut history = History::new(Header::new(ModelName::Notes));
        history.events.push(Event::call(0, 0, "create", Some(json!({"body": {}}))).at(1));
        history.events.push(Event::ok(0, 0, Some(json!({"id": 1, "version": 1}))).at(2));
        history.events.push(Event::call(1, 1, "get", Some(json!({"id": 1}))).at(3));
        history.events.push(Event::ok(1, 1, Some(json!({"note": {}, "version": 1}))).at(4));
        history.events.push(Event::call(2, 1, "get", Some(json!({"id": 1}))).at(5));
        history.events.push(Event::ok(2, 1, Some(json!({"error": {"code": "not_found"}}))).at(6));
        let relaxed = relaxed_history(&history, &BTreeSet::from([2]));
        let kinds: Vec<(u64, EventKind)> = relaxed.events.iter().map(|event| (event.id, event.kind)).collect();
        assert_eq!(kinds, vec![(0, EventKind::Call), (0, EventKind::Info), (2, EventKind::Call), (2, EventKind::Ok)]);
    }
}
