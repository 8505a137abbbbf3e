//! Primary-backup replication with a migrating primary: the local-write protocol
//! ("move item to new primary", Tanenbaum & van Steen, *Distributed Systems*, §7.5).
//!
//! The primary role is held per **item**: each note is an item, and so is the
//! **id counter**, which orders creates (ids are sequential from 1 and never reused)
//! and writes to ids not yet created. A write executes at the item's owner; a write
//! that arrives elsewhere waits while its replica acquires the item, then executes
//! there. Every replica keeps, per item, the owner it believes in, the ownership
//! `epoch` (strictly increasing with every hand-off) and the `sequence` of updates
//! applied. Replica 0 owns the counter at epoch 0; a note is owned at epoch 1 by the
//! replica that created it.
//!
//! ```text
//! client ── write note 7 ──▶ R1 (not the owner: queues the write)
//!                            R1 ── Acquire{7} ──────────▶ R0 (owner, epoch e)
//!                                                          stops writing note 7,
//!                                                          waits until every update of 7
//!                                                          it sent is acknowledged by all
//!                            R1 ◀── Transfer{7, R1, e+1, s} ── R0 (R0 now believes: owner R1, e+1)
//!                            R1 ── TransferAck{7, e+1} ──▶ R0
//!                            R1 executes the queued write as update s+1
//!      R0 ◀── Update{7, e+1, s+1} ── R1 ── Update{7, e+1, s+1} ──▶ R2
//!      R0 ── UpdateAck{7, s+1} ────▶ R1 ◀── UpdateAck{7, s+1} ──── R2
//! client ◀── reply ───────── R1   (only after every other replica applied s+1)
//! ```
//!
//! **Safety.** At most one replica writes an item at a time: the old owner stops
//! before it sends `Transfer`, the new owner starts only when it receives it, a
//! `Transfer` names its new owner and any other replica drops it, and a `Transfer`
//! whose epoch is not above the receiver's is stale and dropped (and acknowledged, so
//! that its sender stops sending it). Because the old owner hands over only once every
//! replica has applied every update of the item, the new owner already holds the
//! item's state and its client table; `Transfer` carries their digest and the receiver
//! refuses one that disagrees with what it applied, and keeps its own. An
//! `Acquire` that reaches a replica that is not the owner is passed on towards the
//! owner it believes in (a bounded number of hops); the requester sends it again
//! after `retransmit_timeout`, and an owner that receives it while its `Transfer` to
//! the requester is unacknowledged sends the `Transfer` again.
//!
//! **Creates.** The counter's owner executes creates (the store assigns the next
//! id) and writes to ids it never created (refused `not_found`, recorded so that a
//! retry gets the same answer). Backups apply an item's updates strictly in its
//! sequence order, so creates reach every store in counter order and get the same
//! ids; a note's own updates that arrive before its create are buffered. A replica
//! that does not know a note id routes the request through the counter: once it owns
//! the counter it has applied every create there was, so it either knows the note
//! (and acquires it) or knows it never existed.
//!
//! **Exactly once.** Each item has a client table, recorded as its updates apply, in
//! the same order on every replica, so whichever replica owns the item knows whether
//! `(client, request_number)` already executed on it and answers a retry with the
//! recorded reply. A write to a note that did not exist yet was answered by the
//! counter's owner and recorded in the counter's table; a note's owner consults
//! that table too, so a retry that reaches the note once it exists gets the same
//! answer (it has applied the note's create, hence every counter update before it).
//! The replica-wide [`ClientTable`] is derived from the applied
//! updates independently of their interleaving across items (see
//! `local_write/recent_clients.rs`), so it too is identical everywhere once every update is
//! applied.
//!
//! **Reads.** A local read is served from this replica's copy, possibly stale. A
//! linearizable `get` goes to the note's owner (forwarded along ownership beliefs,
//! answered to the replica holding the client), which is ordered with the note's
//! writes; a note this replica knows was deleted is answered `not_found` here, since
//! a delete is final. A `list` spans notes with different owners and no replica
//! orders all of them, so local-write serves every `list` as a possibly stale local
//! read, even when a linearizable one is asked for.
//!
//! **Retransmission.** An owner keeps every update some replica has not
//! acknowledged (acknowledgements are cumulative per item) and sends it again after
//! `retransmit_timeout`; `Acquire`, `Transfer` and forwarded reads are sent again the
//! same way until answered. Nothing else is periodic: a replica can only miss an
//! update that its owner is still sending, so no heartbeat is needed without crashes.
//!
//! Timers, all of `retransmit_timeout` and all per item or per request (the replica
//! reports only the earliest; nothing runs when nothing waits):
//!
//! | timer | kept in | on expiry |
//! |---|---|---|
//! | retransmit | `retransmit_at` | resend each replica the updates it has not acknowledged |
//! | acquire | `acquiring` | resend `Acquire` to the owner this replica now believes in |
//! | transfer | `TransferInFlight::retry_at` | resend the same `Transfer` until its `TransferAck` |
//! | read | `forwards` | answer the get here if possible, else resend `Read` |
//!
//! The `sequence` in [`Event::Ordered`] and [`Event::Acknowledged`] is the item's own
//! sequence. `Status::applied` counts updates applied over all items.
//!
//! **Bad input.** A peer message is checked against what this replica can know
//! before it changes anything, and dropped with a [`DropReason`] when it cannot be
//! right: a sender or a named replica outside the cluster; a `Transfer` for another
//! replica, or disagreeing with what was applied here; an epoch of `u64::MAX` (no
//! hand-off could follow it); an update further ahead of what this replica applied
//! than an owner keeps unacknowledged (`min(pending_requests_max, log_entries_max)`),
//! which also bounds how far ahead of this store's next id a not-yet-created note
//! can be; an update of a note id below that next id that this replica never created;
//! an update whose operation does not write its item, whose client request this
//! item's client table does not admit, or whose timestamp does not follow the note's;
//! an acknowledgement of a sequence not yet executed. Nothing a peer sends is
//! recorded into a client table: the tables are only ever recorded here, after
//! `admit`. Messages within those bounds but forged can still make replicas disagree
//! (and then an item stop moving), but never make one panic. An owner whose store
//! has seen the timestamp `u64::MAX` refuses further writes, as no later one exists.
//!
//! Known costs: a late duplicate of an `Acquire` that was already served can move an
//! item once more than needed (safe, and bounded by the duplicates); every note keeps
//! its own client table (bounded by `clients_max` each); the derived replica-wide
//! client table is rebuilt, in time linear in the clients it holds, after each input
//! that applied an update.
//!
//! # Fault model
//!
//! Tolerated, with either storage: message loss, duplication, reordering and delay;
//! delivery to a replica a message was not addressed to (what it says is still true,
//! and a `Transfer` names its receiver); partitions (a write whose item cannot move,
//! or whose backups cannot be reached, waits; nothing is lost); pauses; clock skew
//! (time only drives retransmission, and timestamps come from a hybrid logical clock
//! that never goes backwards across owners).
//!
//! In memory (`"storage": "memory"`), not tolerated: any crash, nor forged messages
//! (see **Bad input** for what still holds then). An item's owner holds in memory the
//! only copy of its unacknowledged updates and of the right to write it, and the
//! counter's owner the right to assign ids; a replica that restarts empty believes
//! replica 0 owns the counter at epoch 0 and knows no notes.
//!
//! With disks (`"storage": "disk"`, [`crate::storage::updates`]), tolerated as well:
//! crashes of any replica, and of every replica at once, at any moment, with each
//! disk keeping what was synced (and any part of the rest, torn or not). A replica
//! writes every change to what it owns, believes and applied (`local_write/durable.rs`)
//! and sends or answers nothing before the write is synced: an update is applied
//! (and acknowledged) and executed (and sent, and answered) only once on disk, an
//! item is handed over only once the old owner has recorded that it gave it up, and
//! a new owner uses it only once it has recorded that it took it. A restarted replica
//! holds every update, epoch and ownership any peer or client has seen from it; an
//! owner sends its unacknowledged updates, and a former owner its unacknowledged
//! `Transfer`, again at once. While a replica is down, writes of the items it owns,
//! and items moving to or through it, wait. A write answered before a crash whose
//! client retries is answered from the item's client table at once (its update is
//! on the owner's disk, and is sent until every replica has it). Not tolerated:
//! damage to synced bytes, or a lost disk. A damaged checkpoint or superblock is
//! refused at start ([`crate::storage::OpenError`]), but a damaged log record reads
//! as the end of the log, so a replica could forget an ownership or an update it
//! acknowledged; nothing repairs a disk from peers, and a replica started on a new
//! directory believes what a new cluster does.

mod durable;
mod recent_clients;

pub(crate) use durable::Record;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::client_table::{Admission, ClientTable};
use crate::config::{Config, Defect, StorageKind};
use crate::hlc::Timestamp;
use crate::ids::{ClientId, NoteId, ReplicaId, RequestNumber};
use crate::message::Message as AnyMessage;
use crate::operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
use crate::protocol::{Outputs, PendingForwards, Protocol};
use crate::replica::{DropReason, Event, Freshness, Role, Status};
use crate::storage::updates::UpdateJournal;
use crate::store::{Note, NoteStore};
use crate::time::Instant;
use crate::wire::size;

use recent_clients::RecentClients;

/// What a `Transfer` says the new owner already holds of an item: its note (none
/// for the counter or a deleted note) and its client table.
pub fn item_digest(note: Option<&Note>, clients: &ClientTable) -> u64 {
    crate::digest::digest_of(&(note.map(crate::digest::digest_of), clients.digest()))
}

/// The replica that owns the counter before any hand-off.
const FIRST_OWNER: ReplicaId = ReplicaId(0);

/// The epoch at which a new note is owned by the replica that created it.
const CREATED_EPOCH: u64 = 1;

/// What has one owner at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// The id counter: creates, and writes to ids that were never created.
    Counter,
    Note(NoteId),
}

impl core::fmt::Display for Item {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Item::Counter => formatter.write_str("counter"),
            Item::Note(id) => write!(formatter, "{id}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Updates of items the sender owns, each in its item's sequence.
    Update {
        entries: Vec<Update>,
    },
    /// Cumulative: every update of `item` up to `sequence` is applied here.
    UpdateAck {
        item: Item,
        sequence: u64,
    },
    /// `requester` asks for the ownership of `item`; passed on towards the owner.
    Acquire {
        item: Item,
        requester: ReplicaId,
        hops: u8,
    },
    /// The ownership of `item` at `epoch`, for the new owner `to`, with what it must
    /// already hold: the sequence applied, and the digest of the note (none for the
    /// counter or a deleted note) and of the item's client table (see [`item_digest`]).
    Transfer {
        item: Item,
        to: ReplicaId,
        epoch: u64,
        sequence: u64,
        digest: u64,
    },
    TransferAck {
        item: Item,
        epoch: u64,
    },
    /// A linearizable read on its way to the item's owner, for the client at `origin`.
    Read {
        origin: ReplicaId,
        request: ClientRequest,
        hops: u8,
    },
    ReadReply {
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
    },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Update { .. } => "update",
            Message::UpdateAck { .. } => "update_ack",
            Message::Acquire { .. } => "acquire",
            Message::Transfer { .. } => "transfer",
            Message::TransferAck { .. } => "transfer_ack",
            Message::Read { .. } => "read",
            Message::ReadReply { .. } => "read_reply",
        }
    }
}

/// One write of one item, as every replica executes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub item: Item,
    /// The owner's epoch when it executed the write.
    pub epoch: u64,
    pub sequence: u64,
    pub client: ClientId,
    pub request_number: RequestNumber,
    pub operation: Operation,
    pub timestamp: Timestamp,
}

#[derive(Debug)]
pub struct LocalWrite {
    config: Config,
    store: NoteStore,
    /// Every item this replica knows: the counter, and every note whose create it applied.
    items: BTreeMap<Item, ItemState>,
    /// The items this replica owns, with what only an owner keeps.
    owned: BTreeMap<Item, Owned>,
    /// Writes waiting here for their item, per item, in arrival order.
    queues: BTreeMap<Item, VecDeque<ClientRequest>>,
    queued: usize,
    /// Items this replica asked for, and when to ask again.
    acquiring: BTreeMap<Item, Instant>,
    /// Hand-offs not yet acknowledged by the new owner.
    transfers: BTreeMap<Item, TransferInFlight>,
    /// Owned items with unacknowledged updates, and when to resend them. Kept apart
    /// from `owned` so that finding the next timeout visits only these few items.
    retransmit_at: BTreeMap<Item, Instant>,
    /// Writes executed here, answered once every other replica applied them.
    waiting: BTreeMap<(Item, u64), Waiter>,
    /// Updates of notes whose create has not been applied here yet, with their sender.
    early: BTreeMap<(NoteId, u64), (ReplicaId, Update)>,
    /// Updates held out of order, here and in every item's buffer.
    buffered: usize,
    /// Linearizable reads sent on to an owner.
    forwards: PendingForwards,
    recent_clients: RecentClients,
    /// Updates applied to this store, over all items.
    applied: u64,
    /// `applied` after the previous input, to assert it never goes back.
    applied_before: u64,
    /// With durable storage: every change that must survive a crash is written, and
    /// nothing leaves before what it reflects is synced.
    journal: Option<UpdateJournal>,
}

#[derive(Debug)]
struct ItemState {
    /// The owner this replica believes in: itself exactly when it owns the item.
    owner: ReplicaId,
    /// The latest epoch this replica knows of; never goes back.
    epoch: u64,
    /// Updates of the item applied here; never goes back.
    sequence: u64,
    /// The item's own client table, recorded in its sequence order.
    clients: ClientTable,
    /// Updates that arrived ahead of a gap, by sequence, with their sender.
    buffered: BTreeMap<u64, (ReplicaId, Update)>,
}

impl ItemState {
    fn new(owner: ReplicaId, epoch: u64, clients_max: usize) -> ItemState {
        ItemState { owner, epoch, sequence: 0, clients: ClientTable::new(clients_max), buffered: BTreeMap::new() }
    }

    fn change_owner(&mut self, owner: ReplicaId, epoch: u64) {
        assert!(epoch > self.epoch, "an item's epoch only grows: {} after {}", epoch, self.epoch);
        self.owner = owner;
        self.epoch = epoch;
    }
}

#[derive(Debug)]
struct Owned {
    /// Updates some other replica has not acknowledged, in sequence order.
    log: VecDeque<Update>,
    /// Per other replica, the highest sequence it acknowledged.
    acknowledged: BTreeMap<ReplicaId, u64>,
    /// A replica asked for the item: no more writes here; hand over once `log` is empty.
    hand_off_to: Option<ReplicaId>,
}

impl Owned {
    /// Ownership from `sequence` on, which every other replica has applied.
    fn new(config: &Config, sequence: u64) -> Owned {
        Owned {
            log: VecDeque::new(),
            acknowledged: config.peers().map(|peer| (peer, sequence)).collect(),
            hand_off_to: None,
        }
    }
}

#[derive(Debug)]
struct TransferInFlight {
    to: ReplicaId,
    epoch: u64,
    /// The `Transfer` as first sent: later updates here must not change what is resent.
    message: Message,
    retry_at: Instant,
}

#[derive(Debug)]
struct Waiter {
    client: ClientId,
    request_number: RequestNumber,
    reply: Reply,
}

/// The (owner, item) pairs owed an `UpdateAck` once a message's updates are taken in,
/// possibly repeated; sorted and deduplicated before they are sent. A message carries
/// few updates, so a vector costs less than a set.
type Acknowledgements = Vec<(ReplicaId, Item)>;

impl LocalWrite {
    pub(crate) fn new(config: Config, _now: Instant) -> LocalWrite {
        let clients_max = config.limits.clients_max;
        let items = BTreeMap::from([(Item::Counter, ItemState::new(FIRST_OWNER, 0, clients_max))]);
        let mut owned = BTreeMap::new();
        if config.replica == FIRST_OWNER {
            owned.insert(Item::Counter, Owned::new(&config, 0));
        }
        LocalWrite {
            store: NoteStore::new(config.limits.store),
            items,
            owned,
            queues: BTreeMap::new(),
            queued: 0,
            acquiring: BTreeMap::new(),
            transfers: BTreeMap::new(),
            retransmit_at: BTreeMap::new(),
            waiting: BTreeMap::new(),
            early: BTreeMap::new(),
            buffered: 0,
            forwards: PendingForwards::new(config.limits.pending_requests_max),
            recent_clients: RecentClients::new(clients_max),
            applied: 0,
            applied_before: 0,
            journal: (config.storage == StorageKind::Disk).then(|| UpdateJournal::unformatted(&config)),
            config,
        }
    }

    fn me(&self) -> ReplicaId {
        self.config.replica
    }

    fn retry_at(&self, now: Instant) -> Instant {
        now + self.config.timing.retransmit_timeout
    }

    /// The item an operation belongs to, as far as this replica knows: a note it
    /// never heard of is the counter's business.
    fn item_of(&self, operation: &Operation) -> Item {
        match operation.note_id() {
            Some(id) if self.items.contains_key(&Item::Note(id)) => Item::Note(id),
            _ => Item::Counter,
        }
    }

    fn believed_owner(&self, item: Item) -> ReplicaId {
        let known = self.items.get(&item).or_else(|| self.items.get(&Item::Counter));
        known.expect("the counter is always known").owner
    }

    /// How many updates an owner keeps unacknowledged at most: no update can be more
    /// than this far ahead of what its receiver applied (and acknowledged).
    fn unacknowledged_max(&self) -> usize {
        let limits = &self.config.limits;
        limits.pending_requests_max.min(limits.log_entries_max)
    }

    fn accepts_writes(&self, item: Item) -> bool {
        self.owned.get(&item).is_some_and(|owned| owned.hand_off_to.is_none())
    }

    // ----- requests -------------------------------------------------------------

    /// A write goes to its item: executed if this replica may write it, else queued.
    fn submit_write(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        let item = self.item_of(&request.operation);
        if self.accepts_writes(item) {
            self.execute(now, item, request, outputs);
        } else {
            self.enqueue(item, request, outputs);
        }
    }

    fn enqueue(&mut self, item: Item, request: ClientRequest, outputs: &mut Outputs) {
        let (client, request_number) = (request.client, request.request_number);
        let already_queued = self
            .queues
            .values()
            .flatten()
            .any(|queued| queued.client == client && queued.request_number == request_number);
        if already_queued {
            return;
        }
        if self.queued >= self.config.limits.pending_requests_max {
            outputs.event(Event::Overloaded { queue: "acquire".into() });
            return outputs.refuse(client, request_number, Refusal::unavailable("too many writes wait for their item"));
        }
        self.queues.entry(item).or_default().push_back(request);
        self.queued += 1;
    }

    /// Whether `(client, request_number)` may execute on `item`. A write to a note
    /// id that did not exist yet was answered (not found) by the counter's owner and
    /// recorded in the counter's client table; once the note exists, a retry of that
    /// request reaches the note's owner, which must answer it the same way. The
    /// note's owner has applied the note's create, and so every counter update
    /// ordered before it, that answer included.
    fn admit(&self, item: Item, client: ClientId, request_number: RequestNumber) -> Admission {
        let in_item = self.items.get(&item).expect("an owned item is known").clients.admit(client, request_number);
        match (item, in_item) {
            (Item::Note(_), Admission::Execute) => {
                let counter = self.items.get(&Item::Counter).expect("the counter is always known");
                counter.clients.admit(client, request_number)
            }
            (_, admission) => admission,
        }
    }

    /// Executes a write at the item's owner and sends it to every other replica.
    fn execute(&mut self, now: Instant, item: Item, request: ClientRequest, outputs: &mut Outputs) {
        let ClientRequest { client, request_number, operation, .. } = request;
        if self.waiting.values().any(|waiter| waiter.client == client && waiter.request_number == request_number) {
            // A retry of a write still being replicated: it is answered when acknowledged.
            return;
        }
        match self.admit(item, client, request_number) {
            Admission::Retry(reply) => return outputs.reply(client, request_number, reply, Freshness::Ordered),
            Admission::Stale => return,
            Admission::Execute => {}
        }
        let state = self.items.get(&item).expect("an owned item is known");
        if self.waiting.len() >= self.unacknowledged_max() {
            outputs.event(Event::Overloaded { queue: "replication".into() });
            let refusal = Refusal::unavailable("this owner's replication queue is full");
            return outputs.refuse(client, request_number, refusal);
        }
        if self.store.last_timestamp() == Timestamp(u64::MAX) {
            // No later timestamp exists, and a note's writes need strictly later ones.
            let refusal = Refusal::unavailable("timestamps are exhausted");
            return outputs.refuse(client, request_number, refusal);
        }
        let update = Update {
            item,
            epoch: state.epoch,
            sequence: state.sequence + 1,
            client,
            request_number,
            timestamp: Timestamp::next(now, self.store.last_timestamp()),
            operation,
        };
        let reply = self.apply(self.me(), &update);
        if let (Operation::Create { .. }, Reply::Note { note }) = (&update.operation, &reply) {
            self.discard_early(note.id, outputs);
        }
        outputs.event(Event::Ordered {
            sequence: update.sequence,
            client,
            request_number,
            operation: update.operation.name().into(),
        });
        for peer in self.config.peers() {
            outputs.send(peer, wrap(Message::Update { entries: vec![update.clone()] }));
        }
        let retry_at = self.retry_at(now);
        self.waiting.insert((item, update.sequence), Waiter { client, request_number, reply });
        let owned = self.owned.get_mut(&item).expect("only the owner executes");
        self.retransmit_at.entry(item).or_insert(retry_at);
        owned.log.push_back(update);
        self.complete_acknowledged(now, item, outputs);
    }

    /// Applies one update, at its owner or at a backup, and records it.
    fn apply(&mut self, ordered_by: ReplicaId, update: &Update) -> Reply {
        self.record(|| Record::Applied { ordered_by, update: update.clone() });
        let reply = self.store.execute(&update.operation, update.timestamp);
        let clients_max = self.config.limits.clients_max;
        let state = self.items.get_mut(&update.item).expect("updates apply to known items");
        assert_eq!(update.sequence, state.sequence + 1, "an item's updates apply in sequence order");
        state.sequence = update.sequence;
        state.clients.record(update.client, update.request_number, reply.clone());
        self.recent_clients.record(update.client, update.request_number, update.timestamp, &reply);
        self.applied += 1;
        if let (Operation::Create { .. }, Reply::Note { note }) = (&update.operation, &reply) {
            let item = Item::Note(note.id);
            let previous = self.items.insert(item, ItemState::new(ordered_by, CREATED_EPOCH, clients_max));
            assert!(previous.is_none(), "a note id is created once");
            if ordered_by == self.me() {
                self.owned.insert(item, Owned::new(&self.config, 0));
            }
        }
        reply
    }

    /// Answers the writes every other replica applied, forgets their updates, and
    /// hands the item over when it was asked for and nothing is left unacknowledged.
    fn complete_acknowledged(&mut self, now: Instant, item: Item, outputs: &mut Outputs) {
        let Some(owned) = self.owned.get_mut(&item) else { return };
        let sequence = self.items[&item].sequence;
        let everywhere = owned.acknowledged.values().copied().min().unwrap_or(sequence);
        let mut completed = None;
        while owned.log.front().is_some_and(|update| update.sequence <= everywhere) {
            let update = owned.log.pop_front().expect("checked non-empty");
            completed = Some(update.sequence);
            // An update executed before a restart has no waiter: its client sends it again.
            let Some(waiter) = self.waiting.remove(&(item, update.sequence)) else { continue };
            outputs.event(Event::Acknowledged {
                sequence: update.sequence,
                client: waiter.client,
                request_number: waiter.request_number,
            });
            outputs.reply(waiter.client, waiter.request_number, waiter.reply, Freshness::Ordered);
        }
        if let (Some(sequence), Some(journal)) = (completed, &mut self.journal) {
            journal.append(&Record::Acknowledged { item, sequence });
        }
        if owned.log.is_empty() {
            self.retransmit_at.remove(&item);
            if owned.hand_off_to.is_some() {
                self.hand_off(now, item, outputs);
            }
        }
    }

    fn hand_off(&mut self, now: Instant, item: Item, outputs: &mut Outputs) {
        let owned = self.owned.remove(&item).expect("only an owner hands off");
        let to = owned.hand_off_to.expect("a hand-off has a new owner");
        let note = match item {
            Item::Note(id) => self.store.get(id),
            Item::Counter => None,
        };
        let retry_at = self.retry_at(now);
        let state = self.items.get_mut(&item).expect("an owned item is known");
        let digest = item_digest(note, &state.clients);
        let epoch = state.epoch + 1;
        state.change_owner(to, epoch);
        let message = Message::Transfer { item, to, epoch, sequence: state.sequence, digest };
        self.record(|| Record::HandedOff { item, to, epoch, transfer: message.clone() });
        outputs.send(to, wrap(message.clone()));
        outputs.event(Event::OwnershipHandedOff { item: item.to_string(), epoch, to });
        self.transfers.insert(item, TransferInFlight { to, epoch, message, retry_at });
    }

    /// After every input: runs the queues of items this replica may write, and asks
    /// for the items that other queues wait for.
    fn reconcile(&mut self, now: Instant, outputs: &mut Outputs) {
        loop {
            let runnable: Vec<Item> = self.queues.keys().copied().filter(|item| self.accepts_writes(*item)).collect();
            if runnable.is_empty() {
                break;
            }
            for item in runnable {
                let queue = self.queues.remove(&item).unwrap_or_default();
                self.queued -= queue.len();
                for request in queue {
                    // Re-routed: a write queued on the counter for a note now known moves to that note.
                    self.submit_write(now, request, outputs);
                }
            }
        }
        let wanted: Vec<Item> = self
            .queues
            .keys()
            .copied()
            .filter(|item| !self.owned.contains_key(item) && !self.acquiring.contains_key(item))
            .collect();
        for item in wanted {
            self.acquiring.insert(item, self.retry_at(now));
            self.send_acquire(item, outputs);
        }
    }

    fn send_acquire(&self, item: Item, outputs: &mut Outputs) {
        let owner = self.believed_owner(item);
        if owner != self.me() {
            outputs.send(owner, wrap(Message::Acquire { item, requester: self.me(), hops: 0 }));
        }
    }

    // ----- reads ----------------------------------------------------------------

    /// The answer to a linearizable get, if this replica can give one.
    fn serve_read(&self, operation: &Operation) -> Option<Reply> {
        let Operation::Get { id } = operation else { return None };
        let item = Item::Note(*id);
        if self.items.contains_key(&item) {
            if self.store.get(*id).is_none() || self.owned.contains_key(&item) {
                // Deleted here, which is final; or owned here, which orders it with the writes.
                return Some(self.store.query(operation));
            }
            return None;
        }
        // Never created, as the counter's owner, who applied every create, can tell.
        self.owned.contains_key(&Item::Counter).then(|| self.store.query(operation))
    }

    /// A linearizable get from a client of this replica: answered here, or sent on
    /// to the owner this replica believes in.
    fn start_read(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        let (client, request_number) = (request.client, request.request_number);
        if let Some(reply) = self.serve_read(&request.operation) {
            return outputs.reply(client, request_number, reply, Freshness::Ordered);
        }
        let owner = self.believed_owner(self.item_of(&request.operation));
        if !self.forwards.insert(request.clone(), owner, self.retry_at(now)) {
            outputs.event(Event::Overloaded { queue: "forwards".into() });
            return outputs.refuse(client, request_number, Refusal::unavailable("too many reads in flight"));
        }
        outputs.event(Event::Forwarded { client, request_number, to: owner });
        outputs.send(owner, wrap(Message::Read { origin: self.me(), request, hops: 0 }));
    }

    /// A get on its way to the owner: answered to its origin, or passed on.
    fn pass_read(&mut self, origin: ReplicaId, request: ClientRequest, hops: u8, outputs: &mut Outputs) {
        let (client, request_number) = (request.client, request.request_number);
        if let Some(reply) = self.serve_read(&request.operation) {
            if origin != self.me() {
                return outputs.send(origin, wrap(Message::ReadReply { client, request_number, reply }));
            }
            // Back where it started, which can answer it now.
            return self.on_read_reply(client, request_number, reply, outputs);
        }
        // Beliefs can point in a circle while an item is in transit: the hop bound
        // ends the circle, and the origin asks again after its timeout.
        if hops < self.hops_max() {
            let owner = self.believed_owner(self.item_of(&request.operation));
            outputs.send(owner, wrap(Message::Read { origin, request, hops: hops + 1 }));
        }
    }

    /// How often a read or an `Acquire` is passed on. Following beliefs visits each
    /// replica at most once per item (each hop names a later epoch), and a read may
    /// follow the counter's owners before the note's.
    fn hops_max(&self) -> u8 {
        self.config.replica_count.saturating_mul(2)
    }

    // ----- peer messages --------------------------------------------------------

    fn on_update(&mut self, from: ReplicaId, entries: Vec<Update>, outputs: &mut Outputs) {
        let mut acknowledgements = Acknowledgements::new();
        for update in entries {
            self.receive(from, update, &mut acknowledgements, outputs);
        }
        acknowledgements.sort_unstable();
        acknowledgements.dedup();
        for (to, item) in acknowledgements {
            let sequence = self.items[&item].sequence;
            outputs.send(to, wrap(Message::UpdateAck { item, sequence }));
        }
    }

    /// Takes one update from its owner: buffers it in order and applies what it can.
    fn receive(
        &mut self,
        from: ReplicaId,
        update: Update,
        acknowledgements: &mut Acknowledgements,
        outputs: &mut Outputs,
    ) {
        if !belongs_to_item(&update) {
            return outputs.drop_message(from, DropReason::Conflicting);
        }
        if size::operation_text_bytes(&update.operation) > self.config.limits.store.body_bytes_max {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if !epoch_possible(update.epoch) {
            return outputs.drop_message(from, DropReason::StaleEpoch);
        }
        let buffer_full = self.buffered >= self.config.limits.log_entries_max;
        let item = update.item;
        let owned_here = self.owned.contains_key(&item);
        let ahead_max = u64::try_from(self.unacknowledged_max()).unwrap_or(u64::MAX);
        let next_id = self.store.next_id();
        let Some(state) = self.items.get_mut(&item) else {
            let Item::Note(id) = item else { return outputs.drop_message(from, DropReason::StaleEpoch) };
            if id < next_id {
                // Every id below the next one was created here, so this one never was.
                return outputs.drop_message(from, DropReason::StaleEpoch);
            }
            // Its create is one of the counter updates this replica has not applied, and
            // the note cannot have moved or had more writes than its creator keeps
            // unacknowledged, since this replica acknowledged none of them.
            if id.0 - next_id.0 >= ahead_max || update.sequence > ahead_max {
                return outputs.drop_message(from, DropReason::TooFarAhead);
            }
            if update.epoch != CREATED_EPOCH {
                return outputs.drop_message(from, DropReason::StaleEpoch);
            }
            if self.early.contains_key(&(id, update.sequence)) {
                return;
            }
            if buffer_full {
                return outputs.drop_message(from, DropReason::TooFarAhead);
            }
            self.early.insert((id, update.sequence), (from, update));
            self.buffered += 1;
            return;
        };
        if update.sequence <= state.sequence {
            acknowledgements.push((from, item));
            return;
        }
        if update.sequence - state.sequence > ahead_max {
            // Its owner waits for this replica's acknowledgement before it gets that far.
            return outputs.drop_message(from, DropReason::TooFarAhead);
        }
        if update.epoch < state.epoch {
            // The old owner handed over only after this replica applied all its updates.
            return outputs.drop_message(from, DropReason::StaleEpoch);
        }
        if owned_here || (update.epoch == state.epoch && from != state.owner) {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        if update.epoch > state.epoch {
            state.change_owner(from, update.epoch);
            if let Some(journal) = &mut self.journal {
                journal.append(&Record::Owner { item, owner: from, epoch: update.epoch });
            }
        }
        if update.sequence == state.sequence + 1 && state.buffered.is_empty() && !buffer_full {
            // The common case, taken in at once: buffering it would only remove it again.
            self.take_in(item, from, update, acknowledgements, outputs);
            self.drain(item, acknowledgements, outputs);
            acknowledgements.push((from, item));
            return;
        }
        match state.buffered.get(&update.sequence) {
            Some((_, buffered)) if *buffered != update => return outputs.drop_message(from, DropReason::Conflicting),
            Some(_) => {}
            None if buffer_full => return outputs.drop_message(from, DropReason::TooFarAhead),
            None => {
                state.buffered.insert(update.sequence, (from, update));
                self.buffered += 1;
            }
        }
        self.drain(item, acknowledgements, outputs);
        acknowledgements.push((from, item));
    }

    /// Applies the buffered updates of `item` that follow what is applied.
    fn drain(&mut self, item: Item, acknowledgements: &mut Acknowledgements, outputs: &mut Outputs) {
        loop {
            let state = self.items.get_mut(&item).expect("drained items are known");
            let Some(entry) = state.buffered.first_entry() else { break };
            if *entry.key() > state.sequence + 1 {
                break;
            }
            let (sender, update) = entry.remove();
            self.buffered -= 1;
            if update.sequence <= self.items[&item].sequence {
                continue;
            }
            self.take_in(item, sender, update, acknowledgements, outputs);
        }
    }

    /// Applies the update that follows what is applied of `item`, unless it contradicts this store.
    fn take_in(
        &mut self,
        item: Item,
        sender: ReplicaId,
        update: Update,
        acknowledgements: &mut Acknowledgements,
        outputs: &mut Outputs,
    ) {
        if let Err(reason) = self.applicable(&update) {
            return outputs.drop_message(sender, reason);
        }
        let reply = self.apply(sender, &update);
        acknowledgements.push((sender, item));
        if let (Operation::Create { .. }, Reply::Note { note }) = (&update.operation, reply) {
            self.release_early(note.id, acknowledgements, outputs);
        }
    }

    /// Whether an update in sequence can be applied without contradicting this store.
    fn applicable(&self, update: &Update) -> Result<(), DropReason> {
        let state = &self.items[&update.item];
        if !matches!(state.clients.admit(update.client, update.request_number), Admission::Execute) {
            return Err(DropReason::Conflicting);
        }
        match (update.item, update.operation.note_id()) {
            // The counter orders writes only to ids that were never created.
            (Item::Counter, Some(id)) if id < self.store.next_id() => Err(DropReason::Conflicting),
            (Item::Note(id), _) => match self.store.get(id) {
                Some(note) if update.timestamp <= note.updated_at => Err(DropReason::Conflicting),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// A note's create was applied: its updates that came early can now be taken in.
    fn release_early(&mut self, id: NoteId, acknowledgements: &mut Acknowledgements, outputs: &mut Outputs) {
        let keys: Vec<(NoteId, u64)> = self.early.range((id, 0)..=(id, u64::MAX)).map(|(key, _)| *key).collect();
        for key in keys {
            let Some((sender, update)) = self.early.remove(&key) else { continue };
            self.buffered -= 1;
            self.receive(sender, update, acknowledgements, outputs);
        }
    }

    /// A note created here: no other replica can have written it, so updates that
    /// claimed to come early for it were forged or misdirected.
    fn discard_early(&mut self, id: NoteId, outputs: &mut Outputs) {
        let keys: Vec<(NoteId, u64)> = self.early.range((id, 0)..=(id, u64::MAX)).map(|(key, _)| *key).collect();
        for key in keys {
            if let Some((sender, _)) = self.early.remove(&key) {
                self.buffered -= 1;
                outputs.drop_message(sender, DropReason::Conflicting);
            }
        }
    }

    fn on_update_ack(&mut self, now: Instant, from: ReplicaId, item: Item, sequence: u64, outputs: &mut Outputs) {
        // An acknowledgement of an item handed off since needs nothing: all was acknowledged.
        let Some(owned) = self.owned.get_mut(&item) else { return };
        let Some(acknowledged) = owned.acknowledged.get_mut(&from) else {
            return outputs.drop_message(from, DropReason::NotPrimary);
        };
        if sequence > self.items[&item].sequence {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        *acknowledged = (*acknowledged).max(sequence);
        self.complete_acknowledged(now, item, outputs);
    }

    fn on_acquire(
        &mut self,
        now: Instant,
        from: ReplicaId,
        item: Item,
        requester: ReplicaId,
        hops: u8,
        outputs: &mut Outputs,
    ) {
        if requester.0 >= self.config.replica_count {
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        if requester == self.me() {
            // Our own request came back around a circle of stale beliefs; we ask again on timeout.
            return;
        }
        if let Some(owned) = self.owned.get_mut(&item) {
            // Another hand-off under way: this requester asks again after its timeout.
            if owned.hand_off_to.is_none() {
                owned.hand_off_to = Some(requester);
                self.complete_acknowledged(now, item, outputs);
            }
            return;
        }
        let retry_at = self.retry_at(now);
        if let Some(transfer) = self.transfers.get_mut(&item)
            && transfer.to == requester
        {
            transfer.retry_at = retry_at;
            return outputs.send(requester, wrap(transfer.message.clone()));
        }
        let owner = self.believed_owner(item);
        if owner == self.me() {
            // The counter's owner knows every note: this one does not exist.
            return outputs.drop_message(from, DropReason::StaleEpoch);
        }
        if hops < self.hops_max() {
            outputs.send(owner, wrap(Message::Acquire { item, requester, hops: hops + 1 }));
        }
    }

    // The fields of `Message::Transfer`, unpacked where they are checked one by one.
    #[allow(clippy::too_many_arguments)]
    fn on_transfer(
        &mut self,
        from: ReplicaId,
        item: Item,
        epoch: u64,
        sequence: u64,
        digest: u64,
        outputs: &mut Outputs,
    ) {
        let me = self.me();
        let Some(state) = self.items.get_mut(&item) else {
            return outputs.drop_message(from, DropReason::StaleEpoch);
        };
        if !epoch_possible(epoch) {
            return outputs.drop_message(from, DropReason::StaleEpoch);
        }
        if epoch <= state.epoch {
            let duplicate = state.owner == me && epoch == state.epoch;
            if !duplicate {
                outputs.drop_message(from, DropReason::StaleEpoch);
            }
            // Acknowledged either way, so that the sender stops sending it.
            return outputs.send(from, wrap(Message::TransferAck { item, epoch }));
        }
        if self.owned.contains_key(&item) {
            return outputs.drop_message(from, DropReason::StaleEpoch);
        }
        let note_here = match item {
            Item::Note(id) => self.store.get(id),
            Item::Counter => None,
        };
        if sequence != state.sequence || digest != item_digest(note_here, &state.clients) {
            // Not what this replica applied: the sender transfers only what every replica
            // has. The item's client table stays the one recorded here, never a peer's.
            return outputs.drop_message(from, DropReason::ImpossibleSequence);
        }
        state.change_owner(me, epoch);
        // Nothing can follow what the old owner transferred but this replica's own updates.
        self.buffered -= state.buffered.len();
        state.buffered.clear();
        self.owned.insert(item, Owned::new(&self.config, sequence));
        self.record(|| Record::Acquired { item, epoch, sequence });
        self.acquiring.remove(&item);
        self.transfers.remove(&item);
        outputs.event(Event::OwnershipAcquired { item: item.to_string(), epoch, from });
        outputs.send(from, wrap(Message::TransferAck { item, epoch }));
    }

    fn on_transfer_ack(&mut self, item: Item, epoch: u64, from: ReplicaId) {
        if self.transfers.get(&item).is_some_and(|transfer| transfer.epoch == epoch && transfer.to == from) {
            self.transfers.remove(&item);
        }
    }

    fn on_read_reply(&mut self, client: ClientId, request_number: RequestNumber, reply: Reply, outputs: &mut Outputs) {
        // A reply to a read no longer pending is a duplicate: the client was answered.
        if self.forwards.take(client, request_number).is_some() {
            outputs.reply(client, request_number, reply, Freshness::Ordered);
        }
    }

    // ----- timers ---------------------------------------------------------------

    fn retransmit_updates(&mut self, now: Instant, outputs: &mut Outputs) {
        let retry_at = self.retry_at(now);
        let entries_max = self.config.limits.entries_per_message_max;
        let bytes_max = self.config.limits.message_bytes_max;
        for (item, at) in &mut self.retransmit_at {
            if *at > now {
                continue;
            }
            *at = retry_at;
            let owned = &self.owned[item];
            for (peer, acknowledged) in &owned.acknowledged {
                let mut bytes = 0;
                let entries: Vec<Update> = owned
                    .log
                    .iter()
                    .filter(|update| update.sequence > *acknowledged)
                    .take(entries_max)
                    .take_while(|update| {
                        let update_bytes = size::entry_bytes(&update.operation);
                        bytes += update_bytes;
                        bytes == update_bytes || bytes <= bytes_max
                    })
                    .cloned()
                    .collect();
                let Some(first) = entries.first() else { continue };
                outputs.event(Event::Retransmitted {
                    to: *peer,
                    first_sequence: first.sequence,
                    entries: entries.len(),
                });
                outputs.send(*peer, wrap(Message::Update { entries }));
            }
        }
    }

    fn retry_acquires_and_transfers(&mut self, now: Instant, outputs: &mut Outputs) {
        let retry_at = self.retry_at(now);
        let due: Vec<Item> = self.acquiring.iter().filter(|(_, at)| **at <= now).map(|(item, _)| *item).collect();
        for item in due {
            self.acquiring.insert(item, retry_at);
            self.send_acquire(item, outputs);
        }
        for transfer in self.transfers.values_mut() {
            if transfer.retry_at <= now {
                transfer.retry_at = retry_at;
                outputs.send(transfer.to, wrap(transfer.message.clone()));
            }
        }
    }

    fn retry_reads(&mut self, now: Instant, outputs: &mut Outputs) {
        let retry_at = self.retry_at(now);
        for (_, request) in self.forwards.due(now, retry_at) {
            let (client, request_number) = (request.client, request.request_number);
            if let Some(reply) = self.serve_read(&request.operation) {
                self.forwards.take(client, request_number);
                outputs.reply(client, request_number, reply, Freshness::Ordered);
                continue;
            }
            // Asked where this replica now believes the owner is, which may have changed.
            let owner = self.believed_owner(self.item_of(&request.operation));
            self.forwards.redirect(client, owner);
            outputs.send(owner, wrap(Message::Read { origin: self.me(), request, hops: 0 }));
        }
    }

    /// After every input: what follows from it, then the derived client table.
    fn finish(&mut self, now: Instant, outputs: &mut Outputs) {
        self.reconcile(now, outputs);
        self.recent_clients.refresh();
    }
}

/// Whether an epoch can be held: every epoch must leave room for the hand-off that
/// follows it, so `u64::MAX`, which no hand-off can reach by counting, is forged.
fn epoch_possible(epoch: u64) -> bool {
    epoch < u64::MAX
}

/// Whether an update's operation is a write of the item it names.
fn belongs_to_item(update: &Update) -> bool {
    match (update.item, &update.operation) {
        (_, operation) if operation.is_read() => false,
        (Item::Counter, _) => true,
        (Item::Note(id), operation) => operation.note_id() == Some(id),
    }
}

fn wrap(message: Message) -> AnyMessage {
    AnyMessage::LocalWrite(message)
}

impl LocalWrite {
    fn handle_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        let operation = &request.operation;
        let serve_locally = request.consistency == Consistency::Local
            || matches!(operation, Operation::List { .. })
            || self.config.defect == Some(Defect::ServeReadsLocally);
        if operation.is_read() && serve_locally {
            let reply = self.store.query(operation);
            let freshness = Freshness::PossiblyStale { applied: self.applied };
            return outputs.reply(request.client, request.request_number, reply, freshness);
        }
        if operation.is_read() {
            self.start_read(now, request, outputs);
        } else {
            self.submit_write(now, request, outputs);
        }
        self.finish(now, outputs);
    }

    fn handle_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        let AnyMessage::LocalWrite(message) = message else {
            return outputs.drop_message(from, DropReason::WrongProtocol);
        };
        if from == self.me() || from.0 >= self.config.replica_count {
            return outputs.drop_message(from, DropReason::NotPrimary);
        }
        match message {
            Message::Update { entries } => self.on_update(from, entries, outputs),
            Message::UpdateAck { item, sequence } => self.on_update_ack(now, from, item, sequence, outputs),
            Message::Acquire { item, requester, hops } => self.on_acquire(now, from, item, requester, hops, outputs),
            Message::Transfer { item, to, epoch, sequence, digest } => {
                if to != self.me() {
                    // Misdelivered: only the replica it names may take the item.
                    return outputs.drop_message(from, DropReason::NotPrimary);
                }
                self.on_transfer(from, item, epoch, sequence, digest, outputs)
            }
            Message::TransferAck { item, epoch } => self.on_transfer_ack(item, epoch, from),
            Message::Read { origin, request, hops } => {
                if origin.0 >= self.config.replica_count || !matches!(request.operation, Operation::Get { .. }) {
                    return outputs.drop_message(from, DropReason::Conflicting);
                }
                self.pass_read(origin, request, hops, outputs);
            }
            Message::ReadReply { client, request_number, reply } => {
                self.on_read_reply(client, request_number, reply, outputs)
            }
        }
        self.finish(now, outputs);
    }

    fn handle_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        self.retry_reads(now, outputs);
        self.retry_acquires_and_transfers(now, outputs);
        self.retransmit_updates(now, outputs);
        self.finish(now, outputs);
    }
}

impl Protocol for LocalWrite {
    fn on_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs) {
        self.handle_request(now, request, outputs);
        self.persist(outputs);
    }

    fn on_message(&mut self, now: Instant, from: ReplicaId, message: AnyMessage, outputs: &mut Outputs) {
        self.handle_message(now, from, message, outputs);
        self.persist(outputs);
    }

    fn on_timeout(&mut self, now: Instant, outputs: &mut Outputs) {
        self.handle_timeout(now, outputs);
        self.persist(outputs);
    }

    fn on_synced(&mut self, _now: Instant, id: u64, outputs: &mut Outputs) {
        if let Some(journal) = &mut self.journal {
            journal.on_synced(id, outputs);
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        let retransmit = self.retransmit_at.values().copied().min();
        let acquire = self.acquiring.values().copied().min();
        let transfer = self.transfers.values().map(|transfer| transfer.retry_at).min();
        [self.forwards.next_retry_at(), retransmit, acquire, transfer].into_iter().flatten().min()
    }

    fn store(&self) -> &NoteStore {
        &self.store
    }

    fn store_mut(&mut self) -> &mut NoteStore {
        &mut self.store
    }

    fn client_table(&self) -> &ClientTable {
        self.recent_clients.table()
    }

    fn status(&self) -> Status {
        Status {
            replica: self.me(),
            protocol: "local-write".into(),
            role: Role::Owner { items_owned: self.owned.len() as u64 },
            view: None,
            op_number: self.applied,
            applied: self.applied,
            // Hand-offs in flight count too: the item is unusable until the new owner has it.
            pending_requests: self.queued + self.waiting.len() + self.forwards.len() + self.transfers.len(),
            repairing: false,
            storage_stalled: false,
            counters: Default::default(),
        }
    }

    fn check_invariants(&mut self) {
        assert!(self.applied >= self.applied_before, "the applied count never goes back");
        self.applied_before = self.applied;
        self.forwards.check_invariants();
        self.recent_clients.check_invariants();
        let limits = &self.config.limits;
        assert!(self.queued <= limits.pending_requests_max, "queued writes stay within their bound");
        assert!(self.buffered <= limits.log_entries_max, "buffered updates stay within their bound");
        assert!(self.early.len() <= self.buffered, "early updates are counted as buffered");
        assert!(self.waiting.len() <= limits.pending_requests_max.min(limits.log_entries_max), "waiters are bounded");
        if let Some(journal) = &self.journal {
            journal.check_invariants();
        }
        // The bounds above are checked always; what follows visits every queue, item and
        // waiter, so only builds with debug assertions (the simulator's tests) pay for it.
        if cfg!(debug_assertions) {
            self.check_every_item();
        }
    }
}

impl LocalWrite {
    fn check_every_item(&self) {
        assert_eq!(self.queued, self.queues.values().map(VecDeque::len).sum::<usize>(), "queued counts every queue");
        assert!(self.queues.values().all(|queue| !queue.is_empty()), "an empty queue is removed");
        let mut retained = 0;
        for (item, owned) in &self.owned {
            let state = &self.items[item];
            assert_eq!(state.owner, self.me(), "an owned item is believed owned here");
            assert!(state.buffered.is_empty(), "an owner has nothing to wait for from others");
            let first = owned.log.front().map_or(state.sequence + 1, |update| update.sequence);
            for (expected, update) in (first..).zip(&owned.log) {
                assert_eq!(update.sequence, expected, "the retained log is contiguous");
            }
            if let Some(last) = owned.log.back() {
                assert_eq!(last.sequence, state.sequence, "the log ends at the last executed update");
            }
            assert!(owned.acknowledged.values().all(|sequence| *sequence <= state.sequence), "no ack of the future");
            if self.queues.contains_key(item) {
                assert!(owned.hand_off_to.is_some(), "an owner that accepts writes has run its queue");
            }
            assert!(!self.acquiring.contains_key(item) && !self.transfers.contains_key(item), "owned, not in transit");
            assert_eq!(owned.log.is_empty(), !self.retransmit_at.contains_key(item), "resent while unacknowledged");
            retained += owned.log.len();
        }
        // Updates executed before a restart are retained with no waiting client.
        assert!(retained >= self.waiting.len(), "every waiting client's update is retained");
        for (item, sequence) in self.waiting.keys() {
            let owned = self.owned.get(item).expect("only an owner waits for acknowledgements");
            assert!(owned.log.iter().any(|update| update.sequence == *sequence), "a waiting update is retained");
        }
        assert!(self.retransmit_at.keys().all(|item| self.owned.contains_key(item)), "only an owner resends");
        for item in self.acquiring.keys() {
            assert!(self.queues.contains_key(item), "an item is acquired only for waiting writes");
        }
    }
}

#[cfg(test)]
mod tests;
