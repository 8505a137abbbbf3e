//! Versions of the peer wire protocol, and how two replicas agree on one.
//!
//! Each replica speaks a contiguous range of versions; a connection between two
//! replicas uses the highest version both speak, and two replicas with no common
//! version do not talk. A release must speak the previous release's newest
//! version, so that a cluster can be upgraded one replica at a time.

use serde::{Deserialize, Serialize};

/// The versions from `oldest` to `newest`, both included; never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    oldest: u16,
    newest: u16,
}

impl VersionRange {
    /// `None` unless `1 <= oldest <= newest`: version 0 is never spoken.
    pub const fn new(oldest: u16, newest: u16) -> Option<VersionRange> {
        if oldest == 0 || oldest > newest { None } else { Some(VersionRange { oldest, newest }) }
    }

    pub const fn oldest(self) -> u16 {
        self.oldest
    }

    pub const fn newest(self) -> u16 {
        self.newest
    }

    pub const fn contains(self, version: u16) -> bool {
        self.oldest <= version && version <= self.newest
    }

    /// The highest version both ranges hold, if any.
    pub fn highest_common(self, other: VersionRange) -> Option<u16> {
        let highest = self.newest.min(other.newest);
        (highest >= self.oldest.max(other.oldest)).then_some(highest)
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.oldest == self.newest {
            write!(f, "{}", self.oldest)
        } else {
            write!(f, "{}-{}", self.oldest, self.newest)
        }
    }
}

impl std::str::FromStr for VersionRange {
    type Err = String;

    /// `3` or `2-4`.
    fn from_str(text: &str) -> Result<VersionRange, String> {
        let (oldest, newest) = text.split_once('-').unwrap_or((text, text));
        let parse = |part: &str| part.trim().parse::<u16>().map_err(|_| format!("{text:?} is no version range"));
        VersionRange::new(parse(oldest)?, parse(newest)?)
            .ok_or_else(|| format!("{text:?}: versions start at 1 and the oldest comes first"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(oldest: u16, newest: u16) -> VersionRange {
        VersionRange::new(oldest, newest).unwrap()
    }

    #[test]
    fn the_highest_common_version_is_agreed() {
        assert_eq!(range(1, 3).highest_common(range(2, 5)), Some(3));
        assert_eq!(range(2, 5).highest_common(range(1, 3)), Some(3));
        assert_eq!(range(1, 1).highest_common(range(1, 4)), Some(1));
        assert_eq!(range(1, 2).highest_common(range(3, 4)), None);
        assert_eq!(range(4, 4).highest_common(range(1, 3)), None);
    }

    #[test]
    fn ranges_are_never_empty_and_parse_from_text() {
        assert_eq!(VersionRange::new(0, 1), None);
        assert_eq!(VersionRange::new(3, 2), None);
        assert_eq!("2-4".parse(), Ok(range(2, 4)));
        assert_eq!("3".parse(), Ok(range(3, 3)));
        assert!("4-2".parse::<VersionRange>().is_err());
        assert_eq!(range(2, 4).to_string(), "2-4");
    }
}
