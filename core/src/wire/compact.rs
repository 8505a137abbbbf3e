//! [`Operation`], [`Reply`] and [`Refusal`] in compact formats.
//!
//! In JSON each is internally tagged (`{"op": "create", "body": {..}}`): the shape
//! server answers, traces, histories and snapshots show, which stays as it is.
//! Reading an internally tagged enum back needs a self-describing format, which
//! postcard is not, so in compact formats each takes the form of its mirror below
//! instead: externally tagged (the variant's index, then its fields), JSON values
//! as their text. Serde's remote derive checks at compile time that every mirror
//! has exactly its type's variants and fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{NoteId, Version};
use crate::operation::{Operation, Refusal, Reply};
use crate::store::{Note, NotePage};
use crate::wire::json_text;

/// Serialises `$type` with its derived, human-readable form (`#[serde(remote = "Self")]`)
/// in human-readable formats and with `$compact` in the others.
macro_rules! by_readability {
    ($type:ident, $compact:ident) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    $type::serialize(self, serializer)
                } else {
                    $compact::serialize(self, serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$type, D::Error> {
                if deserializer.is_human_readable() {
                    $type::deserialize(deserializer)
                } else {
                    $compact::deserialize(deserializer)
                }
            }
        }
    };
}

by_readability!(Operation, OperationCompact);
by_readability!(Reply, ReplyCompact);
by_readability!(Refusal, RefusalCompact);

#[derive(Serialize, Deserialize)]
#[serde(remote = "Operation")]
enum OperationCompact {
    Create {
        #[serde(with = "json_text")]
        body: Value,
    },
    Get {
        id: NoteId,
    },
    List {
        after: Option<NoteId>,
        limit: Option<u32>,
    },
    Replace {
        id: NoteId,
        #[serde(with = "json_text")]
        body: Value,
        if_match: Option<Version>,
    },
    Patch {
        id: NoteId,
        #[serde(with = "json_text")]
        patch: Value,
        if_match: Option<Version>,
    },
    Delete {
        id: NoteId,
        if_match: Option<Version>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Reply")]
enum ReplyCompact {
    Note { note: Note },
    Page { page: NotePage },
    Deleted { id: NoteId },
    Refused { refusal: Refusal },
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Refusal")]
enum RefusalCompact {
    NotFound { id: NoteId },
    VersionMismatch { id: NoteId, expected: Version, actual: Version },
    Invalid { reason: String },
    Unavailable { reason: String },
}
