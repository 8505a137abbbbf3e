//! Linearizable reads by a read round: the primary answers a read only after a
//! quorum confirmed, after the read arrived, that it is still primary of its view,
//! and after every entry it had at arrival is committed.
//!
//! Why that is enough: a later view needs a quorum that left this view, and any two
//! quorums share a replica, which cannot have confirmed this view after leaving it
//! (views never go back). So no write was acknowledged in a later view before the
//! read arrived, and every write acknowledged before it is in this primary's log.
//! No clock is involved: the argument holds under any clock skew and drift.

use std::collections::{BTreeSet, VecDeque};

use super::{Message, ReplicaStatus, Vr, wrap};
use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::operation::{Operation, Refusal, Reply};
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::time::Instant;

#[derive(Debug, Default)]
pub(super) struct ReadRounds {
    /// The latest round started.
    round: u64,
    /// The latest round a quorum confirmed.
    confirmed_round: u64,
    /// Replicas that confirmed `round`, when it is not yet confirmed.
    confirmations: BTreeSet<ReplicaId>,
    retry_at: Option<Instant>,
    pending: VecDeque<PendingRead>,
}

#[derive(Debug)]
pub(super) struct PendingRead {
    pub(super) client: ClientId,
    pub(super) request_number: RequestNumber,
    pub(super) origin: ReplicaId,
    operation: Operation,
    /// The round that must be confirmed: one started after the read arrived.
    round: u64,
    /// The log's op number when the read arrived; it must be committed first.
    op_number: u64,
}

impl ReadRounds {
    fn in_flight(&self) -> bool {
        self.round > self.confirmed_round
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn into_pending(self) -> VecDeque<PendingRead> {
        self.pending
    }
}

impl Vr {
    pub(super) fn enqueue_read(
        &mut self,
        now: Instant,
        origin: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        operation: Operation,
        outputs: &mut Outputs,
    ) {
        let op_number = self.log.op_number();
        let pending_max = self.config.limits.pending_requests_max;
        let reads = &mut self.primary.as_mut().expect("reads wait at the primary").reads;
        if reads.pending.len() >= pending_max {
            outputs.event(Event::Overloaded { queue: "reads".into() });
            let reply = Reply::refused(Refusal::unavailable("too many reads waiting"));
            return self.answer(origin, client, request_number, reply, outputs);
        }
        // A round already in flight may have been confirmed before this read arrived.
        let round = reads.round + 1;
        reads.pending.push_back(PendingRead { client, request_number, origin, operation, round, op_number });
        if !reads.in_flight() {
            self.start_read_round(now, outputs);
        }
    }

    fn start_read_round(&mut self, now: Instant, outputs: &mut Outputs) {
        let quorum = self.quorum();
        let view = self.view;
        let reads = &mut self.primary.as_mut().expect("read rounds run at the primary").reads;
        reads.round += 1;
        reads.confirmations.clear();
        if quorum == 1 {
            reads.confirmed_round = reads.round;
            return self.answer_confirmed_reads(outputs);
        }
        reads.retry_at = Some(now + self.config.timing.retransmit_timeout);
        for peer in self.config.peers() {
            outputs.send(peer, wrap(Message::ConfirmView { view, round: reads.round }));
        }
    }

    pub(super) fn retry_read_round(&mut self, now: Instant, outputs: &mut Outputs) {
        let view = self.view;
        let retransmit_timeout = self.config.timing.retransmit_timeout;
        let reads = &mut self.primary.as_mut().expect("read rounds run at the primary").reads;
        if !reads.in_flight() || reads.retry_at.is_none_or(|at| at > now) {
            return;
        }
        reads.retry_at = Some(now + retransmit_timeout);
        for peer in self.config.peers().filter(|peer| !reads.confirmations.contains(peer)) {
            outputs.send(peer, wrap(Message::ConfirmView { view, round: reads.round }));
        }
    }

    /// At a backup: confirm that this replica is in `view` with `from` as its primary.
    pub(super) fn on_confirm_view(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        round: u64,
        outputs: &mut Outputs,
    ) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        if from != self.primary_of(view) || from == self.me() {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if view > self.view || self.status != ReplicaStatus::Normal {
            return self.catch_up_with_view(now, view, outputs);
        }
        self.reset_primary_silence(now);
        outputs.send(from, wrap(Message::ConfirmViewOk { view, round }));
    }

    pub(super) fn on_confirm_view_ok(&mut self, from: ReplicaId, view: u64, round: u64, outputs: &mut Outputs) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        let quorum = self.quorum();
        let Some(primary) = self.primary.as_mut().filter(|_| view == self.view) else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        let reads = &mut primary.reads;
        if round != reads.round || !reads.in_flight() {
            return; // A late confirmation of a finished round.
        }
        reads.confirmations.insert(from);
        if reads.confirmations.len() + 1 >= quorum {
            reads.confirmed_round = reads.round;
            reads.retry_at = None;
            self.answer_confirmed_reads(outputs);
        }
    }

    /// Answers, in arrival order, the reads whose round is confirmed and whose
    /// entries are committed; starts the next round for reads that wait for one.
    pub(super) fn answer_confirmed_reads(&mut self, outputs: &mut Outputs) {
        let commit_number = self.commit_number;
        let Some(primary) = self.primary.as_mut() else { return };
        let reads = &mut primary.reads;
        let mut ready = Vec::new();
        while let Some(read) = reads.pending.front() {
            if read.round > reads.confirmed_round || read.op_number > commit_number {
                break;
            }
            ready.push(reads.pending.pop_front().expect("front exists"));
        }
        let next_round_needed = reads.pending.front().is_some_and(|read| read.round > reads.confirmed_round);
        let start_next = next_round_needed && !reads.in_flight();
        for read in ready {
            let reply = self.store.query(&read.operation);
            self.answer(read.origin, read.client, read.request_number, reply, outputs);
        }
        if start_next {
            self.start_read_round(self.now, outputs);
        }
    }
}
