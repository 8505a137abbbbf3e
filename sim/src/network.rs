//! The simulated network between replicas and from clients: which links are cut,
//! and what happens to each message sent (lost, delayed, duplicated). Reordering
//! falls out of independently drawn delays.

use core::fmt;
use core::time::Duration;

use noted_core::ReplicaId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::options::NetworkOptions;

/// The shape of a network partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Neither side hears the other.
    Symmetric { side_a: Vec<ReplicaId>, side_b: Vec<ReplicaId> },
    /// `from` cannot reach `to`, but `to` still reaches `from`.
    OneWay { from: Vec<ReplicaId>, to: Vec<ReplicaId> },
    /// The two sides cannot talk, but `bridge` talks to both.
    Bridge { side_a: Vec<ReplicaId>, side_b: Vec<ReplicaId>, bridge: ReplicaId },
}

impl Partition {
    /// Draws a partition of `replica_count` replicas: symmetric (random or majority/minority),
    /// one-way, or bridged.
    pub fn random(rng: &mut ChaCha8Rng, replica_count: u8) -> Partition {
        let mut replicas: Vec<ReplicaId> = (0..replica_count).map(ReplicaId).collect();
        // Fisher-Yates with the seeded generator: a deterministic shuffle.
        for index in (1..replicas.len()).rev() {
            let other = rng.random_range(0..=index);
            replicas.swap(index, other);
        }
        let count = replicas.len();
        let split = |replicas: &[ReplicaId], at: usize| {
            let mut side_a = replicas[..at].to_vec();
            let mut side_b = replicas[at..].to_vec();
            side_a.sort();
            side_b.sort();
            (side_a, side_b)
        };
        match rng.random_range(0..4u32) {
            0 => {
                let (side_a, side_b) = split(&replicas, count / 2);
                Partition::Symmetric { side_a, side_b }
            }
            1 => {
                let (side_a, side_b) = split(&replicas, rng.random_range(1..count));
                Partition::Symmetric { side_a, side_b }
            }
            2 => {
                let (from, to) = split(&replicas, rng.random_range(1..count));
                Partition::OneWay { from, to }
            }
            _ => {
                let bridge = replicas[0];
                let (side_a, side_b) = split(&replicas[1..], (count - 1) / 2);
                Partition::Bridge { side_a, side_b, bridge }
            }
        }
    }

    /// Whether this partition cuts the link `from -> to`.
    pub fn cuts(&self, from: ReplicaId, to: ReplicaId) -> bool {
        match self {
            Partition::Symmetric { side_a, side_b } | Partition::Bridge { side_a, side_b, .. } => {
                (side_a.contains(&from) && side_b.contains(&to)) || (side_b.contains(&from) && side_a.contains(&to))
            }
            Partition::OneWay { from: senders, to: receivers } => senders.contains(&from) && receivers.contains(&to),
        }
    }
}

fn list(replicas: &[ReplicaId]) -> String {
    replicas.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Partition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Symmetric { side_a, side_b } => write!(formatter, "{{{}}} | {{{}}}", list(side_a), list(side_b)),
            Partition::OneWay { from, to } => write!(formatter, "{{{}}} -/-> {{{}}}", list(from), list(to)),
            Partition::Bridge { side_a, side_b, bridge } => {
                write!(formatter, "{{{}}} | {{{}}} bridged by {bridge}", list(side_a), list(side_b))
            }
        }
    }
}

/// What the network does with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lost,
    /// Delivered after the first delay, and a second copy after the second one if duplicated.
    Delivered {
        delay: Duration,
        duplicate_delay: Option<Duration>,
    },
}

#[derive(Debug)]
pub struct Network {
    options: NetworkOptions,
    rng: ChaCha8Rng,
    partition: Option<Partition>,
    /// Off during the liveness phase: the network still delays but no longer loses.
    lossy: bool,
}

impl Network {
    pub fn new(options: NetworkOptions, rng: ChaCha8Rng) -> Network {
        Network { options, rng, partition: None, lossy: true }
    }

    pub fn partition(&self) -> Option<&Partition> {
        self.partition.as_ref()
    }

    pub fn set_partition(&mut self, partition: Option<Partition>) {
        self.partition = partition;
    }

    /// Heals for the liveness phase: no partition, no loss, no long tail.
    pub fn heal(&mut self) {
        self.partition = None;
        self.lossy = false;
    }

    pub fn is_cut(&self, from: ReplicaId, to: ReplicaId) -> bool {
        self.partition.as_ref().is_some_and(|partition| partition.cuts(from, to))
    }

    /// Draws the fate of one message sent now.
    pub fn fate(&mut self) -> Fate {
        if self.lossy && self.rng.random_range(0..1000) < self.options.loss_per_mille {
            return Fate::Lost;
        }
        let delay = self.delay();
        let duplicate_delay =
            if self.rng.random_range(0..1000) < self.options.duplicate_per_mille { Some(self.delay()) } else { None };
        Fate::Delivered { delay, duplicate_delay }
    }

    fn delay(&mut self) -> Duration {
        let spread = u64::try_from(self.options.delay_spread.as_nanos()).unwrap_or(u64::MAX);
        let mut delay = self.options.delay_min + Duration::from_nanos(self.rng.random_range(0..=spread));
        if self.lossy && self.rng.random_range(0..1000) < self.options.tail_per_mille {
            // The long tail: squaring a uniform draw makes short extra delays common and long ones rare.
            let tail = u64::try_from(self.options.tail_max.as_nanos()).unwrap_or(u64::MAX);
            let fraction: f64 = self.rng.random();
            delay += Duration::from_nanos((fraction * fraction * tail as f64) as u64);
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_bridge_talks_to_both_sides() {
        let partition =
            Partition::Bridge { side_a: vec![ReplicaId(1)], side_b: vec![ReplicaId(2)], bridge: ReplicaId(0) };
        assert!(partition.cuts(ReplicaId(1), ReplicaId(2)));
        assert!(partition.cuts(ReplicaId(2), ReplicaId(1)));
        assert!(!partition.cuts(ReplicaId(0), ReplicaId(2)));
        assert!(!partition.cuts(ReplicaId(1), ReplicaId(0)));
    }

    #[test]
    fn every_drawn_partition_cuts_some_link_and_keeps_some() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let partition = Partition::random(&mut rng, 5);
            let links: Vec<bool> = (0..5u8)
                .flat_map(|from| (0..5u8).map(move |to| (from, to)))
                .filter(|(from, to)| from != to)
                .map(|(from, to)| partition.cuts(ReplicaId(from), ReplicaId(to)))
                .collect();
            assert!(links.iter().any(|cut| *cut), "{partition}");
            assert!(links.iter().any(|cut| !cut), "{partition}");
        }
    }
}
