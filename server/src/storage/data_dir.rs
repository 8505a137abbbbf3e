//! A replica's data directory on the host's file system: locked by one process at
//! a time, read whole at start, formatted once when a cluster is created.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use noted_core::storage::{DiskFile, DiskImage};

use crate::failure::Failure;

/// The lock file: held with an exclusive advisory lock while a process uses the directory.
pub const LOCK_FILE: &str = "LOCK";

/// A data directory this process holds the lock of. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held for the lock; closed (and unlocked) when the directory is dropped.
    _lock: File,
}

impl DataDir {
    /// Creates the directory if it does not exist and locks it: a second process
    /// on the same directory is refused (two replicas writing one log would each
    /// overwrite what the other promised).
    pub fn lock(path: &Path) -> Result<DataDir, Failure> {
        fs::create_dir_all(path).map_err(|error| {
            Failure::data_dir(format!("cannot create the data directory {}: {error}", path.display()))
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| Failure::data_dir(format!("cannot open {}: {error}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Failure::locked(format!(
                    "the data directory {} is in use by another process (it holds the lock on {LOCK_FILE})",
                    path.display()
                )));
            }
            Err(TryLockError::Error(error)) => {
                return Err(Failure::data_dir(format!("cannot lock {}: {error}", lock_path.display())));
            }
        }
        Ok(DataDir { path: path.to_path_buf(), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every file of the replica's format in the directory, whole. Other names
    /// (the lock, a stray editor backup) are left alone.
    pub fn read_image(&self) -> Result<DiskImage, Failure> {
        let unreadable = |error: io::Error| Failure::data_dir(format!("cannot read {}: {error}", self.path.display()));
        let mut image = DiskImage::new();
        for entry in fs::read_dir(&self.path).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let Some(file) = entry.file_name().to_str().and_then(DiskFile::parse) else { continue };
            let bytes = fs::read(entry.path())
                .map_err(|error| Failure::data_dir(format!("cannot read {}: {error}", entry.path().display())))?;
            image.insert(file, bytes);
        }
        Ok(image)
    }

    /// Whether the directory holds no file of a replica's data (read by name only).
    pub fn is_empty(&self) -> Result<bool, Failure> {
        let unreadable = |error: io::Error| Failure::data_dir(format!("cannot read {}: {error}", self.path.display()));
        for entry in fs::read_dir(&self.path).map_err(unreadable)? {
            if entry.map_err(unreadable)?.file_name().to_str().and_then(DiskFile::parse).is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes a new replica's files (see [`noted_core::storage::format`]), each
    /// synced, then the directory: only then does the cluster exist.
    pub fn format(&self, files: Vec<(DiskFile, Vec<u8>)>) -> Result<(), Failure> {
        if !self.is_empty()? {
            return Err(Failure::data_dir(format!(
                "{} already holds a replica's data: a cluster is created only once",
                self.path.display()
            )));
        }
        // Superblocks last: a directory interrupted before them reads as unformatted.
        let (superblocks, others): (Vec<_>, Vec<_>) =
            files.into_iter().partition(|(file, _)| matches!(file, DiskFile::Superblock { .. }));
        for (file, bytes) in others.into_iter().chain(superblocks) {
            let path = self.path.join(file.name());
            let written = File::create(&path).and_then(|mut handle| {
                handle.write_all(&bytes)?;
                handle.sync_all()
            });
            written.map_err(|error| Failure::data_dir(format!("cannot write {}: {error}", path.display())))?;
            sync_directory(&self.path)
                .map_err(|error| Failure::data_dir(format!("cannot sync {}: {error}", self.path.display())))?;
        }
        Ok(())
    }
}

/// Makes the directory's entries (files created, renamed or removed) durable.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("noted-data-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let path = scratch("lock");
        let first = DataDir::lock(&path).unwrap();
        let second = DataDir::lock(&path).unwrap_err();
        assert_eq!(second.exit_code, Failure::LOCKED, "{second}");
        drop(first);
        DataDir::lock(&path).unwrap();
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_formatted_directory_reads_back_and_is_not_formatted_twice() {
        let path = scratch("format");
        let dir = DataDir::lock(&path).unwrap();
        assert!(dir.is_empty().unwrap());
        let config = noted_core::Config::new(
            noted_core::ClusterId(7),
            noted_core::ReplicaId(1),
            3,
            noted_core::ProtocolKind::Vr,
            1,
        );
        let files = noted_core::storage::format(&config);
        dir.format(files.clone()).unwrap();
        let image = dir.read_image().unwrap();
        assert_eq!(image, files.into_iter().collect::<DiskImage>());
        let again = dir.format(noted_core::storage::format(&config)).unwrap_err();
        assert!(again.to_string().contains("only once"), "{again}");
        fs::remove_dir_all(&path).unwrap();
    }
}
