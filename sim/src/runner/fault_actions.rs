//! Carrying out fault actions during the safety phase, and their ends: healing a
//! partition, restarting a crashed replica with empty memory, resuming a paused one.

use noted_core::ReplicaId;

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

    fn apply_fault(&mut self, action: Option<FaultAction>) {
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
                self.trace.line(self.now, format_args!("FAULT crash {replica} (memory lost) for {lasting:?}"));
                let state = &mut self.replicas[replica.index()];
                state.replica = None;
                state.paused = false;
                state.held.clear();
                state.timer = None;
                self.schedule(nanos(lasting), SimEvent::Restart { replica });
            }
            Some(FaultAction::Pause { replica, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT pause {replica} for {lasting:?}"));
                self.replicas[replica.index()].paused = true;
                self.schedule(nanos(lasting), SimEvent::Resume { replica });
            }
        }
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
        match noted_core::Replica::new(state.config.clone(), local_now) {
            Ok(restarted) => state.replica = Some(restarted),
            Err(error) => return self.fail(FailureKind::Setup, format!("{replica} cannot restart: {error}")),
        }
        self.trace.line(self.now, format_args!("HEAL restart {replica} with empty memory"));
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
