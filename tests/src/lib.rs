//! # noted-tests: end-to-end tests of the real `noted` binary
//!
//! The tests in `tests/tests/` start `noted serve` processes on loopback ports the
//! OS chose, talk to them with a real HTTP client, kill and restart them, and check
//! what clients saw with the simulator's linearizability checker.
//!
//! **Finding the binary.** Cargo only gives integration tests the path of binaries
//! of their own package, and `noted` belongs to `noted-server`. So [`noted_binary`]
//! builds it once per test process with the same `cargo` that runs the tests
//! (`cargo build -p noted-server --bin noted`, a no-op when it is fresh) and finds it
//! next to the test executable's `deps/` directory. Set `NOTED_BIN` to use another
//! build of `noted` instead.
//!
//! **Cleanup.** A [`Cluster`] kills every process it started when dropped, also
//! when a test panics; every wait polls with a deadline, so no test hangs.

pub mod chaos;
pub mod checks;
pub mod client;
pub mod cluster;
pub mod data_files;
pub mod history;
pub mod hostile;
pub mod workload;

pub use client::{HttpResponse, NotesClient};
pub use cluster::{Cluster, ClusterOptions, noted_binary};
pub use history::Recorder;

use std::time::{Duration, Instant};

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
