//! Hybrid logical clock for note timestamps.
//!
//! `created_at`/`updated_at` are chosen where an operation is ordered and carried in
//! the replicated operation, so every replica stores the same value. Taking the
//! maximum of the local clock and one past the last timestamp the store has seen
//! keeps timestamps strictly increasing even when the ordering replica changes to one
//! whose clock is behind.

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// Nanoseconds since the Unix epoch as read from the ordering replica's clock,
/// advanced where needed so that timestamps never go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The next timestamp to assign: the clock reading, unless that would not be
    /// later than `last`.
    pub fn next(now: Instant, last: Timestamp) -> Timestamp {
        Timestamp(now.as_nanos().max(last.0.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_clock_when_it_is_ahead() {
        assert_eq!(Timestamp::next(Instant::from_nanos(100), Timestamp(50)), Timestamp(100));
    }

    #[test]
    fn never_goes_backwards_when_the_clock_is_behind() {
        assert_eq!(Timestamp::next(Instant::from_nanos(10), Timestamp(50)), Timestamp(51));
        assert_eq!(Timestamp::next(Instant::from_nanos(51), Timestamp(51)), Timestamp(52));
    }
}

impl Timestamp {
    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-21T23:58:29.000000001Z`.
    pub fn to_rfc3339(self) -> String {
        const NANOS_PER_SECOND: u64 = 1_000_000_000;
        let seconds = self.0 / NANOS_PER_SECOND;
        let nanos = self.0 % NANOS_PER_SECOND;
        let days = seconds / 86_400;
        let second_of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            second_of_day / 3600,
            (second_of_day / 60) % 60,
            second_of_day % 60
        )
    }
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days_since_epoch: u64) -> (u64, u64, u64) {
    let z = days_since_epoch + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn formats_the_epoch_and_a_leap_day() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000789Z
        let leap_day = Timestamp(1_709_210_096 * 1_000_000_000 + 789);
        assert_eq!(leap_day.to_rfc3339(), "2024-02-29T12:34:56.000000789Z");
    }
}
