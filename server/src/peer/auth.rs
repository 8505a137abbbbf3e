//! Authenticated framing around core's wire frames.
//!
//! ```text
//! [u32 length of what follows][u64 cluster id][32-byte HMAC-SHA256][core frame]
//! ```
//!
//! The HMAC, keyed with the cluster's shared secret, covers the cluster id and the
//! core frame, so a frame from another cluster, or from anyone without the secret,
//! is dropped before its payload is even decoded. All integers are big-endian.

use hmac::{Hmac, Mac};
use noted_core::wire::{self, Envelope, FRAME_PAYLOAD_BYTES_MAX};
use noted_core::{ClusterId, ReplicaId};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const LENGTH_PREFIX_BYTES: usize = 4;
const CLUSTER_BYTES: usize = 8;
const MAC_BYTES: usize = 32;
const HEADER_BYTES: usize = CLUSTER_BYTES + MAC_BYTES;

/// Largest body (everything after the length prefix) a peer may send.
pub const FRAME_BODY_BYTES_MAX: usize = HEADER_BYTES + 4 + FRAME_PAYLOAD_BYTES_MAX;

/// Why a received frame was dropped; each is a label of the `dropped` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    TooShort,
    WrongCluster,
    BadMac,
    Malformed,
    WrongReceiver,
    WrongSender,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::TooShort => "too_short",
            Rejection::WrongCluster => "wrong_cluster",
            Rejection::BadMac => "bad_mac",
            Rejection::Malformed => "malformed",
            Rejection::WrongReceiver => "wrong_receiver",
            Rejection::WrongSender => "wrong_sender",
        }
    }
}

/// Seals and opens frames for one cluster and one receiving replica.
#[derive(Clone)]
pub struct FrameAuth {
    cluster: ClusterId,
    key: HmacSha256,
}

impl std::fmt::Debug for FrameAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("FrameAuth").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl FrameAuth {
    pub fn new(cluster: ClusterId, secret: &[u8]) -> FrameAuth {
        let key = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        FrameAuth { cluster, key }
    }

    fn mac(&self, cluster: [u8; CLUSTER_BYTES], inner: &[u8]) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(&cluster);
        mac.update(inner);
        mac
    }

    /// Encodes `envelope` as one authenticated frame, length prefix included.
    pub fn seal(&self, envelope: &Envelope) -> Vec<u8> {
        self.seal_bytes(&wire::encode(envelope))
    }

    /// Authenticates arbitrary inner bytes (a core frame): also used for heartbeats.
    pub fn seal_bytes(&self, inner: &[u8]) -> Vec<u8> {
        let cluster = self.cluster.0.to_be_bytes();
        let tag = self.mac(cluster, inner).finalize().into_bytes();
        let body_length = u32::try_from(HEADER_BYTES + inner.len()).expect("frames stay under 4 GiB");
        let mut frame = Vec::with_capacity(LENGTH_PREFIX_BYTES + HEADER_BYTES + inner.len());
        frame.extend_from_slice(&body_length.to_be_bytes());
        frame.extend_from_slice(&cluster);
        frame.extend_from_slice(&tag);
        frame.extend_from_slice(inner);
        frame
    }

    /// Checks a frame body (without its length prefix) and returns the inner bytes.
    pub fn open_bytes<'a>(&self, body: &'a [u8]) -> Result<&'a [u8], Rejection> {
        let (Some(cluster), Some(tag)) = (body.first_chunk::<CLUSTER_BYTES>(), body.get(CLUSTER_BYTES..HEADER_BYTES))
        else {
            return Err(Rejection::TooShort);
        };
        if u64::from_be_bytes(*cluster) != self.cluster.0 {
            return Err(Rejection::WrongCluster);
        }
        let inner = &body[HEADER_BYTES..];
        self.mac(*cluster, inner).verify_slice(tag).map_err(|_| Rejection::BadMac)?;
        Ok(inner)
    }

    /// Checks a frame body addressed to `receiver` and decodes its envelope.
    pub fn open(&self, body: &[u8], receiver: ReplicaId) -> Result<Envelope, Rejection> {
        let inner = self.open_bytes(body)?;
        let (envelope, used) = wire::decode(inner).map_err(|_| Rejection::Malformed)?;
        if used != inner.len() {
            return Err(Rejection::Malformed);
        }
        envelope.check(self.cluster, receiver).map_err(|error| match error {
            wire::WireError::WrongCluster { .. } => Rejection::WrongCluster,
            _ => Rejection::WrongReceiver,
        })?;
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use noted_core::Message;
    use noted_core::protocol::remote_write;

    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            cluster: ClusterId(3),
            from: ReplicaId(1),
            to: ReplicaId(0),
            message: Message::RemoteWrite(remote_write::Message::UpdateAck { applied: 2, behind: false }),
        }
    }

    fn body(frame: &[u8]) -> &[u8] {
        &frame[LENGTH_PREFIX_BYTES..]
    }

    #[test]
    fn a_sealed_frame_opens_to_its_envelope() {
        let auth = FrameAuth::new(ClusterId(3), b"secret secret secret");
        let frame = auth.seal(&envelope());
        assert_eq!(auth.open(body(&frame), ReplicaId(0)), Ok(envelope()));
        assert_eq!(auth.open(body(&frame), ReplicaId(2)), Err(Rejection::WrongReceiver));
    }

    #[test]
    fn another_secret_or_cluster_or_a_changed_byte_is_refused() {
        let auth = FrameAuth::new(ClusterId(3), b"secret secret secret");
        let frame = auth.seal(&envelope());
        let stranger = FrameAuth::new(ClusterId(3), b"another secret entirely");
        assert_eq!(stranger.open(body(&frame), ReplicaId(0)), Err(Rejection::BadMac));
        let other_cluster = FrameAuth::new(ClusterId(4), b"secret secret secret");
        assert_eq!(other_cluster.open(body(&frame), ReplicaId(0)), Err(Rejection::WrongCluster));
        let mut tampered = frame.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert_eq!(auth.open(body(&tampered), ReplicaId(0)), Err(Rejection::BadMac));
        assert_eq!(auth.open(&[1, 2, 3], ReplicaId(0)), Err(Rejection::TooShort));
    }

    #[test]
    fn authentic_bytes_that_are_no_single_frame_are_malformed() {
        let auth = FrameAuth::new(ClusterId(3), b"secret secret secret");
        let json = serde_json::to_vec(&envelope()).expect("encodes");
        let mut json_frame = u32::try_from(json.len()).expect("small").to_be_bytes().to_vec();
        json_frame.extend_from_slice(&json);
        let mut two_frames = wire::encode(&envelope());
        two_frames.extend_from_slice(&wire::encode(&envelope()));
        for inner in [vec![], vec![0, 0, 0, 3, 0xff, 0xff, 0xff], json_frame, two_frames] {
            let frame = auth.seal_bytes(&inner);
            assert_eq!(auth.open(body(&frame), ReplicaId(0)), Err(Rejection::Malformed), "{inner:?}");
        }
    }
}
