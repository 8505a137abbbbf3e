//! The core's speed, one thread, no I/O: `cargo bench -p noted-core`.
//!
//! - store: operations a `NoteStore` applies per second (a write-heavy mix on 1,000 notes);
//! - vr: writes a three-replica VR cluster commits per second, every message passed
//!   between the replicas' `handle` in memory (requests 64 at a time, as under load);
//! - wire: encode plus decode of representative peer frames, per frame: the frames
//!   as they are (postcard, `noted_core::wire`) beside the same envelopes as JSON,
//!   the payload frames carried before.
//!
//! `NOTED_BENCH_QUICK=1` runs every part once on a fraction of the work, so that
//! the test command proves the bench still runs; its figures mean nothing.

// A benchmark measures wall-clock time around whole loops; the core never reads it.
#![allow(clippy::disallowed_types)]

use std::collections::VecDeque;
use std::time::Instant as WallClock;

use noted_core::client_table::ClientTable;
use noted_core::hlc::Timestamp;
use noted_core::protocol::vr::{self, Entry};
use noted_core::snapshot::Image;
use noted_core::store::StoreLimits;
use noted_core::wire::{self, Envelope};
use noted_core::{
    ClientId, ClientRequest, ClusterId, Config, Consistency, Input, Instant, Message, NoteId, NoteStore, Operation,
    Output, ProtocolKind, Replica, ReplicaId,
};
use serde_json::json;

/// Whether `NOTED_BENCH_QUICK=1` asks for a run that only shows the bench works.
fn quick() -> bool {
    std::env::var("NOTED_BENCH_QUICK").is_ok_and(|value| value == "1")
}

fn main() {
    store_apply();
    vr_commits();
    wire_codecs();
}

fn body(seed: u64) -> serde_json::Value {
    json!({ "title": format!("note {seed}"), "text": "x".repeat(64) })
}

fn store_apply() {
    let mut store = NoteStore::new(StoreLimits::default());
    let notes = 1_000u64;
    for seed in 0..notes {
        store.execute(&Operation::Create { body: body(seed) }, Timestamp(seed + 1));
    }
    store.take_changes();
    let operations: Vec<Operation> = (0..1_000u64)
        .map(|seed| {
            let id = NoteId(seed % notes + 1);
            match seed % 4 {
                0 => Operation::Replace { id, body: body(seed), if_match: None },
                1 => Operation::Patch { id, patch: json!({ "tag": seed }), if_match: None },
                2 => Operation::Get { id },
                _ => Operation::Create { body: body(seed) },
            }
        })
        .collect();
    let rounds = if quick() { 2 } else { 200u64 };
    let started = WallClock::now();
    let mut timestamp = notes + 1;
    for _ in 0..rounds {
        for operation in &operations {
            timestamp += 1;
            std::hint::black_box(store.execute(operation, Timestamp(timestamp)));
        }
        store.take_changes();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let applied = rounds * operations.len() as u64;
    println!("store: {applied} operations applied in {elapsed:.2}s: {:.0} operations/s", applied as f64 / elapsed);
}

fn vr_commits() {
    let replicas_count = 3u8;
    let mut replicas: Vec<Replica> = (0..replicas_count)
        .map(|index| {
            let config = Config::new(ClusterId(1), ReplicaId(index), replicas_count, ProtocolKind::Vr, 1);
            Replica::new(config, Instant::ZERO).expect("a valid configuration")
        })
        .collect();
    let mut now = Instant::from_millis(1);
    let mut messages: VecDeque<(ReplicaId, ReplicaId, Message)> = VecDeque::new();
    let mut replies = 0u64;
    let deliver = |replicas: &mut [Replica], messages: &mut VecDeque<_>, now: Instant| -> u64 {
        let mut replies = 0;
        while let Some((from, to, message)) = messages.pop_front() {
            let to: ReplicaId = to;
            for output in replicas[to.index()].handle(now, Input::Message { from, message }) {
                match output {
                    Output::Send { to: next, message } => messages.push_back((to, next, message)),
                    Output::Reply { .. } => replies += 1,
                    Output::Event(_) | Output::Storage(_) => {}
                }
            }
        }
        replies
    };
    // Let the first view start: timeouts until replica 0 leads with a quorum.
    for _ in 0..50 {
        now = Instant::from_nanos(now.as_nanos() + 50_000_000);
        for (index, replica) in replicas.iter_mut().enumerate() {
            for output in replica.handle(now, Input::Timeout) {
                if let Output::Send { to, message } = output {
                    messages.push_back((ReplicaId(index as u8), to, message));
                }
            }
        }
        deliver(&mut replicas, &mut messages, now);
    }
    let batches = if quick() { 20 } else { 2_000u64 };
    let batch = 64u64;
    let started = WallClock::now();
    let mut request_number = 0;
    for _ in 0..batches {
        request_number += 1;
        now = Instant::from_nanos(now.as_nanos() + 10_000);
        for client in 0..batch {
            let request = ClientRequest {
                client: ClientId(client + 1),
                request_number,
                operation: Operation::Replace { id: NoteId(client + 1), body: body(client), if_match: None },
                consistency: Consistency::Linearizable,
            };
            let operation =
                if request_number == 1 { Operation::Create { body: body(client) } } else { request.operation };
            for output in replicas[0].handle(now, Input::Request(ClientRequest { operation, ..request })) {
                match output {
                    Output::Send { to, message } => messages.push_back((ReplicaId(0), to, message)),
                    Output::Reply { .. } => replies += 1,
                    Output::Event(_) | Output::Storage(_) => {}
                }
            }
        }
        replies += deliver(&mut replicas, &mut messages, now);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = batches * batch;
    assert!(replies >= requests * 9 / 10, "the cluster answered {replies} of {requests} writes");
    println!(
        "vr: {replies} writes committed by 3 replicas in {elapsed:.2}s: {:.0} writes/s (every replica's work on one thread)",
        replies as f64 / elapsed
    );
}

fn entry(op_number: u64) -> Entry {
    Entry {
        op_number,
        view: 1,
        client: ClientId(op_number),
        request_number: 7,
        operation: Operation::Replace { id: NoteId(op_number), body: body(op_number), if_match: None },
        timestamp: Timestamp(1_700_000_000_000_000_000 + op_number),
    }
}

fn wire_codecs() {
    let envelope = |message: vr::Message| Envelope {
        cluster: ClusterId(0x1234_5678),
        from: ReplicaId(0),
        to: ReplicaId(1),
        message: Message::Vr(message),
    };
    let samples = [
        ("PrepareOk", envelope(vr::Message::PrepareOk { view: 1, op_number: 123_456 })),
        ("Commit", envelope(vr::Message::Commit { view: 1, commit_number: 123_456 })),
        ("ConfirmView", envelope(vr::Message::ConfirmView { view: 1, round: 98_765 })),
        ("Prepare x1", envelope(vr::Message::Prepare { view: 1, commit_number: 10, entries: vec![entry(11)] })),
        (
            "Prepare x64",
            envelope(vr::Message::Prepare { view: 1, commit_number: 10, entries: (11..75).map(entry).collect() }),
        ),
        ("Chunk 1k", envelope(snapshot_chunk(1_000))),
    ];
    for (name, sample) in &samples {
        let json = measure(|| {
            let mut frame = vec![0; 4];
            serde_json::to_writer(&mut frame, sample).expect("messages encode");
            let decoded: Envelope = serde_json::from_slice(&frame[4..]).expect("JSON decodes");
            (frame.len(), decoded == *sample)
        });
        let postcard = measure(|| {
            let frame = wire::encode(sample);
            let (decoded, _) = wire::decode(&frame).expect("a frame decodes");
            (frame.len(), decoded == *sample)
        });
        let describe = |(nanos, bytes): (f64, usize)| format!("{bytes:>7} bytes, {:>9.2} µs", nanos / 1e3);
        println!(
            "wire {name:<12} json: {}   postcard: {}   postcard {:.1}x faster, {:.1}x smaller",
            describe(json),
            describe(postcard),
            json.0 / postcard.0,
            json.1 as f64 / postcard.1 as f64
        );
    }
}

/// State transfer to a replica behind the checkpoint: a chunk holding a snapshot of
/// `notes` notes and a client table of 64 clients.
fn snapshot_chunk(notes: u64) -> vr::Message {
    let mut store = NoteStore::new(StoreLimits::default());
    let mut client_table = ClientTable::new(64);
    for seed in 0..notes {
        let reply = store.execute(&Operation::Create { body: body(seed) }, Timestamp(seed + 1));
        client_table.record(ClientId(seed % 64 + 1), seed + 1, reply);
    }
    store.take_changes();
    let image = Image::freeze(notes, &store, &client_table, usize::MAX, Instant::ZERO);
    vr::Message::SnapshotChunk { chunk: image.chunk(0).expect("the image holds pieces") }
}

/// Nanoseconds per call of `round_trip` (over at least a quarter of a second) and
/// its byte count; asserts that it gave back what it was given.
fn measure(mut round_trip: impl FnMut() -> (usize, bool)) -> (f64, usize) {
    let (bytes, round_trips) = round_trip();
    assert!(round_trips, "a codec gives back what it was given");
    let budget = std::time::Duration::from_millis(if quick() { 1 } else { 250 });
    let started = WallClock::now();
    let mut iterations = 0u32;
    while iterations < 10 || started.elapsed() < budget {
        std::hint::black_box(round_trip());
        iterations += 1;
    }
    (started.elapsed().as_nanos() as f64 / f64::from(iterations), bytes)
}
