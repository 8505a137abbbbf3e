//! The replication protocols. Each one is a [`Protocol`]: the replica dispatches
//! inputs to it and it computes the effects.

pub mod local_write;
pub mod remote_write;
pub mod vr;

mod forwards;
mod outputs;

pub(crate) use forwards::PendingForwards;
pub(crate) use outputs::Outputs;

use crate::client_table::ClientTable;
use crate::ids::ReplicaId;
use crate::message::Message;
use crate::operation::ClientRequest;
use crate::replica::Status;
use crate::store::NoteStore;
use crate::time::Instant;

/// The largest view, op or sequence number a replica believes. At one view change
/// per millisecond, or a million operations per second, it lasts for thousands of
/// years; a number above it can only be forged, and arithmetic on numbers below it
/// cannot overflow.
pub const SEQUENCE_NUMBER_MAX: u64 = 1 << 48;

pub(crate) trait Protocol: core::fmt::Debug {
    fn on_request(&mut self, now: Instant, request: ClientRequest, outputs: &mut Outputs);
    fn on_message(&mut self, now: Instant, from: ReplicaId, message: Message, outputs: &mut Outputs);
    fn on_timeout(&mut self, now: Instant, outputs: &mut Outputs);
    /// A sync the replica asked for completed (durable storage only).
    fn on_synced(&mut self, _now: Instant, _id: u64, _outputs: &mut Outputs) {}
    /// The host cannot write to the disk (`stalled`), or can again (durable storage only).
    fn on_storage_stalled(&mut self, _now: Instant, _stalled: bool, _outputs: &mut Outputs) {}
    fn next_timeout(&self) -> Option<Instant>;
    fn store(&self) -> &NoteStore;
    fn store_mut(&mut self) -> &mut NoteStore;
    fn client_table(&self) -> &ClientTable;
    fn status(&self) -> Status;
    /// Asserts the protocol's invariants, and remembers what the next check compares
    /// against; called after every input.
    fn check_invariants(&mut self);
}
