//! Refutation one note at a time: a necessary condition checked before the whole search.
//!
//! The *projection* of a notes history on a note `n` that exactly one create reported holds
//! that create, every operation on `n`, and, for each completed list whose page shows
//! whether `n` existed, a `get` of `n` with the list's interval and what the page showed
//! of `n` (its version and body, or `not_found` when `n` falls inside the page's range of
//! ids but is not on it). A page's range runs from its `after` to its last note when it
//! stopped there (it reached its `limit`, or says `more`), and to the end otherwise.
//!
//! Why a refuted projection refutes the history: take any linearization of the history
//! and keep only the projection's operations, each list standing for its `get`. The order
//! still respects real time; the create that reported `n` made `n` (the model gives the
//! projection's one create the id `n`); every operation on `n` sees `n` as before, since
//! only operations on `n` change it; and each list's `get` sees `n` as the list saw it at
//! the same point. So the projection has a linearization whenever the history does. (A
//! list that returned before the note's create was called and does not show the note is
//! left out: the note is absent then in every linearization, so its read could refute
//! nothing.)
//!
//! The converse does not hold (lists bind notes to one instant, creates share a counter),
//! so a projection that passes proves nothing and the whole search follows. But a stale
//! read of one note is refuted here, in a search over that note's operations only, and the
//! counterexample names only them; it is then shrunk, dropping reads while what is left
//! still has no linearization, and the writes that came after the reads left.

use std::collections::BTreeMap;

use super::notes::{IdAssignment, NotesCall, NotesModel, NotesObservation, NotesOperation, Scope, page_last};
use super::search::{self, Budget, SearchOperation, SearchResult};
use super::{Counterexample, Exhaustion};

/// Search steps one projection may take; a projection that needs more is skipped (it could
/// only refute, and the whole search still runs).
const STEPS_PER_PROJECTION: u64 = 200_000;

/// Searches each note's projection; the first one without a linearization, shrunk.
pub(crate) fn refute_by_note(
    model: &mut NotesModel,
    operations: &[SearchOperation<NotesOperation>],
    scopes: &[Scope],
    budget: &mut Budget,
) -> Option<Counterexample> {
    let index = ProjectionIndex::new(operations, scopes);
    for &note_id in index.creator_by_note.keys() {
        let projection = index.projection(operations, note_id);
        let saved_ids = std::mem::replace(&mut model.ids, IdAssignment::Sequence(vec![note_id]));
        let refuted = matches!(search_within(model, &projection, budget, STEPS_PER_PROJECTION), Some(false));
        let counterexample = refuted.then(|| {
            let failing = shrink(model, projection, budget);
            Counterexample {
                operation_ids: failing.iter().map(|operation| operation.id).collect(),
                longest_linearized_prefix: Vec::new(),
                reason: format!(
                    "no order of these operations on note {note_id} (lists count as reads of it) respects real \
                     time and the model"
                ),
            }
        });
        model.ids = saved_ids;
        if counterexample.is_some() {
            return counterexample;
        }
        if budget.exhausted.is_some_and(|limit| limit != Exhaustion::Steps) {
            return None;
        }
    }
    None
}

/// `Some(true)` linearizable, `Some(false)` not, `None` out of steps.
fn search_within(
    model: &mut NotesModel,
    operations: &[SearchOperation<NotesOperation>],
    budget: &mut Budget,
    steps: u64,
) -> Option<bool> {
    let granted = steps.min(budget.steps_left);
    let mut own = Budget { steps_left: granted, exhausted: None, ..budget.clone() };
    let result = search::search(model, operations, &mut own);
    budget.steps_left -= granted - own.steps_left;
    budget.peak_states = budget.peak_states.max(own.peak_states);
    if own.exhausted.is_some_and(|limit| limit != Exhaustion::Steps) {
        budget.exhausted = own.exhausted;
    }
    match result {
        SearchResult::Linearizable => Some(true),
        SearchResult::NotLinearizable { .. } => Some(false),
        SearchResult::OutOfBudget => None,
    }
}

/// Drops reads one by one while what is left still has no linearization, then the writes
/// called after the last read left returned. Writes are otherwise kept: without the writes
/// that made a version, any read of it fails, which would name the read alone.
fn shrink(
    model: &mut NotesModel,
    mut failing: Vec<SearchOperation<NotesOperation>>,
    budget: &mut Budget,
) -> Vec<SearchOperation<NotesOperation>> {
    let is_read =
        |operation: &SearchOperation<NotesOperation>| matches!(operation.operation.call, NotesCall::Get { .. });
    let mut index = 0;
    while index < failing.len() {
        if !is_read(&failing[index]) {
            index += 1;
            continue;
        }
        let candidate: Vec<_> = failing
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .map(|(_, operation)| operation.clone())
            .collect();
        if matches!(search_within(model, &candidate, budget, STEPS_PER_PROJECTION), Some(false)) {
            failing = candidate;
        } else {
            index += 1;
        }
    }
    let last_read_return =
        failing.iter().filter(|operation| is_read(operation)).filter_map(|operation| operation.return_position).max();
    if let Some(last_read_return) = last_read_return {
        let candidate: Vec<_> =
            failing.iter().filter(|operation| operation.call_position < last_read_return).cloned().collect();
        if candidate.len() < failing.len()
            && matches!(search_within(model, &candidate, budget, STEPS_PER_PROJECTION), Some(false))
        {
            failing = candidate;
        }
    }
    failing
}

/// Where each note's projection comes from, so that projections are built one at a time:
/// all of them at once hold every list once per note it covers.
struct ProjectionIndex<'a> {
    /// Notes that exactly one create reported, and that create.
    creator_by_note: BTreeMap<u64, usize>,
    operations_by_note: BTreeMap<u64, Vec<usize>>,
    /// Completed lists whose page the model could give, by operation index.
    pages: Vec<(usize, ListedPage<'a>)>,
}

impl<'a> ProjectionIndex<'a> {
    fn new(operations: &'a [SearchOperation<NotesOperation>], scopes: &[Scope]) -> ProjectionIndex<'a> {
        let mut creators: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut operations_by_note: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut pages = Vec::new();
        for (index, scope) in scopes.iter().enumerate() {
            match *scope {
                Scope::Create { known_id: Some(id) } => creators.entry(id).or_default().push(index),
                Scope::Create { known_id: None } => {}
                Scope::Note(id) => operations_by_note.entry(id).or_default().push(index),
                Scope::List => {
                    let operation = &operations[index];
                    let NotesCall::List { after, limit } = operation.operation.call else { continue };
                    let Some(observation) = &operation.operation.observation else { continue };
                    if let Some(page) = ListedPage::of(observation, after, limit) {
                        pages.push((index, page));
                    }
                }
            }
        }
        let creator_by_note = creators
            .into_iter()
            .filter(|(_, creates)| creates.len() == 1)
            .map(|(id, creates)| (id, creates[0]))
            .collect();
        ProjectionIndex { creator_by_note, operations_by_note, pages }
    }

    /// Note `note_id`'s projection, in history order.
    fn projection(
        &self,
        operations: &[SearchOperation<NotesOperation>],
        note_id: u64,
    ) -> Vec<SearchOperation<NotesOperation>> {
        let creator = &operations[self.creator_by_note[&note_id]];
        let mut projection = vec![creator.clone()];
        for &index in self.operations_by_note.get(&note_id).into_iter().flatten() {
            projection.push(operations[index].clone());
        }
        for &(index, ref page) in &self.pages {
            let list = &operations[index];
            let Some(read) = page.read_of(note_id) else { continue };
            // A list that returned before the note's create was called finds it absent in
            // every linearization: such a read can refute nothing (one that shows it can).
            let absent = read.error_code.is_some();
            if absent && list.return_position.is_some_and(|returned| returned < creator.call_position) {
                continue;
            }
            projection.push(SearchOperation {
                id: list.id,
                operation: NotesOperation { call: NotesCall::Get { id: note_id }, observation: Some(read) },
                call_position: list.call_position,
                return_position: list.return_position,
            });
        }
        projection.sort_by_key(|operation| operation.call_position);
        projection
    }
}

/// What a completed list's page says of single notes.
struct ListedPage<'a> {
    observation: &'a NotesObservation,
    /// The list's `after`: the page speaks of larger ids only.
    after: u64,
    /// The largest id the page speaks of; `u64::MAX` when it runs to the end.
    last: u64,
}

impl<'a> ListedPage<'a> {
    /// The page, if the model could give it (see [`page_last`]).
    fn of(observation: &'a NotesObservation, after: u64, limit: Option<u64>) -> Option<ListedPage<'a>> {
        let last = page_last(observation, after, limit)?;
        Some(ListedPage { observation, after, last })
    }

    /// The read of note `id` the page stands for, if the page covers it.
    fn read_of(&self, id: u64) -> Option<NotesObservation> {
        if id <= self.after || id > self.last {
            return None;
        }
        let entries = self.observation.notes.as_ref()?;
        // Ids are increasing on a page `of` accepted.
        let found = entries.binary_search_by_key(&Some(id), |entry| entry.id).ok().map(|position| &entries[position]);
        Some(match found {
            Some(entry) => NotesObservation {
                id: Some(id),
                version: entry.version,
                note: entry.note,
                ..NotesObservation::default()
            },
            None => NotesObservation { error_code: Some("not_found".to_string()), ..NotesObservation::default() },
        })
    }
}
