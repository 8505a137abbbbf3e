//! The search: Wing & Gong's backtracking over linearization orders, with Lowe's
//! just-in-time linearization and memoization of (linearized set, model state),
//! as Porcupine does it; iterative, with a step budget.
//!
//! The history is a list of call and return entries in real-time order. The search
//! walks it from the front: at a call entry it tries to linearize that operation
//! now (the model accepts the operation's observed output in the current state,
//! and the pair (linearized set, new state) was never explored before); if so it
//! removes the operation's two entries from the list, pushes an undo record and
//! starts again from the front. At a return entry of an operation that is not
//! linearized yet, no order extending the current prefix can exist (that
//! operation would have to take effect after it returned), so the search pops the
//! last choice and tries the next call after it. An operation with an unknown
//! outcome has its return entry at the end of time, so it never forces a
//! backtrack; and the search succeeds as soon as every operation with a known
//! outcome is linearized, because the unknown ones left over may simply never
//! have taken effect.
//!
//! Memoization is sound because the future of the search depends only on which
//! operations are linearized and on the model state: the remaining entries are
//! exactly those of the other operations.

use std::collections::BTreeSet;

/// A sequential specification whose operations carry their observed output.
pub(crate) trait Model {
    type State: Clone + Ord;
    type Operation;

    fn initial_state(&self) -> Self::State;

    /// The state after `operation` when the model, applied in `state`, gives the output that was
    /// observed (any output when the outcome is unknown); `None` when it cannot.
    fn step(&mut self, state: &Self::State, operation: &Self::Operation) -> Option<Self::State>;
}

/// An operation as the search sees it: its model input and observation, and its interval.
#[derive(Debug, Clone)]
pub(crate) struct SearchOperation<O> {
    pub id: u64,
    pub operation: O,
    pub call_position: usize,
    /// `None` for an unknown outcome: it may take effect at any time after its call, or never.
    pub return_position: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchResult {
    Linearizable,
    /// The ids of the longest prefix of a linearization the search found, in order.
    NotLinearizable {
        longest_prefix: Vec<u64>,
    },
    /// The budget (steps, time or memory) ran out.
    OutOfBudget,
}

/// What a check may spend, shared by all searches of one history, and what it spent.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    pub steps_left: u64,
    /// Wall-clock limit; `None` inside simulated runs, which must not read the clock.
    #[allow(clippy::disallowed_types)]
    pub deadline: Option<std::time::Instant>,
    /// Memoized search states allowed in one search (a proxy for memory).
    pub max_states: Option<usize>,
    /// The most memoized states any search held.
    pub peak_states: usize,
    /// Why the budget ran out, once it has.
    pub exhausted: Option<Exhaustion>,
}

/// Which limit stopped a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhaustion {
    Steps,
    Time,
    Memory,
}

impl Budget {
    /// Takes one step; false (and the reason recorded) when a limit is reached.
    fn take_step(&mut self, states: usize) -> bool {
        if self.steps_left == 0 {
            self.exhausted = Some(Exhaustion::Steps);
            return false;
        }
        self.steps_left -= 1;
        if self.max_states.is_some_and(|max| states > max) {
            self.exhausted = Some(Exhaustion::Memory);
            return false;
        }
        // Reading the clock costs tens of nanoseconds: once every 4096 steps is enough.
        #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
        if self.steps_left.is_multiple_of(4096)
            && let Some(deadline) = self.deadline
            && std::time::Instant::now() >= deadline
        {
            self.exhausted = Some(Exhaustion::Time);
            return false;
        }
        true
    }
}

const NONE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    operation_index: usize,
    is_call: bool,
}

/// A doubly linked list of entries over index arrays; removal and re-insertion in LIFO
/// order (dancing links) restore it exactly.
#[derive(Debug)]
struct EntryList {
    entries: Vec<Entry>,
    next: Vec<usize>,
    previous: Vec<usize>,
    /// Index of each operation's return entry.
    return_entry_by_operation: Vec<usize>,
    head: usize,
}

impl EntryList {
    fn new<O>(operations: &[SearchOperation<O>]) -> EntryList {
        // Sort key: position, with unknown returns at the end of time.
        let mut keyed: Vec<(usize, usize, Entry)> = Vec::with_capacity(operations.len() * 2);
        for (operation_index, operation) in operations.iter().enumerate() {
            keyed.push((operation.call_position, operation_index, Entry { operation_index, is_call: true }));
            let return_key = operation.return_position.unwrap_or(usize::MAX);
            keyed.push((return_key, operation_index, Entry { operation_index, is_call: false }));
        }
        // Positions of distinct events are distinct, so ties happen only between returns (at the
        // end of time, or one given another's position as a deadline), whose order does not
        // matter; the operation index makes the order total.
        keyed.sort_by_key(|&(position, operation_index, entry)| (position, !entry.is_call, operation_index));
        let entries: Vec<Entry> = keyed.into_iter().map(|(_, _, entry)| entry).collect();
        let count = entries.len();
        let head = count;
        let mut next = vec![NONE; count + 1];
        let mut previous = vec![NONE; count + 1];
        // Entry i follows entry i - 1, and the head comes before entry 0.
        for (index, previous_index) in previous.iter_mut().enumerate().take(count) {
            *previous_index = if index == 0 { head } else { index - 1 };
        }
        for (index, next_index) in next.iter_mut().enumerate().take(count) {
            *next_index = if index + 1 < count { index + 1 } else { NONE };
        }
        next[head] = if count > 0 { 0 } else { NONE };
        let mut return_entry_by_operation = vec![NONE; operations.len()];
        for (index, entry) in entries.iter().enumerate() {
            if !entry.is_call {
                return_entry_by_operation[entry.operation_index] = index;
            }
        }
        EntryList { entries, next, previous, return_entry_by_operation, head }
    }

    fn unlink(&mut self, index: usize) {
        let (previous, next) = (self.previous[index], self.next[index]);
        self.next[previous] = next;
        if next != NONE {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, index: usize) {
        let (previous, next) = (self.previous[index], self.next[index]);
        self.next[previous] = index;
        if next != NONE {
            self.previous[next] = index;
        }
    }

    /// Removes an operation's call entry and its return entry.
    fn lift(&mut self, call_entry: usize) {
        let return_entry = self.return_entry_by_operation[self.entries[call_entry].operation_index];
        self.unlink(call_entry);
        self.unlink(return_entry);
    }

    fn unlift(&mut self, call_entry: usize) {
        let return_entry = self.return_entry_by_operation[self.entries[call_entry].operation_index];
        self.relink(return_entry);
        self.relink(call_entry);
    }
}

/// Runs the search, spending `budget`.
pub(crate) fn search<M: Model>(
    model: &mut M,
    operations: &[SearchOperation<M::Operation>],
    budget: &mut Budget,
) -> SearchResult {
    let result = search_states(model, operations, budget);
    budget.peak_states = budget.peak_states.max(result.1);
    result.0
}

fn search_states<M: Model>(
    model: &mut M,
    operations: &[SearchOperation<M::Operation>],
    budget: &mut Budget,
) -> (SearchResult, usize) {
    let mut list = EntryList::new(operations);
    let word_count = operations.len().div_ceil(64);
    let mut linearized: Vec<u64> = vec![0; word_count];
    let mut explored: BTreeSet<(Vec<u64>, M::State)> = BTreeSet::new();
    // Undo records: the call entry linearized, and the state before it.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.initial_state();
    let mut known_outcomes_left = operations.iter().filter(|operation| operation.return_position.is_some()).count();
    let mut longest_prefix: Vec<u64> = Vec::new();
    let mut cursor = list.next[list.head];
    loop {
        if known_outcomes_left == 0 {
            return (SearchResult::Linearizable, explored.len());
        }
        if !budget.take_step(explored.len()) {
            return (SearchResult::OutOfBudget, explored.len());
        }
        // While an operation with a known outcome is unlinearized its return entry is in the
        // list, so the walk meets it before running off the end; the end is treated as a
        // return all the same.
        if cursor != NONE && list.entries[cursor].is_call {
            let entry = list.entries[cursor];
            let operation = &operations[entry.operation_index];
            if let Some(next_state) = model.step(&state, &operation.operation) {
                let (word, bit) = (entry.operation_index / 64, 1u64 << (entry.operation_index % 64));
                linearized[word] |= bit;
                if explored.insert((linearized.clone(), next_state.clone())) {
                    stack.push((cursor, std::mem::replace(&mut state, next_state)));
                    list.lift(cursor);
                    if operation.return_position.is_some() {
                        known_outcomes_left -= 1;
                    }
                    if stack.len() > longest_prefix.len() {
                        longest_prefix = stack
                            .iter()
                            .map(|&(call_entry, _)| operations[list.entries[call_entry].operation_index].id)
                            .collect();
                    }
                    cursor = list.next[list.head];
                    continue;
                }
                linearized[word] &= !bit;
            }
            cursor = list.next[cursor];
        } else {
            let Some((call_entry, previous_state)) = stack.pop() else {
                return (SearchResult::NotLinearizable { longest_prefix }, explored.len());
            };
            let operation_index = list.entries[call_entry].operation_index;
            list.unlift(call_entry);
            linearized[operation_index / 64] &= !(1u64 << (operation_index % 64));
            if operations[operation_index].return_position.is_some() {
                known_outcomes_left += 1;
            }
            state = previous_state;
            cursor = list.next[call_entry];
        }
    }
}
