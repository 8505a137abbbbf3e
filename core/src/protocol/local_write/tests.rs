//! Tests of local-write. "T&vS §7.5" is the local-write protocol of Tanenbaum &
//! van Steen, *Distributed Systems*: the primary of an item moves to the replica
//! where a write for it arrives, then the backups are updated.

use serde_json::json;

use super::*;
use crate::config::ProtocolKind;
use crate::replica::{Input, Output};
use crate::test_cluster::*;

const PROTOCOL: ProtocolKind = ProtocolKind::LocalWrite;
const NOTE_1: Item = Item::Note(NoteId(1));

fn send(to: ReplicaId, message: Message) -> Output {
    Output::Send { to, message: wrap(message) }
}

fn message(from: ReplicaId, message: Message) -> Input {
    Input::Message { from, message: wrap(message) }
}

fn request(client: u64, request_number: RequestNumber, operation: Operation) -> Input {
    Input::Request(ClientRequest {
        client: ClientId(client),
        request_number,
        operation,
        consistency: Consistency::Linearizable,
    })
}

fn reply(client: u64, request_number: RequestNumber, reply: Reply) -> Output {
    Output::Reply { client: ClientId(client), request_number, reply, freshness: Freshness::Ordered }
}

fn note(id: u64, version: u64, created_at: Timestamp, updated_at: Timestamp, body: serde_json::Value) -> Note {
    let body = body.as_object().cloned().expect("an object");
    Note { id: NoteId(id), version, created_at, updated_at, body: body.into() }
}

/// The client table of an item no write has touched yet.
fn untouched_clients() -> ClientTable {
    ClientTable::new(crate::config::Limits::default().clients_max)
}

/// A cluster in which R0 created note 1, `{"title": "a"}`, and every replica applied it.
fn cluster_with_note_1(seed: u64) -> TestCluster {
    let mut cluster = TestCluster::new(PROTOCOL, 3, seed);
    cluster.request(R0, 1, 1, create(json!({"title": "a"})));
    cluster.run(1_000);
    assert!(cluster.reply(1, 1).is_some());
    cluster
}

/// T&vS §7.5: at the owner, a write executes at once and is answered only after
/// every backup applied it.
#[test]
fn the_owner_answers_only_after_every_other_replica_applied_the_write() {
    let mut cluster = TestCluster::new(PROTOCOL, 3, 1);
    let timestamp = Timestamp(cluster.now.as_nanos());
    let operation = create(json!({"title": "a"}));
    let update = Update {
        item: Item::Counter,
        epoch: 0,
        sequence: 1,
        client: ClientId(7),
        request_number: 1,
        operation: operation.clone(),
        timestamp,
    };
    assert_eq!(
        cluster.input(R0, request(7, 1, operation)),
        vec![
            Output::Event(Event::Ordered {
                sequence: 1,
                client: ClientId(7),
                request_number: 1,
                operation: "create".into()
            }),
            send(R1, Message::Update { entries: vec![update.clone()] }),
            send(R2, Message::Update { entries: vec![update.clone()] }),
        ]
    );
    assert_eq!(cluster.replica(R0).status().role, Role::Owner { items_owned: 2 }, "the counter and note 1");
    assert_eq!(
        cluster.input(R1, message(R0, Message::Update { entries: vec![update] })),
        vec![send(R0, Message::UpdateAck { item: Item::Counter, sequence: 1 })]
    );
    let ack = Message::UpdateAck { item: Item::Counter, sequence: 1 };
    assert_eq!(cluster.input(R0, message(R1, ack.clone())), vec![]);
    assert_eq!(
        cluster.input(R0, message(R2, ack)),
        vec![
            Output::Event(Event::Acknowledged { sequence: 1, client: ClientId(7), request_number: 1 }),
            reply(7, 1, Reply::Note { note: note(1, 1, timestamp, timestamp, json!({"title": "a"})) }),
        ]
    );
    assert_eq!(cluster.replica(R0).status().pending_requests, 0);
}

/// T&vS §7.5, "move item to new primary": the write waits at R1 while the note
/// moves from R0, then executes at R1.
#[test]
fn a_write_at_a_non_owner_moves_the_note_there_first() {
    let mut cluster = cluster_with_note_1(2);
    let acquire = Message::Acquire { item: NOTE_1, requester: R1, hops: 0 };
    let operation = replace(1, json!({"title": "b"}), Some(1));
    assert_eq!(cluster.input(R1, request(8, 1, operation.clone())), vec![send(R0, acquire.clone())]);
    assert_eq!(cluster.replica(R1).status().pending_requests, 1, "the queued write keeps the pump going");

    let created = cluster.replica(R0).store().get(NoteId(1)).cloned();
    let clients = untouched_clients();
    let digest = item_digest(created.as_ref(), &clients);
    let transfer = Message::Transfer { item: NOTE_1, to: R1, epoch: 2, sequence: 0, digest };
    assert_eq!(
        cluster.input(R0, message(R1, acquire)),
        vec![
            send(R1, transfer.clone()),
            Output::Event(Event::OwnershipHandedOff { item: "note-1".into(), epoch: 2, to: R1 }),
        ]
    );
    let timestamp = Timestamp::next(cluster.now, cluster.replica(R1).store().last_timestamp());
    let update =
        Update { item: NOTE_1, epoch: 2, sequence: 1, client: ClientId(8), request_number: 1, operation, timestamp };
    assert_eq!(
        cluster.input(R1, message(R0, transfer.clone())),
        vec![
            Output::Event(Event::OwnershipAcquired { item: "note-1".into(), epoch: 2, from: R0 }),
            send(R0, Message::TransferAck { item: NOTE_1, epoch: 2 }),
            Output::Event(Event::Ordered {
                sequence: 1,
                client: ClientId(8),
                request_number: 1,
                operation: "replace".into()
            }),
            send(R0, Message::Update { entries: vec![update.clone()] }),
            send(R2, Message::Update { entries: vec![update] }),
        ]
    );
    // The same Transfer again is a duplicate of the one accepted: acknowledged, not counted.
    assert_eq!(
        cluster.input(R1, message(R0, transfer)),
        vec![send(R0, Message::TransferAck { item: NOTE_1, epoch: 2 })]
    );
    cluster.run(1_000);
    let Some(Reply::Note { note }) = cluster.reply(8, 1) else { panic!("the replace is answered") };
    assert_eq!((note.version, note.body["title"].clone()), (2, json!("b")));
    assert_eq!(cluster.replica(R1).status().role, Role::Owner { items_owned: 1 });
    assert_eq!(cluster.replica(R0).status().role, Role::Owner { items_owned: 1 }, "R0 keeps the counter");
    cluster.assert_converged();
}

/// Two replicas want note 1 at once: one gets it first, then hands it on, so both
/// writes execute once; a late copy of the first Transfer is stale and dropped.
#[test]
fn concurrent_acquirers_both_write_and_a_stale_transfer_is_dropped() {
    let mut cluster = cluster_with_note_1(3);
    let created = cluster.replica(R0).store().get(NoteId(1)).cloned();
    let first_clients = untouched_clients();
    cluster.request(R1, 11, 1, patch(1, json!({"from_r1": true}), None));
    cluster.request(R2, 12, 1, patch(1, json!({"from_r2": true}), None));
    cluster.run(10_000);
    assert!(matches!(cluster.reply(11, 1), Some(Reply::Note { .. })));
    assert!(matches!(cluster.reply(12, 1), Some(Reply::Note { .. })));
    let final_note = cluster.replica(R0).store().get(NoteId(1)).cloned().expect("note 1 exists");
    assert_eq!(final_note.version, 3, "each patch applied once");
    assert_eq!((final_note.body["from_r1"].clone(), final_note.body["from_r2"].clone()), (json!(true), json!(true)));
    cluster.assert_converged();

    for at in [R1, R2] {
        let digest = item_digest(created.as_ref(), &first_clients);
        let stale = Message::Transfer { item: NOTE_1, to: at, epoch: 2, sequence: 0, digest };
        assert_eq!(
            cluster.input(at, message(R0, stale)),
            vec![
                Output::Event(Event::Dropped { from: R0, reason: DropReason::StaleEpoch }),
                send(R0, Message::TransferAck { item: NOTE_1, epoch: 2 }),
            ],
            "{at} knows epoch 3"
        );
        assert_eq!(cluster.replica(at).counters().messages_dropped, 1);
    }
    cluster.run(1_000);
    cluster.assert_converged();
}

#[test]
fn a_request_at_a_non_owner_is_answered_through_loss_by_retransmission() {
    for seed in 0..20 {
        let mut cluster = TestCluster::new(PROTOCOL, 3, seed);
        cluster.loss_per_mille = 400;
        cluster.request(R2, 5, 1, create(json!({"n": 1})));
        cluster.run(10_000);
        assert!(matches!(cluster.reply(5, 1), Some(Reply::Note { note }) if note.id == NoteId(1)), "seed {seed}");
        assert_eq!(cluster.replies_to(5, 1), 1, "seed {seed}");
        assert_eq!(cluster.replica(R2).status().role, Role::Owner { items_owned: 2 }, "seed {seed}");
        cluster.assert_converged();
    }
}

#[test]
fn a_duplicated_update_is_applied_once_and_acknowledged_again() {
    let mut cluster = TestCluster::new(PROTOCOL, 3, 4);
    let outputs = cluster.input(R0, request(1, 1, create(json!({"t": 1}))));
    let Some(Output::Send { message: update, .. }) = outputs.into_iter().find(|o| matches!(o, Output::Send { .. }))
    else {
        panic!("the owner sends the update")
    };
    let ack = vec![send(R0, Message::UpdateAck { item: Item::Counter, sequence: 1 })];
    assert_eq!(cluster.input(R1, Input::Message { from: R0, message: update.clone() }), ack);
    assert_eq!(cluster.input(R1, Input::Message { from: R0, message: update }), ack);
    assert_eq!(cluster.replica(R1).store().len(), 1);
    assert_eq!(cluster.replica(R1).status().applied, 1);
}

#[test]
fn a_retried_create_makes_one_note() {
    let mut cluster = TestCluster::new(PROTOCOL, 3, 6);
    cluster.request(R1, 7, 1, create(json!({"t": 1})));
    cluster.request(R1, 7, 1, create(json!({"t": 1})));
    cluster.run(1_000);
    cluster.request(R2, 7, 1, create(json!({"t": 1})));
    cluster.run(1_000);
    cluster.request(R0, 7, 1, create(json!({"t": 1})));
    cluster.run(1_000);
    assert_eq!(cluster.replica(R0).store().len(), 1);
    assert!(matches!(cluster.reply(7, 1), Some(Reply::Note { note }) if note.id == NoteId(1)));
    assert_eq!(cluster.replica(R0).client_table().latest_request_number(ClientId(7)), Some(1));
    cluster.assert_converged();
}

/// Updates of a note that arrive before its create wait for it, unacknowledged.
#[test]
fn updates_of_a_note_wait_for_its_create() {
    let mut cluster = TestCluster::new(PROTOCOL, 3, 7);
    let at = Timestamp(5);
    let create_update = Update {
        item: Item::Counter,
        epoch: 0,
        sequence: 1,
        client: ClientId(1),
        request_number: 1,
        operation: create(json!({"v": 0})),
        timestamp: at,
    };
    let patch_update = Update {
        item: NOTE_1,
        epoch: 1,
        sequence: 1,
        client: ClientId(1),
        request_number: 2,
        operation: patch(1, json!({"v": 1}), Some(1)),
        timestamp: Timestamp(6),
    };
    assert_eq!(cluster.input(R2, message(R0, Message::Update { entries: vec![patch_update] })), vec![]);
    assert_eq!(cluster.replica(R2).status().applied, 0);
    assert_eq!(
        cluster.input(R2, message(R0, Message::Update { entries: vec![create_update] })),
        vec![
            send(R0, Message::UpdateAck { item: Item::Counter, sequence: 1 }),
            send(R0, Message::UpdateAck { item: NOTE_1, sequence: 1 }),
        ]
    );
    assert_eq!(cluster.version_of(R2, 1), Some(2));
}

/// A note id this replica never saw goes through the counter's owner, who knows
/// every id ever created.
#[test]
fn a_write_to_an_id_never_created_is_refused_by_way_of_the_counter() {
    let mut cluster = cluster_with_note_1(8);
    cluster.request(R2, 3, 1, replace(9, json!({"t": 1}), None));
    cluster.run(1_000);
    assert_eq!(cluster.reply(3, 1), Some(&Reply::refused(Refusal::NotFound { id: NoteId(9) })));
    assert_eq!(cluster.replica(R2).status().role, Role::Owner { items_owned: 1 }, "R2 took the counter");
    cluster.request(R1, 3, 2, get(9));
    cluster.run(1_000);
    assert_eq!(cluster.reply(3, 2), Some(&Reply::refused(Refusal::NotFound { id: NoteId(9) })));
    cluster.assert_converged();
}

#[test]
fn a_linearizable_get_is_answered_by_the_owner() {
    let mut cluster = cluster_with_note_1(9);
    let get_1 = ClientRequest {
        client: ClientId(4),
        request_number: 1,
        operation: get(1),
        consistency: Consistency::Linearizable,
    };
    let read = Message::Read { origin: R1, request: get_1.clone(), hops: 0 };
    assert_eq!(
        cluster.input(R1, Input::Request(get_1)),
        vec![
            Output::Event(Event::Forwarded { client: ClientId(4), request_number: 1, to: R0 }),
            send(R0, read.clone()),
        ]
    );
    let stored = cluster.replica(R0).store().get(NoteId(1)).cloned().expect("note 1 exists");
    let answer =
        Message::ReadReply { client: ClientId(4), request_number: 1, reply: Reply::Note { note: stored.clone() } };
    assert_eq!(cluster.input(R0, message(R1, read)), vec![send(R1, answer.clone())]);
    assert_eq!(cluster.input(R1, message(R0, answer.clone())), vec![reply(4, 1, Reply::Note { note: stored })]);
    assert_eq!(cluster.input(R1, message(R0, answer)), vec![], "a duplicate answer is ignored");
}

#[test]
fn local_reads_and_every_list_are_served_from_the_local_copy() {
    let mut cluster = cluster_with_note_1(10);
    cluster.request_with(R2, 4, 1, get(1), Consistency::Local);
    cluster.request(R2, 4, 2, Operation::List { after: None, limit: None });
    let outputs = cluster.input(R1, request(4, 3, Operation::List { after: None, limit: None }));
    assert!(matches!(
        outputs.as_slice(),
        [Output::Reply { reply: Reply::Page { page }, freshness: Freshness::PossiblyStale { applied: 1 }, .. }]
            if page.notes.len() == 1
    ));
    assert!(matches!(cluster.reply(4, 1), Some(Reply::Note { .. })));
    assert!(matches!(cluster.reply(4, 2), Some(Reply::Page { .. })));
}

#[test]
fn bad_messages_are_dropped_and_counted() {
    let mut cluster = TestCluster::new(PROTOCOL, 3, 11);
    let other_protocol = crate::message::Message::RemoteWrite(crate::protocol::remote_write::Message::UpdateAck {
        applied: 0,
        behind: false,
    });
    assert_eq!(
        cluster.input(R1, Input::Message { from: R0, message: other_protocol }),
        vec![Output::Event(Event::Dropped { from: R0, reason: DropReason::WrongProtocol })]
    );
    assert_eq!(
        cluster.input(R0, message(R1, Message::UpdateAck { item: Item::Counter, sequence: 5 })),
        vec![Output::Event(Event::Dropped { from: R1, reason: DropReason::ImpossibleSequence })]
    );
    let impostor = Update {
        item: Item::Counter,
        epoch: 0,
        sequence: 1,
        client: ClientId(1),
        request_number: 1,
        operation: create(json!({})),
        timestamp: Timestamp(1),
    };
    assert_eq!(
        cluster.input(R1, message(R2, Message::Update { entries: vec![impostor] })),
        vec![Output::Event(Event::Dropped { from: R2, reason: DropReason::NotPrimary })],
        "R0 owns the counter at epoch 0"
    );
    let transfer_of_unknown = Message::Transfer {
        item: Item::Note(NoteId(4)),
        to: R1,
        epoch: 9,
        sequence: 0,
        digest: item_digest(None, &ClientTable::new(4)),
    };
    assert_eq!(
        cluster.input(R1, message(R2, transfer_of_unknown)),
        vec![Output::Event(Event::Dropped { from: R2, reason: DropReason::StaleEpoch })]
    );
    assert_eq!(cluster.replica(R1).counters().messages_dropped, 3);
}

/// A `Transfer` delivered to a replica it does not name, or carrying a client table
/// other than the one the receiver recorded, is dropped; the real one still works.
#[test]
fn a_misdelivered_or_forged_transfer_is_dropped() {
    let mut cluster = cluster_with_note_1(12);
    let acquire = Message::Acquire { item: NOTE_1, requester: R1, hops: 0 };
    cluster.input(R1, request(8, 1, replace(1, json!({"title": "b"}), None)));
    let outputs = cluster.input(R0, message(R1, acquire));
    let Some(Output::Send { message: AnyMessage::LocalWrite(transfer), .. }) = outputs.first().cloned() else {
        panic!("R0 hands note 1 over: {outputs:?}")
    };
    assert_eq!(
        cluster.input(R2, message(R0, transfer.clone())),
        vec![Output::Event(Event::Dropped { from: R0, reason: DropReason::NotPrimary })],
        "the Transfer names R1"
    );
    let Message::Transfer { item, to, epoch, sequence, .. } = transfer.clone() else { panic!("a Transfer") };
    let mut clients = untouched_clients();
    clients.record(ClientId(9), 1_000, Reply::Deleted { id: NoteId(1) });
    let note = cluster.replica(R1).store().get(NoteId(1)).cloned();
    let digest = item_digest(note.as_ref(), &clients);
    assert_eq!(
        cluster.input(R1, message(R0, Message::Transfer { item, to, epoch, sequence, digest })),
        vec![Output::Event(Event::Dropped { from: R0, reason: DropReason::ImpossibleSequence })],
        "R1 recorded no request of client 9 on note 1"
    );
    let accepted = cluster.input(R1, message(R0, transfer));
    assert!(accepted.contains(&Output::Event(Event::OwnershipAcquired { item: "note-1".into(), epoch: 2, from: R0 })));
    cluster.run(1_000);
    assert!(matches!(cluster.reply(8, 1), Some(Reply::Note { .. })));
    assert_eq!(cluster.replica(R2).counters().messages_dropped, 1);
    cluster.assert_converged();
}

/// Updates no owner could have sent to this replica yet are dropped before they
/// change anything: an epoch no hand-off could follow, a sequence further ahead than
/// an owner keeps unacknowledged, a note id that was never created although lower
/// ids were, and a note id too far past the next one.
#[test]
fn impossible_updates_are_dropped() {
    let mut cluster = cluster_with_note_1(13);
    let limits = crate::config::Limits::default();
    let ahead_max = limits.pending_requests_max.min(limits.log_entries_max) as u64;
    let update = |item: Item, epoch: u64, sequence: u64| Update {
        item,
        epoch,
        sequence,
        client: ClientId(3),
        request_number: 1,
        operation: match item {
            Item::Note(id) => patch(id.0, json!({"forged": true}), None),
            Item::Counter => create(json!({})),
        },
        timestamp: Timestamp(u64::MAX - 1),
    };
    let cases = [
        (update(NOTE_1, u64::MAX, 1), DropReason::StaleEpoch),
        (update(NOTE_1, 1, 1 + ahead_max), DropReason::TooFarAhead),
        (update(Item::Counter, 0, 1 + ahead_max + 1), DropReason::TooFarAhead),
        (update(Item::Note(NoteId(0)), 1, 1), DropReason::StaleEpoch),
        (update(Item::Note(NoteId(2 + ahead_max)), 1, 1), DropReason::TooFarAhead),
        (update(Item::Note(NoteId(2)), 2, 1), DropReason::StaleEpoch),
    ];
    for (update, reason) in cases {
        assert_eq!(
            cluster.input(R1, message(R0, Message::Update { entries: vec![update.clone()] })),
            vec![Output::Event(Event::Dropped { from: R0, reason })],
            "{update:?}"
        );
    }
    assert_eq!(cluster.replica(R1).status().applied, 1, "only the create of note 1");
    cluster.run(1_000);
    cluster.assert_converged();
}

/// Three replicas, every kind of write, with messages lost, duplicated and
/// reordered: every request is answered and every replica ends with the same store
/// and client table.
#[test]
fn converges_through_loss_duplication_and_reordering() {
    for seed in 0..100 {
        let mut cluster = TestCluster::new(PROTOCOL, 3, seed);
        cluster.loss_per_mille = 200;
        cluster.duplicate_per_mille = 200;
        cluster.reorder = true;
        every_kind_of_write(&mut cluster, seed, |cluster| cluster.run(10_000));
    }
}

/// Several clients write the same notes at different replicas at once, through
/// loss, duplication and reordering: the notes move back and forth, every write
/// executes exactly once, and the replicas converge.
#[test]
fn concurrent_writers_at_every_replica_converge() {
    for seed in 0..100 {
        let mut cluster = TestCluster::new(PROTOCOL, 3, 1_000 + seed);
        cluster.loss_per_mille = 150;
        cluster.duplicate_per_mille = 150;
        cluster.reorder = true;
        for (client, at) in [(1, R0), (2, R1), (3, R2)] {
            cluster.request(at, client, 1, create(json!({"by": client})));
        }
        cluster.run(20_000);
        for round in 2..=4 {
            for (client, at) in [(1, R0), (2, R1), (3, R2)] {
                let id = (client + round) % 3 + 1;
                cluster.request(at, client, round, patch(id, json!({ format!("c{client}r{round}"): round }), None));
                // A retry of the same request elsewhere must not execute twice.
                cluster.request(ReplicaId((at.0 + 1) % 3), client, round, patch(id, json!({}), None));
            }
            cluster.run(20_000);
        }
        for client in 1..=3 {
            for round in 1..=4 {
                assert!(cluster.reply(client, round).is_some(), "seed {seed}: client {client} request {round}");
            }
        }
        let versions: u64 = (1..=3).map(|id| cluster.version_of(R0, id).expect("three notes")).sum();
        assert_eq!(versions, 3 + 9, "seed {seed}: three creates and nine patches, each once");
        assert!(cluster.replicas.iter().all(|replica| replica.status().pending_requests == 0), "seed {seed}");
        cluster.assert_converged();
    }
}

#[test]
fn a_single_replica_cluster_answers_at_once() {
    let mut cluster = TestCluster::new(PROTOCOL, 1, 12);
    let outputs = cluster.input(R0, request(1, 1, create(json!({}))));
    assert!(matches!(outputs.last(), Some(Output::Reply { reply: Reply::Note { .. }, .. })));
    assert_eq!(cluster.replica(R0).next_timeout(), None, "nothing left to retransmit");
}

/// A seeded mix of every operation from four clients at three to five replicas,
/// some retried at a second replica, under swarm-style fault rates (some seeds calm,
/// some stormy): every request is answered and the replicas converge. (Run locally
/// over 25,000 seeds while writing the protocol; 300 here keep `cargo test` quick.)
#[test]
fn random_workloads_converge_on_three_to_five_replicas() {
    for seed in 0..300u64 {
        let mut cluster = TestCluster::new(PROTOCOL, 3 + (seed % 3) as u8, seed);
        cluster.loss_per_mille = (seed % 5) as u32 * 100;
        cluster.duplicate_per_mille = (seed % 4) as u32 * 100;
        cluster.reorder = seed % 2 == 0;
        let replica_count = cluster.replicas.len() as u64;
        let replica = |index: u64| ReplicaId((index % replica_count) as u8);
        for round in 1..=6u64 {
            for client in 1..=4u64 {
                let at = replica(client + round + seed);
                let id = (client * round + seed) % 5 + 1;
                let operation = match (client + round) % 6 {
                    0 | 1 => create(json!({"client": client})),
                    2 => replace(id, json!({"round": round}), None),
                    3 => patch(id, json!({"patched": round}), Some(round % 3 + 1)),
                    4 => delete(id, None),
                    _ => get(id),
                };
                cluster.request(at, client, round, operation.clone());
                if (seed + client) % 3 == 0 {
                    cluster.request(replica(u64::from(at.0) + 1), client, round, operation);
                }
            }
            cluster.run(100_000);
            for client in 1..=4u64 {
                assert!(cluster.reply(client, round).is_some(), "seed {seed}: client {client} request {round}");
            }
        }
        assert!(cluster.replicas.iter().all(|replica| replica.status().pending_requests == 0), "seed {seed}");
        cluster.assert_converged();
    }
}
