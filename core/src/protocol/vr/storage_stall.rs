//! A disk that cannot take writes: full, or failing them.
//!
//! The host keeps retrying the writes it was given, in order, and tells the
//! replica with [`crate::Input::StorageStalled`]; nothing the replica promised
//! leaves before a sync covers it (see [`crate::storage`]), so a stall is never a
//! safety question. It is a liveness one: a primary that cannot sync cannot count
//! itself toward a commit quorum, and a backup that cannot sync acknowledges
//! nothing. So while stalled:
//!
//! - a primary steps down at once, by starting a view change it cannot finish
//!   (its `StartViewChange` waits for its own disk, and it sends no
//!   `DoViewChange`: a view it led could not commit), and the others elect a
//!   primary without it after their timeout;
//! - the replica takes no message that would make it write or promise (prepares,
//!   commits, view change messages, state to adopt), each dropped and counted, and
//!   starts no view change of its own, as the host would only queue the writes;
//! - it still serves what only reads its state (state and snapshot chunks to
//!   peers, local reads) and forwards its clients' requests to the primary.
//!
//! When the disk returns, it arms its timers again and catches up as a replica
//! back from a partition does: a later view's messages lead it to the current
//! primary's state.

use super::message::Message;
use super::{ReplicaStatus, Vr};
use crate::protocol::Outputs;
use crate::time::Instant;

/// Messages a stalled replica drops: taking them would change what it must write.
pub(super) fn refused_while_stalled(message: &Message) -> bool {
    matches!(
        message,
        Message::Prepare { .. }
            | Message::Commit { .. }
            | Message::StartViewChange { .. }
            | Message::DoViewChange { .. }
            | Message::StartView { .. }
            | Message::NewState { .. }
            | Message::SnapshotChunk { .. }
            | Message::ConfirmView { .. }
    )
}

impl Vr {
    pub(super) fn on_disk_stalled(&mut self, now: Instant, outputs: &mut Outputs) {
        if std::mem::replace(&mut self.storage_stalled, true) {
            return;
        }
        if self.status == ReplicaStatus::Normal && self.is_primary() {
            self.start_view_change(now, self.view + 1, outputs);
        }
    }

    pub(super) fn on_disk_returned(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.storage_stalled, false) {
            return;
        }
        match self.status {
            ReplicaStatus::ViewChange => {
                let timeout = self.view_change_timeout();
                self.timers.view_change_at = Some(self.jittered(now, timeout));
            }
            ReplicaStatus::Normal if !self.is_primary() => self.reset_primary_silence(now),
            ReplicaStatus::Normal | ReplicaStatus::Recovering => {}
        }
    }
}
