//! Simulator throughput: simulated events and message deliveries per second and
//! seeds per minute, with the linearizability checker on, one thread; then the
//! checker alone on the Jepsen etcd histories in `../shared/data/jepsen-etcd/`.
//! `cargo bench -p noted-sim --bench throughput`; `NOTED_SIM_SEEDS` sets the number
//! of seeds (default 500).

use noted_sim::checker::Verdict;
use noted_sim::{RunRequest, SimProtocol, run};

fn main() {
    let seeds: u64 = std::env::var("NOTED_SIM_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(500);
    for protocol in SimProtocol::ALL {
        // A benchmark measures wall-clock time around whole runs; nothing inside a run reads it.
        #[allow(clippy::disallowed_types)]
        let started = std::time::Instant::now();
        let (mut events, mut deliveries, mut operations) = (0u64, 0u64, 0u64);
        for seed in 0..seeds {
            let outcome = run(&RunRequest::new(protocol, seed));
            events += outcome.events;
            deliveries += outcome.deliveries;
            operations += outcome.operations();
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{protocol}: {seeds} seeds in {elapsed:.2}s: {:.0} seeds/minute, {:.0} simulated events/s, {:.0} message deliveries/s, {:.0} operations checked/s",
            seeds as f64 * 60.0 / elapsed,
            events as f64 / elapsed,
            deliveries as f64 / elapsed,
            operations as f64 / elapsed
        );
    }
    check_jepsen_histories();
}

/// The checker's time on each Jepsen etcd log, best of five, and the total.
fn check_jepsen_histories() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/jepsen-etcd");
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return println!("checker: no Jepsen histories at {}", directory.display());
    };
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
