//! The `noted-sim` command line: run one seed, explore many, or check history files.
//!
//! Exit codes (the same in every subcommand, so that none means two things):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | pass: the run, every explored seed, or every checked history is linearizable |
//! | 1 | `check`: a history is not linearizable |
//! | 2 | undecided: the checker ran out of its step, time or memory budget (and nothing failed) |
//! | 3 | `check`, `plant-stale-read`: an input cannot be read or parsed; `run`, `gen-history`, `plant-stale-read`: an output file cannot be written |
//! | 10–15 | `run`/`explore`: the (first) failure's kind: 10 linearizability, 11 panic, 12 convergence, 13 liveness, 14 setup, 15 message size |
//! | 64 | the command line is wrong (usage error); `gen-history --plant` or `plant-stale-read` found no read to plant in |
//!
//! `check` over several files exits with the most serious code: 3 over 1 over 2 over 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, Subcommand};
use noted_sim::checker::{CheckFileError, CheckOptions, Exhaustion, Verdict, check_file_with};
use noted_sim::gen_history::{GenOptions, Plant, UnknownAt, generate_with_report};
use noted_sim::html::timeline;
use noted_sim::linearizability::LinearizabilityVerdict;
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
        /// Write the history (lin-history version 2, JSON lines) to this file.
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
    /// Check history files (lin-history versions 1 and 2, gzipped or not, or Jepsen etcd `.log`): exit 0 when all are
    /// linearizable, 1 when one is not, 2 when one is undecided, 3 when one cannot be read.
    Check {
        files: Vec<PathBuf>,
        /// Give up on a file (undecided) after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Give up on a file (undecided) when its search would hold about this many bytes of states.
        #[arg(long)]
        max_memory: Option<u64>,
        /// Give up on a file (undecided) after this many search steps (default: no limit).
        #[arg(long, default_value_t = u64::MAX, hide_default_value = true)]
        max_steps: u64,
        /// Print one JSON object per file instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate a notes history (lin-history version 2) that is linearizable by construction, or
    /// certainly not with `--plant`; the same arguments give the same bytes.
    GenHistory {
        /// A decimal u64, or a hexadecimal git hash (its first 16 digits).
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        #[arg(long)]
        clients: u64,
        /// Operations over all clients.
        #[arg(long)]
        operations: u64,
        /// Operations outstanding at once (default: one per client).
        #[arg(long)]
        concurrency: Option<u64>,
        /// Share of the operations that are lists.
        #[arg(long, default_value_t = 0.05)]
        list_share: f64,
        /// Share of the operations whose outcome is unknown (`info`, or no completion).
        #[arg(long, default_value_t = 0.02)]
        unknown_share: f64,
        /// Where the unknown outcomes fall.
        #[arg(long, value_enum, default_value_t = UnknownAt::Spread)]
        unknown_at: UnknownAt,
        /// How many recently created notes most operations go to.
        #[arg(long = "notes", default_value_t = 4)]
        hot_notes: u64,
        /// Plant a violation; the header then expects `illegal`.
        #[arg(long, value_enum)]
        plant: Option<Plant>,
        /// Write the history here instead of to standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Copy a recorded notes history (lin-history) with one read made stale: it reports
    /// the version (and body) before one that a write had returned before the read was
    /// called, so the copy is certainly not linearizable; its header expects `illegal`.
    PlantStaleRead {
        /// Draws the position of the read; the same seed and input give the same bytes.
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        /// The recorded history.
        input: PathBuf,
        /// Where to write the copy.
        output: PathBuf,
    },
}

/// Exit codes shared by the subcommands (see the module documentation).
mod exit {
    pub const NOT_LINEARIZABLE: u8 = 1;
    pub const UNDECIDED: u8 = 2;
    pub const UNREADABLE: u8 = 3;
    pub const USAGE: u8 = 64;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are not errors; a wrong command line gets its own code, not
            // clap's 2, which means "undecided" here.
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Run { protocol, seed, trace, history, html, beyond_model } => {
            run_one(protocol, seed, trace, history, html, beyond_model)
        }
        Command::Explore { protocol, seeds, from, jobs, beyond_model } => {
            explore(protocol, seeds, from, jobs, beyond_model)
        }
        Command::Check { files, timeout, max_memory, max_steps, json } => {
            let limits = CheckLimits { timeout, max_memory, max_steps };
            check(&files, &limits, json)
        }
        Command::GenHistory {
            seed,
            clients,
            operations,
            concurrency,
            list_share,
            unknown_share,
            unknown_at,
            hot_notes,
            plant,
            output,
        } => {
            let options = GenOptions {
                seed,
                clients,
                operations,
                concurrency,
                list_share,
                unknown_share,
                unknown_at,
                hot_notes,
                plant,
            };
            gen_history(&options, output.as_deref())
        }
        Command::PlantStaleRead { seed, input, output } => plant_stale_read(seed, &input, &output),
    }
}

fn plant_stale_read(seed: u64, input: &std::path::Path, output: &std::path::Path) -> ExitCode {
    let parsed = std::fs::read_to_string(input)
        .map_err(|error| error.to_string())
        .and_then(|text| noted_sim::history::History::parse_jsonl(&text).map_err(|error| error.to_string()));
    let history = match parsed {
        Ok(history) => history,
        Err(error) => {
            eprintln!("noted-sim plant-stale-read: cannot read {}: {error}", input.display());
            return ExitCode::from(exit::UNREADABLE);
        }
    };
    let (planted, report) = match noted_sim::plant::plant_stale_read(&history, seed) {
        Ok(Some(planted)) => planted,
        Ok(None) => {
            eprintln!("noted-sim plant-stale-read: no completed read follows a second write of its note");
            return ExitCode::from(exit::USAGE);
        }
        Err(error) => {
            eprintln!("noted-sim plant-stale-read: {}: {error}", input.display());
            return ExitCode::from(exit::UNREADABLE);
        }
    };
    eprintln!("planted {report}");
    if let Err(error) = std::fs::write(output, planted.to_jsonl()) {
        eprintln!("cannot write {}: {error}", output.display());
        return ExitCode::from(exit::UNREADABLE);
    }
    ExitCode::SUCCESS
}

fn gen_history(options: &GenOptions, output: Option<&std::path::Path>) -> ExitCode {
    if let Err(reason) = options.validate() {
        eprintln!("noted-sim gen-history: {reason}");
        return ExitCode::from(exit::USAGE);
    }
    let generated = generate_with_report(options);
    match (&generated.planted, options.plant) {
        (Some(planted), _) => eprintln!("planted {planted}"),
        (None, Some(_)) => {
            // A history without the asked-for violation would pass for one with it.
            eprintln!(
                "noted-sim gen-history: no completed read follows a second write of its note: use more operations"
            );
            return ExitCode::from(exit::USAGE);
        }
        (None, None) => {}
    }
    let text = generated.history.to_jsonl();
    match output {
        None => {
            use std::io::Write;
            if let Err(error) = std::io::stdout().lock().write_all(text.as_bytes()) {
                eprintln!("cannot write the history: {error}");
                return ExitCode::from(exit::UNREADABLE);
            }
        }
        Some(path) => {
            if let Err(error) = std::fs::write(path, text) {
                eprintln!("cannot write {}: {error}", path.display());
                return ExitCode::from(exit::UNREADABLE);
            }
        }
    }
    ExitCode::SUCCESS
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
        return ExitCode::from(exit::UNREADABLE);
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
            return ExitCode::from(exit::UNREADABLE);
        }
    }
    match report {
        None if matches!(outcome.linearizability, Some(LinearizabilityVerdict::Unchecked { .. })) => {
            println!("UNDECIDED {}", request.options().replay_command());
            ExitCode::from(exit::UNDECIDED)
        }
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
                    if matches!(outcome.linearizability, Some(LinearizabilityVerdict::Unchecked { .. })) {
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
        "{seeds} seeds ({:.1}/s), {} operations checked, {:.0} simulated events/s, {} undecided histories, {} failures",
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
        None if !unchecked.is_empty() => ExitCode::from(exit::UNDECIDED),
        None => ExitCode::SUCCESS,
        Some(first) => ExitCode::from(first.kind.exit_code()),
    }
}

/// What `check` may spend on one file.
#[derive(Debug)]
struct CheckLimits {
    timeout: Option<f64>,
    max_memory: Option<u64>,
    max_steps: u64,
}

/// One file's verdict, as `check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileVerdict {
    Linearizable,
    Undecided,
    NotLinearizable,
    Unreadable,
}

impl FileVerdict {
    fn exit_code(self) -> u8 {
        match self {
            FileVerdict::Linearizable => 0,
            FileVerdict::NotLinearizable => exit::NOT_LINEARIZABLE,
            FileVerdict::Undecided => exit::UNDECIDED,
            FileVerdict::Unreadable => exit::UNREADABLE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileVerdict::Linearizable => "linearizable",
            FileVerdict::NotLinearizable => "not-linearizable",
            FileVerdict::Undecided => "undecided",
            FileVerdict::Unreadable => "unreadable",
        }
    }
}

fn check(files: &[PathBuf], limits: &CheckLimits, json: bool) -> ExitCode {
    let mut worst = FileVerdict::Linearizable;
    // Wall-clock time is measured here only, around each whole check, to report it and to
    // give up at the timeout; simulated runs never pass a deadline.
    #[allow(clippy::disallowed_types)]
    let all_started = std::time::Instant::now();
    for file in files {
        #[allow(clippy::disallowed_types)]
        let started = std::time::Instant::now();
        let options = CheckOptions {
            step_budget: limits.max_steps,
            deadline: limits.timeout.map(|seconds| started + std::time::Duration::from_secs_f64(seconds.max(0.0))),
            max_states: limits.max_memory.map(|bytes| {
                usize::try_from(bytes / noted_sim::checker::BYTES_PER_STATE_ESTIMATE).unwrap_or(usize::MAX)
            }),
        };
        let result = check_file_with(file, &options);
        let milliseconds = started.elapsed().as_secs_f64() * 1000.0;
        let verdict = match &result {
            Ok(report) => match &report.verdict {
                Verdict::Linearizable => FileVerdict::Linearizable,
                Verdict::NotLinearizable(_) => FileVerdict::NotLinearizable,
                Verdict::Unknown { .. } => FileVerdict::Undecided,
            },
            Err(_) => FileVerdict::Unreadable,
        };
        worst = worst.max(verdict);
        if json {
            println!("{}", json_line(file, verdict, &result, milliseconds));
        } else {
            println!("{}", text_line(file, &result, milliseconds));
        }
    }
    if files.len() > 1 && !json {
        println!("{} files in {:.1} ms", files.len(), all_started.elapsed().as_secs_f64() * 1000.0);
    }
    ExitCode::from(worst.exit_code())
}

fn limit_name(limit: Exhaustion) -> &'static str {
    match limit {
        Exhaustion::Steps => "steps",
        Exhaustion::Time => "time",
        Exhaustion::Memory => "memory",
    }
}

fn text_line(
    file: &std::path::Path,
    result: &Result<noted_sim::checker::CheckReport, CheckFileError>,
    milliseconds: f64,
) -> String {
    match result {
        Ok(report) => {
            let verdict = match &report.verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(counterexample) => format!(
                    "NOT linearizable: {} ({})",
                    counterexample.reason,
                    noted_sim::linearizability::operation_list(&counterexample.operation_ids)
                ),
                Verdict::Unknown { steps, limit } => {
                    format!("UNDECIDED: the search ran out of {} after {steps} steps", limit_name(*limit))
                }
            };
            format!("{}: {} operations, {verdict} ({milliseconds:.1} ms)", file.display(), report.operation_count)
        }
        Err(error) => format!("UNREADABLE {error}"),
    }
}

fn json_line(
    file: &std::path::Path,
    verdict: FileVerdict,
    result: &Result<noted_sim::checker::CheckReport, CheckFileError>,
    milliseconds: f64,
) -> serde_json::Value {
    let mut line = serde_json::json!({
        "file": file.display().to_string(),
        "verdict": verdict.name(),
        "milliseconds": milliseconds,
    });
    match result {
        Ok(report) => {
            line["model"] = serde_json::json!(report.model.to_string());
            line["operations"] = serde_json::json!(report.operation_count);
            line["peak_search_states"] = serde_json::json!(report.peak_states);
            match &report.verdict {
                Verdict::NotLinearizable(counterexample) => {
                    line["failing_operations"] = serde_json::json!(counterexample.operation_ids);
                    line["reason"] = serde_json::json!(counterexample.reason);
                }
                Verdict::Unknown { steps, limit } => {
                    line["steps"] = serde_json::json!(steps);
                    line["exhausted"] = serde_json::json!(limit_name(*limit));
                }
                Verdict::Linearizable => {}
            }
        }
        Err(error) => line["error"] = serde_json::json!(error.to_string()),
    }
    if let Some(bytes) = peak_resident_bytes() {
        line["process_peak_resident_bytes"] = serde_json::json!(bytes);
    }
    line
}

/// The most memory this process has held resident so far (`VmHWM`), where the system says.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kibibytes: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kibibytes * 1024)
}
