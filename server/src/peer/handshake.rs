//! The first exchange on every peer connection: which wire protocol versions
//! each side speaks, and which one the connection uses.
//!
//! ```text
//! dialer   -> acceptor   hello:   "NTDHELLO" [u8 from][u8 to][u16 oldest][u16 newest]
//! acceptor -> dialer     agree:   "NTDAGREE" [u16 version]
//!                     or refuse:  "NTDREFUS" [u16 oldest][u16 newest]
//! ```
//!
//! Each message is the inner bytes of one authenticated frame (see [`super::auth`]),
//! so only a replica of the cluster can offer or answer. The connection uses the
//! highest version both ranges hold; with none, the acceptor answers with its own
//! range and closes, and each side logs the refusal once per peer (see
//! [`VersionRefusals`]), not once per reconnect attempt. Integers are big-endian.

use std::sync::Mutex;
use std::time::Duration;

use noted_core::ReplicaId;
use noted_core::wire::VersionRange;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{FRAME_BODY_BYTES_MAX, FrameAuth, LENGTH_PREFIX_BYTES, Rejection};

/// How long either side waits for the other's handshake message.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const HELLO: &[u8; 8] = b"NTDHELLO";
const AGREE: &[u8; 8] = b"NTDAGREE";
const REFUSE: &[u8; 8] = b"NTDREFUS";
/// Handshake frames are tiny; a longer one is no handshake.
const HANDSHAKE_BODY_BYTES_MAX: usize = 256;

/// What a dialer offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub versions: VersionRange,
}

/// What an acceptor answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Agree { version: u16 },
    Refuse { versions: VersionRange },
}

impl Hello {
    pub fn encode(self) -> Vec<u8> {
        let mut bytes = HELLO.to_vec();
        bytes.extend_from_slice(&[self.from.0, self.to.0]);
        bytes.extend_from_slice(&self.versions.oldest().to_be_bytes());
        bytes.extend_from_slice(&self.versions.newest().to_be_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Hello> {
        let rest = bytes.strip_prefix(HELLO)?;
        let [from, to, a, b, c, d] = *<&[u8; 6]>::try_from(rest).ok()?;
        let versions = VersionRange::new(u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))?;
        Some(Hello { from: ReplicaId(from), to: ReplicaId(to), versions })
    }
}

impl Answer {
    pub fn encode(self) -> Vec<u8> {
        match self {
            Answer::Agree { version } => [AGREE.as_slice(), &version.to_be_bytes()].concat(),
            Answer::Refuse { versions } => {
                [REFUSE.as_slice(), &versions.oldest().to_be_bytes(), &versions.newest().to_be_bytes()].concat()
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Answer> {
        if let Some(rest) = bytes.strip_prefix(AGREE) {
            let version = u16::from_be_bytes(*<&[u8; 2]>::try_from(rest).ok()?);
            return (version > 0).then_some(Answer::Agree { version });
        }
        let [a, b, c, d] = *<&[u8; 4]>::try_from(bytes.strip_prefix(REFUSE)?).ok()?;
        let versions = VersionRange::new(u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))?;
        Some(Answer::Refuse { versions })
    }
}

/// The acceptor's decision on a hello: agree on the highest common version, or refuse.
pub fn decide(ours: VersionRange, theirs: VersionRange) -> Answer {
    match ours.highest_common(theirs) {
        Some(version) => Answer::Agree { version },
        None => Answer::Refuse { versions: ours },
    }
}

/// Why a handshake did not give a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The connection failed or ended, or the other side took too long.
    Io,
    /// The frame failed authentication or was no handshake message.
    Rejected(Rejection),
    /// The other side speaks none of our versions.
    NoCommonVersion { theirs: VersionRange },
}

/// Dialer: offers `hello` on `stream` and reads the answer; the agreed version.
pub async fn offer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    auth: &FrameAuth,
    hello: Hello,
) -> Result<u16, HandshakeError> {
    let exchange = async {
        stream.write_all(&auth.seal_bytes(&hello.encode())).await.map_err(|_| HandshakeError::Io)?;
        let body = read_frame_body(stream).await?;
        let inner = auth.open_bytes(&body).map_err(HandshakeError::Rejected)?;
        match Answer::decode(inner) {
            Some(Answer::Agree { version }) if hello.versions.contains(version) => Ok(version),
            Some(Answer::Refuse { versions }) => Err(HandshakeError::NoCommonVersion { theirs: versions }),
            Some(Answer::Agree { .. }) | None => Err(HandshakeError::Rejected(Rejection::Malformed)),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await.unwrap_or(Err(HandshakeError::Io))
}

/// Reads one frame body of handshake size; anything longer is refused unread.
async fn read_frame_body<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HandshakeError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    stream.read_exact(&mut prefix).await.map_err(|_| HandshakeError::Io)?;
    let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if length > HANDSHAKE_BODY_BYTES_MAX.min(FRAME_BODY_BYTES_MAX) {
        return Err(HandshakeError::Rejected(Rejection::Malformed));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.map_err(|_| HandshakeError::Io)?;
    Ok(body)
}

/// The last version range each peer was refused for, so that a refusal is logged
/// once per peer and side, on whichever connection meets it first, and again only
/// when the peer's range changes or after it was agreed with in between.
#[derive(Debug)]
pub struct VersionRefusals {
    logged: Mutex<Vec<Option<VersionRange>>>,
}

impl VersionRefusals {
    pub fn new(replica_count: usize) -> VersionRefusals {
        VersionRefusals { logged: Mutex::new(vec![None; replica_count]) }
    }

    /// Records a refusal; `true` when it is news and should be logged.
    pub fn refused(&self, peer: ReplicaId, theirs: VersionRange) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        logged.get_mut(peer.index()).is_some_and(|last| last.replace(theirs) != Some(theirs))
    }

    /// Records an agreement: a later refusal is news again.
    pub fn agreed(&self, peer: ReplicaId) {
        let mut logged = self.logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(last) = logged.get_mut(peer.index()) {
            *last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use noted_core::wire::{self, Envelope, WIRE_VERSIONS};
    use noted_core::{ClusterId, Message};

    use super::*;

    fn range(oldest: u16, newest: u16) -> VersionRange {
        VersionRange::new(oldest, newest).unwrap()
    }

    #[test]
    fn messages_round_trip_and_garbage_is_none() {
        let hello = Hello { from: ReplicaId(2), to: ReplicaId(0), versions: range(1, 3) };
        assert_eq!(Hello::decode(&hello.encode()), Some(hello));
        for answer in [Answer::Agree { version: 2 }, Answer::Refuse { versions: range(4, 6) }] {
            assert_eq!(Answer::decode(&answer.encode()), Some(answer));
        }
        assert_eq!(Hello::decode(b"NTDHELLO\x00\x01\x00\x03\x00\x01"), None, "an empty range");
        assert_eq!(Hello::decode(&hello.encode()[..13]), None);
        assert_eq!(Answer::decode(b"NTDAGREE\x00\x00"), None, "version 0 is never spoken");
        assert_eq!(Answer::decode(b"garbage"), None);
    }

    #[test]
    fn the_acceptor_agrees_on_the_highest_common_version_or_refuses() {
        assert_eq!(decide(range(1, 3), range(2, 5)), Answer::Agree { version: 3 });
        assert_eq!(decide(range(1, 1), range(2, 2)), Answer::Refuse { versions: range(1, 1) });
    }

    #[tokio::test]
    async fn a_dialer_learns_the_agreed_version_or_the_refusal() {
        let auth = FrameAuth::new(ClusterId(5), b"a secret of the cluster");
        for (acceptor, dialer, expected) in [
            (range(1, 3), range(2, 5), Ok(3)),
            (range(2, 2), range(1, 1), Err(HandshakeError::NoCommonVersion { theirs: range(2, 2) })),
        ] {
            let (mut near, mut far) = tokio::io::duplex(1024);
            let answering = {
                let auth = auth.clone();
                tokio::spawn(async move {
                    let body = read_frame_body(&mut far).await.unwrap();
                    let hello = Hello::decode(auth.open_bytes(&body).unwrap()).unwrap();
                    far.write_all(&auth.seal_bytes(&decide(acceptor, hello.versions).encode())).await.unwrap();
                })
            };
            let hello = Hello { from: ReplicaId(1), to: ReplicaId(0), versions: dialer };
            assert_eq!(offer(&mut near, &auth, hello).await, expected);
            answering.await.unwrap();
        }
    }

    #[test]
    fn a_refusal_is_news_once_per_peer_and_range() {
        let refusals = VersionRefusals::new(3);
        assert!(refusals.refused(ReplicaId(2), range(2, 2)));
        assert!(!refusals.refused(ReplicaId(2), range(2, 2)));
        assert!(refusals.refused(ReplicaId(1), range(2, 2)), "per peer");
        assert!(refusals.refused(ReplicaId(2), range(3, 3)), "a new range is news");
        refusals.agreed(ReplicaId(2));
        assert!(refusals.refused(ReplicaId(2), range(3, 3)), "news again after an agreement");
        assert!(!refusals.refused(ReplicaId(9), range(3, 3)), "no such peer");
    }

    /// Version 1 as it was first released, checked in under `server/tests/fixtures/wire-v1/`
    /// (cluster 7, secret `fixture secret of cluster 7`, replica 1 to replica 0): a
    /// later release must still read and write these bytes while it speaks version 1.
    #[test]
    fn version_1_fixtures_are_still_spoken() {
        let auth = FrameAuth::new(ClusterId(7), b"fixture secret of cluster 7");
        assert!(WIRE_VERSIONS.contains(1), "this release speaks version 1");
        let hello = Hello { from: ReplicaId(1), to: ReplicaId(0), versions: range(1, 1) };
        let agree = Answer::Agree { version: 1 };
        let envelope = Envelope {
            cluster: ClusterId(7),
            from: ReplicaId(1),
            to: ReplicaId(0),
            message: Message::Vr(noted_core::protocol::vr::Message::Commit { view: 3, commit_number: 42 }),
        };
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire-v1");
        let written_today = [auth.seal_bytes(&hello.encode()), auth.seal_bytes(&agree.encode()), auth.seal(&envelope)];
        let names = ["hello.bin", "agree.bin", "commit-frame.bin"];
        // NOTED_WRITE_FIXTURES=1 writes them, once, when a version is released.
        if std::env::var("NOTED_WRITE_FIXTURES").is_ok_and(|value| value == "1") {
            for (name, bytes) in names.iter().zip(&written_today) {
                std::fs::write(directory.join(name), bytes).unwrap();
            }
        }
        let fixtures: Vec<Vec<u8>> = names
            .iter()
            .map(|name| std::fs::read(directory.join(name)).unwrap_or_else(|error| panic!("fixture {name}: {error}")))
            .collect();
        for ((name, fixture), today) in names.iter().zip(&fixtures).zip(&written_today) {
            assert_eq!(fixture, today, "{name}: this release writes version 1 as it was released");
        }
        let body = |fixture: &[u8]| fixture[LENGTH_PREFIX_BYTES..].to_vec();
        assert_eq!(Hello::decode(auth.open_bytes(&body(&fixtures[0])).unwrap()), Some(hello));
        assert_eq!(Answer::decode(auth.open_bytes(&body(&fixtures[1])).unwrap()), Some(agree));
        assert_eq!(auth.open(&body(&fixtures[2]), ReplicaId(0)), Ok(envelope.clone()));
        assert_eq!(wire::decode(&wire::encode(&envelope)).map(|(decoded, _)| decoded), Ok(envelope));
    }
}
