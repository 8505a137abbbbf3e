//! The bodies of noted's fuzz targets. cargo-fuzz runs them from `fuzz/`; `cargo
//! test` replays every checked-in corpus and regression input through the same
//! functions on the stable toolchain.
//!
//! Each takes raw bytes, so a corpus file means the same thing to both.

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value, json};

use crate::client_table::ClientTable;
use crate::config::{Config, ProtocolKind};
use crate::hlc::Timestamp;
use crate::ids::{ClientId, ClusterId, NoteId, ReplicaId};
use crate::message::Message;
use crate::operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
use crate::protocol::remote_write;
use crate::replica::{Input, Output, Replica};
use crate::request_body::{self, BodyKind};
use crate::store::{METADATA_KEYS, Note, NoteStore, StoreLimits};
use crate::time::Instant;
use crate::wire;

/// Any bytes into the frame decoder: never a panic, never a payload over the limit,
/// and a decoded frame re-encodes to canonical bytes that decode to the same envelope
/// and encode to the same bytes again. The input itself need not be canonical: an
/// overlong varint or JSON text with spaces decodes to the value it spells.
pub fn wire_decode(bytes: &[u8]) {
    let Ok((envelope, used)) = wire::decode(bytes) else { return };
    assert!(used <= bytes.len(), "a frame uses only the bytes it was given");
    assert!(used <= 4 + wire::FRAME_PAYLOAD_BYTES_MAX, "a frame stays within the limit");
    let encoded = wire::encode(&envelope);
    let (decoded_again, used_again) = wire::decode(&encoded).expect("an encoded envelope decodes");
    assert_eq!(used_again, encoded.len());
    assert_eq!(decoded_again, envelope, "decoding inverts encoding");
    assert_eq!(wire::encode(&decoded_again), encoded, "encoding is canonical");
}

/// Any bytes as a data directory: the first byte picks how many of the rest are the
/// first superblock copy, the second how many are the log; the remainder is the
/// checkpoint. The same directory is opened by a replica of each protocol (formatted
/// for it). Opening it never panics: it is refused with a reason, or read, and what
/// vr reads is within the limits and consecutive.
pub fn disk_open(bytes: &[u8]) {
    use crate::storage::{DiskFile, DiskImage, format};
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else { return };
    let rest = &bytes[2..];
    let superblock_end = (usize::from(first) * 4).min(rest.len());
    let wal_end = (superblock_end + usize::from(second) * 16).min(rest.len());
    let primary = crate::ReplicaId(0);
    for protocol in
        [crate::ProtocolKind::Vr, crate::ProtocolKind::RemoteWrite { primary }, crate::ProtocolKind::LocalWrite]
    {
        let mut config = crate::Config::new(crate::ClusterId(9), crate::ReplicaId(0), 1, protocol, 1);
        config.storage = crate::config::StorageKind::Disk;
        // A formatted directory, with the fuzzed bytes in place of copy 0, the log and the checkpoint.
        let mut disk: DiskImage = format(&config).into_iter().collect();
        disk.insert(DiskFile::Superblock { copy: 0 }, rest[..superblock_end].to_vec());
        disk.insert(DiskFile::Wal { generation: 1 }, rest[superblock_end..wal_end].to_vec());
        if wal_end < rest.len() {
            disk.insert(DiskFile::Checkpoint { generation: 1 }, rest[wal_end..].to_vec());
        }
        if protocol != crate::ProtocolKind::Vr {
            let _ = crate::Replica::open(config, &disk, crate::time::Instant::from_millis(1));
            continue;
        }
        let Ok(recovered) = crate::storage::open(&config, &disk) else { continue };
        for (index, entry) in recovered.entries.iter().enumerate() {
            assert_eq!(entry.op_number, recovered.log_start + 1 + index as u64, "recovered entries are consecutive");
        }
        assert!(recovered.commit_number <= recovered.log_start + recovered.entries.len() as u64);
        assert!(recovered.wal_end as usize <= wal_end - superblock_end);
        let _ = crate::Replica::open(config, &disk, crate::time::Instant::from_millis(1));
    }
}

/// Content-Type values the `http_body` target picks from: both accepted media
/// types, one with parameters and odd case, others, and none.
const CONTENT_TYPES: [Option<&str>; 6] = [
    Some(request_body::JSON_MEDIA_TYPE),
    Some(request_body::MERGE_PATCH_MEDIA_TYPE),
    Some("Application/JSON; charset=utf-8"),
    Some("text/plain"),
    Some(""),
    None,
];

/// Request bodies through [`request_body::parse`], the server's parser, and what it
/// accepts through the note store and the peer frames:
///
/// ```text
/// [content types][size limit / 16][note body bytes] 0xFF [merge patch bytes]
/// ```
///
/// (0xFF never occurs in UTF-8.) Refusals must be clear; an accepted body must be a
/// bounded object that re-parses to itself, is stored as sent, travels in frames,
/// and can be read back and sent again; an applied merge patch must satisfy RFC
/// 7396: members it sets are replaced, members it nulls are gone, objects merge
/// member by member, everything else is untouched, and applying it twice changes
/// nothing more.
pub fn http_body(bytes: &[u8]) {
    let [content_types, limit, rest @ ..] = bytes else { return };
    let bytes_max = 16 * (usize::from(*limit) + 1);
    let content_type = |index: usize| CONTENT_TYPES[index % CONTENT_TYPES.len()];
    let (body_type, patch_type) =
        (content_type(usize::from(*content_types)), content_type(usize::from(*content_types) / CONTENT_TYPES.len()));
    let (body_bytes, patch_bytes) = match rest.iter().position(|byte| *byte == 0xFF) {
        Some(split) => (&rest[..split], Some(&rest[split + 1..])),
        None => (rest, None),
    };
    let Some(body) = accepted(BodyKind::Create, body_type, body_bytes, bytes_max) else { return };
    let mut store = NoteStore::new(StoreLimits { body_bytes_max: bytes_max, ..StoreLimits::default() });
    let created = store.execute(&Operation::Create { body: body.clone() }, Timestamp(1));
    let has_metadata = METADATA_KEYS.iter().any(|key| body.get(*key).is_some());
    let note = match created {
        Reply::Note { note } => note,
        Reply::Refused { refusal: Refusal::Invalid { reason } } if has_metadata => {
            assert!(reason.contains("set by the store"), "{reason}");
            return;
        }
        other => panic!("an accepted body without metadata is stored: {other:?}"),
    };
    assert!(!has_metadata, "metadata keys in a create are refused");
    assert_eq!(Value::Object(Map::clone(&note.body)), body, "a note is stored as sent");
    travels_in_frames(&store, Operation::Create { body });
    let note = read_back_and_sent_again(&mut store, &note, bytes_max);
    if let Some(patch_bytes) = patch_bytes
        && let Some(patch) = accepted(BodyKind::MergePatch, patch_type, patch_bytes, bytes_max)
    {
        merge_patch_obeys_rfc_7396(&mut store, &note, &patch, bytes_max);
    }
}

/// The parsed body, after checking what `request_body::parse` promises.
fn accepted(kind: BodyKind, content_type: Option<&str>, bytes: &[u8], bytes_max: usize) -> Option<Value> {
    let value = match request_body::parse(kind, content_type, bytes, bytes_max) {
        Ok(value) => value,
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty() && message.len() < 400, "a short, clear message: {message}");
            assert!(!error.code().is_empty());
            return None;
        }
    };
    assert!(value.is_object(), "only objects are accepted");
    assert!(request_body::depth(&value) <= request_body::DEPTH_MAX, "nesting is bounded");
    let canonical = serde_json::to_vec(&value).expect("a value encodes");
    let reparsed = request_body::parse(kind, Some(request_body::JSON_MEDIA_TYPE), &canonical, bytes_max);
    assert_eq!(reparsed.as_ref(), Ok(&value), "an accepted body re-parses to itself");
    Some(value)
}

/// The request, and a snapshot of the store, survive a peer frame.
fn travels_in_frames(store: &NoteStore, operation: Operation) {
    let request =
        ClientRequest { client: ClientId(1), request_number: 1, operation, consistency: Consistency::default() };
    let image = crate::snapshot::Image::freeze(1, store, &ClientTable::new(1), usize::MAX, crate::time::Instant::ZERO);
    let mut messages = vec![remote_write::Message::Forward { request }];
    if let Some(chunk) = image.chunk(0) {
        messages.push(remote_write::Message::SnapshotChunk { chunk });
    }
    for message in messages {
        let envelope = wire::Envelope {
            cluster: ClusterId(1),
            from: ReplicaId(0),
            to: ReplicaId(1),
            message: Message::RemoteWrite(message),
        };
        let (decoded, _) = wire::decode(&wire::encode(&envelope)).expect("an accepted body decodes on every replica");
        assert_eq!(decoded, envelope, "a frame carries the body unchanged");
    }
}

/// A client reads the note and sends it back whole, metadata included: accepted,
/// and the body is unchanged.
fn read_back_and_sent_again(store: &mut NoteStore, note: &Note, bytes_max: usize) -> Note {
    let read = serde_json::to_vec(&note.to_json()).expect("a note encodes");
    let sent_again = request_body::parse(BodyKind::Replace, Some(request_body::JSON_MEDIA_TYPE), &read, bytes_max)
        .expect("a note read back is accepted");
    let replace = Operation::Replace { id: note.id, body: sent_again, if_match: Some(note.version) };
    let Reply::Note { note: replaced } = store.execute(&replace, Timestamp(2)) else {
        panic!("a note read back replaces itself")
    };
    assert_eq!(replaced.body, note.body);
    assert_eq!(replaced.version, note.version + 1);
    replaced
}

fn merge_patch_obeys_rfc_7396(store: &mut NoteStore, note: &Note, patch: &Value, bytes_max: usize) {
    let operation = Operation::Patch { id: note.id, patch: patch.clone(), if_match: Some(note.version) };
    let patched = match store.execute(&operation, Timestamp(10)) {
        Reply::Note { note } => note,
        Reply::Refused { refusal: Refusal::Invalid { reason } } => {
            let names_metadata = METADATA_KEYS.iter().any(|key| patch.get(*key).is_some());
            assert!(
                names_metadata || reason.contains(&format!("over the limit of {bytes_max} bytes")),
                "a patch is refused only for metadata or size: {reason}"
            );
            return;
        }
        other => panic!("a patch of an existing note at its version is applied or invalid: {other:?}"),
    };
    assert_eq!(patched.version, note.version + 1);
    let mut top_level = patch.as_object().expect("patches are objects").clone();
    // Metadata keys in an applied patch echoed the stored values and were set aside.
    top_level.retain(|key, _| !METADATA_KEYS.contains(&key.as_str()));
    let original = Value::Object(Map::clone(&note.body));
    assert_merged(Some(&original), &Value::Object(top_level), Some(&Value::Object(Map::clone(&patched.body))));
    travels_in_frames(store, operation);
    let again = Operation::Patch { id: note.id, patch: patch.clone(), if_match: Some(patched.version) };
    let Reply::Note { note: twice } = store.execute(&again, Timestamp(11)) else {
        panic!("a patch that applied once applies again")
    };
    assert_eq!(twice.body, patched.body, "a merge patch is idempotent");
}

/// RFC 7396 section 2, checked member by member rather than recomputed.
fn assert_merged(original: Option<&Value>, patch: &Value, result: Option<&Value>) {
    let Value::Object(patch_members) = patch else {
        assert_eq!(result, Some(patch), "a patch that is not an object replaces the target");
        return;
    };
    let Some(Value::Object(result_members)) = result else { panic!("an object patch leaves an object: {result:?}") };
    let original_members = original.and_then(Value::as_object);
    for (key, patch_value) in patch_members {
        let result_value = result_members.get(key);
        if patch_value.is_null() {
            assert_eq!(result_value, None, "a null member removes {key:?}");
        } else {
            assert_merged(original_members.and_then(|members| members.get(key)), patch_value, result_value);
        }
    }
    for (key, result_value) in result_members {
        if !patch_members.contains_key(key) {
            let original_value = original_members.and_then(|members| members.get(key));
            assert_eq!(original_value, Some(result_value), "{key:?} is not in the patch and is untouched");
        }
    }
    if let Some(original_members) = original_members {
        for key in original_members.keys().filter(|key| !patch_members.contains_key(*key)) {
            assert!(result_members.contains_key(key), "{key:?} is not in the patch and is kept");
        }
    }
}

/// A small cluster of any protocol driven by an arbitrary sequence of client
/// requests, deliveries, losses, duplicates, misdeliveries, forged messages,
/// crashes and time passing. Replicas assert their invariants after every input;
/// the target asserts that nothing panics.
///
/// `NOTED_FUZZ_PROTOCOL=vr|remote-write|local-write` makes every input run that
/// protocol, to spend a fuzzing session on one.
pub fn replica_inputs(bytes: &[u8]) {
    let Ok(mut scenario) = Scenario::arbitrary_take_rest(Unstructured::new(bytes)) else { return };
    if let Some(protocol) = forced_protocol() {
        scenario.protocol = protocol;
    }
    Cluster::new(&scenario).run(&scenario.steps);
}

fn forced_protocol() -> Option<ProtocolChoice> {
    static FORCED: std::sync::OnceLock<Option<ProtocolChoice>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("NOTED_FUZZ_PROTOCOL").ok()?.as_str() {
        "vr" => Some(ProtocolChoice::Vr),
        "remote-write" => Some(ProtocolChoice::RemoteWrite),
        "local-write" => Some(ProtocolChoice::LocalWrite),
        other => panic!("NOTED_FUZZ_PROTOCOL={other}: expected vr, remote-write or local-write"),
    })
}

const STEPS_MAX: usize = 4096;

#[derive(Arbitrary, Debug)]
struct Scenario {
    protocol: ProtocolChoice,
    five_replicas: bool,
    seed: u64,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum ProtocolChoice {
    Vr,
    RemoteWrite,
    LocalWrite,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Request {
        replica: u8,
        client: u8,
        request_number: u8,
        operation: FuzzOperation,
        local: bool,
    },
    Deliver {
        pick: u16,
    },
    Duplicate {
        pick: u16,
    },
    Lose {
        pick: u16,
    },
    /// Delivers a message to a replica it was not addressed to.
    Misdeliver {
        pick: u16,
        to: u8,
    },
    /// Replaces one number inside a message in flight, then delivers it.
    Forge {
        pick: u16,
        field: u16,
        value: u64,
    },
    Advance {
        millis: u16,
    },
    Crash {
        replica: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum FuzzOperation {
    Create { title: u8 },
    Get { id: u8 },
    List { after: Option<u8>, limit: Option<u8> },
    Replace { id: u8, title: u8, if_match: Option<u8> },
    Patch { id: u8, key: u8, value: Option<u8>, if_match: Option<u8> },
    Delete { id: u8, if_match: Option<u8> },
}

impl FuzzOperation {
    fn to_operation(&self) -> Operation {
        let id = |id: &u8| NoteId(u64::from(*id % 8));
        let version = |version: &Option<u8>| version.map(|version| u64::from(version % 8));
        match self {
            FuzzOperation::Create { title } => Operation::Create { body: json!({ "title": title }) },
            FuzzOperation::Get { id: note } => Operation::Get { id: id(note) },
            FuzzOperation::List { after, limit } => Operation::List {
                after: after.map(|after| NoteId(u64::from(after % 8))),
                limit: limit.map(|limit| u32::from(limit % 8)),
            },
            FuzzOperation::Replace { id: note, title, if_match } => {
                Operation::Replace { id: id(note), body: json!({ "title": title }), if_match: version(if_match) }
            }
            FuzzOperation::Patch { id: note, key, value, if_match } => Operation::Patch {
                id: id(note),
                patch: json!({ format!("k{}", key % 4): value.map_or(Value::Null, Value::from) }),
                if_match: version(if_match),
            },
            FuzzOperation::Delete { id: note, if_match } => {
                Operation::Delete { id: id(note), if_match: version(if_match) }
            }
        }
    }
}

struct Cluster {
    configs: Vec<Config>,
    replicas: Vec<Replica>,
    in_flight: VecDeque<(ReplicaId, ReplicaId, Message)>,
    now: Instant,
}

impl Cluster {
    fn new(scenario: &Scenario) -> Cluster {
        let replica_count = if scenario.five_replicas { 5 } else { 3 };
        let protocol = match scenario.protocol {
            ProtocolChoice::Vr => ProtocolKind::Vr,
            ProtocolChoice::RemoteWrite => ProtocolKind::RemoteWrite { primary: ReplicaId(0) },
            ProtocolChoice::LocalWrite => ProtocolKind::LocalWrite,
        };
        let now = Instant::from_millis(1_000);
        let configs: Vec<Config> = (0..replica_count)
            .map(|index| {
                let mut config = Config::new(ClusterId(1), ReplicaId(index), replica_count, protocol, scenario.seed);
                config.limits.log_entries_max = 32;
                config.limits.entries_per_message_max = 8;
                config.limits.pending_requests_max = 16;
                config.limits.clients_max = 16;
                config
            })
            .collect();
        let replicas = configs.iter().map(|config| Replica::new(config.clone(), now).expect("valid")).collect();
        Cluster { configs, replicas, in_flight: VecDeque::new(), now }
    }

    fn replica_index(&self, replica: u8) -> usize {
        usize::from(replica) % self.replicas.len()
    }

    fn pick(&self, pick: u16) -> Option<usize> {
        (!self.in_flight.is_empty()).then(|| usize::from(pick) % self.in_flight.len())
    }

    fn input(&mut self, index: usize, input: Input) {
        let outputs = self.replicas[index].handle(self.now, input);
        let from = ReplicaId(u8::try_from(index).expect("small cluster"));
        for output in outputs {
            if let Output::Send { to, message } = output
                && self.in_flight.len() < 4 * STEPS_MAX
            {
                self.in_flight.push_back((from, to, message));
            }
        }
    }

    fn deliver(&mut self, from: ReplicaId, to: usize, message: Message) {
        self.input(to, Input::Message { from, message });
    }

    fn run(mut self, steps: &[Step]) {
        for step in steps.iter().take(STEPS_MAX) {
            match step {
                Step::Request { replica, client, request_number, operation, local } => {
                    let request = ClientRequest {
                        client: ClientId(u64::from(*client % 8)),
                        request_number: u64::from(*request_number),
                        operation: operation.to_operation(),
                        consistency: if *local { Consistency::Local } else { Consistency::Linearizable },
                    };
                    self.input(self.replica_index(*replica), Input::Request(request));
                }
                Step::Deliver { pick } => {
                    if let Some((from, to, message)) = self.pick(*pick).and_then(|index| self.in_flight.remove(index)) {
                        self.deliver(from, to.index(), message);
                    }
                }
                Step::Duplicate { pick } => {
                    if let Some(index) = self.pick(*pick) {
                        let copy = self.in_flight[index].clone();
                        self.in_flight.push_back(copy);
                    }
                }
                Step::Lose { pick } => {
                    if let Some(index) = self.pick(*pick) {
                        self.in_flight.remove(index);
                    }
                }
                Step::Misdeliver { pick, to } => {
                    if let Some((from, _, message)) = self.pick(*pick).and_then(|index| self.in_flight.remove(index)) {
                        self.deliver(from, self.replica_index(*to), message);
                    }
                }
                Step::Forge { pick, field, value } => {
                    if let Some((from, to, message)) = self.pick(*pick).and_then(|index| self.in_flight.remove(index))
                        && let Some(forged) = forge(&message, usize::from(*field), *value)
                    {
                        self.deliver(from, to.index(), forged);
                    }
                }
                Step::Advance { millis } => {
                    self.now = self.now + core::time::Duration::from_millis(u64::from(*millis));
                    for index in 0..self.replicas.len() {
                        if self.replicas[index].next_timeout().is_some_and(|at| at <= self.now) {
                            self.input(index, Input::Timeout);
                        }
                    }
                }
                Step::Crash { replica } => {
                    let index = self.replica_index(*replica);
                    self.replicas[index] = Replica::new(self.configs[index].clone(), self.now).expect("valid");
                }
            }
        }
    }
}

/// The message with its `field`-th number (in JSON document order) replaced by `value`,
/// if the result is still a message.
fn forge(message: &Message, field: usize, value: u64) -> Option<Message> {
    let mut json = serde_json::to_value(message).ok()?;
    let mut numbers = Vec::new();
    collect_numbers(&mut json, &mut numbers);
    let count = numbers.len();
    if count == 0 {
        return None;
    }
    *numbers.swap_remove(field % count) = Value::from(value);
    serde_json::from_value(json).ok()
}

fn collect_numbers<'a>(value: &'a mut Value, numbers: &mut Vec<&'a mut Value>) {
    match value {
        Value::Number(_) => numbers.push(value),
        Value::Array(items) => items.iter_mut().for_each(|item| collect_numbers(item, numbers)),
        Value::Object(members) => members.values_mut().for_each(|member| collect_numbers(member, numbers)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn replay(target: &str, run: fn(&[u8])) -> usize {
        let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for kind in ["corpus", "regressions"] {
            let directory = fuzz_dir.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&directory) else { continue };
            let mut paths: Vec<_> = entries.map(|entry| entry.expect("readable directory").path()).collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path).expect("readable corpus file");
                run(&bytes);
                replayed += 1;
            }
        }
        replayed
    }

    #[test]
    fn replays_the_wire_decode_corpus() {
        assert!(replay("wire_decode", wire_decode) > 0, "fuzz/corpus/wire_decode is checked in");
    }

    #[test]
    fn replays_the_http_body_corpus() {
        assert!(replay("http_body", http_body) > 0, "fuzz/corpus/http_body is checked in");
    }

    #[test]
    fn replays_the_disk_open_corpus() {
        assert!(replay("disk_open", disk_open) > 0, "fuzz/corpus/disk_open is checked in");
    }

    #[test]
    fn replays_the_replica_inputs_corpus() {
        assert!(replay("replica_inputs", replica_inputs) > 0, "fuzz/corpus/replica_inputs is checked in");
    }

    /// Writes the seed corpora: frames of every message a short run of each protocol
    /// sends, and seeded random scenarios. `cargo test -p noted-core --features fuzzing
    /// write_seed_corpora -- --ignored` rewrites them.
    #[test]
    #[ignore = "writes files into fuzz/corpus"]
    fn write_seed_corpora() {
        use rand::{Rng, SeedableRng};

        use crate::test_cluster::{R0, R1, R2, TestCluster, create, delete, get, patch, replace};
        let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let wire_dir = fuzz_dir.join("wire_decode");
        std::fs::create_dir_all(&wire_dir).expect("corpus directory");
        let mut kinds_written = std::collections::BTreeSet::new();
        for protocol in [ProtocolKind::Vr, ProtocolKind::RemoteWrite { primary: R0 }, ProtocolKind::LocalWrite] {
            let mut cluster = TestCluster::new(protocol, 3, 1);
            cluster.run_for(core::time::Duration::from_millis(300));
            cluster.request(R1, 1, 1, create(json!({"title": "a", "tags": ["x", 1.5, null]})));
            cluster.request(R2, 2, 1, get(1));
            cluster.run_for(core::time::Duration::from_millis(300));
            cluster.request(R2, 1, 2, replace(1, json!({"title": "b"}), Some(1)));
            cluster.request(R0, 2, 2, patch(1, json!({"title": null}), None));
            cluster.run_for(core::time::Duration::from_millis(300));
            cluster.request(R1, 1, 3, delete(1, None));
            cluster.crash_and_restart(R2);
            cluster.run_for(core::time::Duration::from_secs(2));
            cluster.partition(&[R0], &[R1, R2]);
            cluster.request(R1, 1, 4, create(json!({"n": 4})));
            cluster.run_for(core::time::Duration::from_secs(2));
            cluster.heal();
            cluster.run_for(core::time::Duration::from_secs(2));
            for (from, to, message) in cluster.sent_log() {
                let key = (protocol.name(), message.kind());
                if kinds_written.insert(key) {
                    let envelope = wire::Envelope { cluster: ClusterId(1), from, to, message };
                    let name = format!("{}-{}", key.0, key.1);
                    std::fs::write(wire_dir.join(name), wire::encode(&envelope)).expect("write corpus file");
                }
            }
        }
        let body_dir = fuzz_dir.join("http_body");
        std::fs::create_dir_all(&body_dir).expect("corpus directory");
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        let long_integer = format!("{{\"a\":{}}}", "9".repeat(100));
        /// (name, content types: body + 6 * patch, size limit / 16 - 1, body, patch)
        type Seed<'a> = (&'a str, u8, u8, &'a [u8], Option<&'a [u8]>);
        let seeds: [Seed; 14] = [
            (
                "create-and-patch",
                6,
                255,
                br#"{"title":"a","tags":["x",1.5,null],"n":{"deep":{"er":true}}}"#,
                Some(br#"{"title":"b","tags":null,"n":{"deep":{"er":null,"x":1}}}"#),
            ),
            (
                "rfc-7396-section-3",
                6,
                255,
                br#"{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"}"#,
                Some(br#"{"title":"Hello!","phoneNumber":"+01-123-456-7890","author":{"familyName":null},"tags":["example"]}"#),
            ),
            ("nested-too-deep", 0, 255, deep.as_bytes(), None),
            ("number-overflowing-a-double", 0, 255, br#"{"a":1e999999}"#, None),
            ("integer-of-100-digits", 0, 255, long_integer.as_bytes(), None),
            ("invalid-utf8", 0, 255, b"{\"a\":\"\xc3\x28\"}", None),
            ("not-an-object", 0, 255, b"[1,2]", None),
            ("metadata-in-a-create", 0, 255, br#"{"id":1,"a":1}"#, None),
            ("patch-echoing-metadata", 0, 255, br#"{"a":1,"b":2}"#, Some(br#"{"id":1,"a":null}"#)),
            ("text-plain", 3, 255, br#"{"a":1}"#, None),
            ("media-type-parameters", 2 + 6 * 2, 255, br#"{"a":1}"#, Some(br#"{"b":[]}"#)),
            ("over-the-size-limit", 0, 0, br#"{"title":"longer than sixteen bytes"}"#, None),
            ("patch-over-the-size-limit", 6, 1, br#"{"a":"0123456789"}"#, Some(br#"{"b":"0123456789012345"}"#)),
            ("escapes-and-brackets-in-strings", 6, 255, br#"{"s":"\"[[{{\u0041\\"}"#, Some(br#"{"s":{"t":"]]}}"}}"#)),
        ];
        for (name, content_types, limit, body, patch) in seeds {
            let mut bytes = vec![content_types, limit];
            bytes.extend_from_slice(body);
            if let Some(patch) = patch {
                bytes.push(0xFF);
                bytes.extend_from_slice(patch);
            }
            std::fs::write(body_dir.join(name), bytes).expect("write corpus file");
        }
        let scenario_dir = fuzz_dir.join("replica_inputs");
        std::fs::create_dir_all(&scenario_dir).expect("corpus directory");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for index in 0..16 {
            let bytes: Vec<u8> = (0..rng.random_range(64..4096)).map(|_| rng.random()).collect();
            std::fs::write(scenario_dir.join(format!("random-{index:02}")), bytes).expect("write corpus file");
        }
    }

    #[test]
    fn forging_replaces_one_number() {
        let message = Message::Vr(crate::protocol::vr::Message::Commit { view: 3, commit_number: 9 });
        // Numbers in document order; object keys are ordered: commit_number, then view.
        let forged = forge(&message, 0, 77).expect("still a message");
        assert_eq!(forged, Message::Vr(crate::protocol::vr::Message::Commit { view: 3, commit_number: 77 }));
    }

    /// Random scenarios, so the targets run even before a fuzzer has: a few hundred per protocol.
    #[test]
    fn random_scenarios_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..300 {
            let length = rng.random_range(0..4096);
            let bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
            replica_inputs(&bytes);
            wire_decode(&bytes);
        }
    }
}
