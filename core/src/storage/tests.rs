//! A one-replica vr cluster on an in-memory disk: what it writes, what a restart
//! reads back, and what it refuses.

use serde_json::json;

use super::format::{FORMAT_VERSION, RECORD_HEADER_BYTES};
use super::{DiskFile, DiskImage, OpenError, StorageOp, format, open};
use crate::config::{Config, Limits, ProtocolKind, StorageKind};
use crate::ids::{ClientId, ClusterId, NoteId, ReplicaId};
use crate::operation::{ClientRequest, Consistency, Operation, Reply};
use crate::replica::{Input, Output, Replica};
use crate::time::Instant;

fn config() -> Config {
    let mut config = Config::new(ClusterId(9), ReplicaId(0), 1, ProtocolKind::Vr, 1);
    config.storage = StorageKind::Disk;
    config
}

/// A log bound of 8 KiB (and limits that fit it): checkpoints every few dozen notes.
fn small_log_config() -> Config {
    let mut config = config();
    config.limits.log_bytes_max = 8_192;
    config.limits.uncommitted_bytes_max = 4_096;
    config.limits.message_bytes_max = 4_096;
    config.limits.store.body_bytes_max = 1_024;
    config.limits.store.page_bytes_max = 4_096;
    config
}

/// The host: applies writes at once, answers each sync at the next step.
struct Host {
    replica: Replica,
    disk: DiskImage,
    now: Instant,
    syncs: Vec<u64>,
    replies: Vec<Reply>,
}

impl Host {
    fn formatted() -> Host {
        let disk: DiskImage = format(&config()).into_iter().collect();
        Host::open(disk)
    }

    fn open(disk: DiskImage) -> Host {
        let replica = Replica::open(config(), &disk, Instant::from_millis(1)).expect("the directory opens");
        let mut host = Host { replica, disk, now: Instant::from_millis(1), syncs: Vec::new(), replies: Vec::new() };
        host.settle();
        host
    }

    fn input(&mut self, input: Input) {
        for output in self.replica.handle(self.now, input) {
            match output {
                Output::Storage(StorageOp::Write { file, offset, bytes }) => {
                    let contents = self.disk.entry(file).or_default();
                    let end = offset as usize + bytes.len();
                    if contents.len() < end {
                        contents.resize(end, 0);
                    }
                    contents[offset as usize..end].copy_from_slice(&bytes);
                }
                Output::Storage(StorageOp::Remove { file }) => {
                    self.disk.remove(&file);
                }
                Output::Storage(StorageOp::Sync { id }) => self.syncs.push(id),
                Output::Reply { reply, .. } => self.replies.push(reply),
                Output::Send { .. } | Output::Event(_) => {}
            }
        }
    }

    /// Completes syncs and runs timers for a simulated second.
    fn settle(&mut self) {
        let until = self.now + core::time::Duration::from_secs(1);
        for _ in 0..100_000 {
            if let Some(id) = self.syncs.pop() {
                self.input(Input::Synced { id });
                continue;
            }
            match self.replica.next_timeout() {
                Some(at) if at <= until => {
                    self.now = at.max(self.now);
                    self.input(Input::Timeout);
                }
                _ => return,
            }
        }
        panic!("the replica never settles");
    }

    fn create(&mut self, request_number: u64, title: &str) -> Reply {
        let operation = Operation::Create { body: json!({ "title": title }) };
        let request =
            ClientRequest { client: ClientId(1), request_number, operation, consistency: Consistency::Linearizable };
        self.input(Input::Request(request));
        self.settle();
        self.replies.pop().expect("the create is answered")
    }
}

fn wal(disk: &DiskImage) -> (DiskFile, usize) {
    let (file, bytes) = disk.iter().filter(|(file, _)| matches!(file, DiskFile::Wal { .. })).max().unwrap();
    (*file, bytes.len())
}

#[test]
fn a_replica_restarted_from_its_directory_keeps_every_acknowledged_write() {
    let mut host = Host::formatted();
    for number in 1..=20 {
        let reply = host.create(number, &format!("note {number}"));
        assert!(matches!(reply, Reply::Note { .. }), "{reply:?}");
    }
    let restarted = Host::open(host.disk.clone());
    assert_eq!(restarted.replica.store().len(), 20);
    assert_eq!(restarted.replica.store().get(NoteId(20)).unwrap().body["title"], "note 20");
    assert!(!restarted.replica.status().repairing);
}

#[test]
fn a_torn_last_write_is_dropped_and_damage_to_synced_bytes_is_repaired_not_truncated() {
    let mut host = Host::formatted();
    for number in 1..=5 {
        host.create(number, "kept");
    }
    // A write no acknowledgement waited for, torn by a power cut: dropped quietly.
    let (file, length) = wal(&host.disk);
    let mut torn = host.disk.clone();
    torn.get_mut(&file).unwrap().extend_from_slice(&[0x6e, 0x74, 0x64, 0, 1, 0, 1]);
    let recovered = open(&config(), &torn).unwrap();
    assert_eq!(recovered.damage, None);
    assert_eq!(recovered.wal_end as usize, length);
    // A flipped byte inside a record that was synced (and proven so, by a Durable
    // record after it): the replica repairs from its peers.
    let proven = open(&config(), &host.disk).unwrap().wal_proven as usize;
    assert!(proven > RECORD_HEADER_BYTES && proven <= length);
    let mut damaged = host.disk.clone();
    damaged.get_mut(&file).unwrap()[proven - 3] ^= 0x20;
    let recovered = open(&config(), &damaged).unwrap();
    assert!(recovered.damage.as_deref().is_some_and(|damage| damage.contains("synced through")), "{recovered:?}");
    let restarted = Replica::open(config(), &damaged, Instant::from_millis(1)).unwrap();
    assert!(restarted.status().repairing);
}

#[test]
fn a_damaged_superblock_copy_is_outvoted_and_a_damaged_checkpoint_is_repaired() {
    let host = Host::formatted();
    let mut disk = host.disk.clone();
    disk.get_mut(&DiskFile::Superblock { copy: 2 }).unwrap()[RECORD_HEADER_BYTES + 1] ^= 1;
    let recovered = open(&config(), &disk).unwrap();
    assert_eq!(recovered.copies_current, [true, true, false, true]);
    assert_eq!(recovered.damage, None);
    let checkpoint = *disk.keys().find(|file| matches!(file, DiskFile::Checkpoint { .. })).unwrap();
    disk.get_mut(&checkpoint).unwrap()[10] ^= 4;
    let recovered = open(&config(), &disk).unwrap();
    assert!(recovered.damage.is_some());
}

#[test]
fn a_directory_of_another_cluster_replica_or_format_is_refused() {
    let disk: DiskImage = format(&config()).into_iter().collect();
    let other_cluster = Config { cluster: ClusterId(10), ..config() };
    assert_eq!(open(&other_cluster, &disk).unwrap_err(), OpenError::ForeignCluster { found: 9, expected: 10 });
    let mut three = config();
    three.replica_count = 3;
    let other_replica = Config { replica: ReplicaId(1), ..three.clone() };
    assert_eq!(
        open(&other_replica, &disk).unwrap_err(),
        OpenError::OtherReplica { found: ReplicaId(0), expected: ReplicaId(1) }
    );
    assert_eq!(open(&three, &disk).unwrap_err(), OpenError::OtherClusterSize { found: 1, expected: 3 });
    assert_eq!(open(&config(), &DiskImage::new()).unwrap_err(), OpenError::Unformatted);
    let mut future = disk.clone();
    for copy in 0..4 {
        let bytes = future.get_mut(&DiskFile::Superblock { copy }).unwrap();
        bytes[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..32]);
        bytes[32..40].copy_from_slice(&checksum.to_le_bytes());
    }
    assert_eq!(
        open(&config(), &future).unwrap_err(),
        OpenError::UnknownVersion { found: FORMAT_VERSION + 1, supported: FORMAT_VERSION }
    );
}

#[test]
fn the_log_is_checkpointed_and_old_generations_are_removed() {
    let config_small = small_log_config();
    let disk: DiskImage = format(&config_small).into_iter().collect();
    let replica = Replica::open(config_small.clone(), &disk, Instant::from_millis(1)).unwrap();
    let mut host = Host { replica, disk, now: Instant::from_millis(1), syncs: Vec::new(), replies: Vec::new() };
    host.settle();
    for number in 1..=200 {
        host.create(number, "a note long enough to fill the log file before long");
    }
    let generations: Vec<&DiskFile> = host.disk.keys().filter(|file| matches!(file, DiskFile::Wal { .. })).collect();
    assert_eq!(generations.len(), 1, "old generations are removed: {generations:?}");
    assert!(matches!(generations[0], DiskFile::Wal { generation } if *generation > 1));
    assert!(wal(&host.disk).1 < 3 * 8_192, "the log file stays near its bound");
    // Executed once the restarted replica's view starts (the last commit record may
    // not name the last entry).
    let replica = Replica::open(config_small, &host.disk, Instant::from_millis(1)).unwrap();
    let mut restarted =
        Host { replica, disk: host.disk.clone(), now: Instant::from_millis(1), syncs: Vec::new(), replies: Vec::new() };
    restarted.settle();
    assert_eq!(restarted.replica.store().len(), 200);
}

#[test]
fn file_names_round_trip_and_strangers_are_not_taken() {
    for file in
        [DiskFile::Superblock { copy: 3 }, DiskFile::Wal { generation: 12 }, DiskFile::Checkpoint { generation: 1 }]
    {
        assert_eq!(DiskFile::parse(&file.name()), Some(file));
    }
    for name in ["superblock.4", "wal.", "wal.01", "wal.x", "LOCK", "checkpoint.1.tmp", "wal.-1"] {
        assert_eq!(DiskFile::parse(name), None, "{name}");
    }
}

#[test]
fn a_primary_whose_disk_stalls_steps_down_and_serves_again_when_it_returns() {
    let mut host = Host::formatted();
    host.create(1, "before");
    let view = host.replica.status().view.unwrap();
    host.input(Input::StorageStalled);
    let status = host.replica.status();
    assert!(status.storage_stalled);
    assert_eq!(status.role, crate::replica::Role::ViewChange, "a primary that cannot sync steps down");
    // Nothing it cannot make durable is answered, however long it waits.
    let operation = Operation::Create { body: json!({ "title": "during" }) };
    let request =
        ClientRequest { client: ClientId(1), request_number: 2, operation, consistency: Consistency::Linearizable };
    host.input(Input::Request(request));
    let held = std::mem::take(&mut host.syncs); // The host holds them until the disk returns.
    host.settle();
    let held = [held, std::mem::take(&mut host.syncs)].concat();
    assert!(host.replies.is_empty(), "{:?}", host.replies);
    assert_eq!(host.replica.status().view, Some(view + 1), "no view change of its own while stalled");

    host.input(Input::StorageResumed);
    host.syncs.extend(held);
    host.settle();
    let status = host.replica.status();
    assert!(!status.storage_stalled);
    assert_eq!(status.role, crate::replica::Role::Primary);
    assert!(matches!(host.replies.pop(), Some(Reply::Note { .. })), "the waiting create is answered");
}

/// The timestamp of the note a create made.
fn created_at(reply: &Reply) -> crate::hlc::Timestamp {
    match reply {
        Reply::Note { note, .. } => note.created_at,
        other => panic!("not a note: {other:?}"),
    }
}

#[test]
fn timestamps_after_a_restart_are_above_every_one_on_disk_even_when_the_clock_went_back() {
    // A small log bound, so that the latest timestamp is also read from a checkpoint.
    for log_bytes_max in [Limits::default().log_bytes_max, 8_192] {
        let config = if log_bytes_max < Limits::default().log_bytes_max { small_log_config() } else { config() };
        let disk: DiskImage = format(&config).into_iter().collect();
        let ahead = Instant::from_millis(5_000_000);
        let replica = Replica::open(config.clone(), &disk, ahead).unwrap();
        let mut host = Host { replica, disk, now: ahead, syncs: Vec::new(), replies: Vec::new() };
        host.settle();
        let mut latest = crate::hlc::Timestamp::default();
        for number in 1..=60 {
            latest = latest.max(created_at(&host.create(number, "written while the clock was ahead")));
        }
        // The newest note goes: only the store's own record of timestamps keeps it.
        let newest = host.replica.store().meta().next_id.0 - 1;
        let operation = Operation::Delete { id: NoteId(newest), if_match: None };
        let request = ClientRequest {
            client: ClientId(1),
            request_number: 61,
            operation,
            consistency: Consistency::Linearizable,
        };
        host.input(Input::Request(request));
        host.settle();

        if log_bytes_max < Limits::default().log_bytes_max {
            let checkpointed =
                host.disk.keys().any(|file| matches!(file, DiskFile::Checkpoint { generation } if *generation > 1));
            assert!(checkpointed, "the small log bound made a checkpoint");
        }
        let behind = Instant::from_millis(1);
        let replica = Replica::open(config, &host.disk, behind).unwrap();
        let mut restarted =
            Host { replica, disk: host.disk.clone(), now: behind, syncs: Vec::new(), replies: Vec::new() };
        restarted.settle();
        let after = created_at(&restarted.create(62, "written after the restart"));
        assert!(after > latest, "log bound {log_bytes_max}: {after:?} after {latest:?}");
    }
}

#[test]
fn a_checkpoint_a_crash_interrupted_is_never_written_over() {
    let config = small_log_config();
    let disk: DiskImage = format(&config).into_iter().collect();
    let replica = Replica::open(config.clone(), &disk, Instant::from_millis(1)).unwrap();
    let mut host = Host { replica, disk, now: Instant::from_millis(1), syncs: Vec::new(), replies: Vec::new() };
    host.settle();
    // Power fails once the next generation's files are written, before any superblock copy names them.
    let interrupted = |disk: &DiskImage| {
        let generation = open(&config, disk).unwrap().superblock.generation;
        disk.contains_key(&DiskFile::Wal { generation: generation + 1 })
    };
    let mut number = 0;
    let crashed = 'steps: loop {
        number += 1;
        assert!(number < 500, "no checkpoint was taken");
        let operation = Operation::Create { body: json!({ "title": "a note long enough to fill the log file soon" }) };
        let request = ClientRequest {
            client: ClientId(1),
            request_number: number,
            operation,
            consistency: Consistency::Linearizable,
        };
        host.input(Input::Request(request));
        while let Some(id) = host.syncs.pop() {
            if interrupted(&host.disk) {
                break 'steps host.disk.clone();
            }
            host.input(Input::Synced { id });
        }
        if interrupted(&host.disk) {
            break host.disk.clone();
        }
    };
    let recovered = open(&config, &crashed).unwrap();
    let orphan = recovered.superblock.generation + 1;
    assert!(recovered.orphans.contains(&DiskFile::Wal { generation: orphan }), "{:?}", recovered.orphans);

    let replica = Replica::open(config.clone(), &crashed, Instant::from_millis(1)).unwrap();
    let mut restarted =
        Host { replica, disk: crashed, now: Instant::from_millis(1), syncs: Vec::new(), replies: Vec::new() };
    restarted.settle();
    for more in 1..=100 {
        restarted.create(number + more, "written after the restart");
        for file in [DiskFile::Wal { generation: orphan }, DiskFile::Checkpoint { generation: orphan }] {
            assert!(!restarted.disk.contains_key(&file), "{} is removed and never written again", file.name());
        }
    }
    let live = open(&config, &restarted.disk).unwrap().superblock.generation;
    assert!(live > orphan, "later generations are numbered past the orphan: {live}");
}
