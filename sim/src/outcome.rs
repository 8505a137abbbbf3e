//! What a run found: its verdict, history and trace.

use core::fmt;
use std::collections::BTreeMap;

use noted_core::{ClientId, RequestNumber};

use crate::history::{EventKind, Header, History, ModelName};
use crate::linearizability::LinearizabilityVerdict;
use crate::options::SimOptions;

/// Each kind of failure has its own exit code, so scripts can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// The client history is not linearizable.
    Linearizability,
    /// A replica's assertion fired: a broken invariant.
    Panic,
    /// After every fault healed, the replicas did not reach the same store and client table.
    Convergence,
    /// After every fault healed, a request was not answered in time.
    Liveness,
    /// The run could not start (an unimplemented protocol, an invalid configuration).
    Setup,
    /// A replica built a message heavier than its limits allow: encoded, it could
    /// exceed the frame limit, and a real replica could not send it.
    MessageSize,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Linearizability => 10,
            FailureKind::Panic => 11,
            FailureKind::Convergence => 12,
            FailureKind::Liveness => 13,
            FailureKind::Setup => 14,
            FailureKind::MessageSize => 15,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Linearizability => "linearizability",
            FailureKind::Panic => "panic",
            FailureKind::Convergence => "convergence",
            FailureKind::Liveness => "liveness",
            FailureKind::Setup => "setup",
            FailureKind::MessageSize => "message-size",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// Convergence: the ids of the notes the replicas disagree about.
    pub notes: Vec<u64>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: String) -> Failure {
        Failure { kind, message, notes: Vec::new() }
    }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub options: SimOptions,
    /// The first failure found; `None` when every check passed.
    pub failure: Option<Failure>,
    pub history: History,
    /// The client request (client, request number) behind each history operation id.
    pub origins: BTreeMap<u64, (ClientId, RequestNumber)>,
    /// The checker's verdict on the history; `None` when it was not checked (the run failed
    /// first, or the request switched the check off).
    pub linearizability: Option<LinearizabilityVerdict>,
    /// Empty unless the trace was enabled.
    pub trace: String,
    /// Simulated events processed.
    pub events: u64,
    /// Messages handed to a replica (not cut, dropped or held back).
    pub deliveries: u64,
    pub simulated_nanos: u64,
}

impl RunOutcome {
    pub fn without_history(options: SimOptions, failure: Failure) -> RunOutcome {
        let mut header = Header::new(ModelName::Notes);
        header.source = Some(options.replay_command());
        RunOutcome {
            options,
            failure: Some(failure),
            history: History::new(header),
            origins: BTreeMap::new(),
            linearizability: None,
            trace: String::new(),
            events: 0,
            deliveries: 0,
            simulated_nanos: 0,
        }
    }

    /// Operations recorded in the history (one per call).
    pub fn operations(&self) -> u64 {
        self.history.events.iter().filter(|event| event.kind == EventKind::Call).count() as u64
    }

    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}
