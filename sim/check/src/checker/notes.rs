//! The `notes` model, exactly as `HISTORY-FORMAT.md` states it, and the plan that splits
//! a notes history into independent partitions (see the `checker` module documentation
//! for why the split is exact).
//!
//! Observed outputs are matched field by field: a field the completion reports must
//! equal the model's; a field it leaves out is not checked (the sample histories leave
//! out `version` at times); fields the model does not know (server timestamps, an
//! error's `message`) are ignored. An error is `{"error":"code"}` or
//! `{"error":{"code":"code",...}}`; the absence of `error` means success. A completion
//! without `out` constrains nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::search::{Model, SearchOperation, fingerprint_of};
use super::values::{ValueId, ValueTable};
use super::{CheckError, PreparedOperations, base_operation};
use crate::history::{Operation, Outcome};

const NOT_FOUND: &str = "not_found";
const PRECONDITION_FAILED: &str = "precondition_failed";
/// A body or patch that would not leave the note a JSON object is refused without effect.
const BAD_REQUEST: &str = "bad_request";

#[derive(Debug, Clone)]
pub(crate) enum NotesCall {
    Create { body: ValueId },
    Get { id: u64 },
    List { after: u64, limit: Option<u64> },
    Put { id: u64, body: ValueId, if_match: Option<u64> },
    Patch { id: u64, patch: ValueId, if_match: Option<u64> },
    Delete { id: u64, if_match: Option<u64> },
}

/// The fields a completion reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct NotesObservation {
    pub(super) error_code: Option<String>,
    pub(super) id: Option<u64>,
    pub(super) version: Option<u64>,
    pub(super) note: Option<ValueId>,
    pub(super) notes: Option<Vec<ListedObservation>>,
    /// A list's `more`: whether the server said more notes follow its page.
    pub(super) more: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ListedObservation {
    pub(super) id: Option<u64>,
    pub(super) version: Option<u64>,
    pub(super) note: Option<ValueId>,
}

#[derive(Debug, Clone)]
pub(crate) struct NotesOperation {
    pub(super) call: NotesCall,
    /// `None` when nothing is known of the output (unknown outcome, or no `out`).
    pub(super) observation: Option<NotesObservation>,
}

/// What an operation touches, for partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A create whose id is known (it completed and reported its id) or not.
    Create { known_id: Option<u64> },
    /// Any operation on one note.
    Note(u64),
    /// A read of many notes.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StoredNote {
    object: ValueId,
    version: u64,
}

/// The store's notes and id counter, with its memo fingerprint kept up to date: the XOR of
/// one key for the counter and one per note stored, made of what operations still to be
/// linearized may observe of it ([`Liveness`]): its id, version and body, its id and
/// version, or nothing. So states that differ only in what nothing will observe meet in
/// the memo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotesState {
    creates_done: u64,
    notes: BTreeMap<u64, StoredNote>,
    fingerprint: u128,
}

/// Keys of stored notes and of the counter, domains of their own.
const NOTE_DOMAIN: u64 = 0x6e6f_7465_7374_6f72;
const COUNTER_DOMAIN: u64 = 0x636f_756e_7465_7273;
/// Keys of classes of interchangeable operations.
const CLASS_DOMAIN: u64 = 0x636c_6173_7365_7321;
/// Stands for the body in the key of a note whose body nothing observes any more.
const UNOBSERVED_BODY: u64 = u64::MAX;

/// What is left to observe of a note; in increasing order of what its key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Observed {
    Nothing,
    Version,
    Body,
}

fn note_key(id: u64, note: StoredNote, observed: Observed) -> u128 {
    match observed {
        Observed::Nothing => 0,
        Observed::Version => fingerprint_of(NOTE_DOMAIN, &[id, note.version, UNOBSERVED_BODY]),
        Observed::Body => fingerprint_of(NOTE_DOMAIN, &[id, note.version, u64::from(note.object)]),
    }
}

fn counter_key(creates_done: u64) -> u128 {
    fingerprint_of(COUNTER_DOMAIN, &[creates_done])
}

impl NotesState {
    fn empty() -> NotesState {
        NotesState { creates_done: 0, notes: BTreeMap::new(), fingerprint: counter_key(0) }
    }

    /// Stores `note` as `id` (or removes `id`), keeping the fingerprint; returns what was there.
    fn replace(&mut self, id: u64, note: Option<StoredNote>, observed: Observed) -> Option<StoredNote> {
        let previous = match note {
            Some(note) => self.notes.insert(id, note),
            None => self.notes.remove(&id),
        };
        for changed in previous.iter().chain(note.iter()) {
            self.fingerprint ^= note_key(id, *changed, observed);
        }
        previous
    }

    /// Re-keys note `id` as what is left to observe of it changes.
    fn observed_changed(&mut self, id: u64, before: Observed, after: Observed) {
        if before != after
            && let Some(&note) = self.notes.get(&id)
        {
            self.fingerprint ^= note_key(id, note, before) ^ note_key(id, note, after);
        }
    }

    fn set_creates_done(&mut self, creates_done: u64) {
        self.fingerprint ^= counter_key(self.creates_done) ^ counter_key(creates_done);
        self.creates_done = creates_done;
    }
}

/// How to take a step of the notes model back.
#[derive(Debug)]
pub(crate) enum NotesUndo {
    Unchanged,
    Changed { id: u64, previous: Option<StoredNote>, created: bool },
}

/// A step's undo record, and whether the step retired an observer (see [`Liveness`]).
#[derive(Debug)]
pub(crate) struct NotesStepUndo {
    change: NotesUndo,
    retired: Option<ObserverScope>,
}

/// What the operations still to be linearized may observe of each note. An operation on a
/// note with an observed output sees its version and whether it exists (a `get` that
/// reports the body, or a write that does, sees the body too). A list's page shows the notes
/// of its range ([`page_last`]), bodies included, and nothing of the notes after it but, when
/// the page says `more`, whether there is one: those notes are keyed by version (which also
/// says whether a note exists, and decides whether a delete with a precondition removes it).
/// Once nothing is left to observe a note's body, the
/// body can change no verdict: only operations with an observed output can be refused;
/// whether a write is refused depends on the note's existence, its version and the body
/// sent, never on the body stored (a merge patch of an object is an object); and a create
/// depends on the counter alone. Likewise for the version once nothing observes the note
/// at all. So the memo keys a note by what is left to observe of it.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    observers_by_note: BTreeMap<u64, u32>,
    body_observers_by_note: BTreeMap<u64, u32>,
    /// Operations whose output reports a note present at some version: on the note, or
    /// lists whose page shows it.
    version_observers_by_note: BTreeMap<u64, u32>,
    /// The range `(after, last]` of the page of each list left, counted.
    list_ranges: BTreeMap<(u64, u64), u32>,
    /// The `last` of each list left whose page says whether a note follows it, counted.
    beyond_lasts: BTreeMap<u64, u32>,
}

impl Liveness {
    /// Whether an operation left reports note `id` present at some version.
    fn version_observed(&self, id: u64) -> bool {
        self.version_observers_by_note.contains_key(&id)
    }

    fn observed(&self, id: u64) -> Observed {
        let on_a_page = || self.list_ranges.range(..(id, 0)).any(|(&(_, last), _)| id <= last);
        let after_a_page = || self.beyond_lasts.first_key_value().is_some_and(|(&last, _)| last < id);
        if self.body_observers_by_note.contains_key(&id) || on_a_page() {
            Observed::Body
        } else if self.observers_by_note.contains_key(&id) || after_a_page() {
            Observed::Version
        } else {
            Observed::Nothing
        }
    }

    fn observer_scope(operation: &NotesOperation) -> Option<ObserverScope> {
        let observation = operation.observation.as_ref()?;
        match operation.call {
            NotesCall::Create { .. } => None,
            NotesCall::List { after, limit } => {
                let last = page_last(observation, after, limit).unwrap_or(u64::MAX);
                let beyond = last != u64::MAX && observation.more == Some(true);
                let shown: std::sync::Arc<[u64]> = observation
                    .notes
                    .iter()
                    .flatten()
                    .filter(|entry| entry.version.is_some())
                    .filter_map(|entry| entry.id)
                    .collect();
                Some(ObserverScope::List { after, last, beyond, shown })
            }
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. } => Some(ObserverScope::Note {
                id,
                body: observation.note.is_some(),
                version: observation.error_code.is_none() && observation.version.is_some(),
            }),
        }
    }

    fn add_range(counts: &mut BTreeMap<(u64, u64), u32>, range: (u64, u64)) {
        *counts.entry(range).or_insert(0) += 1;
    }

    fn remove_range(counts: &mut BTreeMap<(u64, u64), u32>, range: (u64, u64)) {
        let count = counts.get_mut(&range).expect("only a list counted is retired");
        *count -= 1;
        if *count == 0 {
            counts.remove(&range);
        }
    }

    fn add(counts: &mut BTreeMap<u64, u32>, key: u64) {
        *counts.entry(key).or_insert(0) += 1;
    }

    fn remove(counts: &mut BTreeMap<u64, u32>, key: u64) {
        let count = counts.get_mut(&key).expect("only an observer counted is retired");
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
        }
    }

    fn count(&mut self, scope: &ObserverScope) {
        match scope {
            &ObserverScope::Note { id, body, version } => {
                Self::add(&mut self.observers_by_note, id);
                if body {
                    Self::add(&mut self.body_observers_by_note, id);
                }
                if version {
                    Self::add(&mut self.version_observers_by_note, id);
                }
            }
            ObserverScope::List { after, last, beyond, shown } => {
                Self::add_range(&mut self.list_ranges, (*after, *last));
                if *beyond {
                    Self::add(&mut self.beyond_lasts, *last);
                }
                for &id in shown.iter() {
                    Self::add(&mut self.version_observers_by_note, id);
                }
            }
        }
    }

    fn uncount(&mut self, scope: &ObserverScope) {
        match scope {
            &ObserverScope::Note { id, body, version } => {
                Self::remove(&mut self.observers_by_note, id);
                if body {
                    Self::remove(&mut self.body_observers_by_note, id);
                }
                if version {
                    Self::remove(&mut self.version_observers_by_note, id);
                }
            }
            ObserverScope::List { after, last, beyond, shown } => {
                Self::remove_range(&mut self.list_ranges, (*after, *last));
                if *beyond {
                    Self::remove(&mut self.beyond_lasts, *last);
                }
                for &id in shown.iter() {
                    Self::remove(&mut self.version_observers_by_note, id);
                }
            }
        }
    }

    /// Counts or uncounts an observer, re-keying the notes whose observed part changes.
    fn recount(&mut self, state: &mut NotesState, scope: &ObserverScope, counted: bool) {
        let affected: Vec<u64> = match *scope {
            ObserverScope::Note { id, .. } => vec![id],
            ObserverScope::List { after, last, beyond, .. } => {
                let end = if beyond { u64::MAX } else { last };
                if after >= end { Vec::new() } else { state.notes.range(after + 1..=end).map(|(&id, _)| id).collect() }
            }
        };
        let before: Vec<Observed> = affected.iter().map(|&id| self.observed(id)).collect();
        if counted {
            self.count(scope);
        } else {
            self.uncount(scope);
        }
        for (id, was) in affected.into_iter().zip(before) {
            state.observed_changed(id, was, self.observed(id));
        }
    }

    /// The observer was linearized: notes re-keyed by what is left to observe of them.
    fn retire(&mut self, state: &mut NotesState, scope: &ObserverScope) {
        self.recount(state, scope, false);
    }

    /// Undoes [`Liveness::retire`].
    fn restore(&mut self, state: &mut NotesState, scope: &ObserverScope) {
        self.recount(state, scope, true);
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ObserverScope {
    /// An operation on one note; whether its output shows the body, and the version.
    Note { id: u64, body: bool, version: bool },
    /// A list: the range `(after, last]` its page shows, whether it says if a note follows
    /// `last`, and the ids of the notes its page shows (with their versions).
    List { after: u64, last: u64, beyond: bool, shown: std::sync::Arc<[u64]> },
}

/// What an operation does to the store when it takes effect.
#[derive(Debug)]
struct NotesChange {
    id: u64,
    /// `None` deletes the note.
    note: Option<StoredNote>,
    created: bool,
}

/// The model's own output for an operation (a list's is matched against the state directly).
#[derive(Debug)]
enum NotesResult {
    Error(&'static str),
    /// create, get, put and patch: the note as it is after the operation.
    Note {
        id: u64,
        note: StoredNote,
    },
    Deleted,
    Listed {
        after: u64,
        limit: Option<u64>,
    },
}

#[derive(Debug)]
pub(crate) struct NotesModel {
    values: ValueTable,
    /// Which id each create gets.
    pub(crate) ids: IdAssignment,
    /// The ids that creates reported. A create that reported none never gets one of them in a
    /// linearization (the create that reported it must), so the search need not try.
    reported_ids: BTreeSet<u64>,
    /// The (id, version) pairs that writes reported making. Versions of a note go up by one
    /// with each write and ids are never reused, so one write makes each pair: a write that
    /// reported no version never makes one of these in a linearization.
    reported_versions: BTreeSet<(u64, u64)>,
    /// The highest version any output reports of each note. A write that makes a higher one
    /// while an operation that reports the note's version is left can be in no
    /// linearization: that operation would come after it and see at least that version.
    highest_version_seen: BTreeMap<u64, u64>,
    /// Of each note with a gap, its relevant versions ([`VersionAccount`]).
    relevant_versions: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Notes with a write whose output is not known and that has a precondition
    /// ([`VersionAccount`]).
    conditional_unknown: BTreeSet<u64>,
    /// Of each note, the last return of an observer of its writes of unknown outcome
    /// ([`VersionAccount`]); a note absent here has none.
    unknown_write_observers_until: BTreeMap<u64, usize>,
    /// What may show a note absent, for deletes of unknown outcome ([`AbsenceAccount`]).
    absence: AbsenceAccount,
    liveness: Liveness,
    /// The last return of an operation of this search that may show the body of a note no
    /// create reported, if any: the creates of unknown outcome called after it are
    /// interchangeable.
    unreported_bodies_shown_until: Option<usize>,
    /// The notes whose body an operation of this search may show.
    bodies_seen: BodiesSeen,
}

/// The notes whose body an operation of a search may show: those that operations on one note
/// show, and the ranges of the lists' pages.
#[derive(Debug, Default)]
struct BodiesSeen {
    ids: BTreeSet<u64>,
    /// The ranges `(after, last]` of the lists' pages (`last` is `u64::MAX` for a page that
    /// runs to the end).
    ranges: Vec<(u64, u64)>,
}

impl BodiesSeen {
    fn add(&mut self, scope: &ObserverScope) {
        match *scope {
            ObserverScope::List { after, last, .. } => self.ranges.push((after, last)),
            ObserverScope::Note { id, body: true, .. } => {
                self.ids.insert(id);
            }
            ObserverScope::Note { body: false, .. } => {}
        }
    }

    fn contains(&self, id: &u64) -> bool {
        self.ids.contains(id) || self.ranges.iter().any(|&(after, last)| after < *id && *id <= last)
    }
}

/// How the model numbers creates: the whole history's counter, or what that counter gives a
/// partition's creates (see the module documentation of `checker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdAssignment {
    /// The k-th create linearized (from 0) gets `first_id + k`.
    Counter { first_id: u64 },
    /// The k-th create linearized gets `ids[k]`: the ids the partition's creates reported, increasing.
    Sequence(Vec<u64>),
}

impl NotesModel {
    fn assigned_id(&self, creates_done: u64) -> u64 {
        match &self.ids {
            IdAssignment::Counter { first_id } => first_id + creates_done,
            IdAssignment::Sequence(ids) => {
                usize::try_from(creates_done).ok().and_then(|index| ids.get(index)).copied().unwrap_or(u64::MAX)
            }
        }
    }

    /// Whether a create linearized after `creates_done` creates may still get `id`.
    fn may_assign(&self, id: u64, creates_done: u64) -> bool {
        match &self.ids {
            IdAssignment::Counter { first_id } => id >= first_id.saturating_add(creates_done),
            IdAssignment::Sequence(ids) => {
                let done = usize::try_from(creates_done).unwrap_or(usize::MAX).min(ids.len());
                ids[done..].contains(&id)
            }
        }
    }

    fn is_object(&self, value: ValueId) -> bool {
        self.values.get(value).is_object()
    }

    fn evaluate(&mut self, state: &NotesState, call: &NotesCall) -> (NotesResult, Option<NotesChange>) {
        match *call {
            NotesCall::Create { body } => {
                if !self.is_object(body) {
                    return (NotesResult::Error(BAD_REQUEST), None);
                }
                let id = self.assigned_id(state.creates_done);
                let note = StoredNote { object: body, version: 1 };
                (NotesResult::Note { id, note }, Some(NotesChange { id, note: Some(note), created: true }))
            }
            NotesCall::Get { id } => match state.notes.get(&id) {
                Some(&note) => (NotesResult::Note { id, note }, None),
                None => (NotesResult::Error(NOT_FOUND), None),
            },
            NotesCall::List { after, limit } => (NotesResult::Listed { after, limit }, None),
            NotesCall::Put { id, body, if_match } => self.write(state, id, if_match, |_, _| body),
            NotesCall::Patch { id, patch, if_match } => self.write(state, id, if_match, |values, object| {
                let patched = merge_patch(values.get(object), values.get(patch));
                values.intern(&patched)
            }),
            NotesCall::Delete { id, if_match } => match Self::precondition(state, id, if_match) {
                Err(code) => (NotesResult::Error(code), None),
                Ok(_) => (NotesResult::Deleted, Some(NotesChange { id, note: None, created: false })),
            },
        }
    }

    fn precondition(state: &NotesState, id: u64, if_match: Option<u64>) -> Result<StoredNote, &'static str> {
        let note = *state.notes.get(&id).ok_or(NOT_FOUND)?;
        match if_match {
            Some(expected) if expected != note.version => Err(PRECONDITION_FAILED),
            _ => Ok(note),
        }
    }

    fn write(
        &mut self,
        state: &NotesState,
        id: u64,
        if_match: Option<u64>,
        new_object: impl FnOnce(&mut ValueTable, ValueId) -> ValueId,
    ) -> (NotesResult, Option<NotesChange>) {
        let note = match Self::precondition(state, id, if_match) {
            Ok(note) => note,
            Err(code) => return (NotesResult::Error(code), None),
        };
        let object = new_object(&mut self.values, note.object);
        if !self.is_object(object) {
            return (NotesResult::Error(BAD_REQUEST), None);
        }
        let note = StoredNote { object, version: note.version + 1 };
        (NotesResult::Note { id, note }, Some(NotesChange { id, note: Some(note), created: false }))
    }
}

fn note_matches(
    id: u64,
    note: StoredNote,
    observed_id: Option<u64>,
    version: Option<u64>,
    object: Option<ValueId>,
) -> bool {
    observed_id.is_none_or(|observed| observed == id)
        && version.is_none_or(|observed| observed == note.version)
        && object.is_none_or(|observed| observed == note.object)
}

fn observation_matches(state: &NotesState, result: &NotesResult, observed: &NotesObservation) -> bool {
    let no_fields = observed.id.is_none() && observed.version.is_none() && observed.note.is_none();
    match result {
        NotesResult::Error(code) => {
            observed.error_code.as_deref() == Some(*code) && no_fields && observed.notes.is_none()
        }
        _ if observed.error_code.is_some() => false,
        NotesResult::Note { id, note } => {
            observed.notes.is_none() && note_matches(*id, *note, observed.id, observed.version, observed.note)
        }
        NotesResult::Deleted => no_fields && observed.notes.is_none(),
        NotesResult::Listed { after, limit } => {
            no_fields
                && observed
                    .notes
                    .as_ref()
                    .is_none_or(|entries| list_matches(state, *after, *limit, observed.more, entries))
        }
    }
}

/// The largest id a list's page speaks of (`u64::MAX` when it runs to the end), if the model
/// could give the page: ids increasing, all after `after`. A page stops at its last note when
/// it says `more: true`, or reached its `limit` and says nothing of `more`; a page with
/// `more: false` says that no note follows, so it speaks of every id. [`list_matches`] reads
/// nothing of the notes after `last` but, when the page says `more: true`, whether one exists.
pub(super) fn page_last(observation: &NotesObservation, after: u64, limit: Option<u64>) -> Option<u64> {
    if observation.error_code.is_some() {
        return None;
    }
    let entries = observation.notes.as_ref()?;
    let mut previous = after;
    for entry in entries {
        let id = entry.id?;
        if id <= previous {
            return None;
        }
        previous = id;
    }
    let stopped_at_limit = limit.is_some_and(|limit| entries.len() as u64 >= limit);
    Some(match observation.more {
        Some(true) => previous,
        Some(false) => u64::MAX,
        None if stopped_at_limit => previous,
        None => u64::MAX,
    })
}

/// Whether a list's observed page is what the state lists after `after`, up to `limit`.
fn list_matches(
    state: &NotesState,
    after: u64,
    limit: Option<u64>,
    observed_more: Option<bool>,
    entries: &[ListedObservation],
) -> bool {
    let limit = limit.and_then(|limit| usize::try_from(limit).ok()).unwrap_or(usize::MAX);
    let mut listed = state.notes.range(after.saturating_add(1)..).take(limit);
    for entry in entries {
        match listed.next() {
            Some((&id, &note)) if note_matches(id, note, entry.id, entry.version, entry.note) => {}
            _ => return false,
        }
    }
    let fewer_than_listed = listed.next().is_some();
    let more = || state.notes.range(after.saturating_add(1)..).nth(limit).is_some();
    // A page may stop before its limit when its notes weigh too much for one answer; it then
    // says that more follow. Without `more`, a page is whole.
    match observed_more {
        None => !fewer_than_listed,
        Some(false) => !fewer_than_listed && (limit == usize::MAX || !more()),
        Some(true) => !entries.is_empty() && (fewer_than_listed || (limit != usize::MAX && more())),
    }
}

impl Model for NotesModel {
    type State = NotesState;
    type Operation = NotesOperation;
    type Undo = NotesStepUndo;

    fn begin(&mut self, operations: &[SearchOperation<NotesOperation>]) {
        self.liveness = Liveness::default();
        self.bodies_seen = BodiesSeen::default();
        self.unreported_bodies_shown_until = None;
        for operation in operations {
            if let Some(scope) = Liveness::observer_scope(&operation.operation) {
                self.liveness.count(&scope);
                self.bodies_seen.add(&scope);
                // A create of unknown outcome only ever makes a note no create reported.
                let shows_unreported = match scope {
                    ObserverScope::Note { id, body, .. } => body && !self.reported_ids.contains(&id),
                    ObserverScope::List { after, last, .. } => {
                        last > after
                            && (last == u64::MAX
                                || self.reported_ids.range(after + 1..=last).count() as u64 != last - after)
                    }
                };
                if shows_unreported {
                    let until = operation.return_position.unwrap_or(usize::MAX);
                    self.unreported_bodies_shown_until = self.unreported_bodies_shown_until.max(Some(until));
                }
            }
        }
    }

    /// Classes of operations of unknown outcome that no operation of the search can tell
    /// apart. Creates called after every operation that can show the body of a note one of
    /// them made returned (a list whose page covers an id that no create reported, the only
    /// ids they can take, or an observed operation on such an id that reports a body); such
    /// an operation comes before each of them in every order, and the search linearizes none
    /// of them before it. They take ids in the order they are linearized, each makes its note
    /// at version 1 (which is all the others may observe of it), and their bodies are never
    /// seen. Writes of one note with the same precondition
    /// and a body or patch that is an object (puts and patches alike), and deletes of one note
    /// with the same precondition, when nothing in the search can show that note's body: no
    /// list's page covers it, and no observed operation on it reports a body; each then moves
    /// the note's version (or removes it) alike. In both cases what an operation without an observed output does later
    /// to such a note is never seen either, and the members' observers still to come are the
    /// same (everything still to be linearized returns after every call the search has
    /// passed).
    fn interchangeable_class(&self, unknown: &SearchOperation<NotesOperation>) -> Option<u128> {
        let (call_position, unknown) = (unknown.call_position, &unknown.operation);
        if unknown.observation.is_some() {
            return None;
        }
        let (id, kind, if_match) = match unknown.call {
            NotesCall::Create { body } => {
                let unseen = self.unreported_bodies_shown_until.is_none_or(|until| call_position > until);
                return (unseen && self.is_object(body)).then(|| fingerprint_of(CLASS_DOMAIN, &[0]));
            }
            NotesCall::Put { id, body: value, if_match } | NotesCall::Patch { id, patch: value, if_match } => {
                if !self.is_object(value) {
                    return None;
                }
                (id, 1, if_match)
            }
            NotesCall::Delete { id, if_match } => (id, 2, if_match),
            NotesCall::Get { .. } | NotesCall::List { .. } => return None,
        };
        let body_unseen = !self.bodies_seen.contains(&id);
        body_unseen.then(|| fingerprint_of(CLASS_DOMAIN, &[1, id, kind, if_match.map_or(0, |version| version + 1)]))
    }

    /// An operation on one note reads and changes that note alone; a create moves the counter
    /// and a list reads many notes, so they belong to no part.
    fn part(&self, operation: &NotesOperation) -> Option<u64> {
        match operation.call {
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. } => Some(id),
            NotesCall::Create { .. } | NotesCall::List { .. } => None,
        }
    }

    /// A note is closed once it is absent and no create can make it any more: it was deleted,
    /// or its id is one the counter has passed (or never reaches). Ids are never reused, so it
    /// stays absent; every put, patch and delete of it answers `not_found` and changes nothing,
    /// and a create takes an id the counter has not passed. Only a delete of the note (or the
    /// create that makes it, which no other part's step is) changes whether it is closed.
    fn part_closed(&self, state: &NotesState, note: u64) -> bool {
        !state.notes.contains_key(&note) && !self.may_assign(note, state.creates_done)
    }

    fn initial_state(&self) -> NotesState {
        NotesState::empty()
    }

    fn fingerprint(&self, state: &NotesState) -> u128 {
        state.fingerprint
    }

    fn step(&mut self, state: &mut NotesState, operation: &NotesOperation) -> Option<NotesStepUndo> {
        let reports_no_id = operation.observation.as_ref().is_none_or(|observed| observed.id.is_none());
        if let NotesCall::Create { .. } = operation.call
            && reports_no_id
            && self.reported_ids.contains(&self.assigned_id(state.creates_done))
        {
            return None;
        }
        let (result, change) = self.evaluate(state, &operation.call);
        if let Some(observed) = &operation.observation
            && !observation_matches(state, &result, observed)
        {
            return None;
        }
        let reports_no_version = operation.observation.as_ref().is_none_or(|observed| observed.version.is_none());
        if let Some(NotesChange { id, note: Some(note), created: false }) = &change
            && reports_no_version
            && (self.reported_versions.contains(&(*id, note.version))
                || (note.version > self.highest_version_seen.get(id).copied().unwrap_or(0)
                    && self.liveness.version_observed(*id)))
        {
            return None;
        }
        let change = match change {
            None => NotesUndo::Unchanged,
            Some(change) => {
                if change.created {
                    state.set_creates_done(state.creates_done + 1);
                }
                let previous = state.replace(change.id, change.note, self.liveness.observed(change.id));
                NotesUndo::Changed { id: change.id, previous, created: change.created }
            }
        };
        let retired = Liveness::observer_scope(operation);
        if let Some(scope) = &retired {
            self.liveness.retire(state, scope);
        }
        Some(NotesStepUndo { change, retired })
    }

    fn undo(&mut self, state: &mut NotesState, undo: NotesStepUndo) {
        if let Some(scope) = &undo.retired {
            self.liveness.restore(state, scope);
        }
        if let NotesUndo::Changed { id, previous, created } = undo.change {
            state.replace(id, previous, self.liveness.observed(id));
            if created {
                state.set_creates_done(state.creates_done - 1);
            }
        }
    }

    /// A note's version starts at 1 when it is created and grows by one with each write that
    /// changes it, and a deleted note's id is never made again. So an operation that saw note
    /// `j` at version `u` (a read, or a list page showing it) comes before the write that
    /// reports making version `u + 1` of it, and that write before every operation that saw
    /// `u + 1`: sorting the operations that report a version of `j` by (version, writes before
    /// reads) orders them in every linearization. Each group of equal keys is tied to the next
    /// one; ties between two large groups of reads of consecutive versions (a write between
    /// them reported nothing) are left out, as leaving any pair out is safe.
    fn order_constraints(&self, operations: &[SearchOperation<NotesOperation>]) -> Vec<(usize, usize)> {
        const READ: u8 = 1;
        const WRITE: u8 = 0;
        let mut keyed: Vec<(u64, u64, u8, usize)> = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            let Some(observed) = &operation.operation.observation else { continue };
            if operation.return_position.is_none() || observed.error_code.is_some() {
                continue;
            }
            match operation.operation.call {
                NotesCall::Get { id } => keyed.extend(observed.version.map(|version| (id, version, READ, index))),
                NotesCall::Put { id, .. } | NotesCall::Patch { id, .. } => {
                    keyed.extend(observed.version.map(|version| (id, version, WRITE, index)));
                }
                NotesCall::Create { .. } => {
                    if let (Some(id), Some(version)) = (observed.id, observed.version) {
                        keyed.push((id, version, WRITE, index));
                    }
                }
                NotesCall::List { .. } => {
                    for entry in observed.notes.iter().flatten() {
                        if let (Some(id), Some(version)) = (entry.id, entry.version) {
                            keyed.push((id, version, READ, index));
                        }
                    }
                }
                NotesCall::Delete { .. } => {}
            }
        }
        keyed.sort_unstable();
        keyed.dedup();
        /// More pairs than this between two groups of reads are left out.
        const MOST_PAIRS_BETWEEN_GROUPS: usize = 64;
        let mut constraints = Vec::new();
        let mut groups = keyed.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)).peekable();
        while let Some(group) = groups.next() {
            let Some(next) = groups.peek() else { break };
            if next[0].0 != group[0].0 {
                continue;
            }
            if group.len() * next.len() > MOST_PAIRS_BETWEEN_GROUPS && group.len() > 1 && next.len() > 1 {
                continue;
            }
            for &(.., before) in group {
                for &(.., after) in next.iter() {
                    if before != after {
                        constraints.push((before, after));
                    }
                }
            }
        }
        constraints
    }

    /// Reads, and operations whose output is an error: an error answer means the store was
    /// left as it was (a step gives that answer only where the model refuses the operation).
    fn never_changes_state(&self, operation: &NotesOperation) -> bool {
        matches!(operation.call, NotesCall::Get { .. } | NotesCall::List { .. })
            || operation.observation.as_ref().is_some_and(|observed| observed.error_code.is_some())
    }

    /// As [`observes`] says, except that a list whose page was cut (it reached its limit, or
    /// said more notes follow) shows nothing of the notes after its last entry but whether one
    /// exists: a put or a patch of such a note, or of any note when the page says nothing of
    /// more, cannot change its output.
    fn may_observe(&self, observer: &NotesOperation, unknown: &NotesOperation) -> bool {
        let Some(observed) = &observer.observation else { return false };
        if let (NotesCall::Put { id, .. } | NotesCall::Patch { id, .. }, None) = (&unknown.call, &unknown.observation)
            && !self.conditional_unknown.contains(id)
        {
            // Only its vague operations and those pinning a relevant version ([`VersionAccount`]).
            let pins = Pins::of(&observer.call, observed, *id);
            let relevant = self.relevant_versions.get(id).map_or(&[][..], Vec::as_slice);
            return pins.vague
                || pins
                    .versions
                    .into_iter()
                    .flatten()
                    .any(|version| relevant.iter().any(|&(first, last)| (first..=last).contains(&version)));
        }
        if !observes(&observer.call, &unknown.call, &self.reported_ids) {
            return false;
        }
        let (NotesCall::List { limit, .. }, Some(page)) = (&observer.call, &observed.notes) else { return true };
        let cut = observed.more == Some(true) || limit.is_some_and(|limit| page.len() as u64 >= limit);
        let last_shown = page.iter().filter_map(|entry| entry.id).max();
        let (id, changes_existence) = match unknown.call {
            NotesCall::Put { id, .. } | NotesCall::Patch { id, .. } => (id, false),
            NotesCall::Delete { id, .. } => (id, true),
            NotesCall::Create { .. } | NotesCall::Get { .. } | NotesCall::List { .. } => return true,
        };
        let beyond_page = cut && last_shown.is_some_and(|last| id > last);
        !beyond_page || (changes_existence && observed.more.is_some())
    }

    /// A put or patch of unknown outcome called after every one of its observers returned
    /// ([`VersionAccount`]); a delete of unknown outcome of a note that a delete with a
    /// known outcome removed, or called after every operation returned that may show the note
    /// absent ([`AbsenceAccount`]).
    fn needless(&self, unknown: &SearchOperation<NotesOperation>) -> bool {
        let operation = &unknown.operation;
        if operation.observation.is_some() {
            return false;
        }
        match operation.call {
            NotesCall::Put { id, .. } | NotesCall::Patch { id, .. } => {
                !self.conditional_unknown.contains(&id)
                    && self.unknown_write_observers_until.get(&id).is_none_or(|&until| until < unknown.call_position)
            }
            NotesCall::Delete { id, .. } => self.absence.delete_needless(id, unknown.call_position),
            NotesCall::Create { .. } | NotesCall::Get { .. } | NotesCall::List { .. } => false,
        }
    }

    fn conflicts(&self, unknown: &NotesOperation, next: &NotesOperation) -> bool {
        observes(&next.call, &unknown.call, &self.reported_ids)
    }
}

/// Whether `observer`'s output may depend on what `unknown` did: operations on its note, lists
/// that may show that note; and for a create, whatever may see the counter it moved (creates,
/// lists, operations on ids that no create reported; see `drop_unobserved_unknowns`).
fn observes(observer: &NotesCall, unknown: &NotesCall, reported_ids: &BTreeSet<u64>) -> bool {
    let unknown_id = match *unknown {
        NotesCall::Create { .. } => None,
        NotesCall::Get { id }
        | NotesCall::Put { id, .. }
        | NotesCall::Patch { id, .. }
        | NotesCall::Delete { id, .. } => Some(id),
        // A read changes nothing.
        NotesCall::List { .. } => return false,
    };
    match (observer, unknown_id) {
        (NotesCall::List { after, .. }, Some(id)) => id > *after,
        (NotesCall::List { .. }, None) => true,
        (NotesCall::Create { .. }, Some(_)) => false,
        (NotesCall::Create { .. }, None) => true,
        (
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. },
            Some(unknown_id),
        ) => *id == unknown_id,
        // A note an unknown create may have made: ids reported by creates are never its.
        (
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. },
            None,
        ) => !reported_ids.contains(id),
    }
}

/// RFC 7396 JSON Merge Patch.
pub(crate) fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_fields) = patch else {
        return patch.clone();
    };
    let mut fields = match target {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    for (key, patch_value) in patch_fields {
        if patch_value.is_null() {
            fields.remove(key);
        } else {
            let merged = merge_patch(fields.get(key).unwrap_or(&Value::Null), patch_value);
            fields.insert(key.clone(), merged);
        }
    }
    Value::Object(fields)
}

struct InputReader<'a> {
    operation: &'a Operation,
}

impl<'a> InputReader<'a> {
    fn required(&self, name: &str) -> Result<&'a Value, CheckError> {
        match self.operation.input.get(name) {
            Some(value) if !value.is_null() => Ok(value),
            _ => Err(CheckError::operation(self.operation, format!("the input needs {name:?}"))),
        }
    }

    fn optional_number(&self, name: &str) -> Result<Option<u64>, CheckError> {
        match self.operation.input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                CheckError::operation(self.operation, format!("{name:?} must be a non-negative integer"))
            }),
        }
    }

    fn note_id(&self) -> Result<u64, CheckError> {
        self.optional_number("id")?.ok_or_else(|| CheckError::operation(self.operation, "the input needs \"id\""))
    }
}

fn parse_call(operation: &Operation, values: &mut ValueTable) -> Result<NotesCall, CheckError> {
    let input = InputReader { operation };
    if !(operation.input.is_object() || operation.input.is_null()) {
        return Err(CheckError::operation(operation, "the input must be an object"));
    }
    Ok(match operation.function.as_str() {
        "create" => NotesCall::Create { body: values.intern(input.required("body")?) },
        "get" => NotesCall::Get { id: input.note_id()? },
        "list" => NotesCall::List {
            after: input.optional_number("after")?.unwrap_or(0),
            limit: input.optional_number("limit")?,
        },
        "put" => NotesCall::Put {
            id: input.note_id()?,
            body: values.intern(input.required("body")?),
            if_match: input.optional_number("if_match")?,
        },
        "patch" => NotesCall::Patch {
            id: input.note_id()?,
            patch: values.intern(input.required("patch")?),
            if_match: input.optional_number("if_match")?,
        },
        "delete" => NotesCall::Delete { id: input.note_id()?, if_match: input.optional_number("if_match")? },
        other => return Err(CheckError::operation(operation, format!("the notes model has no function {other:?}"))),
    })
}

fn optional_number_field(
    operation: &Operation,
    object: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, CheckError> {
    match object.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            CheckError::operation(operation, format!("the output's {name:?} must be a non-negative integer"))
        }),
    }
}

fn parse_observation(
    operation: &Operation,
    output: &Value,
    values: &mut ValueTable,
) -> Result<NotesObservation, CheckError> {
    let Value::Object(fields) = output else {
        return Err(CheckError::operation(operation, "the output must be an object"));
    };
    let error_code = match fields.get("error") {
        None => None,
        Some(Value::String(code)) => Some(code.clone()),
        Some(Value::Object(error)) => match error.get("code") {
            Some(Value::String(code)) => Some(code.clone()),
            _ => return Err(CheckError::operation(operation, "an error object needs a string \"code\"")),
        },
        Some(_) => return Err(CheckError::operation(operation, "\"error\" must be a string or an object")),
    };
    let notes = match fields.get("notes") {
        None => None,
        Some(Value::Array(entries)) => {
            let mut listed = Vec::with_capacity(entries.len());
            for entry in entries {
                let Value::Object(entry) = entry else {
                    return Err(CheckError::operation(operation, "each listed note must be an object"));
                };
                listed.push(ListedObservation {
                    id: optional_number_field(operation, entry, "id")?,
                    version: optional_number_field(operation, entry, "version")?,
                    note: entry.get("note").map(|note| values.intern(note)),
                });
            }
            Some(listed)
        }
        Some(_) => return Err(CheckError::operation(operation, "\"notes\" must be an array")),
    };
    let more = match fields.get("more") {
        None => None,
        Some(Value::Bool(more)) => Some(*more),
        Some(_) => return Err(CheckError::operation(operation, "\"more\" must be true or false")),
    };
    Ok(NotesObservation {
        error_code,
        id: optional_number_field(operation, fields, "id")?,
        version: optional_number_field(operation, fields, "version")?,
        note: fields.get("note").map(|note| values.intern(note)),
        notes,
        more,
    })
}

/// Turns the history's operations into the model, its search operations and their scopes.
/// Turns operations, given in any order, into search operations as they arrive, so that
/// what the search needs is all that is kept of each (a list's page becomes ids, versions and
/// interned bodies).
#[derive(Debug, Default)]
pub(crate) struct NotesPreparer {
    values: ValueTable,
    prepared: Vec<SearchOperation<NotesOperation>>,
    scopes: Vec<Scope>,
}

impl NotesPreparer {
    pub(crate) fn add(&mut self, operation: &Operation) -> Result<(), CheckError> {
        let values = &mut self.values;
        let call = parse_call(operation, values)?;
        let read_only = matches!(call, NotesCall::Get { .. } | NotesCall::List { .. });
        let observation = match &operation.outcome {
            // A failed operation had no effect, and an unknown read constrains nothing.
            Outcome::Failed => return Ok(()),
            Outcome::Unknown if read_only => return Ok(()),
            Outcome::Unknown | Outcome::Ok(Value::Null) => None,
            Outcome::Ok(output) => Some(parse_observation(operation, output, values)?),
        };
        let scope = match call {
            NotesCall::Create { .. } => {
                let succeeded = observation.as_ref().is_some_and(|observed| observed.error_code.is_none());
                let known_id = observation.as_ref().and_then(|observed| observed.id).filter(|_| succeeded);
                Scope::Create { known_id }
            }
            NotesCall::List { .. } => Scope::List,
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. } => Scope::Note(id),
        };
        self.prepared.push(base_operation(operation, NotesOperation { call, observation }));
        self.scopes.push(scope);
        Ok(())
    }

    /// The model and the operations in call order, with what holds across operations bound.
    pub(crate) fn finish(self) -> (PreparedOperations<NotesModel>, Vec<Scope>) {
        let NotesPreparer { values, prepared, scopes } = self;
        let mut in_call_order: Vec<_> = prepared.into_iter().zip(scopes).collect();
        in_call_order.sort_by_key(|(operation, _)| operation.call_position);
        let (mut prepared, mut scopes): (Vec<_>, Vec<_>) = in_call_order.into_iter().unzip();
        let mut model = NotesModel {
            values,
            ids: IdAssignment::Counter { first_id: 1 },
            reported_ids: BTreeSet::new(),
            reported_versions: BTreeSet::new(),
            highest_version_seen: BTreeMap::new(),
            relevant_versions: BTreeMap::new(),
            conditional_unknown: BTreeSet::new(),
            unknown_write_observers_until: BTreeMap::new(),
            absence: AbsenceAccount::default(),
            liveness: Liveness::default(),
            unreported_bodies_shown_until: Some(usize::MAX),
            bodies_seen: BodiesSeen::default(),
        };
        bind_observed_creates(&model, &mut prepared, &mut scopes);
        bind_gap_fillers(&model, &mut prepared, &mut scopes);
        bind_observed_writes(&model, &mut prepared);
        bind_observed_deletes(&mut prepared);
        model.reported_ids = scopes
            .iter()
            .filter_map(|scope| match *scope {
                Scope::Create { known_id } => known_id,
                _ => None,
            })
            .collect();
        model.reported_versions = prepared
            .iter()
            .filter_map(|operation| match (&operation.operation.call, &operation.operation.observation) {
                (NotesCall::Put { id, .. } | NotesCall::Patch { id, .. }, Some(observed))
                    if observed.error_code.is_none() =>
                {
                    observed.version.map(|version| (*id, version))
                }
                _ => None,
            })
            .collect();
        for operation in &prepared {
            let Some(observed) = &operation.operation.observation else { continue };
            let mut seen = |id: u64, version: Option<u64>| {
                if let Some(version) = version {
                    let highest = model.highest_version_seen.entry(id).or_insert(0);
                    *highest = (*highest).max(version);
                }
            };
            match operation.operation.call {
                NotesCall::Get { id } | NotesCall::Put { id, .. } | NotesCall::Patch { id, .. } => {
                    seen(id, observed.version)
                }
                NotesCall::Create { .. } => seen(observed.id.unwrap_or(u64::MAX), observed.version),
                NotesCall::List { .. } => {
                    for entry in observed.notes.iter().flatten() {
                        seen(entry.id.unwrap_or(u64::MAX), entry.version);
                    }
                }
                NotesCall::Delete { .. } => {}
            }
        }
        let versions = VersionAccount::of(&prepared);
        model.relevant_versions = versions.relevant_versions();
        model.unknown_write_observers_until = versions.observed_until(&model.relevant_versions);
        model.conditional_unknown = versions.conditional_unknown;
        model.absence = AbsenceAccount::of(&prepared);
        (PreparedOperations { model, operations: prepared }, scopes)
    }
}

/// What the operations with a known outcome say of notes being absent, to tell which deletes of
/// unknown outcome are needless ([`Model::needless`]).
///
/// An operation may show note `j` absent when it is refused on `j` (`not_found`, or any refusal
/// but a failed precondition, which needs the note), or is a list whose page does not show `j`
/// although it covers `j` ([`page_last`]), or stops before `j` saying that more notes follow
/// unless another surely does: a note that a create reported before the list was called and
/// that no operation of the history deletes (so it is not `j`, which a delete names).
///
/// Take a delete `d` of unknown outcome of note `j`, called at `c`. If a delete of `j` with a
/// known outcome succeeded, `d` took effect after it or the success would be `not_found`, and
/// after it `d` finds nothing to remove. Otherwise, if every operation that may show `j` absent
/// returned before `c`, or before the create that reported `j` was called: in an order the
/// model accepts where `d` removes `j` (after both), every operation after `d` that depends on
/// `j` would see it absent (ids are never made again), and none returned late enough; so none depends on `j` after `d`, and the same order without `d` is
/// accepted too. Either way `d` is needless.
#[derive(Debug, Default)]
struct AbsenceAccount {
    /// Notes a delete with a known outcome removed.
    deleted: BTreeSet<u64>,
    /// Where the create that reported each note was called.
    created_at: BTreeMap<u64, usize>,
    /// Of each note, the last return of an operation refused on it that may show it absent.
    refused_until: BTreeMap<u64, usize>,
    /// Lists with a page that may show a note absent, by return: the range `(after, last]` of
    /// the notes it may show absent and the ids it shows, in order.
    lists: Vec<(usize, u64, u64, Vec<u64>)>,
}

impl AbsenceAccount {
    fn of(operations: &[SearchOperation<NotesOperation>]) -> AbsenceAccount {
        let mut account = AbsenceAccount::default();
        // Notes that exist from their create's return to the end: no operation deletes them.
        let deleted_ever: BTreeSet<u64> = operations
            .iter()
            .filter_map(|operation| match operation.operation.call {
                NotesCall::Delete { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        let mut lasting: BTreeMap<u64, usize> = BTreeMap::new();
        for operation in operations {
            let observed = operation.operation.observation.as_ref();
            if let (NotesCall::Create { .. }, Some(id)) =
                (&operation.operation.call, observed.and_then(|observed| observed.id))
            {
                account.created_at.insert(id, operation.call_position);
            }
            if let (NotesCall::Create { .. }, Some(returned), Some(id)) =
                (&operation.operation.call, operation.return_position, observed.and_then(|observed| observed.id))
                && observed.is_some_and(|observed| observed.error_code.is_none())
                && !deleted_ever.contains(&id)
            {
                lasting.insert(id, returned);
            }
        }
        for operation in operations {
            let (Some(returned), Some(observed)) = (operation.return_position, &operation.operation.observation) else {
                continue;
            };
            match (&operation.operation.call, observed.error_code.as_deref()) {
                (NotesCall::Create { .. }, _) => {}
                (NotesCall::List { after, limit }, None) => {
                    let Some(covered) = page_last(observed, *after, *limit) else { continue };
                    let surely_more = || {
                        lasting
                            .range(covered.saturating_add(1)..)
                            .any(|(_, &created)| created < operation.call_position)
                    };
                    let last = if covered == u64::MAX || observed.more != Some(true) || surely_more() {
                        covered
                    } else {
                        u64::MAX
                    };
                    let mut shown: Vec<u64> = observed.notes.iter().flatten().filter_map(|entry| entry.id).collect();
                    shown.sort_unstable();
                    account.lists.push((returned, *after, last, shown));
                }
                (NotesCall::List { .. }, Some(_)) => {}
                (NotesCall::Delete { id, .. }, None) => {
                    account.deleted.insert(*id);
                }
                (NotesCall::Get { .. } | NotesCall::Put { .. } | NotesCall::Patch { .. }, None) => {}
                (
                    NotesCall::Get { id }
                    | NotesCall::Put { id, .. }
                    | NotesCall::Patch { id, .. }
                    | NotesCall::Delete { id, .. },
                    Some(code),
                ) => {
                    if code != PRECONDITION_FAILED {
                        let until = account.refused_until.entry(*id).or_insert(returned);
                        *until = (*until).max(returned);
                    }
                }
            }
        }
        account.lists.sort_by_key(|&(returned, ..)| returned);
        account
    }

    /// Whether a delete of `id` called at `call_position` is needless (see above).
    fn delete_needless(&self, id: u64, call_position: usize) -> bool {
        if self.deleted.contains(&id) {
            return true;
        }
        // The delete removes the note after its own call and after the note's create was called.
        let removed_after = call_position.max(self.created_at.get(&id).copied().unwrap_or(0));
        let refused_later = self.refused_until.get(&id).is_some_and(|&until| until > removed_after);
        let first_later = self.lists.partition_point(|&(returned, ..)| returned <= removed_after);
        let listed_without = self.lists[first_later..]
            .iter()
            .any(|(_, after, last, shown)| *after < id && id <= *last && shown.binary_search(&id).is_err());
        !refused_later && !listed_without
    }
}

/// What the operations with a known outcome say of each note's versions, to tell which of them
/// may observe a put or patch of unknown outcome ([`Model::may_observe`]) and which of those
/// writes are needless ([`Model::needless`]).
///
/// A note's version is 1 when it is created and grows by one with each write that changes it,
/// and its id is never reused: so each version of a note is made by exactly one operation. An
/// operation *pins* the versions its output proves the note had: a read or a list page showing
/// version `r` pins `r`; a write that reports making `w` pins `w - 1` and `w`; a write whose
/// precondition `m` held pins `m`; a create pins version 1. An operation that proves something
/// of the version without saying which (a precondition that failed, a success or a page entry
/// that leaves the version out) is *vague*. A *gap* is a version from 2 up to the highest one
/// pinned that no write with a known outcome reports making: only a write of unknown outcome
/// can have made it. A run of gaps `g..=h` is *relevant* with the version after it, `h + 1`,
/// if pinned (it is, unless `h` is the highest pinned).
///
/// The observers of a put or patch `u` of unknown outcome of a note are its vague operations and
/// those pinning a relevant version. Take an order the model accepts in which `u` takes effect
/// after all of them, making version `v`. Not a version a known write reports making (one maker
/// per version). Not a gap of a run `g..=h`: the version after the run, or `h` itself when it is
/// the highest pinned, is pinned by an operation ordered after `u` (versions only grow), which
/// is an observer. So `v` is above every pinned version, and no operation after `u` sees the
/// note's version (it would see `v` or more, above what any pins, and no vague one is left): the
/// operations after `u` on the note are deletes without a precondition, refusals and writes of
/// unknown outcome without a precondition, whose outputs and effects are the same without
/// `u`, and a list after it shows the note only if deleted. So the same order without `u` is
/// accepted too, and the search never linearizes `u` after its observers; with none returning
/// after its call, `u` is needless. A write whose output is not known but that has a
/// precondition takes effect or not by the version, which `u` moves: on a note with one, every
/// operation that may see the note observes `u`, and none is needless.
#[derive(Debug, Default)]
struct VersionAccount {
    notes: BTreeMap<u64, NoteVersions>,
    /// Notes with a write whose output is not known and that has a precondition.
    conditional_unknown: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct NoteVersions {
    /// Versions pinned, with the latest return of an operation pinning each.
    pinned_until: BTreeMap<u64, usize>,
    /// Versions that writes with a known outcome report making.
    reported: BTreeSet<u64>,
    /// The latest return of a vague operation.
    vague_until: Option<usize>,
}

/// What one operation with a known outcome proves of one note's version.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pins {
    versions: [Option<u64>; 3],
    /// The version it reports making.
    reported: Option<u64>,
    vague: bool,
}

impl Pins {
    /// What `call`, answered with `observed`, proves of note `id`'s version.
    fn of(call: &NotesCall, observed: &NotesObservation, id: u64) -> Pins {
        let succeeded = observed.error_code.is_none();
        let refused_by_precondition = observed.error_code.as_deref() == Some(PRECONDITION_FAILED);
        let vague = Pins { vague: true, ..Pins::default() };
        let pinned = |versions: [Option<u64>; 3]| Pins { versions, ..Pins::default() };
        match *call {
            NotesCall::Create { .. } if succeeded && observed.id == Some(id) => {
                pinned([Some(observed.version.unwrap_or(1)), None, None])
            }
            NotesCall::Get { id: own } if own == id && succeeded => match observed.version {
                Some(version) => pinned([Some(version), None, None]),
                None => vague,
            },
            NotesCall::Put { id: own, if_match, .. } | NotesCall::Patch { id: own, if_match, .. } if own == id => {
                if refused_by_precondition {
                    return vague;
                }
                if !succeeded {
                    return Pins::default();
                }
                match observed.version {
                    Some(version) => Pins {
                        versions: [if_match, Some(version.saturating_sub(1)), Some(version)],
                        reported: Some(version),
                        vague: false,
                    },
                    None => vague,
                }
            }
            NotesCall::Delete { id: own, if_match } if own == id => {
                if refused_by_precondition {
                    vague
                } else if succeeded {
                    pinned([if_match, None, None])
                } else {
                    Pins::default()
                }
            }
            NotesCall::List { .. } if succeeded => {
                let entries = observed.notes.as_deref().unwrap_or_default();
                // A page's ids increase; one that does not is refused whatever it shows.
                match entries.binary_search_by_key(&Some(id), |entry| entry.id) {
                    Ok(index) => match entries[index].version {
                        Some(version) => pinned([Some(version), None, None]),
                        None => vague,
                    },
                    Err(_) => Pins::default(),
                }
            }
            _ => Pins::default(),
        }
    }
}

impl VersionAccount {
    fn of(operations: &[SearchOperation<NotesOperation>]) -> VersionAccount {
        let mut account = VersionAccount::default();
        for operation in operations {
            let call = &operation.operation.call;
            if let NotesCall::Put { id, if_match: Some(_), .. }
            | NotesCall::Patch { id, if_match: Some(_), .. }
            | NotesCall::Delete { id, if_match: Some(_) } = *call
                && operation.operation.observation.is_none()
            {
                account.conditional_unknown.insert(id);
            }
            let (Some(returned), Some(observed)) = (operation.return_position, &operation.operation.observation) else {
                continue;
            };
            let ids: Vec<u64> = match *call {
                NotesCall::Create { .. } => observed.id.into_iter().collect(),
                NotesCall::Get { id }
                | NotesCall::Put { id, .. }
                | NotesCall::Patch { id, .. }
                | NotesCall::Delete { id, .. } => {
                    vec![id]
                }
                NotesCall::List { .. } => observed.notes.iter().flatten().filter_map(|entry| entry.id).collect(),
            };
            for id in ids {
                let pins = Pins::of(call, observed, id);
                if pins == Pins::default() {
                    continue;
                }
                let note = account.notes.entry(id).or_default();
                for version in pins.versions.into_iter().flatten() {
                    let until = note.pinned_until.entry(version).or_insert(returned);
                    *until = (*until).max(returned);
                }
                note.reported.extend(pins.reported);
                if pins.vague {
                    note.vague_until = note.vague_until.max(Some(returned));
                }
            }
        }
        account
    }

    /// Of each note with a gap, its relevant versions, as ranges `(first, last)`.
    fn relevant_versions(&self) -> BTreeMap<u64, Vec<(u64, u64)>> {
        let mut relevant = BTreeMap::new();
        for (&id, note) in &self.notes {
            let highest = note.pinned_until.last_key_value().map_or(0, |(&version, _)| version);
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for version in 2..=highest {
                if note.reported.contains(&version) {
                    continue;
                }
                match ranges.last_mut() {
                    Some(range) if range.1 >= version => range.1 = (version + 1).min(highest),
                    _ => ranges.push((version, (version + 1).min(highest))),
                }
            }
            if !ranges.is_empty() {
                relevant.insert(id, ranges);
            }
        }
        relevant
    }

    /// Of each note with an observer of its writes of unknown outcome (see above), the last
    /// return of one.
    fn observed_until(&self, relevant: &BTreeMap<u64, Vec<(u64, u64)>>) -> BTreeMap<u64, usize> {
        let mut observed_until = BTreeMap::new();
        for (&id, note) in &self.notes {
            let ranges = relevant.get(&id).map_or(&[][..], Vec::as_slice);
            let pinned_until = ranges
                .iter()
                .flat_map(|&(first, last)| note.pinned_until.range(first..=last).map(|(_, &returned)| returned))
                .max();
            if let Some(until) = pinned_until.max(note.vague_until) {
                observed_until.insert(id, until);
            }
        }
        observed_until
    }
}

/// Prepares a whole history's operations at once.
#[cfg(test)]
pub(crate) fn prepare(operations: &[Operation]) -> Result<(PreparedOperations<NotesModel>, Vec<Scope>), CheckError> {
    let mut preparer = NotesPreparer::default();
    for operation in operations {
        preparer.add(operation)?;
    }
    Ok(preparer.finish())
}

/// Gives a create whose id is unknown the id a read shows its body under. A note at version 1
/// was never written since its create, so a completed read showing note `j` at version 1
/// with body `b` proves that the create that made `j` had body `b`. When exactly one create
/// of the history has body `b` (the simulator's bodies carry a unique token), that create
/// took effect with id `j` before the read returned, in every linearization: saying so in its
/// observation and its return keeps the same linearizations, and the plan and the search
/// treat it as a create whose id is known. A body seen under two ids, or an id some create
/// reported, is left for the search to refute.
fn bind_observed_creates(model: &NotesModel, operations: &mut [SearchOperation<NotesOperation>], scopes: &mut [Scope]) {
    let mut creates_by_body: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
    let mut reported: BTreeSet<u64> = BTreeSet::new();
    for (index, scope) in scopes.iter().enumerate() {
        let Scope::Create { known_id } = *scope else { continue };
        let NotesCall::Create { body } = operations[index].operation.call else { continue };
        creates_by_body.entry(body).or_default().push(index);
        reported.extend(known_id);
    }
    // (create, id, deadline) for every read that names a create's body at version 1.
    let mut sightings: BTreeMap<usize, (u64, usize)> = BTreeMap::new();
    let mut conflicting: BTreeSet<usize> = BTreeSet::new();
    for operation in operations.iter() {
        let (Some(deadline), Some(observed)) = (operation.return_position, &operation.operation.observation) else {
            continue;
        };
        if observed.error_code.is_some() {
            continue;
        }
        let mut seen: Vec<(u64, ValueId)> = Vec::new();
        match operation.operation.call {
            NotesCall::Get { id } if observed.version == Some(1) => seen.extend(observed.note.map(|note| (id, note))),
            NotesCall::List { .. } => {
                for entry in observed.notes.iter().flatten() {
                    if let (Some(id), Some(1), Some(note)) = (entry.id, entry.version, entry.note) {
                        seen.push((id, note));
                    }
                }
            }
            _ => {}
        }
        for (id, body) in seen {
            let Some([create]) = creates_by_body.get(&body).map(Vec::as_slice) else { continue };
            if scopes[*create] != (Scope::Create { known_id: None }) || !model.is_object(body) {
                continue;
            }
            let refused = operations[*create]
                .operation
                .observation
                .as_ref()
                .is_some_and(|observed| observed.error_code.is_some());
            if refused || reported.contains(&id) {
                conflicting.insert(*create);
                continue;
            }
            match sightings.get_mut(create) {
                Some((bound, earliest)) if *bound == id => *earliest = (*earliest).min(deadline),
                Some(_) => {
                    conflicting.insert(*create);
                }
                None => {
                    sightings.insert(*create, (id, deadline));
                }
            }
        }
    }
    let mut bound_ids: BTreeMap<u64, usize> = BTreeMap::new();
    for (&create, &(id, _)) in &sightings {
        if bound_ids.insert(id, create).is_some() {
            conflicting.insert(create);
        }
    }
    for (create, (id, deadline)) in sightings {
        if conflicting.contains(&create) || bound_ids.get(&id) != Some(&create) {
            continue;
        }
        let operation = &mut operations[create];
        operation.return_position = Some(operation.return_position.map_or(deadline, |own| own.min(deadline)));
        operation.operation.observation.get_or_insert_with(NotesObservation::default).id = Some(id);
        scopes[create] = Scope::Create { known_id: Some(id) };
    }
}

/// A note and a body it had.
type NoteBody = (u64, ValueId);
/// The earliest return of a read showing a note with a body, and the version all such reads
/// show, if they agree.
type Sighting = (usize, Option<u64>);

/// Makes a write of unknown outcome that a read shows take effect before that read returned.
/// A completed operation that shows note `j` with body `b` (a `get`, a write that reports the
/// note, or a list's entry) proves that some operation gave `j` the body `b` before it returned:
/// a put of `b` to `j`, a create of `b` (whose id is `j` or unknown), or a patch of `j` that can
/// merge into `b` (every field it sets is in `b` with that value, merged alike where both are
/// objects, and every field it removes is absent). Not a write that was refused (it changed
/// nothing), nor, when every read showing `b` shows it at one version `v`, a write that reports
/// making another version than `v` (a version is made by one write, the last before the read),
/// or a create when `v` is not 1. When exactly one operation of the history can, and its
/// outcome is unknown, it took effect before the earliest such read returned, in
/// every linearization, making the version the reads show when they agree on one. Giving it
/// that return (and that version as its output, if any) keeps exactly the same linearizations, and spares the search from finding, by backtracking over every operation
/// in between, the one place it had to go. A write called after that return is left alone: no
/// linearization exists, and the search says so.
fn bind_observed_writes(model: &NotesModel, operations: &mut [SearchOperation<NotesOperation>]) {
    // Of each (note, body) seen, the earliest return of an operation showing it, and the
    // version they all show it at, if they do.
    let mut earliest_sighting: BTreeMap<NoteBody, Sighting> = BTreeMap::new();
    for operation in operations.iter() {
        let (Some(returned), Some(observed)) = (operation.return_position, &operation.operation.observation) else {
            continue;
        };
        if observed.error_code.is_some() {
            continue;
        }
        let mut sight = |id: u64, body: ValueId, version: Option<u64>| {
            let (earliest, at) = earliest_sighting.entry((id, body)).or_insert((returned, version));
            *earliest = (*earliest).min(returned);
            if *at != version {
                *at = None;
            }
        };
        match operation.operation.call {
            NotesCall::Get { id } | NotesCall::Put { id, .. } | NotesCall::Patch { id, .. } => {
                if let Some(note) = observed.note {
                    sight(id, note, observed.version);
                }
            }
            NotesCall::List { .. } => {
                for entry in observed.notes.iter().flatten() {
                    if let (Some(id), Some(note)) = (entry.id, entry.note) {
                        sight(id, note, entry.version);
                    }
                }
            }
            NotesCall::Create { .. } | NotesCall::Delete { .. } => {}
        }
    }
    if earliest_sighting.is_empty() {
        return;
    }
    let mut puts: BTreeMap<(u64, ValueId), Vec<usize>> = BTreeMap::new();
    let mut patches_by_note: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut creates_by_body: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        match operation.operation.call {
            NotesCall::Put { id, body, .. } => puts.entry((id, body)).or_default().push(index),
            NotesCall::Patch { id, .. } => patches_by_note.entry(id).or_default().push(index),
            NotesCall::Create { body } => creates_by_body.entry(body).or_default().push(index),
            NotesCall::Get { .. } | NotesCall::List { .. } | NotesCall::Delete { .. } => {}
        }
    }
    let may_produce = |patch_index: usize, body: ValueId| match operations[patch_index].operation.call {
        NotesCall::Patch { patch, .. } => patch_may_produce(model.values.get(patch), model.values.get(body)),
        _ => false,
    };
    // Whether the write at `index` can have made note `id` at `version` (when the sightings
    // agree on one): a refused write made nothing, and one that reports an id or version made
    // that one.
    let may_have_made = |index: usize, id: u64, version: Option<u64>| {
        let operation = &operations[index].operation;
        let Some(observed) = &operation.observation else { return true };
        let creates_another =
            matches!(operation.call, NotesCall::Create { .. }) && observed.id.is_some_and(|own| own != id);
        let other_version = version.is_some_and(|version| observed.version.is_some_and(|own| own != version));
        observed.error_code.is_none() && !creates_another && !other_version
    };
    let producers = |id: u64, body: ValueId, version: Option<u64>| {
        let creates = creates_by_body
            .get(&body)
            .into_iter()
            .flatten()
            .filter(|&&create| version.is_none_or(|version| version == 1) && may_have_made(create, id, version));
        let patches = patches_by_note.get(&id).into_iter().flatten().filter(|&&patch| may_produce(patch, body));
        let puts = puts.get(&(id, body)).into_iter().flatten();
        creates.chain(patches).chain(puts).filter(|&&index| may_have_made(index, id, version)).count()
    };
    let mut deadlines: Vec<(usize, Sighting)> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        if operation.return_position.is_some() {
            continue;
        }
        let sightings: Vec<(NoteBody, Sighting)> = match operation.operation.call {
            NotesCall::Put { id, body, .. } => {
                earliest_sighting.get(&(id, body)).map(|&sighting| ((id, body), sighting)).into_iter().collect()
            }
            NotesCall::Patch { id, .. } => earliest_sighting
                .range((id, ValueId::MIN)..=(id, ValueId::MAX))
                .filter(|&(&(_, body), _)| may_produce(index, body))
                .map(|(&key, &sighting)| (key, sighting))
                .collect(),
            _ => Vec::new(),
        };
        let binding = sightings
            .into_iter()
            .filter(|&((id, body), (returned, version))| {
                returned > operation.call_position && producers(id, body, version) == 1
            })
            .map(|(_, sighting)| sighting)
            .min();
        deadlines.extend(binding.map(|binding| (index, binding)));
    }
    for (index, (deadline, version)) in deadlines {
        operations[index].return_position = Some(deadline);
        // It made the version the reads show, if they agree on one: say so, as if it reported it.
        if let Some(version) = version {
            operations[index].operation.observation =
                Some(NotesObservation { version: Some(version), ..NotesObservation::default() });
        }
    }
}

/// Makes the one delete of a note, when its outcome is unknown, take effect before a read shows
/// the note gone. A note whose create returned before a completed operation was called existed
/// from then on until a delete removed it (ids are never made again), so that operation seeing
/// it absent (a `get`, put, patch or delete answered `not_found`, or a list page that covers its
/// id and does not show it) proves a delete of it took effect before the operation returned.
/// When the history has exactly one delete of that note that was not refused, and its outcome
/// is unknown, giving it
/// that return keeps exactly the same linearizations (as for writes above).
fn bind_observed_deletes(operations: &mut [SearchOperation<NotesOperation>]) {
    let mut created_by: BTreeMap<u64, usize> = BTreeMap::new();
    let mut deletes: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        match operation.operation.call {
            NotesCall::Create { .. } => {
                let observed = operation.operation.observation.as_ref();
                if let (Some(returned), Some(id)) =
                    (operation.return_position, observed.and_then(|observed| observed.id))
                {
                    created_by.insert(id, returned);
                }
            }
            NotesCall::Delete { id, .. } => {
                // A refused delete removed nothing.
                let refused =
                    operation.operation.observation.as_ref().is_some_and(|observed| observed.error_code.is_some());
                if !refused {
                    deletes.entry(id).or_default().push(index);
                }
            }
            _ => {}
        }
    }
    let mut deadlines: BTreeMap<usize, usize> = BTreeMap::new();
    let mut absent = |id: u64, called: usize, returned: usize| {
        let existed = created_by.get(&id).is_some_and(|&created| created < called);
        let Some(&[delete]) = deletes.get(&id).map(Vec::as_slice) else { return };
        if existed && operations[delete].return_position.is_none() && operations[delete].call_position < returned {
            let deadline = deadlines.entry(delete).or_insert(returned);
            *deadline = (*deadline).min(returned);
        }
    };
    for operation in operations.iter() {
        let (Some(returned), Some(observed)) = (operation.return_position, &operation.operation.observation) else {
            continue;
        };
        let called = operation.call_position;
        match &operation.operation.call {
            NotesCall::Get { id }
            | NotesCall::Put { id, .. }
            | NotesCall::Patch { id, .. }
            | NotesCall::Delete { id, .. } => {
                if observed.error_code.as_deref() == Some(NOT_FOUND) {
                    absent(*id, called, returned);
                }
            }
            NotesCall::List { after, limit } => {
                let Some(page) = &observed.notes else { continue };
                if observed.error_code.is_some() {
                    continue;
                }
                let shown: BTreeSet<u64> = page.iter().filter_map(|entry| entry.id).collect();
                let cut = observed.more == Some(true) || limit.is_some_and(|limit| page.len() as u64 >= limit);
                let covered_until = if cut { shown.last().copied().unwrap_or(*after) } else { u64::MAX };
                if covered_until <= *after {
                    continue;
                }
                for (&id, _) in created_by.range(after + 1..=covered_until) {
                    if !shown.contains(&id) {
                        absent(id, called, returned);
                    }
                }
            }
            NotesCall::Create { .. } => {}
        }
    }
    for (delete, deadline) in deadlines {
        operations[delete].return_position = Some(deadline);
    }
}

/// Whether merging `patch` into some note (RFC 7396) can give `body`: every field the patch
/// sets is in `body` with that value (merged alike where both are objects), and every field
/// it removes is absent.
fn patch_may_produce(patch: &Value, body: &Value) -> bool {
    let Value::Object(patch_fields) = patch else { return patch == body };
    let Value::Object(body_fields) = body else { return false };
    patch_fields.iter().all(|(key, patch_value)| match (patch_value, body_fields.get(key)) {
        (Value::Null, found) => found.is_none(),
        (_, None) => false,
        (patch_value, Some(body_value)) => patch_may_produce(patch_value, body_value),
    })
}

/// Gives a create whose id is unknown the id it must have had, where the other creates' ids
/// prove it. Ids are handed out one by one, so an id `j` below the largest id a create reported,
/// that no create reported, went to a create whose id is unknown, which took effect before the
/// create that reported the next larger id returned. When exactly one create whose id is unknown
/// was called before that return, it took effect with id `j` before that return in every
/// linearization: saying so in its observation and its return keeps the same linearizations,
/// and lets the plan treat it as a create whose id is known.
fn bind_gap_fillers(model: &NotesModel, operations: &mut [SearchOperation<NotesOperation>], scopes: &mut [Scope]) {
    let mut known: BTreeMap<u64, usize> = BTreeMap::new();
    let mut fillers: Vec<usize> = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        let Scope::Create { known_id } = *scope else { continue };
        let operation = &operations[index].operation;
        match known_id {
            Some(id) => {
                if known.insert(id, index).is_some() {
                    return; // Two creates reported one id: the plan refutes that.
                }
            }
            None => {
                let NotesCall::Create { body } = operation.call else { continue };
                // A create refused or with a body that is no object never takes an id.
                let refused = operation.observation.as_ref().is_some_and(|observed| observed.error_code.is_some());
                if !refused && model.is_object(body) {
                    fillers.push(index);
                }
            }
        }
    }
    let Some((&largest_id, _)) = known.last_key_value() else { return };
    // More unreported ids than creates to fill them cannot be linearized; the search says so.
    if largest_id.saturating_sub(known.len() as u64) > fillers.len() as u64 {
        return;
    }
    let mut bindings: Vec<(usize, u64, usize)> = Vec::new();
    for gap in (1..largest_id).filter(|id| !known.contains_key(id)) {
        let Some((_, &next_index)) = known.range(gap + 1..).next() else { continue };
        let Some(deadline) = operations[next_index].return_position else { continue };
        let mut candidates = fillers.iter().filter(|&&index| operations[index].call_position < deadline);
        if let (Some(&filler), None) = (candidates.next(), candidates.next()) {
            if bindings.iter().any(|&(bound, ..)| bound == filler) {
                return; // One create cannot fill two ids: no linearization; leave that to the search.
            }
            bindings.push((filler, gap, deadline));
        }
    }
    for (index, id, deadline) in bindings {
        let operation = &mut operations[index];
        operation.return_position = Some(operation.return_position.map_or(deadline, |own| own.min(deadline)));
        operation.operation.observation.get_or_insert_with(NotesObservation::default).id = Some(id);
        scopes[index] = Scope::Create { known_id: Some(id) };
    }
}

/// How to check a notes history.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotesPlan {
    /// Search the whole history at once.
    Whole,
    /// The creates alone show that no linearization exists.
    Refuted { reason: String, operation_ids: Vec<u64> },
    /// Search each partition on its own; the history is linearizable exactly when all are.
    Partitions(Vec<NotesPartition>),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotesPartition {
    pub(crate) ids: IdAssignment,
    /// Indices into the prepared operations.
    pub(crate) operation_indices: Vec<usize>,
}

/// Decides between partitions and the whole-history search (see the `checker` module documentation).
pub(crate) fn plan<O>(operations: &[SearchOperation<O>], scopes: &[Scope]) -> NotesPlan {
    if scopes.contains(&Scope::List) {
        return NotesPlan::Whole;
    }
    // Creates in call order, each with its id if known.
    let mut creates: Vec<(Option<u64>, usize)> = scopes
        .iter()
        .enumerate()
        .filter_map(|(index, scope)| match *scope {
            Scope::Create { known_id } => Some((known_id, index)),
            _ => None,
        })
        .collect();
    creates.sort_by_key(|&(_, index)| operations[index].call_position);
    let has_unknown_id = creates.iter().any(|(known_id, _)| known_id.is_none());
    let has_known_id = creates.iter().any(|(known_id, _)| known_id.is_some());
    let (groups, open_group) = if has_unknown_id && has_known_id {
        // Ids below the first id no create reported went to the creates that reported them, so a
        // create whose id is unknown either never took effect or took a later id: it took effect
        // after the create that reported the id just below, the anchor. The groups of creates
        // whose ids are known, from the anchor's on, and the creates whose ids are unknown form
        // the open group; the creates of the groups before took effect before any of its creates.
        let reported: BTreeSet<u64> = creates.iter().filter_map(|&(known_id, _)| known_id).collect();
        let first_unreported = (1..).find(|id| !reported.contains(id)).expect("finitely many ids are reported");
        let anchor = first_unreported - 1;
        let (known, unknown): (Vec<_>, Vec<_>) = creates.into_iter().partition(|(known_id, _)| known_id.is_some());
        let mut groups = group_by_overlap(operations, known);
        let split = if anchor == 0 {
            0
        } else {
            groups
                .iter()
                .position(|group| group.iter().any(|&(known_id, _)| known_id == Some(anchor)))
                .expect("a create reported the anchor")
        };
        let mut open_group: CreateGroup = groups.split_off(split).into_iter().flatten().collect();
        open_group.extend(unknown);
        (groups, Some(open_group))
    } else {
        // A create whose id is unknown may take effect until the end of time, so it and every
        // create called after it form the last group: the open group.
        let mut groups = group_by_overlap(operations, creates);
        let open_group = match groups.last() {
            Some(group) if group.iter().any(|(known_id, _)| known_id.is_none()) => groups.pop(),
            _ => None,
        };
        (groups, open_group)
    };
    // The closed groups' creates all took effect before any create of the open group was called
    // (or, when the open group's creates whose ids are known are counted in, before any of them).
    let mut closed_creates: Vec<(u64, usize)> =
        groups.iter().flatten().filter_map(|&(known_id, index)| known_id.map(|id| (id, index))).collect();
    if let Some(refutation) = refute_by_creates(operations, &mut closed_creates) {
        return refutation;
    }
    let open_first_id = closed_creates.len() as u64 + 1;
    let mut partitions: Vec<NotesPartition> = groups
        .iter()
        .map(|group| NotesPartition {
            ids: IdAssignment::Sequence(sorted_known_ids(group)),
            operation_indices: group.iter().map(|&(_, index)| index).collect(),
        })
        .collect();
    let mut partition_of_id: BTreeMap<u64, usize> = BTreeMap::new();
    for (partition_index, group) in groups.iter().enumerate() {
        for &(known_id, _) in group {
            partition_of_id.extend(known_id.map(|id| (id, partition_index)));
        }
    }
    // The open group continues the counter after the closed groups' ids, and holds every
    // operation on a later id, as any of its creates may have made that note.
    let open_partition_index = open_group.map(|group| {
        partitions.push(NotesPartition {
            ids: IdAssignment::Counter { first_id: open_first_id },
            operation_indices: group.iter().map(|&(_, index)| index).collect(),
        });
        partitions.len() - 1
    });
    // Without an open group, a note that no create made never exists: each is its own partition.
    let mut orphan_partition_by_id: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, scope) in scopes.iter().enumerate() {
        let Scope::Note(id) = *scope else { continue };
        let partition_index = match (partition_of_id.get(&id), open_partition_index) {
            (Some(&partition_index), _) => partition_index,
            (None, Some(open_index)) if id >= open_first_id => open_index,
            (None, _) => *orphan_partition_by_id.entry(id).or_insert_with(|| {
                partitions
                    .push(NotesPartition { ids: IdAssignment::Sequence(Vec::new()), operation_indices: Vec::new() });
                partitions.len() - 1
            }),
        };
        partitions[partition_index].operation_indices.push(index);
    }
    for partition in &mut partitions {
        partition.operation_indices.sort_unstable();
    }
    NotesPlan::Partitions(partitions)
}

type CreateGroup = Vec<(Option<u64>, usize)>;

/// Groups creates (in call order) whose intervals overlap, directly or through others; a create
/// whose id is unknown lasts until the end of time.
fn group_by_overlap<O>(operations: &[SearchOperation<O>], creates: CreateGroup) -> Vec<CreateGroup> {
    let mut groups: Vec<CreateGroup> = Vec::new();
    let mut group_end: Option<usize> = None;
    for (known_id, index) in creates {
        let end = if known_id.is_some() { operations[index].return_position.unwrap_or(usize::MAX) } else { usize::MAX };
        match (groups.last_mut(), group_end) {
            (Some(group), Some(current_end)) if operations[index].call_position < current_end => {
                group.push((known_id, index));
                group_end = Some(current_end.max(end));
            }
            _ => {
                groups.push(vec![(known_id, index)]);
                group_end = Some(end);
            }
        }
    }
    groups
}

fn sorted_known_ids(group: &[(Option<u64>, usize)]) -> Vec<u64> {
    let mut ids: Vec<u64> = group.iter().filter_map(|&(known_id, _)| known_id).collect();
    ids.sort_unstable();
    ids
}

/// The global rules for creates that all took effect and reported their ids, before any other
/// create was called: the ids are exactly `1..=N`, and a create that returned before another was
/// called has the smaller id.
fn refute_by_creates<O>(operations: &[SearchOperation<O>], creates: &mut [(u64, usize)]) -> Option<NotesPlan> {
    creates.sort_unstable();
    for (rank, &(id, index)) in creates.iter().enumerate() {
        if id != rank as u64 + 1 {
            let mut operation_ids = vec![operations[index].id];
            if rank > 0 && creates[rank - 1].0 == id {
                operation_ids.insert(0, operations[creates[rank - 1].1].id);
            }
            let reason = format!(
                "{count} creates took effect before any other was called, so their ids are 1..={count}, \
                 but create {} returned id {id}",
                operations[index].id,
                count = creates.len(),
            );
            return Some(NotesPlan::Refuted { reason, operation_ids });
        }
    }
    let mut earliest_return_above: Option<usize> = None;
    for &(id, index) in creates.iter().rev() {
        if let Some(later) = earliest_return_above
            && operations[later].return_position < Some(operations[index].call_position)
        {
            return Some(NotesPlan::Refuted {
                reason: format!(
                    "create {} returned id {id} but create {} returned a larger id before it was called",
                    operations[index].id, operations[later].id
                ),
                operation_ids: vec![operations[index].id, operations[later].id],
            });
        }
        let return_position = operations[index].return_position;
        if earliest_return_above.is_none_or(|later| return_position < operations[later].return_position) {
            earliest_return_above = Some(index);
        }
    }
    None
}
