//! Which operations a benchmark sends, and how often.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// One kind of request of the notes API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OperationKind {
    Create,
    Get,
    List,
    Replace,
    Patch,
    Delete,
}

impl OperationKind {
    pub const ALL: [OperationKind; 6] = [
        OperationKind::Create,
        OperationKind::Get,
        OperationKind::List,
        OperationKind::Replace,
        OperationKind::Patch,
        OperationKind::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Get => "get",
            OperationKind::List => "list",
            OperationKind::Replace => "replace",
            OperationKind::Patch => "patch",
            OperationKind::Delete => "delete",
        }
    }

    /// The operation's function in the notes model of a lin-history.
    pub fn model_function(self) -> &'static str {
        match self {
            OperationKind::Replace => "put",
            other => other.name(),
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, OperationKind::Get | OperationKind::List)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the operations, e.g. `get=90,replace=10`, or a preset name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationMix {
    weights: [u32; OperationKind::ALL.len()],
}

/// The named mixes `--mix` accepts.
pub const PRESETS: [(&str, &str); 4] = [
    ("read-heavy", "get=90,list=5,replace=5"),
    ("write-heavy", "create=20,replace=40,patch=30,delete=5,get=5"),
    ("reads", "get=100"),
    ("writes", "create=20,replace=50,patch=30"),
];

impl OperationMix {
    /// Draws an operation with probability proportional to its weight.
    pub fn choose(&self, random: &mut impl Rng) -> OperationKind {
        let total: u32 = self.weights.iter().sum();
        let mut ticket = random.random_range(0..total);
        for kind in OperationKind::ALL {
            let weight = self.weights[kind.index()];
            if ticket < weight {
                return kind;
            }
            ticket -= weight;
        }
        unreachable!("the tickets add up to the total weight")
    }

    pub fn has_reads(&self) -> bool {
        OperationKind::ALL.iter().any(|kind| kind.is_read() && self.weights[kind.index()] > 0)
    }
}

impl FromStr for OperationMix {
    type Err = String;

    fn from_str(text: &str) -> Result<OperationMix, String> {
        let spec = PRESETS.iter().find(|(name, _)| *name == text).map_or(text, |(_, spec)| spec);
        let mut weights = [0u32; OperationKind::ALL.len()];
        for part in spec.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (name, weight) =
                part.split_once('=').ok_or_else(|| format!("{part:?} is not NAME=WEIGHT nor a preset"))?;
            let kind = OperationKind::ALL.into_iter().find(|kind| kind.name() == name.trim()).ok_or_else(|| {
                format!("unknown operation {name:?}: one of create, get, list, replace, patch, delete")
            })?;
            weights[kind.index()] =
                weight.trim().parse().map_err(|_| format!("the weight of {name} is not a whole number: {weight:?}"))?;
        }
        if weights.iter().map(|weight| u64::from(*weight)).sum::<u64>() == 0 {
            return Err("the mix has no operation with a positive weight".into());
        }
        if weights.iter().map(|weight| u64::from(*weight)).sum::<u64>() > u64::from(u32::MAX) {
            return Err("the weights add up to more than 4294967295".into());
        }
        Ok(OperationMix { weights })
    }
}

impl fmt::Display for OperationMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = OperationKind::ALL
            .iter()
            .filter(|kind| self.weights[kind.index()] > 0)
            .map(|kind| format!("{}={}", kind.name(), self.weights[kind.index()]))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn presets_and_specs_parse() {
        assert_eq!("reads".parse::<OperationMix>().unwrap().to_string(), "get=100");
        assert_eq!("get=3, delete=1".parse::<OperationMix>().unwrap().to_string(), "get=3,delete=1");
        assert!("get=0".parse::<OperationMix>().is_err());
        assert!("fetch=1".parse::<OperationMix>().is_err());
        assert!("get".parse::<OperationMix>().is_err());
        assert!("get=-1".parse::<OperationMix>().is_err());
        for (name, _) in PRESETS {
            assert!(name.parse::<OperationMix>().is_ok(), "{name}");
        }
    }

    #[test]
    fn operations_are_drawn_by_weight() {
        let mix: OperationMix = "get=3,delete=1".parse().unwrap();
        let mut random = StdRng::seed_from_u64(7);
        let draws: Vec<OperationKind> = (0..4000).map(|_| mix.choose(&mut random)).collect();
        let gets = draws.iter().filter(|kind| **kind == OperationKind::Get).count();
        assert!(draws.iter().all(|kind| matches!(kind, OperationKind::Get | OperationKind::Delete)));
        assert!((2700..3300).contains(&gets), "{gets} gets of 4000");
        assert!(mix.has_reads());
        assert!(!"create=1".parse::<OperationMix>().unwrap().has_reads());
    }
}
