//! Identifiers, each its own type so that a note id is never taken for a client id.

use core::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A replica's index in the cluster configuration: 0, 1, .. n-1.
    ReplicaId(u8), "R"
);
id_type!(
    /// Identifies one cluster, so that messages of another cluster are never taken for ours.
    ClusterId(u64), "cluster-"
);
id_type!(
    /// A client of the replicated service; with a request number it names one request.
    ClientId(u64), "C"
);
id_type!(
    /// A note's id: assigned by the replicated state machine, sequential from 1, never reused.
    NoteId(u64), "note-"
);

impl ReplicaId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A note's version: 1 at creation, one more with every replace or patch.
pub type Version = u64;

/// A client's request number: strictly increasing per client; a retry reuses it.
pub type RequestNumber = u64;
