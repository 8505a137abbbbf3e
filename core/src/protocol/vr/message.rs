//! VR's messages, named as "Viewstamped Replication Revisited" names them.

use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, RequestNumber};
use crate::operation::{ClientRequest, Reply};
use crate::protocol::SEQUENCE_NUMBER_MAX;
use crate::protocol::vr::log::Entry;
use crate::snapshot::{Chunk, Manifest, SnapshotId};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// §4.1 step 3: consecutive log entries from the primary, with its commit number.
    /// Several entries at once when requests arrive faster than backups acknowledge.
    Prepare {
        view: u64,
        commit_number: u64,
        entries: Vec<Entry>,
    },
    /// §4.1 step 4, cumulative: the sender's log holds every entry up to `op_number` in `view`.
    PrepareOk {
        view: u64,
        op_number: u64,
    },
    /// §4.1 step 5: the commit number, sent when the primary has no prepare to send; a heartbeat.
    Commit {
        view: u64,
        commit_number: u64,
    },
    /// §4.2 step 1.
    StartViewChange {
        view: u64,
    },
    /// §4.2 step 2: the sender's log for the new primary, and the view it is the
    /// log of (the paper's v'). The entries after `after`: every uncommitted one,
    /// and committed ones before them up to `uncommitted_bytes_max`; a new primary
    /// that lacks earlier committed entries fetches them by state transfer.
    DoViewChange {
        view: u64,
        log_view: u64,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
    },
    /// §4.2 step 3: the new primary's log, bounded as in `DoViewChange`.
    StartView {
        view: u64,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
    },
    /// §4.3 step 1: sent by a replica that restarted with empty memory.
    Recovery {
        nonce: u64,
    },
    /// §4.3 step 2. The primary's state does not travel in the answer: the
    /// recovering replica fetches it by state transfer (GetState), in bounded pieces.
    RecoveryResponse {
        view: u64,
        nonce: u64,
        responder: ResponderState,
    },
    /// §5.2: a replica that lags asks for what follows `op_number`.
    GetState {
        view: u64,
        op_number: u64,
    },
    /// §5.2: entries after `after`, up to `message_bytes_max`; or, when the
    /// requester is behind the responder's checkpoint (§5.1 keeps the log bounded),
    /// the manifest of a snapshot at `after` to fetch chunk by chunk first.
    /// `op_number` is the sender's last op: a replica catching up in a new view
    /// holds that view's log once it has reached it.
    NewState {
        view: u64,
        op_number: u64,
        commit_number: u64,
        after: u64,
        snapshot: Option<Manifest>,
        entries: Vec<Entry>,
    },
    /// Asks the replica that announced `snapshot` for its chunk number `chunk`.
    GetSnapshotChunk {
        snapshot: SnapshotId,
        chunk: u64,
    },
    SnapshotChunk {
        chunk: Chunk,
    },
    /// The sender no longer holds `snapshot`: ask for the state again.
    SnapshotUnavailable {
        snapshot: SnapshotId,
    },
    /// A read round (§6.3): the primary asks whether the sender is still primary of `view`.
    ConfirmView {
        view: u64,
        round: u64,
    },
    ConfirmViewOk {
        view: u64,
        round: u64,
    },
    /// A request that arrived at a backup, on its way to the primary.
    Forward {
        request: ClientRequest,
    },
    /// The primary's answer to a forwarded request.
    ForwardReply {
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
    },
}

impl Message {
    /// Whether every view, op and commit number in the message is at most
    /// [`SEQUENCE_NUMBER_MAX`].
    pub fn numbers_within_bounds(&self) -> bool {
        let within = |number: u64| number <= SEQUENCE_NUMBER_MAX;
        let entries_within =
            |entries: &[Entry]| entries.iter().all(|entry| within(entry.op_number) && within(entry.view));
        match self {
            Message::Prepare { view, commit_number, entries } => {
                within(*view) && within(*commit_number) && entries_within(entries)
            }
            Message::PrepareOk { view, op_number } => within(*view) && within(*op_number),
            Message::Commit { view, commit_number } => within(*view) && within(*commit_number),
            Message::StartViewChange { view } => within(*view),
            Message::DoViewChange { view, log_view, commit_number, after, entries } => {
                within(*view)
                    && within(*log_view)
                    && within(*commit_number)
                    && within(*after)
                    && entries_within(entries)
            }
            Message::StartView { view, commit_number, after, entries } => {
                within(*view) && within(*commit_number) && within(*after) && entries_within(entries)
            }
            Message::Recovery { .. } => true,
            Message::RecoveryResponse { view, responder, .. } => {
                within(*view) && within(responder.op_number) && within(responder.commit_number)
            }
            Message::GetState { view, op_number } => within(*view) && within(*op_number),
            Message::NewState { view, op_number, commit_number, after, snapshot, entries } => {
                within(*view)
                    && within(*op_number)
                    && within(*commit_number)
                    && within(*after)
                    && snapshot.as_ref().is_none_or(|snapshot| within(snapshot.id.sequence))
                    && entries_within(entries)
            }
            Message::GetSnapshotChunk { snapshot, .. } | Message::SnapshotUnavailable { snapshot } => {
                within(snapshot.sequence)
            }
            Message::SnapshotChunk { chunk } => within(chunk.snapshot.sequence),
            Message::ConfirmView { view, .. } | Message::ConfirmViewOk { view, .. } => within(*view),
            Message::Forward { .. } | Message::ForwardReply { .. } => true,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::PrepareOk { .. } => "prepare_ok",
            Message::Commit { .. } => "commit",
            Message::StartViewChange { .. } => "start_view_change",
            Message::DoViewChange { .. } => "do_view_change",
            Message::StartView { .. } => "start_view",
            Message::Recovery { .. } => "recovery",
            Message::RecoveryResponse { .. } => "recovery_response",
            Message::GetState { .. } => "get_state",
            Message::NewState { .. } => "new_state",
            Message::GetSnapshotChunk { .. } => "get_snapshot_chunk",
            Message::SnapshotChunk { .. } => "snapshot_chunk",
            Message::SnapshotUnavailable { .. } => "snapshot_unavailable",
            Message::ConfirmView { .. } => "confirm_view",
            Message::ConfirmViewOk { .. } => "confirm_view_ok",
            Message::Forward { .. } => "forward",
            Message::ForwardReply { .. } => "forward_reply",
        }
    }
}

/// What a replica answering a `Recovery` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponderState {
    pub status: ReplicaStatus,
    pub op_number: u64,
    pub commit_number: u64,
}

impl ResponderState {
    /// Holds nothing that could be lost: no entry, nothing committed.
    pub fn is_empty(&self) -> bool {
        self.op_number == 0 && self.commit_number == 0
    }
}

/// §4: a replica is normal, in a view change, or recovering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    Normal,
    ViewChange,
    Recovering,
}
