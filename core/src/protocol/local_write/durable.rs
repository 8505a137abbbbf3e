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
use crate::client_table::ClientTable;
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
    clients: ClientTable,
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
                    clients: state.clients.clone(),
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
                replica.restore(*state, now);
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

    fn restore(&mut self, state: DurableState, now: Instant) {
        let DurableState { applied, items, owned, transfers, recent_clients } = state;
        self.applied = applied;
        self.items = (items.into_iter())
            .map(|item| {
                let state = ItemState {
                    owner: item.owner,
                    epoch: item.epoch,
                    sequence: item.sequence,
                    clients: item.clients,
                    buffered: BTreeMap::new(),
                };
                (item.item, state)
            })
            .collect();
        self.owned = (owned.into_iter())
            .map(|(item, log)| {
                let mut owned = Owned::new(&self.config, 0);
                owned.log = log.into();
                (item, owned)
            })
            .collect();
        self.transfers = (transfers.into_iter())
            .map(|(item, to, epoch, message)| (item, TransferInFlight { to, epoch, message, retry_at: now }))
            .collect();
        for (client, request_number, timestamp, reply) in recent_clients {
            self.recent_clients.record(client, request_number, timestamp, &reply);
        }
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
                if !follows || !executed_here || update.operation.is_read() {
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
                if epoch <= state.epoch {
                    return Err(());
                }
                state.change_owner(owner, epoch);
            }
            Record::HandedOff { item, to, epoch, transfer } => {
                let state = self.items.get_mut(&item).ok_or(())?;
                if epoch <= state.epoch || self.owned.remove(&item).is_none() {
                    return Err(());
                }
                state.change_owner(to, epoch);
                self.transfers.insert(item, TransferInFlight { to, epoch, message: transfer, retry_at: now });
            }
            Record::Acquired { item, epoch, sequence } => {
                let state = self.items.get_mut(&item).ok_or(())?;
                if epoch <= state.epoch || sequence != state.sequence || self.owned.contains_key(&item) {
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
