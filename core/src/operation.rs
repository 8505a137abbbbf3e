//! What clients ask for and what they are answered.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ClientId, NoteId, RequestNumber, Version};
use crate::store::{Note, NotePage};
use crate::wire::size::REFUSAL_REASON_BYTES_MAX;

/// One client request. `(client, request_number)` names it: a retry carries the same
/// pair and is answered from the client table instead of being executed again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub client: ClientId,
    pub request_number: RequestNumber,
    pub operation: Operation,
    #[serde(default)]
    pub consistency: Consistency,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// The read sees every write acknowledged before it started, and is ordered
    /// with the writes (it goes through the ordering replica).
    #[default]
    Linearizable,
    /// The read is served from the receiving replica's copy, even without a quorum,
    /// and may be stale.
    Local,
}

/// An operation on the notes. Bodies are JSON values so that a body that is not an
/// object reaches the store and is refused there with a typed [`Refusal::Invalid`].
///
/// Operations, replies and refusals are tagged by a field in JSON (`op`, `reply`,
/// `code`); peer frames carry them in the compact form of `wire/compact.rs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Create { body: Value },
    Get { id: NoteId },
    List { after: Option<NoteId>, limit: Option<u32> },
    Replace { id: NoteId, body: Value, if_match: Option<Version> },
    Patch { id: NoteId, patch: Value, if_match: Option<Version> },
    Delete { id: NoteId, if_match: Option<Version> },
}

impl Operation {
    /// Reads change nothing and are not recorded in the client table.
    pub fn is_read(&self) -> bool {
        matches!(self, Operation::Get { .. } | Operation::List { .. })
    }

    /// The one note this operation touches, if it names one.
    pub fn note_id(&self) -> Option<NoteId> {
        match self {
            Operation::Get { id }
            | Operation::Replace { id, .. }
            | Operation::Patch { id, .. }
            | Operation::Delete { id, .. } => Some(*id),
            Operation::Create { .. } | Operation::List { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Operation::Create { .. } => "create",
            Operation::Get { .. } => "get",
            Operation::List { .. } => "list",
            Operation::Replace { .. } => "replace",
            Operation::Patch { .. } => "patch",
            Operation::Delete { .. } => "delete",
        }
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The note after a create, replace or patch, or as read by a get.
    Note {
        note: Note,
    },
    /// One page of a list.
    Page {
        page: NotePage,
    },
    Deleted {
        id: NoteId,
    },
    /// An expected refusal; the request had no effect.
    Refused {
        refusal: Refusal,
    },
}

impl Reply {
    pub fn refused(refusal: Refusal) -> Reply {
        Reply::Refused { refusal }
    }
}

/// Expected refusals, each with its own meaning for the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    NotFound {
        id: NoteId,
    },
    VersionMismatch {
        id: NoteId,
        expected: Version,
        actual: Version,
    },
    Invalid {
        reason: String,
    },
    /// The replica cannot order the request now (no quorum, view change under way,
    /// recovering, queue full). Nothing happened; the client may retry later.
    Unavailable {
        reason: String,
    },
}

impl Refusal {
    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::Invalid { reason: bounded_reason(reason.into()) }
    }

    pub fn unavailable(reason: impl Into<String>) -> Refusal {
        Refusal::Unavailable { reason: bounded_reason(reason.into()) }
    }
}

/// Reasons are written by replicas and travel in replies between them: short by construction.
fn bounded_reason(reason: String) -> String {
    assert!(reason.len() <= REFUSAL_REASON_BYTES_MAX, "a refusal's reason stays short: {reason}");
    reason
}
