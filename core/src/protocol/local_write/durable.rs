//! Local-write on disk: the changes to a replica's state that must survive a crash,
//! as records of its journal ([`crate::storage::updates`]), and the restart that
//! replays them.
//!
//! Each record mirrors one change, written in the order the changes happen, so that
//! replaying a log from its head gives the state as it was after the last record
//! read. What is not recorded is what peers or clients send again: queued and
//! waiting requests, buffered and early updates, acquisitions under way, forwarded
//! reads, requested hand-offs, and what the other replicas acknowledged (an owner
//! that restarts sends every update it holds again, and collects acknowledgements anew).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ItemState, LocalWrite, Message, Owned, TransferInFlight, Update};
use crate::client_table::{ClientRecord, ClientTable};
use crate::config::Config;
use crate::hlc::Timestamp;
use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::operation::Reply;
use crate::protocol::local_write::Item;
use crate::storage::updates::{RecoveredUpdates, UpdateJournal};
use crate::storage::{DiskFile, OpenError};
use crate::time::Instant;

/// One record of local-write's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Record {
    /// The head of a generation's log: the state beside the checkpoint's store.
    State(Box<DurableState>),
    /// An update applied here; executed here when `ordered_by` is this replica.
    Applied { ordered_by: ReplicaId, update: Update },
    /// An update showed that `owner` owns `item` at `epoch`.
    Owner { item: Item, owner: ReplicaId, epoch: u64 },
    /// This replica handed `item` over to `to` at `epoch`; `transfer` is sent until acknowledged.
    HandedOff { item: Item, to: ReplicaId, epoch: u64, transfer: Message },
    /// This replica took `item` over at `epoch`, with `sequence` of its updates applied.
    Acquired { item: Item, epoch: u64, sequence: u64 },
    /// Every other replica applied the updates of the owned `item` through `sequence`.
    Acknowledged { item: Item, sequence: u64 },
}

/// What a replica keeps besides its store, at the start of a generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DurableState {
    applied: u64,
    items: Vec<DurableItem>,
    /// The items owned here, with their updates not yet known to be applied everywhere.
    owned: Vec<(Item, Vec<Update>)>,
    transfers: Vec<(Item, ReplicaId, u64, Message)>,
    recent_clients: Vec<(ClientId, RequestNumber, Timestamp, Reply)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DurableItem {
    item: Item,
    owner: ReplicaId,
    epoch: u64,
    sequence: u64,
    /// The item's client table, oldest first, and how many it evicted.
    clients: Vec<ClientRecord>,
    evictions: u64,
}

impl LocalWrite {
    /// Hands a change to the journal, if this replica keeps one (`make` is only called then).
    pub(super) fn record(&mut self, make: impl FnOnce() -> Record) {
        if let Some(journal) = &mut self.journal {
            journal.append(&make());
        }
    }

    /// Hands the state after an input to the journal, which writes what changed and
    /// holds what must wait for it.
    pub(super) fn persist(&mut self, outputs: &mut crate::protocol::Outputs) {
        let Some(journal) = &self.journal else { return };
        let head = journal.writes_generation().then(|| Record::State(Box::new(self.durable_state())));
        let journal = self.journal.as_mut().expect("checked above");
        journal.after_input(self.applied, &self.store, self.recent_clients.table(), head.as_ref(), outputs);
    }

    fn durable_state(&self) -> DurableState {
        DurableState {
            applied: self.applied,
            items: (self.items.iter())
                .map(|(item, state)| DurableItem {
                    item: *item,
                    owner: state.owner,
                    epoch: state.epoch,
                    sequence: state.sequence,
                    clients: state.clients.records(),
                    evictions: state.clients.evictions(),
                })
                .collect(),
            owned: self.owned.iter().map(|(item, owned)| (*item, owned.log.iter().cloned().collect())).collect(),
            transfers: (self.transfers.iter())
                .map(|(item, transfer)| (*item, transfer.to, transfer.epoch, transfer.message.clone()))
                .collect(),
            recent_clients: self.recent_clients.records(),
        }
    }

    /// A replica restarted from its data directory: the state its log's head and
    /// records give. Every owned item's updates are sent again at once, and every
    /// unacknowledged hand-off; the rest waits for peers and clients.
    pub(crate) fn reopen(
        config: Config,
        recovered: RecoveredUpdates<Record>,
        now: Instant,
    ) -> Result<LocalWrite, OpenError> {
        let journal = UpdateJournal::reopened(&config, &recovered);
        let wal = DiskFile::Wal { generation: recovered.superblock.generation }.name();
        let foreign = |record: usize| OpenError::OtherProtocol { file: wal.clone(), record: record as u64 };
        let mut replica = LocalWrite::new(config, now);
        replica.store.restore(recovered.store);
        let mut records = recovered.updates.into_iter().enumerate();
        match records.next() {
            // A new directory: the state every replica starts with.
            None if recovered.superblock.checkpoint_op == 0 => {}
            Some((_, Record::State(state))) if state.applied == recovered.superblock.checkpoint_op => {
                replica.restore(*state, now).map_err(|()| foreign(0))?;
            }
            _ => return Err(foreign(0)),
        }
        for (index, record) in records {
            replica.replay(record, now).map_err(|()| foreign(index))?;
        }
        replica.store.take_changes();
        replica.recent_clients.refresh();
        replica.applied_before = replica.applied;
        for (item, owned) in &mut replica.owned {
            let sequence = replica.items[item].sequence;
            let first = owned.log.front().map_or(sequence, |update| update.sequence - 1);
            for acknowledged in owned.acknowledged.values_mut() {
                *acknowledged = first;
            }
            if !owned.log.is_empty() {
                replica.retransmit_at.insert(*item, now);
            }
        }
        replica.journal = Some(journal);
        Ok(replica)
    }

    /// Takes the state a generation's head holds; `Err` when it could not be a
    /// replica's of this cluster (a log this replica did not write).
    fn restore(&mut self, state: DurableState, now: Instant) -> Result<(), ()> {
        let DurableState { applied, items, owned, transfers, recent_clients } = state;
        let (me, replicas) = (self.me(), self.config.replica_count);
        let clients_max = self.config.limits.clients_max;
        self.applied = applied;
        self.items.clear();
        for item in items {
            let known = match item.item {
                Item::Counter => true,
                Item::Note(id) => id.0 > 0 && id < self.store.next_id(),
            };
            if !known || item.owner.0 >= replicas || !super::epoch_possible(item.epoch) {
                return Err(());
            }
            let clients = ClientTable::from_records(clients_max, item.evictions, item.clients).map_err(|_| ())?;
            let state = ItemState {
                owner: item.owner,
                epoch: item.epoch,
                sequence: item.sequence,
                clients,
                buffered: BTreeMap::new(),
            };
            if self.items.insert(item.item, state).is_some() {
                return Err(());
            }
        }
        if !self.items.contains_key(&Item::Counter) {
            return Err(());
        }
        self.owned.clear();
        for (item, log) in owned {
            let state = self.items.get(&item).ok_or(())?;
            let first = log.first().map_or(state.sequence + 1, |update| update.sequence);
            let contiguous =
                (first..).zip(&log).all(|(sequence, update)| update.sequence == sequence && update.item == item);
            let ends_at_sequence = log.last().is_none_or(|update| update.sequence == state.sequence);
            if state.owner != me || !contiguous || !ends_at_sequence {
                return Err(());
            }
            let mut owned = Owned::new(&self.config, 0);
            owned.log = log.into();
            self.owned.insert(item, owned);
        }
        for (item, to, epoch, message) in transfers {
            if !self.items.contains_key(&item) || to == me || to.0 >= replicas {
                return Err(());
            }
            self.transfers.insert(item, TransferInFlight { to, epoch, message, retry_at: now });
        }
        for (client, request_number, timestamp, reply) in recent_clients {
            self.recent_clients.record(client, request_number, timestamp, &reply);
        }
        Ok(())
    }

    /// Applies one record again; `Err` when it does not follow the state (a log this
    /// replica did not write).
    fn replay(&mut self, record: Record, now: Instant) -> Result<(), ()> {
        let me = self.me();
        match record {
            Record::State(_) => return Err(()),
            Record::Applied { ordered_by, update } => {
                let follows = self.items.get(&update.item).is_some_and(|state| update.sequence == state.sequence + 1);
                let executed_here = ordered_by != me || self.owned.contains_key(&update.item);
                // A create takes the store's next id, which no known note may hold.
                let id_free = !self.items.contains_key(&Item::Note(self.store.next_id()));
                if !follows || !executed_here || !id_free || ordered_by.0 >= self.config.replica_count {
                    return Err(());
                }
                if !super::belongs_to_item(&update) {
                    return Err(());
                }
                self.apply(ordered_by, &update);
                if ordered_by == me {
                    let owned = self.owned.get_mut(&update.item).expect("checked above");
                    owned.log.push_back(update);
                }
            }
            Record::Owner { item, owner, epoch } => {
                let state = self.items.get_mut(&item).ok_or(())?;
                if epoch <= state.epoch || !super::epoch_possible(epoch) || owner.0 >= self.config.replica_count {
                    return Err(());
                }
                state.change_owner(owner, epoch);
            }
            Record::HandedOff { item, to, epoch, transfer } => {
                let state = self.items.get_mut(&item).ok_or(())?;
                let to_a_peer = to != me && to.0 < self.config.replica_count;
                if epoch <= state.epoch
                    || !super::epoch_possible(epoch)
                    || !to_a_peer
                    || self.owned.remove(&item).is_none()
                {
                    return Err(());
                }
                state.change_owner(to, epoch);
                self.transfers.insert(item, TransferInFlight { to, epoch, message: transfer, retry_at: now });
            }
            Record::Acquired { item, epoch, sequence } => {
                let state = self.items.get_mut(&item).ok_or(())?;
                if epoch <= state.epoch
                    || !super::epoch_possible(epoch)
                    || sequence != state.sequence
                    || self.owned.contains_key(&item)
                {
                    return Err(());
                }
                state.change_owner(me, epoch);
                self.owned.insert(item, Owned::new(&self.config, sequence));
                self.transfers.remove(&item);
            }
            Record::Acknowledged { item, sequence } => {
                let owned = self.owned.get_mut(&item).ok_or(())?;
                while owned.log.front().is_some_and(|update| update.sequence <= sequence) {
                    owned.log.pop_front();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProtocolKind, StorageKind};
    use crate::ids::{ClusterId, NoteId};
    use crate::storage::updates::open_updates;
    use crate::storage::{DiskImage, format};

    fn config() -> Config {
        let mut config = Config::new(ClusterId(4), ReplicaId(1), 3, ProtocolKind::LocalWrite, 1);
        config.storage = StorageKind::Disk;
        config
    }

    fn reopened(records: Vec<Record>) -> Result<LocalWrite, OpenError> {
        let disk: DiskImage = format(&config()).into_iter().collect();
        let mut recovered = open_updates::<Record>(&config(), &disk).expect("a new directory opens");
        recovered.updates = records;
        LocalWrite::reopen(config(), recovered, Instant::ZERO)
    }

    #[test]
    fn a_log_no_replica_of_this_cluster_could_have_written_is_refused_not_replayed() {
        let head = || LocalWrite::new(config(), Instant::ZERO).durable_state();
        assert!(reopened(vec![Record::State(Box::new(head()))]).is_ok());
        let mut owner_outside = head();
        owner_outside.items[0].owner = ReplicaId(7);
        let mut no_counter = head();
        no_counter.items.clear();
        let mut unknown_note = head();
        let counter = unknown_note.items[0].clone();
        unknown_note.items.push(DurableItem { item: Item::Note(NoteId(5)), ..counter });
        let mut not_owned_here = head();
        not_owned_here.owned.push((Item::Counter, Vec::new()));
        for forged in [owner_outside, no_counter, unknown_note, not_owned_here] {
            let refused = reopened(vec![Record::State(Box::new(forged))]).unwrap_err();
            assert!(matches!(refused, OpenError::OtherProtocol { record: 0, .. }), "{refused}");
        }
        let forged_owner = Record::Owner { item: Item::Counter, owner: ReplicaId(9), epoch: 1 };
        let stale_epoch = Record::Owner { item: Item::Counter, owner: ReplicaId(2), epoch: 0 };
        let not_owned = Record::Acknowledged { item: Item::Counter, sequence: 1 };
        for forged in [forged_owner, stale_epoch, not_owned] {
            let refused = reopened(vec![Record::State(Box::new(head())), forged]).unwrap_err();
            assert!(matches!(refused, OpenError::OtherProtocol { record: 1, .. }), "{refused}");
        }
        assert!(reopened(vec![Record::Owner { item: Item::Counter, owner: ReplicaId(2), epoch: 1 }]).is_err());
    }
}
