//! `noted-chaos`: a chaos test of real `noted serve` processes (see `noted_tests::chaos`).
//!
//! ```text
//! cargo run -p noted-tests --release --bin noted-chaos -- --replicas 5 --duration 10m --seed 7
//! ```
//!
//! Needs root on Linux with `ip` and `iptables`. Started normally, it makes a
//! private network namespace, runs itself inside it and removes it afterwards.
//!
//! Exit status:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | every check passed, the history is linearizable |
//! | 1 | a guarantee was broken (lost or duplicated write, divergence, no recovery, a non-linearizable or malformed history) |
//! | 2 | the test could not run (no root, `ip` or `iptables`, no `noted`, the run did not finish in time) |
//! | 3 | undecided: every other check passed, but the linearizability checker gave up (its budget ran out) |
//! | 130 | interrupted (Ctrl-C or SIGTERM) |
//!
//! A broken guarantee wins over an undecided check (1, not 3). `noted-sim check`
//! says 2 for undecided; here 2 already meant "could not run" before the checker
//! could give up, so undecided is 3.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use noted_tests::chaos::namespace::{self, Namespace, unavailable_reason};
use noted_tests::chaos::{self, ChaosOptions, Protocol};

#[derive(Debug, Parser)]
#[command(
    name = "noted-chaos",
    about = "Faults on real noted processes, checked for linearizability",
    after_help = "Exit status: 0 every check passed; 1 a guarantee was broken; 2 the test could not run; \
                  3 undecided (every other check passed, the linearizability checker gave up); 130 interrupted."
)]
struct Arguments {
    /// Replicas in the cluster (3 or more).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=9))]
    replicas: u8,
    /// How long faults are injected, e.g. 90s, 10m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and the workload; random (and printed) when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Each client's pause between two operations, in milliseconds. The checker's
    /// time and memory grow with the history: a 10-minute run without pauses
    /// records over 600,000 events, more than it can check in 20 GB.
    #[arg(long, default_value_t = 20)]
    think_ms: u64,
    #[arg(long, value_enum, default_value_t = ProtocolArgument::Vr)]
    protocol: ProtocolArgument,
    /// remote-write only: kill the fixed primary in every step. That is outside
    /// remote-write's fault model, so the checks are expected to fail.
    #[arg(long)]
    crash_primary: bool,
    /// Where the replicas keep their state; `disk` (vr only) adds two faults: every
    /// replica killed at once, and a byte of a stopped replica's log or superblock
    /// flipped before it restarts.
    #[arg(long, value_enum, default_value_t = StorageArgument::Memory)]
    storage: StorageArgument,
    /// Also write the run's lin-history here (JSON lines), whatever the verdict.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Already inside the run's network namespace (set when the binary re-runs itself).
    #[arg(long, hide = true)]
    inside_namespace: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtocolArgument {
    Vr,
    RemoteWrite,
    /// No kills: local-write tolerates no crash.
    LocalWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StorageArgument {
    Memory,
    Disk,
}

const CHECKS_FAILED: u8 = 1;
const CANNOT_RUN: u8 = 2;
const UNDECIDED: u8 = 3;

/// The exit status of a run that finished: a broken guarantee wins over an
/// undecided linearizability check.
fn exit_status(violations: &[String], undecided: bool) -> u8 {
    if !violations.is_empty() {
        CHECKS_FAILED
    } else if undecided {
        UNDECIDED
    } else {
        0
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("not a duration: {text:?} (try 90s or 10m)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    if arguments.storage == StorageArgument::Disk && !matches!(arguments.protocol, ProtocolArgument::Vr) {
        eprintln!("noted-chaos: --storage disk is for vr; remote-write and local-write keep their state in memory");
        return ExitCode::from(CANNOT_RUN);
    }
    if arguments.inside_namespace {
        return run_inside(&arguments);
    }
    if let Some(reason) = unavailable_reason() {
        eprintln!("noted-chaos: cannot run: {reason}");
        return ExitCode::from(CANNOT_RUN);
    }
    let noted = match noted_binary() {
        Ok(noted) => noted,
        Err(error) => {
            eprintln!("noted-chaos: {error}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let namespace = match Namespace::create() {
        Ok(namespace) => namespace,
        Err(error) => {
            eprintln!("noted-chaos: {error}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    // Ctrl-C and SIGTERM end the process without destructors: clean up first.
    let name = namespace.name.clone();
    let handler = ctrlc::set_handler(move || {
        eprintln!("noted-chaos: interrupted; removing namespace {name} and everything in it");
        namespace::remove(&name);
        std::process::exit(130);
    });
    if let Err(error) = handler {
        eprintln!("noted-chaos: cannot handle Ctrl-C: {error}");
        return ExitCode::from(CANNOT_RUN);
    }
    let seed = arguments.seed.unwrap_or_else(rand::random);
    // The run inside the namespace starts in this directory too; an absolute path
    // keeps the history where it was asked for whatever happens there.
    let history = arguments.history.as_ref().map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    let mut inner = namespace.command(std::env::current_exe().expect("the binary knows its path"));
    inner
        .args(["--inside-namespace", "--seed", &seed.to_string()])
        .args(["--replicas", &arguments.replicas.to_string()])
        .args(["--duration", &format!("{}s", arguments.duration.as_secs())])
        .args(["--clients", &arguments.clients.to_string()])
        .args(["--think-ms", &arguments.think_ms.to_string()])
        .args(["--protocol", arguments.protocol.to_possible_value().expect("not skipped").get_name()])
        .args(arguments.crash_primary.then_some("--crash-primary"))
        .args(["--storage", arguments.storage.to_possible_value().expect("not skipped").get_name()])
        .args(history.iter().flat_map(|path| [std::ffi::OsStr::new("--history"), path.as_os_str()]))
        .env("NOTED_BIN", &noted);
    println!("noted-chaos: namespace {}, noted at {}", namespace.name, noted.display());
    let mut child = match inner.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("noted-chaos: cannot start inside {}: {error}", namespace.name);
            return ExitCode::from(CANNOT_RUN);
        }
    };
    // Faults, recovery and checking take a while beyond the schedule; this is a last resort.
    let deadline = Instant::now() + arguments.duration * 2 + Duration::from_secs(300);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match status.code() {
                    Some(0) => ExitCode::SUCCESS,
                    Some(1) => ExitCode::from(CHECKS_FAILED),
                    Some(3) => ExitCode::from(UNDECIDED),
                    _ => {
                        eprintln!("noted-chaos: the run inside the namespace ended with {status}");
                        ExitCode::from(CANNOT_RUN)
                    }
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("noted-chaos: the run did not finish in time and was killed");
                return ExitCode::from(CANNOT_RUN);
            }
        }
    }
}

/// Runs the test; the namespace is this process's.
fn run_inside(arguments: &Arguments) -> ExitCode {
    let options = ChaosOptions {
        protocol: match arguments.protocol {
            ProtocolArgument::Vr => Protocol::Vr,
            ProtocolArgument::RemoteWrite => Protocol::RemoteWrite,
            ProtocolArgument::LocalWrite => Protocol::LocalWrite,
        },
        replicas: arguments.replicas,
        duration: arguments.duration,
        seed: arguments.seed.expect("the outer run passes the seed"),
        clients: arguments.clients,
        think_time: Duration::from_millis(arguments.think_ms),
        crash_primary: arguments.crash_primary,
        history: arguments.history.clone(),
        disk: arguments.storage == StorageArgument::Disk,
    };
    let report = chaos::run(&options);
    println!("noted-chaos: {}", report.summary);
    for violation in &report.violations {
        println!("noted-chaos: VIOLATION: {violation}");
    }
    if let Some(undecided) = &report.undecided {
        println!("noted-chaos: UNDECIDED: {undecided}");
    }
    let status = exit_status(&report.violations, report.undecided.is_some());
    match status {
        0 => println!("noted-chaos: PASSED (seed {})", options.seed),
        UNDECIDED => println!(
            "noted-chaos: UNDECIDED (seed {}): every other check passed; logs and history in {}",
            options.seed,
            report.directory.display()
        ),
        _ => {
            println!("noted-chaos: FAILED (seed {}); logs and history in {}", options.seed, report.directory.display())
        }
    }
    ExitCode::from(status)
}

/// `NOTED_BIN`, or `noted` built next to this binary (same profile) with cargo.
fn noted_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NOTED_BIN") {
        return Ok(PathBuf::from(path));
    }
    let here = std::env::current_exe().map_err(|error| format!("cannot find this binary: {error}"))?;
    let directory = here.parent().ok_or("this binary has no directory")?;
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build.args(["build", "--quiet", "-p", "noted-server", "--bin", "noted"]);
    if directory.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .map_err(|error| format!("cannot run cargo to build noted: {error}"))?;
    if !status.success() {
        return Err("building noted failed".into());
    }
    let noted = directory.join(format!("noted{}", std::env::consts::EXE_SUFFIX));
    if noted.exists() { Ok(noted) } else { Err(format!("noted was built but is not at {}", noted.display())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn an_undecided_check_is_its_own_status_and_a_broken_guarantee_wins() {
        let broken = vec!["1 acknowledged creates were lost".to_string()];
        assert_eq!(exit_status(&[], false), 0);
        assert_eq!(exit_status(&[], true), UNDECIDED);
        assert_eq!(exit_status(&broken, false), CHECKS_FAILED);
        assert_eq!(exit_status(&broken, true), CHECKS_FAILED);
        assert!(![CHECKS_FAILED, CANNOT_RUN, 130].contains(&UNDECIDED));
    }
}
