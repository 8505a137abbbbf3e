//! # noted-core: replicas as pure state machines
//!
//! A [`Replica`] is one member of a replicated notes store. It does no I/O, reads
//! no clock, starts no thread and draws no randomness but from the seed in its
//! [`Config`]. The host (the `noted` server, or the `noted-sim` simulator) feeds it
//! one [`Input`] at a time, with the current time, and carries out the
//! [`Output`]s it returns:
//!
//! ```text
//! Replica::new(config, now)              -> Replica      (empty memory)
//! replica.handle(now, Input::Request(r)) -> Vec<Output>  (a client's request arrived)
//! replica.handle(now, Input::Message{..})-> Vec<Output>  (a peer's message arrived)
//! replica.handle(now, Input::Timeout)    -> Vec<Output>  (next_timeout() has passed)
//! replica.next_timeout()                 -> Option<Instant>
//! ```
//!
//! Outputs are `Send { to, message }`, `Reply { client, .. }` and `Event(..)`, in the
//! order they were decided; the host may deliver messages in any order, late, twice
//! or never, as the protocol's fault model allows.
//!
//! **Determinism.** The same configuration and the same inputs at the same times
//! give the same outputs, byte for byte: every map is ordered, and time is an
//! argument that must never go backwards.
//!
//! **Failures.** A malformed or impossible peer message is dropped and reported as
//! [`Event::Dropped`] (and counted); an expected refusal is a typed
//! [`Refusal`]; a broken invariant is a bug and panics with an assertion.

pub mod client_table;
pub mod config;
pub mod digest;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hlc;
pub mod ids;
pub mod merge_patch;
pub mod message;
pub mod operation;
pub mod protocol;
pub mod replica;
pub mod request_body;
pub mod snapshot;
pub mod storage;
pub mod store;
pub mod time;
pub mod wire;

#[cfg(test)]
mod test_cluster;

pub use config::{Config, ConfigError, Defect, Limits, ProtocolKind, Timing};
pub use ids::{ClientId, ClusterId, NoteId, ReplicaId, RequestNumber, Version};
pub use message::Message;
pub use operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
pub use replica::{Counters, DropReason, Event, Freshness, Input, Output, Replica, Role, Status};
pub use store::{Change, Note, NotePage, NoteStore};
pub use time::Instant;
