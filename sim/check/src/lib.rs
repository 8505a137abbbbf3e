//! noted-check: client histories in the lin-history format and the linearizability
//! checker that decides them, on their own, so that whatever records a history (the
//! simulator, `noted bench`, the end-to-end tests) checks it without the simulator.
//!
//! ```text
//! history   lin-history (versions 1 and 2) and Jepsen etcd logs ──▶ operations in real-time order
//! checker   operations ──▶ per-shard, per-note plans ──▶ search ──▶ linearizable, not (with the
//!           failing operations), or undecided (budget of steps, time or memory spent)
//! recording what a client saw ──▶ history events
//! gen_history, plant   histories with known verdicts, for tests and benchmarks
//! ```

pub mod checker;
pub mod gen_history;
pub mod history;
pub mod plant;
pub mod recording;
