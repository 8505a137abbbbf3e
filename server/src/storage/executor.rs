//! Carries out a replica's [`StorageOp`]s on its data directory, on a thread of
//! its own so that the driver never waits for the disk.
//!
//! Operations run in the order the replica gave them. A sync makes every write
//! and removal before it durable (each file written since the last sync, then the
//! directory when files were created or removed), then tells the driver with
//! [`DriverInput::Synced`]. The replica keeps at most one sync in flight, so the
//! writes that arrive while the disk syncs are covered together by the next
//! (group commit); and a sync also covers whatever the driver handed over by the
//! time it starts, so that the replica's next sync often finds nothing left to
//! write and completes without touching the disk.
//!
//! A failed sync is fatal: the executor tells the driver with
//! [`DriverInput::StorageFailed`] and stops; it is never retried, as a failed
//! `fsync` may have dropped dirty pages the kernel will not write again. A failed
//! write, file creation or removal (a full disk, a quota, an I/O error) is
//! retried, in order and with a growing pause, until it goes through: nothing
//! after it runs, and nothing it would have covered is acknowledged meanwhile, as
//! no sync completes. The driver is told when the disk stalls
//! ([`DriverInput::StorageStalled`]) and when it takes writes again
//! ([`DriverInput::StorageResumed`]), so that the replica steps aside meanwhile.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use noted_core::storage::{DiskFile, StorageOp};
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::data_dir::{DataDir, sync_directory};
use crate::driver::DriverInput;
use crate::metrics::Metrics;

/// How the executor treats writes no sync has covered yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unsynced {
    /// Written to the file at once (the kernel's page cache holds them until a sync).
    #[default]
    Written,
    /// Test only: held in this process's memory until a sync covers them, so that
    /// killing the process loses them as a power cut loses the page cache.
    HeldInMemory,
}

/// The driver's end: operations go in batches, in order.
#[derive(Debug)]
pub struct StorageHandle {
    operations: std_mpsc::Sender<Vec<StorageOp>>,
}

impl StorageHandle {
    /// Hands the operations to the executor; `false` once it stopped (after a failure).
    pub fn submit(&self, operations: Vec<StorageOp>) -> bool {
        operations.is_empty() || self.operations.send(operations).is_ok()
    }
}

/// Starts the executor thread of `dir`; it ends when the handle is dropped.
pub fn spawn(
    dir: DataDir,
    unsynced: Unsynced,
    driver: mpsc::Sender<DriverInput>,
    metrics: Arc<Metrics>,
) -> io::Result<StorageHandle> {
    let (operations, receiver) = std_mpsc::channel();
    let mut executor = Executor {
        dir,
        unsynced,
        files: BTreeMap::new(),
        dirty: BTreeSet::new(),
        directory_dirty: false,
        held: Vec::new(),
        metrics,
        driver: driver.clone(),
        stalled: false,
    };
    let span = tracing::Span::current();
    std::thread::Builder::new().name("noted-storage".into()).spawn(move || {
        let _entered = span.enter();
        let mut queue: VecDeque<StorageOp> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match receiver.recv() {
                    Ok(batch) => queue.extend(batch),
                    Err(_) => return,
                }
            }
            let Some(operation) = queue.pop_front() else { continue };
            let done = match operation {
                StorageOp::Sync { id } => {
                    // Whatever the driver handed over meanwhile rides on this sync too:
                    // the replica asks for its next sync only once this one is done,
                    // so its writes would otherwise wait a round trip for the disk.
                    while let Ok(batch) = receiver.try_recv() {
                        queue.extend(batch);
                    }
                    executor.sync_through(id, queue.drain(..).collect())
                }
                other => executor.run(other).map(|()| Vec::new()),
            };
            let ids = match done {
                Ok(ids) => ids,
                Err(Stop::Failed(failure)) => {
                    error!(error = %failure, "storage failed; the replica stops");
                    let _ = driver.blocking_send(DriverInput::StorageFailed { message: failure });
                    return;
                }
                Err(Stop::DriverGone) => return,
            };
            for id in ids {
                if driver.blocking_send(DriverInput::Synced { id }).is_err() {
                    return;
                }
            }
        }
    })?;
    Ok(StorageHandle { operations })
}

struct Executor {
    dir: DataDir,
    unsynced: Unsynced,
    files: BTreeMap<DiskFile, File>,
    /// Files written since the last sync.
    dirty: BTreeSet<DiskFile>,
    /// A file was created or removed since the last sync.
    directory_dirty: bool,
    /// [`Unsynced::HeldInMemory`]: the writes and removals since the last sync.
    held: Vec<StorageOp>,
    metrics: Arc<Metrics>,
    driver: mpsc::Sender<DriverInput>,
    /// A write is being retried, and the driver was told.
    stalled: bool,
}

/// Why the executor stops.
enum Stop {
    /// A sync failed: fatal for the replica.
    Failed(String),
    /// The driver stopped while a write was being retried.
    DriverGone,
}

/// The first pause before a failed write is tried again, and the longest.
const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(20);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

impl Executor {
    /// Takes a write or removal: applied now, or held until a sync.
    fn run(&mut self, operation: StorageOp) -> Result<(), Stop> {
        if self.unsynced == Unsynced::HeldInMemory {
            self.held.push(operation);
            return Ok(());
        }
        self.apply_until_done(operation)
    }

    /// Sync `id`, covering the operations that followed it too (`later`, in order):
    /// the ids of every sync this completes.
    fn sync_through(&mut self, id: u64, later: Vec<StorageOp>) -> Result<Vec<u64>, Stop> {
        let mut ids = vec![id];
        for held in std::mem::take(&mut self.held) {
            self.apply_until_done(held)?;
        }
        for operation in later {
            match operation {
                StorageOp::Sync { id } => ids.push(id),
                other => self.apply_until_done(other)?,
            }
        }
        self.sync().map_err(Stop::Failed)?;
        Ok(ids)
    }

    /// Applies a write or removal, trying again after each failure: a write that
    /// failed left at most part of its bytes, and rewriting all of them at the
    /// same place is what it was asked to do.
    fn apply_until_done(&mut self, operation: StorageOp) -> Result<(), Stop> {
        let mut pause = RETRY_PAUSE_FIRST;
        let mut attempts: u64 = 0;
        loop {
            match self.apply(&operation) {
                Ok(()) => break,
                Err(reason) => {
                    attempts += 1;
                    if !self.stalled {
                        self.stalled = true;
                        warn!(%reason, "a write to the data directory failed; retrying until it goes through");
                        self.tell(DriverInput::StorageStalled { reason })?;
                    } else if attempts.is_power_of_two() {
                        warn!(%reason, attempts, "a write to the data directory still fails");
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                    if self.driver.is_closed() {
                        return Err(Stop::DriverGone);
                    }
                }
            }
        }
        if std::mem::take(&mut self.stalled) {
            self.tell(DriverInput::StorageResumed)?;
        }
        Ok(())
    }

    fn tell(&self, input: DriverInput) -> Result<(), Stop> {
        self.driver.blocking_send(input).map_err(|_| Stop::DriverGone)
    }

    fn apply(&mut self, operation: &StorageOp) -> Result<(), String> {
        match *operation {
            StorageOp::Write { file, offset, ref bytes } => {
                let handle = self.open(file)?;
                handle
                    .write_all_at(bytes, offset)
                    .map_err(|error| format!("cannot write {} at {offset}: {error}", file.name()))?;
                self.metrics.storage_written(bytes.len());
                self.dirty.insert(file);
                Ok(())
            }
            StorageOp::Remove { file } => {
                self.files.remove(&file);
                self.dirty.remove(&file);
                match std::fs::remove_file(self.dir.path().join(file.name())) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        warn!(file = file.name(), "asked to remove a file that is not there");
                    }
                    Err(error) => return Err(format!("cannot remove {}: {error}", file.name())),
                }
                self.directory_dirty = true;
                Ok(())
            }
            StorageOp::Sync { .. } => unreachable!("syncs are run by `sync_through`"),
        }
    }

    fn open(&mut self, file: DiskFile) -> Result<&File, String> {
        if !self.files.contains_key(&file) {
            let path = self.dir.path().join(file.name());
            let existed = path.exists();
            let handle = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
            self.directory_dirty |= !existed;
            self.files.insert(file, handle);
        }
        Ok(&self.files[&file])
    }

    fn sync(&mut self) -> Result<(), String> {
        if self.dirty.is_empty() && !self.directory_dirty {
            return Ok(()); // An earlier sync covered it all.
        }
        let started = Instant::now();
        for file in std::mem::take(&mut self.dirty) {
            if let Some(handle) = self.files.get(&file) {
                handle.sync_data().map_err(|error| format!("cannot sync {}: {error}", file.name()))?;
            }
        }
        if std::mem::take(&mut self.directory_dirty) {
            sync_directory(self.dir.path())
                .map_err(|error| format!("cannot sync the directory {}: {error}", self.dir.path().display()))?;
        }
        let sizes = self.sizes();
        self.metrics.storage_synced(started.elapsed(), sizes);
        Ok(())
    }

    /// The live log's and checkpoint's sizes: the newest generation of each.
    fn sizes(&self) -> FileSizes {
        let size = |file: Option<&DiskFile>| {
            file.and_then(|file| self.files.get(file)).and_then(|handle| handle.metadata().ok()).map(|meta| meta.len())
        };
        let wal = self.files.keys().rfind(|file| matches!(file, DiskFile::Wal { .. }));
        let checkpoint = self.files.keys().rfind(|file| matches!(file, DiskFile::Checkpoint { .. }));
        FileSizes { wal_bytes: size(wal), checkpoint_bytes: size(checkpoint) }
    }
}

/// Sizes of the live files this process has open (`None` before it wrote one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSizes {
    pub wal_bytes: Option<u64>,
    pub checkpoint_bytes: Option<u64>,
}
