//! The faults of a chaos run, drawn from a seed before the run starts.
//!
//! A schedule is a warm-up, then a sequence of steps: each step turns one or two
//! faults on, keeps them for its length, heals them all, and leaves a quiet
//! interval before the next step. The same seed and options give the same
//! schedule, printed at the start of every run.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// One fault, by replica index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then a restart with empty memory when the step heals.
    Kill(u8),
    /// SIGSTOP, then SIGCONT when the step heals.
    Pause(u8),
    /// Nothing reaches the replica from its peers, and nothing of it reaches them.
    Isolate(u8),
    /// The cluster cut in two: no peer traffic between `side` and the others, either way.
    Split(Vec<u8>),
    /// `from`'s protocol frames and heartbeats do not reach `to`; `to`'s reach `from`.
    OneWay { from: u8, to: u8 },
    /// Disk storage: SIGKILL of every replica at the same moment, then a restart
    /// of all from their data directories when the step heals.
    KillAll,
    /// Disk storage: SIGKILL, one byte of the replica's log or superblock flipped
    /// while it is down, then a restart from its data directory.
    Damage { replica: u8, target: DamageTarget },
}

/// Which file a [`Fault::Damage`] hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamageTarget {
    /// Record number `pick` (modulo their count) of the newest log file.
    Log { pick: usize },
    /// One superblock copy.
    Superblock { copy: u8 },
}

impl Fault {
    /// The directed pairs (sender, receiver) whose peer traffic this fault drops.
    pub fn blocked_pairs(&self, replicas: u8) -> BTreeSet<(u8, u8)> {
        let everyone = 0..replicas;
        match self {
            Fault::Kill(_) | Fault::Pause(_) | Fault::KillAll | Fault::Damage { .. } => BTreeSet::new(),
            Fault::Isolate(replica) => everyone
                .filter(|other| other != replica)
                .flat_map(|other| [(*replica, other), (other, *replica)])
                .collect(),
            Fault::Split(side) => {
                let (inside, outside): (Vec<u8>, Vec<u8>) = everyone.partition(|replica| side.contains(replica));
                inside.iter().flat_map(|a| outside.iter().flat_map(move |b| [(*a, *b), (*b, *a)])).collect()
            }
            Fault::OneWay { from, to } => BTreeSet::from([(*from, *to)]),
        }
    }

    /// The replica whose process this fault stops, if any.
    pub fn process(&self) -> Option<u8> {
        match self {
            Fault::Kill(replica) | Fault::Pause(replica) | Fault::Damage { replica, .. } => Some(*replica),
            _ => None,
        }
    }

    /// Whether the replica loses its memory (a kill, with or without damage).
    pub fn is_kill(&self) -> bool {
        matches!(self, Fault::Kill(_) | Fault::Damage { .. })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(replica) => write!(out, "kill R{replica} (restart empty)"),
            Fault::Pause(replica) => write!(out, "pause R{replica}"),
            Fault::Isolate(replica) => write!(out, "isolate R{replica}"),
            Fault::Split(side) => {
                let names: Vec<String> = side.iter().map(|replica| format!("R{replica}")).collect();
                write!(out, "split {{{}}} from the rest", names.join(","))
            }
            Fault::OneWay { from, to } => write!(out, "one-way R{from} -/-> R{to}"),
            Fault::KillAll => write!(out, "kill every replica at once (restart from disk)"),
            Fault::Damage { replica, target: DamageTarget::Log { pick } } => {
                write!(out, "kill R{replica}, flip a byte of log record #{pick} (mod count), restart from disk")
            }
            Fault::Damage { replica, target: DamageTarget::Superblock { copy } } => {
                write!(out, "kill R{replica}, flip a byte of superblock copy {copy}, restart from disk")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub faults: Vec<Fault>,
    /// How long the faults last.
    pub length: Duration,
    /// How long the cluster is left alone after the faults heal.
    pub quiet: Duration,
}

/// Loss and delay of peer frames inside noted's transport (`--test-faults`), for the whole run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransportFaults {
    pub loss: f64,
    pub delay_ms: u64,
}

/// What a schedule may contain.
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    pub replicas: u8,
    pub duration: Duration,
    pub seed: u64,
    /// The replicas that may be killed (remote-write's fault model spares its primary).
    pub killable: Vec<u8>,
    /// Kill this replica in every step, whatever the fault model says.
    pub always_kill: Option<u8>,
    /// The replicas keep data directories: whole-cluster kills and damaged files too.
    pub disk: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub seed: u64,
    pub replicas: u8,
    pub transport: TransportFaults,
    /// Workload only, before the first fault.
    pub warm_up: Duration,
    pub steps: Vec<Step>,
}

const WARM_UP: Duration = Duration::from_secs(2);

impl Schedule {
    /// Draws steps until their planned time reaches `options.duration`. At most
    /// f = (n - 1) / 2 replicas are killed in a step (their memory is lost), so a
    /// majority always keeps every acknowledged write; the runner lets killed
    /// replicas recover before the next step.
    pub fn generate(options: &ScheduleOptions) -> Schedule {
        assert!(options.replicas >= 3, "chaos needs at least three replicas");
        let mut random = StdRng::seed_from_u64(options.seed);
        let transport = TransportFaults {
            loss: [0.0, 0.01, 0.03, 0.05][random.random_range(0..4)],
            delay_ms: [0, 2, 5, 10][random.random_range(0..4)],
        };
        let tolerated = (options.replicas - 1) / 2;
        let mut steps = Vec::new();
        let mut planned = WARM_UP;
        while planned < options.duration {
            let mut faults: Vec<Fault> = options.always_kill.map(Fault::Kill).into_iter().collect();
            let wanted = random.random_range(1..=2);
            let mut attempts = 0;
            while faults.len() < wanted && attempts < 20 {
                attempts += 1;
                let fault = random_fault(&mut random, options);
                if fault == Fault::KillAll {
                    // Alone in its step: every process is down.
                    if options.always_kill.is_none() {
                        faults = vec![Fault::KillAll];
                        break;
                    }
                    continue;
                }
                let kills = faults.iter().filter(|fault| fault.is_kill()).count();
                let busy: Vec<u8> = faults.iter().filter_map(Fault::process).collect();
                let too_many_kills = fault.is_kill() && kills >= usize::from(tolerated);
                let same_process = fault.process().is_some_and(|replica| busy.contains(&replica));
                if !too_many_kills && !same_process && !faults.contains(&fault) {
                    faults.push(fault);
                }
            }
            let step = Step {
                faults,
                length: Duration::from_millis(random.random_range(1_000..=4_000)),
                quiet: Duration::from_millis(random.random_range(1_000..=3_000)),
            };
            planned += step.length + step.quiet;
            steps.push(step);
        }
        Schedule { seed: options.seed, replicas: options.replicas, transport, warm_up: WARM_UP, steps }
    }

    pub fn planned_duration(&self) -> Duration {
        self.warm_up + self.steps.iter().map(|step| step.length + step.quiet).sum::<Duration>()
    }
}

fn random_fault(random: &mut StdRng, options: &ScheduleOptions) -> Fault {
    let replicas: Vec<u8> = (0..options.replicas).collect();
    let any = |random: &mut StdRng| *replicas.choose(random).expect("replicas");
    let kinds = if options.disk { 7 } else { 5 };
    loop {
        return match random.random_range(0..kinds) {
            0 => match options.killable.choose(random) {
                Some(replica) => Fault::Kill(*replica),
                None => continue,
            },
            1 => Fault::Pause(any(random)),
            2 => Fault::Isolate(any(random)),
            3 => {
                let mut side: Vec<u8> = Vec::new();
                let size = random.random_range(1..=(options.replicas - 1) / 2);
                while side.len() < usize::from(size) {
                    let replica = any(random);
                    if !side.contains(&replica) {
                        side.push(replica);
                    }
                }
                side.sort_unstable();
                Fault::Split(side)
            }
            4 => {
                let from = any(random);
                let to = (from + random.random_range(1..options.replicas)) % options.replicas;
                Fault::OneWay { from, to }
            }
            5 => Fault::KillAll,
            _ => match options.killable.choose(random) {
                Some(replica) => {
                    let target = if random.random_bool(0.5) {
                        DamageTarget::Log { pick: random.random_range(0..1_000) }
                    } else {
                        DamageTarget::Superblock { copy: random.random_range(0..4) }
                    };
                    Fault::Damage { replica: *replica, target }
                }
                None => continue,
            },
        };
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "schedule (seed {}, {} replicas, about {:.0?}): transport loss={} delay-ms={} all run",
            self.seed,
            self.replicas,
            self.planned_duration(),
            self.transport.loss,
            self.transport.delay_ms
        )?;
        let mut at = self.warm_up;
        for (index, step) in self.steps.iter().enumerate() {
            let faults: Vec<String> = step.faults.iter().map(ToString::to_string).collect();
            writeln!(
                out,
                "  step {:>3} at +{:>6.1}s for {:.1}s: {}",
                index + 1,
                at.as_secs_f64(),
                step.length.as_secs_f64(),
                faults.join(" + ")
            )?;
            at += step.length + step.quiet;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(replicas: u8, seed: u64) -> ScheduleOptions {
        ScheduleOptions {
            replicas,
            duration: Duration::from_secs(120),
            seed,
            killable: (0..replicas).collect(),
            always_kill: None,
            disk: false,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(Schedule::generate(&options(5, 7)), Schedule::generate(&options(5, 7)));
        assert_ne!(Schedule::generate(&options(5, 7)), Schedule::generate(&options(5, 8)));
    }

    #[test]
    fn no_step_kills_more_than_a_minority_or_stops_a_process_twice() {
        for replicas in [3, 5] {
            for seed in 0..50 {
                let schedule = Schedule::generate(&options(replicas, seed));
                assert!(schedule.planned_duration() >= Duration::from_secs(120));
                for step in &schedule.steps {
                    let kills = step.faults.iter().filter(|fault| fault.is_kill()).count();
                    assert!(kills <= usize::from((replicas - 1) / 2), "{step:?}");
                    let stopped: Vec<u8> = step.faults.iter().filter_map(Fault::process).collect();
                    let distinct: BTreeSet<u8> = stopped.iter().copied().collect();
                    assert_eq!(stopped.len(), distinct.len(), "{step:?}");
                    assert!(!step.faults.is_empty());
                }
            }
        }
    }

    #[test]
    fn disk_schedules_kill_every_replica_at_once_alone_and_damage_a_minority() {
        let mut whole_cluster_kills = 0;
        let mut damages = 0;
        for seed in 0..50 {
            let schedule = Schedule::generate(&ScheduleOptions { disk: true, ..options(3, seed) });
            for step in &schedule.steps {
                if step.faults.contains(&Fault::KillAll) {
                    assert_eq!(step.faults, vec![Fault::KillAll]);
                    whole_cluster_kills += 1;
                }
                damages += step.faults.iter().filter(|fault| matches!(fault, Fault::Damage { .. })).count();
                assert!(step.faults.iter().filter(|fault| fault.is_kill()).count() <= 1, "{step:?}");
            }
        }
        assert!(whole_cluster_kills > 0 && damages > 0, "{whole_cluster_kills} whole-cluster kills, {damages} damages");
    }

    #[test]
    fn only_killable_replicas_are_killed() {
        let spare_primary = ScheduleOptions { killable: vec![1, 2], ..options(3, 3) };
        let schedule = Schedule::generate(&spare_primary);
        assert!(schedule.steps.iter().flat_map(|step| &step.faults).all(|fault| *fault != Fault::Kill(0)));
    }

    #[test]
    fn partitions_block_the_right_directions() {
        assert_eq!(Fault::OneWay { from: 1, to: 2 }.blocked_pairs(3), BTreeSet::from([(1, 2)]));
        assert_eq!(Fault::Isolate(0).blocked_pairs(3), BTreeSet::from([(0, 1), (1, 0), (0, 2), (2, 0)]));
        let split = Fault::Split(vec![0, 1]).blocked_pairs(5);
        assert_eq!(split.len(), 12);
        assert!(split.contains(&(4, 1)) && !split.contains(&(0, 1)) && !split.contains(&(2, 3)));
        assert!(Fault::Pause(1).blocked_pairs(3).is_empty());
    }
}
