//! The protocols the simulator can run, and each one's fault model as a budget of
//! what the simulator may inject.
//!
//! Adding a protocol is one variant here: its core [`ProtocolKind`], and the faults
//! its fault model tolerates. Everything else in the simulator is protocol-generic.

use core::fmt;

use noted_core::{ProtocolKind, ReplicaId};

/// A protocol, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum SimProtocol {
    /// Primary-backup with a fixed primary (R0).
    RemoteWrite,
    /// Primary-backup with the primary role of each note migrating to the writer.
    LocalWrite,
    /// Viewstamped Replication Revisited.
    Vr,
}

/// Which replicas the simulator may crash (with memory lost) while staying inside a
/// protocol's fault model; with disks, every protocol tolerates any crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashBudget {
    /// No crashes at all.
    None,
    /// Any replica but this one (the fixed primary of remote-write), any number at once.
    AllExcept(ReplicaId),
    /// Any replica, but at most a minority (`(n - 1) / 2`) down at once.
    Minority,
    /// Anything, including every replica at once: outside every fault model.
    Unlimited,
}

/// The faults a protocol's fault model tolerates. Faults outside the budget are
/// injected only with `--beyond-model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultBudget {
    pub message_loss: bool,
    pub message_duplication: bool,
    /// Reordering falls out of random delays; without it delays are constant per link.
    pub message_reordering: bool,
    pub partitions: bool,
    pub pauses: bool,
    pub clock_skew: bool,
    pub crashes: CrashBudget,
}

impl FaultBudget {
    /// Everything, for runs outside the protocol's fault model.
    pub const UNLIMITED: FaultBudget = FaultBudget {
        message_loss: true,
        message_duplication: true,
        message_reordering: true,
        partitions: true,
        pauses: true,
        clock_skew: true,
        crashes: CrashBudget::Unlimited,
    };
}

/// The fixed primary of remote-write clusters the simulator builds.
pub const REMOTE_WRITE_PRIMARY: ReplicaId = ReplicaId(0);

impl SimProtocol {
    pub const ALL: [SimProtocol; 3] = [SimProtocol::RemoteWrite, SimProtocol::LocalWrite, SimProtocol::Vr];

    pub fn name(self) -> &'static str {
        match self {
            SimProtocol::RemoteWrite => "remote-write",
            SimProtocol::LocalWrite => "local-write",
            SimProtocol::Vr => "vr",
        }
    }

    /// The core's protocol configuration.
    pub fn kind(self) -> ProtocolKind {
        match self {
            SimProtocol::RemoteWrite => ProtocolKind::RemoteWrite { primary: REMOTE_WRITE_PRIMARY },
            SimProtocol::LocalWrite => ProtocolKind::LocalWrite,
            SimProtocol::Vr => ProtocolKind::Vr,
        }
    }

    /// Whether half of the seeds give this protocol's replicas disks, with which
    /// crashes of any replica, and of every replica at once, are inside its model.
    pub fn has_disks(self) -> bool {
        matches!(self, SimProtocol::Vr | SimProtocol::RemoteWrite | SimProtocol::LocalWrite)
    }

    /// What the protocol's fault model tolerates (see each protocol's module docs in core).
    pub fn fault_budget(self) -> FaultBudget {
        let network_and_time = FaultBudget {
            message_loss: true,
            message_duplication: true,
            message_reordering: true,
            partitions: true,
            pauses: true,
            clock_skew: true,
            crashes: CrashBudget::None,
        };
        match self {
            SimProtocol::RemoteWrite => {
                FaultBudget { crashes: CrashBudget::AllExcept(REMOTE_WRITE_PRIMARY), ..network_and_time }
            }
            SimProtocol::LocalWrite => network_and_time,
            SimProtocol::Vr => FaultBudget { crashes: CrashBudget::Minority, ..network_and_time },
        }
    }
}

impl fmt::Display for SimProtocol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_write_never_crashes_its_primary_inside_the_model() {
        assert_eq!(SimProtocol::RemoteWrite.fault_budget().crashes, CrashBudget::AllExcept(REMOTE_WRITE_PRIMARY));
        assert_eq!(SimProtocol::LocalWrite.fault_budget().crashes, CrashBudget::None);
    }
}
