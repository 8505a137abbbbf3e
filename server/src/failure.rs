//! Why `noted` stopped, and the exit status that tells scripts which kind of stop it was.

/// An error that ends the process, with its exit status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

impl Failure {
    /// Any other error: bad arguments or cluster file, a port in use, ...
    pub const GENERAL: u8 = 2;
    /// The data directory is not this replica's: another cluster's or replica's, a
    /// cluster of another size, a format version this release does not read, no
    /// intact superblock, or unreadable.
    pub const DATA_DIR_REFUSED: u8 = 4;
    /// Another process holds the data directory's lock.
    pub const LOCKED: u8 = 5;
    /// A write or sync to the data directory failed while the replica ran: it
    /// stopped, and recovers from its disk and its peers when started again.
    pub const STORAGE_FAILED: u8 = 6;

    pub fn general(message: impl Into<String>) -> Failure {
        Failure { exit_code: Failure::GENERAL, message: message.into() }
    }

    pub fn data_dir(message: impl Into<String>) -> Failure {
        Failure { exit_code: Failure::DATA_DIR_REFUSED, message: message.into() }
    }

    pub fn locked(message: impl Into<String>) -> Failure {
        Failure { exit_code: Failure::LOCKED, message: message.into() }
    }

    pub fn storage_failed(message: impl Into<String>) -> Failure {
        Failure { exit_code: Failure::STORAGE_FAILED, message: message.into() }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::general(message)
    }
}
