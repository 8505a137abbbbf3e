//! Each replica's own clock: an offset and a rate error applied to simulated true
//! time. Readings are monotonic (the rate stays positive), so a replica never sees
//! time go backwards, but replicas disagree on what time it is and on how fast it
//! passes.

use noted_core::Instant;
use rand::Rng;

/// Local time starts here, so that a negative offset still gives a valid reading.
const EPOCH_NANOS: u64 = 1_000_000_000_000;
const PPM: i128 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaClock {
    /// Added to every reading, in nanoseconds.
    offset_nanos: i64,
    /// Rate error in parts per million: local time advances `1 + drift/1e6` per true nanosecond.
    drift_ppm: i32,
}

impl ReplicaClock {
    pub const EXACT: ReplicaClock = ReplicaClock { offset_nanos: 0, drift_ppm: 0 };

    /// A clock off by up to `skew_max_nanos` and running fast or slow by up to `drift_max_ppm`.
    pub fn random(rng: &mut impl Rng, skew_max_nanos: u64, drift_max_ppm: u32) -> ReplicaClock {
        let skew_max = i64::try_from(skew_max_nanos).unwrap_or(i64::MAX / 2);
        let drift_max = i32::try_from(drift_max_ppm.min(500_000)).expect("bounded above");
        ReplicaClock {
            offset_nanos: rng.random_range(-skew_max..=skew_max),
            drift_ppm: rng.random_range(-drift_max..=drift_max),
        }
    }

    /// The replica's reading at simulated true time `true_nanos`.
    pub fn local(&self, true_nanos: u64) -> Instant {
        let scaled = i128::from(true_nanos) * (PPM + i128::from(self.drift_ppm)) / PPM;
        let reading = i128::from(EPOCH_NANOS) + i128::from(self.offset_nanos) + scaled;
        Instant::from_nanos(u64::try_from(reading.max(0)).unwrap_or(u64::MAX))
    }

    /// The earliest true time at which the replica's clock reads `deadline` or later.
    pub fn true_time_of(&self, deadline: Instant) -> u64 {
        let wanted = i128::from(deadline.as_nanos()) - i128::from(EPOCH_NANOS) - i128::from(self.offset_nanos);
        let rate = PPM + i128::from(self.drift_ppm);
        let mut estimate = (wanted * PPM).div_euclid(rate).max(0);
        // Integer division may land one short: step forward until the reading is reached.
        while self.local(u64::try_from(estimate).unwrap_or(u64::MAX)) < deadline && estimate < i128::from(u64::MAX) {
            estimate += 1;
        }
        u64::try_from(estimate).unwrap_or(u64::MAX)
    }

    pub fn offset_nanos(&self) -> i64 {
        self.offset_nanos
    }

    pub fn drift_ppm(&self) -> i32 {
        self.drift_ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_monotonic_and_deadlines_invert() {
        let clock = ReplicaClock { offset_nanos: -300_000_000, drift_ppm: -40_000 };
        let mut previous = clock.local(0);
        for true_nanos in (0..5_000_000_000u64).step_by(7_777_777) {
            let reading = clock.local(true_nanos);
            assert!(reading >= previous);
            previous = reading;
            let deadline = reading + core::time::Duration::from_nanos(12_345);
            let fires_at = clock.true_time_of(deadline);
            assert!(clock.local(fires_at) >= deadline);
            assert!(fires_at == 0 || clock.local(fires_at - 1) < deadline);
        }
    }
}
