//! §5.2 State transfer: GetState and NewState, with a snapshot fetched chunk by
//! chunk for a replica that is behind the retained log (§5.1); see
//! [`crate::snapshot`] for how a snapshot travels.

use super::log::{Entry, Log, consecutive};
use super::{Message, ReplicaStatus, Vr, wrap};
use crate::client_table::ClientTable;
use crate::ids::ReplicaId;
use crate::protocol::Outputs;
use crate::replica::{DropReason, Event};
use crate::snapshot::{Chunk, Download, Manifest, Progress, SnapshotId};
use crate::store::NoteStore;
use crate::time::Instant;
use crate::wire::size;

impl Vr {
    /// Asks for the state unless a request is already outstanding.
    pub(super) fn request_state_soon(&mut self, now: Instant, outputs: &mut Outputs) {
        if self.timers.state_transfer_at.is_none() && self.download.is_none() {
            self.request_state(now, outputs);
        }
    }

    /// Sends GetState to the primary, or, at a new primary missing committed state,
    /// to the replica whose log it adopts, or, recovering, to the primary it recovers from.
    pub(super) fn request_state(&mut self, now: Instant, outputs: &mut Outputs) {
        self.state_requests_sent = 0;
        self.send_state_request(now, outputs);
    }

    /// Sends GetState, and again on `state_transfer_at` after a longer wait each
    /// time (see [`Vr::resend_wait`]) until the state arrives.
    pub(super) fn send_state_request(&mut self, now: Instant, outputs: &mut Outputs) {
        if self.download.is_some() {
            return; // The snapshot comes first; its chunks have their own timer.
        }
        let recovering_from = self.recovery.as_ref().and_then(|recovery| recovery.fetching);
        let (target, op_number) = match (self.status, self.view_change.awaiting_state_from, recovering_from) {
            (ReplicaStatus::ViewChange, Some(sender), _) => (sender, self.commit_number),
            (ReplicaStatus::Normal, _, _) if !self.is_primary() => {
                // Catching up, the entries after the matched ones are compared, not trusted.
                let after = if self.catching_up() { self.view_log_matched_through } else { self.log.op_number() };
                (self.primary_of(self.view), after)
            }
            (ReplicaStatus::Recovering, _, Some(fetch)) => {
                if self.state_requests_sent >= super::RECOVERY_STATE_REQUESTS_MAX {
                    // The primary stopped answering (it crashed, or moved to a later
                    // view, where a request of this one is stale): learn the view anew.
                    return self.restart_recovery(now, outputs);
                }
                (fetch.primary, self.log.op_number())
            }
            _ => return,
        };
        self.timers.state_transfer_at = Some(now + self.resend_wait(self.state_requests_sent));
        self.state_requests_sent = self.state_requests_sent.saturating_add(1);
        outputs.send(target, wrap(Message::GetState { view: self.view, op_number }));
    }

    pub(super) fn on_get_state(
        &mut self,
        now: Instant,
        from: ReplicaId,
        view: u64,
        op_number: u64,
        outputs: &mut Outputs,
    ) {
        if self.stale_view(view, from, outputs) || view > self.view {
            return;
        }
        // In a view change only the new primary may take this replica's log: it
        // adopts it whole, uncommitted entries included.
        let serves = match self.status {
            ReplicaStatus::Normal => !self.catching_up(),
            ReplicaStatus::ViewChange => from == self.primary_of(view),
            ReplicaStatus::Recovering => false,
        };
        if !serves || op_number > self.log.op_number() {
            return;
        }
        self.send_new_state(now, from, op_number, outputs);
    }

    /// Sends `to` what follows `after`: entries, if retained, up to
    /// `message_bytes_max`; otherwise the manifest of a snapshot to fetch first,
    /// frozen now or reused if the entries after it are still retained.
    fn send_new_state(&mut self, now: Instant, to: ReplicaId, after: u64, outputs: &mut Outputs) {
        let (after, snapshot, entries) = if after >= self.log.checkpoint() {
            let (count_max, bytes_max) = self.batch_bounds();
            (after, None, self.log.entries_after(after, count_max, bytes_max))
        } else {
            let manifest = self.images.get_or_freeze(
                now,
                self.log.checkpoint(),
                self.commit_number,
                &self.store,
                &self.client_table,
                self.config.limits.message_bytes_max,
            );
            outputs.event(Event::SnapshotSent { to, sequence: manifest.id.sequence });
            (manifest.id.sequence, Some(manifest), Vec::new())
        };
        let message = Message::NewState {
            view: self.view,
            op_number: self.log.op_number(),
            commit_number: self.commit_number,
            after,
            snapshot,
            entries,
        };
        outputs.send(to, wrap(message));
    }

    /// What each entry of a NewState weighs, if the message is consistent with
    /// itself; a forged one is dropped before anything else is looked at.
    pub(super) fn weigh_new_state(
        &self,
        commit_number: u64,
        op_number: u64,
        after: u64,
        snapshot: Option<&Manifest>,
        entries: &[Entry],
    ) -> Option<Vec<usize>> {
        let limits = &self.config.limits;
        let starts_after = entries.first().is_none_or(|first| first.op_number == after.saturating_add(1));
        let snapshot_matches = snapshot
            .is_none_or(|manifest| manifest.id.sequence == after && entries.is_empty() && after <= commit_number);
        let reach = after.saturating_add(entries.len() as u64);
        let consistent = starts_after
            && snapshot_matches
            && consecutive(entries)
            && entries.len() <= limits.entries_per_message_max
            && commit_number <= op_number
            && reach <= op_number;
        if !consistent {
            return None;
        }
        self.weigh_entries(entries, limits.message_bytes_max)
    }

    /// What each entry weighs ([`size::entry_bytes`]), if every one is an entry a
    /// primary could have ordered and the batch, but for its first entry, weighs
    /// at most `bytes_max`.
    pub(super) fn weigh_entries(&self, entries: &[Entry], bytes_max: usize) -> Option<Vec<usize>> {
        let body_bytes_max = self.config.limits.store.body_bytes_max;
        let mut total = 0;
        let mut weights = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let text = size::operation_text_bytes(&entry.operation);
            let weight = text + size::ENTRY_OVERHEAD_BYTES_MAX;
            total += weight;
            if text > body_bytes_max || (index > 0 && total > bytes_max) {
                return None;
            }
            weights.push(weight);
        }
        Some(weights)
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
        snapshot: Option<Manifest>,
        entries: Vec<Entry>,
        outputs: &mut Outputs,
    ) {
        let Some(weights) = self.weigh_new_state(commit_number, op_number, after, snapshot.as_ref(), &entries) else {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        };
        if self.stale_view(view, from, outputs) || view > self.view || self.is_primary() {
            return;
        }
        let awaited = self.view_change.awaiting_state_from == Some(from);
        let expected = match self.status {
            ReplicaStatus::ViewChange => awaited,
            ReplicaStatus::Normal => from == self.primary_of(self.view),
            ReplicaStatus::Recovering => false,
        };
        if !expected {
            return; // An answer to an earlier request, from a replica no longer asked.
        }
        self.timers.state_transfer_at = None;
        if let Some(manifest) = snapshot {
            return self.start_download(now, from, manifest, outputs);
        }
        if self.status == ReplicaStatus::ViewChange {
            let Some(matched) = self.adopt_state(from, commit_number, after, entries, &weights, outputs) else {
                return;
            };
            self.view_change.awaiting_state_from = None;
            // Only what is known to be the sender's log runs: an entry of this log past
            // the batch may be of an older view that the adopted log replaced.
            self.commit_through(commit_number.min(matched), outputs);
            return self.complete_view_change(now, outputs);
        }
        let continued = if self.catching_up() {
            self.match_view_log(from, commit_number, after, entries, &weights, outputs)
        } else {
            self.append_state(from, commit_number, after, entries, &weights, outputs)
        };
        if !continued {
            return;
        }
        match self.status {
            ReplicaStatus::ViewChange => unreachable!("a new primary takes state in adopt_state"),
            ReplicaStatus::Normal => {
                let primary = self.primary_of(self.view);
                if self.catching_up() && self.view_log_matched_through >= op_number {
                    // Everything the primary had when it answered: this is the view's
                    // log. What follows it here is of an older view, and not in this one.
                    self.log.truncate_after(self.view_log_matched_through);
                    self.log_view = self.view;
                }
                if self.log_view == self.view && self.log.op_number() >= op_number {
                    // The primary's log as it was after this replica restarted: it holds
                    // every entry this replica acknowledged in this view.
                    self.repairing = false;
                }
                self.acknowledge(primary, outputs);
                self.commit_through(commit_number, outputs);
                if self.executable_through() < op_number {
                    self.request_state(now, outputs);
                }
            }
            ReplicaStatus::Recovering => unreachable!("a recovering replica takes state in on_recovery_state"),
        }
    }

    /// Appends the entries of a NewState that continue this log, within the bound on
    /// uncommitted entries. Returns false, having counted the message as dropped,
    /// when they contradict the log.
    pub(super) fn append_state(
        &mut self,
        from: ReplicaId,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
        weights: &[usize],
        outputs: &mut Outputs,
    ) -> bool {
        if after < self.log.checkpoint() || after > self.log.op_number() {
            return true; // Nothing here continues this log; the caller asks again.
        }
        if !self.log.agrees_with(&entries) {
            outputs.drop_message(from, DropReason::Conflicting);
            return false;
        }
        for (entry, weight) in entries.into_iter().zip(weights) {
            if entry.op_number != self.log.op_number() + 1 {
                continue;
            }
            if !self.fits_uncommitted(commit_number, *weight) {
                outputs.drop_message(from, DropReason::TooFarAhead);
                break;
            }
            self.log.append_weighed(entry, *weight);
        }
        true
    }

    /// At a new primary whose adopted log starts after its commit number (see
    /// [`Vr::complete_view_change`]): takes a batch of that log from its sender,
    /// and returns how far this log is now known to equal it, or `None`, having
    /// counted the message as dropped, when it contradicts a committed entry.
    ///
    /// This replica's entries after its commit number are of its own `log_view`,
    /// which may be older than the adopted log's: they were compared with nothing.
    /// Executing them because the sender's commit number covers them would run an
    /// entry the adopted log replaced (a restarted replica's old uncommitted op,
    /// where the later view committed another). An entry that differs from the
    /// adopted log was never committed, nor any after it (that log holds every
    /// committed entry), so the batch replaces them from there, as catching up
    /// does; entries past the batch stay, unexecuted, until the next batch.
    fn adopt_state(
        &mut self,
        from: ReplicaId,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
        weights: &[usize],
        outputs: &mut Outputs,
    ) -> Option<u64> {
        if after < self.log.checkpoint() || after > self.commit_number {
            // Nothing here continues what this replica executed; the caller asks again.
            return Some(self.commit_number);
        }
        let mut matched = after;
        for (entry, weight) in entries.into_iter().zip(weights) {
            let op_number = entry.op_number;
            match self.log.get(op_number) {
                Some(ours) if *ours == entry => {}
                Some(_) if op_number <= self.commit_number => {
                    outputs.drop_message(from, DropReason::Conflicting);
                    return None;
                }
                ours => {
                    if ours.is_some() {
                        self.log.truncate_after(op_number - 1);
                    }
                    if !self.fits_uncommitted(commit_number, *weight) {
                        outputs.drop_message(from, DropReason::TooFarAhead);
                        break;
                    }
                    self.log.append_weighed(entry, *weight);
                }
            }
            matched = op_number;
        }
        Some(matched)
    }

    /// Whether an entry weighing `weight` appended now keeps the uncommitted entries
    /// within `uncommitted_bytes_max`. Entries up to the sender's `commit_number` are
    /// executed right after, so they do not count.
    pub(super) fn fits_uncommitted(&self, commit_number: u64, weight: usize) -> bool {
        let committed = commit_number.max(self.commit_number).min(self.log.op_number());
        self.log.bytes_after(committed) + weight as u64 <= self.config.limits.uncommitted_bytes_max as u64
    }

    /// Catching up (§5.2): compares the view's entries with this log from where they
    /// last matched. An entry that differs was never committed, nor any after it:
    /// the view's log, which holds every committed entry, replaces them from there.
    /// Returns false, having counted the message as dropped, when the view's entries
    /// contradict what already matched.
    fn match_view_log(
        &mut self,
        from: ReplicaId,
        commit_number: u64,
        after: u64,
        entries: Vec<Entry>,
        weights: &[usize],
        outputs: &mut Outputs,
    ) -> bool {
        if after < self.log.checkpoint() || after > self.view_log_matched_through {
            return true; // Nothing here continues what matched; the caller asks again.
        }
        for (entry, weight) in entries.into_iter().zip(weights) {
            let op_number = entry.op_number;
            let ours = self.log.get(op_number);
            if op_number <= self.view_log_matched_through {
                if ours.is_some_and(|ours| *ours != entry) {
                    outputs.drop_message(from, DropReason::Conflicting);
                    return false;
                }
                continue;
            }
            assert_eq!(op_number, self.view_log_matched_through + 1, "entries are consecutive");
            match ours {
                Some(ours) if *ours == entry => {}
                _ => {
                    assert!(op_number > self.commit_number, "committed entries are never replaced");
                    self.log.truncate_after(op_number - 1);
                    if !self.fits_uncommitted(commit_number, *weight) {
                        outputs.drop_message(from, DropReason::TooFarAhead);
                        break;
                    }
                    self.log.append_weighed(entry, *weight);
                }
            }
            self.view_log_matched_through = op_number;
        }
        true
    }

    /// Starts fetching the snapshot `manifest` names from `source`, unless this
    /// replica already executed as much.
    pub(super) fn start_download(
        &mut self,
        now: Instant,
        source: ReplicaId,
        manifest: Manifest,
        outputs: &mut Outputs,
    ) {
        if manifest.id.sequence <= self.commit_number {
            return self.request_state(now, outputs);
        }
        if self
            .download
            .as_ref()
            .is_some_and(|download| *download.manifest() == manifest && download.source() == source)
        {
            return; // Already fetching it: a repeated answer.
        }
        let download = Download::new(source, manifest, now);
        let complete = download.is_complete();
        self.download = Some(download);
        if complete {
            return self.finish_download(now, outputs);
        }
        self.request_chunks(now, false, outputs);
    }

    /// Asks for the chunks the download may have in flight: those not yet asked
    /// for, or, `again`, every one in flight.
    fn request_chunks(&mut self, now: Instant, again: bool, outputs: &mut Outputs) {
        let unanswered = self.download.as_ref().map_or(0, Download::unanswered);
        let wait = self.resend_wait(unanswered);
        let Some(download) = self.download.as_mut() else { return };
        let asked = if again { download.requests_again(now, wait) } else { download.requests(now, wait) };
        for (snapshot, chunk) in asked {
            outputs.send(download.source(), wrap(Message::GetSnapshotChunk { snapshot, chunk }));
        }
    }

    /// No chunk came in time: ask again, or, after [`super::CHUNK_REQUESTS_MAX`]
    /// times, give up this source and ask for the state anew.
    pub(super) fn on_chunk_overdue(&mut self, now: Instant, outputs: &mut Outputs) {
        let Some(download) = &self.download else { return };
        if download.unanswered() < super::CHUNK_REQUESTS_MAX {
            return self.request_chunks(now, true, outputs);
        }
        self.download = None;
        self.request_state(now, outputs);
    }

    /// Any replica holding the image serves it, in any status: a snapshot is
    /// committed state, the same whoever sends it.
    pub(super) fn on_get_snapshot_chunk(
        &mut self,
        now: Instant,
        from: ReplicaId,
        snapshot: SnapshotId,
        index: u64,
        outputs: &mut Outputs,
    ) {
        let message = match self.images.chunk(now, snapshot, index) {
            Some(chunk) => Message::SnapshotChunk { chunk },
            None => Message::SnapshotUnavailable { snapshot },
        };
        outputs.send(from, wrap(message));
    }

    pub(super) fn on_snapshot_chunk(&mut self, now: Instant, from: ReplicaId, chunk: Chunk, outputs: &mut Outputs) {
        let Some(download) = self.download.as_mut() else {
            if chunk.snapshot.sequence > self.commit_number {
                outputs.drop_message(from, DropReason::SnapshotMismatch);
            }
            return; // A late copy of a chunk of a snapshot already installed.
        };
        let limits = self.config.limits.store;
        match download.accept(from, chunk, &limits, self.config.defect) {
            Err(reason) => outputs.drop_message(from, reason),
            Ok(Progress::Ignored) => {}
            Ok(Progress::More) => self.request_chunks(now, false, outputs),
            Ok(Progress::Complete) => self.finish_download(now, outputs),
        }
    }

    pub(super) fn on_snapshot_unavailable(
        &mut self,
        now: Instant,
        from: ReplicaId,
        snapshot: SnapshotId,
        outputs: &mut Outputs,
    ) {
        let fetching = self
            .download
            .as_ref()
            .is_some_and(|download| download.source() == from && download.manifest().id == snapshot);
        if fetching {
            self.download = None;
            self.request_state(now, outputs);
        }
    }

    /// Installs the snapshot just completed, if its digest matches, and goes on
    /// fetching the entries after it.
    fn finish_download(&mut self, now: Instant, outputs: &mut Outputs) {
        let download = self.download.take().expect("a download just completed");
        let (source, sequence) = (download.source(), download.manifest().id.sequence);
        match download.install(self.config.limits.store, self.config.defect) {
            Ok((store, client_table)) => {
                if sequence > self.commit_number {
                    self.install_snapshot(sequence, store, client_table);
                    outputs.event(Event::SnapshotInstalled { from: source, sequence });
                }
            }
            Err(_) => outputs.drop_message(source, DropReason::SnapshotMismatch),
        }
        self.request_state(now, outputs);
    }

    /// Replaces the executed state with a snapshot's; the log restarts at its sequence.
    /// Catching up, the entries after the snapshot stay, still to be compared with
    /// the view's log (see [`Vr::catch_up_with_view`]).
    pub(super) fn install_snapshot(&mut self, sequence: u64, store: NoteStore, client_table: ClientTable) {
        assert!(sequence >= self.commit_number, "a snapshot never takes the state back");
        let unmatched = if self.catching_up() {
            self.log.entries_after(sequence.min(self.log.op_number()), usize::MAX, usize::MAX)
        } else {
            Vec::new()
        };
        self.store.restore(store);
        self.client_table = client_table;
        self.commit_number = sequence;
        self.log = Log::new(sequence);
        for entry in unmatched {
            self.log.append(entry);
        }
        self.view_log_matched_through = sequence;
    }
}
