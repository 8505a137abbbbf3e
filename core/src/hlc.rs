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
        self.rfc3339().as_str().to_owned()
    }

    /// The same text as [`Timestamp::to_rfc3339`], on the stack: every note a
    /// replica answers with carries two of them.
    pub fn rfc3339(self) -> Rfc3339 {
        const NANOS_PER_SECOND: u64 = 1_000_000_000;
        let seconds = self.0 / NANOS_PER_SECOND;
        let nanos = self.0 % NANOS_PER_SECOND;
        let days = seconds / 86_400;
        let second_of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        // u64 nanoseconds end in the year 2554: the year always has four digits.
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        write_digits(&mut text[0..4], year);
        write_digits(&mut text[5..7], month);
        write_digits(&mut text[8..10], day);
        write_digits(&mut text[11..13], second_of_day / 3600);
        write_digits(&mut text[14..16], (second_of_day / 60) % 60);
        write_digits(&mut text[17..19], second_of_day % 60);
        write_digits(&mut text[20..29], nanos);
        Rfc3339(text)
    }
}

/// A timestamp's RFC 3339 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only ASCII digits and separators are written")
    }
}

/// Writes the last `field.len()` decimal digits of `value`, zero-padded, into `field`.
fn write_digits(field: &mut [u8], mut value: u64) {
    for digit in field.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
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
    fn the_text_matches_a_formatted_one() {
        for nanos in [0, 1, 999_999_999, 1_709_210_096_000_000_789, 4_102_444_800_123_456_789, u64::MAX] {
            let timestamp = Timestamp(nanos);
            let seconds = nanos / 1_000_000_000;
            let (year, month, day) = civil_from_days(seconds / 86_400);
            let second_of_day = seconds % 86_400;
            let expected = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
                second_of_day / 3600,
                (second_of_day / 60) % 60,
                second_of_day % 60,
                nanos % 1_000_000_000
            );
            assert_eq!(timestamp.to_rfc3339(), expected);
        }
    }

    #[test]
    fn formats_the_epoch_and_a_leap_day() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000789Z
        let leap_day = Timestamp(1_709_210_096 * 1_000_000_000 + 789);
        assert_eq!(leap_day.to_rfc3339(), "2024-02-29T12:34:56.000000789Z");
    }
}
