//! A bound on warnings about bad peer input: anyone who can reach the peer ports
//! can send garbage, and one log line per forged frame or connection would let
//! them fill the disk and drown the lines that matter. Every drop is still
//! counted in `/metrics`; the log gets [`WARNINGS_PER_WINDOW`] lines per
//! [`WINDOW`], then one line saying how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

pub const WINDOW: Duration = Duration::from_secs(60);
pub const WARNINGS_PER_WINDOW: u32 = 5;

#[derive(Debug, Default)]
pub struct WarnLimit {
    state: Mutex<Option<Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl WarnLimit {
    /// Runs `log` (which should log one warning) unless this window's share is spent.
    pub fn warn(&self, log: impl FnOnce()) {
        if self.admit(Instant::now()) {
            log();
        }
    }

    fn admit(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = state.get_or_insert(Window { started: now, logged: 0, suppressed: 0 });
        if now.saturating_duration_since(window.started) >= WINDOW {
            if window.suppressed > 0 {
                warn!(
                    suppressed = window.suppressed,
                    window_seconds = WINDOW.as_secs(),
                    "more bad peer input was dropped than logged (see noted_peer_messages_dropped_total)"
                );
            }
            *window = Window { started: now, logged: 0, suppressed: 0 };
        }
        if window.logged < WARNINGS_PER_WINDOW {
            window.logged += 1;
            true
        } else {
            window.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_logs_its_share_then_starts_again() {
        let limit = WarnLimit::default();
        let start = Instant::now();
        let admitted = (0..100).filter(|_| limit.admit(start)).count();
        assert_eq!(admitted, WARNINGS_PER_WINDOW as usize);
        assert!(limit.admit(start + WINDOW), "a new window");
    }
}
