//! Replicas' disks in a run: storage operations in, sync completions out after
//! a drawn latency, and what a crash leaves.

use noted_core::storage::StorageOp;
use noted_core::{Input, ReplicaId};
use rand::Rng;

use super::{Phase, SimEvent, Simulation, nanos};
use crate::faults::FaultAction;

/// One sync in this many is struck by a power cut (in runs with whole-cluster crashes).
const STRIKE_ODDS: u32 = 64;
use crate::disk::{CorruptionTarget, SimDisk};
use crate::outcome::FailureKind;

impl Simulation {
    /// Carries out a replica's storage operation; a sync completes after its latency.
    pub(super) fn store(&mut self, at: ReplicaId, op: StorageOp) {
        let state = &mut self.replicas[at.index()];
        let Some(disk) = state.disk.as_mut() else {
            return self.fail(FailureKind::Setup, format!("{at} wrote to a disk it does not have"));
        };
        let Some(id) = disk.take(op) else { return };
        let incarnation = state.incarnation;
        let latency = self.sync_latency();
        self.schedule(latency, SimEvent::SyncDone { replica: at, id, incarnation });
        // Now and then, power fails while this sync is in flight: the moments where
        // what was acknowledged and what is durable differ.
        if self.phase == Phase::Safety && self.options.faults.whole_cluster_crashes && self.faults.coin(STRIKE_ODDS) {
            let at = self.disk_rng.random_range(0..=latency);
            self.schedule(at, SimEvent::PowerCut);
        }
    }

    pub(super) fn power_cut(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let lastings = self.faults.whole_cluster_lastings(self.options.replica_count);
        self.apply_fault(Some(FaultAction::CrashAll { lastings }));
    }

    fn sync_latency(&mut self) -> u64 {
        let storage = self.options.storage;
        let mut latency = nanos(storage.sync_min);
        let spread = nanos(storage.sync_spread);
        if spread > 0 {
            latency += self.disk_rng.random_range(0..=spread);
        }
        if storage.sync_tail_per_mille > 0 && self.disk_rng.random_range(0..1000) < storage.sync_tail_per_mille {
            latency += self.disk_rng.random_range(0..=nanos(storage.sync_tail_max));
        }
        latency
    }

    /// A sync finished: what it covers is durable, and the replica learns it. A
    /// paused replica learns it when it resumes (its disk is not paused, but
    /// nothing depends on a sync until the replica knows of it).
    pub(super) fn sync_done(&mut self, replica: ReplicaId, id: u64, incarnation: u64) {
        let state = &mut self.replicas[replica.index()];
        if state.incarnation != incarnation || state.replica.is_none() {
            return; // The replica crashed since: this sync never completed.
        }
        if state.stalled {
            state.stalled_syncs.push(id);
            return;
        }
        if state.paused {
            state.held.push(SimEvent::SyncDone { replica, id, incarnation });
            return;
        }
        let disk = state.disk.as_mut().expect("a replica that syncs has a disk");
        if !disk.complete_sync(id) {
            return self
                .fail(FailureKind::Setup, format!("{replica} was told of sync {id}, which its disk never took"));
        }
        self.input(replica, Input::Synced { id });
    }

    /// Power loss at `replica`: its disk keeps what was synced and some of the rest,
    /// possibly torn; with `lose_disk`, nothing at all (a replaced disk).
    pub(super) fn crash_disk(&mut self, replica: ReplicaId, lose_disk: bool) {
        let storage = self.options.storage;
        let state = &mut self.replicas[replica.index()];
        state.incarnation += 1;
        // The host that restarts finds room again: a stall ends with the process.
        state.stalled = false;
        state.stalled_syncs.clear();
        let Some(disk) = state.disk.as_mut() else { return };
        if lose_disk {
            *disk = SimDisk::blank();
            self.trace.line(self.now, format_args!("FAULT {replica}'s disk is lost"));
            return;
        }
        let damage = disk.crash(&mut self.disk_rng, &storage);
        self.trace.line(
            self.now,
            format_args!(
                "{replica}'s disk: {} unsynced writes lost, {} kept, {} torn",
                damage.lost, damage.kept, damage.torn
            ),
        );
        let corrupts = storage.corruption_per_mille > 0
            && self.disk_rng.random_range(0..1000) < storage.corruption_per_mille
            && self.without_state() < self.minority();
        if corrupts {
            let target = [
                CorruptionTarget::LogTail,
                CorruptionTarget::LogTail,
                CorruptionTarget::SuperblockCopy,
                CorruptionTarget::Checkpoint,
            ][self.disk_rng.random_range(0..4usize)];
            let state = &mut self.replicas[replica.index()];
            let disk = state.disk.as_mut().expect("checked above");
            if let Some(hit) = disk.corrupt(&mut self.disk_rng, target) {
                let without_state = self.without_state();
                self.trace.line(
                    self.now,
                    format_args!(
                        "FAULT {replica}'s disk corrupted: {hit} ({without_state} replicas without intact state)"
                    ),
                );
            }
        }
    }

    pub(super) fn minority(&self) -> usize {
        usize::from(self.options.replica_count.saturating_sub(1) / 2)
    }

    /// Replicas without intact state: recovering from peers or repairing damage from
    /// them, or that would be if they restarted now (a lost or damaged disk, or one
    /// whose superblock still says a repair is under way).
    fn without_state(&self) -> usize {
        self.replicas
            .iter()
            .filter(|state| {
                let disk = state.disk.as_ref().is_some_and(|disk| disk.is_blank() || needs_repair(&state.config, disk));
                let live = state.replica.as_ref().is_some_and(|replica| {
                    let status = replica.status();
                    status.role == noted_core::Role::Recovering || status.repairing
                });
                disk || live
            })
            .count()
    }

    /// Whether another disk may be lost now: replicas without their state (down with a
    /// lost disk, or recovering it from peers) stay a minority.
    pub(super) fn may_lose_disk(&self) -> bool {
        self.options.storage.disk_losses && self.without_state() < self.minority()
    }
}

/// Whether a replica restarting on `disk` would have to repair it from its peers.
fn needs_repair(config: &noted_core::Config, disk: &SimDisk) -> bool {
    match noted_core::storage::open(config, disk.image()) {
        Ok(recovered) => recovered.damage.is_some() || recovered.superblock.repairing,
        Err(_) => true,
    }
}
