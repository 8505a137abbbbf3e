//! Carrying out fault actions during the safety phase, and their ends: healing a
//! partition, restarting a crashed replica with empty memory, resuming a paused one.

use noted_core::ReplicaId;
use noted_core::storage::OpenError;

use super::{Phase, SimEvent, Simulation, nanos};
use crate::faults::{ClusterView, FaultAction};
use crate::outcome::FailureKind;

impl Simulation {
    pub(super) fn fault_tick(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let (crashed, paused) = self.down_and_paused();
        let view = ClusterView {
            replica_count: self.options.replica_count,
            crashed: &crashed,
            paused: &paused,
            partitioned: self.network.partition().is_some(),
        };
        let action = self.faults.choose(view);
        self.apply_fault(action);
        if let Some(interval) = self.faults.next_interval() {
            self.schedule(nanos(interval), SimEvent::FaultTick);
        }
    }

    /// Now and then, a fault on the sender or receiver of a snapshot chunk.
    pub(super) fn maybe_strike_transfer(&mut self, sender: ReplicaId, receiver: ReplicaId) {
        if self.phase != Phase::Safety || !self.faults.strikes_transfer() {
            return;
        }
        let (crashed, paused) = self.down_and_paused();
        let view = ClusterView {
            replica_count: self.options.replica_count,
            crashed: &crashed,
            paused: &paused,
            partitioned: self.network.partition().is_some(),
        };
        let action = self.faults.strike_transfer(view, sender, receiver);
        if action.is_some() {
            self.trace.line(self.now, format_args!("FAULT during the transfer {sender} -> {receiver}"));
        }
        self.apply_fault(action);
    }

    /// Which replicas are down and which paused. A replica that restarted but is
    /// still recovering its state counts as down: a crash budget bounds how many
    /// replicas lack their state at once.
    fn down_and_paused(&self) -> (Vec<bool>, Vec<bool>) {
        let crashed: Vec<bool> = self
            .replicas
            .iter()
            .map(|replica| {
                replica.replica.as_ref().is_none_or(|replica| replica.status().role == noted_core::Role::Recovering)
            })
            .collect();
        let paused: Vec<bool> = self.replicas.iter().map(|replica| replica.paused).collect();
        (crashed, paused)
    }

    pub(super) fn apply_fault(&mut self, action: Option<FaultAction>) {
        match action {
            None => {}
            Some(FaultAction::Partition { partition, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT partition {partition} for {lasting:?}"));
                self.network.set_partition(Some(partition));
                self.partition_generation += 1;
                let generation = self.partition_generation;
                self.schedule(nanos(lasting), SimEvent::HealPartition { generation });
            }
            Some(FaultAction::HealPartition) => self.heal_partition(),
            Some(FaultAction::Crash { replica, lasting }) => {
                let lose_disk = self.options.storage.is_disk() && self.may_lose_disk() && self.faults.coin(4);
                self.crash(replica, lasting, lose_disk);
            }
            Some(FaultAction::CrashAll { lastings }) => {
                self.trace.line(self.now, format_args!("FAULT every replica crashes at once"));
                for (index, lasting) in lastings.into_iter().enumerate() {
                    let replica = ReplicaId(u8::try_from(index).expect("few replicas"));
                    if self.replicas[index].replica.is_some() {
                        self.crash(replica, lasting, false);
                    }
                }
            }
            Some(FaultAction::Pause { replica, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT pause {replica} for {lasting:?}"));
                self.replicas[replica.index()].paused = true;
                self.schedule(nanos(lasting), SimEvent::Resume { replica });
            }
        }
    }

    fn crash(&mut self, replica: ReplicaId, lasting: core::time::Duration, lose_disk: bool) {
        let what = if self.options.storage.is_disk() { "power lost" } else { "memory lost" };
        self.trace.line(self.now, format_args!("FAULT crash {replica} ({what}) for {lasting:?}"));
        let state = &mut self.replicas[replica.index()];
        state.replica = None;
        state.paused = false;
        state.held.clear();
        state.timer = None;
        self.crash_disk(replica, lose_disk);
        self.schedule(nanos(lasting), SimEvent::Restart { replica });
    }

    pub(super) fn heal_partition(&mut self) {
        self.trace.line(self.now, format_args!("HEAL partition"));
        self.network.set_partition(None);
    }

    pub(super) fn restart(&mut self, replica: ReplicaId) {
        let state = &mut self.replicas[replica.index()];
        if state.replica.is_some() {
            return;
        }
        let local_now = state.clock.local(self.now);
        // A disk with no superblock never held state this replica promised anything
        // about (a lost disk, or one that crashed before its first superblock): the
        // replica recovers from its peers, as the server does with an empty directory.
        let opened =
            state.disk.as_ref().map(|disk| noted_core::Replica::open(state.config.clone(), disk.image(), local_now));
        let from_disk = matches!(opened, Some(Ok(_)));
        let restarted = match opened {
            Some(Ok(replica)) => Ok(replica),
            Some(Err(error)) if error != OpenError::Unformatted => {
                Err(format!("{replica} cannot open its disk: {error}"))
            }
            _ => noted_core::Replica::new(state.config.clone(), local_now)
                .map_err(|error| format!("{replica} cannot restart: {error}")),
        };
        match restarted {
            Ok(restarted) => state.replica = Some(restarted),
            Err(error) => return self.fail(FailureKind::Setup, error),
        }
        let status = self.replicas[replica.index()].replica.as_ref().map(noted_core::Replica::status);
        let how = match status {
            Some(status) if from_disk => match status.view {
                Some(view) => format!(
                    "from its disk (view v{view}, op {}, commit {}){}",
                    status.op_number,
                    status.applied,
                    if status.repairing { ", repairing damage from its peers" } else { "" }
                ),
                None => format!("from its disk ({} updates applied)", status.applied),
            },
            _ => "with empty memory".to_string(),
        };
        self.trace.line(self.now, format_args!("HEAL restart {replica} {how}"));
        self.reschedule_timer(replica);
    }

    pub(super) fn resume(&mut self, replica: ReplicaId) {
        let state = &mut self.replicas[replica.index()];
        if !state.paused {
            return;
        }
        state.paused = false;
        let held = std::mem::take(&mut state.held);
        self.trace.line(self.now, format_args!("HEAL resume {replica} ({} held events)", held.len()));
        for event in held {
            self.schedule(0, event);
        }
        // The replica's deadline may have passed while it was paused.
        self.replicas[replica.index()].timer = None;
        self.reschedule_timer(replica);
    }
}
