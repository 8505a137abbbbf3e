//! §4.3 Recovery: a replica that restarted with empty memory learns the state from
//! a quorum, including the primary of the latest view, before it takes part again.

use super::log::Entry;
use super::{Message, RecoveryAnswer, RecoveryFetch, RecoveryProgress, ReplicaStatus, ResponderState, Vr, wrap};
use crate::ids::ReplicaId;
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::snapshot::Manifest;
use crate::time::Instant;

use rand::Rng;

impl Vr {
    /// §4.3 step 1, and again until recovered, each time after a longer wait (see [`Vr::resend_wait`]).
    pub(super) fn start_recovery(&mut self, now: Instant, outputs: &mut Outputs) {
        self.timers.recovery_at = None;
        if self.status != ReplicaStatus::Recovering {
            return;
        }
        if self.config.replica_count == 1 {
            return self.start_empty(now, true, 0, outputs);
        }
        if self.recovery.is_none() {
            let nonce = self.rng.random::<u64>();
            self.recovery =
                Some(RecoveryProgress { nonce, requests_sent: 0, responses: Default::default(), fetching: None });
        }
        let recovery = self.recovery.as_mut().expect("set above");
        let (nonce, attempts) = (recovery.nonce, recovery.requests_sent);
        recovery.requests_sent = attempts.saturating_add(1);
        self.timers.recovery_at = Some(now + self.resend_wait(attempts));
        for peer in self.config.peers() {
            outputs.send(peer, wrap(Message::Recovery { nonce }));
        }
    }

    /// §4.3 step 2. Replicas that are not normal answer too, saying so: a recovering
    /// replica counts only normal ones for its quorum, and uses the others only to
    /// tell that the whole cluster is new.
    pub(super) fn on_recovery(&mut self, from: ReplicaId, nonce: u64, outputs: &mut Outputs) {
        let responder =
            ResponderState { status: self.status, op_number: self.log.op_number(), commit_number: self.commit_number };
        outputs.send(from, wrap(Message::RecoveryResponse { view: self.view, nonce, responder }));
    }

    /// §4.3 step 3: with a quorum of normal replicas, among them the primary of the
    /// latest view they name, fetch that primary's state (by state transfer, in
    /// bounded pieces) before taking part again.
    pub(super) fn on_recovery_response(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        nonce: u64,
        responder: ResponderState,
        outputs: &mut Outputs,
    ) {
        if responder.commit_number > responder.op_number {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        let quorum = self.quorum();
        let replica_count = self.config.replica_count;
        let Some(recovery) = &mut self.recovery else { return };
        if recovery.nonce != nonce || recovery.fetching.is_some() {
            return; // An answer to an earlier attempt, or one more than needed.
        }
        recovery.responses.insert(from, RecoveryAnswer { view, responder });
        let others = usize::from(replica_count) - 1;
        let all_empty = recovery.responses.len() == others
            && recovery
                .responses
                .values()
                .all(|answer| answer.responder.status == ReplicaStatus::Recovering || answer.responder.is_empty());
        let everyone_recovering =
            recovery.responses.values().all(|answer| answer.responder.status == ReplicaStatus::Recovering);
        // With durable storage a cluster is created once, on formatted data
        // directories: replicas that all lack their state lost it, and wait for an
        // operator rather than start an empty cluster in its place.
        let durable = self.journal.is_some();
        if all_empty && !(durable && everyone_recovering) {
            let latest_view = recovery.responses.values().map(|answer| answer.view).max().unwrap_or(0);
            return self.start_empty(now, everyone_recovering, latest_view, outputs);
        }
        let normal: Vec<(&ReplicaId, &RecoveryAnswer)> =
            recovery.responses.iter().filter(|(_, answer)| answer.responder.status == ReplicaStatus::Normal).collect();
        if normal.len() < quorum {
            return;
        }
        let latest_view = normal.iter().map(|(_, answer)| answer.view).max().expect("a quorum is not empty");
        let primary = ReplicaId(u8::try_from(latest_view % u64::from(replica_count)).expect("fits in u8"));
        let Some(answer) = recovery.responses.get(&primary) else { return };
        if answer.view != latest_view || answer.responder.status != ReplicaStatus::Normal {
            return;
        }
        let fetch = RecoveryFetch { view: latest_view, primary, op_number: answer.responder.op_number };
        recovery.fetching = Some(fetch);
        self.timers.recovery_at = None;
        self.view = latest_view;
        if self.log.op_number() >= fetch.op_number {
            return self.finish_recovery(now, fetch, outputs);
        }
        self.request_state(now, outputs);
    }

    /// Takes state from the primary this replica recovers from: a snapshot to fetch,
    /// or entries; recovery ends once the log reaches where the primary's was.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_recovery_state(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        op_number: u64,
        commit_number: u64,
        after: u64,
        snapshot: Option<Manifest>,
        entries: Vec<Entry>,
        outputs: &mut Outputs,
    ) {
        let Some(weights) = self.weigh_new_state(commit_number, op_number, after, snapshot.as_ref(), &entries) else {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        };
        let Some(fetch) = self.recovery.as_ref().and_then(|recovery| recovery.fetching) else { return };
        if from != fetch.primary || view != fetch.view {
            return; // An answer to an earlier attempt.
        }
        self.timers.state_transfer_at = None;
        if let Some(manifest) = snapshot {
            return self.start_download(now, from, manifest, outputs);
        }
        if !self.append_state(from, commit_number, after, entries, &weights, outputs) {
            return self.restart_recovery(now, outputs);
        }
        self.commit_through(commit_number, outputs);
        if self.log.op_number() >= fetch.op_number {
            return self.finish_recovery(now, fetch, outputs);
        }
        self.request_state(now, outputs);
    }

    /// Holds the primary's log as far as it reached when it answered: take part again,
    /// as a backup of the latest view.
    fn finish_recovery(&mut self, now: Instant, fetch: RecoveryFetch, outputs: &mut Outputs) {
        self.recovery = None;
        self.timers.recovery_at = None;
        self.timers.state_transfer_at = None;
        self.view = fetch.view;
        self.enter_view(now, true);
        outputs.event(Event::Recovered { view: self.view, op_number: self.log.op_number() });
        self.acknowledge(fetch.primary, outputs);
    }

    /// The primary stopped answering while this replica fetched its state: forget
    /// what is not committed and ask a quorum again. What was fetched and executed
    /// stays; only the rest is fetched again.
    pub(super) fn restart_recovery(&mut self, now: Instant, outputs: &mut Outputs) {
        self.recovery = None;
        self.download = None;
        self.timers.state_transfer_at = None;
        self.log.truncate_after(self.commit_number);
        self.start_recovery(now, outputs);
    }

    /// No replica holds anything: this one starts empty.
    ///
    /// When every other replica is recovering too, the cluster is new and starts in
    /// view 0. Otherwise some replica has started, and this one's earlier life may
    /// have led a view whose messages are still in flight: it must not lead that
    /// view again with another log. So it joins the latest view any replica knows as
    /// a backup catching up (§5.2), or, when it would be that view's primary, starts
    /// a view change to the next one.
    fn start_empty(&mut self, now: Instant, everyone_recovering: bool, latest_view: u64, outputs: &mut Outputs) {
        self.recovery = None;
        self.timers.recovery_at = None;
        if everyone_recovering {
            self.enter_view(now, true);
            let primary = self.primary_of(self.view);
            if primary == self.me() {
                self.become_primary(now, Default::default());
            } else {
                self.acknowledge(primary, outputs);
            }
            return outputs.event(Event::Recovered { view: self.view, op_number: 0 });
        }
        self.view = latest_view;
        if self.primary_of(latest_view) == self.me() {
            self.status = ReplicaStatus::ViewChange;
            outputs.event(Event::Recovered { view: latest_view, op_number: 0 });
            return self.start_view_change(now, latest_view + 1, outputs);
        }
        self.enter_view(now, latest_view == 0);
        outputs.event(Event::Recovered { view: latest_view, op_number: 0 });
        self.request_state(now, outputs);
    }
}
