//! Starting, killing and restarting `noted serve` processes.

use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::NotesClient;
use crate::wait_until;

/// How long a cluster may take to elect a primary (or finish recovering) on a busy machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `noted` binary, built on first use (see the crate documentation).
pub fn noted_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("NOTED_BIN") {
                return PathBuf::from(path);
            }
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "noted-server", "--bin", "noted"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building noted failed");
            // The test executable is target/<profile>/deps/<name>; noted is target/debug/noted.
            let test_executable = std::env::current_exe().expect("the test knows its own path");
            let target = test_executable.ancestors().nth(3).expect("target directory");
            let binary = target.join("debug").join(format!("noted{}", std::env::consts::EXE_SUFFIX));
            assert!(binary.exists(), "noted was built but is not at {}", binary.display());
            binary
        })
        .clone()
}

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `vr`, `remote-write` or `local-write`.
    pub protocol: &'static str,
    /// remote-write: the fixed primary.
    pub primary: Option<u8>,
    pub replicas: u8,
    pub request_timeout_ms: u64,
    /// Test-only transport faults, e.g. `{"loss": 0.1, "delay_ms": 5}`.
    pub test_faults: Option<Value>,
    /// How long a client may take to send request headers; the server's default when `None`.
    pub header_read_timeout_ms: Option<u64>,
    /// Each replica on its own loopback address, 127.0.0.(id + 1), so that firewall
    /// rules can tell replicas apart (replicas dial their peers from that address).
    pub address_per_replica: bool,
    /// More fields of the cluster file, e.g. `{"allowed_origins": ["https://app.example"]}`.
    pub extra_config: Option<Value>,
    /// More command-line arguments of one replica's `noted serve`.
    pub replica_args: Vec<(u8, Vec<String>)>,
    /// `"memory"` or `"disk"`: with disk, each replica's data directory is created
    /// with `noted init` before its first start and kept across restarts.
    pub storage: &'static str,
    /// Disk storage: start from a copy of this dev cluster's data directory
    /// (`cluster.json` and `replica-<id>/`, as `noted dev --data-dir` leaves it),
    /// with its cluster id and secret, instead of `noted init`.
    pub data_from: Option<PathBuf>,
}

impl ClusterOptions {
    pub fn vr() -> ClusterOptions {
        ClusterOptions {
            protocol: "vr",
            primary: None,
            replicas: 3,
            request_timeout_ms: 2_000,
            test_faults: None,
            header_read_timeout_ms: None,
            address_per_replica: false,
            extra_config: None,
            replica_args: Vec::new(),
            storage: "memory",
            data_from: None,
        }
    }

    /// vr with disk storage.
    pub fn vr_on_disk() -> ClusterOptions {
        ClusterOptions { storage: "disk", ..ClusterOptions::vr() }
    }

    pub fn local_write() -> ClusterOptions {
        ClusterOptions { protocol: "local-write", ..ClusterOptions::vr() }
    }

    pub fn remote_write() -> ClusterOptions {
        ClusterOptions { protocol: "remote-write", primary: Some(0), ..ClusterOptions::vr() }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub heartbeat: SocketAddr,
}

/// A cluster of `noted serve` processes; dropping it kills them all.
#[derive(Debug)]
pub struct Cluster {
    pub options: ClusterOptions,
    pub directory: PathBuf,
    pub config_path: PathBuf,
    pub cluster_id: u64,
    pub secret: String,
    pub addresses: Vec<Addresses>,
    processes: Vec<Option<Child>>,
    /// Keep the directory (logs, histories) when dropped; it is also kept after a panic.
    pub keep_files: bool,
}

/// Ports chosen by the OS: every socket is held until all are chosen, so they are
/// distinct, then released for `noted` to bind. Another process could take one in
/// between; [`Cluster::start`] then starts again with new ports.
fn free_addresses(count: u8, address_per_replica: bool) -> Vec<Addresses> {
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    let mut addresses = Vec::new();
    for replica in 0..count {
        let host = if address_per_replica { replica + 1 } else { 1 };
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
        let client = TcpListener::bind(loopback).expect("bind a loopback port");
        let peer = TcpListener::bind(loopback).expect("bind a loopback port");
        let heartbeat = UdpSocket::bind(loopback).expect("bind a loopback port");
        addresses.push(Addresses {
            client: client.local_addr().expect("bound"),
            peer: peer.local_addr().expect("bound"),
            heartbeat: heartbeat.local_addr().expect("bound"),
        });
        held_tcp.extend([client, peer]);
        held_udp.push(heartbeat);
    }
    addresses
}

/// Copies the files of `from` into a new directory `to`.
pub fn copy_directory(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create a directory");
    for entry in fs::read_dir(from).unwrap_or_else(|error| panic!("cannot read {}: {error}", from.display())) {
        let entry = entry.expect("a directory entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
    }
}

fn fresh_directory() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!("noted-e2e-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let directory = std::env::temp_dir().join(name);
    fs::create_dir_all(&directory).expect("create a temporary directory");
    directory
}

impl Cluster {
    /// Starts every replica and waits until the cluster serves linearizable requests.
    pub fn start(options: ClusterOptions) -> Cluster {
        let binary = noted_binary();
        for attempt in 1..=3 {
            let mut cluster = Cluster::launch(options.clone(), &binary);
            // A replica that exits at once could not bind a port taken in between.
            std::thread::sleep(Duration::from_millis(300));
            if cluster.any_exited() && attempt < 3 {
                continue;
            }
            cluster.wait_until_serving();
            return cluster;
        }
        unreachable!("the last attempt returns or panics")
    }

    fn launch(options: ClusterOptions, binary: &Path) -> Cluster {
        let directory = fresh_directory();
        let addresses = free_addresses(options.replicas, options.address_per_replica);
        let (cluster_id, secret) = match &options.data_from {
            Some(data) => {
                let text = fs::read_to_string(data.join("cluster.json")).expect("the data's cluster.json");
                let file: Value = serde_json::from_str(&text).expect("cluster.json is JSON");
                (
                    file["cluster"].as_u64().expect("a cluster id"),
                    file["secret"].as_str().expect("a secret").to_string(),
                )
            }
            None => (rand::random::<u32>().into(), format!("e2e-secret-{}", rand::random::<u64>())),
        };
        let mut file = json!({
            "cluster": cluster_id,
            "protocol": options.protocol,
            "secret": secret,
            "replicas": addresses.iter().map(|addresses| json!({
                "client": addresses.client, "peer": addresses.peer, "heartbeat": addresses.heartbeat,
            })).collect::<Vec<_>>(),
            "request_timeout_ms": options.request_timeout_ms,
            "storage": options.storage,
        });
        if let Some(primary) = options.primary {
            file["primary"] = primary.into();
        }
        if let Some(faults) = &options.test_faults {
            file["test_faults"] = faults.clone();
        }
        if let Some(timeout) = options.header_read_timeout_ms {
            file["header_read_timeout_ms"] = timeout.into();
        }
        if let Some(Value::Object(extra)) = &options.extra_config {
            for (field, value) in extra {
                file[field] = value.clone();
            }
        }
        let config_path = directory.join("cluster.json");
        fs::write(&config_path, serde_json::to_string_pretty(&file).expect("json")).expect("write the cluster file");
        let mut cluster = Cluster {
            options,
            directory,
            config_path,
            cluster_id,
            secret,
            addresses,
            processes: Vec::new(),
            keep_files: false,
        };
        for replica in 0..cluster.options.replicas {
            match (&cluster.options.data_from, cluster.options.storage) {
                (Some(data), "disk") => {
                    copy_directory(&data.join(format!("replica-{replica}")), &cluster.data_dir(usize::from(replica)));
                }
                (None, "disk") => cluster.init_data_dir(binary, replica),
                _ => {}
            }
            let child = cluster.spawn(binary, replica);
            cluster.processes.push(Some(child));
        }
        cluster
    }

    /// The data directory of `replica` (disk storage).
    pub fn data_dir(&self, replica: usize) -> PathBuf {
        self.directory.join(format!("data-{replica}"))
    }

    fn init_data_dir(&self, binary: &Path, replica: u8) {
        let output = Command::new(binary)
            .args(["init", "--config"])
            .arg(&self.config_path)
            .args(["--id", &replica.to_string(), "--data-dir"])
            .arg(self.data_dir(usize::from(replica)))
            .env_remove("NOTED_DATA_DIR")
            .output()
            .expect("run noted init");
        assert!(output.status.success(), "noted init failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn spawn(&self, binary: &Path, replica: u8) -> Child {
        let log_path = self.directory.join(format!("replica-{replica}.log"));
        let log = OpenOptions::new().create(true).append(true).open(&log_path).expect("open the replica's log");
        let stdout = log.try_clone().expect("clone a file handle");
        let data_dir = (self.options.storage == "disk").then(|| self.data_dir(usize::from(replica)));
        Command::new(binary)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .args(["--id", &replica.to_string()])
            .args(data_dir.iter().flat_map(|dir| [std::ffi::OsStr::new("--data-dir"), dir.as_os_str()]))
            .env_remove("NOTED_DATA_DIR")
            .env_remove("NOTED_STORAGE")
            .args(self.options.replica_args.iter().filter(|(id, _)| *id == replica).flat_map(|(_, args)| args))
            .env("RUST_LOG", "info")
            .env_remove("NOTED_SECRET")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("start noted")
    }

    fn any_exited(&mut self) -> bool {
        self.processes.iter_mut().flatten().any(|child| child.try_wait().ok().flatten().is_some())
    }

    pub fn url(&self, replica: usize) -> String {
        format!("http://{}", self.addresses[replica].client)
    }

    pub fn client(&self, replica: usize) -> NotesClient {
        NotesClient::new(self.url(replica))
    }

    pub fn replica_count(&self) -> usize {
        self.addresses.len()
    }

    /// `/status` of `replica`, or `None` when it does not answer.
    pub fn status(&self, replica: usize) -> Option<Value> {
        let response = self.client(replica).get_path("/status").ok()?;
        (response.status == 200).then_some(response.body)
    }

    pub fn role(&self, replica: usize) -> Option<String> {
        self.status(replica)?.get("role")?.as_str().map(str::to_owned)
    }

    /// The replica that says it is the primary, if exactly one running replica does.
    pub fn primary(&self) -> Option<usize> {
        let primaries: Vec<usize> = (0..self.replica_count())
            .filter(|replica| self.processes[*replica].is_some())
            .filter(|replica| self.role(*replica).as_deref() == Some("primary"))
            .collect();
        (primaries.len() == 1).then(|| primaries[0])
    }

    /// Every running replica takes part (primary or backup) and one is primary;
    /// under local-write, whose primary role is per note, every replica is an owner.
    pub fn wait_until_serving(&self) {
        wait_until("every replica to be primary or backup", READY_TIMEOUT, || {
            let running = (0..self.replica_count()).filter(|replica| self.processes[*replica].is_some());
            let roles: Vec<Option<String>> = running.map(|replica| self.role(replica)).collect();
            let all_owners = roles.iter().all(|role| role.as_deref() == Some("owner"));
            let all_serving = roles.iter().all(|role| matches!(role.as_deref(), Some("primary" | "backup")));
            all_owners || (all_serving && self.primary().is_some())
        });
    }

    /// SIGKILL: the replica loses its memory with no chance to say goodbye.
    pub fn kill(&mut self, replica: usize) {
        if let Some(mut child) = self.processes[replica].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL to every running replica at the same moment (one `kill` of all their
    /// pids), then waits for them to end.
    pub fn kill_all_at_once(&mut self) {
        let pids: Vec<String> = self.processes.iter().flatten().map(|child| child.id().to_string()).collect();
        let status = Command::new("kill").arg("-KILL").args(&pids).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -KILL {pids:?} failed");
        for replica in 0..self.processes.len() {
            self.kill(replica);
        }
    }

    /// Waits up to `timeout` for `replica` to end by itself; its exit code, or
    /// `None` if it still runs (or was killed by a signal).
    pub fn wait_for_exit(&mut self, replica: usize, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(code) = self.exit_code(replica) {
                self.processes[replica] = None;
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// How `replica`'s process ended, once it ended by itself; `None` while it runs.
    pub fn exit_code(&mut self, replica: usize) -> Option<i32> {
        let child = self.processes[replica].as_mut()?;
        child.try_wait().ok().flatten().and_then(|status| status.code())
    }

    /// The process id of `replica`, while it runs.
    pub fn pid(&self, replica: usize) -> Option<u32> {
        self.processes[replica].as_ref().map(Child::id)
    }

    /// SIGSTOP: the replica freezes with its memory and sockets intact.
    pub fn pause(&self, replica: usize) {
        self.signal(replica, "STOP");
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, replica: usize) {
        self.signal(replica, "CONT");
    }

    fn signal(&self, replica: usize, signal: &str) {
        if let Some(pid) = self.pid(replica) {
            let status = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status();
            assert!(status.is_ok_and(|status| status.success()), "kill -{signal} {pid} (replica {replica}) failed");
        }
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns the exit code.
    pub fn terminate(&mut self, replica: usize, timeout: Duration) -> Option<i32> {
        let mut child = self.processes[replica].take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut code = None;
        wait_until("a terminated replica to exit", timeout, || match child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        });
        code
    }

    /// Starts `replica` again, with empty memory (and its data directory, with disk storage).
    pub fn restart(&mut self, replica: usize) {
        assert!(self.processes[replica].is_none(), "replica {replica} is still running");
        let child = self.spawn(&noted_binary(), u8::try_from(replica).expect("small"));
        self.processes[replica] = Some(child);
    }

    pub fn log_of(&self, replica: usize) -> String {
        fs::read_to_string(self.directory.join(format!("replica-{replica}.log"))).unwrap_or_default()
    }

    pub fn save(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.directory.join(name);
        let mut file = File::create(&path).expect("create a file in the test directory");
        std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write");
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in 0..self.processes.len() {
            self.kill(replica);
        }
        if std::thread::panicking() || self.keep_files {
            eprintln!("noted e2e: logs and histories kept in {}", self.directory.display());
        } else {
            let _ = fs::remove_dir_all(&self.directory);
        }
    }
}
