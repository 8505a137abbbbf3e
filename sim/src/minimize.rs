//! Shrinks a failing history to a short one that still fails: delta debugging
//! (Zeller's ddmin) over whole clients first, then over single operations. The
//! checker accepts any sub-history, since dropping an operation only removes
//! constraints or observations.

use std::collections::BTreeSet;

use crate::history::{EventKind, History};

/// The history restricted to the operations `keep`.
pub fn sub_history(history: &History, keep: &BTreeSet<u64>) -> History {
    let mut sub = History::new(history.header.clone());
    sub.events = history.events.iter().filter(|event| keep.contains(&event.id)).cloned().collect();
    sub
}

/// Operation ids in call order.
pub fn operation_ids(history: &History) -> Vec<u64> {
    history.events.iter().filter(|event| event.kind == EventKind::Call).map(|event| event.id).collect()
}

/// A shortest-found sub-history for which `fails` still holds; `fails(history)` must hold.
/// `checks_max` bounds the number of calls to `fails`.
pub fn minimize(history: &History, checks_max: usize, mut fails: impl FnMut(&History) -> bool) -> History {
    let mut checks = 0usize;
    let mut still_fails = |keep: &BTreeSet<u64>| {
        checks += 1;
        checks <= checks_max && fails(&sub_history(history, keep))
    };
    // Whole clients first: one check removes many operations.
    let mut clients: Vec<u64> = history.events.iter().map(|event| event.client).collect::<BTreeSet<_>>().into_iter().collect();
    let operations_of = |clients: &[u64]| -> BTreeSet<u64> {
        history.events.iter().filter(|event| clients.contains(&event.client)).map(|event| event.id).collect()
    };
    clients = ddmin(clients, |candidate| still_fails(&operations_of(candidate)));
    let operations: Vec<u64> = operation_ids(history).into_iter().filter(|id| operations_of(&clients).contains(id)).collect();
    let operations = ddmin(operations, |candidate| still_fails(&candidate.iter().copied().collect()));
    sub_history(history, &operations.into_iter().collect())
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

    #[test]
    fn ddmin_finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..40).collect();
        let minimal = ddmin(items, |candidate| candidate.contains(&7) && candidate.contains(&31));
        assert_eq!(minimal, vec![7, 31]);
    }
}
