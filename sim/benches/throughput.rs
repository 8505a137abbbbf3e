//! Simulator throughput on one thread: per protocol, the same seeds are run twice,
//! once by the simulator alone (the linearizability check switched off) and once with
//! the checker on, and each line says which. Rates are per second of wall-clock time,
//! and deliveries also per second the thread spent on a CPU. Then the checker alone on the Jepsen etcd
//! histories in `sim/testdata/jepsen-etcd/`.
//! `cargo bench -p noted-sim --bench throughput`; `NOTED_SIM_SEEDS` sets the number
//! of seeds (default 500), `NOTED_SIM_PROTOCOLS` a comma-separated list of protocols
//! (default all). `NOTED_BENCH_QUICK=1` makes the default 2 seeds, so that the
//! test command proves the bench still runs; its figures mean nothing.

use noted_sim::checker::Verdict;
use noted_sim::{RunRequest, SimProtocol, run};

// The allocator of the `noted-sim` binary, so that the figures are the command line's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::var("NOTED_BENCH_QUICK").is_ok_and(|value| value == "1");
    let seeds: u64 =
        std::env::var("NOTED_SIM_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(if quick { 2 } else { 500 });
    let protocols = std::env::var("NOTED_SIM_PROTOCOLS").unwrap_or_default();
    let chosen =
        |protocol: &SimProtocol| protocols.is_empty() || protocols.split(',').any(|name| name == protocol.name());
    for protocol in SimProtocol::ALL.into_iter().filter(chosen) {
        for check_linearizability in [false, true] {
            measure(protocol, seeds, check_linearizability);
        }
    }
    if protocols.is_empty() {
        check_jepsen_histories();
    }
}

/// Runs seeds `0..seeds` of `protocol` one after the other and prints the rates, per
/// second of wall-clock time and per second this thread spent on a CPU: on a shared
/// machine the two differ, and the second is what one core achieves.
fn measure(protocol: SimProtocol, seeds: u64, check_linearizability: bool) {
    let cpu_before = thread_cpu_seconds();
    // A benchmark measures wall-clock time around whole runs; nothing inside a run reads it.
    #[allow(clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let (mut events, mut deliveries, mut operations, mut failures) = (0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let outcome = run(&RunRequest { check_linearizability, ..RunRequest::new(protocol, seed) });
        events += outcome.events;
        deliveries += outcome.deliveries;
        operations += outcome.operations();
        failures += u64::from(!outcome.passed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(thread_cpu_seconds()).map(|(before, after)| after - before);
    let label = if check_linearizability { "simulator + checker" } else { "simulator alone" };
    let on_cpu = cpu.map_or(String::new(), |cpu| {
        format!(" ({cpu:.2}s on the CPU: {:.0} message deliveries per CPU second)", deliveries as f64 / cpu)
    });
    println!(
        "{protocol} ({label}): {seeds} seeds in {elapsed:.2}s{on_cpu}: {:.0} message deliveries/s, \
         {:.0} simulated events/s, {:.0} seeds/minute, {:.0} operations/s, {failures} failed",
        deliveries as f64 / elapsed,
        events as f64 / elapsed,
        seeds as f64 * 60.0 / elapsed,
        operations as f64 / elapsed
    );
}

/// User and system time of this thread so far, from `/proc/thread-self/stat` (Linux, in
/// ticks of 1/100 s); `None` elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: the fields are counted after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

/// The checker's time on each Jepsen etcd log, best of five, and the total.
fn check_jepsen_histories() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jepsen-etcd");
    // The histories are part of the repository: a clone without them is broken.
    let entries = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("the Jepsen histories at {}: {error}", directory.display()));
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    paths.sort();
    let mut total_seconds = 0.0;
    for path in &paths {
        let mut best = f64::MAX;
        let mut verdict = "";
        for _ in 0..5 {
            #[allow(clippy::disallowed_types)]
            let started = std::time::Instant::now();
            let report = noted_sim::checker::check_file(path).expect("the sample histories parse");
            best = best.min(started.elapsed().as_secs_f64());
            verdict = match report.verdict {
                Verdict::Linearizable => "linearizable",
                Verdict::NotLinearizable(_) => "not linearizable",
                Verdict::Unknown { .. } => "unknown",
            };
        }
        total_seconds += best;
        println!(
            "checker: {} {verdict} in {:.2} ms",
            path.file_name().unwrap_or_default().to_string_lossy(),
            best * 1e3
        );
    }
    println!("checker: {} Jepsen histories in {:.1} ms", paths.len(), total_seconds * 1e3);
}
