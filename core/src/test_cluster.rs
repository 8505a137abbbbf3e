//! A small in-test message pump: replicas, a queue of messages in flight, and a
//! seeded choice of which to lose or duplicate. Scenario tests read like a script.

use std::collections::{BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::config::{Config, ProtocolKind};
use crate::ids::{ClientId, ClusterId, NoteId, ReplicaId, RequestNumber, Version};
use crate::message::Message;
use crate::operation::{ClientRequest, Consistency, Operation, Refusal, Reply};
use crate::replica::{Output, Replica};
use crate::time::Instant;

pub(crate) const R0: ReplicaId = ReplicaId(0);
pub(crate) const R1: ReplicaId = ReplicaId(1);
pub(crate) const R2: ReplicaId = ReplicaId(2);

#[derive(Debug)]
pub(crate) struct TestCluster {
    pub(crate) replicas: Vec<Replica>,
    pub(crate) now: Instant,
    in_flight: VecDeque<(ReplicaId, ReplicaId, Message)>,
    replies: Vec<(ClientId, RequestNumber, Reply)>,
    rng: ChaCha8Rng,
    /// Per mille of messages lost.
    pub(crate) loss_per_mille: u32,
    /// Per mille of messages delivered twice.
    pub(crate) duplicate_per_mille: u32,
    /// Messages are delivered in a random order rather than as sent.
    pub(crate) reorder: bool,
    pub(crate) delivered: u64,
    /// Every message sent, in order.
    sent: Vec<(ReplicaId, ReplicaId, Message)>,
    /// Each replica's change feed, in order.
    pub(crate) changes: Vec<Vec<crate::store::Change>>,
    /// Links `(from, to)` that lose every message: partitions.
    blocked: BTreeSet<(ReplicaId, ReplicaId)>,
    configs: Vec<Config>,
}

impl TestCluster {
    pub(crate) fn new(protocol: ProtocolKind, replica_count: u8, seed: u64) -> TestCluster {
        Self::with_config(protocol, replica_count, seed, |_| {})
    }

    pub(crate) fn with_config(
        protocol: ProtocolKind,
        replica_count: u8,
        seed: u64,
        adjust: impl Fn(&mut Config),
    ) -> TestCluster {
        let now = Instant::from_millis(1_000);
        let configs: Vec<Config> = (0..replica_count)
            .map(|index| {
                let mut config =
                    Config::new(ClusterId(1), ReplicaId(index), replica_count, protocol, seed + u64::from(index));
                adjust(&mut config);
                config
            })
            .collect();
        let replicas = configs
            .iter()
            .map(|config| Replica::new(config.clone(), now).expect("test configurations are valid"))
            .collect();
        TestCluster {
            replicas,
            now,
            in_flight: VecDeque::new(),
            replies: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss_per_mille: 0,
            duplicate_per_mille: 0,
            reorder: false,
            delivered: 0,
            blocked: BTreeSet::new(),
            sent: Vec::new(),
            changes: vec![Vec::new(); usize::from(replica_count)],
            configs,
        }
    }

    /// Replaces replica `id` with a new one with empty memory: a crash and restart.
    pub(crate) fn crash_and_restart(&mut self, id: ReplicaId) {
        let config = self.configs[id.index()].clone();
        self.replicas[id.index()] = Replica::new(config, self.now).expect("test configurations are valid");
        self.in_flight.retain(|(_, to, _)| *to != id);
    }

    /// Loses every message between the two sides, in both directions.
    pub(crate) fn partition(&mut self, side_a: &[ReplicaId], side_b: &[ReplicaId]) {
        for a in side_a {
            for b in side_b {
                self.blocked.insert((*a, *b));
                self.blocked.insert((*b, *a));
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Delivers messages and fires timeouts until simulated time reaches `now + duration`.
    pub(crate) fn run_for(&mut self, duration: core::time::Duration) {
        let deadline = self.now + duration;
        loop {
            while self.deliver_one() {}
            match self.earliest_timeout() {
                Some((replica, at)) if at <= deadline => {
                    self.now = self.now.max(at);
                    self.input(replica, crate::replica::Input::Timeout);
                }
                _ => break,
            }
        }
        self.now = deadline;
    }

    /// Every message sent so far, in order.
    pub(crate) fn sent_log(&self) -> Vec<(ReplicaId, ReplicaId, Message)> {
        self.sent.clone()
    }

    /// Drops every message in flight.
    pub(crate) fn drop_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Takes the messages in flight, to deliver some of them by hand.
    pub(crate) fn take_in_flight(&mut self) -> Vec<(ReplicaId, ReplicaId, Message)> {
        self.in_flight.drain(..).collect()
    }

    pub(crate) fn deliver(&mut self, from: ReplicaId, to: ReplicaId, message: Message) -> Vec<Output> {
        self.input(to, crate::replica::Input::Message { from, message })
    }

    pub(crate) fn replica(&self, id: ReplicaId) -> &Replica {
        &self.replicas[id.index()]
    }

    /// Gives `input` to replica `at` and queues what it sends.
    /// Gives `input` to replica `at`, queues what it sends, and returns its outputs
    /// but for the change feed, which is collected in [`TestCluster::changes`].
    pub(crate) fn input(&mut self, at: ReplicaId, input: crate::replica::Input) -> Vec<Output> {
        let mut outputs = self.replicas[at.index()].handle(self.now, input);
        outputs.retain(|output| match output {
            Output::Event(crate::replica::Event::Committed { change }) => {
                self.changes[at.index()].push(change.clone());
                false
            }
            _ => true,
        });
        for output in &outputs {
            match output {
                Output::Send { to, message } => {
                    self.in_flight.push_back((at, *to, message.clone()));
                    self.sent.push((at, *to, message.clone()));
                }
                Output::Reply { client, request_number, reply, .. } => {
                    self.replies.push((*client, *request_number, reply.clone()))
                }
                // The test cluster's replicas keep their state in memory.
                Output::Event(_) | Output::Storage(_) => {}
            }
        }
        outputs
    }

    pub(crate) fn request(&mut self, at: ReplicaId, client: u64, request_number: RequestNumber, operation: Operation) {
        self.request_with(at, client, request_number, operation, Consistency::Linearizable);
    }

    pub(crate) fn request_with(
        &mut self,
        at: ReplicaId,
        client: u64,
        request_number: RequestNumber,
        operation: Operation,
        consistency: Consistency,
    ) {
        let request = ClientRequest { client: ClientId(client), request_number, operation, consistency };
        self.input(at, crate::replica::Input::Request(request));
    }

    /// Delivers one message in flight, subject to loss, duplication and reordering.
    /// Returns false when nothing was in flight.
    pub(crate) fn deliver_one(&mut self) -> bool {
        let index =
            if self.reorder && !self.in_flight.is_empty() { self.rng.random_range(0..self.in_flight.len()) } else { 0 };
        let Some((from, to, message)) = self.in_flight.remove(index) else { return false };
        if self.blocked.contains(&(from, to)) {
            return true;
        }
        if self.rng.random_range(0..1000) < self.loss_per_mille {
            return true;
        }
        if self.rng.random_range(0..1000) < self.duplicate_per_mille {
            self.in_flight.push_back((from, to, message.clone()));
        }
        self.delivered += 1;
        self.input(to, crate::replica::Input::Message { from, message });
        true
    }

    /// Delivers messages and fires timeouts until nothing is in flight and no
    /// request is waiting, or `max_steps` pass.
    pub(crate) fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.deliver_one() {
                continue;
            }
            let Some((replica, deadline)) = self.earliest_timeout() else { return };
            if !self.anything_pending() {
                return;
            }
            self.now = self.now.max(deadline);
            self.input(replica, crate::replica::Input::Timeout);
        }
    }

    fn earliest_timeout(&self) -> Option<(ReplicaId, Instant)> {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(index, replica)| replica.next_timeout().map(|at| (ReplicaId(index as u8), at)))
            .min_by_key(|(_, at)| *at)
    }

    fn anything_pending(&self) -> bool {
        self.replicas.iter().any(|replica| replica.status().pending_requests > 0)
            || self.replicas.windows(2).any(|pair| pair[0].store() != pair[1].store())
    }

    /// The reply to `(client, request_number)`, if one was given.
    pub(crate) fn reply(&self, client: u64, request_number: RequestNumber) -> Option<&Reply> {
        self.replies
            .iter()
            .rev()
            .find(|(c, n, _)| *c == ClientId(client) && *n == request_number)
            .map(|(_, _, reply)| reply)
    }

    pub(crate) fn replies_to(&self, client: u64, request_number: RequestNumber) -> usize {
        self.replies.iter().filter(|(c, n, _)| *c == ClientId(client) && *n == request_number).count()
    }

    /// Asserts every replica holds the same notes and client table.
    pub(crate) fn assert_converged(&self) {
        let first = &self.replicas[0];
        for (index, replica) in self.replicas.iter().enumerate().skip(1) {
            assert_eq!(replica.store(), first.store(), "R{index}'s store differs from R0's");
            assert_eq!(replica.client_table(), first.client_table(), "R{index}'s client table differs from R0's");
        }
    }

    pub(crate) fn version_of(&self, at: ReplicaId, id: u64) -> Option<Version> {
        self.replica(at).store().get(NoteId(id)).map(|note| note.version)
    }
}

pub(crate) fn create(body: Value) -> Operation {
    Operation::Create { body }
}

pub(crate) fn replace(id: u64, body: Value, if_match: Option<Version>) -> Operation {
    Operation::Replace { id: NoteId(id), body, if_match }
}

pub(crate) fn patch(id: u64, patch: Value, if_match: Option<Version>) -> Operation {
    Operation::Patch { id: NoteId(id), patch, if_match }
}

pub(crate) fn delete(id: u64, if_match: Option<Version>) -> Operation {
    Operation::Delete { id: NoteId(id), if_match }
}

pub(crate) fn get(id: u64) -> Operation {
    Operation::Get { id: NoteId(id) }
}

/// The script every protocol's convergence test runs, as client 100 through every
/// replica, under whatever faults the cluster injects: two creates, a replace, a
/// conditional patch, a conditional replace that must fail, a conditional delete,
/// and reads. `settle` runs the cluster after each request. Every request is
/// answered with what a single copy would answer, and the replicas end alike.
pub(crate) fn every_kind_of_write(cluster: &mut TestCluster, seed: u64, settle: fn(&mut TestCluster)) {
    let script = [
        (R1, create(serde_json::json!({"title": "one"}))),
        (R2, create(serde_json::json!({"title": "two"}))),
        (R0, replace(1, serde_json::json!({"title": "uno"}), None)),
        (R2, patch(1, serde_json::json!({"tags": ["x"]}), Some(2))),
        (R1, replace(2, serde_json::json!({"title": "dos"}), Some(7))),
        (R1, delete(2, Some(1))),
        (R0, get(2)),
        (R2, get(1)),
    ];
    for (request_number, (at, operation)) in (1..).zip(script) {
        cluster.request(at, 100, request_number, operation);
        settle(cluster);
        assert!(cluster.reply(100, request_number).is_some(), "seed {seed}: request {request_number} answered");
    }
    cluster.loss_per_mille = 0;
    cluster.duplicate_per_mille = 0;
    settle(cluster);
    assert_eq!(cluster.version_of(R0, 1), Some(3), "seed {seed}");
    assert_eq!(cluster.version_of(R0, 2), None, "seed {seed}: note 2 deleted");
    let refused = |refusal| Some(Reply::refused(refusal));
    let mismatch = Refusal::VersionMismatch { id: NoteId(2), expected: 7, actual: 1 };
    assert_eq!(cluster.reply(100, 5).cloned(), refused(mismatch), "seed {seed}");
    assert_eq!(cluster.reply(100, 7).cloned(), refused(Refusal::NotFound { id: NoteId(2) }), "seed {seed}");
    assert!(matches!(cluster.reply(100, 8), Some(Reply::Note { note }) if note.version == 3), "seed {seed}");
    cluster.assert_converged();
}
