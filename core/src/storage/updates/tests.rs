//! Primary-backup clusters on in-memory disks: what waits for a sync, and what a
//! restart reads back.

use std::collections::VecDeque;

use serde_json::json;

use crate::config::{Config, ProtocolKind, StorageKind};
use crate::ids::{ClientId, ClusterId, NoteId, ReplicaId};
use crate::message::Message;
use crate::operation::{ClientRequest, Consistency, Operation, Reply};
use crate::protocol::remote_write::Message as RemoteWriteMessage;
use crate::replica::{Input, Output, Replica};
use crate::storage::format::{RecordKind, chain_seed, encode_record};
use crate::storage::{DiskFile, DiskImage, OpenError, StorageOp, format};
use crate::test_cluster::{R0, R1};
use crate::time::Instant;

const REMOTE_WRITE: ProtocolKind = ProtocolKind::RemoteWrite { primary: R0 };

fn config(replica: ReplicaId) -> Config {
    config_of(REMOTE_WRITE, 2, replica)
}

fn config_of(protocol: ProtocolKind, replica_count: u8, replica: ReplicaId) -> Config {
    let mut config = Config::new(ClusterId(4), replica, replica_count, protocol, 1);
    config.storage = StorageKind::Disk;
    config
}

struct Node {
    replica: Replica,
    disk: DiskImage,
    syncs: VecDeque<u64>,
}

/// The host of every replica: writes land at once, syncs complete when `settle` says.
struct Hosts {
    nodes: Vec<Node>,
    configs: Vec<Config>,
    now: Instant,
    in_flight: VecDeque<(ReplicaId, ReplicaId, Message)>,
    replies: Vec<Reply>,
}

impl Hosts {
    fn formatted(adjust: impl Fn(&mut Config)) -> Hosts {
        Hosts::formatted_of(REMOTE_WRITE, 2, adjust)
    }

    fn formatted_of(protocol: ProtocolKind, replica_count: u8, adjust: impl Fn(&mut Config)) -> Hosts {
        let configs: Vec<Config> = (0..replica_count)
            .map(|replica| {
                let mut config = config_of(protocol, replica_count, ReplicaId(replica));
                adjust(&mut config);
                config
            })
            .collect();
        let now = Instant::from_millis(1);
        let nodes = configs
            .iter()
            .map(|config| {
                let disk: DiskImage = format(config).into_iter().collect();
                let replica = Replica::open(config.clone(), &disk, now).expect("a new directory opens");
                Node { replica, disk, syncs: VecDeque::new() }
            })
            .collect();
        Hosts { nodes, configs, now, in_flight: VecDeque::new(), replies: Vec::new() }
    }

    /// Gives `input` to `at` and carries out what it asks; returns its messages.
    fn input(&mut self, at: ReplicaId, input: Input) -> Vec<(ReplicaId, Message)> {
        let node = &mut self.nodes[at.index()];
        let mut sent = Vec::new();
        for output in node.replica.handle(self.now, input) {
            match output {
                Output::Storage(StorageOp::Write { file, offset, bytes }) => {
                    let contents = node.disk.entry(file).or_default();
                    let end = offset as usize + bytes.len();
                    if contents.len() < end {
                        contents.resize(end, 0);
                    }
                    contents[offset as usize..end].copy_from_slice(&bytes);
                }
                Output::Storage(StorageOp::Remove { file }) => {
                    node.disk.remove(&file);
                }
                Output::Storage(StorageOp::Sync { id }) => node.syncs.push_back(id),
                Output::Send { to, message } => {
                    self.in_flight.push_back((at, to, message.clone()));
                    sent.push((to, message));
                }
                Output::Reply { reply, .. } => self.replies.push(reply),
                Output::Event(_) => {}
            }
        }
        sent
    }

    /// Completes syncs, delivers messages and runs timers for a simulated second.
    fn settle(&mut self) {
        let until = self.now + core::time::Duration::from_secs(1);
        for _ in 0..100_000 {
            let count = self.nodes.len();
            if let Some(at) = (0..count).find(|index| !self.nodes[*index].syncs.is_empty()) {
                let id = self.nodes[at].syncs.pop_front().expect("found");
                self.input(ReplicaId(at as u8), Input::Synced { id });
                continue;
            }
            if let Some((from, to, message)) = self.in_flight.pop_front() {
                self.input(to, Input::Message { from, message });
                continue;
            }
            let next =
                (0..count).filter_map(|index| self.nodes[index].replica.next_timeout().map(|at| (at, index))).min();
            match next {
                Some((at, index)) if at <= until => {
                    self.now = at.max(self.now);
                    self.input(ReplicaId(index as u8), Input::Timeout);
                }
                _ => return,
            }
        }
        panic!("the cluster never settles");
    }

    fn create(&mut self, at: ReplicaId, request_number: u64, title: &str) -> Reply {
        self.write(at, request_number, Operation::Create { body: json!({ "title": title }) })
    }

    fn write(&mut self, at: ReplicaId, request_number: u64, operation: Operation) -> Reply {
        let request =
            ClientRequest { client: ClientId(1), request_number, operation, consistency: Consistency::Linearizable };
        self.input(at, Input::Request(request));
        self.settle();
        self.replies.pop().expect("the write is answered")
    }

    /// Every replica holds the same notes.
    fn assert_converged(&self) {
        let digests: Vec<u64> = self.nodes.iter().map(|node| node.replica.store().digest()).collect();
        assert!(digests.windows(2).all(|pair| pair[0] == pair[1]), "{digests:?}");
    }

    /// Every replica loses power at once, and restarts from what its disk holds.
    fn restart_all(&mut self) {
        self.in_flight.clear();
        self.now = self.now + core::time::Duration::from_secs(1);
        for (node, config) in self.nodes.iter_mut().zip(&self.configs) {
            node.syncs.clear();
            node.replica = Replica::open(config.clone(), &node.disk, self.now).expect("the directory opens");
        }
        self.settle();
    }
}

fn note_id(reply: &Reply) -> NoteId {
    match reply {
        Reply::Note { note } => note.id,
        other => panic!("not a note: {other:?}"),
    }
}

#[test]
fn a_primary_restarted_from_its_disk_keeps_its_sequences_and_note_ids() {
    let mut hosts = Hosts::formatted(|_| {});
    for number in 1..=3 {
        assert_eq!(note_id(&hosts.create(R0, number, "before")), NoteId(number));
    }
    hosts.restart_all();
    assert_eq!(hosts.nodes[0].replica.status().applied, 3);
    assert_eq!(hosts.nodes[1].replica.store().len(), 3);
    // A retry of an answered write is answered from the restored client table.
    assert_eq!(note_id(&hosts.create(R1, 3, "before")), NoteId(3));
    assert_eq!(note_id(&hosts.create(R1, 4, "after")), NoteId(4));
    assert_eq!(hosts.nodes[0].replica.status().applied, 4);
    assert_eq!(hosts.nodes[1].replica.store().get(NoteId(4)).unwrap().body["title"], "after");
    assert_eq!(hosts.nodes[0].replica.store().digest(), hosts.nodes[1].replica.store().digest());
}

#[test]
fn a_backup_acknowledges_and_a_primary_sends_an_update_only_after_its_sync() {
    let mut hosts = Hosts::formatted(|_| {});
    hosts.settle();
    let request = ClientRequest {
        client: ClientId(1),
        request_number: 1,
        operation: Operation::Create { body: json!({ "title": "a" }) },
        consistency: Consistency::Linearizable,
    };
    assert_eq!(hosts.input(R0, Input::Request(request)), vec![], "the update waits for the primary's sync");
    let sync = hosts.nodes[0].syncs.pop_front().expect("the primary syncs its update");
    let sent = hosts.input(R0, Input::Synced { id: sync });
    assert!(
        matches!(&sent[..], [(R1, Message::RemoteWrite(RemoteWriteMessage::Update { entries, .. }))] if entries.len() == 1),
        "{sent:?}"
    );
    let (from, _, update) = hosts.in_flight.pop_front().expect("sent");
    assert_eq!(hosts.input(R1, Input::Message { from, message: update }), vec![], "the ack waits for the sync");
    let sync = hosts.nodes[1].syncs.pop_front().expect("the backup syncs the update");
    let sent = hosts.input(R1, Input::Synced { id: sync });
    assert!(
        matches!(&sent[..], [(R0, Message::RemoteWrite(RemoteWriteMessage::UpdateAck { applied: 1, .. }))]),
        "{sent:?}"
    );
    assert!(hosts.replies.is_empty(), "the client is answered only once the backup acknowledged");
    hosts.settle();
    assert_eq!(note_id(&hosts.replies.pop().expect("answered")), NoteId(1));
}

#[test]
fn the_log_is_checkpointed_and_a_restart_reads_the_checkpoint_and_the_log_after_it() {
    let mut hosts = Hosts::formatted(|config| {
        config.limits.log_bytes_max = 8_192;
        config.limits.uncommitted_bytes_max = 4_096;
        config.limits.message_bytes_max = 4_096;
        config.limits.store.body_bytes_max = 1_024;
        config.limits.store.page_bytes_max = 4_096;
    });
    for number in 1..=150 {
        hosts.create(R1, number, "a note long enough to fill the log file before long");
    }
    for node in &hosts.nodes {
        let wals: Vec<&DiskFile> = node.disk.keys().filter(|file| matches!(file, DiskFile::Wal { .. })).collect();
        assert!(matches!(wals[..], [DiskFile::Wal { generation }] if *generation > 2), "{wals:?}");
        let length = node.disk[wals[0]].len();
        assert!(length < 3 * 8_192, "the log file stays near its bound: {length} bytes");
    }
    hosts.restart_all();
    for node in &hosts.nodes {
        assert_eq!(node.replica.store().len(), 150);
        assert_eq!(node.replica.status().applied, 150);
    }
    assert_eq!(note_id(&hosts.create(R0, 151, "next")), NoteId(151));
}

#[test]
fn a_damaged_checkpoint_or_another_protocols_log_is_refused() {
    let mut hosts = Hosts::formatted(|_| {});
    hosts.create(R0, 1, "a");
    hosts.restart_all();
    let disk = hosts.nodes[0].disk.clone();
    let checkpoint = *disk.keys().find(|file| matches!(file, DiskFile::Checkpoint { .. })).unwrap();
    let mut damaged = disk.clone();
    damaged.get_mut(&checkpoint).unwrap()[10] ^= 4;
    let refused = Replica::open(config(R0), &damaged, hosts.now).unwrap_err();
    assert!(matches!(refused, OpenError::CheckpointDamaged { .. }), "{refused}");
    // An intact record remote-write never writes (a vr commit record): another protocol's.
    let wal = *disk.keys().find(|file| matches!(file, DiskFile::Wal { .. })).unwrap();
    assert!(disk[&wal].is_empty(), "a restart begins a new generation");
    let mut foreign = disk.clone();
    let body = postcard::to_allocvec(&1u64).unwrap();
    encode_record(foreign.get_mut(&wal).unwrap(), RecordKind::Commit, chain_seed(ClusterId(4), R0, wal), &body);
    let refused = Replica::open(config(R0), &foreign, hosts.now).unwrap_err();
    assert!(matches!(refused, OpenError::OtherProtocol { .. }), "{refused}");
    assert!(Replica::open(config(R0), &disk, hosts.now).is_ok());
}

/// Local-write: notes created at different replicas and moved between them keep their
/// owners, epochs and ids across a restart of every replica, and keep moving after it.
#[test]
fn local_write_replicas_restarted_from_their_disks_keep_what_they_own_and_applied() {
    let mut hosts = Hosts::formatted_of(ProtocolKind::LocalWrite, 3, |_| {});
    let r2 = ReplicaId(2);
    assert_eq!(note_id(&hosts.create(R0, 1, "at R0")), NoteId(1));
    assert_eq!(note_id(&hosts.create(R1, 2, "at R1, through the counter")), NoteId(2));
    let put = |title: &str| Operation::Replace { id: NoteId(1), body: json!({ "title": title }), if_match: None };
    assert!(matches!(hosts.write(r2, 3, put("moved to R2")), Reply::Note { .. }));
    let owners_before: Vec<_> = hosts.nodes.iter().map(|node| node.replica.status().role).collect();
    hosts.restart_all();
    let owners_after: Vec<_> = hosts.nodes.iter().map(|node| node.replica.status().role).collect();
    assert_eq!(owners_before, owners_after, "every replica owns what it owned");
    assert_eq!(hosts.nodes[2].replica.status().applied, 3);
    // A retry is answered from the restored client tables; new writes go on from there.
    assert!(matches!(hosts.write(r2, 3, put("moved to R2")), Reply::Note { note } if note.version == 2));
    assert_eq!(note_id(&hosts.create(r2, 4, "after")), NoteId(3));
    assert!(matches!(hosts.write(R0, 5, put("back at R0")), Reply::Note { note } if note.version == 3));
    hosts.assert_converged();
}

/// Local-write: an owner crashes before every replica acknowledged its update; once
/// restarted it sends the update again, and the other replicas converge on it.
#[test]
fn a_local_write_owner_sends_its_unacknowledged_updates_again_after_a_restart() {
    let mut hosts = Hosts::formatted_of(ProtocolKind::LocalWrite, 3, |_| {});
    hosts.create(R0, 1, "first");
    let request = ClientRequest {
        client: ClientId(1),
        request_number: 2,
        operation: Operation::Create { body: json!({ "title": "second" }) },
        consistency: Consistency::Linearizable,
    };
    hosts.input(R0, Input::Request(request));
    let sync = hosts.nodes[0].syncs.pop_front().expect("the owner syncs its update");
    let sent = hosts.input(R0, Input::Synced { id: sync });
    assert_eq!(sent.len(), 2, "the update leaves for both peers once synced: {sent:?}");
    hosts.restart_all();
    assert!(hosts.nodes.iter().all(|node| node.replica.store().len() == 2), "the update was sent again");
    hosts.assert_converged();
}
