//! A data directory that fills up, on real processes: each replica's directory
//! is a small tmpfs of its own. The primary's fills first: it steps down, the
//! others go on without it, and it takes part again once space returns; then a
//! backup's fills: it takes no prepares until space returns. Clients write
//! throughout, and every acknowledged write is there at the end.
//!
//! Mounting a tmpfs needs root (or `CAP_SYS_ADMIN`): without it the test says so
//! and passes without running.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use noted_tests::checks::metric;
use noted_tests::cluster::copy_directory;
use noted_tests::workload::Workload;
use noted_tests::{Cluster, ClusterOptions, wait_until};
use serde_json::Value;

/// Room on each replica's tmpfs beyond what its directory holds when mounted.
const HEADROOM_BYTES: u64 = 4 << 20;

/// A tmpfs mounted over a directory, keeping what the directory held; unmounted
/// when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn try_over(directory: &Path) -> Result<Tmpfs, String> {
        let saved = directory.with_extension("before-tmpfs");
        copy_directory(directory, &saved);
        let size = directory_bytes(&saved) + HEADROOM_BYTES;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "noted-test"])
            .arg(directory)
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        let mounted = Tmpfs { path: directory.to_path_buf() };
        copy_directory(&saved, directory);
        fs::remove_dir_all(&saved).expect("remove the copy");
        Ok(mounted)
    }

    /// Writes a file until the tmpfs is full; removing it gives the room back.
    fn fill(&self) -> PathBuf {
        let path = self.path.join("filler");
        let mut file = fs::File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        let mut byte = [0u8; 1];
        while file.write_all(&byte).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: the replica may still hold files open until the cluster stops it.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn directory_bytes(directory: &Path) -> u64 {
    fs::read_dir(directory)
        .expect("read the directory")
        .map(|entry| entry.expect("an entry").metadata().expect("metadata").len())
        .sum()
}

fn stall_reason(cluster: &Cluster, replica: usize) -> Option<String> {
    let status = cluster.status(replica)?;
    status["storage"]["stalled"].as_str().map(str::to_string)
}

fn applied(cluster: &Cluster, replica: usize) -> u64 {
    cluster.status(replica).and_then(|status| status["applied"].as_u64()).unwrap_or(0)
}

/// Fills `replica`'s disk while clients write; checks that it stalls and steps
/// aside, that writes go on without it, and that it catches up once the room is back.
fn fill_and_free(cluster: &Cluster, mounts: &[Tmpfs], replica: usize, writes_so_far: &dyn Fn() -> u64) {
    let filler = mounts[replica].fill();
    wait_until("the replica to find its disk full", Duration::from_secs(30), || {
        stall_reason(cluster, replica).is_some()
    });
    wait_until("the full replica not to lead", Duration::from_secs(30), || {
        cluster.role(replica).as_deref() != Some("primary")
    });
    assert_eq!(metric(cluster, replica, "noted_storage_stalled"), 1);
    let before = writes_so_far();
    wait_until("writes to go on without the full replica", Duration::from_secs(30), || writes_so_far() >= before + 40);
    assert!(stall_reason(cluster, replica).is_some(), "still full while the others go on");
    let log = cluster.log_of(replica);
    assert!(log.contains("the data directory takes no writes"), "the stall is logged:\n{log}");

    fs::remove_file(filler).expect("remove the filler");
    wait_until("the replica to take writes again", Duration::from_secs(30), || {
        stall_reason(cluster, replica).is_none()
    });
    assert_eq!(metric(cluster, replica, "noted_storage_stalled"), 0);
    let primary = cluster.primary().expect("a primary");
    let target = applied(cluster, primary);
    wait_until("the replica to catch up", Duration::from_secs(30), || applied(cluster, replica) >= target);
    let log = cluster.log_of(replica);
    assert!(log.contains("the data directory takes writes again"), "the return is logged:\n{log}");
}

#[test]
fn a_replica_whose_disk_fills_steps_aside_and_takes_part_again_when_space_returns() {
    let mut cluster = Cluster::start(ClusterOptions::vr_on_disk());
    cluster.kill_all_at_once();
    let mut mounts = Vec::new();
    for replica in 0..cluster.replica_count() {
        match Tmpfs::try_over(&cluster.data_dir(replica)) {
            Ok(mount) => mounts.push(mount),
            Err(error) => {
                eprintln!("skipped: this test mounts a tmpfs, which needs root or CAP_SYS_ADMIN ({error})");
                return;
            }
        }
    }
    for replica in 0..cluster.replica_count() {
        cluster.restart(replica);
    }
    cluster.wait_until_serving();
    let urls: Vec<String> = (0..cluster.replica_count()).map(|replica| cluster.url(replica)).collect();
    let seed = 43;
    let workload =
        Workload::new(urls, "noted-tests disk_full: the primary's then a backup's disk fills up and empties");
    let clients = workload.spawn_clients(4, seed);
    let writes_so_far = || workload.highest_id.load(Ordering::Relaxed);
    wait_until("the workload to get going", Duration::from_secs(30), || writes_so_far() >= 30);

    let primary = cluster.primary().expect("a primary");
    fill_and_free(&cluster, &mounts, primary, &writes_so_far);
    let primary = cluster.primary().expect("a primary");
    let backup = (primary + 1) % cluster.replica_count();
    fill_and_free(&cluster, &mounts, backup, &writes_so_far);
    let dropped: Value = cluster.status(backup).expect("status")["messages_dropped"].clone();
    assert!(dropped.as_u64().unwrap_or(0) > 0, "the full backup dropped the prepares it could not write");

    workload.finish_and_check(&cluster, clients, seed);
    drop(mounts);
}
