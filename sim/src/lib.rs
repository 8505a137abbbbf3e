//! noted-sim: drives noted's replicas under seeded faults, records the client
//! history and checks it.

pub mod checker;
pub mod history;
