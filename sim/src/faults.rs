//! Fault injection during the safety phase: when the next fault strikes, which one,
//! and how long it lasts — always within the run's fault budget.

use core::time::Duration;

use noted_core::ReplicaId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::Partition;
use crate::options::FaultOptions;
use crate::protocol::CrashBudget;

/// One fault to inject now; the runner schedules its end after `lasting`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Partition {
        partition: Partition,
        lasting: Duration,
    },
    HealPartition,
    Crash {
        replica: ReplicaId,
        lasting: Duration,
    },
    /// Every replica at once, each down for its own time.
    CrashAll {
        lastings: Vec<Duration>,
    },
    Pause {
        replica: ReplicaId,
        lasting: Duration,
    },
}

/// What the injector needs to know of the cluster to stay within budget.
#[derive(Clone, Copy, Debug)]
pub struct ClusterView<'a> {
    pub replica_count: u8,
    pub crashed: &'a [bool],
    pub paused: &'a [bool],
    pub partitioned: bool,
}

#[derive(Debug)]
pub struct FaultInjector {
    options: FaultOptions,
    rng: ChaCha8Rng,
}

impl FaultInjector {
    pub fn new(options: FaultOptions, rng: ChaCha8Rng) -> FaultInjector {
        FaultInjector { options, rng }
    }

    /// Time until the next fault action; `None` in a calm run.
    pub fn next_interval(&mut self) -> Option<Duration> {
        let mean = self.options.mean_interval?;
        Some(self.spread(mean))
    }

    /// Uniform in `(0, 2 * mean]`: the mean is kept, and short and long gaps both occur.
    fn spread(&mut self, mean: Duration) -> Duration {
        let mean_nanos = u64::try_from(mean.as_nanos()).unwrap_or(u64::MAX / 2).max(1);
        Duration::from_nanos(self.rng.random_range(1..=2 * mean_nanos))
    }

    /// Draws the next fault action; `None` when the drawn kind has nothing to do.
    pub fn choose(&mut self, cluster: ClusterView<'_>) -> Option<FaultAction> {
        let mut kinds = Vec::new();
        if self.options.partitions {
            kinds.push(0);
        }
        if self.options.crashes != CrashBudget::None {
            kinds.push(1);
        }
        if self.options.pauses {
            kinds.push(2);
        }
        if kinds.is_empty() {
            return None;
        }
        let lasting = self.spread(self.options.mean_duration);
        if self.options.whole_cluster_crashes && self.rng.random_range(0..3u32) == 0 {
            return Some(FaultAction::CrashAll { lastings: self.whole_cluster_lastings(cluster.replica_count) });
        }
        match kinds[self.rng.random_range(0..kinds.len())] {
            0 if cluster.partitioned => Some(FaultAction::HealPartition),
            0 => Some(FaultAction::Partition {
                partition: Partition::random(&mut self.rng, cluster.replica_count),
                lasting,
            }),
            1 => self.crashable(cluster).map(|replica| FaultAction::Crash { replica, lasting }),
            _ => {
                let candidates: Vec<ReplicaId> = (0..cluster.replica_count)
                    .map(ReplicaId)
                    .filter(|replica| !cluster.crashed[replica.index()] && !cluster.paused[replica.index()])
                    .collect();
                self.pick(&candidates).map(|replica| FaultAction::Pause { replica, lasting })
            }
        }
    }

    /// How long each replica stays down after a whole-cluster crash.
    pub fn whole_cluster_lastings(&mut self, replica_count: u8) -> Vec<Duration> {
        (0..replica_count).map(|_| self.spread(self.options.mean_duration)).collect()
    }

    /// True once in `odds` draws.
    pub fn coin(&mut self, odds: u32) -> bool {
        self.rng.random_range(0..odds.max(1)) == 0
    }

    /// Whether the next snapshot chunk sent is struck (see [`FaultOptions::transfer_faults`]).
    pub fn strikes_transfer(&mut self) -> bool {
        self.options.transfer_faults && self.rng.random_range(0..8u32) == 0
    }

    /// A fault on `sender` or `receiver` of a snapshot chunk, within the budget: a
    /// crash, a pause, or a partition that isolates one of them.
    pub fn strike_transfer(
        &mut self,
        cluster: ClusterView<'_>,
        sender: ReplicaId,
        receiver: ReplicaId,
    ) -> Option<FaultAction> {
        let target = if self.rng.random_bool(0.5) { sender } else { receiver };
        let lasting = self.spread(self.options.mean_duration);
        let mut kinds = Vec::new();
        if self.options.partitions && !cluster.partitioned {
            kinds.push(0);
        }
        if self.crashable(cluster).is_some() && self.may_crash(cluster, target) {
            kinds.push(1);
        }
        if self.options.pauses && !cluster.paused[target.index()] {
            kinds.push(2);
        }
        if kinds.is_empty() {
            return None;
        }
        Some(match kinds[self.rng.random_range(0..kinds.len())] {
            0 => {
                let others = (0..cluster.replica_count).map(ReplicaId).filter(|replica| *replica != target).collect();
                FaultAction::Partition {
                    partition: Partition::Symmetric { side_a: vec![target], side_b: others },
                    lasting,
                }
            }
            1 => FaultAction::Crash { replica: target, lasting },
            _ => FaultAction::Pause { replica: target, lasting },
        })
    }

    /// Whether `replica` may crash now without leaving the crash budget.
    fn may_crash(&self, cluster: ClusterView<'_>, replica: ReplicaId) -> bool {
        let down = cluster.crashed.iter().filter(|crashed| **crashed).count();
        !cluster.crashed[replica.index()]
            && match self.options.crashes {
                CrashBudget::None => false,
                CrashBudget::AllExcept(protected) => replica != protected,
                CrashBudget::Minority => down < usize::from(cluster.replica_count.saturating_sub(1) / 2),
                CrashBudget::Unlimited => true,
            }
    }

    /// A replica that may crash now without leaving the crash budget.
    fn crashable(&mut self, cluster: ClusterView<'_>) -> Option<ReplicaId> {
        let down = cluster.crashed.iter().filter(|crashed| **crashed).count();
        let up = (0..cluster.replica_count).map(ReplicaId).filter(|replica| !cluster.crashed[replica.index()]);
        let candidates: Vec<ReplicaId> = match self.options.crashes {
            CrashBudget::None => return None,
            CrashBudget::AllExcept(protected) => up.filter(|replica| *replica != protected).collect(),
            CrashBudget::Minority if down >= usize::from(cluster.replica_count.saturating_sub(1) / 2) => return None,
            CrashBudget::Minority | CrashBudget::Unlimited => up.collect(),
        };
        self.pick(&candidates)
    }

    fn pick(&mut self, candidates: &[ReplicaId]) -> Option<ReplicaId> {
        if candidates.is_empty() { None } else { Some(candidates[self.rng.random_range(0..candidates.len())]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn options(crashes: CrashBudget) -> FaultOptions {
        FaultOptions {
            mean_interval: Some(Duration::from_millis(10)),
            mean_duration: Duration::from_millis(10),
            partitions: false,
            crashes,
            pauses: false,
            clock_skew_max: Duration::ZERO,
            clock_drift_max_ppm: 0,
            transfer_faults: true,
            whole_cluster_crashes: false,
        }
    }

    #[test]
    fn never_crashes_the_protected_replica() {
        let mut injector =
            FaultInjector::new(options(CrashBudget::AllExcept(ReplicaId(0))), ChaCha8Rng::seed_from_u64(1));
        let view = ClusterView { replica_count: 3, crashed: &[false; 3], paused: &[false; 3], partitioned: false };
        for _ in 0..200 {
            if let Some(FaultAction::Crash { replica, .. }) = injector.choose(view) {
                assert_ne!(replica, ReplicaId(0));
            }
        }
    }

    #[test]
    fn transfer_faults_strike_sender_or_receiver_within_the_budget() {
        let mut injector = FaultInjector::new(options(CrashBudget::Minority), ChaCha8Rng::seed_from_u64(1));
        let view = ClusterView { replica_count: 5, crashed: &[false; 5], paused: &[false; 5], partitioned: false };
        for _ in 0..100 {
            match injector.strike_transfer(view, ReplicaId(1), ReplicaId(3)) {
                Some(FaultAction::Crash { replica, .. }) => assert!([ReplicaId(1), ReplicaId(3)].contains(&replica)),
                other => panic!("only crashes are enabled: {other:?}"),
            }
        }
        let one_down =
            ClusterView { replica_count: 3, crashed: &[true, false, false], paused: &[false; 3], partitioned: false };
        assert_eq!(injector.strike_transfer(one_down, ReplicaId(1), ReplicaId(2)), None);
    }

    #[test]
    fn a_minority_budget_stops_at_a_minority() {
        let mut injector = FaultInjector::new(options(CrashBudget::Minority), ChaCha8Rng::seed_from_u64(1));
        let view =
            ClusterView { replica_count: 3, crashed: &[true, false, false], paused: &[false; 3], partitioned: false };
        assert_eq!(injector.choose(view), None);
    }
}
