//! Scenario tests of VR, each citing the section of "Viewstamped Replication
//! Revisited" it checks.

use core::time::Duration;

use serde_json::json;

use super::*;
use crate::config::ProtocolKind;
use crate::hlc::Timestamp;
use crate::ids::NoteId;
use crate::replica::{Input, Output};
use crate::test_cluster::*;

const VR: ProtocolKind = ProtocolKind::Vr;

fn settled_cluster(replica_count: u8, seed: u64) -> TestCluster {
    let mut cluster = TestCluster::new(VR, replica_count, seed);
    cluster.run_for(Duration::from_millis(200));
    cluster
}

fn role(cluster: &TestCluster, id: ReplicaId) -> Role {
    cluster.replica(id).status().role
}

fn view(cluster: &TestCluster, id: ReplicaId) -> u64 {
    cluster.replica(id).status().view.expect("vr reports its view")
}

/// How many VR messages `sender` has sent that `kind` accepts.
fn sent_by(cluster: &TestCluster, sender: ReplicaId, kind: impl Fn(&Message) -> bool) -> usize {
    let log = cluster.sent_log();
    log.iter()
        .filter(|(from, _, message)| {
            *from == sender && matches!(message, crate::message::Message::Vr(message) if kind(message))
        })
        .count()
}

fn vr_send(to: ReplicaId, message: Message) -> Output {
    Output::Send { to, message: wrap(message) }
}

/// §4.3 with the empty-cluster rule: replicas that all start with empty memory form view 0.
#[test]
fn a_new_cluster_starts_in_view_zero_with_replica_zero_as_primary() {
    for replica_count in [1, 3, 5] {
        let cluster = settled_cluster(replica_count, 1);
        assert_eq!(role(&cluster, R0), Role::Primary, "{replica_count} replicas");
        for index in 1..replica_count {
            assert_eq!(role(&cluster, ReplicaId(index)), Role::Backup);
            assert_eq!(view(&cluster, ReplicaId(index)), 0);
        }
    }
}

/// §4.1: the primary prepares, commits on a quorum of PrepareOk, then answers.
#[test]
fn normal_operation_commits_on_a_quorum_of_prepare_ok() {
    let mut cluster = settled_cluster(3, 2);
    let now = cluster.now;
    let request = ClientRequest {
        client: ClientId(7),
        request_number: 1,
        operation: create(json!({"title": "a"})),
        consistency: Consistency::Linearizable,
    };
    let entry = Entry {
        op_number: 1,
        view: 0,
        client: ClientId(7),
        request_number: 1,
        operation: request.operation.clone(),
        timestamp: Timestamp(now.as_nanos()),
    };
    let prepare = Message::Prepare { view: 0, commit_number: 0, entries: vec![entry] };
    assert_eq!(
        cluster.input(R0, Input::Request(request)),
        vec![
            Output::Event(Event::Ordered {
                sequence: 1,
                client: ClientId(7),
                request_number: 1,
                operation: "create".into()
            }),
            vr_send(R1, prepare.clone()),
            vr_send(R2, prepare),
        ]
    );
    cluster.drop_in_flight();
    let outputs = cluster.deliver(R1, R0, wrap(Message::PrepareOk { view: 0, op_number: 1 }));
    assert_eq!(outputs[0], Output::Event(Event::Acknowledged { sequence: 1, client: ClientId(7), request_number: 1 }));
    assert!(
        matches!(&outputs[1], Output::Reply { client: ClientId(7), request_number: 1, reply: Reply::Note { note }, .. } if note.id == NoteId(1)),
        "{outputs:?}"
    );
    assert_eq!(cluster.replica(R0).store().len(), 1);
}

/// §4.1 batching: with two prepares unacknowledged, requests wait and the next
/// acknowledgement sends all of them in one prepare.
#[test]
fn requests_arriving_faster_than_acknowledgements_go_out_in_one_prepare() {
    let mut cluster = settled_cluster(3, 2);
    let mut entries_sent_to_r1 = Vec::new();
    for request_number in 1..=6 {
        let request = ClientRequest {
            client: ClientId(request_number),
            request_number: 1,
            operation: create(json!({"n": request_number})),
            consistency: Consistency::Linearizable,
        };
        for output in cluster.input(R0, Input::Request(request)) {
            if let Output::Send { to: R1, message: crate::message::Message::Vr(Message::Prepare { entries, .. }) } =
                output
            {
                entries_sent_to_r1.push(entries.len());
            }
        }
    }
    assert_eq!(entries_sent_to_r1, vec![1, 1], "two prepares in flight, the other requests wait");
    cluster.drop_in_flight();
    let outputs = cluster.deliver(R1, R0, wrap(Message::PrepareOk { view: 0, op_number: 1 }));
    let batches: Vec<usize> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { to: R1, message: crate::message::Message::Vr(Message::Prepare { entries, .. }) } => {
                Some(entries.len())
            }
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![4], "the four waiting requests leave together");
}

/// §4.1 under loss, duplication and reordering; requests at every replica.
#[test]
fn converges_through_loss_duplication_and_reordering() {
    for seed in 0..40 {
        let mut cluster = settled_cluster(3, seed);
        cluster.loss_per_mille = 200;
        cluster.duplicate_per_mille = 200;
        cluster.reorder = true;
        every_kind_of_write(&mut cluster, seed, |cluster| cluster.run_for(Duration::from_secs(5)));
    }
}

/// §4.2: the primary crashes after preparing at one backup; the next view keeps
/// the entry, and the client's retry is answered from the client table (§4.1, exactly once).
#[test]
fn a_primary_crash_mid_prepare_loses_nothing_prepared_at_a_quorum() {
    let mut cluster = settled_cluster(3, 3);
    cluster.request(R0, 9, 1, create(json!({"title": "kept"})));
    let in_flight = cluster.take_in_flight();
    for (from, to, message) in in_flight {
        if to == R1 {
            cluster.deliver(from, to, message);
        }
    }
    cluster.drop_in_flight(); // R1's PrepareOk never reaches R0.
    cluster.crash_and_restart(R0);
    cluster.run_for(Duration::from_secs(3));
    assert_eq!(role(&cluster, R1), Role::Primary, "view 1's primary is R1");
    cluster.request(R2, 9, 1, create(json!({"title": "kept"})));
    cluster.run_for(Duration::from_secs(1));
    assert!(matches!(cluster.reply(9, 1), Some(Reply::Note { note }) if note.id == NoteId(1)));
    assert_eq!(cluster.replica(R1).store().len(), 1, "the retried create made one note");
    assert_eq!(role(&cluster, R0), Role::Backup, "R0 recovered (§4.3) as a backup of view 1");
    cluster.assert_converged();
}

/// §4.2: a primary cut off with a minority cannot commit; the majority elects a new
/// primary, and after the partition heals the old primary joins the new view.
#[test]
fn a_primary_partitioned_with_a_minority_is_replaced() {
    let mut cluster = settled_cluster(5, 4);
    cluster.partition(&[R0, R1], &[R2, ReplicaId(3), ReplicaId(4)]);
    cluster.request(R0, 1, 1, create(json!({"side": "minority"})));
    cluster.run_for(Duration::from_secs(3));
    assert_eq!(cluster.reply(1, 1), None, "the minority side commits nothing");
    let majority_primary = [R2, ReplicaId(3), ReplicaId(4)]
        .into_iter()
        .find(|id| role(&cluster, *id) == Role::Primary)
        .expect("the majority elected a primary");
    cluster.request(majority_primary, 2, 1, create(json!({"side": "majority"})));
    cluster.run_for(Duration::from_secs(1));
    assert!(matches!(cluster.reply(2, 1), Some(Reply::Note { note }) if note.id == NoteId(1)));
    cluster.heal();
    cluster.run_for(Duration::from_secs(3));
    assert!(view(&cluster, R0) > 0, "R0 left view 0");
    cluster.assert_converged();
    let titles: Vec<_> = cluster.replica(R0).store().notes().map(|note| note.body["side"].clone()).collect();
    assert_eq!(titles, vec![json!("majority")], "the minority's uncommitted write was discarded");
}

/// §4.3 while §4.2 is under way: a replica restarts empty during a view change and
/// recovers once the new view is normal.
#[test]
fn a_replica_recovers_while_a_view_change_is_under_way() {
    let mut cluster = settled_cluster(3, 5);
    for request_number in 1..=3 {
        cluster.request(R1, 1, request_number, create(json!({"n": request_number})));
        cluster.run_for(Duration::from_millis(100));
    }
    cluster.partition(&[R0], &[R1, R2]);
    cluster.run_for(Duration::from_millis(900));
    assert!(
        [R1, R2].iter().any(|id| role(&cluster, *id) == Role::ViewChange || view(&cluster, *id) > 0),
        "a view change started"
    );
    cluster.crash_and_restart(R2);
    cluster.run_for(Duration::from_secs(3));
    cluster.heal();
    cluster.run_for(Duration::from_secs(3));
    for id in [R0, R1, R2] {
        assert!(matches!(role(&cluster, id), Role::Primary | Role::Backup), "{id} is normal");
    }
    assert_eq!(cluster.replica(R2).store().len(), 3, "R2 recovered every committed note");
    cluster.assert_converged();
}

/// §4.2 step 3: the new primary needs DoViewChange from a quorum of different
/// replicas; a duplicated one counts once.
#[test]
fn a_duplicated_do_view_change_counts_once() {
    let mut cluster = settled_cluster(5, 6);
    let (r3, r4) = (ReplicaId(3), ReplicaId(4));
    let do_view_change =
        || wrap(Message::DoViewChange { view: 1, log_view: 0, commit_number: 0, after: 0, entries: vec![] });
    cluster.deliver(R2, R1, wrap(Message::StartViewChange { view: 1 }));
    assert_eq!(role(&cluster, R1), Role::ViewChange);
    for _ in 0..3 {
        cluster.deliver(R2, R1, do_view_change());
    }
    assert_eq!(role(&cluster, R1), Role::ViewChange, "three copies of R2's DoViewChange are one, not a quorum of 3");
    cluster.drop_in_flight();
    cluster.deliver(r3, R1, do_view_change());
    cluster.deliver(r4, R1, do_view_change());
    assert_eq!(role(&cluster, R1), Role::Primary, "R1, R2, R3 and R4: a quorum");
    assert_eq!(view(&cluster, R1), 1);
}

/// §4.2: messages of an older view are dropped and counted.
#[test]
fn messages_from_an_older_view_are_dropped_and_counted() {
    let mut cluster = settled_cluster(3, 7);
    cluster.partition(&[R0], &[R1, R2]);
    cluster.run_for(Duration::from_secs(2));
    assert!(view(&cluster, R1) >= 1);
    let before = cluster.replica(R1).counters().messages_dropped;
    let stale = wrap(Message::Commit { view: 0, commit_number: 0 });
    assert_eq!(
        cluster.deliver(R0, R1, stale),
        vec![Output::Event(Event::Dropped { from: R0, reason: DropReason::StaleEpoch })]
    );
    assert_eq!(cluster.replica(R1).counters().messages_dropped, before + 1);
}

/// §5.1–5.2: with a small log, a replica that missed many operations catches up by
/// a snapshot, and every log stays within `log_entries_max`.
#[test]
fn a_lagging_replica_catches_up_by_snapshot_and_logs_stay_bounded() {
    let mut cluster = TestCluster::with_config(VR, 3, 8, |config| {
        config.limits.log_entries_max = 16;
        config.limits.entries_per_message_max = 4;
    });
    cluster.run_for(Duration::from_millis(200));
    cluster.partition(&[R2], &[R0, R1]);
    for request_number in 1..=60 {
        cluster.request(R0, 1, request_number, create(json!({"n": request_number})));
        cluster.run_for(Duration::from_millis(20));
    }
    assert_eq!(cluster.replica(R2).store().len(), 0);
    cluster.heal();
    cluster.run_for(Duration::from_secs(2));
    assert_eq!(cluster.replica(R2).store().len(), 60);
    cluster.assert_converged();
}

/// Reads (§6.3 read round): a primary cut off from its backups does not answer a
/// linearizable read, because no quorum confirms its view.
#[test]
fn a_deposed_primary_answers_no_linearizable_read() {
    let mut cluster = settled_cluster(3, 9);
    cluster.request(R0, 1, 1, create(json!({"v": 1})));
    cluster.run_for(Duration::from_millis(100));
    cluster.partition(&[R0], &[R1, R2]);
    cluster.run_for(Duration::from_secs(2));
    cluster.request(R1, 2, 1, replace(1, json!({"v": 2}), None));
    cluster.run_for(Duration::from_millis(500));
    assert!(cluster.reply(2, 1).is_some(), "the new primary committed the write");
    cluster.request(R0, 3, 1, get(1));
    cluster.run_for(Duration::from_millis(500));
    assert_eq!(cluster.reply(3, 1), None, "no stale read from the old primary");
    cluster.request_with(R0, 4, 1, get(1), Consistency::Local);
    assert!(
        matches!(cluster.reply(4, 1), Some(Reply::Note { note }) if note.version == 1),
        "a local read is served, and stale"
    );
}

/// §4–5 together, under random faults within the model: loss, duplication,
/// reordering, partitions, and crashes of at most `f` replicas at a time. Once
/// faults heal, every create retried is answered, each is stored exactly once, and
/// the replicas converge.
#[test]
fn acknowledged_writes_survive_random_faults_within_the_model() {
    use rand::{Rng, SeedableRng};
    let seeds: u64 = std::env::var("NOTED_VR_STRESS_SEEDS").ok().and_then(|value| value.parse().ok()).unwrap_or(60);
    for seed in 0..seeds {
        let replica_count = if seed % 2 == 0 { 3 } else { 5 };
        let f = (replica_count - 1) / 2;
        let mut cluster = settled_cluster(replica_count, seed);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        cluster.loss_per_mille = rng.random_range(0..200);
        cluster.duplicate_per_mille = rng.random_range(0..200);
        cluster.reorder = true;
        let mut crashed_recently: Vec<ReplicaId> = Vec::new();
        for request_number in 1..=40u64 {
            let at = ReplicaId(rng.random_range(0..replica_count));
            cluster.request(at, request_number, 1, create(json!({"n": request_number})));
            match rng.random_range(0..10) {
                0 if crashed_recently.len() < f as usize => {
                    let victim = ReplicaId(rng.random_range(0..replica_count));
                    if !crashed_recently.contains(&victim) {
                        cluster.crash_and_restart(victim);
                        crashed_recently.push(victim);
                    }
                }
                1 => {
                    let isolated = ReplicaId(rng.random_range(0..replica_count));
                    let others: Vec<ReplicaId> =
                        (0..replica_count).map(ReplicaId).filter(|id| *id != isolated).collect();
                    cluster.partition(&[isolated], &others);
                }
                2 => cluster.heal(),
                _ => {}
            }
            cluster.run_for(Duration::from_millis(rng.random_range(10..300)));
            // A crashed replica counts against f until it has recovered.
            crashed_recently.retain(|id| matches!(role(&cluster, *id), Role::Recovering));
        }
        cluster.heal();
        cluster.loss_per_mille = 0;
        cluster.duplicate_per_mille = 0;
        cluster.run_for(Duration::from_secs(3));
        for request_number in 1..=40u64 {
            cluster.request(ReplicaId(0), request_number, 1, create(json!({"n": request_number})));
        }
        cluster.run_for(Duration::from_secs(10));
        let acknowledged: Vec<u64> =
            (1..=40u64).filter(|client| matches!(cluster.reply(*client, 1), Some(Reply::Note { .. }))).collect();
        let stored: Vec<u64> =
            cluster.replica(R0).store().notes().map(|note| note.body["n"].as_u64().expect("n")).collect();
        for request_number in &acknowledged {
            let copies = stored.iter().filter(|n| *n == request_number).count();
            assert_eq!(copies, 1, "seed {seed}: acknowledged create {request_number} is stored exactly once");
        }
        assert_eq!(acknowledged.len(), 40, "seed {seed}: once faults heal, every retried create is answered");
        assert_eq!(acknowledged.len(), 40, "seed {seed}: once faults heal, every retried create is answered");
        cluster.assert_converged();
    }
}

/// The change feed: every replica reports the same changes in the same order.
#[test]
fn every_replica_reports_the_same_change_feed() {
    let mut cluster = settled_cluster(3, 11);
    cluster.request(R1, 1, 1, create(json!({"a": 1})));
    cluster.run_for(Duration::from_millis(300));
    cluster.request(R2, 1, 2, patch(1, json!({"b": 2}), None));
    cluster.run_for(Duration::from_millis(300));
    cluster.request(R0, 1, 3, delete(1, None));
    cluster.run_for(Duration::from_millis(300));
    let feed = |id: ReplicaId| -> Vec<(u64, String)> {
        cluster.changes[id.index()].iter().map(|change| (change.commit, change.operation.clone())).collect()
    };
    assert_eq!(feed(R0), vec![(1, "create".to_string()), (2, "patch".to_string()), (3, "delete".to_string())]);
    assert_eq!(feed(R1), feed(R0));
    assert_eq!(feed(R2), feed(R0));
}

/// §4.2 liveness: a view change that cannot finish is abandoned for the next one
/// after a timeout that doubles each time (up to eight times the configured one),
/// and its messages are resent with a growing wait. Replicas whose view changes
/// take longer than the configured timeout (they carry the whole log) thus still
/// settle on a view; before, they abandoned every view change and never did.
#[test]
fn view_changes_in_a_row_back_off() {
    let mut cluster = settled_cluster(3, 9);
    cluster.partition(&[R1], &[R0, R2]);
    cluster.run_for(Duration::from_secs(30));
    // Timeouts of 0.5, 1, 2, then 4 s (each plus up to half again): at most 10 views
    // in 30 s; a fixed 0.5 s timeout would have tried over 40.
    let views_tried = view(&cluster, R1);
    assert!((4..=10).contains(&views_tried), "R1 tried {views_tried} views");
    let start_view_changes = sent_by(&cluster, R1, |message| matches!(message, Message::StartViewChange { .. }));
    // Every 50 ms to each peer would be 1,200 messages.
    assert!(start_view_changes <= 200, "R1 sent {start_view_changes} StartViewChange messages");

    cluster.heal();
    cluster.run_for(Duration::from_secs(10));
    assert!(matches!(role(&cluster, R1), Role::Primary | Role::Backup), "R1 joined a view after the partition");
    cluster.request(R1, 1, 1, create(json!({"after": "the partition"})));
    cluster.run_for(Duration::from_secs(2));
    assert!(matches!(cluster.reply(1, 1), Some(Reply::Note { .. })), "the cluster serves: {:?}", cluster.reply(1, 1));
    cluster.assert_converged();
}

/// §4.3 and §5.2 under load: requests answered with a snapshot (Recovery, GetState)
/// are resent after a growing wait, up to the view change timeout, so that a replica
/// that restarts empty next to a large store does not keep the primary busy
/// building snapshots every retransmit timeout (which made its backups start
/// view changes).
#[test]
fn unanswered_recovery_requests_back_off() {
    let mut cluster = settled_cluster(3, 10);
    cluster.crash_and_restart(R1);
    cluster.partition(&[R1], &[R0, R2]);
    cluster.run_for(Duration::from_secs(10));
    let recovery_requests = sent_by(&cluster, R1, |message| matches!(message, Message::Recovery { .. }));
    // Waits of 50, 100, 200, 400 ms, then 500 ms: 23 rounds to two peers in 10 s,
    // where every 50 ms would be 400 messages.
    assert!(recovery_requests <= 60, "R1 sent {recovery_requests} Recovery messages");
    cluster.heal();
    cluster.run_for(Duration::from_secs(3));
    assert!(matches!(role(&cluster, R1), Role::Backup | Role::Primary), "R1 recovered after the partition");
    cluster.assert_converged();
}

/// §4.3 and §5.2 with bounded messages: a replica that restarted with empty memory,
/// behind the primary's retained log, stays recovering while it fetches a snapshot
/// chunk by chunk, installs it once complete and verified, then takes the entries
/// after it and rejoins; no message it is sent exceeds its bound.
#[test]
fn a_restarted_replica_recovers_a_large_store_in_chunks() {
    let small = |config: &mut crate::config::Config| {
        config.limits.log_entries_max = 8;
        config.limits.entries_per_message_max = 4;
        config.limits.message_bytes_max = 2_048;
        config.limits.store.page_bytes_max = 2_048;
        config.limits.uncommitted_bytes_max = 8_192;
        config.limits.log_bytes_max = 16_384;
        config.limits.store.body_bytes_max = 1_500;
    };
    let mut cluster = TestCluster::with_config(VR, 3, 21, small);
    cluster.run_for(Duration::from_millis(200));
    for request_number in 1..=40 {
        let body = json!({ "title": format!("note {request_number}"), "pad": "p".repeat(1_000) });
        cluster.request(R0, 5, request_number, create(body));
        cluster.run(10_000);
        assert!(matches!(cluster.reply(5, request_number), Some(Reply::Note { .. })));
    }
    cluster.crash_and_restart(R2);
    cluster.run(50_000);
    cluster.run_for(Duration::from_millis(500));
    assert_eq!(role(&cluster, R2), Role::Backup, "R2 recovered");
    assert_eq!(cluster.replica(R2).store().len(), 40);
    cluster.assert_converged();
    let chunks = sent_by(&cluster, R0, |message| matches!(message, Message::SnapshotChunk { .. }));
    assert!(chunks >= 20, "about two notes a chunk: {chunks} chunks");
    for (from, to, message) in cluster.sent_log() {
        let bytes = crate::wire::payload_len(crate::ids::ClusterId(1), from, to, &message);
        let mut config = crate::config::Config::new(crate::ids::ClusterId(1), from, 3, VR, 0);
        small(&mut config);
        let bound = crate::wire::size::message_bound(&message, &config.limits);
        assert!(bytes <= bound, "{from} sent a {} of {bytes} bytes, over {bound}", message.kind());
    }
}

/// §4.2 with a new primary missing committed entries: the log it adopts starts
/// after its commit number, so it fetches what lies between from that log's
/// sender, in batches. Its own entries past a batch are of an older view and may
/// differ from the adopted log's: it executes only what a batch showed equal,
/// and the adopted log replaces the rest from the first entry that differs.
#[test]
fn a_new_primary_executes_only_fetched_entries_of_the_log_it_adopts() {
    let entry = |op_number: u64, view: u64, title: &str| Entry {
        op_number,
        view,
        client: ClientId(op_number),
        request_number: 1,
        operation: create(json!({ "title": title })),
        timestamp: Timestamp(op_number),
    };
    let config = crate::config::Config::new(crate::ids::ClusterId(1), R2, 3, VR, 1);
    let now = Instant::ZERO + Duration::from_secs(1);
    let mut vr = Vr::new(config, now);
    // R2 holds ops 1-3 of view 1, op 1 committed; its op 3 was never committed.
    vr.status = ReplicaStatus::Normal;
    vr.view = 1;
    vr.log_view = 1;
    for op_number in 1..=3 {
        vr.log.append(entry(op_number, 1, &format!("op {op_number} of view 1")));
    }
    vr.timers = Timers::default();
    vr.commit_through(1, &mut Outputs::default());
    // View 4's log, R1's: op 3 is another entry, of view 4, and ops 1-3 are committed.
    let theirs = [entry(1, 1, "op 1 of view 1"), entry(2, 1, "op 2 of view 1"), entry(3, 4, "op 3 of view 4")];
    let new_state = |after: u64, entries: &[Entry]| {
        let message = Message::NewState {
            view: 5,
            op_number: 4,
            commit_number: 3,
            after,
            snapshot: None,
            entries: entries.to_vec(),
        };
        wrap(message)
    };
    let mut outputs = Outputs::default();
    vr.start_view_change(now, 5, &mut outputs);
    vr.on_message(now, R1, wrap(Message::StartViewChange { view: 5 }), &mut outputs);
    let do_view_change =
        Message::DoViewChange { view: 5, log_view: 4, commit_number: 3, after: 3, entries: vec![entry(4, 4, "op 4")] };
    vr.on_message(now, R1, wrap(do_view_change), &mut outputs);
    assert_eq!(vr.view_change.awaiting_state_from, Some(R1), "R2 fetches ops 2 and 3 from R1");
    // A batch of op 2 only: R2's op 3 is not shown to be R1's, and is not executed.
    vr.on_message(now, R1, new_state(1, &theirs[1..2]), &mut outputs);
    assert_eq!(vr.commit_number, 2, "only the fetched entry is executed");
    assert_eq!(vr.status, ReplicaStatus::ViewChange, "still missing op 3");
    vr.on_message(now, R1, new_state(2, &theirs[2..3]), &mut outputs);
    assert_eq!(vr.status, ReplicaStatus::Normal, "view 5 started");
    assert!(vr.is_primary());
    assert_eq!(vr.commit_number, 3);
    assert_eq!(vr.log.get(3), Some(&theirs[2]), "R1's op 3 replaced R2's");
    assert_eq!(vr.log.get(4), Some(&entry(4, 4, "op 4")));
    let note = vr.store.get(NoteId(3)).expect("op 3 created note 3");
    assert_eq!(note.body.get("title"), Some(&json!("op 3 of view 4")));
}
