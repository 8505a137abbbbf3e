//! The client table: each client's latest request number and the reply it got.
//!
//! It is part of the replicated state (recorded as operations execute, in the same
//! order on every replica), so a retry is answered with the recorded reply by
//! whichever replica orders it, and a retried create never makes two notes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digester;
use crate::ids::{ClientId, RequestNumber};
use crate::operation::Reply;

/// What to do with a request, given what the table remembers of its client.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Newer than anything recorded: execute it.
    Execute,
    /// The latest recorded request, retried: answer with the recorded reply.
    Retry(Reply),
    /// Older than the latest recorded request: the client has moved on; drop it.
    Stale,
}

#[derive(Clone, Debug, PartialEq)]
struct ClientEntry {
    request_number: RequestNumber,
    reply: Reply,
    /// When the entry was last written, in records made by this table: the eviction order.
    recorded_at: u64,
}

/// On the wire a table is its entries from the least to the most recently served
/// client; the age index is rebuilt on arrival, so a table from a peer can never
/// be inconsistent with itself. Two tables are equal when they remember the same
/// requests in the same order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ClientTableWire", into = "ClientTableWire")]
pub struct ClientTable {
    clients_max: usize,
    entries: BTreeMap<ClientId, ClientEntry>,
    /// `recorded_at` -> client, oldest first, to evict the least recently served client.
    by_age: BTreeMap<u64, ClientId>,
    records: u64,
    evictions: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ClientTableWire {
    clients_max: usize,
    /// Oldest first.
    entries: Vec<(ClientId, RequestNumber, Reply)>,
    evictions: u64,
}

impl From<ClientTable> for ClientTableWire {
    fn from(table: ClientTable) -> ClientTableWire {
        ClientTableWire { clients_max: table.clients_max, entries: table.oldest_first(), evictions: table.evictions }
    }
}

impl TryFrom<ClientTableWire> for ClientTable {
    type Error = String;

    fn try_from(wire: ClientTableWire) -> Result<ClientTable, String> {
        let records = wire.entries.into_iter().map(|(client, request_number, reply)| ClientRecord {
            client,
            request_number,
            reply,
        });
        ClientTable::from_records(wire.clients_max, wire.evictions, records)
    }
}

/// One remembered request, as a snapshot carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client: ClientId,
    pub request_number: RequestNumber,
    pub reply: Reply,
}

/// The digest of a table from its bound, its evictions and its records, oldest first.
pub(crate) fn table_digest<'a>(
    clients_max: usize,
    evictions: u64,
    records: impl Iterator<Item = (ClientId, RequestNumber, &'a Reply)>,
) -> u64 {
    let mut digester = Digester::new();
    digester.add(&(clients_max as u64));
    digester.add(&evictions);
    for record in records {
        digester.add(&record);
    }
    digester.finish()
}

impl PartialEq for ClientTable {
    fn eq(&self, other: &ClientTable) -> bool {
        self.clients_max == other.clients_max
            && self.evictions == other.evictions
            && self.entries.len() == other.entries.len()
            && self.oldest_first_borrowed().eq(other.oldest_first_borrowed())
    }
}

impl ClientTable {
    /// Every remembered request, from the least to the most recently served client.
    fn oldest_first(&self) -> Vec<(ClientId, RequestNumber, Reply)> {
        self.oldest_first_borrowed()
            .map(|(client, request_number, reply)| (client, request_number, reply.clone()))
            .collect()
    }

    /// The same entries borrowed, without copying a reply: the simulator compares every
    /// replica's table while it waits for them to converge.
    fn oldest_first_borrowed(&self) -> impl Iterator<Item = (ClientId, RequestNumber, &Reply)> {
        self.by_age.values().map(|client| {
            let entry = &self.entries[client];
            (*client, entry.request_number, &entry.reply)
        })
    }

    /// A table from a peer's records, oldest first; refused when a client appears
    /// twice or there are more than `clients_max`.
    pub fn from_records(
        clients_max: usize,
        evictions: u64,
        records: impl IntoIterator<Item = ClientRecord>,
    ) -> Result<ClientTable, String> {
        if clients_max == 0 {
            return Err("a client table holds at least one client".into());
        }
        let mut table = ClientTable::new(clients_max);
        for ClientRecord { client, request_number, reply } in records {
            if table.entries.contains_key(&client) {
                return Err(format!("client {client} appears twice"));
            }
            if table.entries.len() == clients_max {
                return Err(format!("more than {clients_max} clients in a table of at most {clients_max}"));
            }
            table.record(client, request_number, reply);
        }
        table.evictions = evictions;
        Ok(table)
    }

    /// Every remembered request, oldest first: what a snapshot carries.
    pub fn records(&self) -> Vec<ClientRecord> {
        self.oldest_first_borrowed()
            .map(|(client, request_number, reply)| ClientRecord { client, request_number, reply: reply.clone() })
            .collect()
    }

    /// Equal on two replicas exactly when (but for a hash collision) their tables are equal.
    pub fn digest(&self) -> u64 {
        table_digest(self.clients_max, self.evictions, self.oldest_first_borrowed())
    }

    pub fn clients_max(&self) -> usize {
        self.clients_max
    }

    pub fn new(clients_max: usize) -> ClientTable {
        assert!(clients_max > 0, "a client table holds at least one client");
        ClientTable { clients_max, entries: BTreeMap::new(), by_age: BTreeMap::new(), records: 0, evictions: 0 }
    }

    pub fn admit(&self, client: ClientId, request_number: RequestNumber) -> Admission {
        match self.entries.get(&client) {
            None => Admission::Execute,
            Some(entry) if request_number > entry.request_number => Admission::Execute,
            Some(entry) if request_number == entry.request_number => Admission::Retry(entry.reply.clone()),
            Some(_) => Admission::Stale,
        }
    }

    /// Records the reply to an executed request. When the table is full the client
    /// served longest ago is forgotten: a retry from it would execute again, which
    /// is why `clients_max` must exceed the number of clients active at once.
    pub fn record(&mut self, client: ClientId, request_number: RequestNumber, reply: Reply) {
        self.records += 1;
        let recorded_at = self.records;
        if let Some(previous) = self.entries.get(&client) {
            assert!(request_number > previous.request_number, "a client's request numbers only grow");
            self.by_age.remove(&previous.recorded_at);
        } else if self.entries.len() == self.clients_max {
            let (_, oldest) = self.by_age.pop_first().expect("a full table has an oldest entry");
            self.entries.remove(&oldest);
            self.evictions += 1;
        }
        self.entries.insert(client, ClientEntry { request_number, reply, recorded_at });
        self.by_age.insert(recorded_at, client);
        assert_eq!(self.entries.len(), self.by_age.len(), "every entry has exactly one age");
        assert!(self.entries.len() <= self.clients_max, "the table never grows past clients_max");
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many clients were forgotten to keep the table within its bound.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn latest_request_number(&self, client: ClientId) -> Option<RequestNumber> {
        self.entries.get(&client).map(|entry| entry.request_number)
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
    fn answers_a_retry_with_the_recorded_reply_and_drops_older_requests() {
        let mut table = ClientTable::new(8);
        assert_eq!(table.admit(ClientId(1), 1), Admission::Execute);
        table.record(ClientId(1), 1, deleted(1));
        assert_eq!(table.admit(ClientId(1), 1), Admission::Retry(deleted(1)));
        table.record(ClientId(1), 2, deleted(2));
        assert_eq!(table.admit(ClientId(1), 1), Admission::Stale);
        assert_eq!(table.admit(ClientId(1), 2), Admission::Retry(deleted(2)));
        assert_eq!(table.admit(ClientId(1), 3), Admission::Execute);
        assert_eq!(table.admit(ClientId(2), 1), Admission::Execute);
    }

    #[test]
    fn evicts_the_client_served_longest_ago_when_full() {
        let mut table = ClientTable::new(2);
        table.record(ClientId(1), 1, deleted(1));
        table.record(ClientId(2), 1, deleted(2));
        table.record(ClientId(1), 2, deleted(3));
        table.record(ClientId(3), 1, deleted(4));
        assert_eq!(table.admit(ClientId(2), 1), Admission::Execute, "client 2 was evicted");
        assert_eq!(table.admit(ClientId(1), 2), Admission::Retry(deleted(3)));
        assert_eq!((table.len(), table.evictions()), (2, 1));
    }

    #[test]
    fn a_table_from_a_peer_is_rebuilt_and_checked() {
        let mut table = ClientTable::new(3);
        table.record(ClientId(2), 1, deleted(1));
        table.record(ClientId(1), 4, deleted(2));
        let json = serde_json::to_value(&table).expect("encodes");
        let decoded: ClientTable = serde_json::from_value(json).expect("decodes");
        assert_eq!(decoded, table);
        let duplicate = serde_json::json!({"clients_max": 3, "evictions": 0, "entries": [[1, 1, {"reply": "deleted", "id": 1}], [1, 2, {"reply": "deleted", "id": 1}]]});
        assert!(serde_json::from_value::<ClientTable>(duplicate).is_err());
        let overfull = serde_json::json!({"clients_max": 1, "evictions": 0, "entries": [[1, 1, {"reply": "deleted", "id": 1}], [2, 1, {"reply": "deleted", "id": 1}]]});
        assert!(serde_json::from_value::<ClientTable>(overfull).is_err());
    }

    #[test]
    #[should_panic(expected = "request numbers only grow")]
    fn recording_an_older_request_is_a_programming_error() {
        let mut table = ClientTable::new(2);
        table.record(ClientId(1), 5, deleted(1));
        table.record(ClientId(1), 4, deleted(1));
    }
}
