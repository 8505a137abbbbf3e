//! The bridge to the linearizability checker: one verdict per history.

use crate::checker::{self, CheckOptions, Verdict};
use crate::history::History;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinearizabilityVerdict {
    Linearizable,
    NotLinearizable {
        explanation: String,
        /// The operations the checker could not linearize together.
        operation_ids: Vec<u64>,
    },
    /// The history could not be checked (the reason says why); never counted as a pass.
    Unchecked {
        reason: String,
    },
}

/// Search steps allowed per history: enough for the simulator's histories with room to
/// spare, while bounding the time one pathological history can take.
pub const STEP_BUDGET: u64 = 20_000_000;

/// Search steps allowed per candidate while minimizing: a candidate the checker cannot
/// refute quickly is treated as passing, which keeps minimization fast and sound.
pub const MINIMIZE_STEP_BUDGET: u64 = 200_000;

/// Checks a notes history.
pub fn check(history: &History) -> LinearizabilityVerdict {
    check_within(history, STEP_BUDGET)
}

/// Checks a notes history within `step_budget` search steps.
pub fn check_within(history: &History, step_budget: u64) -> LinearizabilityVerdict {
    match checker::check_with(history, &CheckOptions::steps(step_budget)) {
        Ok(Verdict::Linearizable) => LinearizabilityVerdict::Linearizable,
        Ok(Verdict::NotLinearizable(counterexample)) => LinearizabilityVerdict::NotLinearizable {
            explanation: format!(
                "the history is not linearizable: {} ({})",
                counterexample.reason,
                operation_list(&counterexample.operation_ids)
            ),
            operation_ids: counterexample.operation_ids,
        },
        Ok(Verdict::Unknown { steps, .. }) => {
            LinearizabilityVerdict::Unchecked { reason: format!("the checker gave up after {steps} steps") }
        }
        Err(error) => LinearizabilityVerdict::Unchecked { reason: format!("the checker refused the history: {error}") },
    }
}

/// Whether the checker proves `history` not linearizable quickly (for minimization).
pub fn is_violation(history: &History) -> bool {
    matches!(check_within(history, MINIMIZE_STEP_BUDGET), LinearizabilityVerdict::NotLinearizable { .. })
}

/// A short list of operation ids for messages: the first few and how many in all.
pub fn operation_list(operation_ids: &[u64]) -> String {
    const SHOWN_MAX: usize = 8;
    let shown: Vec<String> = operation_ids.iter().take(SHOWN_MAX).map(ToString::to_string).collect();
    let more =
        if operation_ids.len() > SHOWN_MAX { format!(", ... {} in all", operation_ids.len()) } else { String::new() };
    format!("operations {}{more}", shown.join(", "))
}
