//! The search: Wing & Gong's backtracking over linearization orders, with Lowe's
//! just-in-time linearization and memoization of (linearized set, model state),
//! as Porcupine does it; iterative, with a budget.
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
//!
//! # The memo holds fingerprints
//!
//! A memo entry is a 128-bit fingerprint of the pair, not the pair: the linearized
//! set's part is the XOR of one pseudo-random key per linearized operation (Zobrist
//! hashing), updated in O(1) per step, and the model keeps its state's part the same
//! way ([`Model::fingerprint`]). So a step costs no copy of the state or of the set,
//! and a state in the memo costs 16 bytes however large the history, where a copy of
//! the set and the state costs kilobytes on long histories. Two different pairs share
//! a fingerprint only when the XOR of the keys they do not share is zero, which for
//! pseudo-random keys happens with probability 2^-128 per pair: with a billion states
//! (more than any budget allows) the chance that any two collide is below 10^-20. A
//! collision could only make the search skip a pair it never explored, so the one
//! verdict it could ever falsify is "not linearizable"; "linearizable" always comes
//! with an order the model accepted step by step.
//!
//! # Few unknown outcomes first, in turns
//!
//! Most operations with an unknown outcome in a history never took effect, or took
//! effect where a read shows it. So one way of searching first looks for a
//! linearization in which none of them takes effect, then at most 1, 2, 4 and so on,
//! and at last any number, each time with a fresh memo (a node's future depends on how
//! many more may take effect). A linearization found at any limit is one of the history;
//! only the search without a limit proves there is none. A linearizable history is so
//! found without trying every subset of unknown outcomes that a dead end of the search
//! would otherwise try before it backtracks; but when a linearization needs some unknown
//! outcomes, proving that none exists with fewer can cost more than the plain search.
//! Neither way is always faster, so they take turns, each from scratch, with 20,000
//! steps at first (8 per operation on long histories) and twice as many each round, until
//! one decides: the turns cost at most about four times the faster way alone.
//!
//! # Unknown outcomes that nothing can observe any more
//!
//! An operation with an unknown outcome that the search linearizes after every
//! operation that could observe it ([`Model::may_observe`]: those with a known output
//! that may depend on it, returning after it was called) changes nothing anyone saw:
//! the same order without it is a linearization too. So the search never linearizes
//! such an operation once all its observers are linearized, which keeps it from trying
//! every unknown outcome at every later point of a long history.
//!
//! What counts as an observer is the model's to say, and may be much less than every
//! operation that could see the state it changed: a write of unknown outcome whose note's
//! versions leave it nothing to have made that anyone sees is observed only by what could
//! show such a version. And an operation with no observer at all ([`Model::needless`]: in
//! every order the model accepts with it, the same order without it is accepted too) is never
//! tried.
//!
//! Two more rules keep at least one linearization of every linearizable history, so
//! they prune without changing a verdict:
//!
//! - An unknown outcome whose step leaves the state's fingerprint as it was (a write
//!   refused by its precondition, or one to a note nothing observes any more) is never
//!   linearized there: the node without it has the same future and more choices.
//! - Unknown outcomes are linearized in runs, and a run ends with a known operation that
//!   conflicts ([`Model::conflicts`]: may not commute) with every unknown outcome of the
//!   run that no later unknown outcome of the run conflicts with. In any linearization,
//!   an unknown outcome that commutes with the rest of its run and with the known
//!   operation after it can be moved after that operation: no state and no output
//!   changes, and it has no return to respect. Each such move takes one unknown outcome
//!   one place later past the run and the others of the run one place earlier, so the
//!   sum of the unknown outcomes' places grows and the moves stop, at a linearization
//!   that keeps the rule (an unknown outcome moved past the last known operation is
//!   dropped). The unknown outcomes of the current run that still wait for a conflict
//!   are part of the node's memo entry (a key each), so that a node reached with them
//!   never hides the same pair reached without.
//!
//! # Unknown outcomes of a closed part
//!
//! A model may split its state into parts that one operation alone reads and changes (a
//! note, [`Model::part`]), and say when a part is *closed* ([`Model::part_closed`]: a
//! deleted note, whose id is never made again): from then on no step of an unknown outcome
//! of that part changes the state's fingerprint, so the search never linearizes one there.
//! The unknown outcomes linearized in a part (outside a class) are keyed in the memo by the
//! part, and only while it is open. Two nodes that differ only in which unknown outcomes of
//! closed parts they linearized have the same future: the same known operations are left,
//! and the unknown ones left that differ can never be linearized (a closed part stays closed).
//! So they share a memo entry, and a dead end reached after any subset of a deleted note's
//! writes is explored once, not once per subset. The part's closedness follows from the
//! node's memo entry, or else nothing more is ever linearized in the part either way (a
//! note whose presence the fingerprint leaves out is one nothing observes any more).

//!
//! # Orders the outputs prove
//!
//! A model may name pairs of operations whose outputs put one before the other in every
//! order it accepts ([`Model::order_constraints`]: a note's versions only grow, so a read
//! of version 3 comes before the write that made version 4). The search never linearizes
//! an operation before those that must precede it: every linearization keeps these pairs,
//! so none is lost, and the dead ends where a write went before a read of the version
//! before it are never entered.
//!
//! # Reads first, with no alternative
//!
//! An operation with a known outcome that changes nothing when it gives its output (a read,
//! a refused write: [`Model::never_changes_state`]) and that the model accepts at a node is
//! linearized there, and the node tries nothing else. Take any linearization that extends
//! the node with the read later: moving the read to the node keeps real time (the read is a
//! candidate, so nothing left returned before its call, and whatever it passes was not
//! called after it returned, or the read would not have been reached), keeps every state
//! and output (the read changes nothing and its output is right at the node), and is
//! again of the form the other rules keep (the read conflicts with the unknown outcomes
//! waiting at the node, or it would not be a candidate, and it ends their run). So the node
//! has a linearization exactly when the node after the read has one, and when the memo
//! says that node was explored already, the node fails at once.

/// A sequential specification whose operations carry their observed output.
pub(crate) trait Model {
    type State;
    type Operation;
    /// What [`Model::undo`] needs to take a step back.
    type Undo;

    /// Readies the model for a search of `operations` (a model may keep what it learns of
    /// them, such as which parts of the state they can still observe).
    fn begin(&mut self, _operations: &[SearchOperation<Self::Operation>]) {}

    fn initial_state(&self) -> Self::State;

    /// The state's part of a memo entry: equal states give equal fingerprints, and different
    /// states differ but with probability about 2^-128 (see the module documentation).
    fn fingerprint(&self, state: &Self::State) -> u128;

    /// Applies `operation` when the model, applied in `state`, gives the output that was
    /// observed (any output when the outcome is unknown), and says how to undo it; leaves
    /// `state` as it was and returns `None` when it cannot.
    fn step(&mut self, state: &mut Self::State, operation: &Self::Operation) -> Option<Self::Undo>;

    /// Reverts the step that returned `undo` (steps are undone last first).
    fn undo(&mut self, state: &mut Self::State, undo: Self::Undo);

    /// Whether `observer`'s observed output may differ depending on whether `unknown`, an
    /// operation with an unknown outcome, took effect before it. `true` is always safe.
    fn may_observe(&self, observer: &Self::Operation, unknown: &Self::Operation) -> bool;

    /// Whether `unknown`, an operation with an unknown outcome, is needless: whenever the model
    /// accepts an order of the operations with it, it accepts the same order without it (for
    /// instance because a note's versions leave it nothing to have made). The search never
    /// linearizes a needless operation. `false` is always safe.
    fn needless(&self, _unknown: &SearchOperation<Self::Operation>) -> bool {
        false
    }

    /// Whether `next` may fail to commute with `unknown`, an operation with an unknown
    /// outcome that took effect: applying them in either order may leave different states, or
    /// give `next` a different output. `true` is always safe.
    fn conflicts(&self, unknown: &Self::Operation, next: &Self::Operation) -> bool;

    /// The class of `unknown`, an operation with an unknown outcome, if the operations of
    /// this search cannot tell its members apart: whichever of them took effect, as many
    /// give the same futures (see the module documentation). Equal classes must have equal
    /// keys, and different ones different keys but with probability about 2^-128. Asked
    /// after `begin`.
    fn interchangeable_class(&self, _unknown: &SearchOperation<Self::Operation>) -> Option<u128> {
        None
    }

    /// Pairs `(a, b)` of indices of operations with a known outcome such that `a` comes before
    /// `b` in every order the model accepts with their outputs (for instance by the versions
    /// they report). None is always safe.
    fn order_constraints(&self, _operations: &[SearchOperation<Self::Operation>]) -> Vec<(usize, usize)> {
        Vec::new()
    }

    /// Whether a step of `operation`, whenever it gives the output observed, leaves the state
    /// as it was (a read, a refused write). `false` is always safe.
    fn never_changes_state(&self, _operation: &Self::Operation) -> bool {
        false
    }

    /// The part of the state that `operation` alone reads and changes (one note), if any: see
    /// [`Model::part_closed`].
    fn part(&self, _operation: &Self::Operation) -> Option<u64> {
        None
    }

    /// Whether `part` is closed in `state`: no step of an operation with an unknown outcome of
    /// that part changes the state's fingerprint, in this state or any state later steps reach
    /// from it. Only steps of the part's own operations may change whether a part is closed.
    /// Two states with equal fingerprints, reached with the same operations of known outcome
    /// linearized, agree on it, or in both no later step of an unknown outcome of the part
    /// changes the fingerprint (see the module documentation). `false` is always safe.
    fn part_closed(&self, _state: &Self::State, _part: u64) -> bool {
        false
    }
}

/// Which candidates a walk of the entries tries (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Operations with a known outcome that never change the state.
    Reads,
    /// The other operations with a known outcome.
    Writes,
    /// Operations with an unknown outcome.
    Unknown,
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

/// A pseudo-random function of 64-bit words onto 128 bits: two independent SplitMix64
/// finalizers over a running mix. Keys of the memo are built from it; `domain` keeps keys
/// of different kinds (operations, notes, counters) from ever being the same function.
pub(crate) fn fingerprint_of(domain: u64, words: &[u64]) -> u128 {
    fn finalize(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut low = finalize(domain ^ 0x9e37_79b9_7f4a_7c15);
    let mut high = finalize(domain.wrapping_add(0x6a09_e667_f3bc_c909));
    for &word in words {
        low = finalize(low ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
        high = finalize(high.rotate_left(17) ^ word ^ 0xd1b5_4a32_d192_ed03);
    }
    (u128::from(finalize(high)) << 64) | u128::from(finalize(low ^ high))
}

/// An open-addressing set of fingerprints: 16 bytes a slot, never iterated.
struct FingerprintSet {
    slots: Vec<u128>,
    len: usize,
}

/// Bytes the memo takes per state at most: a full table at three quarters, then its
/// double while both exist during a resize.
pub const MEMO_BYTES_PER_STATE: u64 = 64;

impl FingerprintSet {
    /// Stands for an empty slot; a fingerprint equal to it is stored as `EMPTY + 1`.
    const EMPTY: u128 = 0;

    fn new() -> FingerprintSet {
        FingerprintSet { slots: vec![Self::EMPTY; 64], len: 0 }
    }

    /// Inserts; false when it was there already.
    fn insert(&mut self, fingerprint: u128) -> bool {
        let fingerprint = if fingerprint == Self::EMPTY { Self::EMPTY + 1 } else { fingerprint };
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        // Fingerprints are pseudo-random, so their low bits spread as well as any hash would.
        let mut index = (fingerprint as usize) & mask;
        loop {
            let slot = self.slots[index];
            if slot == fingerprint {
                return false;
            }
            if slot == Self::EMPTY {
                self.slots[index] = fingerprint;
                self.len += 1;
                return true;
            }
            index = (index + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let doubled = vec![Self::EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for fingerprint in old.into_iter().filter(|&slot| slot != Self::EMPTY) {
            let mut index = (fingerprint as usize) & mask;
            while self.slots[index] != Self::EMPTY {
                index = (index + 1) & mask;
            }
            self.slots[index] = fingerprint;
        }
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
    /// Index of each operation's call entry.
    call_entry_by_operation: Vec<usize>,
    /// Index of each operation's return entry.
    return_entry_by_operation: Vec<usize>,
    head: usize,
}

impl EntryList {
    /// The entries of the operations `include` picks.
    fn new<O>(operations: &[SearchOperation<O>], include: impl Fn(&SearchOperation<O>) -> bool) -> EntryList {
        // Sort key: position, with unknown returns at the end of time.
        let mut keyed: Vec<(usize, usize, Entry)> = Vec::with_capacity(operations.len() * 2);
        for (operation_index, operation) in operations.iter().enumerate().filter(|(_, operation)| include(operation)) {
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
        let mut call_entry_by_operation = vec![NONE; operations.len()];
        let mut return_entry_by_operation = vec![NONE; operations.len()];
        for (index, entry) in entries.iter().enumerate() {
            if entry.is_call {
                call_entry_by_operation[entry.operation_index] = index;
            } else {
                return_entry_by_operation[entry.operation_index] = index;
            }
        }
        EntryList { entries, next, previous, call_entry_by_operation, return_entry_by_operation, head }
    }

    /// The first entry, or `NONE`.
    fn first(&self) -> usize {
        self.next[self.head]
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

/// For each operation with an unknown outcome, how many of its observers are not linearized
/// yet; for each operation with a known outcome, the unknown ones it observes; and the order
/// the model's constraints impose: for each operation, how many that must come before it are
/// not linearized yet, and those that must come after it.
#[derive(Clone)]
struct Observers {
    pending: Vec<usize>,
    observed_by: Vec<Vec<usize>>,
    predecessors_left: Vec<u32>,
    successors: Vec<Vec<usize>>,
}

impl Observers {
    fn new<M: Model>(model: &M, operations: &[SearchOperation<M::Operation>]) -> Observers {
        let mut pending = vec![0; operations.len()];
        let mut observed_by = vec![Vec::new(); operations.len()];
        // Known operations by return position, so that each unknown one meets only those that
        // return after its call.
        let mut known: Vec<(usize, usize)> = operations
            .iter()
            .enumerate()
            .filter_map(|(index, operation)| operation.return_position.map(|position| (position, index)))
            .collect();
        known.sort_unstable();
        for (unknown_index, unknown) in operations.iter().enumerate() {
            // A needless operation has no observer: the search never linearizes it.
            if unknown.return_position.is_some() || model.needless(unknown) {
                continue;
            }
            let first = known.partition_point(|&(position, _)| position <= unknown.call_position);
            for &(_, observer_index) in &known[first..] {
                if model.may_observe(&operations[observer_index].operation, &unknown.operation) {
                    pending[unknown_index] += 1;
                    observed_by[observer_index].push(unknown_index);
                }
            }
        }
        let mut predecessors_left = vec![0u32; operations.len()];
        let mut successors = vec![Vec::new(); operations.len()];
        for (before, after) in model.order_constraints(operations) {
            debug_assert!(operations[before].return_position.is_some() && operations[after].return_position.is_some());
            predecessors_left[after] += 1;
            successors[before].push(after);
        }
        Observers { pending, observed_by, predecessors_left, successors }
    }
}

/// How linearizing an operation changed its part of the state: the key it added to the part,
/// whether the part was closed before and after, and how the open parts' fingerprint changed.
#[derive(Debug, Clone, Copy)]
struct PartChange {
    part: usize,
    key_added: u128,
    was_closed: bool,
    now_closed: bool,
    fingerprint_change: u128,
}

/// Steps of the first turn of each way of searching (at least, see
/// [`TURN_STEPS_PER_OPERATION`]); each later turn has twice as many.
const FIRST_TURN_STEPS: u64 = 20_000;
/// Steps of the first turn per operation searched.
const TURN_STEPS_PER_OPERATION: u64 = 8;

/// Runs the search, spending `budget`, in turns of growing length: the plain search, then
/// the search that allows 0, 1, 2, 4... unknown outcomes to take effect before any number
/// (see the module documentation), each turn from scratch.
pub(crate) fn search<M: Model>(
    model: &mut M,
    operations: &[SearchOperation<M::Operation>],
    budget: &mut Budget,
) -> SearchResult {
    // Who observes whom depends on the operations alone: found once for every turn.
    model.begin(operations);
    let observers = Observers::new(model, operations);
    // A turn shorter than a walk through the history would end before it could decide, and
    // each turn begins with work in proportion to the history.
    let mut turn_steps = FIRST_TURN_STEPS.max(TURN_STEPS_PER_OPERATION * operations.len() as u64);
    loop {
        for limited_first in [false, true] {
            let granted = turn_steps.min(budget.steps_left);
            let mut turn = Budget { steps_left: granted, exhausted: None, ..budget.clone() };
            let result = search_in_turn(model, operations, &observers, &mut turn, limited_first);
            budget.steps_left -= granted - turn.steps_left;
            budget.peak_states = budget.peak_states.max(turn.peak_states);
            match (result, turn.exhausted) {
                (SearchResult::OutOfBudget, Some(Exhaustion::Steps)) if budget.steps_left > 0 => {}
                (result, exhausted) => {
                    if matches!(result, SearchResult::OutOfBudget) {
                        budget.exhausted = exhausted.or(Some(Exhaustion::Steps));
                    }
                    return result;
                }
            }
        }
        turn_steps = turn_steps.saturating_mul(2);
    }
}

/// One turn: the plain search, or the one that raises its limit on unknown outcomes.
fn search_in_turn<M: Model>(
    model: &mut M,
    operations: &[SearchOperation<M::Operation>],
    observers: &Observers,
    budget: &mut Budget,
    limited_first: bool,
) -> SearchResult {
    let unknown_count = operations.iter().filter(|operation| operation.return_position.is_none()).count();
    let mut allowance = if limited_first { 0 } else { usize::MAX };
    loop {
        let unlimited = allowance >= unknown_count;
        let (result, states) =
            search_states(model, operations, observers, budget, if unlimited { usize::MAX } else { allowance });
        budget.peak_states = budget.peak_states.max(states);
        match result {
            SearchResult::NotLinearizable { .. } if !unlimited => allowance = (allowance * 2).max(1),
            result => return result,
        }
    }
}

/// The memo key of each operation, a domain of its own.
const OPERATION_KEY_DOMAIN: u64 = 0x6f70_6572_6174_696f;
/// The memo key of how many interchangeable operations are linearized.
const INTERCHANGEABLE_KEY_DOMAIN: u64 = 0x696e_7465_7263_6861;
/// The memo key of "the next operation must conflict with this one".
const FOLLOW_KEY_DOMAIN: u64 = 0x666f_6c6c_6f77_6564;

/// One linearized operation on the search's stack, with what undoing it needs.
struct Linearized<U> {
    operation_index: usize,
    call_entry: usize,
    undo: U,
    /// The unknown outcomes waiting at the node it was linearized at.
    parent_waiting: Vec<usize>,
    /// A read taken with no alternative: its node fails with it.
    forced: bool,
    /// The node's bound on the calls of unknown outcomes it could try (see [`Pass::Unknown`]).
    frontier: usize,
    /// How it changed its part of the state.
    part_change: Option<PartChange>,
}

fn search_states<M: Model>(
    model: &mut M,
    operations: &[SearchOperation<M::Operation>],
    initial_observers: &Observers,
    budget: &mut Budget,
    unknown_allowance: usize,
) -> (SearchResult, usize) {
    let mut unknown_taken = 0usize;
    // A search that ran out of budget leaves the model's bookkeeping where it stopped.
    model.begin(operations);
    // Operations with a known outcome and those with an unknown one are walked apart, so
    // that a walk among the first never passes the second, which may wait for a long time.
    let mut known_list = EntryList::new(operations, |operation| operation.return_position.is_some());
    let mut unknown_list = EntryList::new(operations, |operation| operation.return_position.is_none());
    // Each operation's class of interchangeable ones, numbered densely.
    let mut class_numbers: std::collections::BTreeMap<u128, usize> = std::collections::BTreeMap::new();
    let class_of: Vec<Option<usize>> = operations
        .iter()
        .map(|operation| {
            let class = operation.return_position.is_none().then(|| model.interchangeable_class(operation));
            class.flatten().map(|key| {
                let next = class_numbers.len();
                *class_numbers.entry(key).or_insert(next)
            })
        })
        .collect();
    let mut class_key_by_number = vec![0u128; class_numbers.len()];
    for (&key, &number) in &class_numbers {
        class_key_by_number[number] = key;
    }
    // A class has no key per member: how many of its members are linearized has one.
    let keys: Vec<u128> = (0..operations.len())
        .map(|index| if class_of[index].is_some() { 0 } else { fingerprint_of(OPERATION_KEY_DOMAIN, &[index as u64]) })
        .collect();
    let count_key = |class: usize, count: u64| {
        let key = class_key_by_number[class];
        fingerprint_of(INTERCHANGEABLE_KEY_DOMAIN, &[key as u64, (key >> 64) as u64, count])
    };
    let mut taken_by_class = vec![0u64; class_key_by_number.len()];
    let mut observers = initial_observers.clone();
    // An unknown outcome that nothing left can observe is never linearized (see the module
    // documentation): its call entry leaves the list while that holds, so that walks do not
    // pass it again and again. Those that nothing observes at all leave it for good.
    let mut lifted = vec![false; operations.len()];
    for (index, operation) in operations.iter().enumerate() {
        if operation.return_position.is_none() && observers.pending[index] == 0 {
            unknown_list.unlink(unknown_list.call_entry_by_operation[index]);
        }
    }
    let mut linearized_fingerprint: u128 = (0..taken_by_class.len()).fold(0, |key, class| key ^ count_key(class, 0));
    // Each operation's part of the state, numbered densely; the unknown outcomes outside a
    // class that are linearized in a part are keyed there, and count only while it is open.
    let mut part_numbers: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let part_of: Vec<Option<usize>> = operations
        .iter()
        .map(|operation| {
            model.part(&operation.operation).map(|part| {
                let next = part_numbers.len();
                *part_numbers.entry(part).or_insert(next)
            })
        })
        .collect();
    let mut part_by_number = vec![0u64; part_numbers.len()];
    for (&part, &number) in &part_numbers {
        part_by_number[number] = part;
    }
    let keyed_in_part = |index: usize| {
        operations[index].return_position.is_none() && class_of[index].is_none() && part_of[index].is_some()
    };
    let mut part_keys = vec![0u128; part_by_number.len()];
    let mut open_parts_fingerprint: u128 = 0;
    let mut explored = FingerprintSet::new();
    // The members of a class share one: a run holds at most one of them waiting, as they
    // conflict with each other.
    let follow_keys: Vec<u128> = (0..operations.len())
        .map(|index| match class_of[index] {
            Some(class) => {
                let key = class_key_by_number[class];
                fingerprint_of(FOLLOW_KEY_DOMAIN, &[u64::MAX, key as u64, (key >> 64) as u64])
            }
            None => fingerprint_of(FOLLOW_KEY_DOMAIN, &[index as u64]),
        })
        .collect();
    // The unknown outcomes of the current run that no later one conflicts with: the known
    // operation that ends the run must conflict with each.
    let mut waiting: Vec<usize> = Vec::new();
    let mut stack: Vec<Linearized<M::Undo>> = Vec::new();
    let mut state = model.initial_state();
    let mut part_closed: Vec<bool> = part_by_number.iter().map(|&part| model.part_closed(&state, part)).collect();
    let mut known_outcomes_left = operations.iter().filter(|operation| operation.return_position.is_some()).count();
    let mut longest_prefix: Vec<u64> = Vec::new();
    // How long a prefix of the stack `longest_prefix` starts with.
    let mut prefix_shared = 0usize;
    let reads: Vec<bool> = operations
        .iter()
        .map(|operation| operation.return_position.is_some() && model.never_changes_state(&operation.operation))
        .collect();
    // Each node's candidates are walked up to three times: reads first (a read that can be
    // linearized now is, with no alternative), then the other operations with a known outcome,
    // then those with an unknown one, so that a linearizable history is found first along the
    // orders where unknown outcomes did not take effect (the walks meet every candidate).
    let mut pass = Pass::Reads;
    let mut cursor = known_list.first();
    // While walking unknown outcomes: the return of the first operation with a known outcome
    // not linearized yet. Only an unknown outcome called before it can be linearized now.
    let mut frontier = usize::MAX;
    // The node fails without trying more candidates.
    let mut node_failed = false;
    loop {
        if known_outcomes_left == 0 {
            return (SearchResult::Linearizable, explored.len);
        }
        if !budget.take_step(explored.len) {
            return (SearchResult::OutOfBudget, explored.len);
        }
        let list = if pass == Pass::Unknown { &unknown_list } else { &known_list };
        // While an operation with a known outcome is unlinearized its return entry is in the
        // known list, so the walk meets it before running off the end; the end is treated as a
        // return all the same.
        let at_candidate = !node_failed
            && cursor != NONE
            && list.entries[cursor].is_call
            && (pass != Pass::Unknown || operations[list.entries[cursor].operation_index].call_position < frontier);
        if at_candidate {
            let operation_index = list.entries[cursor].operation_index;
            let operation = &operations[operation_index];
            let known = pass != Pass::Unknown;
            debug_assert_eq!(known, operation.return_position.is_some());
            debug_assert!(known || observers.pending[operation_index] > 0, "dead unknown outcomes leave the walk");
            if !known && unknown_taken >= unknown_allowance {
                cursor = list.next[cursor];
                continue;
            }
            if known
                && (reads[operation_index] != (pass == Pass::Reads) || observers.predecessors_left[operation_index] > 0)
            {
                cursor = list.next[cursor];
                continue;
            }
            if known
                && !waiting.iter().all(|&unknown| model.conflicts(&operations[unknown].operation, &operation.operation))
            {
                cursor = list.next[cursor];
                continue;
            }
            let state_before = model.fingerprint(&state);
            if let Some(undo) = model.step(&mut state, &operation.operation) {
                let state_after = model.fingerprint(&state);
                let next_waiting: Vec<usize> = if known {
                    Vec::new()
                } else {
                    waiting
                        .iter()
                        .copied()
                        .filter(|&unknown| !model.conflicts(&operations[unknown].operation, &operation.operation))
                        .chain(std::iter::once(operation_index))
                        .collect()
                };
                debug_assert!(
                    next_waiting.iter().all(|&unknown| class_of[unknown].is_none()
                        || next_waiting.iter().filter(|&&other| class_of[other] == class_of[unknown]).count() == 1),
                    "members of a class conflict with each other"
                );
                let constraint = next_waiting.iter().fold(0, |key, &unknown| key ^ follow_keys[unknown]);
                let counted = match class_of[operation_index] {
                    Some(class) => {
                        count_key(class, taken_by_class[class]) ^ count_key(class, taken_by_class[class] + 1)
                    }
                    None if keyed_in_part(operation_index) => 0,
                    None => keys[operation_index],
                };
                let part_change = part_of[operation_index].map(|part| {
                    let key_added = if keyed_in_part(operation_index) { keys[operation_index] } else { 0 };
                    let was_closed = part_closed[part];
                    let now_closed = model.part_closed(&state, part_by_number[part]);
                    let open_key = |closed: bool, key: u128| if closed { 0 } else { key };
                    PartChange {
                        part,
                        key_added,
                        was_closed,
                        now_closed,
                        fingerprint_change: open_key(was_closed, part_keys[part])
                            ^ open_key(now_closed, part_keys[part] ^ key_added),
                    }
                });
                let part_fingerprint_change = part_change.map_or(0, |change| change.fingerprint_change);
                let fingerprint = linearized_fingerprint
                    ^ counted
                    ^ open_parts_fingerprint
                    ^ part_fingerprint_change
                    ^ state_after
                    ^ constraint;
                let new_node = (known || state_after != state_before) && explored.insert(fingerprint);
                if !new_node && pass == Pass::Reads {
                    // The node after this read was explored and failed, so this node fails too.
                    model.undo(&mut state, undo);
                    node_failed = true;
                    continue;
                }
                if new_node {
                    linearized_fingerprint ^= counted;
                    if let Some(change) = part_change {
                        part_keys[change.part] ^= change.key_added;
                        part_closed[change.part] = change.now_closed;
                        open_parts_fingerprint ^= change.fingerprint_change;
                    }
                    if let Some(class) = class_of[operation_index] {
                        taken_by_class[class] += 1;
                    }
                    stack.push(Linearized {
                        operation_index,
                        call_entry: cursor,
                        undo,
                        parent_waiting: std::mem::replace(&mut waiting, next_waiting),
                        forced: pass == Pass::Reads,
                        frontier,
                        part_change,
                    });
                    lifted[operation_index] = true;
                    if known {
                        known_list.lift(cursor);
                        known_outcomes_left -= 1;
                        for &successor in &observers.successors[operation_index] {
                            observers.predecessors_left[successor] -= 1;
                        }
                        for &unknown in &observers.observed_by[operation_index] {
                            observers.pending[unknown] -= 1;
                            if observers.pending[unknown] == 0 && !lifted[unknown] {
                                unknown_list.unlink(unknown_list.call_entry_by_operation[unknown]);
                            }
                        }
                    } else {
                        unknown_list.lift(cursor);
                        unknown_taken += 1;
                    }
                    pass = Pass::Reads;
                    cursor = known_list.first();
                    continue;
                }
                model.undo(&mut state, undo);
            }
            cursor = list.next[cursor];
        } else if !node_failed && pass == Pass::Reads {
            pass = Pass::Writes;
            cursor = known_list.first();
        } else if !node_failed && pass == Pass::Writes {
            frontier = if cursor == NONE {
                usize::MAX
            } else {
                operations[known_list.entries[cursor].operation_index].return_position.unwrap_or(usize::MAX)
            };
            pass = Pass::Unknown;
            cursor = unknown_list.first();
        } else {
            node_failed = false;
            if stack.len() > longest_prefix.len() {
                // Only what was pushed since the stack last shared its prefix is copied, so
                // keeping the longest prefix costs no more than the pushes.
                longest_prefix.truncate(prefix_shared);
                longest_prefix.extend(stack[prefix_shared..].iter().map(|taken| operations[taken.operation_index].id));
                prefix_shared = stack.len();
            }
            let Some(taken) = stack.pop() else {
                return (SearchResult::NotLinearizable { longest_prefix }, explored.len);
            };
            prefix_shared = prefix_shared.min(stack.len());
            let operation_index = taken.operation_index;
            let known = operations[operation_index].return_position.is_some();
            // Links come back in the reverse order they left in (dancing links).
            if known {
                known_outcomes_left += 1;
                for &unknown in observers.observed_by[operation_index].iter().rev() {
                    if observers.pending[unknown] == 0 && !lifted[unknown] {
                        unknown_list.relink(unknown_list.call_entry_by_operation[unknown]);
                    }
                    observers.pending[unknown] += 1;
                }
                for &successor in &observers.successors[operation_index] {
                    observers.predecessors_left[successor] += 1;
                }
                known_list.unlift(taken.call_entry);
            } else {
                unknown_taken -= 1;
                unknown_list.unlift(taken.call_entry);
            }
            lifted[operation_index] = false;
            match class_of[operation_index] {
                Some(class) => {
                    taken_by_class[class] -= 1;
                    linearized_fingerprint ^=
                        count_key(class, taken_by_class[class]) ^ count_key(class, taken_by_class[class] + 1);
                }
                None if keyed_in_part(operation_index) => {}
                None => linearized_fingerprint ^= keys[operation_index],
            }
            if let Some(change) = taken.part_change {
                part_keys[change.part] ^= change.key_added;
                part_closed[change.part] = change.was_closed;
                open_parts_fingerprint ^= change.fingerprint_change;
            }
            model.undo(&mut state, taken.undo);
            waiting = taken.parent_waiting;
            if taken.forced {
                // A node that linearized a read has no alternative: it fails with the read.
                node_failed = true;
                continue;
            }
            // The walk goes on where it was: among the known candidates that are not reads
            // (no read could be linearized at this node), or among the unknown ones.
            if known {
                pass = Pass::Writes;
                cursor = known_list.next[taken.call_entry];
            } else {
                pass = Pass::Unknown;
                frontier = taken.frontier;
                cursor = unknown_list.next[taken.call_entry];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_set_keeps_every_member_across_growth() {
        let mut set = FingerprintSet::new();
        for value in 0..10_000u64 {
            assert!(set.insert(fingerprint_of(1, &[value])));
        }
        assert!(set.insert(0), "zero is a fingerprint like any other");
        assert!(!set.insert(0));
        for value in 0..10_000u64 {
            assert!(!set.insert(fingerprint_of(1, &[value])), "{value}");
        }
        assert_eq!(set.len, 10_001);
    }

    #[test]
    fn fingerprints_of_different_words_or_domains_differ() {
        let mut seen = std::collections::BTreeSet::new();
        for domain in 0..4u64 {
            for first in 0..50u64 {
                for second in 0..50u64 {
                    assert!(seen.insert(fingerprint_of(domain, &[first, second])));
                }
            }
        }
    }
}
