//! The host clock: the one place the server reads time for a replica.
//!
//! Core's [`Instant`] is nanoseconds since an epoch the host chooses. noted chooses
//! the Unix epoch, read once at start-up, and advances it by the monotonic clock,
//! so that note timestamps look like wall-clock times while readings never go
//! backwards even if the system clock is stepped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use noted_core::Instant;

#[derive(Debug)]
pub struct HostClock {
    started: tokio::time::Instant,
    started_unix: Instant,
    latest: Instant,
}

impl HostClock {
    pub fn start() -> HostClock {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let started_unix = Instant::from_nanos(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX));
        HostClock { started: tokio::time::Instant::now(), started_unix, latest: started_unix }
    }

    /// The current reading; never earlier than any reading before it.
    pub fn now(&mut self) -> Instant {
        let reading = self.started_unix + self.started.elapsed();
        self.latest = self.latest.max(reading);
        self.latest
    }

    /// The tokio instant at which the core's `at` falls, for `sleep_until`.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.started + at.saturating_duration_since(self.started_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readings_are_wall_clock_nanoseconds_that_never_go_back() {
        let mut clock = HostClock::start();
        let first = clock.now();
        let second = clock.now();
        assert!(second >= first);
        let year_2020_nanos = 1_577_836_800u64 * 1_000_000_000;
        assert!(first.as_nanos() > year_2020_nanos);
        let in_a_second = first + Duration::from_secs(1);
        let deadline = clock.deadline(in_a_second);
        assert!(deadline > tokio::time::Instant::now());
    }
}
