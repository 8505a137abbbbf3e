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
    /// The message's kind, for metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::RemoteWrite(message) => message.kind(),
            Message::LocalWrite(message) => message.kind(),
            Message::Vr(message) => message.kind(),
        }
    }
}
