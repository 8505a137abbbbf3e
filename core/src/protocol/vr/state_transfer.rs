//! §5.2 State transfer: GetState and NewState, with a snapshot for a replica that
//! is behind the retained log (§5.1).

use super::log::{Entry, Log, consecutive};
use super::{Message, ReplicaStatus, Snapshot, Vr, wrap};
use crate::ids::ReplicaId;
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::time::Instant;

impl Vr {
    /// Asks for the state unless a request is already outstanding.
    pub(super) fn request_state_soon(&mut self, now: Instant, outputs: &mut Outputs) {
        if self.timers.state_transfer_at.is_none() {
            self.request_state(now, outputs);
        }
    }

    /// Sends GetState to the primary, or, at a new primary missing committed state,
    /// to the replica whose log it adopts.
    pub(super) fn request_state(&mut self, now: Instant, outputs: &mut Outputs) {
        self.state_requests_sent = 0;
        self.send_state_request(now, outputs);
    }

    /// Sends GetState, and again on `state_transfer_at` after a longer wait each
    /// time (see [`Vr::resend_wait`]) until the state arrives.
    pub(super) fn send_state_request(&mut self, now: Instant, outputs: &mut Outputs) {
        let (target, op_number) = match (self.status, self.view_change.awaiting_state_from) {
            (ReplicaStatus::ViewChange, Some(sender)) => (sender, self.commit_number),
            (ReplicaStatus::Normal, _) if !self.is_primary() => (self.primary_of(self.view), self.log.op_number()),
            _ => return,
        };
        self.timers.state_transfer_at = Some(now + self.resend_wait(self.state_requests_sent));
        self.state_requests_sent = self.state_requests_sent.saturating_add(1);
        outputs.send(target, wrap(Message::GetState { view: self.view, op_number }));
    }

    pub(super) fn on_get_state(&mut self, from: ReplicaId, view: u64, op_number: u64, outputs: &mut Outputs) {
        if self.stale_view(view, from, outputs) || view > self.view {
            return;
        }
        // In a view change only the new primary may take this replica's log: it
        // adopts it whole, uncommitted entries included.
        let serves = match self.status {
            ReplicaStatus::Normal => true,
            ReplicaStatus::ViewChange => from == self.primary_of(view),
            ReplicaStatus::Recovering => false,
        };
        if !serves || op_number > self.log.op_number() {
            return;
        }
        self.send_new_state(from, op_number, outputs);
    }

    /// Sends `to` what follows `after`: entries if retained, otherwise a snapshot at
    /// the commit number and the entries after it. Returns the op number `to` reaches.
    pub(super) fn send_new_state(&mut self, to: ReplicaId, after: u64, outputs: &mut Outputs) -> u64 {
        let count_max = self.config.limits.entries_per_message_max;
        let (after, snapshot) = if after >= self.log.checkpoint() {
            (after, None)
        } else {
            let snapshot = Snapshot {
                commit_number: self.commit_number,
                store: self.store.clone(),
                client_table: self.client_table.clone(),
            };
            outputs.event(Event::SnapshotSent { to, sequence: self.commit_number });
            (self.commit_number, Some(snapshot))
        };
        let entries = self.log.entries_after(after, count_max);
        let reached = after + entries.len() as u64;
        let message = Message::NewState {
            view: self.view,
            op_number: self.log.op_number(),
            commit_number: self.commit_number,
            after,
            snapshot,
            entries,
        };
        outputs.send(to, wrap(message));
        reached
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_new_state(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        op_number: u64,
        commit_number: u64,
        after: u64,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        outputs: &mut Outputs,
    ) {
        let starts_after = entries.first().is_none_or(|first| first.op_number == after.saturating_add(1));
        let snapshot_matches = snapshot.as_ref().is_none_or(|snapshot| snapshot.commit_number == after);
        if !starts_after
            || !snapshot_matches
            || !consecutive(&entries)
            || entries.len() > self.config.limits.entries_per_message_max
        {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if self.stale_view(view, from, outputs) || view > self.view || self.is_primary() {
            return;
        }
        self.timers.state_transfer_at = None;
        if let Some(snapshot) = snapshot
            && snapshot.commit_number > self.commit_number
        {
            self.install_snapshot(snapshot);
            outputs.event(Event::SnapshotInstalled { from, sequence: self.commit_number });
        }
        if after >= self.log.checkpoint() && after <= self.log.op_number() {
            if !self.log.agrees_with(&entries) {
                return outputs.drop_message(from, DropReason::Conflicting);
            }
            for entry in entries {
                if entry.op_number == self.log.op_number() + 1 {
                    self.log.append(entry);
                }
            }
        }
        let awaited = self.view_change.awaiting_state_from == Some(from);
        match self.status {
            ReplicaStatus::ViewChange if awaited => {
                self.view_change.awaiting_state_from = None;
                self.commit_through(commit_number, outputs);
                self.complete_view_change(now, outputs);
            }
            ReplicaStatus::Normal => {
                let primary = self.primary_of(self.view);
                if from == primary && self.log.op_number() >= op_number {
                    // Everything the primary had when it answered: this is the view's log.
                    self.log_view = self.view;
                }
                self.acknowledge(primary, outputs);
                self.commit_through(commit_number, outputs);
                if self.log.op_number() < op_number {
                    self.request_state(now, outputs);
                }
            }
            _ => {}
        }
    }

    /// Replaces the executed state with `snapshot`; the log restarts at its commit number.
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        assert!(snapshot.commit_number >= self.commit_number, "a snapshot never takes the state back");
        self.store.restore(snapshot.store);
        self.client_table = snapshot.client_table;
        self.commit_number = snapshot.commit_number;
        self.log = Log::new(snapshot.commit_number);
    }
}
