use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::message::Message;
use crate::operation::{Refusal, Reply};
use crate::replica::{DropReason, Event, Freshness, Output};

/// The effects of one input, in the order they were decided.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    outputs: Vec<Output>,
}

impl Outputs {
    pub(crate) fn send(&mut self, to: ReplicaId, message: Message) {
        self.outputs.push(Output::Send { to, message });
    }

    pub(crate) fn reply(
        &mut self,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        freshness: Freshness,
    ) {
        self.outputs.push(Output::Reply { client, request_number, reply, freshness });
    }

    pub(crate) fn refuse(&mut self, client: ClientId, request_number: RequestNumber, refusal: Refusal) {
        self.reply(client, request_number, Reply::refused(refusal), Freshness::Ordered);
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.outputs.push(Output::Event(event));
    }

    pub(crate) fn drop_message(&mut self, from: ReplicaId, reason: DropReason) {
        self.event(Event::Dropped { from, reason });
    }

    pub(crate) fn storage(&mut self, op: crate::storage::StorageOp) {
        self.outputs.push(Output::Storage(op));
    }

    /// An output decided earlier and held back until now (the journals).
    pub(crate) fn push(&mut self, output: Output) {
        self.outputs.push(output);
    }

    /// Keeps only the outputs `keep` says yes to (the journal takes back messages that must wait).
    pub(crate) fn retain(&mut self, keep: impl FnMut(&Output) -> bool) {
        self.outputs.retain(keep);
    }

    pub(crate) fn into_vec(self) -> Vec<Output> {
        self.outputs
    }
}
