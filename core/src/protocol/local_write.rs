//! Placeholder while local-write is written.
use serde::{Deserialize, Serialize};

use crate::client_table::ClientTable;
use crate::config::Config;
use crate::ids::ReplicaId;
use crate::message::Message as AnyMessage;
use crate::operation::ClientRequest;
use crate::protocol::{Outputs, Protocol};
use crate::replica::Status;
use crate::store::NoteStore;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {}

impl Message {
    pub fn kind(&self) -> &'static str {
        match *self {}
    }
}

#[derive(Debug)]
pub struct LocalWrite {
    store: NoteStore,
    client_table: ClientTable,
}

impl LocalWrite {
    pub(crate) fn new(config: Config, _now: Instant) -> LocalWrite {
        LocalWrite {
            store: NoteStore::new(config.limits.store),
            client_table: ClientTable::new(config.limits.clients_max),
        }
    }
}

impl Protocol for LocalWrite {
    fn on_request(&mut self, _now: Instant, _request: ClientRequest, _outputs: &mut Outputs) {}
    fn on_message(&mut self, _now: Instant, _from: ReplicaId, _message: AnyMessage, _outputs: &mut Outputs) {}
    fn on_timeout(&mut self, _now: Instant, _outputs: &mut Outputs) {}
    fn next_timeout(&self) -> Option<Instant> {
        None
    }
    fn store(&self) -> &NoteStore {
        &self.store
    }
    fn client_table(&self) -> &ClientTable {
        &self.client_table
    }
    fn status(&self) -> Status {
        unreachable!()
    }
    fn check_invariants(&mut self) {}
}
