use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::client_table::ClientTable;
use crate::hlc::Timestamp;
use crate::ids::{ClientId, NoteId};
use crate::operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
use crate::protocol::local_write::{self, Item};
use crate::protocol::remote_write;
use crate::protocol::vr::{self, Entry, ReplicaStatus, ResponderState};
use crate::snapshot::Image;
use crate::store::{NoteStore, StoreLimits};
use crate::time::Instant;

fn envelope() -> Envelope {
    Envelope {
        cluster: ClusterId(9),
        from: ReplicaId(1),
        to: ReplicaId(0),
        message: Message::RemoteWrite(remote_write::Message::UpdateAck { applied: 3, behind: false }),
    }
}

/// A frame around any payload, as a peer could send it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).expect("small").to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

fn malformed_reason(bytes: &[u8]) -> String {
    match decode(bytes) {
        Err(WireError::Malformed { reason }) => reason,
        other => panic!("expected a malformed frame, got {other:?}"),
    }
}

/// Nested objects, floats, integers at both ends of 64 bits, unicode and escapes.
fn body() -> Value {
    json!({
        "title": "Grüße, 日本語, 🎉 and \"quotes\\\" \n\t\u{0}",
        "nested": { "deeper": { "list": [1, -2, 3.25, null, true, { "k": "v" }, []] }, "empty": {} },
        "numbers": [u64::MAX, i64::MIN, 0.1, -0.0, 5e-324, 1.797_693_134_862_315_7e308, 1e21, 1.0],
    })
}

fn operations() -> Vec<Operation> {
    vec![
        Operation::Create { body: body() },
        Operation::Create { body: json!(1.5) },
        Operation::Get { id: NoteId(u64::MAX) },
        Operation::List { after: Some(NoteId(3)), limit: Some(u32::MAX) },
        Operation::List { after: None, limit: None },
        Operation::Replace { id: NoteId(1), body: body(), if_match: Some(2) },
        Operation::Patch { id: NoteId(1), patch: json!({ "nested": { "deeper": null }, "n": 1 }), if_match: None },
        Operation::Patch { id: NoteId(1), patch: json!(["not", "an", "object"]), if_match: Some(1) },
        Operation::Delete { id: NoteId(2), if_match: Some(7) },
    ]
}

/// A store holding two notes (one deleted in between), and every reply it gave.
fn store_and_replies() -> (NoteStore, Vec<Reply>) {
    let mut store = NoteStore::new(StoreLimits::default());
    let mut replies: Vec<Reply> = [
        Operation::Create { body: body() },
        Operation::Create { body: json!({ "second": "note" }) },
        Operation::Create { body: json!({}) },
        Operation::Delete { id: NoteId(2), if_match: None },
        Operation::Patch { id: NoteId(1), patch: json!({ "title": "patched ✓" }), if_match: Some(1) },
        Operation::Replace { id: NoteId(3), body: json!({ "a": 1 }), if_match: Some(9) },
        Operation::Get { id: NoteId(2) },
        Operation::List { after: None, limit: None },
    ]
    .iter()
    .zip(1..)
    .map(|(operation, at)| store.execute(operation, Timestamp(1_700_000_000_000_000_000 + at)))
    .collect();
    replies.push(Reply::refused(Refusal::invalid("a reason, with unicode: ✗")));
    replies.push(Reply::refused(Refusal::unavailable("no quorum")));
    let kinds: BTreeSet<&str> = replies.iter().map(reply_kind).collect();
    assert_eq!(kinds.len(), 7, "every reply and refusal: {kinds:?}");
    (store, replies)
}

fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Note { .. } => "note",
        Reply::Page { .. } => "page",
        Reply::Deleted { .. } => "deleted",
        Reply::Refused { refusal: Refusal::NotFound { .. } } => "not_found",
        Reply::Refused { refusal: Refusal::VersionMismatch { .. } } => "version_mismatch",
        Reply::Refused { refusal: Refusal::Invalid { .. } } => "invalid",
        Reply::Refused { refusal: Refusal::Unavailable { .. } } => "unavailable",
    }
}

fn client_table(replies: &[Reply]) -> ClientTable {
    let mut table = ClientTable::new(replies.len());
    for (client, reply) in (1..).zip(replies) {
        table.record(ClientId(client), 7, reply.clone());
    }
    table
}

fn request(operation: Operation) -> ClientRequest {
    ClientRequest { client: ClientId(5), request_number: 8, operation, consistency: Consistency::Local }
}

fn vr_entries() -> Vec<Entry> {
    (1..)
        .zip(operations())
        .map(|(op_number, operation)| Entry {
            op_number,
            view: 2,
            client: ClientId(op_number),
            request_number: op_number + 100,
            operation,
            timestamp: Timestamp(u64::MAX - op_number),
        })
        .collect()
}

/// At least one message of every kind of every protocol, carrying every operation,
/// reply and refusal, and snapshots of a store with notes.
fn messages() -> Vec<Message> {
    let (store, replies) = store_and_replies();
    let table = client_table(&replies);
    let image = Image::freeze(9, &store, &table, usize::MAX, Instant::ZERO);
    let manifest = *image.manifest();
    let chunk = image.chunk(0).expect("the image holds pieces");
    assert!(!chunk.clients.is_empty() && !chunk.notes.is_empty(), "records and notes");
    let responder = ResponderState { status: ReplicaStatus::Recovering, op_number: 10, commit_number: 9 };
    let note = store.get(NoteId(1)).cloned();
    let mut messages = vec![];
    messages.extend(
        [
            vr::Message::Prepare { view: 2, commit_number: 1, entries: vr_entries() },
            vr::Message::PrepareOk { view: 2, op_number: 9 },
            vr::Message::Commit { view: 2, commit_number: 9 },
            vr::Message::StartViewChange { view: 3 },
            vr::Message::DoViewChange { view: 3, log_view: 2, commit_number: 1, after: 0, entries: vr_entries() },
            vr::Message::StartView { view: 3, commit_number: 1, after: 0, entries: vec![] },
            vr::Message::Recovery { nonce: u64::MAX },
            vr::Message::RecoveryResponse { view: 3, nonce: 4, responder },
            vr::Message::RecoveryResponse {
                view: 3,
                nonce: 4,
                responder: ResponderState { status: ReplicaStatus::Normal, ..responder },
            },
            vr::Message::GetState { view: 3, op_number: 1 },
            vr::Message::NewState {
                view: 3,
                op_number: 12,
                commit_number: 9,
                after: 9,
                snapshot: Some(manifest),
                entries: vec![],
            },
            vr::Message::GetSnapshotChunk { snapshot: manifest.id, chunk: 3 },
            vr::Message::SnapshotChunk { chunk: chunk.clone() },
            vr::Message::SnapshotUnavailable { snapshot: manifest.id },
            vr::Message::NewState {
                view: 3,
                op_number: 12,
                commit_number: 9,
                after: 1,
                snapshot: None,
                entries: vec![],
            },
            vr::Message::ConfirmView { view: 3, round: 1 },
            vr::Message::ConfirmViewOk { view: 3, round: 1 },
        ]
        .into_iter()
        .chain(operations().into_iter().map(|operation| vr::Message::Forward { request: request(operation) }))
        .chain(replies.iter().map(|reply| vr::Message::ForwardReply {
            client: ClientId(5),
            request_number: 8,
            reply: reply.clone(),
        }))
        .map(Message::Vr),
    );
    let updates = (1..).zip(operations()).map(|(sequence, operation)| remote_write::Update {
        sequence,
        client: ClientId(3),
        request_number: sequence,
        operation,
        timestamp: Timestamp(sequence),
    });
    messages.extend(
        [
            remote_write::Message::Forward { request: request(Operation::Create { body: body() }) },
            remote_write::Message::Update { entries: updates.collect(), latest_sequence: 9 },
            remote_write::Message::Update { entries: vec![], latest_sequence: 9 },
            remote_write::Message::UpdateAck { applied: 9, behind: true },
            remote_write::Message::Snapshot { manifest },
            remote_write::Message::GetSnapshotChunk { snapshot: manifest.id, chunk: 3 },
            remote_write::Message::SnapshotChunk { chunk },
            remote_write::Message::SnapshotUnavailable { snapshot: manifest.id },
        ]
        .into_iter()
        .chain(replies.iter().map(|reply| remote_write::Message::ForwardReply {
            client: ClientId(5),
            request_number: 8,
            reply: reply.clone(),
        }))
        .map(Message::RemoteWrite),
    );
    let updates = (1..).zip(operations()).map(|(sequence, operation)| local_write::Update {
        item: Item::Note(NoteId(sequence)),
        epoch: 2,
        sequence,
        client: ClientId(3),
        request_number: sequence,
        operation,
        timestamp: Timestamp(sequence),
    });
    messages.extend(
        [
            local_write::Message::Update { entries: updates.collect() },
            local_write::Message::UpdateAck { item: Item::Counter, sequence: 4 },
            local_write::Message::Acquire { item: Item::Note(NoteId(1)), requester: ReplicaId(2), hops: 1 },
            local_write::Message::Transfer {
                item: Item::Note(NoteId(1)),
                to: ReplicaId(2),
                epoch: 3,
                sequence: 4,
                digest: local_write::item_digest(note.as_ref(), &table),
            },
            local_write::Message::Transfer {
                item: Item::Counter,
                to: ReplicaId(0),
                epoch: 1,
                sequence: 0,
                digest: local_write::item_digest(None, &ClientTable::new(1)),
            },
            local_write::Message::TransferAck { item: Item::Counter, epoch: 3 },
            local_write::Message::Read {
                origin: ReplicaId(1),
                request: request(Operation::Get { id: NoteId(1) }),
                hops: 2,
            },
        ]
        .into_iter()
        .chain(replies.iter().map(|reply| local_write::Message::ReadReply {
            client: ClientId(5),
            request_number: 8,
            reply: reply.clone(),
        }))
        .map(Message::LocalWrite),
    );
    messages
}

fn protocol(message: &Message) -> &'static str {
    match message {
        Message::RemoteWrite(_) => "remote-write",
        Message::LocalWrite(_) => "local-write",
        Message::Vr(_) => "vr",
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
fn every_message_of_every_protocol_survives_a_frame() {
    let messages = messages();
    let kinds: BTreeSet<(&str, &str)> = messages.iter().map(|message| (protocol(message), message.kind())).collect();
    assert_eq!(kinds.len(), 17 + 8 + 7, "every kind of vr, remote-write and local-write message: {kinds:?}");
    for message in messages {
        let envelope = Envelope { cluster: ClusterId(u64::MAX), from: ReplicaId(2), to: ReplicaId(255), message };
        let bytes = encode(&envelope);
        assert_eq!(decode(&bytes), Ok((envelope.clone(), bytes.len())), "{}", envelope.message.kind());
        assert_eq!(encode(&decode(&bytes).expect("decodes").0), bytes, "encoding is deterministic");
    }
}

#[test]
fn floats_come_back_bit_for_bit() {
    let sent = Message::Vr(vr::Message::Forward { request: request(Operation::Create { body: body() }) });
    let bytes = encode(&Envelope { cluster: ClusterId(1), from: ReplicaId(0), to: ReplicaId(1), message: sent });
    let (received, _) = decode(&bytes).expect("decodes");
    let Message::Vr(vr::Message::Forward { request }) = received.message else { panic!("a forward") };
    let Operation::Create { body: received } = request.operation else { panic!("a create") };
    let bits = |body: &Value| -> Vec<Option<u64>> {
        body["numbers"].as_array().expect("numbers").iter().map(|n| n.as_f64().map(f64::to_bits)).collect()
    };
    assert_eq!(bits(&received), bits(&body()));
    assert_eq!(received["numbers"][0].as_u64(), Some(u64::MAX));
    assert_eq!(received["numbers"][1].as_i64(), Some(i64::MIN));
}

#[test]
fn postcard_frames_are_smaller_than_json() {
    for message in messages() {
        let envelope = Envelope { cluster: ClusterId(9), from: ReplicaId(0), to: ReplicaId(1), message };
        let json = serde_json::to_vec(&envelope).expect("encodes").len();
        assert!(encode(&envelope).len() < json, "{} is smaller as postcard", envelope.message.kind());
    }
}

/// The JSON of what messages carry is what server answers, traces and histories
/// have always shown: tagged by a field, JSON values as themselves.
#[test]
fn json_shapes_stay_as_they_were() {
    let shapes = [
        (
            serde_json::to_value(Operation::Create { body: json!({ "a": [1.5] }) }),
            json!({ "op": "create", "body": { "a": [1.5] } }),
        ),
        (
            serde_json::to_value(Operation::Patch { id: NoteId(1), patch: json!(null), if_match: Some(2) }),
            json!({ "op": "patch", "id": 1, "patch": null, "if_match": 2 }),
        ),
        (serde_json::to_value(Reply::Deleted { id: NoteId(4) }), json!({ "reply": "deleted", "id": 4 })),
        (
            serde_json::to_value(Reply::refused(Refusal::NotFound { id: NoteId(4) })),
            json!({ "reply": "refused", "refusal": { "code": "not_found", "id": 4 } }),
        ),
    ];
    for (json, expected) in shapes {
        assert_eq!(json.expect("encodes"), expected);
    }
    let (store, _) = store_and_replies();
    let note = serde_json::to_value(store.get(NoteId(3))).expect("encodes");
    assert_eq!(
        note,
        json!({ "id": 3, "version": 1, "created_at": 1_700_000_000_000_000_003u64,
                "updated_at": 1_700_000_000_000_000_003u64, "body": {} })
    );
    for message in messages() {
        let json = serde_json::to_string(&message).expect("encodes");
        assert_eq!(serde_json::from_str::<Message>(&json).expect("decodes"), message, "JSON round trips too");
    }
}

#[test]
fn partial_frames_ask_for_more_bytes() {
    let bytes = encode(&envelope());
    assert_eq!(decode(&bytes[..2]), Err(WireError::Incomplete { needed: 2 }));
    assert_eq!(decode(&bytes[..5]), Err(WireError::Incomplete { needed: bytes.len() - 5 }));
}

#[test]
fn oversized_frames_are_errors() {
    assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(WireError::TooLarge { length: 0xffff_ffff }));
    let over = u32::try_from(FRAME_PAYLOAD_BYTES_MAX + 1).expect("fits").to_be_bytes();
    assert_eq!(decode(&over), Err(WireError::TooLarge { length: FRAME_PAYLOAD_BYTES_MAX + 1 }));
}

const REFUSED: &str = "a value its type refuses (an unknown variant, JSON text that does not parse)";

#[test]
fn malformed_payloads_say_what_is_wrong_and_where() {
    let json_frame =
        frame(br#"{"cluster":9,"from":1,"to":0,"message":{"Vr":{"Commit":{"view":1,"commit_number":2}}}}"#);
    assert_eq!(malformed_reason(&json_frame), format!("{REFUSED}, after byte 4 of 86"), "a JSON frame is garbage");
    assert_eq!(malformed_reason(&frame(&[])), "Hit the end of buffer, expected more data, after byte 0 of 0");

    let payload = &encode(&envelope())[LENGTH_PREFIX_BYTES..];
    // cluster 9, from 1, to 0, then the message's variant: there are three.
    assert_eq!(payload, [9, 1, 0, 0, 3, 3, 0], "remote-write, UpdateAck, 3, false");
    let mut unknown_variant = payload.to_vec();
    unknown_variant[3] = 3;
    assert_eq!(malformed_reason(&frame(&unknown_variant)), format!("{REFUSED}, after byte 4 of 7"));
    assert_eq!(malformed_reason(&frame(&payload[..6])), "Hit the end of buffer, expected more data, after byte 6 of 6");
    let mut trailing = payload.to_vec();
    trailing.push(0);
    assert_eq!(malformed_reason(&frame(&trailing)), "1 of the 8 payload bytes follow the envelope");
    let mut bad_bool = payload.to_vec();
    bad_bool[6] = 2;
    assert_eq!(malformed_reason(&frame(&bad_bool)), "Found a bool that wasn't 0 or 1, after byte 7 of 7");
    let mut overlong_varint = payload.to_vec();
    overlong_varint.splice(5..6, [0xff; 10]);
    assert!(malformed_reason(&frame(&overlong_varint)).starts_with("Found a varint that didn't terminate"));
}

#[test]
fn a_body_whose_json_text_is_broken_is_malformed() {
    let message = Message::Vr(vr::Message::Forward { request: request(Operation::Create { body: json!({ "a": 1 }) }) });
    let payload = encode(&Envelope { cluster: ClusterId(9), from: ReplicaId(1), to: ReplicaId(0), message })
        [LENGTH_PREFIX_BYTES..]
        .to_vec();
    let text = br#"{"a":1}"#;
    let at = payload.windows(text.len()).position(|window| window == text).expect("the body travels as its text");
    assert!(decode(&frame(&payload)).is_ok());
    for (broken, problem) in
        [(br#"{"a":}}"#, REFUSED), (br#"{"a":[}"#, REFUSED), (b"{\"\xff\":1}", "Tried to parse invalid utf-8")]
    {
        let mut bytes = payload.clone();
        bytes[at..at + text.len()].copy_from_slice(broken);
        assert_eq!(
            malformed_reason(&frame(&bytes)),
            format!("{problem}, after byte {} of {}", at + text.len(), bytes.len())
        );
    }
}

/// Any damage to a valid frame is an error or another envelope, never a panic.
#[test]
fn damaged_frames_never_panic() {
    for message in messages().into_iter().step_by(3) {
        let bytes = encode(&Envelope { cluster: ClusterId(9), from: ReplicaId(1), to: ReplicaId(0), message });
        let payload = &bytes[LENGTH_PREFIX_BYTES..];
        for end in (0..payload.len()).step_by(payload.len() / 64 + 1) {
            assert!(matches!(decode(&frame(&payload[..end])), Err(WireError::Malformed { .. })));
        }
        for index in (0..payload.len()).step_by(payload.len() / 256 + 1) {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = payload.to_vec();
                damaged[index] ^= flip;
                let _ = decode(&frame(&damaged));
            }
        }
    }
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

/// Limits as large as [`crate::config::Config::validate`] accepts: the largest
/// notes one message can carry, and the largest view change.
fn largest_limits() -> crate::config::Limits {
    let mut limits = crate::config::Limits::default();
    limits.uncommitted_bytes_max = FRAME_PAYLOAD_BYTES_MAX - size::MESSAGE_OVERHEAD_BYTES_MAX;
    limits.message_bytes_max = limits.uncommitted_bytes_max;
    limits.log_bytes_max = 2 * limits.uncommitted_bytes_max;
    limits.store.page_bytes_max = limits.message_bytes_max;
    limits.store.body_bytes_max =
        limits.message_bytes_max - size::ENTRY_OVERHEAD_BYTES_MAX.max(size::REPLY_OVERHEAD_BYTES_MAX);
    limits.entries_per_message_max = 1 << 20;
    limits.log_entries_max = 1 << 20;
    limits
}

/// A body whose compact JSON is exactly `bytes` long.
fn body_of(bytes: usize) -> Value {
    let body = json!({ "x": "a".repeat(bytes - 8) });
    assert_eq!(crate::request_body::compact_size(&body), bytes);
    body
}

/// Every kind of message, as large as the protocol builds it under `limits`, with
/// every number as wide as it encodes: each stays within the bound `wire/size.rs`
/// states for it, and so within the frame limit.
fn assert_largest_messages_fit(limits: crate::config::Limits, body_bytes: usize) {
    use crate::config::{Config, ProtocolKind};
    assert_eq!(Config { limits, ..Config::new(ClusterId(1), ReplicaId(0), 3, ProtocolKind::Vr, 1) }.validate(), Ok(()));
    let wide = u64::MAX >> 1;
    let body = body_of(body_bytes);
    let operation = Operation::Replace { id: NoteId(wide), body: body.clone(), if_match: Some(wide) };
    let entry = |op_number: u64| Entry {
        op_number,
        view: wide,
        client: ClientId(wide),
        request_number: wide,
        operation: operation.clone(),
        timestamp: Timestamp(wide),
    };
    // The log as vr builds it: a batch of prepares, a view change's suffix.
    let mut log = vr::log_for_tests();
    let entry_bytes = size::entry_bytes(&operation);
    let entries_in_log = limits.uncommitted_bytes_max / entry_bytes + 2;
    for op_number in 1..=entries_in_log as u64 {
        log.append(entry(op_number));
    }
    let batch = log.entries_after(0, limits.entries_per_message_max, limits.message_bytes_max);
    let after = log.start_within(limits.uncommitted_bytes_max);
    let suffix = log.entries_after(after, usize::MAX, usize::MAX);
    // A store as large as pages and chunks take from, with a table of write replies.
    let mut store = NoteStore::new(limits.store);
    let mut table = ClientTable::new(64);
    let notes = limits.message_bytes_max / (body_bytes + size::NOTE_OVERHEAD_BYTES_MAX) + 2;
    for client in 1..=notes as u64 {
        let reply = store.execute(&Operation::Create { body: body.clone() }, Timestamp(wide - 10_000 + client));
        table.record(ClientId(wide - client), wide, reply);
    }
    let page = store.list(None, None);
    let image = Image::freeze(wide, &store, &table, limits.message_bytes_max, Instant::ZERO);
    let chunks: Vec<crate::snapshot::Chunk> =
        (0..image.manifest().chunks).map(|index| image.chunk(index).expect("numbered chunks")).collect();
    let clients_chunk = chunks.iter().find(|chunk| !chunk.clients.is_empty()).cloned().expect("records");
    let notes_chunk = chunks
        .iter()
        .filter(|chunk| chunk.clients.is_empty())
        .max_by_key(|chunk| chunk.notes.len())
        .cloned()
        .expect("notes");
    let request = ClientRequest {
        client: ClientId(wide),
        request_number: wide,
        operation: operation.clone(),
        consistency: Consistency::Local,
    };
    let page_reply = Reply::Page { page };
    let note_reply = table.records().pop().expect("a record").reply;
    let message_max = limits.message_bytes_max + size::MESSAGE_OVERHEAD_BYTES_MAX;
    let view_change_max = limits.uncommitted_bytes_max + size::MESSAGE_OVERHEAD_BYTES_MAX;
    let messages: Vec<(Message, usize)> = vec![
        (Message::Vr(vr::Message::Prepare { view: wide, commit_number: wide, entries: batch.clone() }), message_max),
        (
            Message::Vr(vr::Message::DoViewChange {
                view: wide,
                log_view: wide,
                commit_number: wide,
                after,
                entries: suffix.clone(),
            }),
            view_change_max,
        ),
        (
            Message::Vr(vr::Message::StartView { view: wide, commit_number: wide, after, entries: suffix }),
            view_change_max,
        ),
        (
            Message::Vr(vr::Message::NewState {
                view: wide,
                op_number: wide,
                commit_number: wide,
                after: wide,
                snapshot: Some(*image.manifest()),
                entries: batch.clone(),
            }),
            message_max,
        ),
        (Message::Vr(vr::Message::SnapshotChunk { chunk: clients_chunk.clone() }), message_max),
        (Message::Vr(vr::Message::SnapshotChunk { chunk: notes_chunk.clone() }), message_max),
        (Message::Vr(vr::Message::Forward { request: request.clone() }), message_max),
        (
            Message::Vr(vr::Message::ForwardReply {
                client: ClientId(wide),
                request_number: wide,
                reply: page_reply.clone(),
            }),
            message_max,
        ),
        (
            Message::Vr(vr::Message::ForwardReply {
                client: ClientId(wide),
                request_number: wide,
                reply: note_reply.clone(),
            }),
            message_max,
        ),
        (
            Message::RemoteWrite(remote_write::Message::Update {
                entries: batch
                    .iter()
                    .map(|entry| remote_write::Update {
                        sequence: wide,
                        client: entry.client,
                        request_number: wide,
                        operation: entry.operation.clone(),
                        timestamp: entry.timestamp,
                    })
                    .collect(),
                latest_sequence: wide,
            }),
            message_max,
        ),
        (Message::RemoteWrite(remote_write::Message::SnapshotChunk { chunk: notes_chunk }), message_max),
        (Message::RemoteWrite(remote_write::Message::Forward { request: request.clone() }), message_max),
        (
            Message::RemoteWrite(remote_write::Message::ForwardReply {
                client: ClientId(wide),
                request_number: wide,
                reply: page_reply.clone(),
            }),
            message_max,
        ),
        (
            Message::LocalWrite(local_write::Message::Update {
                entries: batch
                    .iter()
                    .map(|entry| local_write::Update {
                        item: Item::Note(NoteId(wide)),
                        epoch: wide,
                        sequence: wide,
                        client: entry.client,
                        request_number: wide,
                        operation: entry.operation.clone(),
                        timestamp: entry.timestamp,
                    })
                    .collect(),
            }),
            message_max,
        ),
        (
            Message::LocalWrite(local_write::Message::Read { origin: ReplicaId(255), request, hops: u8::MAX }),
            message_max,
        ),
        (
            Message::LocalWrite(local_write::Message::ReadReply {
                client: ClientId(wide),
                request_number: wide,
                reply: page_reply,
            }),
            message_max,
        ),
    ];
    for (message, bound) in messages {
        let kind = message.kind();
        let envelope = Envelope { cluster: ClusterId(u64::MAX), from: ReplicaId(255), to: ReplicaId(255), message };
        let encoded = encoded_len(&envelope);
        assert!(encoded <= bound, "{kind}: {encoded} bytes, over its bound of {bound}");
        assert_eq!(bound, size::message_bound(&envelope.message, &limits), "{kind}: the bound the simulator checks");
        assert!(bound <= FRAME_PAYLOAD_BYTES_MAX, "{kind}: its bound is within the frame limit");
        assert_eq!(encoded + LENGTH_PREFIX_BYTES, encode(&envelope).len(), "encoded_len is exact");
    }
}

#[test]
fn the_largest_message_of_every_kind_fits_in_a_frame() {
    let defaults = crate::config::Limits::default();
    assert_largest_messages_fit(defaults, defaults.store.body_bytes_max);
    assert_largest_messages_fit(defaults, 1_000);
    let largest = largest_limits();
    assert_largest_messages_fit(largest, largest.store.body_bytes_max);
    assert_largest_messages_fit(largest, 100_000);
}

/// Every kind of message of every protocol, as version 1 of the wire protocol
/// encodes them, checked in under `core/tests/fixtures/wire-v1/messages.bin` (frames
/// one after another): a later release must still read these bytes as these
/// messages, and write them the same way, while it speaks version 1.
#[test]
fn version_1_frames_of_every_message_are_still_read_and_written() {
    assert!(WIRE_VERSIONS.contains(1), "this release speaks version 1");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire-v1/messages.bin");
    let envelopes: Vec<Envelope> = messages()
        .into_iter()
        .map(|message| Envelope { cluster: ClusterId(7), from: ReplicaId(1), to: ReplicaId(0), message })
        .collect();
    let written_today: Vec<u8> = envelopes.iter().flat_map(encode).collect();
    // NOTED_WRITE_FIXTURES=1 writes it, once, when a version is released.
    if std::env::var("NOTED_WRITE_FIXTURES").is_ok_and(|value| value == "1") {
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("create the fixture directory");
        std::fs::write(&path, &written_today).expect("write the fixture");
    }
    let fixture = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut rest = fixture.as_slice();
    for envelope in &envelopes {
        let (decoded, used) = decode(rest).expect("a version 1 frame decodes");
        assert_eq!(&decoded, envelope, "{}", envelope.message.kind());
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "no frame left over");
    assert_eq!(fixture, written_today, "this release writes version 1 as it was released");
}
