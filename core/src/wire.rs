//! Frames between replicas: pure functions from an envelope to bytes and back.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, the
//! [postcard] encoding of an [`Envelope`]: fields in declaration order, integers as
//! varints, enum variants by index. JSON values inside messages (note bodies,
//! patches) travel as their compact JSON text (see [`json_text`]), and operations,
//! replies and refusals take a compact form there (`wire/compact.rs`); everything shown
//! as JSON elsewhere keeps its JSON shape. Decoding never panics: a short,
//! oversized or malformed frame is a [`WireError`].
//!
//! Postcard replaced JSON as the payload because it is faster and smaller on every
//! message replicas exchange: `nice cargo bench -p noted-core` times encode plus
//! decode of one frame (`wire` lines; vr envelopes, bodies of two short strings,
//! `Chunk 1k` a snapshot chunk of 1,000 notes and 64 client records). On a shared
//! 2-core machine it printed:
//!
//! ```text
//! wire PrepareOk    json:     102 bytes,      0.47 µs   postcard:      17 bytes,      0.10 µs
//! wire Commit       json:     103 bytes,      0.47 µs   postcard:      17 bytes,      0.09 µs
//! wire ConfirmView  json:      99 bytes,      0.46 µs   postcard:      17 bytes,      0.09 µs
//! wire Prepare x1   json:     355 bytes,      1.60 µs   postcard:     126 bytes,      0.48 µs
//! wire Prepare x64  json:   15664 bytes,     64.64 µs   postcard:    7056 bytes,     26.84 µs
//! wire Chunk 1k     json:  173217 bytes,    645.94 µs   postcard:  108323 bytes,    422.54 µs
//! ```
//!
//! Acknowledgements and commits are 5x faster and 6x smaller; frames carrying
//! bodies gain less (2x to 3x for prepares), as each body is still JSON text inside.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ClusterId, ReplicaId};
use crate::message::Message;

mod compact;
pub mod json_text;
pub mod size;
mod version;

pub use version::VersionRange;

/// The versions of the peer wire protocol this build speaks (see [`VersionRange`]).
/// Version 1: the frames described above, postcard envelopes behind a length.
pub const WIRE_VERSIONS: VersionRange = match VersionRange::new(1, 1) {
    Some(range) => range,
    None => panic!("a version range is never empty"),
};

/// Largest payload a frame may carry. No message comes near it: each is bounded
/// by the limits in [`crate::config::Limits`] (see [`size`]).
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

const LENGTH_PREFIX_BYTES: usize = 4;

/// A message with the addressing every receiver checks before it believes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub cluster: ClusterId,
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub message: Message,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// More bytes are needed; not an error of the peer's, just a partial read.
    #[error("incomplete frame: {needed} more bytes needed")]
    Incomplete { needed: usize },
    #[error("frame payload of {length} bytes exceeds the limit of {FRAME_PAYLOAD_BYTES_MAX} bytes")]
    TooLarge { length: usize },
    #[error("malformed frame payload: {reason}")]
    Malformed { reason: String },
    #[error("frame of cluster {found}, expected cluster {expected}")]
    WrongCluster { expected: ClusterId, found: ClusterId },
    #[error("frame addressed to {found}, this is {expected}")]
    WrongReceiver { expected: ReplicaId, found: ReplicaId },
}

/// Room reserved up front for a frame: most messages (acknowledgements, commits,
/// prepares of a few small notes) fit, so the buffer rarely grows while encoding.
const FRAME_BYTES_TYPICAL: usize = 512;

/// Encodes `envelope` as one frame. The payload is written in place after room
/// for the length prefix, which is filled in last: no second copy.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_BYTES_TYPICAL);
    frame.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    let mut frame = postcard::to_extend(envelope, frame).expect("messages are plain data and always encode");
    let payload_length = frame.len() - LENGTH_PREFIX_BYTES;
    assert!(payload_length <= FRAME_PAYLOAD_BYTES_MAX, "a replica never builds a message over the frame limit");
    let length = u32::try_from(payload_length).expect("the frame limit fits in u32");
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    frame
}

/// The bytes `envelope` takes as a frame's payload, computed without building it.
pub fn encoded_len(envelope: &Envelope) -> usize {
    payload_len(envelope.cluster, envelope.from, envelope.to, &envelope.message)
}

/// The bytes an envelope of `message` takes as a frame's payload: the fields of
/// [`Envelope`], in order, encode as the same tuple would.
pub fn payload_len(cluster: ClusterId, from: ReplicaId, to: ReplicaId, message: &Message) -> usize {
    postcard::experimental::serialized_size(&(cluster, from, to, message))
        .expect("messages are plain data and always encode")
}

/// Decodes the first frame in `bytes`, returning it and the number of bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Envelope, usize), WireError> {
    let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(WireError::Incomplete { needed: LENGTH_PREFIX_BYTES - bytes.len() });
    };
    let length = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
    if length > FRAME_PAYLOAD_BYTES_MAX {
        return Err(WireError::TooLarge { length });
    }
    let frame_length = LENGTH_PREFIX_BYTES + length;
    let Some(payload) = bytes.get(LENGTH_PREFIX_BYTES..frame_length) else {
        return Err(WireError::Incomplete { needed: frame_length - bytes.len() });
    };
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    let decoded = Envelope::deserialize(&mut deserializer);
    let unread = deserializer.finalize().map_or(0, |unread| unread.len());
    match decoded {
        Ok(envelope) if unread == 0 => Ok((envelope, frame_length)),
        Ok(_) => {
            Err(WireError::Malformed { reason: format!("{unread} of the {length} payload bytes follow the envelope") })
        }
        Err(error) => Err(WireError::Malformed {
            reason: format!("{}, after byte {} of {length}", describe(error), length - unread),
        }),
    }
}

fn describe(error: postcard::Error) -> String {
    match error {
        // Postcard drops the message of an error raised by a type itself.
        postcard::Error::SerdeDeCustom => {
            "a value its type refuses (an unknown variant, JSON text that does not parse)".into()
        }
        other => other.to_string(),
    }
}

impl Envelope {
    /// Checks that this envelope belongs to `cluster` and is addressed to `receiver`.
    pub fn check(&self, cluster: ClusterId, receiver: ReplicaId) -> Result<(), WireError> {
        if self.cluster != cluster {
            return Err(WireError::WrongCluster { expected: cluster, found: self.cluster });
        }
        if self.to != receiver {
            return Err(WireError::WrongReceiver { expected: receiver, found: self.to });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
