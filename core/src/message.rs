//! Messages between replicas, one enum per protocol.

use serde::{Deserialize, Serialize};

use crate::protocol::{local_write, remote_write, vr};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    RemoteWrite(remote_write::Message),
    LocalWrite(local_write::Message),
    Vr(vr::Message),
}

impl Message {
    /// Whether the message is bulk state (a snapshot chunk): hosts send such
    /// messages after every other queued one, so that a large transfer never holds
    /// up the protocol's own traffic.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            Message::Vr(vr::Message::SnapshotChunk { .. })
                | Message::RemoteWrite(remote_write::Message::SnapshotChunk { .. })
        )
    }

    /// The message's kind, for metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::RemoteWrite(message) => message.kind(),
            Message::LocalWrite(message) => message.kind(),
            Message::Vr(message) => message.kind(),
        }
    }
}
