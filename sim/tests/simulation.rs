//! The simulator's own tests: thousands of seeds inside each protocol's fault model
//! pass, runs are deterministic, the trace format is locked, and a deliberate bug is
//! caught with a short history.

use noted_core::Defect;
use noted_sim::history::History;
use noted_sim::linearizability::{LinearizabilityVerdict, is_violation};
use noted_sim::minimize::operation_ids;
use noted_sim::report::failure_report;
use noted_sim::trace::Fnv1a;
use noted_sim::{FailureKind, RunRequest, SimProtocol, run};

/// Seeds per protocol unless `NOTED_SIM_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 2_000;

fn seed_count() -> u64 {
    std::env::var("NOTED_SIM_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(SEEDS_DEFAULT)
}

/// How many times the default seeds a protocol runs: each gives half of its seeds
/// disks (of those, most have whole-cluster crashes), and vr's are the most varied.
fn seeds_factor(protocol: SimProtocol) -> u64 {
    match protocol {
        SimProtocol::Vr => 4,
        SimProtocol::RemoteWrite | SimProtocol::LocalWrite => 2,
    }
}

/// With the default seed count, every protocol that draws disks runs at least this
/// many seeds with them.
const DISK_SEEDS_MIN: u64 = 1_000;

#[test]
fn every_seed_inside_the_fault_model_passes() {
    for protocol in SimProtocol::ALL {
        let seeds = seed_count() * seeds_factor(protocol);
        let (mut disk_seeds, mut power_cut_seeds, mut stall_seeds) = (0, 0, 0);
        // Wall-clock time only measures the sweep's throughput for the test log; nothing in a run reads it.
        #[allow(clippy::disallowed_types)]
        let started = std::time::Instant::now();
        let mut failures = Vec::new();
        let mut unchecked = Vec::new();
        let (mut operations, mut events) = (0u64, 0u64);
        for seed in 0..seeds {
            let outcome = run(&RunRequest::new(protocol, seed));
            let options = &outcome.options;
            if options.storage.is_disk() {
                disk_seeds += 1;
                power_cut_seeds += u64::from(options.faults.whole_cluster_crashes);
                stall_seeds += u64::from(options.storage.disk_stalls);
            }
            operations += outcome.operations();
            events += outcome.events;
            if let Some(LinearizabilityVerdict::Unchecked { reason }) = &outcome.linearizability {
                unchecked.push(format!("{}: {reason}", outcome.options.replay_command()));
            }
            let Some(failure) = &outcome.failure else { continue };
            failures.push(format!("{}: {}", outcome.options.replay_command(), failure.message));
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{protocol}: {seeds} seeds in {elapsed:.1}s ({:.0} seeds/s, {:.0} events/s), {operations} operations, \
             {} histories undecided, {disk_seeds} seeds with disks ({power_cut_seeds} with whole-cluster crashes, \
             {stall_seeds} with disks that stall)",
            seeds as f64 / elapsed,
            events as f64 / elapsed,
            unchecked.len()
        );
        if protocol.has_disks() && seeds >= SEEDS_DEFAULT * seeds_factor(protocol) {
            assert!(disk_seeds >= DISK_SEEDS_MIN, "{protocol}: only {disk_seeds} seeds with disks");
        }
        assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
        // An undecided history is a hole in the promise, not a pass: the checker decides every one.
        assert!(unchecked.is_empty(), "{} histories undecided:\n{}", unchecked.len(), unchecked.join("\n"));
    }
}

fn traced(protocol: SimProtocol, seed: u64) -> (u64, u64) {
    let outcome = run(&RunRequest { trace: true, ..RunRequest::new(protocol, seed) });
    (Fnv1a::hash(outcome.trace.as_bytes()), Fnv1a::hash(outcome.history.to_jsonl().as_bytes()))
}

#[test]
fn the_same_seed_gives_the_same_bytes_of_trace_and_history() {
    for protocol in SimProtocol::ALL {
        for seed in [3, 17, 12_345] {
            assert_eq!(traced(protocol, seed), traced(protocol, seed), "{protocol} seed {seed} ran differently twice");
        }
        assert_ne!(traced(protocol, 3), traced(protocol, 4), "{protocol}: different seeds give different runs");
    }
}

#[test]
fn the_trace_format_is_locked() {
    let outcome = run(&RunRequest { trace: true, ..RunRequest::new(SimProtocol::RemoteWrite, 2) });
    assert!(outcome.passed());
    insta::assert_snapshot!("remote_write_seed_2_trace", outcome.trace);
}

#[test]
fn histories_round_trip_through_the_format_and_pass_the_checker() {
    let outcome = run(&RunRequest::new(SimProtocol::RemoteWrite, 5));
    let text = outcome.history.to_jsonl();
    let parsed = History::parse_jsonl(&text).expect("the simulator writes a valid lin-history");
    assert_eq!(parsed.to_jsonl(), text);
    assert!(outcome.operations() > 0);
    assert_eq!(outcome.linearizability, Some(LinearizabilityVerdict::Linearizable));
}

#[test]
fn serving_linearizable_reads_locally_is_caught_with_a_short_history() {
    let found = (0..400).map(|seed| RunRequest {
        defect: Some(Defect::ServeReadsLocally),
        ..RunRequest::new(SimProtocol::RemoteWrite, seed)
    });
    let (request, outcome) = found
        .map(|request| (request, run(&request)))
        .find(|(_, outcome)| {
            outcome.failure.as_ref().is_some_and(|failure| failure.kind == FailureKind::Linearizability)
        })
        .expect("stale reads are caught within 400 seeds");
    let report = failure_report(&request, &outcome).expect("a failed run has a report");
    let minimized = report.minimized.expect("a linearizability failure is minimized");
    let kept = minimized.whole.len();
    println!(
        "caught at seed {}: {kept} of {} operations kept whole, {} in the minimized history:\n{}",
        request.seed,
        outcome.operations(),
        operation_ids(&minimized.history).len(),
        minimized.history.to_jsonl()
    );
    assert!(is_violation(&minimized.history), "the minimized history still fails");
    assert!(kept <= 8, "the minimized history is short: {kept} operations\n{}", minimized.history.to_jsonl());
    assert!(report.replay_command.contains(&format!("--seed {}", request.seed)));
    assert!(!report.trace_excerpt.is_empty(), "the report shows the trace of the notes involved");
}

#[test]
fn crashing_the_remote_write_primary_beyond_the_model_is_caught() {
    let caught = (0..300).find(|seed| {
        let request = RunRequest { beyond_model: true, ..RunRequest::new(SimProtocol::RemoteWrite, *seed) };
        run(&request).failure.is_some_and(|failure| failure.kind != FailureKind::Panic)
    });
    assert!(caught.is_some(), "a primary that restarts empty breaks linearizability, liveness or convergence");
}

#[test]
fn the_swarm_covers_every_fault_and_every_operation() {
    let mut all_traces = String::new();
    let mut all_histories = String::new();
    for seed in 0..80 {
        let outcome = run(&RunRequest { trace: true, ..RunRequest::new(SimProtocol::RemoteWrite, seed) });
        all_traces.push_str(&outcome.trace);
        all_histories.push_str(&outcome.history.to_jsonl());
    }
    for fault in [
        "FAULT partition",
        "-/->",
        "bridged by",
        "FAULT crash",
        "HEAL restart",
        "FAULT pause",
        "holding",
        "lost",
        "duplicated",
        "installed a snapshot",
        "given up",
        "LIVENESS",
    ] {
        assert!(all_traces.contains(fault), "no seed of 80 shows {fault:?}");
    }
    for operation in [
        "\"f\":\"create\"",
        "\"f\":\"get\"",
        "\"f\":\"list\"",
        "\"f\":\"put\"",
        "\"f\":\"patch\"",
        "\"f\":\"delete\"",
        "\"if_match\"",
        "\"ev\":\"info\"",
        "precondition_failed",
        "not_found",
    ] {
        assert!(all_histories.contains(operation), "no history of 80 seeds has {operation}");
    }
    assert!(all_traces.contains("request Local"), "local reads are issued (and left out of the history)");
}

/// A replica that installs a snapshot before its last chunk arrived loses the notes
/// of the missing chunks: the generic convergence check catches it, and the report
/// shows the short history of exactly the notes lost.
#[test]
fn installing_a_snapshot_before_its_last_chunk_is_caught_with_the_history_of_the_lost_notes() {
    for protocol in [SimProtocol::Vr, SimProtocol::RemoteWrite] {
        let found = (0..400).map(|seed| RunRequest {
            defect: Some(Defect::InstallIncompleteSnapshot),
            ..RunRequest::new(protocol, seed)
        });
        let (request, outcome) = found
            .map(|request| (request, run(&request)))
            .find(|(_, outcome)| outcome.failure.is_some())
            .unwrap_or_else(|| panic!("{protocol}: an incomplete snapshot is caught within 400 seeds"));
        let failure = outcome.failure.as_ref().expect("found failing");
        // The lost notes may also make a read wrong, which the checker reports first.
        let converged = failure.kind == FailureKind::Convergence
            || (failure.kind == FailureKind::Linearizability && failure.message.contains("also convergence"));
        assert!(converged, "{protocol} seed {}: {}", request.seed, failure.message);
        assert!(!failure.notes.is_empty(), "the notes the replicas disagree about are named");
        let report = failure_report(&request, &outcome).expect("a failed run has a report");
        let history = report.divergent_history.as_ref().expect("the history of the lost notes");
        let operations = operation_ids(history).len();
        println!(
            "{protocol}: caught at seed {} ({}), {operations} of {} operations touch the {} notes lost:\n{}",
            request.seed,
            failure.message,
            outcome.operations(),
            failure.notes.len(),
            history.to_jsonl()
        );
        assert!(
            operations > 0 && (operations as u64) < outcome.operations(),
            "only the operations on the lost notes: {operations}"
        );
        assert!(
            report.trace_excerpt.iter().any(|line| line.contains("installed a snapshot")),
            "the trace excerpt shows the snapshot that lost them"
        );
    }
}

#[test]
fn a_message_over_its_bound_fails_the_run() {
    let caught = (0..300).find_map(|seed| {
        let request = RunRequest { defect: Some(Defect::UnboundedBatches), ..RunRequest::new(SimProtocol::Vr, seed) };
        run(&request).failure.filter(|failure| failure.kind == FailureKind::MessageSize).map(|failure| (seed, failure))
    });
    let (seed, failure) = caught.expect("prepares batched past message_bytes_max are caught within 300 seeds");
    println!("caught at seed {seed}: {}", failure.message);
    assert!(failure.message.contains("over the bound"), "{}", failure.message);
}

#[test]
fn the_swarm_transfers_large_stores_in_chunks_under_faults() {
    let mut all_traces = String::new();
    for seed in 0..120 {
        let outcome = run(&RunRequest { trace: true, ..RunRequest::new(SimProtocol::Vr, seed) });
        assert!(outcome.passed(), "vr seed {seed}");
        all_traces.push_str(&outcome.trace);
    }
    for sign in [
        "limits: log 4 entries or",
        "padding up to",
        "get_snapshot_chunk 1 of snapshot",
        "snapshot_chunk 1 of snapshot",
        "installed a snapshot",
        "FAULT during the transfer",
        "recovered in",
    ] {
        assert!(all_traces.contains(sign), "no vr seed of 120 shows {sign:?}");
    }
    let chunks_of_one_snapshot = all_traces
        .lines()
        .filter(|line| line.contains("--> ") && line.contains(" snapshot_chunk "))
        .filter(|line| !line.contains("snapshot_chunk 0 of"))
        .count();
    assert!(chunks_of_one_snapshot > 100, "snapshots take many chunks: {chunks_of_one_snapshot} chunks past the first");
}

/// A vr replica that learns of a view it missed and drops its uncommitted entries
/// at once, while still claiming its older log in view changes, lets a later view
/// lose an entry committed in that older view: the generic convergence and
/// linearizability checks catch it at the seed that found it, which passes with
/// the entries kept until the new view's log replaces them.
#[test]
fn a_replica_catching_up_keeps_its_uncommitted_entries_until_the_view_log_replaces_them() {
    const SEED: u64 = 77536;
    // Found in memory storage, before seeds drew disks: run it as it was.
    let memory = RunRequest { disks: false, ..RunRequest::new(SimProtocol::Vr, SEED) };
    let request = RunRequest { defect: Some(Defect::DropUncommittedOnCatchUp), ..memory };
    let failure = run(&request).failure.expect("dropping the entries at once loses a committed create at this seed");
    println!("caught at seed {SEED}: {}", failure.message);
    let outcome = run(&memory);
    assert!(outcome.passed(), "seed {SEED}: {:?}", outcome.failure.map(|failure| failure.message));
}

/// After whole-cluster crashes, a vr replica restarted from its disk with an
/// uncommitted entry of an old view became the primary of a new view whose best
/// log started after its commit number. It fetched the missing committed entries
/// from that log's sender, and the first batch did not reach its old entry; it
/// executed that entry anyway, because the sender's commit number covered its op,
/// and diverged from the other replicas in every note created after it. It now
/// executes only what a batch showed to be the sender's, and lets the sender's
/// entries replace its own from the first that differs.
#[test]
fn a_new_primary_executes_only_the_entries_it_fetched_of_the_log_it_adopts() {
    const SEED: u64 = 43796;
    let outcome = run(&RunRequest::new(SimProtocol::Vr, SEED));
    assert!(outcome.passed(), "seed {SEED}: {:?}", outcome.failure.map(|failure| failure.message));
}

/// Finds the first seed below `seeds_max` at which `defect` fails a vr run, and
/// checks that the same seed passes without it; prints the failure and the
/// smallest failing history the report gives.
fn caught_by_the_generic_checks(defect: Defect, seeds_max: u64) -> u64 {
    caught_in(SimProtocol::Vr, defect, seeds_max, &[FailureKind::Linearizability, FailureKind::Convergence])
}

/// [`caught_by_the_generic_checks`], for any protocol, by one of the `checks`.
fn caught_in(protocol: SimProtocol, defect: Defect, seeds_max: u64, checks: &[FailureKind]) -> u64 {
    let caught = (0..seeds_max).find_map(|seed| {
        let request = RunRequest { defect: Some(defect), ..RunRequest::new(protocol, seed) };
        let outcome = run(&request);
        outcome.failure.is_some().then_some((request, outcome))
    });
    let (request, outcome) =
        caught.unwrap_or_else(|| panic!("{protocol}: {defect:?} is caught within {seeds_max} seeds"));
    let failure = outcome.failure.as_ref().expect("found failing");
    assert!(
        checks.contains(&failure.kind),
        "caught by a generic check, not a replica's own assertion: {} {}",
        failure.kind,
        failure.message
    );
    let report = failure_report(&request, &outcome).expect("a failed run has a report");
    println!("{protocol}: {defect:?} caught at seed {}: {} {}", request.seed, failure.kind, failure.message);
    if let Some(history) =
        report.minimized.as_ref().map(|minimized| &minimized.history).or(report.divergent_history.as_ref())
    {
        println!("smallest failing history ({} operations):\n{}", operation_ids(history).len(), history.to_jsonl());
    }
    let outcome = run(&RunRequest::new(protocol, request.seed));
    assert!(outcome.passed(), "seed {}: {:?}", request.seed, outcome.failure.map(|failure| failure.message));
    request.seed
}

/// A vr replica with durable storage that acknowledges the last entry of a group
/// commit before the sync that covers it: when every replica loses power at once,
/// an acknowledged write is gone.
#[test]
fn acknowledging_before_the_sync_is_caught_after_a_power_cut() {
    caught_by_the_generic_checks(Defect::AcknowledgeBeforeSync, 400);
}

/// A primary-backup replica on disk that sends or answers what the last write of a
/// group commit holds before the sync that covers it: after a power cut, a primary
/// or owner orders again what a peer or client already saw. In local-write the
/// replicas' copies of a note then disagree, and the note stops moving (a `Transfer`
/// whose digest disagrees is refused): the liveness check catches that.
#[test]
fn acknowledging_before_the_sync_is_caught_in_the_primary_backup_protocols() {
    let generic = [FailureKind::Linearizability, FailureKind::Convergence, FailureKind::Liveness];
    for protocol in [SimProtocol::RemoteWrite, SimProtocol::LocalWrite] {
        caught_in(protocol, Defect::AcknowledgeBeforeSync, 400, &generic);
    }
}

/// A vr replica that truncates its log at a damaged record, as if a crash had torn
/// it, instead of repairing from its peers: an entry it acknowledged can be lost.
#[test]
fn truncating_a_damaged_log_instead_of_repairing_it_is_caught() {
    caught_by_the_generic_checks(Defect::TruncateDamagedLog, 400);
}

/// The swarm gives vr disks, and their faults, in every shape.
#[test]
fn the_swarm_crashes_disks_in_every_way() {
    let mut all_traces = String::new();
    for seed in 0..150 {
        let outcome = run(&RunRequest { trace: true, ..RunRequest::new(SimProtocol::Vr, seed) });
        assert!(outcome.passed(), "vr seed {seed}");
        all_traces.push_str(&outcome.trace);
    }
    for sign in [
        "disks: sync",
        "FAULT every replica crashes at once",
        "(power lost)",
        "torn",
        "disk corrupted: wal.",
        "disk corrupted: superblock.",
        "disk corrupted: checkpoint.",
        "repairing damage from its peers",
        "restart R1 from its disk",
        "disk is lost",
        "with empty memory",
    ] {
        assert!(all_traces.contains(sign), "no vr seed of 150 shows {sign:?}");
    }
}

/// The swarm gives the primary-backup protocols disks too: the primary (or an owner)
/// loses power and restarts from its disk, alone and with the whole cluster.
#[test]
fn the_swarm_crashes_the_primary_backup_protocols_on_disk() {
    for protocol in [SimProtocol::RemoteWrite, SimProtocol::LocalWrite] {
        let mut all_traces = String::new();
        for seed in 0..60 {
            let outcome = run(&RunRequest { trace: true, ..RunRequest::new(protocol, seed) });
            assert!(outcome.passed(), "{protocol} seed {seed}");
            all_traces.push_str(&outcome.trace);
        }
        for sign in [
            "disks: sync",
            "FAULT every replica crashes at once",
            "FAULT crash R0 (power lost)",
            "torn",
            "restart R0 from its disk",
        ] {
            assert!(all_traces.contains(sign), "no {protocol} seed of 60 shows {sign:?}");
        }
    }
}
