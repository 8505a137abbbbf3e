//! Frames between replicas: pure functions from an envelope to bytes and back.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, the
//! [postcard] encoding of an [`Envelope`]: fields in declaration order, integers as
//! varints, enum variants by index. JSON values inside messages (note bodies,
//! patches) travel as their compact JSON text (see [`json_text`]), and operations,
//! replies and refusals take a compact form there ([`compact`]); everything shown
//! as JSON elsewhere keeps its JSON shape. Decoding never panics: a short,
//! oversized or malformed frame is a [`WireError`].
//!
//! Postcard replaced JSON as the payload because it is faster and smaller on every
//! message replicas exchange. `nice cargo bench -p noted-core` (the `wire` lines:
//! encode plus decode of one frame) printed:
//!
//! ```text
//! WIRE_FIGURES
//! ```

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ClusterId, ReplicaId};
use crate::message::Message;

mod compact;
pub mod json_text;

/// Largest payload a frame may carry. Snapshots are the largest messages.
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
    match postcard::take_from_bytes::<Envelope>(payload) {
        Ok((envelope, [])) => Ok((envelope, frame_length)),
        Ok((_, unread)) => Err(WireError::Malformed {
            reason: format!("{} bytes of the {length}-byte payload follow the envelope", unread.len()),
        }),
        Err(_) => Err(WireError::Malformed { reason: malformed_reason(payload) }),
    }
}

/// Where and why `payload` fails to decode, found by decoding it again while
/// tracking the field being read: errors are rare, so the fast path tracks nothing.
fn malformed_reason(payload: &[u8]) -> String {
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    let error = match serde_path_to_error::deserialize::<_, Envelope>(&mut deserializer) {
        Ok(_) => return "the payload decodes only when its fields are tracked".into(),
        Err(error) => error,
    };
    let offset = deserializer.finalize().map_or(payload.len(), |unread| payload.len() - unread.len());
    let field = error.path().to_string();
    let problem = match error.into_inner() {
        // Postcard drops the message of an error raised by a type (an unknown
        // variant, JSON text that does not parse, an inconsistent table or store).
        postcard::Error::SerdeDeCustom => "a value its type refuses".to_string(),
        other => other.to_string(),
    };
    format!("{problem}, at `{field}` (byte {offset} of {})", payload.len())
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
mod tests {
    use super::*;
    use crate::protocol::remote_write;

    fn envelope() -> Envelope {
        Envelope {
            cluster: ClusterId(9),
            from: ReplicaId(1),
            to: ReplicaId(0),
            message: Message::RemoteWrite(remote_write::Message::UpdateAck { applied: 3, behind: false }),
        }
    }

    #[test]
    fn a_frame_decodes_to_what_was_encoded() {
        let mut bytes = encode(&envelope());
        let frame_length = bytes.len();
        bytes.extend_from_slice(b"next frame");
        assert_eq!(decode(&bytes), Ok((envelope(), frame_length)));
    }

    #[test]
    fn partial_frames_ask_for_more_bytes() {
        let bytes = encode(&envelope());
        assert_eq!(decode(&bytes[..2]), Err(WireError::Incomplete { needed: 2 }));
        assert_eq!(decode(&bytes[..10]), Err(WireError::Incomplete { needed: bytes.len() - 10 }));
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(WireError::TooLarge { length: 0xffff_ffff }));
        let garbage = [0, 0, 0, 3, b'{', b'x', b'}'];
        assert!(matches!(decode(&garbage), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn the_envelope_names_cluster_and_receiver() {
        assert_eq!(envelope().check(ClusterId(9), ReplicaId(0)), Ok(()));
        assert_eq!(
            envelope().check(ClusterId(8), ReplicaId(0)),
            Err(WireError::WrongCluster { expected: ClusterId(8), found: ClusterId(9) })
        );
        assert_eq!(
            envelope().check(ClusterId(9), ReplicaId(2)),
            Err(WireError::WrongReceiver { expected: ReplicaId(2), found: ReplicaId(0) })
        );
    }
}
