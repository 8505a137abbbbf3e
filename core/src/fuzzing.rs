//! The bodies of noted's fuzz targets. cargo-fuzz runs them from `fuzz/`; `cargo
//! test` replays every checked-in corpus and regression input through the same
//! functions on the stable toolchain.
//!
//! Each takes raw bytes, so a corpus file means the same thing to both.

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Value, json};

use crate::config::{Config, ProtocolKind};
use crate::ids::{ClientId, ClusterId, NoteId, ReplicaId};
use crate::message::Message;
use crate::operation::{ClientRequest, Consistency, Operation};
use crate::replica::{Input, Output, Replica};
use crate::time::Instant;
use crate::wire;

/// Any bytes into the frame decoder: never a panic, never a payload over the limit,
/// and a decoded frame re-encodes to canonical bytes that decode to the same envelope
/// and encode to the same bytes again.
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
