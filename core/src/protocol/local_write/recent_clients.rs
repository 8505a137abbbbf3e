//! The replica-wide client table of local-write, derived so that it converges.
//!
//! Exactly-once execution rests on the per-item client tables, which every replica
//! records in the item's own sequence order. A replica-wide table recorded as updates
//! are applied would depend on how updates of different items interleave, which
//! differs from replica to replica. This one is a function of the *set* of applied
//! updates instead: for each client, its latest record by (timestamp, request
//! number); of those, the `clients_max` most recent by (timestamp, client). Both
//! orders are total and the kept set only loses records below a threshold that
//! never goes down, so applying the same updates in any order gives the same table.

use std::collections::{BTreeMap, BTreeSet};

use crate::client_table::ClientTable;
use crate::hlc::Timestamp;
use crate::ids::{ClientId, RequestNumber};
use crate::operation::Reply;

#[derive(Debug)]
pub(super) struct RecentClients {
    clients_max: usize,
    latest: BTreeMap<ClientId, Recent>,
    by_recency: BTreeSet<(Timestamp, ClientId)>,
    /// The table as clients and the simulator see it: kept up to date while records
    /// arrive in recency order, rebuilt when one did not.
    table: ClientTable,
    table_stale: bool,
}

#[derive(Debug)]
struct Recent {
    timestamp: Timestamp,
    request_number: RequestNumber,
    reply: Reply,
}

impl RecentClients {
    pub(super) fn new(clients_max: usize) -> RecentClients {
        RecentClients {
            clients_max,
            latest: BTreeMap::new(),
            by_recency: BTreeSet::new(),
            table: ClientTable::new(clients_max),
            table_stale: false,
        }
    }

    pub(super) fn record(
        &mut self,
        client: ClientId,
        request_number: RequestNumber,
        timestamp: Timestamp,
        reply: &Reply,
    ) {
        if let Some(recent) = self.latest.get(&client) {
            if (recent.timestamp, recent.request_number) >= (timestamp, request_number) {
                return;
            }
            self.by_recency.remove(&(recent.timestamp, client));
        }
        let most_recent = self.by_recency.last().is_none_or(|latest| *latest < (timestamp, client));
        self.latest.insert(client, Recent { timestamp, request_number, reply: reply.clone() });
        self.by_recency.insert((timestamp, client));
        let mut evicted = false;
        if self.latest.len() > self.clients_max {
            let (_, oldest) = self.by_recency.pop_first().expect("an over-full set has an oldest client");
            self.latest.remove(&oldest);
            evicted = true;
        }
        // The common case: the newest record of all, with nobody evicted and the client's
        // request number growing. The rebuilt table would differ from the current one only
        // by this client moving to the most recent end, which recording it in the table does.
        let newer_request = self.table.latest_request_number(client).is_none_or(|previous| previous < request_number);
        if !self.table_stale && most_recent && !evicted && newer_request {
            self.table.record(client, request_number, reply.clone());
        } else {
            self.table_stale = true;
        }
    }

    /// Every record kept, for a journal: recording them again gives the same table.
    pub(super) fn records(&self) -> Vec<(ClientId, RequestNumber, Timestamp, Reply)> {
        (self.latest.iter())
            .map(|(client, recent)| (*client, recent.request_number, recent.timestamp, recent.reply.clone()))
            .collect()
    }

    /// Rebuilds the table after records changed; called once per input, not per record.
    pub(super) fn refresh(&mut self) {
        if self.table_stale {
            self.table = self.rebuilt_table();
            self.table_stale = false;
        }
    }

    /// The table as a function of the records alone: each client's, least recent first.
    fn rebuilt_table(&self) -> ClientTable {
        let mut table = ClientTable::new(self.clients_max);
        for (_, client) in &self.by_recency {
            let recent = &self.latest[client];
            table.record(*client, recent.request_number, recent.reply.clone());
        }
        table
    }

    pub(super) fn table(&self) -> &ClientTable {
        &self.table
    }

    pub(super) fn check_invariants(&self) {
        assert_eq!(self.latest.len(), self.by_recency.len(), "every recent client has exactly one rank");
        assert!(self.latest.len() <= self.clients_max, "recent clients stay within clients_max");
        assert!(!self.table_stale, "the derived table is rebuilt before the input returns");
        if cfg!(debug_assertions) {
            assert!(self.table == self.rebuilt_table(), "the table kept up to date is the table rebuilt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NoteId;

    fn deleted(id: u64) -> Reply {
        Reply::Deleted { id: NoteId(id) }
    }

    #[test]
    fn the_same_records_in_any_order_give_the_same_table() {
        let records = [(1, 1, 10), (2, 1, 20), (1, 2, 30), (3, 1, 5), (2, 2, 40), (4, 1, 50)];
        let mut tables = Vec::new();
        for rotation in 0..records.len() {
            let mut recent = RecentClients::new(2);
            for (client, request_number, timestamp) in records.iter().cycle().skip(rotation).take(records.len()) {
                recent.record(ClientId(*client), *request_number, Timestamp(*timestamp), &deleted(*timestamp));
            }
            recent.refresh();
            tables.push(recent.table().clone());
        }
        assert!(tables.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(tables[0].latest_request_number(ClientId(2)), Some(2));
        assert_eq!(tables[0].latest_request_number(ClientId(4)), Some(1));
        assert_eq!(tables[0].len(), 2, "clients 1 and 3 are the least recent");
    }
}
