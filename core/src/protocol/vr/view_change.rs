//! §4.2 View change: StartViewChange, DoViewChange, StartView.

use super::log::{Entry, consecutive};
use super::{DoViewChange, Message, ReplicaStatus, ViewChangeProgress, Vr, wrap};
use crate::config::Defect;
use crate::ids::ReplicaId;
use crate::operation::{Refusal, Reply};
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::time::Instant;

impl Vr {
    /// §4.2 step 1: move to `view` and ask every replica to do the same.
    pub(super) fn start_view_change(&mut self, now: Instant, view: u64, outputs: &mut Outputs) {
        assert!(view > self.view, "a view change moves to a later view");
        assert_ne!(self.status, ReplicaStatus::Recovering, "a recovering replica takes no part in view changes");
        self.step_down(outputs);
        self.view_changes_in_a_row =
            if self.status == ReplicaStatus::ViewChange { self.view_changes_in_a_row.saturating_add(1) } else { 0 };
        self.view = view;
        self.status = ReplicaStatus::ViewChange;
        self.view_change = ViewChangeProgress::default();
        self.view_change.start_view_change_from.insert(self.me());
        self.timers.primary_silence_at = None;
        self.timers.state_transfer_at = None;
        let timeout = self.view_change_timeout();
        self.timers.view_change_at = Some(self.jittered(now, timeout));
        outputs.event(Event::ViewChangeStarted { view });
        self.send_view_change_messages(now, outputs);
    }

    /// Leaves the primary role: reads waiting for a read round are refused (they had
    /// no effect); writes in the log may still commit in the next view, so their
    /// clients learn the outcome by retrying.
    fn step_down(&mut self, outputs: &mut Outputs) {
        let Some(primary) = self.primary.take() else { return };
        for read in primary.reads.into_pending() {
            let refusal = Refusal::unavailable("the primary changed; retry");
            self.answer(read.origin, read.client, read.request_number, Reply::refused(refusal), outputs);
        }
    }

    /// Sends StartViewChange to every replica, and DoViewChange once a quorum is in
    /// this view change; sent again on `resend` while the view change lasts, each
    /// time after twice the previous wait, from the retransmit timeout up to this
    /// view change's timeout: DoViewChange carries the whole log.
    fn send_view_change_messages(&mut self, now: Instant, outputs: &mut Outputs) {
        let retransmit = self.config.timing.retransmit_timeout;
        let wait =
            (retransmit * (1 << self.view_change.resends.min(16))).min(self.view_change_timeout().max(retransmit));
        self.view_change.resends = self.view_change.resends.saturating_add(1);
        self.timers.view_change_resend_at = Some(now + wait);
        for peer in self.config.peers() {
            outputs.send(peer, wrap(Message::StartViewChange { view: self.view }));
        }
        self.send_do_view_change_if_ready(now, outputs);
    }

    /// §4.2 step 2: with StartViewChange from a quorum (itself included), send the log
    /// to the new primary.
    fn send_do_view_change_if_ready(&mut self, now: Instant, outputs: &mut Outputs) {
        // A stalled replica sends none: a view it leads could not commit.
        if self.view_change.start_view_change_from.len() < self.quorum() || self.repairing || self.storage_stalled {
            return;
        }
        let after = self.log_start_for_view_change();
        let do_view_change = DoViewChange {
            log_view: self.log_view,
            commit_number: self.commit_number,
            after,
            entries: self.log.entries_after(after, usize::MAX, usize::MAX),
        };
        self.view_change.do_view_change_sent = true;
        let new_primary = self.primary_of(self.view);
        if new_primary == self.me() {
            self.record_do_view_change(now, new_primary, do_view_change, outputs);
        } else {
            let DoViewChange { log_view, commit_number, after, entries } = do_view_change;
            let message = Message::DoViewChange { view: self.view, log_view, commit_number, after, entries };
            outputs.send(new_primary, wrap(message));
        }
    }

    pub(super) fn on_view_change_resend(&mut self, now: Instant, outputs: &mut Outputs) {
        if self.status == ReplicaStatus::ViewChange {
            self.send_view_change_messages(now, outputs);
        }
    }

    pub(super) fn on_start_view_change(&mut self, now: Instant, from: ReplicaId, view: u64, outputs: &mut Outputs) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        if view > self.view {
            self.start_view_change(now, view, outputs);
        }
        if self.status == ReplicaStatus::ViewChange && view == self.view {
            let newly_heard = self.view_change.start_view_change_from.insert(from);
            if newly_heard && !self.view_change.do_view_change_sent {
                self.send_do_view_change_if_ready(now, outputs);
            }
        }
    }

    pub(super) fn on_do_view_change(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        message: DoViewChange,
        outputs: &mut Outputs,
    ) {
        if !self.log_message_well_formed(message.after, message.commit_number, &message.entries)
            || message.log_view >= view
        {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if self.stale_view(view, from, outputs) {
            return;
        }
        if view > self.view {
            self.start_view_change(now, view, outputs);
        }
        if self.status != ReplicaStatus::ViewChange || view != self.view {
            return; // The view already started: a late or duplicated DoViewChange.
        }
        if self.primary_of(view) != self.me() {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if self.repairing {
            return; // No view starts here: this replica cannot vouch for its own log.
        }
        self.view_change.start_view_change_from.insert(from);
        self.record_do_view_change(now, from, message, outputs);
        if !self.view_change.do_view_change_sent {
            self.send_do_view_change_if_ready(now, outputs);
        }
    }

    /// Keeps one DoViewChange per sender (a duplicate replaces the first) and starts the
    /// view with a quorum of them.
    fn record_do_view_change(&mut self, now: Instant, from: ReplicaId, message: DoViewChange, outputs: &mut Outputs) {
        self.view_change.do_view_change_from.insert(from, message);
        if self.view_change.do_view_change_from.len() >= self.quorum() && self.view_change.awaiting_state_from.is_none()
        {
            self.complete_view_change(now, outputs);
        }
    }

    /// §4.2 step 3: adopt the log with the latest normal view (then the highest op
    /// number), execute what was committed, and start the view.
    pub(super) fn complete_view_change(&mut self, now: Instant, outputs: &mut Outputs) {
        let received = &self.view_change.do_view_change_from;
        let mut best: Option<(ReplicaId, &DoViewChange)> = None;
        for (sender, message) in received {
            let better = best.is_none_or(|(_, current)| {
                (message.log_view, message.op_number()) > (current.log_view, current.op_number())
            });
            if better {
                best = Some((*sender, message));
            }
        }
        let (best_sender, best) = best.expect("a quorum of DoViewChange messages was received");
        let commit_number = received.values().map(|message| message.commit_number).max().unwrap_or(0);
        if self.commit_number < best.after {
            // The best log starts after what this replica executed: fetch what lies between first.
            self.view_change.awaiting_state_from = Some(best_sender);
            return self.request_state(now, outputs);
        }
        let committed_here: Vec<Entry> =
            best.entries.iter().filter(|entry| entry.op_number <= self.commit_number).cloned().collect();
        if !self.log.agrees_with(&committed_here) {
            outputs.drop_message(best_sender, DropReason::Conflicting);
            self.view_change.do_view_change_from.remove(&best_sender);
            return;
        }
        let adopted: Vec<Entry> =
            best.entries.iter().filter(|entry| entry.op_number > self.commit_number).cloned().collect();
        self.log.truncate_after(self.commit_number);
        for entry in adopted {
            self.log.append(entry);
        }
        let heard_from = self.view_change.do_view_change_from.keys().copied().filter(|id| *id != self.me()).collect();
        self.enter_view(now, true);
        self.become_primary(now, heard_from);
        outputs.event(Event::ViewStarted { view: self.view, primary: self.me() });
        self.commit_through(commit_number, outputs);
        let after = self.log_start_for_view_change();
        let entries = self.log.entries_after(after, usize::MAX, usize::MAX);
        for peer in self.config.peers() {
            let message = Message::StartView {
                view: self.view,
                commit_number: self.commit_number,
                after,
                entries: entries.clone(),
            };
            outputs.send(peer, wrap(message));
        }
    }

    /// Normal status in the current view, as primary or backup. The caller says
    /// whether this replica now holds the view's log.
    pub(super) fn enter_view(&mut self, now: Instant, holds_the_log: bool) {
        self.status = ReplicaStatus::Normal;
        if holds_the_log {
            self.log_view = self.view;
        }
        self.view_log_matched_through = self.commit_number;
        self.view_change = ViewChangeProgress::default();
        self.timers.view_change_at = None;
        self.timers.view_change_resend_at = None;
        if self.primary_of(self.view) != self.me() {
            self.reset_primary_silence(now);
        }
    }

    /// §4.2 step 5: adopt the new primary's log, acknowledge its uncommitted entries,
    /// execute what is committed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_start_view(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
        outputs: &mut Outputs,
    ) {
        if !self.log_message_well_formed(after, commit_number, &entries) {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if self.primary_of(view) != from {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if self.stale_view(view, from, outputs) {
            return;
        }
        if view == self.view && self.status == ReplicaStatus::Normal && self.log_view == view {
            return; // Already in this view with its log: a duplicate.
        }
        if self.commit_number < after {
            return self.catch_up_with_view(now, view, outputs);
        }
        let committed_here: Vec<Entry> =
            entries.iter().filter(|entry| entry.op_number <= self.commit_number).cloned().collect();
        if !self.log.agrees_with(&committed_here) {
            return outputs.drop_message(from, DropReason::Conflicting);
        }
        self.step_down(outputs);
        self.view = view;
        self.log.truncate_after(self.commit_number);
        for entry in entries.into_iter().filter(|entry| entry.op_number > self.commit_number) {
            self.log.append(entry);
        }
        self.enter_view(now, true);
        self.repairing = false;
        outputs.event(Event::ViewStarted { view, primary: from });
        self.acknowledge(from, outputs);
        self.commit_through(commit_number, outputs);
    }

    /// §5.2: a message shows that `view` started without this replica. Fetch the
    /// new primary's log, executing only what matches it.
    ///
    /// The uncommitted entries stay until that log replaces them (§5.2 drops them
    /// at once). This replica may have acknowledged them in its `log_view`, where
    /// they may be committed; until it holds the new view's log it still claims
    /// its `log_view` in a view change, and a claim without them could outrank
    /// every other log that holds them, losing a committed entry.
    pub(super) fn catch_up_with_view(&mut self, now: Instant, view: u64, outputs: &mut Outputs) {
        assert!(view >= self.view, "catching up moves forward");
        self.step_down(outputs);
        self.view = view;
        if self.config.defect == Some(Defect::DropUncommittedOnCatchUp) {
            self.log.truncate_after(self.commit_number);
        }
        self.enter_view(now, false);
        assert!(self.primary_of(view) != self.me(), "a view starts only at its primary");
        outputs.event(Event::ViewStarted { view, primary: self.primary_of(view) });
        self.request_state(now, outputs);
    }

    /// Where the log a view change message carries starts: every uncommitted entry,
    /// and committed ones before them within `uncommitted_bytes_max`.
    fn log_start_for_view_change(&self) -> u64 {
        let after = self.log.start_within(self.config.limits.uncommitted_bytes_max);
        assert!(after <= self.commit_number, "every uncommitted entry fits in a view change message");
        after
    }

    /// A log message is well formed when its entries are consecutive from `after`,
    /// within the bounds, and its commit number is inside it.
    fn log_message_well_formed(&self, after: u64, commit_number: u64, entries: &[Entry]) -> bool {
        let limits = &self.config.limits;
        let entries_max = limits.log_entries_max + limits.entries_per_message_max;
        let starts_after = entries.first().is_none_or(|first| first.op_number == after.saturating_add(1));
        let op_number = after.saturating_add(entries.len() as u64);
        starts_after
            && consecutive(entries)
            && entries.len() <= entries_max
            && self.weigh_entries(entries, limits.uncommitted_bytes_max).is_some()
            && commit_number >= after
            && commit_number <= op_number
    }
}
