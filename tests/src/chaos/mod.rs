//! Chaos on real processes: a cluster of `noted serve` processes in a private
//! network namespace, a concurrent workload recording a lin-history, and a seeded
//! schedule of faults (SIGKILL and empty restarts, SIGSTOP/SIGCONT pauses,
//! iptables partitions, and loss and delay inside noted's transport; with vr on
//! disk also SIGKILL of every replica at once and bytes flipped in a stopped
//! replica's log or superblock before it restarts), each
//! protocol within its fault model: vr survives every fault; remote-write every
//! fault but a crash of its fixed primary; local-write, whose replicas keep the
//! only copy of what they own until it has spread, no crash at all (pauses,
//! partitions, loss and delay only).
//!
//! After the last fault heals, a run checks that the cluster serves through every
//! replica within [`RECOVERY_BOUND`], that every replica holds the same notes, that
//! no acknowledged create was lost and no retried create made two notes, and that
//! the history is linearizable (noted-check's checker).
//!
//! [`run`] expects to be inside a namespace already; the `noted-chaos` binary makes
//! one with [`namespace::Namespace`] and runs itself inside it.

pub mod firewall;
pub mod namespace;
pub mod schedule;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, ClusterOptions};
use crate::workload::Workload;
use firewall::Firewall;
use schedule::{DamageTarget, Fault, Schedule, ScheduleOptions, Step};

/// How long the cluster may take, once every fault has healed, to answer a
/// linearizable read through every replica, or a killed replica to recover.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// How long replicas may take to hold the same notes once the workload stopped.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Vr,
    /// Fixed primary R0, whose crash is outside the protocol's fault model.
    RemoteWrite,
    /// Every replica owns what it creates; no crash is inside its fault model.
    LocalWrite,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Vr => "vr",
            Protocol::RemoteWrite => "remote-write",
            Protocol::LocalWrite => "local-write",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub protocol: Protocol,
    pub replicas: u8,
    pub duration: Duration,
    pub seed: u64,
    pub clients: u64,
    /// Each client's pause between two operations.
    pub think_time: Duration,
    /// remote-write: kill the fixed primary in every step, beyond the fault model.
    pub crash_primary: bool,
    /// Where to copy the run's lin-history (it is kept in the run's directory only
    /// when a check failed).
    pub history: Option<PathBuf>,
    /// vr only: the replicas keep data directories, and the schedule also kills
    /// every replica at once and flips bytes of a stopped replica's files.
    pub disk: bool,
}

#[derive(Debug)]
pub struct Report {
    /// Each broken guarantee, in words; empty when the run passed.
    pub violations: Vec<String>,
    /// Why the linearizability check decided nothing, when the checker gave up:
    /// neither a pass nor a broken guarantee.
    pub undecided: Option<String>,
    pub summary: String,
    /// Peer packets the partitions dropped (iptables' counters).
    pub dropped_packets: u64,
    /// Logs, cluster file and history of the run.
    pub directory: PathBuf,
}

impl ChaosOptions {
    pub fn schedule(&self) -> Schedule {
        let killable = match self.protocol {
            Protocol::Vr => (0..self.replicas).collect(),
            Protocol::RemoteWrite => (1..self.replicas).collect(),
            Protocol::LocalWrite => Vec::new(),
        };
        let always_kill = (self.crash_primary && self.protocol == Protocol::RemoteWrite).then_some(0);
        Schedule::generate(&ScheduleOptions {
            replicas: self.replicas,
            duration: self.duration,
            seed: self.seed,
            killable,
            always_kill,
            disk: self.disk && self.protocol == Protocol::Vr,
        })
    }
}

/// Runs one chaos test; must be called inside a fresh network namespace.
pub fn run(options: &ChaosOptions) -> Report {
    let schedule = options.schedule();
    println!(
        "noted chaos: protocol {} ({} storage), {} clients, {:?} between operations",
        options.protocol.name(),
        if options.disk { "disk" } else { "memory" },
        options.clients,
        options.think_time
    );
    print!("{schedule}");
    let mut cluster = Cluster::start(ClusterOptions {
        protocol: options.protocol.name(),
        primary: (options.protocol == Protocol::RemoteWrite).then_some(0),
        replicas: options.replicas,
        test_faults: Some(json!({ "loss": schedule.transport.loss, "delay_ms": schedule.transport.delay_ms })),
        address_per_replica: true,
        storage: if options.disk { "disk" } else { "memory" },
        ..ClusterOptions::vr()
    });
    println!("cluster up; files in {}", cluster.directory.display());
    let firewall = match Firewall::new(cluster.addresses.clone()) {
        Ok(firewall) => firewall,
        Err(error) => {
            cluster.keep_files = true;
            return Report {
                violations: vec![format!("cannot set up partitions: {error}")],
                undecided: None,
                summary: String::new(),
                dropped_packets: 0,
                directory: cluster.directory.clone(),
            };
        }
    };
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let source = format!(
        "noted-chaos: {} with {} replicas, seed {}, {:?}",
        options.protocol.name(),
        options.replicas,
        options.seed,
        options.duration
    );
    let mut workload = Workload::new(urls, &source);
    workload.think_time = options.think_time;
    let clients = workload.spawn_clients(options.clients, options.seed);
    let started = Instant::now();
    let mut violations = Vec::new();
    let mut dropped_packets = 0;
    std::thread::sleep(schedule.warm_up);
    for (index, step) in schedule.steps.iter().enumerate() {
        let progress = format!("{} notes created so far", workload.highest_id.load(Ordering::Relaxed));
        println!("[{:>6.1}s] step {}: {} ({progress})", started.elapsed().as_secs_f64(), index + 1, describe(step));
        match perform(&mut cluster, &firewall, step) {
            Ok(dropped) => dropped_packets += dropped,
            Err(violation) => {
                violations.push(violation);
                break;
            }
        }
    }
    match firewall.heal() {
        Ok(dropped) => dropped_packets += dropped,
        Err(error) => violations.push(format!("cannot remove the partitions: {error}")),
    }
    let healed = Instant::now();
    println!("[{:>6.1}s] every fault healed", started.elapsed().as_secs_f64());
    let recovery = time_until_every_replica_serves(&cluster);
    match recovery {
        Some(took) => {
            println!("[{:>6.1}s] every replica serves again after {took:.1?}", started.elapsed().as_secs_f64())
        }
        None => violations.push(format!(
            "some replica did not answer a linearizable read within {RECOVERY_BOUND:?} after the faults healed"
        )),
    }
    // A last stretch of load on the healed cluster.
    std::thread::sleep(Duration::from_secs(1));
    let findings = workload.finish_and_verify(&cluster, clients, options.seed, CONVERGENCE_BOUND);
    violations.extend(findings.violations);
    if let Some(copy) = &options.history {
        let recorded = cluster.directory.join("history.jsonl");
        match std::fs::copy(&recorded, copy) {
            Ok(_) => println!("history copied to {}", copy.display()),
            Err(error) => eprintln!("noted chaos: cannot copy {} to {}: {error}", recorded.display(), copy.display()),
        }
    }
    let summary = format!(
        "{} steps in {:.1?}; {dropped_packets} packets dropped by partitions; serving again {} after healing; {}",
        schedule.steps.len(),
        healed.duration_since(started),
        recovery.map_or("never".into(), |took| format!("{took:.1?}")),
        findings.summary
    );
    cluster.keep_files = !violations.is_empty() || findings.undecided.is_some();
    Report { violations, undecided: findings.undecided, summary, dropped_packets, directory: cluster.directory.clone() }
}

fn describe(step: &Step) -> String {
    let faults: Vec<String> = step.faults.iter().map(ToString::to_string).collect();
    format!("{} for {:.1?}", faults.join(" + "), step.length)
}

/// Turns the step's faults on, waits, heals them, lets killed replicas recover
/// and waits out the quiet interval; returns the packets its partitions dropped.
/// Errs when a killed replica does not recover.
fn perform(cluster: &mut Cluster, firewall: &Firewall, step: &Step) -> Result<u64, String> {
    let replicas = u8::try_from(cluster.replica_count()).expect("a few replicas");
    let mut blocked = BTreeSet::new();
    for fault in &step.faults {
        match fault {
            Fault::Kill(replica) => cluster.kill(usize::from(*replica)),
            Fault::Pause(replica) => cluster.pause(usize::from(*replica)),
            Fault::KillAll => cluster.kill_all_at_once(),
            Fault::Damage { replica, target } => {
                let replica = usize::from(*replica);
                cluster.kill(replica);
                let dir = cluster.data_dir(replica);
                let hit = match target {
                    DamageTarget::Log { pick } => crate::data_files::flip_in_newest_log(&dir, *pick, |_| true),
                    DamageTarget::Superblock { copy } => crate::data_files::flip_in_superblock(&dir, *copy),
                };
                match hit {
                    Ok(hit) => println!("          flipped a byte of {hit}"),
                    Err(why) => println!("          nothing to damage: {why}"),
                }
            }
            partition => blocked.extend(partition.blocked_pairs(replicas)),
        }
    }
    firewall.block(&blocked)?;
    std::thread::sleep(step.length);
    partitions_took_effect(cluster, step, &blocked)?;
    let dropped = firewall.heal()?;
    let mut restarted = Vec::new();
    for fault in &step.faults {
        match fault {
            Fault::Kill(replica) | Fault::Damage { replica, .. } => {
                cluster.restart(usize::from(*replica));
                restarted.push(usize::from(*replica));
            }
            Fault::KillAll => {
                for replica in 0..cluster.replica_count() {
                    cluster.restart(replica);
                    restarted.push(replica);
                }
            }
            Fault::Pause(replica) => cluster.resume(usize::from(*replica)),
            _ => {}
        }
    }
    let quiet_ends = Instant::now() + step.quiet;
    let deadline = Instant::now() + RECOVERY_BOUND;
    // At most a minority may have lost its memory at once: wait for recovery
    // before the next step may kill again.
    while !restarted.iter().all(|replica| matches!(cluster.role(*replica).as_deref(), Some("primary" | "backup"))) {
        if Instant::now() >= deadline {
            return Err(format!("restarted replicas {restarted:?} did not recover within {RECOVERY_BOUND:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(quiet_ends.saturating_duration_since(Instant::now()));
    Ok(dropped)
}

/// Checks the firewall through the replicas' own `/status`: a receiver cut off
/// from a sender has not heard from it since the partition began, and a pair left
/// connected has exchanged heartbeats (one a second) lately. Replicas that this
/// step stopped are left out, and so are steps too short to tell.
fn partitions_took_effect(cluster: &Cluster, step: &Step, blocked: &BTreeSet<(u8, u8)>) -> Result<(), String> {
    if blocked.is_empty() || step.length < Duration::from_secs(2) {
        return Ok(());
    }
    let stopped: Vec<u8> = step.faults.iter().filter_map(Fault::process).collect();
    let replicas = u8::try_from(cluster.replica_count()).expect("a few replicas");
    let silent_for_ms = |receiver: u8, sender: u8| -> Option<u64> {
        let status = cluster.status(usize::from(receiver))?;
        let peer = status["peers"].as_array()?.iter().find(|peer| peer["replica"] == sender)?.clone();
        Some(peer["last_contact_ms_ago"].as_u64().unwrap_or(u64::MAX))
    };
    let cut_off_for_ms = u64::try_from(step.length.as_millis() / 2).unwrap_or(u64::MAX);
    for sender in (0..replicas).filter(|replica| !stopped.contains(replica)) {
        for receiver in (0..replicas).filter(|replica| *replica != sender && !stopped.contains(replica)) {
            let Some(silent) = silent_for_ms(receiver, sender) else { continue };
            let is_blocked = blocked.contains(&(sender, receiver));
            if is_blocked && silent < cut_off_for_ms {
                return Err(format!("the partition {step:?} let R{sender} reach R{receiver} {silent} ms ago"));
            }
            if !is_blocked && silent > 3_000 {
                return Err(format!("during {step:?}, R{receiver} has not heard from R{sender} for {silent} ms"));
            }
        }
    }
    Ok(())
}

/// How long until a linearizable read succeeds through every replica, within [`RECOVERY_BOUND`].
fn time_until_every_replica_serves(cluster: &Cluster) -> Option<Duration> {
    let started = Instant::now();
    let mut waiting: Vec<usize> = (0..cluster.replica_count()).collect();
    while !waiting.is_empty() {
        if started.elapsed() >= RECOVERY_BOUND {
            return None;
        }
        waiting.retain(|replica| {
            cluster.client(*replica).get_path("/notes?limit=1").map_or(true, |response| response.status != 200)
        });
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Some(started.elapsed())
}
