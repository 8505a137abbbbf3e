//! Disks that stall: full, or failing writes that the host retries. A stalled
//! disk completes no sync; the host tells the replica, and when the disk takes
//! writes again, tells it so and completes the syncs that waited. At most a
//! minority of replicas stall at once, so that the others can carry on.

use noted_core::{Input, ReplicaId};
use rand::Rng;

use super::{Phase, SimEvent, Simulation};

/// Stalls start this far apart, and last this long (nanoseconds).
const INTERVAL_NANOS: std::ops::RangeInclusive<u64> = 50_000_000..=800_000_000;
const LASTING_NANOS: std::ops::RangeInclusive<u64> = 20_000_000..=1_000_000_000;

impl Simulation {
    pub(super) fn stall_interval(&mut self) -> u64 {
        self.disk_rng.random_range(INTERVAL_NANOS)
    }

    pub(super) fn disk_stall_tick(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let stalled = self.replicas.iter().filter(|replica| replica.stalled).count();
        let candidates: Vec<usize> = (0..self.replicas.len())
            .filter(|index| {
                let state = &self.replicas[*index];
                state.replica.is_some() && state.disk.is_some() && !state.stalled
            })
            .collect();
        if stalled < self.minority() && !candidates.is_empty() {
            let index = candidates[self.disk_rng.random_range(0..candidates.len())];
            let lasting = self.disk_rng.random_range(LASTING_NANOS);
            let replica = ReplicaId(u8::try_from(index).expect("few replicas"));
            let state = &mut self.replicas[index];
            state.stalled = true;
            let incarnation = state.incarnation;
            self.trace
                .line(self.now, format_args!("FAULT {replica}'s disk takes no writes for {}ms", lasting / 1_000_000));
            self.schedule(0, SimEvent::StorageHealth { replica, incarnation, stalled: true });
            self.schedule(lasting, SimEvent::DiskFreed { replica, incarnation });
        }
        let next = self.stall_interval();
        self.schedule(next, SimEvent::DiskStallTick);
    }

    pub(super) fn disk_freed(&mut self, replica: ReplicaId, incarnation: u64) {
        if self.replicas[replica.index()].incarnation == incarnation {
            self.free_disk(replica);
        }
    }

    /// The disk takes writes again: the replica is told (after anything it holds
    /// from a pause), then the syncs that waited complete.
    pub(super) fn free_disk(&mut self, replica: ReplicaId) {
        let state = &mut self.replicas[replica.index()];
        if !state.stalled {
            return;
        }
        state.stalled = false;
        let incarnation = state.incarnation;
        let syncs = std::mem::take(&mut state.stalled_syncs);
        self.trace
            .line(self.now, format_args!("HEAL {replica}'s disk takes writes again ({} syncs waited)", syncs.len()));
        self.schedule(0, SimEvent::StorageHealth { replica, incarnation, stalled: false });
        for id in syncs {
            self.schedule(0, SimEvent::SyncDone { replica, id, incarnation });
        }
    }

    pub(super) fn tell_storage_health(&mut self, replica: ReplicaId, incarnation: u64, stalled: bool) {
        let state = &mut self.replicas[replica.index()];
        if state.incarnation != incarnation || state.replica.is_none() {
            return;
        }
        if state.paused {
            // Never lost: a replica that missed the disk's return would wait for it forever.
            state.held.push(SimEvent::StorageHealth { replica, incarnation, stalled });
            return;
        }
        self.input(replica, if stalled { Input::StorageStalled } else { Input::StorageResumed });
    }
}
