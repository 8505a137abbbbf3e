//! §4.1 Normal operation: Prepare, PrepareOk, Commit; pipelined, and batched when
//! requests arrive faster than backups acknowledge.

use std::collections::{BTreeSet, VecDeque};

use super::log::{Entry, consecutive};
use super::{BackupProgress, Message, PrimaryRole, ReplicaStatus, Vr, Waiter, wrap};
use crate::client_table::Admission;
use crate::config::Defect;
use crate::hlc::Timestamp;
use crate::ids::ReplicaId;
use crate::operation::{ClientRequest, Refusal, Reply};
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::time::Instant;
use crate::wire::size;

/// Prepares a backup may have unacknowledged at once. Two keep the link busy
/// (one is acknowledged while the next is on its way); more would send each
/// request in a message of its own under load, costing every replica a wake-up,
/// a disk write and a sync per request.
const PREPARES_IN_FLIGHT_MAX: usize = 2;

impl Vr {
    /// Becomes primary of the current view with the current log (§4.2 step 4, or a
    /// fresh start), having heard from `heard_from` in this view.
    pub(super) fn become_primary(&mut self, now: Instant, heard_from: BTreeSet<ReplicaId>) {
        let op_number = self.log.op_number();
        // Backups acknowledge the log of StartView; if they do not, send it again.
        let retransmit_at = (op_number > self.commit_number).then(|| now + self.config.timing.retransmit_timeout);
        let backups = self
            .config
            .peers()
            .map(|peer| {
                (
                    peer,
                    BackupProgress {
                        acknowledged: 0,
                        sent: op_number,
                        prepares_in_flight: VecDeque::new(),
                        retransmit_at,
                    },
                )
            })
            .collect();
        self.primary = Some(PrimaryRole {
            backups,
            heard_from,
            waiting: Default::default(),
            reads: Default::default(),
            // At once: backups answer the heartbeat, and the primary needs to hear a quorum.
            heartbeat_at: now,
        });
        self.timers.primary_silence_at = None;
    }

    /// §4.1 steps 2–3 at the primary; `origin` holds the client.
    pub(super) fn on_request_at_primary(
        &mut self,
        now: Instant,
        origin: ReplicaId,
        request: ClientRequest,
        outputs: &mut Outputs,
    ) {
        let ClientRequest { client, request_number, operation, .. } = request;
        if !self.heard_from_quorum() {
            let refusal = Refusal::unavailable("the primary has not heard from a quorum in this view");
            return self.answer(origin, client, request_number, Reply::refused(refusal), outputs);
        }
        if operation.is_read() {
            return self.enqueue_read(now, origin, client, request_number, operation, outputs);
        }
        match self.client_table.admit(client, request_number) {
            Admission::Retry(reply) => return self.answer(origin, client, request_number, reply, outputs),
            Admission::Stale => return,
            Admission::Execute => {}
        }
        let in_log = (self.commit_number + 1..=self.log.op_number()).any(|op_number| {
            self.log
                .get(op_number)
                .is_some_and(|entry| entry.client == client && entry.request_number == request_number)
        });
        let primary = self.primary.as_mut().expect("on_request_at_primary runs at the primary");
        if in_log {
            // A retry of a request being prepared: answer it where it came from last.
            primary.waiting.insert(client, Waiter { request_number, origin });
            return;
        }
        let limits = &self.config.limits;
        let entry_bytes = size::entry_bytes(&operation);
        if entry_bytes - size::ENTRY_OVERHEAD_BYTES_MAX > limits.store.body_bytes_max {
            let refusal = Refusal::invalid(format!(
                "the request's body is over the limit of {} bytes",
                limits.store.body_bytes_max
            ));
            return self.answer(origin, client, request_number, Reply::refused(refusal), outputs);
        }
        let uncommitted = self.log.op_number() - self.commit_number;
        let uncommitted_bytes = self.log.bytes_after(self.commit_number) + entry_bytes as u64;
        if primary.waiting.len() >= limits.pending_requests_max
            || uncommitted >= (limits.log_entries_max / 2) as u64
            || uncommitted_bytes > limits.uncommitted_bytes_max as u64
        {
            outputs.event(Event::Overloaded { queue: "prepare".into() });
            let refusal = Refusal::unavailable("the primary has too many operations in flight");
            return self.answer(origin, client, request_number, Reply::refused(refusal), outputs);
        }
        let last_timestamp = self.log.last_timestamp().unwrap_or_default().max(self.store.last_timestamp());
        let entry = Entry {
            op_number: self.log.op_number() + 1,
            view: self.view,
            client,
            request_number,
            operation,
            timestamp: Timestamp::next(now, last_timestamp),
        };
        outputs.event(Event::Ordered {
            sequence: entry.op_number,
            client,
            request_number,
            operation: entry.operation.name().into(),
        });
        primary.waiting.insert(client, Waiter { request_number, origin });
        self.log.append_weighed(entry, entry_bytes);
        self.send_prepares(now, outputs);
        self.advance_commit(outputs);
    }

    /// Sends each backup the entries it has not been sent, while fewer than
    /// [`PREPARES_IN_FLIGHT_MAX`] prepares and fewer than a message's worth of
    /// entries are unacknowledged: beyond that, entries wait and go out together
    /// with the next acknowledgement (batching under load: one message, one disk
    /// write and one sync at the backup for many requests).
    fn send_prepares(&mut self, now: Instant, outputs: &mut Outputs) {
        let window = self.config.limits.entries_per_message_max as u64;
        let retransmit_at = now + self.config.timing.retransmit_timeout;
        let op_number = self.log.op_number();
        let primary = self.primary.as_mut().expect("only the primary prepares");
        for (backup, progress) in &mut primary.backups {
            if progress.sent >= op_number
                || progress.sent - progress.acknowledged.min(progress.sent) >= window
                || progress.prepares_in_flight.len() >= PREPARES_IN_FLIGHT_MAX
            {
                continue;
            }
            if progress.sent < self.log.checkpoint() {
                continue; // Behind the retained log: the retransmission timer sends a snapshot.
            }
            let limits = &self.config.limits;
            let entries =
                self.log.entries_after(progress.sent, limits.entries_per_message_max, limits.message_bytes_max);
            progress.sent += entries.len() as u64;
            progress.prepares_in_flight.push_back(progress.sent);
            progress.retransmit_at.get_or_insert(retransmit_at);
            outputs
                .send(*backup, wrap(Message::Prepare { view: self.view, commit_number: self.commit_number, entries }));
        }
    }

    /// How many entries, and what weight of them, one message carries.
    pub(super) fn batch_bounds(&self) -> (usize, usize) {
        let limits = &self.config.limits;
        let bytes_max =
            if self.config.defect == Some(Defect::UnboundedBatches) { usize::MAX } else { limits.message_bytes_max };
        (limits.entries_per_message_max, bytes_max)
    }

    /// §4.1 step 4: an entry held by a quorum in this view is committed.
    pub(super) fn advance_commit(&mut self, outputs: &mut Outputs) {
        let primary = self.primary.as_ref().expect("only the primary commits");
        let mut acknowledged: Vec<u64> = primary.backups.values().map(|progress| progress.acknowledged).collect();
        acknowledged.push(self.self_acknowledged());
        acknowledged.sort_unstable_by(|a, b| b.cmp(a));
        let committed = acknowledged[self.quorum() - 1];
        if committed > self.commit_number {
            self.commit_through(committed, outputs);
        }
    }

    pub(super) fn on_prepare_ok(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        op_number: u64,
        outputs: &mut Outputs,
    ) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        if view > self.view {
            // Only the primary of a view receives PrepareOk for it, and it knows its view.
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        let log_op_number = self.log.op_number();
        let Some(primary) = self.primary.as_mut() else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        if op_number > log_op_number {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        primary.heard_from.insert(from);
        let progress = primary.backups.get_mut(&from).expect("senders are validated peers");
        if op_number > progress.acknowledged {
            progress.acknowledged = op_number;
            progress.sent = progress.sent.max(op_number);
            while progress.prepares_in_flight.front().is_some_and(|&last| last <= op_number) {
                progress.prepares_in_flight.pop_front();
            }
            let more_unacknowledged = op_number < log_op_number;
            progress.retransmit_at = more_unacknowledged.then(|| now + self.config.timing.retransmit_timeout);
        }
        self.advance_commit(outputs);
        self.send_prepares(now, outputs);
    }

    /// §4.1 step 4 at a backup: append consecutive entries, acknowledge, execute what is committed.
    pub(super) fn on_prepare(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        commit_number: u64,
        entries: Vec<Entry>,
        outputs: &mut Outputs,
    ) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        if from != self.primary_of(view) || self.primary_of(view) == self.me() {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        let weights = self.weigh_entries(&entries, self.config.limits.message_bytes_max);
        let Some(weights) = weights.filter(|_| {
            consecutive(&entries)
                && entries.len() <= self.config.limits.entries_per_message_max
                && entries.iter().all(|entry| entry.view <= view)
        }) else {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        };
        if view > self.view || self.status != ReplicaStatus::Normal {
            return self.catch_up_with_view(now, view, outputs);
        }
        self.reset_primary_silence(now);
        let unmatched_entries = self.catching_up() && self.view_log_matched_through < self.log.op_number();
        if unmatched_entries || entries.first().is_some_and(|first| first.op_number > self.log.op_number() + 1) {
            // Catching up, entries continue this log only once all of it matches the view's.
            self.commit_through(commit_number, outputs);
            return self.request_state_soon(now, outputs);
        }
        if !self.log.agrees_with(&entries) {
            return outputs.drop_message(from, DropReason::Conflicting);
        }
        let uncommitted_max = self.config.limits.log_entries_max as u64;
        for (entry, weight) in entries.into_iter().zip(weights) {
            let too_heavy = !self.fits_uncommitted(commit_number, weight);
            if entry.op_number.saturating_sub(self.commit_number) > uncommitted_max || too_heavy {
                outputs.drop_message(from, DropReason::TooFarAhead);
                break;
            }
            if entry.op_number == self.log.op_number() + 1 {
                self.log.append_weighed(entry, weight);
            }
        }
        if self.catching_up() {
            self.view_log_matched_through = self.log.op_number();
        }
        self.acknowledge(from, outputs);
        self.commit_through(commit_number, outputs);
    }

    /// §4.1 step 6: learn the commit number; a heartbeat from the primary.
    pub(super) fn on_commit(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        commit_number: u64,
        outputs: &mut Outputs,
    ) {
        if self.stale_view(view, from, outputs) {
            return;
        }
        if from != self.primary_of(view) || self.primary_of(view) == self.me() {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if view > self.view || self.status != ReplicaStatus::Normal {
            return self.catch_up_with_view(now, view, outputs);
        }
        self.reset_primary_silence(now);
        if commit_number > self.executable_through() {
            self.request_state_soon(now, outputs);
        }
        self.commit_through(commit_number, outputs);
        // The answer tells a primary that has not heard from this replica in its view yet.
        self.acknowledge(from, outputs);
    }

    /// §4.1 step 4: tells the primary how far this replica's log reaches. Only a
    /// replica that holds the view's log acknowledges: an acknowledgement counts
    /// towards a commit, and a later view change must find that commit in a log
    /// labelled with this view.
    pub(super) fn acknowledge(&self, primary: ReplicaId, outputs: &mut Outputs) {
        if self.log_view == self.view {
            outputs.send(primary, wrap(Message::PrepareOk { view: self.view, op_number: self.log.op_number() }));
        }
    }

    pub(super) fn heard_from_quorum(&self) -> bool {
        self.primary.as_ref().is_some_and(|primary| primary.heard_from.len() + 1 >= self.quorum())
    }

    /// The primary's timers: heartbeat commits, retransmission to late backups, read rounds.
    pub(super) fn on_primary_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        let heartbeat_interval = self.config.timing.heartbeat_interval;
        let (view, commit_number, checkpoint) = (self.view, self.commit_number, self.log.checkpoint());
        let retransmit_timeout = self.config.timing.retransmit_timeout;
        let primary = self.primary.as_mut().expect("on_primary_timeout runs at the primary");
        if primary.heartbeat_at <= now {
            primary.heartbeat_at = now + heartbeat_interval;
            for backup in primary.backups.keys() {
                outputs.send(*backup, wrap(Message::Commit { view, commit_number }));
            }
        }
        let late: Vec<ReplicaId> = primary
            .backups
            .iter()
            .filter(|(_, progress)| progress.retransmit_at.is_some_and(|at| at <= now))
            .map(|(backup, _)| *backup)
            .collect();
        let op_number = self.log.op_number();
        for backup in late {
            let primary = self.primary.as_mut().expect("still the primary");
            let progress = primary.backups.get_mut(&backup).expect("a configured backup");
            // Nothing acknowledged in time: send again from what the backup holds. A
            // backup behind the retained log sees a gap and asks for the state (§5.2).
            progress.sent = progress.acknowledged.max(checkpoint);
            progress.prepares_in_flight.clear();
            progress.retransmit_at = Some(now + retransmit_timeout);
            let entries = usize::try_from(op_number - progress.sent).unwrap_or(usize::MAX);
            outputs.event(Event::Retransmitted { to: backup, first_sequence: progress.sent + 1, entries });
        }
        self.send_prepares(now, outputs);
        self.retry_read_round(now, outputs);
    }
}
