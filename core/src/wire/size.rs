//! Upper bounds of what messages weigh once encoded, so that every place that
//! builds a message can keep it within [`super::FRAME_PAYLOAD_BYTES_MAX`].
//!
//! A message is a few numbers and names plus a list of things that each carry
//! some JSON text (a note's body, an operation's body or patch). The text is
//! counted exactly (compact JSON bytes, as the store counts them); everything else
//! is bounded by the constants below, worked out from postcard's encoding:
//! integers are varints of at most 10 bytes, a string or list is its length (a
//! varint) and its contents, an enum variant is one byte. `wire/tests.rs` builds
//! the largest message of every kind under the largest limits [`Config::validate`]
//! accepts and checks it encodes within these bounds.
//!
//! [`Config::validate`]: crate::config::Config::validate

use crate::config::Limits;
use crate::message::Message;
use crate::operation::{Operation, Reply};
use crate::protocol::vr;
use crate::request_body;

/// A stored note besides its body's text: id, version, two timestamps, and the
/// text's length prefix.
pub const NOTE_OVERHEAD_BYTES_MAX: usize = 64;

/// A log entry (vr's `Entry`, remote-write's and local-write's `Update`) besides
/// its operation's JSON text: sequence numbers, view or epoch, item, client,
/// request number, timestamp, the operation's variant, note id, `if_match`, and
/// the text's length prefix.
pub const ENTRY_OVERHEAD_BYTES_MAX: usize = 160;

/// Longest reason a refusal gives (asserted where refusals are made).
pub const REFUSAL_REASON_BYTES_MAX: usize = 256;

/// A reply besides the notes it carries: variant, the page's cursor, a refusal
/// with its reason.
pub const REPLY_OVERHEAD_BYTES_MAX: usize = REFUSAL_REASON_BYTES_MAX + 64;

/// A record of the client table besides its reply: client id and request number.
pub const CLIENT_RECORD_OVERHEAD_BYTES_MAX: usize = 32;

/// Everything a message holds besides its entries, notes, records or reply: the
/// envelope, view and sequence numbers, a snapshot's manifest, list lengths.
pub const MESSAGE_OVERHEAD_BYTES_MAX: usize = 1024;

/// The largest payload a replica with `limits` builds: a view change's log
/// (`uncommitted_bytes_max`), or any other message (`message_bytes_max`), with
/// what every message adds. [`Config::validate`] keeps it within the frame limit.
pub fn largest_message_bytes(limits: &Limits) -> usize {
    limits.uncommitted_bytes_max.max(limits.message_bytes_max) + MESSAGE_OVERHEAD_BYTES_MAX
}

/// The largest payload a message of `message`'s kind may take under `limits`:
/// vr's `DoViewChange` and `StartView` carry up to `uncommitted_bytes_max` of
/// entries, every other message up to `message_bytes_max` of entries, notes,
/// client records or a reply.
pub fn message_bound(message: &Message, limits: &Limits) -> usize {
    let carried = match message {
        Message::Vr(vr::Message::DoViewChange { .. } | vr::Message::StartView { .. }) => limits.uncommitted_bytes_max,
        _ => limits.message_bytes_max,
    };
    carried + MESSAGE_OVERHEAD_BYTES_MAX
}

/// The JSON text an operation carries: a body or a patch.
pub fn operation_text_bytes(operation: &Operation) -> usize {
    match operation {
        Operation::Create { body } | Operation::Replace { body, .. } => request_body::compact_size(body),
        Operation::Patch { patch, .. } => request_body::compact_size(patch),
        Operation::Get { .. } | Operation::List { .. } | Operation::Delete { .. } => 0,
    }
}

/// Bound of one log entry carrying `operation`.
pub fn entry_bytes(operation: &Operation) -> usize {
    operation_text_bytes(operation) + ENTRY_OVERHEAD_BYTES_MAX
}

/// Bound of one note whose body is `body_bytes` of compact JSON.
pub fn note_bytes(body_bytes: usize) -> usize {
    body_bytes + NOTE_OVERHEAD_BYTES_MAX
}

/// Bound of one reply.
pub fn reply_bytes(reply: &Reply) -> usize {
    REPLY_OVERHEAD_BYTES_MAX
        + match reply {
            Reply::Note { note } => note_bytes(request_body::compact_size(&*note.body)),
            Reply::Page { page } => {
                page.notes.iter().map(|note| note_bytes(request_body::compact_size(&*note.body))).sum()
            }
            Reply::Deleted { .. } => 0,
            Reply::Refused { .. } => 0,
        }
}
