//! Viewstamped Replication Revisited (Liskov & Cowling, MIT-CSAIL-TR-2012-021):
//! noted's default protocol.
//!
//! VR keeps every replica's state in memory, and its recovery protocol (§4.3) is
//! safe for a replica that restarts with empty memory: the replica learns the
//! current state from a quorum before it takes part again. Raft's safety, by
//! contrast, rests on a durable vote and log.
//!
//! ```text
//! normal operation (§4.1)            view change (§4.2)                  recovery (§4.3)
//! client ─▶ primary                  backup: primary silent ─▶           restarted replica
//! primary ─ Prepare ─▶ backups         StartViewChange{v+1} ─▶ all         ─ Recovery{nonce} ─▶ all
//! backups ─ PrepareOk ─▶ primary     quorum of StartViewChange:          normal replicas
//! quorum: commit, execute, reply       DoViewChange{log} ─▶ primary(v+1)   ─ RecoveryResponse ─▶
//! primary ─ Commit ─▶ backups        primary(v+1), quorum of DoViewChange: quorum, with the primary's
//!   (or in the next Prepare)           best log; StartView ─▶ all          state: normal again
//! ```
//!
//! The modules follow the paper: [`normal`] (§4.1, with pipelining and batching),
//! [`view_change`] (§4.2), [`recovery`] (§4.3), [`state_transfer`] (§5.1–5.2, log
//! checkpoints and GetState/NewState), [`reads`] (linearizable reads by a read round).
//!
//! Differences from the paper, and why:
//! - Quorums are majorities (`n / 2 + 1`), so even cluster sizes are safe too; for
//!   `n = 2f + 1` this is the paper's `f + 1`.
//! - A cluster starts with every replica recovering. A recovering replica starts a
//!   fresh, empty cluster only when every other replica answers that it is
//!   recovering too or holds nothing (no entry, nothing committed): with at most
//!   `f` replicas failed at once, some replica would otherwise hold state. No host
//!   has to tell a first start from a restart.
//! - No message carries the whole state or the whole log. The log is bounded:
//!   entries up to the commit number are discarded past `log_entries_max`; a
//!   replica behind the retained log is sent the manifest of a snapshot with
//!   `NewState` and fetches it chunk by chunk ([`crate::snapshot`]), then the
//!   entries after it in batches of `message_bytes_max`. The uncommitted part of
//!   a log is bounded too (`uncommitted_bytes_max`): a primary refuses writes
//!   beyond it, so `DoViewChange` and `StartView` always carry every uncommitted
//!   entry, with as many committed ones before them as the same bound allows.
//! - A new primary missing committed entries that the best log does not carry
//!   asks that log's sender for them (entries, or a snapshot) before it starts
//!   the view. It executes only entries a batch showed to be that log's: its own
//!   past the batch may be of an older view, and the batch replaces them from the
//!   first that differs ([`state_transfer`]'s `adopt_state`).
//! - Recovery (§4.3) learns the latest view and its primary from a quorum, then
//!   fetches the primary's state by state transfer, still recovering: it takes
//!   part again only once it holds the primary's log up to where the primary's
//!   answer said it reached, as the paper's recovering replica does.
//! - A replica that learns of a view it missed (§5.2) keeps its uncommitted
//!   entries until the view's log replaces them, where the paper drops them at
//!   once: until it holds that log it still claims its older one in a view change,
//!   and the entries it dropped could be committed there. It compares the view's
//!   entries with its own, replacing them from the first that differs, and
//!   executes only what matches ([`view_change`]'s `catch_up_with_view`).
//!
//! # Fault model
//!
//! Tolerated: message loss, duplication, reordering and delay; partitions of any
//! shape (a side without a quorum makes no progress and loses nothing); crashes
//! with memory lost of up to `f` replicas at a time; pauses; clock skew and drift
//! (time drives only timeouts: reads use a read round, not a lease).
//!
//! Not tolerated: more than `f` replicas failed at once, or Byzantine peers.

pub(crate) mod log;
mod message;
mod normal;
mod reads;
mod recovery;
mod state_transfer;
mod storage_stall;
mod view_change;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use log::Entry;
pub use message::{Message, ReplicaStatus, ResponderState};

/// An empty log, for tests elsewhere in the crate that build messages as vr does.
#[cfg(test)]
pub(crate) fn log_for_tests() -> Log {
    Log::new(0)
}

use self::log::Log;
use self::reads::ReadRounds;
use crate::client_table::{Admission, ClientTable};
use crate::config::{Config, StorageKind};
use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::message::Message as AnyMessage;
use crate::operation::{ClientRequest, Consistency, Refusal, Reply};
use crate::protocol::{Outputs, PendingForwards, Protocol, SEQUENCE_NUMBER_MAX};
use crate::replica::{DropReason, Event, Freshness, Role, Status};
use crate::snapshot::{Download, Images};
use crate::storage::Recovered;
use crate::storage::journal::{Journal, ReplicaState};
use crate::store::NoteStore;
use crate::time::Instant;

#[derive(Debug)]
pub struct Vr {
    config: Config,
    status: ReplicaStatus,
    view: u64,
    /// The view whose log this replica holds: §4.2's v', the latest view in which it
    /// was normal, except that a replica that joined a view by state transfer (§5.2)
    /// claims it only once it holds that view's log up to where its primary was.
    /// Claiming it earlier, with a shorter log, could outrank a longer log of an
    /// older view that holds committed entries.
    log_view: u64,
    log: Log,
    /// While this replica is normal in a view whose log it does not hold yet
    /// (`log_view < view`, §5.2), how far its log is known to equal that view's
    /// log. It executes no further, and keeps the entries after it until the view's
    /// log replaces them: acknowledged in `log_view`, they may be committed there,
    /// and it still claims that view's log in a view change.
    view_log_matched_through: u64,
    /// Every entry up to here is committed and executed on `store` and `client_table`.
    commit_number: u64,
    store: NoteStore,
    client_table: ClientTable,
    forwards: PendingForwards,
    rng: ChaCha8Rng,
    /// Present while this replica is the primary of `view` with normal status.
    primary: Option<PrimaryRole>,
    view_change: ViewChangeProgress,
    recovery: Option<RecoveryProgress>,
    timers: Timers,
    /// View changes started since this replica was last normal, less one: each
    /// doubles the next view change's timeout (see [`Vr::view_change_timeout`]).
    view_changes_in_a_row: u32,
    /// GetState messages sent for the state this replica is waiting for (each resend waits longer).
    state_requests_sent: u32,
    /// Snapshots this replica serves to others.
    images: Images,
    /// The snapshot this replica is fetching, if any.
    download: Option<Download>,
    /// The time of the input being handled.
    now: Instant,
    /// With durable storage: what is on disk, and the messages waiting for it.
    journal: Option<Journal>,
    /// Restarted with a damaged log or checkpoint, and not yet holding the current
    /// view's log: a damaged entry may be one this replica acknowledged, so it sends
    /// no DoViewChange (its log cannot vouch for what it acknowledged) until a
    /// StartView or the primary's state replaces its log. With at most `f` replicas
    /// repairing at once, every view change quorum holds every committed entry intact.
    repairing: bool,
    /// The host cannot write to this replica's disk (see [`storage_stall`]).
    storage_stalled: bool,
    /// Values after the previous input, to assert they never go back.
    view_before: u64,
    commit_number_before: u64,
}

/// The view change timeout grows at most this many times (a power of two).
const VIEW_CHANGE_BACKOFF_MAX: u32 = 8;

/// While a snapshot is being fetched from this replica, the log keeps the entries
/// after it (the receiver asks for them next) up to this many times `log_entries_max`.
const LOG_KEPT_FOR_SNAPSHOTS_FACTOR: usize = 4;

/// A snapshot chunk asked for this many times without an answer: the download is
/// abandoned and the state asked for again, possibly from another replica.
const CHUNK_REQUESTS_MAX: u32 = 6;

/// A recovering replica that asked its primary for the state this many times
/// without an answer starts recovery again, to learn the latest view anew.
const RECOVERY_STATE_REQUESTS_MAX: u32 = 6;

/// The named timers; the replica reports the earliest as its next timeout.
#[derive(Debug, Default)]
struct Timers {
    /// Backup, normal: the primary has been silent this long; start a view change.
    primary_silence_at: Option<Instant>,
    /// View change: no new view by then; try the next view.
    view_change_at: Option<Instant>,
    /// Recovering: ask again.
    recovery_at: Option<Instant>,
    /// Lagging: ask again for the state.
    state_transfer_at: Option<Instant>,
    /// View change: send StartViewChange (and DoViewChange) again, in case they were lost.
    view_change_resend_at: Option<Instant>,
}

#[derive(Debug)]
struct PrimaryRole {
    backups: BTreeMap<ReplicaId, BackupProgress>,
    /// Backups heard from in this view. The primary orders nothing until, with itself,
    /// they are a quorum: a primary that no quorum can follow stays empty, and a
    /// new cluster whose other replicas are still starting can still form.
    heard_from: BTreeSet<ReplicaId>,
    /// Clients whose request is in the log, waiting for its commit to be answered.
    waiting: BTreeMap<ClientId, Waiter>,
    reads: ReadRounds,
    heartbeat_at: Instant,
}

#[derive(Debug)]
struct BackupProgress {
    /// The backup holds every entry up to here in this view.
    acknowledged: u64,
    /// Entries up to here were sent; more follow as acknowledgements arrive.
    sent: u64,
    /// The last op of each prepare sent and not yet acknowledged, oldest first.
    prepares_in_flight: VecDeque<u64>,
    retransmit_at: Option<Instant>,
}

#[derive(Debug)]
struct Waiter {
    request_number: RequestNumber,
    /// The replica holding the client.
    origin: ReplicaId,
}

#[derive(Debug, Default)]
struct ViewChangeProgress {
    start_view_change_from: BTreeSet<ReplicaId>,
    do_view_change_sent: bool,
    /// At the new primary: the logs received, by sender.
    do_view_change_from: BTreeMap<ReplicaId, DoViewChange>,
    /// At the new primary: waiting for a snapshot from this replica before starting the view.
    awaiting_state_from: Option<ReplicaId>,
    /// How many times the view change messages were sent so far.
    resends: u32,
}

#[derive(Clone, Debug)]
struct DoViewChange {
    log_view: u64,
    commit_number: u64,
    after: u64,
    entries: Vec<Entry>,
}

impl DoViewChange {
    fn op_number(&self) -> u64 {
        self.after + self.entries.len() as u64
    }
}

#[derive(Debug)]
struct RecoveryProgress {
    nonce: u64,
    /// Recovery messages sent so far (each resend waits longer).
    requests_sent: u32,
    responses: BTreeMap<ReplicaId, RecoveryAnswer>,
    /// Once a quorum answered: the primary whose state this replica fetches.
    fetching: Option<RecoveryFetch>,
}

#[derive(Debug)]
struct RecoveryAnswer {
    view: u64,
    responder: ResponderState,
}

/// §4.3 step 3, in pieces: the latest view, its primary, and how far the
/// primary's log reached when it answered.
#[derive(Clone, Copy, Debug)]
struct RecoveryFetch {
    view: u64,
    primary: ReplicaId,
    op_number: u64,
}

impl Vr {
    /// A replica with empty memory: it recovers (§4.3) before it takes part.
    pub(crate) fn new(config: Config, now: Instant) -> Vr {
        let rng = ChaCha8Rng::seed_from_u64(config.seed ^ now.as_nanos().rotate_left(32));
        let vr = Vr {
            status: ReplicaStatus::Recovering,
            view: 0,
            log_view: 0,
            log: Log::new(0),
            view_log_matched_through: 0,
            commit_number: 0,
            store: NoteStore::new(config.limits.store),
            client_table: ClientTable::new(config.limits.clients_max),
            forwards: PendingForwards::new(config.limits.pending_requests_max),
            rng,
            primary: None,
            view_change: ViewChangeProgress::default(),
            recovery: None,
            timers: Timers { recovery_at: Some(now), ..Timers::default() },
            view_changes_in_a_row: 0,
            state_requests_sent: 0,
            images: Images::default(),
            download: None,
            now,
            journal: (config.storage == StorageKind::Disk).then(|| Journal::unformatted(&config)),
            repairing: false,
            storage_stalled: false,
            view_before: 0,
            commit_number_before: 0,
            config,
        };
        assert!(vr.quorum() >= 1 && vr.quorum() <= usize::from(vr.config.replica_count));
        vr
    }

    /// A replica restarted from its data directory. It keeps the view it promised
    /// and the log it holds, and rejoins: as a backup of that view, or, if it was
    /// that view's primary, by a view change to the next. A primary that restarts
    /// may have sent prepares it lost (a primary sends before its own sync), so it
    /// never orders anything in that view again.
    pub(crate) fn reopen(config: Config, recovered: Recovered, now: Instant) -> Vr {
        let journal = Journal::reopened(&config, &recovered);
        let Recovered { superblock, store, client_table, log_start, entries, commit_number, damage, .. } = recovered;
        let mut vr = Vr::new(config, now);
        vr.view = superblock.view;
        vr.log_view = superblock.log_view;
        vr.log = Log::new(log_start);
        for entry in entries {
            vr.log.append(entry);
        }
        vr.log.take_changed_from();
        vr.commit_number = log_start;
        vr.view_log_matched_through = log_start;
        vr.repairing = damage.is_some() || superblock.repairing;
        vr.store.restore(store);
        vr.store.take_changes();
        vr.client_table = client_table;
        vr.journal = Some(journal);
        vr.timers = Timers::default();
        // Committed entries are in every later view's log: they match it, and run now.
        vr.status = ReplicaStatus::Normal;
        vr.view_log_matched_through = commit_number;
        vr.commit_through(commit_number, &mut Outputs::default());
        vr.store.take_changes();
        assert_eq!(vr.commit_number, commit_number, "a restarted replica executes what it knows committed");
        if vr.primary_of(vr.view) == vr.me() {
            vr.status = ReplicaStatus::ViewChange;
            vr.timers.view_change_at = Some(now);
        } else {
            vr.status = ReplicaStatus::Normal;
            vr.reset_primary_silence(now);
            if vr.catching_up() || vr.repairing {
                vr.timers.state_transfer_at = Some(now);
            }
        }
        vr.view_before = vr.view;
        vr.commit_number_before = vr.commit_number;
        vr
    }

    /// How far this replica's own log counts towards a commit quorum: all of it in
    /// memory; with durable storage, what is synced.
    fn self_acknowledged(&self) -> u64 {
        match &self.journal {
            None => self.log.op_number(),
            Some(journal) => journal.durable_op().unwrap_or(0).min(self.log.op_number()),
        }
    }

    /// Hands the state after an input to the journal, which writes what changed and
    /// holds the messages that must wait for it.
    fn persist(&mut self, outputs: &mut Outputs) {
        let changed_from = self.log.take_changed_from();
        let Some(journal) = self.journal.as_mut() else { return };
        let state = ReplicaState {
            view: self.view,
            log_view: self.log_view,
            commit_number: self.commit_number,
            log: &self.log,
            changed_from,
            repairing: self.repairing,
            store: &self.store,
            client_table: &self.client_table,
        };
        journal.after_input(&state, self.status == ReplicaStatus::Recovering, outputs);
    }

    fn me(&self) -> ReplicaId {
        self.config.replica
    }

    /// A majority: any two quorums share a replica.
    fn quorum(&self) -> usize {
        usize::from(self.config.replica_count) / 2 + 1
    }

    /// §4: the primary of a view is chosen round-robin by view number.
    fn primary_of(&self, view: u64) -> ReplicaId {
        let index = view % u64::from(self.config.replica_count);
        ReplicaId(u8::try_from(index).expect("replica_count fits in u8"))
    }

    fn is_primary(&self) -> bool {
        self.primary.is_some()
    }

    /// A timeout with seeded jitter, so that replicas do not all start view changes at once.
    fn jittered(&mut self, now: Instant, timeout: core::time::Duration) -> Instant {
        let jitter_nanos = self.rng.random_range(0..=timeout.as_nanos() as u64 / 2);
        now + timeout + core::time::Duration::from_nanos(jitter_nanos)
    }

    /// How long a view change may take before the next is tried: the configured
    /// timeout, doubled for each view change in a row that did not end in a view,
    /// up to [`VIEW_CHANGE_BACKOFF_MAX`] times. A view change costs time that grows
    /// with the log it carries (DoViewChange and StartView hold it whole); without
    /// the back-off, replicas whose view changes take longer than the timeout would
    /// abandon every one of them and never settle on a view.
    fn view_change_timeout(&self) -> core::time::Duration {
        let doublings = self.view_changes_in_a_row.min(VIEW_CHANGE_BACKOFF_MAX.trailing_zeros());
        self.config.timing.view_change_timeout * (1 << doublings)
    }

    /// How long to wait before sending a request that went unanswered `attempts`
    /// times again: the retransmit timeout, doubled for each attempt, up to the
    /// configured view change timeout. Recovery, state transfer and view change
    /// requests are answered with a snapshot or a whole log, which take long to
    /// build and read once the store is large: asking every retransmit timeout
    /// would keep the replica that answers too busy to lead.
    fn resend_wait(&self, attempts: u32) -> core::time::Duration {
        let timing = &self.config.timing;
        (timing.retransmit_timeout * (1 << attempts.min(16)))
            .min(timing.view_change_timeout.max(timing.retransmit_timeout))
    }

    fn reset_primary_silence(&mut self, now: Instant) {
        let timeout = self.config.timing.view_change_timeout;
        self.timers.primary_silence_at = Some(self.jittered(now, timeout));
    }

    fn answer(
        &self,
        origin: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        outputs: &mut Outputs,
    ) {
        if origin == self.me() {
            outputs.reply(client, request_number, reply, Freshness::Ordered);
        } else {
            outputs.send(origin, wrap(Message::ForwardReply { client, request_number, reply }));
        }
    }

    /// Normal in a view whose log this replica does not hold yet: it joined the view
    /// by a message other than StartView and fetches the log by state transfer.
    fn catching_up(&self) -> bool {
        self.status == ReplicaStatus::Normal && self.log_view < self.view
    }

    /// How far the log may be executed: all of it, except while catching up, where
    /// entries past what matches the view's log may be ones the view replaced.
    fn executable_through(&self) -> u64 {
        if self.catching_up() { self.view_log_matched_through } else { self.log.op_number() }
    }

    /// Executes every committed entry up to `commit_number` that is in the log (§4.1 step 4
    /// at the primary, step 7 at backups), answering clients at the primary.
    fn commit_through(&mut self, commit_number: u64, outputs: &mut Outputs) {
        let target = commit_number.min(self.executable_through());
        while self.commit_number < target {
            let op_number = self.commit_number + 1;
            // Borrowed, not cloned: an entry's operation may carry a whole note.
            let entry = self.log.get(op_number).expect("entries after the commit number are retained");
            let (client, request_number) = (entry.client, entry.request_number);
            let reply = match self.client_table.admit(client, request_number) {
                Admission::Execute => {
                    let reply = self.store.execute(&entry.operation, entry.timestamp);
                    self.client_table.record(client, request_number, reply.clone());
                    Some(reply)
                }
                // The same request twice in the log executes once: the second copy is a no-op.
                Admission::Retry(reply) => Some(reply),
                Admission::Stale => None,
            };
            self.commit_number = op_number;
            if let (Some(primary), Some(reply)) = (&mut self.primary, reply) {
                let waiter = primary.waiting.get(&client);
                if waiter.is_some_and(|waiter| waiter.request_number == request_number) {
                    let waiter = primary.waiting.remove(&client).expect("just found");
                    outputs.event(Event::Acknowledged { sequence: op_number, client, request_number });
                    self.answer(waiter.origin, client, request_number, reply, outputs);
                }
            }
        }
        if self.is_primary() {
            self.answer_confirmed_reads(outputs);
        }
    }

    /// §5.1: keeps the log within `log_entries_max` by forgetting executed entries;
    /// the store and client table are the checkpoint. While a replica fetches a
    /// snapshot from this one, the entries after it are kept a while longer (see
    /// [`LOG_KEPT_FOR_SNAPSHOTS_FACTOR`]): they are what it asks for next.
    fn discard_old_entries(&mut self) {
        let limits = &self.config.limits;
        let (limit, bytes_limit) = (limits.log_entries_max, limits.log_bytes_max);
        let too_heavy = self.log.bytes_after(self.log.checkpoint()) > bytes_limit as u64;
        if self.log.len() > limit || too_heavy {
            // Half of either bound is kept, so that discarding happens now and then, not after every input.
            let keep_by_count = self.log.op_number().saturating_sub((limit / 2) as u64);
            let keep_by_bytes = self.log.start_within(bytes_limit / 2);
            let mut through = self.commit_number.min(keep_by_count.max(keep_by_bytes));
            let pinned_size_ok = self.log.len() <= limit * LOG_KEPT_FOR_SNAPSHOTS_FACTOR
                && self.log.bytes_after(self.log.checkpoint())
                    <= (bytes_limit as u64).saturating_mul(LOG_KEPT_FOR_SNAPSHOTS_FACTOR as u64);
            if let Some(fetched) = self.images.oldest_in_use()
                && pinned_size_ok
            {
                through = through.min(fetched.max(self.log.checkpoint()));
            }
            // A checkpoint being written starts its generation with the entries after it.
            if let Some(kept_after) = self.journal.as_ref().and_then(Journal::entries_kept_after)
                && pinned_size_ok
            {
                through = through.min(kept_after.max(self.log.checkpoint()));
            }
            self.log.discard_through(through);
        }
    }

    fn on_request_at_backup(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        let (client, request_number) = (request.client, request.request_number);
        let primary = self.primary_of(self.view);
        let retry_at = now + self.config.timing.retransmit_timeout;
        if !self.forwards.insert(request.clone(), primary, retry_at) {
            outputs.event(Event::Overloaded { queue: "forwards".into() });
            return outputs.refuse(client, request_number, Refusal::unavailable("too many requests in flight"));
        }
        outputs.event(Event::Forwarded { client, request_number, to: primary });
        outputs.send(primary, wrap(Message::Forward { request }));
    }

    /// Whether a message of `view` from `from` may be processed now. Older views are
    /// dropped and counted; newer views make this replica catch up first.
    fn stale_view(&self, view: u64, from: ReplicaId, outputs: &mut Outputs) -> bool {
        if view < self.view {
            outputs.drop_message(from, DropReason::StaleEpoch);
            return true;
        }
        false
    }
}

/// The one `match` on inputs: each arm hands over to the module of its concern.
impl Vr {
    fn dispatch_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        let (client, request_number) = (request.client, request.request_number);
        if request.operation.is_read() && request.consistency == Consistency::Local {
            let reply = self.store.query(&request.operation);
            let freshness = Freshness::PossiblyStale { applied: self.commit_number };
            return outputs.reply(client, request_number, reply, freshness);
        }
        match self.status {
            ReplicaStatus::Recovering => {
                outputs.refuse(client, request_number, Refusal::unavailable("this replica is recovering"))
            }
            ReplicaStatus::Normal if self.is_primary() => self.on_request_at_primary(now, self.me(), request, outputs),
            // A backup, or a replica in a view change: the request waits in the forward
            // table and is sent again to whichever replica is primary when it is due.
            _ => self.on_request_at_backup(now, request, outputs),
        }
    }

    fn dispatch_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        let AnyMessage::Vr(message) = message else {
            return outputs.drop_message(from, DropReason::WrongProtocol);
        };
        if from == self.me() || from.0 >= self.config.replica_count {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if !message.numbers_within_bounds() {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if self.storage_stalled && storage_stall::refused_while_stalled(&message) {
            return outputs.drop_message(from, DropReason::StorageStalled);
        }
        match message {
            Message::GetSnapshotChunk { snapshot, chunk } => {
                return self.on_get_snapshot_chunk(now, from, snapshot, chunk, outputs);
            }
            Message::SnapshotChunk { chunk } => return self.on_snapshot_chunk(now, from, chunk, outputs),
            Message::SnapshotUnavailable { snapshot } => {
                return self.on_snapshot_unavailable(now, from, snapshot, outputs);
            }
            _ => {}
        }
        if self.status == ReplicaStatus::Recovering {
            return match message {
                Message::Recovery { nonce } => self.on_recovery(from, nonce, outputs),
                Message::RecoveryResponse { view, nonce, responder } => {
                    self.on_recovery_response(now, from, view, nonce, responder, outputs)
                }
                Message::NewState { view, op_number, commit_number, after, snapshot, entries } => {
                    self.on_recovery_state(now, from, view, op_number, commit_number, after, snapshot, entries, outputs)
                }
                // Until recovered, this replica takes no other part (§4.3).
                _ => {}
            };
        }
        match message {
            Message::Prepare { view, commit_number, entries } => {
                self.on_prepare(now, from, view, commit_number, entries, outputs)
            }
            Message::PrepareOk { view, op_number } => self.on_prepare_ok(now, from, view, op_number, outputs),
            Message::Commit { view, commit_number } => self.on_commit(now, from, view, commit_number, outputs),
            Message::StartViewChange { view } => self.on_start_view_change(now, from, view, outputs),
            Message::DoViewChange { view, log_view, commit_number, after, entries } => {
                let message = DoViewChange { log_view, commit_number, after, entries };
                self.on_do_view_change(now, from, view, message, outputs)
            }
            Message::StartView { view, commit_number, after, entries } => {
                self.on_start_view(now, from, view, commit_number, after, entries, outputs)
            }
            Message::Recovery { nonce } => self.on_recovery(from, nonce, outputs),
            Message::RecoveryResponse { .. } => {}
            Message::GetState { view, op_number } => self.on_get_state(now, from, view, op_number, outputs),
            Message::NewState { view, op_number, commit_number, after, snapshot, entries } => {
                self.on_new_state(now, from, view, op_number, commit_number, after, snapshot, entries, outputs)
            }
            Message::ConfirmView { view, round } => self.on_confirm_view(now, from, view, round, outputs),
            Message::ConfirmViewOk { view, round } => self.on_confirm_view_ok(from, view, round, outputs),
            Message::Forward { request } => {
                if self.status == ReplicaStatus::Normal && self.is_primary() {
                    self.on_request_at_primary(now, from, request, outputs);
                } else {
                    // Not the primary (any more): the forwarding replica retries at the next primary.
                    outputs.drop_message(from, DropReason::NotPrimary);
                }
            }
            Message::ForwardReply { client, request_number, reply } => {
                self.forwards.answer(client, request_number, reply, outputs)
            }
            Message::GetSnapshotChunk { .. } | Message::SnapshotChunk { .. } | Message::SnapshotUnavailable { .. } => {
                unreachable!("handled in any status above")
            }
        }
    }

    fn dispatch_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if due(self.timers.recovery_at) {
            self.start_recovery(now, outputs);
        }
        // A stalled replica cannot promise a view: it starts no view change, and
        // arms the timers again when its disk returns.
        if due(self.timers.primary_silence_at) {
            self.timers.primary_silence_at = None;
            if !self.storage_stalled {
                self.start_view_change(now, self.view + 1, outputs);
            }
        }
        if due(self.timers.view_change_at) {
            self.timers.view_change_at = None;
            if !self.storage_stalled {
                self.start_view_change(now, self.view + 1, outputs);
            }
        }
        if due(self.timers.view_change_resend_at) {
            self.timers.view_change_resend_at = None;
            self.on_view_change_resend(now, outputs);
        }
        if due(self.timers.state_transfer_at) {
            self.timers.state_transfer_at = None;
            self.send_state_request(now, outputs);
        }
        if due(self.download.as_ref().map(Download::retry_at)) {
            self.on_chunk_overdue(now, outputs);
        }
        if self.status == ReplicaStatus::Normal {
            let primary = self.primary_of(self.view);
            let next_retry_at = now + self.config.timing.retransmit_timeout;
            for (_, request) in self.forwards.due(now, next_retry_at) {
                if primary == self.me() {
                    let _ = self.forwards.take(request.client, request.request_number);
                    self.on_request_at_primary(now, self.me(), request, outputs);
                } else {
                    self.forwards.redirect(request.client, primary);
                    outputs.send(primary, wrap(Message::Forward { request }));
                }
            }
        }
        if self.is_primary() {
            self.on_primary_timeout(now, outputs);
        }
    }
}

fn wrap(message: Message) -> AnyMessage {
    AnyMessage::Vr(message)
}

impl Protocol for Vr {
    fn on_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        self.now = now;
        self.dispatch_request(now, request, outputs);
        self.discard_old_entries();
        self.persist(outputs);
    }

    fn on_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        self.now = now;
        self.dispatch_message(now, from, message, outputs);
        self.discard_old_entries();
        self.persist(outputs);
    }

    fn on_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        self.now = now;
        self.dispatch_timeout(now, outputs);
        self.discard_old_entries();
        self.persist(outputs);
    }

    fn on_synced(&mut self, now: Instant, id: u64, outputs: &mut Outputs) {
        self.now = now;
        let Some(journal) = self.journal.as_mut() else { return };
        if !journal.on_synced(id, outputs) {
            return;
        }
        if self.status == ReplicaStatus::Normal && self.is_primary() {
            self.advance_commit(outputs);
        }
        self.discard_old_entries();
        self.persist(outputs);
    }

    fn on_storage_stalled(&mut self, now: Instant, stalled: bool, outputs: &mut Outputs) {
        self.now = now;
        if self.journal.is_none() {
            return;
        }
        if stalled {
            self.on_disk_stalled(now, outputs);
        } else {
            self.on_disk_returned(now);
        }
        self.discard_old_entries();
        self.persist(outputs);
    }

    fn next_timeout(&self) -> Option<Instant> {
        let Timers { primary_silence_at, view_change_at, recovery_at, state_transfer_at, view_change_resend_at } =
            self.timers;
        let forwards = if self.status == ReplicaStatus::Normal { self.forwards.next_retry_at() } else { None };
        let primary = self.primary.as_ref().and_then(|primary| {
            let retransmit = primary.backups.values().filter_map(|progress| progress.retransmit_at).min();
            [Some(primary.heartbeat_at), retransmit, primary.reads.retry_at()].into_iter().flatten().min()
        });
        let download = self.download.as_ref().map(Download::retry_at);
        [
            primary_silence_at,
            view_change_at,
            recovery_at,
            state_transfer_at,
            view_change_resend_at,
            forwards,
            primary,
            download,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn store(&self) -> &NoteStore {
        &self.store
    }

    fn store_mut(&mut self) -> &mut NoteStore {
        &mut self.store
    }

    fn client_table(&self) -> &ClientTable {
        &self.client_table
    }

    fn status(&self) -> Status {
        let role = match self.status {
            ReplicaStatus::Recovering => Role::Recovering,
            ReplicaStatus::ViewChange => Role::ViewChange,
            ReplicaStatus::Normal if self.is_primary() => Role::Primary,
            ReplicaStatus::Normal => Role::Backup,
        };
        let waiting = self.primary.as_ref().map_or(0, |primary| primary.waiting.len() + primary.reads.len());
        Status {
            replica: self.me(),
            protocol: "vr".into(),
            role,
            view: Some(self.view),
            op_number: self.log.op_number(),
            applied: self.commit_number,
            pending_requests: waiting + self.forwards.len(),
            repairing: self.repairing,
            storage_stalled: self.storage_stalled,
            counters: Default::default(),
        }
    }

    fn check_invariants(&mut self) {
        assert!(self.view >= self.view_before, "a view never goes back");
        assert!(self.commit_number >= self.commit_number_before, "the commit number never decreases");
        self.view_before = self.view;
        self.commit_number_before = self.commit_number;
        self.log.check_invariants();
        self.forwards.check_invariants();
        assert!(self.commit_number <= self.log.op_number(), "only entries in the log are committed");
        assert!(self.log.checkpoint() <= self.commit_number, "only committed entries are discarded");
        assert!(self.log_view <= self.view, "the log's view is not in the future");
        if self.catching_up() {
            assert!(
                self.commit_number <= self.view_log_matched_through
                    && self.view_log_matched_through <= self.log.op_number(),
                "a replica catching up executes only what matches the view's log"
            );
        }
        assert!(self.view <= SEQUENCE_NUMBER_MAX + 1, "views come from messages within bounds, plus one");
        let limits = &self.config.limits;
        assert!(
            self.log.len() <= limits.log_entries_max * LOG_KEPT_FOR_SNAPSHOTS_FACTOR
                || self.log.checkpoint() == self.commit_number,
            "executed entries past log_entries_max are discarded"
        );
        let log_bytes_max = (limits.log_bytes_max as u64).saturating_mul(LOG_KEPT_FOR_SNAPSHOTS_FACTOR as u64);
        assert!(
            self.log.bytes_after(self.log.checkpoint()) <= log_bytes_max || self.log.checkpoint() == self.commit_number,
            "executed entries past log_bytes_max are discarded"
        );
        assert!(
            self.log.op_number() - self.commit_number
                <= (limits.log_entries_max + limits.entries_per_message_max) as u64,
            "uncommitted entries stay bounded"
        );
        assert!(
            self.log.bytes_after(self.commit_number) <= limits.uncommitted_bytes_max as u64,
            "uncommitted entries fit in one view change message"
        );
        assert!(self.images.len() <= crate::snapshot::IMAGES_MAX, "images stay bounded");
        if let Some(journal) = &self.journal {
            journal.check_invariants();
        }
        match self.status {
            ReplicaStatus::Normal => {
                if self.is_primary() {
                    assert_eq!(self.log_view, self.view, "a primary holds its view's log");
                }
                assert_eq!(
                    self.is_primary(),
                    self.primary_of(self.view) == self.me(),
                    "the primary is primary_of(view)"
                );
            }
            ReplicaStatus::ViewChange | ReplicaStatus::Recovering => {
                assert!(!self.is_primary(), "only a normal replica acts as primary");
            }
        }
        if let Some(primary) = &self.primary {
            for progress in primary.backups.values() {
                assert!(progress.acknowledged <= self.log.op_number(), "no backup acknowledges the future");
            }
        }
    }
}
