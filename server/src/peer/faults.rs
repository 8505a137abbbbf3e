//! Test-only faults inside noted: loss and delay of outgoing protocol frames, for
//! chaos tests on machines without a network emulator; a panic of the driver, to
//! test that a panic ends the process; a driver that stops taking inputs, to test
//! that `/healthz` tells.
//!
//! Written as `loss=0.1,delay-ms=5,panic-at-request=3` on the command line
//! (`--test-faults`) or as `{"loss": 0.1, "delay_ms": 5, "panic_at_request": 3}` in
//! the cluster file (and `stall-at-request`, `stall_at_request`). Heartbeats are
//! not affected. `lose-unsynced-writes=true` makes disk storage hold writes in
//! memory until a sync covers them: killing the process then loses them, as a
//! power cut loses the page cache.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFaults {
    /// Probability that an outgoing frame is dropped, in [0, 1).
    #[serde(default)]
    pub loss: f64,
    /// Upper bound of a uniformly drawn delay added to every outgoing frame.
    #[serde(default)]
    pub delay_ms: u64,
    /// The driver panics when it takes this client request (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_at_request: Option<u64>,
    /// The driver stops taking inputs (until shutdown) at this client request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_at_request: Option<u64>,
    /// Disk storage holds writes in memory until a sync covers them, so that a
    /// killed process loses them as a power cut loses the page cache.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lose_unsynced_writes: bool,
}

/// What to do with one outgoing frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDecision {
    Deliver,
    Delay(Duration),
    Drop,
}

impl TestFaults {
    pub fn is_active(&self) -> bool {
        self.loss > 0.0 || self.delay_ms > 0
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!("loss must be in [0, 1), not {}", self.loss));
        }
        Ok(())
    }

    pub fn decide(&self) -> FaultDecision {
        if self.loss > 0.0 && rand::random::<f64>() < self.loss {
            return FaultDecision::Drop;
        }
        if self.delay_ms > 0 {
            return FaultDecision::Delay(Duration::from_millis(rand::random_range(0..=self.delay_ms)));
        }
        FaultDecision::Deliver
    }
}

impl std::str::FromStr for TestFaults {
    type Err = String;

    fn from_str(text: &str) -> Result<TestFaults, String> {
        let mut faults = TestFaults::default();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| format!("expected key=value, got {item:?}"))?;
            match key {
                "loss" => faults.loss = value.parse().map_err(|_| format!("loss: not a number: {value:?}"))?,
                "delay-ms" => {
                    faults.delay_ms = value.parse().map_err(|_| format!("delay-ms: not a number: {value:?}"))?
                }
                "panic-at-request" => {
                    let request = value.parse().map_err(|_| format!("panic-at-request: not a number: {value:?}"))?;
                    faults.panic_at_request = Some(request);
                }
                "lose-unsynced-writes" => {
                    faults.lose_unsynced_writes =
                        value.parse().map_err(|_| format!("lose-unsynced-writes: not true or false: {value:?}"))?
                }
                "stall-at-request" => {
                    let request = value.parse().map_err(|_| format!("stall-at-request: not a number: {value:?}"))?;
                    faults.stall_at_request = Some(request);
                }
                other => {
                    return Err(format!(
                        "unknown test fault {other:?}; use loss=, delay-ms=, panic-at-request=, stall-at-request= \
                         and lose-unsynced-writes="
                    ));
                }
            }
        }
        faults.validate()?;
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_form() {
        let faults: TestFaults = "loss=0.1,delay-ms=5".parse().unwrap();
        assert_eq!(faults, TestFaults { loss: 0.1, delay_ms: 5, ..TestFaults::default() });
        let faults: TestFaults = "panic-at-request=3".parse().unwrap();
        assert_eq!(faults.panic_at_request, Some(3));
        assert!("loss=1.5".parse::<TestFaults>().is_err());
        assert!("jitter=3".parse::<TestFaults>().is_err());
    }

    #[test]
    fn no_faults_always_deliver() {
        assert_eq!(TestFaults::default().decide(), FaultDecision::Deliver);
    }
}
