//! Simulator throughput: simulated events per second and seeds per minute, with the
//! linearizability checker on, one thread. `cargo bench -p noted-sim`;
//! `NOTED_SIM_SEEDS` sets the number of seeds (default 500).

use noted_sim::{RunRequest, SimProtocol, run};

fn main() {
    let seeds: u64 = std::env::var("NOTED_SIM_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(500);
    for protocol in SimProtocol::ALL {
        // A benchmark measures wall-clock time around whole runs; nothing inside a run reads it.
        #[allow(clippy::disallowed_types)]
        let started = std::time::Instant::now();
        let (mut events, mut operations) = (0u64, 0u64);
        for seed in 0..seeds {
            let outcome = run(&RunRequest::new(protocol, seed));
            events += outcome.events;
            operations += outcome.operations();
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{protocol}: {seeds} seeds in {elapsed:.2}s: {:.0} seeds/minute, {:.0} simulated events/s, {:.0} operations checked/s",
            seeds as f64 * 60.0 / elapsed,
            events as f64 / elapsed,
            operations as f64 / elapsed
        );
    }
}
