//! The `noted-sim` command line: run one seed, explore many, or check history files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, Subcommand};
use noted_sim::checker::{Verdict, check_file};
use noted_sim::html::timeline;
use noted_sim::report::{failure_report, violating_operations};
use noted_sim::{RunRequest, SimProtocol, parse_seed, run};

// A run allocates and frees small values (messages, notes, replies) on every event;
// mimalloc serves them faster than the system allocator (see benches/throughput.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "noted-sim", about = "Deterministic simulation of noted's replication protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one seed and check it; exits with the failure kind's code on failure.
    Run {
        #[arg(long, value_enum)]
        protocol: SimProtocol,
        /// A decimal u64, or a hexadecimal git hash (its first 16 digits).
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        /// Print the readable per-event trace.
        #[arg(long)]
        trace: bool,
        /// Write the history (lin-history v1, JSON lines) to this file.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Write a self-contained HTML timeline of the history to this file.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Inject faults outside the protocol's fault model.
        #[arg(long)]
        beyond_model: bool,
    },
    /// Run many seeds in parallel and summarise.
    Explore {
        #[arg(long, value_enum)]
        protocol: SimProtocol,
        /// How many seeds to run.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// The first seed.
        #[arg(long, value_parser = parse_seed, default_value = "0")]
        from: u64,
        /// Threads; each runs whole seeds.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long)]
        beyond_model: bool,
    },
    /// Check history files (lin-history v1, or Jepsen etcd `.log`): exit 0 when all are linearizable.
    Check { files: Vec<PathBuf> },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { protocol, seed, trace, history, html, beyond_model } => {
            run_one(protocol, seed, trace, history, html, beyond_model)
        }
        Command::Explore { protocol, seeds, from, jobs, beyond_model } => {
            explore(protocol, seeds, from, jobs, beyond_model)
        }
        Command::Check { files } => check(&files),
    }
}

fn run_one(
    protocol: SimProtocol,
    seed: u64,
    trace: bool,
    history_path: Option<PathBuf>,
    html_path: Option<PathBuf>,
    beyond_model: bool,
) -> ExitCode {
    let request = RunRequest { beyond_model, trace, ..RunRequest::new(protocol, seed) };
    println!("{}", request.options());
    let outcome = run(&request);
    if trace {
        print!("{}", outcome.trace);
    }
    if let Some(path) = &history_path
        && let Err(error) = std::fs::write(path, outcome.history.to_jsonl())
    {
        eprintln!("cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    println!(
        "{} events, {} operations, {:.3}s simulated; linearizability: {:?}",
        outcome.events,
        outcome.operations(),
        outcome.simulated_nanos as f64 / 1e9,
        outcome.linearizability
    );
    let report = failure_report(&request, &outcome);
    if let Some(path) = &html_path {
        let title = format!("noted-sim {protocol} seed {seed}");
        let page = timeline(&title, &outcome.history, &violating_operations(report.as_ref()));
        if let Err(error) = std::fs::write(path, page) {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    match report {
        None => {
            println!("PASS {}", request.options().replay_command());
            ExitCode::SUCCESS
        }
        Some(report) => {
            print!("{}", report.render(&outcome));
            ExitCode::from(report.kind.exit_code())
        }
    }
}

/// One failing seed found by `explore`.
#[derive(Debug)]
struct Found {
    seed: u64,
    kind: noted_sim::FailureKind,
    message: String,
    command: String,
}

fn explore(protocol: SimProtocol, seeds: u64, from: u64, jobs: usize, beyond_model: bool) -> ExitCode {
    let progress = indicatif::ProgressBar::new(seeds);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(0);
    let operations = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    let unchecked: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let found: Mutex<Vec<Found>> = Mutex::new(Vec::new());
    // Wall-clock time is measured here only, around whole runs, to report throughput;
    // nothing inside a run reads it.
    #[allow(clippy::disallowed_types)]
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= seeds {
                        break;
                    }
                    let seed = from.wrapping_add(index);
                    let request = RunRequest { beyond_model, ..RunRequest::new(protocol, seed) };
                    let outcome = run(&request);
                    operations.fetch_add(outcome.operations(), Ordering::Relaxed);
                    events.fetch_add(outcome.events, Ordering::Relaxed);
                    if matches!(
                        outcome.linearizability,
                        Some(noted_sim::linearizability::LinearizabilityVerdict::Unchecked { .. })
                    ) {
                        unchecked.lock().expect("no thread panics while holding the list").push(seed);
                    }
                    if let Some(failure) = &outcome.failure {
                        let line = format!("seed {seed}: {} — {}", failure.kind, outcome.options.replay_command());
                        // A hidden bar (output not a terminal) prints nothing: print the line itself.
                        if progress.is_hidden() {
                            println!("{line}");
                        } else {
                            progress.println(line);
                        }
                        let mut found = found.lock().expect("no thread panics while holding the list");
                        found.push(Found {
                            seed,
                            kind: failure.kind,
                            message: failure.message.clone(),
                            command: outcome.options.replay_command(),
                        });
                        progress.set_message(format!("{} failed", found.len()));
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let mut found = found.into_inner().expect("every thread finished");
    found.sort_by_key(|found| found.seed);
    let events = events.load(Ordering::Relaxed);
    println!(
        "{seeds} seeds ({:.1}/s), {} operations checked, {:.0} simulated events/s, {} unchecked histories, {} failures",
        seeds as f64 / elapsed,
        operations.load(Ordering::Relaxed),
        events as f64 / elapsed,
        unchecked.lock().expect("every thread finished").len(),
        found.len()
    );
    let mut unchecked = unchecked.into_inner().expect("every thread finished");
    unchecked.sort_unstable();
    if !unchecked.is_empty() {
        println!("  the checker gave up on seeds {unchecked:?}");
    }
    for failure in &found {
        println!("  seed {} {}: {}\n    {}", failure.seed, failure.kind, failure.message, failure.command);
    }
    match found.first() {
        None => ExitCode::SUCCESS,
        Some(first) => ExitCode::from(first.kind.exit_code()),
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut all_linearizable = true;
    // Wall-clock time is measured here only, around each whole check, to report it.
    #[allow(clippy::disallowed_types)]
    let all_started = std::time::Instant::now();
    for file in files {
        #[allow(clippy::disallowed_types)]
        let started = std::time::Instant::now();
        let result = check_file(file);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(report) => {
                let verdict = match &report.verdict {
                    Verdict::Linearizable => "linearizable".to_string(),
                    Verdict::NotLinearizable(counterexample) => {
                        all_linearizable = false;
                        format!(
                            "NOT linearizable: {} ({})",
                            counterexample.reason,
                            noted_sim::linearizability::operation_list(&counterexample.operation_ids)
                        )
                    }
                    Verdict::Unknown { steps } => {
                        all_linearizable = false;
                        format!("unknown: the search gave up after {steps} steps")
                    }
                };
                println!("{}: {} operations, {verdict} ({elapsed_ms:.1} ms)", file.display(), report.operation_count);
            }
            Err(error) => {
                all_linearizable = false;
                println!("{error}");
            }
        }
    }
    if files.len() > 1 {
        println!("{} files in {:.1} ms", files.len(), all_started.elapsed().as_secs_f64() * 1000.0);
    }
    if all_linearizable { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
