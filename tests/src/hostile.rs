//! Hostile clients and peers: each thing they send is refused or dropped, counted,
//! and the cluster keeps serving.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use noted_core::protocol::vr;
use noted_core::wire::{self, Envelope};
use noted_core::{ClusterId, Message, ReplicaId};
use reqwest::Method;
use serde_json::json;
use sha2::Sha256;

use crate::checks::metric;
use crate::cluster::Cluster;
use crate::wait_until;

/// `noted_core::request_body::DEPTH_MAX`: the deepest nesting a note may have.
const NOTE_DEPTH_MAX: usize = 32;
/// `noted_server::peer::guard::CONNECTIONS_PER_ADDRESS_MAX`.
const PEER_CONNECTIONS_PER_ADDRESS_MAX: usize = 16;
/// `noted_server::peer::warn_limit::WARNINGS_PER_WINDOW`: warnings a minute about bad peer input.
const PEER_WARNINGS_PER_WINDOW: usize = 5;
/// What noted warns about bad peer input with.
const BAD_PEER_INPUT_WARNINGS: [&str; 3] =
    ["dropped a peer frame", "too many rejected peer frames", "peer frame over the size limit"];
/// A frame length over the peer frame limit (16 MiB of payload).
const FRAME_LENGTH_OVER_THE_LIMIT: u32 = 64 * 1024 * 1024;
/// Far beyond the rejected frames an address may send before it counts as a flood.
const FLOOD_FRAMES: usize = 500;
/// How long the server may take to notice what a test did: generous, not a speed claim.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(20);

/// A request that must be refused: method, path, body, headers, expected status and error code.
type HostileRequest = (Method, String, Option<(&'static str, Vec<u8>)>, Vec<(&'static str, String)>, u16, &'static str);

/// Nesting, numbers and ids no note can hold, bytes that are not UTF-8, bodies over
/// the note limit: each a 4xx with a JSON error, and the cluster keeps serving.
pub fn hostile_http_input_is_refused(cluster: &Cluster) {
    let json_body = |bytes: Vec<u8>| Some(("application/json", bytes));
    let too_big_a_number = "99999999999999999999999".to_string();
    let cases: Vec<HostileRequest> = vec![
        (Method::POST, "/notes".into(), json_body("[".repeat(100_000).into_bytes()), vec![], 400, "too_deep"),
        (Method::POST, "/notes".into(), json_body(b"{\"a\":1e999999}".to_vec()), vec![], 400, "number_out_of_range"),
        (
            Method::POST,
            "/notes".into(),
            json_body(format!("{{\"a\":{}}}", "7".repeat(100)).into_bytes()),
            vec![],
            400,
            "number_out_of_range",
        ),
        (Method::POST, "/notes".into(), json_body(b"{\"a\":\"\xff\xfe\"}".to_vec()), vec![], 400, "invalid_utf8"),
        (
            Method::POST,
            "/notes".into(),
            json_body(json!({ "a": "x".repeat(100 * 1024) }).to_string().into_bytes()),
            vec![],
            413,
            "payload_too_large",
        ),
        (Method::GET, format!("/notes/{too_big_a_number}"), None, vec![], 400, "invalid_id"),
        (Method::DELETE, format!("/notes/{too_big_a_number}"), None, vec![], 400, "invalid_id"),
        (
            Method::PUT,
            "/notes/1".into(),
            json_body(b"{}".to_vec()),
            vec![("if-match", format!("\"{too_big_a_number}\""))],
            400,
            "invalid_header",
        ),
        (
            Method::POST,
            "/notes".into(),
            json_body(b"{}".to_vec()),
            vec![("noted-client-id", too_big_a_number.clone()), ("noted-request-number", "1".into())],
            400,
            "invalid_header",
        ),
        (Method::GET, format!("/notes?after={too_big_a_number}"), None, vec![], 400, "invalid_query"),
        (Method::GET, "/notes?limit=99999999999".into(), None, vec![], 400, "invalid_query"),
    ];
    let client = cluster.client(0);
    for (method, path, body, headers, status, code) in cases {
        let response = client.send(method.clone(), &path, body, &headers).unwrap();
        let shown = format!("{method} {}: {}", &path[..path.len().min(40)], response.text);
        assert_eq!(response.status, status, "{shown}");
        assert_eq!(response.error_code(), Some(code), "{shown}");
        assert!(response.body["error"]["message"].as_str().is_some_and(|message| !message.is_empty()), "{shown}");
    }

    // The deepest note allowed travels to every replica and back.
    let mut nested = json!("bottom");
    for _ in 1..NOTE_DEPTH_MAX {
        nested = json!([nested]);
    }
    let created = client.json(Method::POST, "/notes", &json!({ "nested": nested })).unwrap();
    assert_eq!(created.status, 201, "a note at the nesting limit is accepted: {}", created.text);
    let path = format!("/notes/{}", created.body["id"]);
    for replica in 0..cluster.replica_count() {
        let read = cluster.client(replica).get_path(&path).unwrap();
        assert_eq!(read.status, 200, "read through {replica}: {}", read.text);
        assert_eq!(read.body["nested"], nested);
    }
}

/// A client that sends a request line a byte at a time, and one that sends nothing,
/// are disconnected once `header_read_timeout` has passed; the cluster keeps serving.
pub fn slow_clients_are_cut_off(cluster: &Cluster, header_read_timeout: Duration) {
    let bound = header_read_timeout * 4 + NOTICE_TIMEOUT;
    let dribbled = b"GET /notes HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut dribbling = TcpStream::connect(cluster.addresses[0].client).expect("connect to the client port");
    dribbling.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    for byte in dribbled.iter().chain(std::iter::repeat(&b'x')) {
        assert!(started.elapsed() < bound, "a dribbling client still connected after {bound:?}");
        if dribbling.write_all(&[*byte]).is_err() || closed_by_server(&mut dribbling) {
            break;
        }
    }

    let mut silent = TcpStream::connect(cluster.addresses[0].client).expect("connect to the client port");
    silent.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    while !closed_by_server(&mut silent) {
        assert!(started.elapsed() < bound, "a silent client still connected after {bound:?}");
    }

    let created = cluster.client(0).json(Method::POST, "/notes", &json!({ "after": "slow clients" })).unwrap();
    assert_eq!(created.status, 201, "the cluster still serves: {}", created.text);
}

/// Whether the peer has closed `stream` (any response it sent first is read and ignored);
/// waits at most the stream's read timeout for news.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted),
    }
}

/// Frames a replica would not send, each dropped and counted under its own reason:
/// a wrong HMAC, another cluster's id, authentic bytes that are no frame (JSON, as
/// frames once carried, and garbage), a length over the frame limit, more
/// connections from one address than it may hold, and a flood of forged frames.
/// The cluster keeps serving.
pub fn hostile_peer_frames_are_dropped(cluster: &Cluster) {
    let target = 1;
    let peer_port = cluster.addresses[target].peer;
    let dropped = |reason: &str| {
        metric(
            cluster,
            target,
            &format!("noted_peer_messages_dropped_total{{stage=\"transport\",reason=\"{reason}\"}}"),
        )
    };
    let commit = vr::Message::Commit { view: 99, commit_number: 1000 };
    let inner = core_frame(cluster, 0, target, commit.clone());
    let bad_mac = seal(cluster.cluster_id, b"not the cluster's secret", &inner);
    let wrong_cluster = seal(cluster.cluster_id + 1, cluster.secret.as_bytes(), &inner);
    // Authentic, but not a frame noted writes: the same envelope as JSON, and bytes
    // that are no encoding at all.
    let as_json = length_prefixed(serde_json::to_vec(&envelope(cluster, 0, target, commit)).unwrap());
    let garbage = length_prefixed(vec![0xff; 32]);
    let malformed = [&as_json, &garbage].map(|inner| seal(cluster.cluster_id, cluster.secret.as_bytes(), inner));
    let malformed_before = dropped("malformed");
    // Past the handshake, as a replica that lost its key (or a buggy one) would be.
    let mut forger = peer_connection(cluster, 0, target);
    for frame in [&bad_mac, &wrong_cluster, &bad_mac, &malformed[0], &malformed[1]] {
        forger.write_all(frame).unwrap();
    }
    forger.flush().unwrap();
    wait_until("forged frames to be counted", NOTICE_TIMEOUT, || {
        dropped("bad_mac") >= 2 && dropped("wrong_cluster") >= 1 && dropped("malformed") >= malformed_before + 2
    });

    let mut oversized = TcpStream::connect(peer_port).expect("connect to a peer port");
    oversized.write_all(&FRAME_LENGTH_OVER_THE_LIMIT.to_be_bytes()).unwrap();
    oversized.set_read_timeout(Some(NOTICE_TIMEOUT)).unwrap();
    assert!(closed_by_server(&mut oversized), "a frame over the limit closes its connection");
    assert!(dropped("too_large") >= 1);

    let held: Vec<TcpStream> = (0..PEER_CONNECTIONS_PER_ADDRESS_MAX + 4)
        .map(|_| TcpStream::connect(peer_port).expect("the listener accepts, then closes"))
        .collect();
    wait_until("connections over the limit to be counted", NOTICE_TIMEOUT, || dropped("too_many_connections") >= 4);
    drop(held);

    let bad_mac_before = dropped("bad_mac");
    let mut flooder = TcpStream::connect(peer_port).expect("connect to a peer port");
    flooder.set_read_timeout(Some(NOTICE_TIMEOUT)).unwrap();
    // The server closes the connection part way through: later writes may fail.
    let _ = (0..FLOOD_FRAMES).try_for_each(|_| flooder.write_all(&bad_mac));
    assert!(closed_by_server(&mut flooder), "a flooding connection is closed");
    wait_until("the flood to be counted", NOTICE_TIMEOUT, || dropped("flood") >= 1);
    let checked = dropped("bad_mac") - bad_mac_before;
    assert!(checked < FLOOD_FRAMES as u64 / 2, "the flood was cut short, after {checked} frames");

    // Hundreds of bad frames and connections, a handful of warnings (`peer/warn_limit.rs`).
    let warnings = cluster
        .log_of(target)
        .lines()
        .filter(|line| line.contains("WARN") && BAD_PEER_INPUT_WARNINGS.iter().any(|warning| line.contains(warning)))
        .count();
    assert!(warnings <= PEER_WARNINGS_PER_WINDOW, "{warnings} warnings about bad peer input: they are rate-limited");

    still_serves_writes(cluster, target, "hostile peers");
}

/// vr: a message of a view the cluster has left, authenticated as a replica sent
/// it, is dropped and counted as `stale_epoch`; the cluster keeps serving. The test
/// moves the cluster to the next view with an authenticated StartViewChange, as a
/// replica that suspected the primary would.
pub fn replayed_old_view_messages_are_dropped(cluster: &Cluster) {
    let target = 1;
    let view_of = |replica: usize| cluster.status(replica).and_then(|status| status["view"].as_u64());
    let old_view = view_of(target).expect("a vr replica reports its view");
    let send = |from: usize, message: vr::Message| {
        let inner = core_frame(cluster, from, target, message);
        let mut stream = peer_connection(cluster, from, target);
        stream.write_all(&seal(cluster.cluster_id, cluster.secret.as_bytes(), &inner)).unwrap();
    };
    let other = if target == 0 { 1 } else { 0 };
    send(other, vr::Message::StartViewChange { view: old_view + 1 });
    wait_until("the cluster to move to a later view", NOTICE_TIMEOUT, || {
        (0..cluster.replica_count()).all(|replica| view_of(replica).is_some_and(|view| view > old_view))
    });
    cluster.wait_until_serving();

    let stale = || metric(cluster, target, "noted_peer_messages_dropped_total{stage=\"core\",reason=\"stale_epoch\"}");
    let before = stale();
    let replays = 3;
    for _ in 0..replays {
        send(other, vr::Message::Commit { view: old_view, commit_number: 0 });
    }
    wait_until("replayed messages to be counted", NOTICE_TIMEOUT, || stale() >= before + replays);
    still_serves_writes(cluster, target, "a replayed old view");
}

/// Writes through `via` succeed again (allowing for a replica that is catching up).
fn still_serves_writes(cluster: &Cluster, via: usize, after: &str) {
    wait_until("the cluster to serve writes", NOTICE_TIMEOUT, || {
        let created = cluster.client(via).json(Method::POST, "/notes", &json!({ "after": after }));
        created.is_ok_and(|response| response.status == 201)
    });
}

/// A connection to `to`'s peer port that has passed the handshake as replica `from`.
pub fn peer_connection(cluster: &Cluster, from: usize, to: usize) -> TcpStream {
    let mut stream = TcpStream::connect(cluster.addresses[to].peer).expect("connect to a peer port");
    let versions = noted_core::wire::WIRE_VERSIONS;
    let mut hello = b"NTDHELLO".to_vec();
    hello.extend_from_slice(&[u8::try_from(from).unwrap(), u8::try_from(to).unwrap()]);
    hello.extend_from_slice(&versions.oldest().to_be_bytes());
    hello.extend_from_slice(&versions.newest().to_be_bytes());
    stream.write_all(&seal(cluster.cluster_id, cluster.secret.as_bytes(), &hello)).unwrap();
    // [length][cluster][MAC]"NTDAGREE"[version]
    let mut answer = [0u8; 4 + 8 + 32 + 8 + 2];
    stream.set_read_timeout(Some(NOTICE_TIMEOUT)).unwrap();
    stream.read_exact(&mut answer).expect("the replica answers the handshake");
    assert_eq!(&answer[44..52], b"NTDAGREE", "the replica agrees on a version");
    stream
}

/// A core frame from replica `from` to `to` of `cluster`, encoded as replicas encode it.
fn core_frame(cluster: &Cluster, from: usize, to: usize, message: vr::Message) -> Vec<u8> {
    wire::encode(&envelope(cluster, from, to, message))
}

fn envelope(cluster: &Cluster, from: usize, to: usize, message: vr::Message) -> Envelope {
    let replica = |index: usize| ReplicaId(u8::try_from(index).expect("a replica index fits in u8"));
    Envelope {
        cluster: ClusterId(cluster.cluster_id),
        from: replica(from),
        to: replica(to),
        message: Message::Vr(message),
    }
}

/// `payload` behind its length, as a core frame carries it.
fn length_prefixed(payload: Vec<u8>) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// An authenticated frame as noted's transport writes it (see `noted_server::peer::auth`).
fn seal(cluster: u64, secret: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(&cluster.to_be_bytes());
    mac.update(inner);
    let tag = mac.finalize().into_bytes();
    let length = u32::try_from(8 + tag.len() + inner.len()).unwrap();
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(&cluster.to_be_bytes());
    frame.extend_from_slice(&tag);
    frame.extend_from_slice(inner);
    frame
}
