//! noted-sim: drives noted's replicas under seeded faults, records the client
//! history and checks it.
//!
//! ```text
//! seed ──▶ SimOptions (swarm: cluster size, timing, workload, fault rates)
//!      ──▶ safety phase: clients, network, faults on one event queue
//!      ──▶ liveness phase: every fault healed; every request must complete, replicas converge
//!      ──▶ checks: linearizability of the history, replica assertions, convergence, liveness
//!      ──▶ on failure: the seed, the command that replays it, the shortest failing history, the trace
//! ```
//!
//! One seed determines everything; the same seed gives the same bytes of trace.
//!
//! # Command line
//!
//! ```text
//! noted-sim run --protocol remote-write --seed 42 [--trace] [--history h.jsonl] [--html h.html] [--beyond-model]
//! noted-sim explore --protocol remote-write --seeds 10000 [--from 0] [--jobs 2] [--beyond-model]
//! noted-sim check FILE...        # lin-history (.jsonl, .jsonl.gz) or Jepsen etcd logs (.log)
//! noted-sim gen-history --seed 1 --clients 10 --operations 1000 [--plant stale-read] [-o h.jsonl]
//! ```
//!
//! A seed is a decimal `u64` or a hexadecimal git hash (its first 16 digits). Exit codes
//! of `run` and `explore`: 0 every check passed, 10 not linearizable, 11 a replica
//! panicked (a broken invariant), 12 no convergence, 13 a request unanswered after the
//! faults healed, 14 the run could not start, 15 a message over its bound; 2 when a
//! history is undecided. `check` exits 0 when every file is linearizable, 1 when one is
//! not, 2 when one is undecided and 3 when one cannot be read (see `src/main.rs`). The
//! history format and the checker are the crate `noted-check` (`sim/check/`).
//!
//! # Adding a protocol
//!
//! Give [`SimProtocol`] a variant with its core `ProtocolKind` and its fault budget
//! (in [`protocol`]), and describe its messages in [`trace::describe_message`];
//! `cargo test` sweeps every variant in [`SimProtocol::ALL`].

pub mod clock;
pub mod disk;
pub mod faults;
pub mod html;
pub mod linearizability;
pub mod minimize;
pub mod network;
pub mod options;
pub mod outcome;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod trace;
pub mod workload;

// The history format and the checker live in their own crate; these paths stay for users.
pub use noted_check::{checker, gen_history, history, plant, recording};

use noted_core::Defect;

pub use options::{SimOptions, parse_seed};
pub use outcome::{Failure, FailureKind, RunOutcome};
pub use protocol::SimProtocol;

use crate::linearizability::LinearizabilityVerdict;
use crate::runner::{RunSettings, quietly, simulate};

/// What to run: a protocol and a seed, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunRequest {
    pub protocol: SimProtocol,
    pub seed: u64,
    /// Inject faults outside the protocol's fault model.
    pub beyond_model: bool,
    /// Switch a deliberate bug on in every replica (the simulator's own tests).
    pub defect: Option<Defect>,
    /// Record the readable per-event trace.
    pub trace: bool,
    /// Whether vr seeds may draw disks (true but in tests of memory-storage runs
    /// found before disks were drawn).
    pub disks: bool,
    /// Check the recorded history for linearizability after the run. Off only to measure
    /// the simulator alone; the verdict is then `None`.
    pub check_linearizability: bool,
}

impl RunRequest {
    pub fn new(protocol: SimProtocol, seed: u64) -> RunRequest {
        RunRequest {
            protocol,
            seed,
            beyond_model: false,
            defect: None,
            trace: false,
            check_linearizability: true,
            disks: true,
        }
    }

    pub fn options(&self) -> SimOptions {
        let mut options = SimOptions::from_seed_with_disks(self.protocol, self.seed, self.beyond_model, self.disks);
        options.defect = self.defect;
        options
    }
}

/// Runs one seed and checks it: replica assertions, liveness and convergence during
/// the run, then (unless the request says not to) linearizability of the recorded history.
pub fn run(request: &RunRequest) -> RunOutcome {
    let settings = RunSettings { options: request.options(), trace: request.trace };
    let mut outcome = match quietly(|| simulate(&settings)) {
        Ok(outcome) => outcome,
        Err((message, location)) => {
            let message = format!("the simulation panicked at {location}: {message}");
            return RunOutcome::without_history(settings.options, Failure::new(FailureKind::Panic, message));
        }
    };
    let checkable = request.check_linearizability
        && outcome
            .failure
            .as_ref()
            .is_none_or(|failure| matches!(failure.kind, FailureKind::Liveness | FailureKind::Convergence));
    if checkable {
        let verdict = linearizability::check(&outcome.history);
        if let LinearizabilityVerdict::NotLinearizable { explanation, .. } = &verdict {
            // A safety violation outranks a liveness one: report it first, and keep the other in the message.
            // The notes the replicas disagree about stay named, for the report's history of them.
            let (also, notes) = outcome.failure.take().map_or((String::new(), Vec::new()), |other| {
                (format!(" (also {}: {})", other.kind, other.message), other.notes)
            });
            let mut failure = Failure::new(FailureKind::Linearizability, format!("{explanation}{also}"));
            failure.notes = notes;
            outcome.failure = Some(failure);
        }
        outcome.linearizability = Some(verdict);
    }
    outcome
}
