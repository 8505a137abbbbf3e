//! Swarm options: one seed becomes the whole shape of a run — cluster size,
//! protocol timing, workload, and every fault rate — so that some seeds are calm
//! and some are storms, and every combination gets its turn.

use core::fmt;
use core::time::Duration;

use noted_core::config::StorageKind;
use noted_core::wire::size;
use noted_core::{Defect, Limits, Timing};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::{CrashBudget, FaultBudget, SimProtocol};

/// Parses a seed: a decimal `u64`, or a hexadecimal git hash of which the first 16
/// digits are taken (so a commit hash names a seed).
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(seed) = text.parse::<u64>() {
        return Ok(seed);
    }
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if !hex.is_empty() && hex.chars().all(|character| character.is_ascii_hexdigit()) {
        let digits = &hex[..hex.len().min(16)];
        return u64::from_str_radix(digits, 16).map_err(|error| error.to_string());
    }
    Err(format!("seed {text:?} is neither a decimal u64 nor a hexadecimal hash"))
}

/// Independent random streams, one per concern, all derived from the seed: changing
/// how the workload draws never shifts the network's draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSeeds {
    pub network: u64,
    pub faults: u64,
    pub workload: u64,
    pub clocks: u64,
    /// Base of the replicas' own seeds (timer jitter).
    pub replicas: u64,
}

/// How messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Every message takes at least this long.
    pub delay_min: Duration,
    /// Upper bound of the ordinary, uniformly drawn extra delay.
    pub delay_spread: Duration,
    /// Per mille of messages that fall in the long tail.
    pub tail_per_mille: u32,
    /// The long tail: up to this much extra delay.
    pub tail_max: Duration,
    pub loss_per_mille: u32,
    pub duplicate_per_mille: u32,
    /// Whether a paused replica's messages wait for it (true) or are dropped.
    pub hold_while_paused: bool,
}

/// How often, and which, faults strike during the safety phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultOptions {
    /// Mean time between fault actions; `None` for a calm run.
    pub mean_interval: Option<Duration>,
    /// Mean time a partition, crash or pause lasts.
    pub mean_duration: Duration,
    pub partitions: bool,
    pub crashes: CrashBudget,
    pub pauses: bool,
    /// Largest clock offset between replicas.
    pub clock_skew_max: Duration,
    /// Largest clock rate error, in parts per million.
    pub clock_drift_max_ppm: u32,
    /// Whether a replica sending a snapshot chunk may be struck (or its receiver),
    /// now and then, by a crash, pause or partition within the budget: transfers
    /// interrupted midway, and view changes during them.
    pub transfer_faults: bool,
    /// Every replica crashes at once now and then (a power cut), each restarting
    /// after its own delay (durable storage only).
    pub whole_cluster_crashes: bool,
}

/// Where replicas keep their state, and what their disks do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    pub kind: StorageKind,
    /// Every sync takes at least this long.
    pub sync_min: Duration,
    /// Upper bound of the ordinary, uniformly drawn extra sync time.
    pub sync_spread: Duration,
    /// Per mille of syncs that fall in the long tail, and how long it is.
    pub sync_tail_per_mille: u32,
    pub sync_tail_max: Duration,
    /// A crash keeps each write no sync covered with this chance (per mille) ...
    pub unsynced_kept_per_mille: u32,
    /// ... and tears a kept write with this chance: only a prefix lands.
    pub torn_per_mille: u32,
    /// Per mille of crashes after which one byte of the disk is flipped (a record of
    /// the log's tail, a superblock copy or the checkpoint), for at most a minority
    /// of replicas without intact state at once.
    pub corruption_per_mille: u32,
    /// A crash may also lose the replica's disk (it recovers from its peers), for
    /// at most a minority of replicas at once.
    pub disk_losses: bool,
    /// Now and then a disk takes no writes for a while (full, or failing writes
    /// the host retries), for at most a minority of replicas at once.
    pub disk_stalls: bool,
}

impl StorageOptions {
    pub const MEMORY: StorageOptions = StorageOptions {
        kind: StorageKind::Memory,
        sync_min: Duration::ZERO,
        sync_spread: Duration::ZERO,
        sync_tail_per_mille: 0,
        sync_tail_max: Duration::ZERO,
        unsynced_kept_per_mille: 0,
        torn_per_mille: 0,
        corruption_per_mille: 0,
        disk_losses: false,
        disk_stalls: false,
    };

    pub fn is_disk(&self) -> bool {
        self.kind == StorageKind::Disk
    }
}

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadOptions {
    pub client_count: u64,
    /// Operations each client issues during the safety phase.
    pub operations_per_client: u32,
    /// Operations each client issues after the faults heal.
    pub liveness_operations_per_client: u32,
    /// Longest pause between a client's operations.
    pub think_time_max: Duration,
    /// How long a client waits for an answer before sending the request again.
    pub request_timeout: Duration,
    /// Attempts before a client gives up during the safety phase (the outcome is then unknown).
    pub attempts_max: u32,
    /// Per mille of clients that choose a replica per request rather than staying with one.
    pub roaming_clients_per_mille: u32,
    /// Per mille of reads sent with `Consistency::Local` (never recorded in the history).
    pub local_reads_per_mille: u32,
    /// Per mille of writes made conditional with `if_match`.
    pub conditional_per_mille: u32,
    /// Notes most operations touch.
    pub hot_notes: u64,
    /// Whether clients list notes. A list reads many notes at once, so the checker must
    /// search such a history whole: only some seeds list, to keep the others cheap to check.
    pub lists: bool,
    /// Per cent of operations that create a note.
    pub creates_per_cent: u32,
    /// Created and replaced notes carry a padding of up to this many bytes, so that
    /// notes reach the largest body the seed's limits allow; 0 for small notes.
    pub padding_bytes_max: usize,
}

/// Everything one run does, derived from its seed (and the protocol and mode).
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    pub seed: u64,
    pub protocol: SimProtocol,
    pub beyond_model: bool,
    pub replica_count: u8,
    pub timing: Timing,
    /// The replicas' limits: the defaults, or small ones, so that logs are short,
    /// snapshots take many chunks and messages fill up to their byte bounds.
    pub limits: Limits,
    pub network: NetworkOptions,
    pub faults: FaultOptions,
    pub workload: WorkloadOptions,
    /// Length of the phase with faults.
    pub safety_duration: Duration,
    /// Once faults heal, every request must complete and the replicas converge within this.
    pub liveness_bound: Duration,
    pub storage: StorageOptions,
    /// A deliberate bug switched on in every replica (simulator self-tests only).
    pub defect: Option<Defect>,
    pub streams: StreamSeeds,
}

impl SimOptions {
    /// Draws the options of the run `seed` of `protocol`.
    pub fn from_seed(protocol: SimProtocol, seed: u64, beyond_model: bool) -> SimOptions {
        SimOptions::from_seed_with_disks(protocol, seed, beyond_model, true)
    }

    /// As [`SimOptions::from_seed`]; with `disks` false, a seed that would give its
    /// replicas disks keeps memory storage and the shape it had before disks were drawn.
    pub fn from_seed_with_disks(protocol: SimProtocol, seed: u64, beyond_model: bool, disks: bool) -> SimOptions {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let streams = StreamSeeds {
            network: rng.random(),
            faults: rng.random(),
            workload: rng.random(),
            clocks: rng.random(),
            replicas: rng.random(),
        };
        let budget = if beyond_model { FaultBudget::UNLIMITED } else { protocol.fault_budget() };
        let replica_count = if rng.random_bool(0.7) { 3 } else { 5 };
        let heartbeat_interval = Duration::from_millis(rng.random_range(20..=200));
        let timing = Timing {
            retransmit_timeout: Duration::from_millis(rng.random_range(10..=100)),
            heartbeat_interval,
            view_change_timeout: heartbeat_interval * rng.random_range(3..=8),
        };
        // Weather: a third of the seeds are calm, a third moderate, a third storms.
        let weather = rng.random_range(0..3u32);
        let network = NetworkOptions {
            delay_min: Duration::from_micros(rng.random_range(50..=1_000)),
            delay_spread: if budget.message_reordering {
                Duration::from_micros(rng.random_range(0..=[500, 5_000, 20_000][weather as usize]))
            } else {
                Duration::ZERO
            },
            tail_per_mille: if budget.message_reordering { [0, 10, 50][weather as usize] } else { 0 },
            tail_max: Duration::from_millis(rng.random_range(50..=500)),
            loss_per_mille: if budget.message_loss { rng.random_range(0..=[0, 50, 200][weather as usize]) } else { 0 },
            duplicate_per_mille: if budget.message_duplication {
                rng.random_range(0..=[0, 50, 150][weather as usize])
            } else {
                0
            },
            hold_while_paused: rng.random_bool(0.5),
        };
        let crashes_enabled = rng.random_bool(0.6);
        let faults = FaultOptions {
            mean_interval: match weather {
                0 => None,
                1 => Some(Duration::from_millis(rng.random_range(200..=800))),
                _ => Some(Duration::from_millis(rng.random_range(30..=200))),
            },
            mean_duration: Duration::from_millis(rng.random_range(50..=600)),
            partitions: budget.partitions && rng.random_bool(0.7),
            crashes: if crashes_enabled { budget.crashes } else { CrashBudget::None },
            pauses: budget.pauses && rng.random_bool(0.5),
            clock_skew_max: if budget.clock_skew {
                Duration::from_millis(rng.random_range(0..=500))
            } else {
                Duration::ZERO
            },
            clock_drift_max_ppm: if budget.clock_skew { rng.random_range(0..=50_000) } else { 0 },
            transfer_faults: false,
            whole_cluster_crashes: false,
        };
        let workload = WorkloadOptions {
            client_count: rng.random_range(2..=6),
            operations_per_client: rng.random_range(10..=60),
            liveness_operations_per_client: rng.random_range(1..=3),
            think_time_max: Duration::from_millis(rng.random_range(1..=40)),
            request_timeout: Duration::from_millis(rng.random_range(150..=1_000)),
            attempts_max: rng.random_range(2..=6),
            roaming_clients_per_mille: rng.random_range(0..=1000),
            local_reads_per_mille: rng.random_range(0..=100),
            conditional_per_mille: rng.random_range(0..=600),
            hot_notes: rng.random_range(1..=4),
            lists: rng.random_bool(0.5),
            creates_per_cent: 15,
            padding_bytes_max: 0,
        };
        let mut options = SimOptions {
            seed,
            protocol,
            beyond_model,
            replica_count,
            timing,
            limits: Limits::default(),
            network,
            faults,
            workload,
            safety_duration: Duration::from_millis(rng.random_range(500..=3_000)),
            liveness_bound: Duration::from_secs(10),
            storage: StorageOptions::MEMORY,
            defect: None,
            streams,
        };
        // Drawn last, so that the draws above give every seed the shape it always had.
        if rng.random_bool(0.5) {
            options.limits = small_limits(&mut rng);
            options.workload.creates_per_cent = rng.random_range(15..=45);
            let padding_max = options.limits.store.body_bytes_max.saturating_sub(WORKLOAD_BODY_BYTES_MAX);
            options.workload.padding_bytes_max = if rng.random_bool(0.7) { padding_max } else { 0 };
            options.faults.transfer_faults = options.faults.mean_interval.is_some() && rng.random_bool(0.6);
        }
        if protocol.has_disks() && rng.random_bool(0.5) && disks {
            options.storage = disk_options(&mut rng, weather);
            if protocol != SimProtocol::Vr {
                // Outside the primary-backup fault model: nothing repairs synced bytes
                // from peers (see core's `storage::updates`).
                options.storage.corruption_per_mille = 0;
                options.storage.disk_losses = false;
            }
            // A protocol that tolerates no crash in memory drew none above: as many of its
            // disk seeds crash as of the others' (60% drew crashes, and half the rest).
            let crash_odds = if budget.crashes == CrashBudget::None { 0.8 } else { 0.5 };
            if options.faults.crashes != CrashBudget::None || rng.random_bool(crash_odds) {
                // With disks, crashes lose only what was not synced: any number of
                // replicas may be down at once. Disk losses keep to the minority.
                options.faults.crashes = CrashBudget::Unlimited;
                options.faults.whole_cluster_crashes = rng.random_bool(0.85);
            } else {
                options.storage.disk_losses = false;
            }
            // Drawn after everything else, so that seeds without stalls keep their shape.
            options.storage.disk_stalls = rng.random_bool(0.4);
        }
        options
    }

    /// The one command that replays this run.
    pub fn replay_command(&self) -> String {
        let beyond = if self.beyond_model { " --beyond-model" } else { "" };
        format!("noted-sim run --protocol {} --seed {}{beyond}", self.protocol, self.seed)
    }
}

/// Disks from fast and steady to slow with long tails; crashes that keep none,
/// some or all of what was not synced, torn or not.
fn disk_options(rng: &mut ChaCha8Rng, weather: u32) -> StorageOptions {
    StorageOptions {
        kind: StorageKind::Disk,
        sync_min: Duration::from_micros(rng.random_range(20..=2_000)),
        sync_spread: Duration::from_micros(rng.random_range(0..=[200, 5_000, 20_000][weather as usize])),
        sync_tail_per_mille: [0, 10, 50][weather as usize],
        sync_tail_max: Duration::from_millis(rng.random_range(20..=300)),
        unsynced_kept_per_mille: [0, 0, 500, 1000][rng.random_range(0..4usize)],
        torn_per_mille: rng.random_range(0..=500),
        corruption_per_mille: [0, 100, 400][rng.random_range(0..3usize)],
        disk_losses: rng.random_bool(0.3),
        disk_stalls: false,
    }
}

/// What the workload's bodies weigh besides their padding (token, title, a patch's fields).
const WORKLOAD_BODY_BYTES_MAX: usize = 256;

/// Limits far below the defaults: logs of a few entries, messages of a few KiB,
/// notes up to what one message holds. Always valid.
fn small_limits(rng: &mut ChaCha8Rng) -> Limits {
    let defaults = Limits::default();
    let overhead = size::ENTRY_OVERHEAD_BYTES_MAX.max(size::REPLY_OVERHEAD_BYTES_MAX);
    let message_bytes_max = rng.random_range(1_024..=16 * 1_024);
    let body_bytes_max = rng.random_range(2 * WORKLOAD_BODY_BYTES_MAX..=message_bytes_max - overhead);
    let log_entries_max = rng.random_range(4..=64);
    let mut limits = Limits {
        log_entries_max,
        entries_per_message_max: rng.random_range(1..=log_entries_max.min(64)),
        message_bytes_max,
        uncommitted_bytes_max: rng.random_range(message_bytes_max..=8 * message_bytes_max),
        ..defaults
    };
    limits.log_bytes_max = rng.random_range(2 * limits.uncommitted_bytes_max..=16 * limits.uncommitted_bytes_max);
    limits.store.body_bytes_max = body_bytes_max;
    limits.store.page_bytes_max = rng.random_range(body_bytes_max.min(message_bytes_max)..=message_bytes_max);
    limits
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_micros() as f64 / 1000.0)
}

impl fmt::Display for SimOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (network, faults, workload) = (&self.network, &self.faults, &self.workload);
        writeln!(
            formatter,
            "seed {} protocol {} replicas {}{}{}",
            self.seed,
            self.protocol,
            self.replica_count,
            if self.beyond_model { " beyond-model" } else { "" },
            self.defect.map_or(String::new(), |defect| format!(" defect {defect:?}")),
        )?;
        writeln!(
            formatter,
            "timing: retransmit {} heartbeat {}; safety phase {}, liveness bound {}",
            millis(self.timing.retransmit_timeout),
            millis(self.timing.heartbeat_interval),
            millis(self.safety_duration),
            millis(self.liveness_bound),
        )?;
        writeln!(
            formatter,
            "network: delay {}+{} tail {}‰ up to {}, loss {}‰, duplication {}‰, paused replicas {} messages",
            millis(network.delay_min),
            millis(network.delay_spread),
            network.tail_per_mille,
            millis(network.tail_max),
            network.loss_per_mille,
            network.duplicate_per_mille,
            if network.hold_while_paused { "hold" } else { "drop" },
        )?;
        writeln!(
            formatter,
            "faults: every {} lasting {}, partitions {}, crashes {:?}, pauses {}, clock skew {} drift {}ppm, \
             during transfers {}",
            faults.mean_interval.map_or("never".to_string(), millis),
            millis(faults.mean_duration),
            faults.partitions,
            faults.crashes,
            faults.pauses,
            millis(faults.clock_skew_max),
            faults.clock_drift_max_ppm,
            faults.transfer_faults,
        )?;
        let storage = &self.storage;
        if storage.is_disk() {
            writeln!(
                formatter,
                "disks: sync {}+{} tail {}‰ up to {}; a crash keeps {}‰ of unsynced writes, tears {}‰ of those, \
                 corrupts {}‰ of disks; whole-cluster crashes {}, disk losses {}, disk stalls {}",
                millis(storage.sync_min),
                millis(storage.sync_spread),
                storage.sync_tail_per_mille,
                millis(storage.sync_tail_max),
                storage.unsynced_kept_per_mille,
                storage.torn_per_mille,
                storage.corruption_per_mille,
                self.faults.whole_cluster_crashes,
                storage.disk_losses,
                storage.disk_stalls,
            )?;
        }
        let limits = &self.limits;
        writeln!(
            formatter,
            "limits: log {} entries or {} bytes, {} entries and {} bytes a message, {} bytes uncommitted, notes of {} \
             bytes, pages of {} bytes",
            limits.log_entries_max,
            limits.log_bytes_max,
            limits.entries_per_message_max,
            limits.message_bytes_max,
            limits.uncommitted_bytes_max,
            limits.store.body_bytes_max,
            limits.store.page_bytes_max,
        )?;
        write!(
            formatter,
            "workload: {} clients x {} (+{} after healing) operations, think {}, timeout {} x {} attempts, \
             roaming {}‰, local reads {}‰, conditional {}‰, {} hot notes, lists {}, creates {}%, padding up to {} bytes",
            workload.client_count,
            workload.operations_per_client,
            workload.liveness_operations_per_client,
            millis(workload.think_time_max),
            millis(workload.request_timeout),
            workload.attempts_max,
            workload.roaming_clients_per_mille,
            workload.local_reads_per_mille,
            workload.conditional_per_mille,
            workload.hot_notes,
            workload.lists,
            workload.creates_per_cent,
            workload.padding_bytes_max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_decimal_or_the_first_sixteen_hex_digits_of_a_hash() {
        assert_eq!(parse_seed("42"), Ok(42));
        assert_eq!(parse_seed("5b9e8b1"), Ok(0x5b9e8b1));
        assert_eq!(parse_seed("0e92d3b0e92d3b0e92d3b0e92d3b0e92d3b0e92d"), Ok(0x0e92d3b0e92d3b0e));
        assert!(parse_seed("not-a-seed").is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_options() {
        let first = SimOptions::from_seed(SimProtocol::RemoteWrite, 7, false);
        assert_eq!(first, SimOptions::from_seed(SimProtocol::RemoteWrite, 7, false));
    }

    #[test]
    fn drawn_limits_are_valid_and_notes_fit_them() {
        for seed in 0..500 {
            let options = SimOptions::from_seed(SimProtocol::Vr, seed, false);
            let mut config = noted_core::Config::new(
                noted_core::ClusterId(1),
                noted_core::ReplicaId(0),
                3,
                noted_core::ProtocolKind::Vr,
                seed,
            );
            config.limits = options.limits;
            assert_eq!(config.validate(), Ok(()), "seed {seed}");
            let largest_note = options.workload.padding_bytes_max + WORKLOAD_BODY_BYTES_MAX;
            assert!(largest_note <= options.limits.store.body_bytes_max.max(WORKLOAD_BODY_BYTES_MAX), "seed {seed}");
        }
    }

    #[test]
    fn crashes_stay_inside_the_budget() {
        let mut disk_seeds = 0;
        for seed in 0..200 {
            let options = SimOptions::from_seed(SimProtocol::LocalWrite, seed, false);
            if options.storage.is_disk() {
                disk_seeds += 1;
                assert_eq!(options.storage.corruption_per_mille, 0, "seed {seed}: damage is outside the model");
                assert!(!options.storage.disk_losses, "seed {seed}: a lost disk is outside the model");
            } else {
                assert_eq!(options.faults.crashes, CrashBudget::None, "seed {seed}");
            }
            let memory = SimOptions::from_seed_with_disks(SimProtocol::LocalWrite, seed, false, false);
            assert_eq!(memory.faults.crashes, CrashBudget::None, "seed {seed} in memory");
        }
        assert!(disk_seeds > 50, "{disk_seeds} of 200 seeds have disks");
    }
}
