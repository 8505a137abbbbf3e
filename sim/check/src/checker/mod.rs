//! The linearizability checker: is there a total order of a history's operations that
//! respects real time and that the model, run sequentially, explains?
//!
//! # Algorithm
//!
//! Wing & Gong's search with Lowe's just-in-time linearization and memoization of
//! (set of linearized operations, model state) — the algorithm of Porcupine — in
//! `search`: iterative, with an explicit undo stack and a step budget
//! ([`CheckOptions::step_budget`]) after which the verdict is [`Verdict::Unknown`]
//! rather than a hang.
//!
//! Outcomes: an `ok` operation must be linearized between its call and its return,
//! and the model must give its observed output there. A `fail`ed operation certainly
//! had no effect and is dropped. An operation with an unknown outcome (`info`, or no
//! completion) may take effect at any time after its call, or never: its return is at
//! the end of time and the search may finish with it unlinearized. An unknown read
//! (`read`, `get`, `list`) changes nothing and constrains nothing, so it is dropped.
//!
//! # Models
//!
//! `cas-register` (module `register`) and `notes` (module `notes`), as `HISTORY-FORMAT.md`
//! specifies them. Model states hold interned JSON values (module `values`), so that they
//! are small, ordered and cheap to clone, and the memo is an ordered set.
//!
//! # Partitions of a notes history (P-compositionality)
//!
//! Operations on different notes commute, but two kinds of operation couple notes:
//! a create takes the next id from a counter shared by all notes, and a list reads
//! many notes. The checker splits a notes history only where neither coupling can
//! hide a violation (`notes::plan`):
//!
//! - A history with a `list` that completed is searched whole: a list observes the
//!   presence and absence of many notes at one instant.
//! - First, ids the creates did not report are bound where the reported ids prove
//!   them (`notes::bind_gap_fillers`): an id `j` below the largest reported one that
//!   no create reported went to a create whose id is unknown (unknown outcome, or a
//!   completion without an id) before the create reporting the next larger id
//!   returned; if only one such create was called by then, it took effect with id
//!   `j` by then in every linearization, and is treated as having reported `j` then.
//!   Every linearization of the history is one of the history so bound, and back.
//! - Creates whose ids are known are grouped: creates whose intervals overlap,
//!   directly or through a chain of overlapping creates, form one group. When no
//!   create's id is unknown, all groups are *closed*. Otherwise, let the anchor be
//!   the id just below the smallest id no create reported: every id up to the anchor
//!   went to the create that reported it, so a create whose id is unknown either
//!   never took effect or took a later id, after the anchor's create. The anchor's
//!   group, every later group and every create whose id is unknown form the *open*
//!   group (all creates, when the anchor is 0); the earlier groups are closed. The
//!   creates of closed groups all took effect, reported their ids, and returned
//!   before any create of a later group was called, and took smaller ids than the
//!   open group's; so their ids must be exactly `1..=M`, and a create that returned
//!   before another was called must have the smaller id. Either failure refutes the
//!   history outright.
//! - Each closed group is a partition together with every get/put/patch/delete on
//!   the ids its creates made; in it, the k-th create linearized gets the k-th
//!   smallest of those ids, so the search enforces the id order inside the group.
//!   The open group is a partition with every operation on an id above `M`; in it
//!   the k-th create linearized gets id `M + 1 + k`, exactly the whole history's
//!   counter. Without an open group, operations on an id no create made form a
//!   partition of their own, where that note never exists.
//!
//! Why this is exact. *Sound* (a linearizable history passes): restricting a
//! linearization of the whole history to a partition's operations gives a sequence
//! that respects real time, in which the partition's creates appear in counter order;
//! the closed groups' creates precede the later groups' creates in real time and take
//! smaller ids than the creates whose ids are unknown (above the anchor), so they took
//! ids `1..=M` and each later create gets the id the partition model gives it; and each
//! note's operations see the same note as before, because no other partition touches
//! that note. The global rules hold in any linearization. *Complete* (a history whose
//! partitions all pass is linearizable): choose in each partition's linearization a
//! point inside every operation's interval, in linearization order, and merge all
//! partitions by these points. Real time is respected, each note's operations keep
//! their order, and the effective creates come out in id order: within a partition
//! because its model enforced it, across groups because creates of different groups
//! do not overlap, so the earlier-returning one comes first, and it has the smaller
//! id by the global rule (or because the open group's ids start above `M`). A create
//! of the open group whose id is unknown may have been called before closed creates
//! returned, but it comes after the anchor's create in its partition (its id is
//! larger), and the anchor's create was called after every closed create returned. So the
//! k-th create of the merged order gets id k from the counter, as its partition said.
//! Per-note versions in the outputs then order each note's writes, which the search
//! exploits by pruning at the first mismatch. Likewise a create that reported no id
//! is never given an id another create reported (that create could then not have
//! its own), which keeps the search from trying creates of unknown outcome at every
//! point. A random comparison with a brute-force
//! checker (in `tests`) backs this argument.
//!
//! The `cas-register` model is a single object and is never split.

mod notes;
mod projection;
mod register;
mod search;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::io::{BufRead, BufReader, Read};

use crate::history::{Expectation, Header, History, HistoryError, ModelName, Operation, OperationStream, Outcome};
pub use search::Exhaustion;
use search::{Budget, Model, SearchOperation, SearchResult};

/// Steps allowed by default: enough for every sample history by orders of magnitude.
pub const STEP_BUDGET_DEFAULT: u64 = 20_000_000;

/// Bytes one memoized search state costs at most, to turn `--max-memory` into a state count:
/// the memo's 16-byte fingerprint with its share of the table's spare room during a resize.
pub const BYTES_PER_STATE_ESTIMATE: u64 = search::MEMO_BYTES_PER_STATE;

// A deadline is the one clock reading the checker allows, for users of `noted-sim check`.
#[allow(clippy::disallowed_types)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Search steps (visits of a history entry) allowed over all partitions before the
    /// checker gives up with [`Verdict::Unknown`].
    pub step_budget: u64,
    /// Wall-clock limit for the whole check; `None` in simulated runs (deterministic).
    pub deadline: Option<std::time::Instant>,
    /// Memoized states allowed in one search before the checker gives up.
    pub max_states: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions { step_budget: STEP_BUDGET_DEFAULT, deadline: None, max_states: None }
    }
}

impl CheckOptions {
    /// The default options with a step budget.
    pub fn steps(step_budget: u64) -> CheckOptions {
        CheckOptions { step_budget, ..CheckOptions::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Counterexample),
    /// Undecided: the search ran out of its budget (steps, time or memory).
    Unknown {
        steps: u64,
        limit: Exhaustion,
    },
}

impl Verdict {
    /// Whether the verdict agrees with a history's `expect`; `None` when the search gave up.
    pub fn agrees_with(&self, expectation: Expectation) -> Option<bool> {
        match self {
            Verdict::Linearizable => Some(expectation == Expectation::Linearizable),
            Verdict::NotLinearizable(_) => Some(expectation == Expectation::Illegal),
            Verdict::Unknown { .. } => None,
        }
    }
}

/// Why a history is not linearizable, in terms of its operation ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The operations of the partition that has no linearization (or the creates that conflict).
    pub operation_ids: Vec<u64>,
    /// The longest sequence of those operations the search could linearize, in order.
    pub longest_linearized_prefix: Vec<u64>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("line {line}: operation {id}: {reason}")]
    BadOperation { line: usize, id: u64, reason: String },
}

impl CheckError {
    pub(crate) fn operation(operation: &Operation, reason: impl Into<String>) -> CheckError {
        CheckError::BadOperation { line: operation.call_line, id: operation.id, reason: reason.into() }
    }
}

/// A model and the operations to search, those that can matter.
#[derive(Debug)]
pub(crate) struct PreparedOperations<M: Model> {
    pub(crate) model: M,
    pub(crate) operations: Vec<SearchOperation<M::Operation>>,
}

pub(crate) fn base_operation<O>(operation: &Operation, model_operation: O) -> SearchOperation<O> {
    let return_position = match operation.outcome {
        Outcome::Ok(_) | Outcome::Failed => operation.return_position,
        Outcome::Unknown => None,
    };
    SearchOperation {
        id: operation.id,
        operation: model_operation,
        call_position: operation.call_position,
        return_position,
    }
}

/// Checks a history with the default options.
pub fn check(history: &History) -> Result<Verdict, CheckError> {
    check_with(history, &CheckOptions::default())
}

/// Checks a history against the model its header names.
pub fn check_with(history: &History, options: &CheckOptions) -> Result<Verdict, CheckError> {
    Ok(check_measured(history, options)?.0)
}

/// Checks a history and says how many memoized states the largest search held.
pub fn check_measured(history: &History, options: &CheckOptions) -> Result<(Verdict, usize), CheckError> {
    let operations = history.operations()?;
    let checked = check_operations(&history.header, operations.into_iter().map(Ok), options)?;
    Ok((checked.verdict, checked.peak_states))
}

/// What checking a stream of operations found.
struct Checked {
    verdict: Verdict,
    peak_states: usize,
    operation_count: usize,
}

/// One shard's operations, kept as compactly as its model allows while the history is read.
enum ShardOperations {
    /// Register histories are small: kept whole.
    Register(Vec<Operation>),
    Notes(Box<notes::NotesPreparer>),
}

/// Checks the operations of a history with `header`, given in any order (a reader hands
/// each on as it completes), keeping only what the search needs of each.
fn check_operations(
    header: &Header,
    operations: impl Iterator<Item = Result<Operation, HistoryError>>,
    options: &CheckOptions,
) -> Result<Checked, CheckError> {
    // Each shard is a replica group with its own ids: its operations are a history of their
    // own, and the whole is linearizable exactly when every shard's is (locality).
    let mut by_shard: BTreeMap<Option<u64>, ShardOperations> = BTreeMap::new();
    let mut operation_count = 0;
    for operation in operations {
        let operation = operation?;
        operation_count += 1;
        let shard = by_shard.entry(operation.shard).or_insert_with(|| match header.model {
            ModelName::CasRegister => ShardOperations::Register(Vec::new()),
            ModelName::Notes => ShardOperations::Notes(Box::default()),
        });
        match shard {
            ShardOperations::Register(operations) => operations.push(operation),
            ShardOperations::Notes(preparer) => preparer.add(&operation)?,
        }
    }
    let mut budget = Budget {
        steps_left: options.step_budget,
        deadline: options.deadline,
        max_states: options.max_states,
        peak_states: 0,
        exhausted: None,
    };
    let mut verdict = Verdict::Linearizable;
    for shard in by_shard.into_values() {
        let shard_verdict = match shard {
            ShardOperations::Register(mut operations) => {
                operations.sort_by_key(|operation| operation.call_position);
                let mut prepared = register::prepare(&operations, header.init.as_ref())?;
                run(&mut prepared.model, &prepared.operations, &mut budget)
            }
            ShardOperations::Notes(preparer) => check_notes(*preparer, &mut budget),
        };
        match shard_verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(_) => {
                verdict = shard_verdict;
                break;
            }
            // Another shard may still refute the history within the remaining budget.
            Verdict::Unknown { .. } => verdict = shard_verdict,
        }
    }
    let verdict = match verdict {
        Verdict::Unknown { .. } => Verdict::Unknown {
            steps: options.step_budget - budget.steps_left,
            limit: budget.exhausted.unwrap_or(Exhaustion::Steps),
        },
        verdict => verdict,
    };
    Ok(Checked { verdict, peak_states: budget.peak_states, operation_count })
}

fn run<M: Model>(model: &mut M, operations: &[SearchOperation<M::Operation>], budget: &mut Budget) -> Verdict {
    match search::search(model, operations, budget) {
        SearchResult::Linearizable => Verdict::Linearizable,
        SearchResult::OutOfBudget => Verdict::Unknown { steps: 0, limit: Exhaustion::Steps },
        SearchResult::NotLinearizable { longest_prefix } => Verdict::NotLinearizable(Counterexample {
            operation_ids: operations.iter().map(|operation| operation.id).collect(),
            longest_linearized_prefix: longest_prefix,
            reason: "no order of these operations respects real time and the model".to_string(),
        }),
    }
}

fn check_notes(preparer: notes::NotesPreparer, budget: &mut Budget) -> Verdict {
    let (mut prepared, scopes) = preparer.finish();
    if let Some(counterexample) = projection::refute_by_note(&mut prepared.model, &prepared.operations, &scopes, budget)
    {
        return Verdict::NotLinearizable(counterexample);
    }
    match notes::plan(&prepared.operations, &scopes) {
        notes::NotesPlan::Whole => run(&mut prepared.model, &prepared.operations, budget),
        notes::NotesPlan::Refuted { reason, operation_ids } => {
            Verdict::NotLinearizable(Counterexample { operation_ids, longest_linearized_prefix: Vec::new(), reason })
        }
        notes::NotesPlan::Partitions(partitions) => {
            let mut out_of_budget = false;
            for partition in partitions {
                let partition_operations: Vec<_> =
                    partition.operation_indices.iter().map(|&index| prepared.operations[index].clone()).collect();
                prepared.model.ids = partition.ids;
                match run(&mut prepared.model, &partition_operations, budget) {
                    Verdict::Linearizable => {}
                    Verdict::NotLinearizable(counterexample) => return Verdict::NotLinearizable(counterexample),
                    // Another partition may still refute the history within the remaining budget.
                    Verdict::Unknown { .. } => out_of_budget = true,
                }
            }
            if out_of_budget { Verdict::Unknown { steps: 0, limit: Exhaustion::Steps } } else { Verdict::Linearizable }
        }
    }
}

/// The result of checking one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub model: ModelName,
    pub verdict: Verdict,
    /// The most memoized states one search held (memory grows with it).
    pub peak_states: usize,
    /// Operations in the history, including failed ones.
    pub operation_count: usize,
    /// The header's `expect`, if any (a Jepsen log has none).
    pub expect: Option<Expectation>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    History { path: PathBuf, source: HistoryError },
    #[error("{path}: {source}")]
    Check { path: PathBuf, source: CheckError },
}

/// Reads and checks a file: a Jepsen etcd log when the name ends in `.log`, else a lin-history (versions 1 and 2; `.gz` is read through gzip).
pub fn check_file(path: &Path) -> Result<CheckReport, CheckFileError> {
    check_file_with(path, &CheckOptions::default())
}

pub fn check_file_with(path: &Path, options: &CheckOptions) -> Result<CheckReport, CheckFileError> {
    let io_error = |source| CheckFileError::Io { path: path.to_path_buf(), source };
    let history_error = |source| CheckFileError::History { path: path.to_path_buf(), source };
    let check_error = |error| match error {
        CheckError::History(source) => history_error(source),
        source => CheckFileError::Check { path: path.to_path_buf(), source },
    };
    // A `.gz` file is decompressed as it is read; the extension inside it picks the
    // reader (`.jsonl.gz` a lin-history, `.log.gz` a Jepsen log).
    let file = std::fs::File::open(path).map_err(io_error)?;
    let (mut reader, inner): (Box<dyn BufRead>, &Path) = if path.extension().is_some_and(|extension| extension == "gz")
    {
        let decoder = flate2::read::GzDecoder::new(file);
        (
            Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, decoder)),
            Path::new(path.file_stem().unwrap_or_default()),
        )
    } else {
        (Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, file)), path)
    };
    if inner.extension().is_some_and(|extension| extension == "log") {
        let mut text = String::new();
        reader.read_to_string(&mut text).map_err(io_error)?;
        let history = History::parse_jepsen_log(&text).map_err(history_error)?;
        let operations = history.operations().map_err(history_error)?;
        let checked =
            check_operations(&history.header, operations.into_iter().map(Ok), options).map_err(check_error)?;
        return Ok(report(&history.header, checked));
    }
    // A lin-history is read line by line: only the operations' compact forms are kept.
    let stream = OperationStream::new(reader).map_err(history_error)?;
    let header = stream.header().clone();
    let checked = check_operations(&header, stream, options).map_err(check_error)?;
    Ok(report(&header, checked))
}

/// Bytes read from a file at a time.
const READ_BUFFER_BYTES: usize = 256 * 1024;

fn report(header: &Header, checked: Checked) -> CheckReport {
    CheckReport {
        model: header.model,
        verdict: checked.verdict,
        peak_states: checked.peak_states,
        operation_count: checked.operation_count,
        expect: header.expect,
    }
}
