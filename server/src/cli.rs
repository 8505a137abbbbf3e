//! The command line: `noted` (a dev cluster), `noted serve`, `noted init`, `noted config init`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench::mix::OperationMix;
use crate::peer::faults::TestFaults;
use crate::storage::StorageChoice;

/// noted: a replicated notes store.
///
/// With no command, starts a three-replica cluster in this process on loopback
/// (the same as `noted dev`) and prints where to point curl.
#[derive(Debug, Parser)]
#[command(name = "noted", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr; the level is set with RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NOTED_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole cluster of three replicas in this process on 127.0.0.1, until Ctrl-C.
    Dev(DevArgs),
    /// Run one replica of a cluster described by a cluster file.
    Serve(ServeArgs),
    /// Create a new cluster: write the first state of one replica into its empty
    /// data directory. Run once for each replica of a new cluster (disk storage),
    /// before its first `noted serve`; a replica started on an empty directory
    /// instead recovers its state from its peers.
    Init(DataInitArgs),
    /// Load a running cluster with requests and report throughput and latency percentiles.
    Bench(BenchArgs),
    /// Work with cluster files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// First HTTP port: replicas listen for clients on this port and the next two.
    /// 0 lets the OS choose. Peer and heartbeat ports are always chosen by the OS.
    #[arg(long, default_value_t = 7001, env = "NOTED_HTTP_PORT_BASE")]
    pub http_port_base: u16,
    /// Replication protocol of the dev cluster.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Vr)]
    pub protocol: ProtocolArg,
    /// Test only: drop or delay outgoing peer frames, e.g. `loss=0.1,delay-ms=5`.
    #[arg(long, env = "NOTED_TEST_FAULTS")]
    pub test_faults: Option<TestFaults>,
    /// Where the replicas keep their state: `disk` (vr's default; in --data-dir, so
    /// that stopping and starting the cluster keeps every note) or `memory`.
    #[arg(long, value_enum, env = "NOTED_STORAGE")]
    pub storage: Option<StorageChoice>,
    /// The dev cluster's data: its cluster file and a directory per replica.
    #[arg(long, default_value = "noted-data", env = "NOTED_DATA_DIR")]
    pub data_dir: PathBuf,
}

impl DevArgs {
    /// The dev cluster's arguments when `noted` runs with none: the defaults, and
    /// the `NOTED_*` environment variables.
    pub fn from_environment() -> DevArgs {
        use clap::FromArgMatches as _;
        let command = <DevArgs as Args>::augment_args(clap::Command::new("dev"));
        let matches = command.get_matches_from(["dev"]);
        DevArgs::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// `noted init`: the replica is named as for `noted serve`.
#[derive(Debug, Args)]
pub struct DataInitArgs {
    /// The cluster file (JSON).
    #[arg(long, env = "NOTED_CONFIG")]
    pub config: PathBuf,
    /// This replica's id: its index in the file's `replicas`.
    #[arg(long, env = "NOTED_ID")]
    pub id: u8,
    /// The data directory to create (default `./noted-data/replica-<id>`); it must
    /// be empty or absent.
    #[arg(long, env = "NOTED_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Overrides the file's cluster id.
    #[arg(long, env = "NOTED_CLUSTER_ID")]
    pub cluster_id: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// Viewstamped Replication: survives the crash of any minority of replicas.
    #[default]
    Vr,
    /// Primary-backup with a fixed primary (replica 0 unless --primary says otherwise).
    RemoteWrite,
    /// Primary-backup whose primary role per note moves to the writer.
    LocalWrite,
}

impl ProtocolArg {
    pub fn name(self) -> &'static str {
        match self {
            ProtocolArg::Vr => "vr",
            ProtocolArg::RemoteWrite => "remote-write",
            ProtocolArg::LocalWrite => "local-write",
        }
    }
}

/// Each flag overrides the cluster file; each has a `NOTED_*` environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The cluster file (JSON): see `noted config init` for an example.
    #[arg(long, env = "NOTED_CONFIG")]
    pub config: PathBuf,
    /// This replica's id: its index in the file's `replicas`.
    #[arg(long, env = "NOTED_ID")]
    pub id: u8,
    /// Overrides the file's cluster id.
    #[arg(long, env = "NOTED_CLUSTER_ID")]
    pub cluster_id: Option<u64>,
    /// Overrides the file's shared secret (prefer the environment to the command line).
    #[arg(long, env = "NOTED_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Overrides the file's protocol.
    #[arg(long, value_enum, env = "NOTED_PROTOCOL")]
    pub protocol: Option<ProtocolArg>,
    /// Overrides the file's fixed primary (remote-write).
    #[arg(long, env = "NOTED_PRIMARY")]
    pub primary: Option<u8>,
    /// Overrides the address this replica's HTTP API binds to (e.g. 0.0.0.0:7001);
    /// peers still learn the file's address.
    #[arg(long, env = "NOTED_CLIENT_ADDRESS")]
    pub client_address: Option<SocketAddr>,
    /// Overrides how long a request waits for the cluster before a 503.
    #[arg(long, env = "NOTED_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Overrides the file's storage: `disk` (vr's default) or `memory`.
    #[arg(long, value_enum, env = "NOTED_STORAGE")]
    pub storage: Option<StorageChoice>,
    /// This replica's data directory (disk storage); default `./noted-data/replica-<id>`.
    #[arg(long, env = "NOTED_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Test only: drop or delay outgoing peer frames, e.g. `loss=0.1,delay-ms=5`.
    #[arg(long, env = "NOTED_TEST_FAULTS")]
    pub test_faults: Option<TestFaults>,
    /// Test only: the wire protocol versions this replica offers in its peer
    /// handshakes, e.g. `2-3`, instead of the ones it speaks; frames stay version 1.
    #[arg(long, env = "NOTED_TEST_WIRE_VERSIONS", hide = true)]
    pub test_wire_versions: Option<noted_core::wire::VersionRange>,
}

/// `noted bench`: what load to send where, and what to report.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Replica URLs (http://HOST:PORT), repeated or comma-separated; connections are spread over them.
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_values_t = ["http://127.0.0.1:7001".to_string(), "http://127.0.0.1:7002".to_string(), "http://127.0.0.1:7003".to_string()]
    )]
    pub urls: Vec<String>,
    /// Which of the --url replicas the connections go to: all of them in turn, or
    /// only the one whose /status says it is the primary (as a vr client sends to
    /// the primary of the view; a backup would forward each request to it).
    #[arg(long, value_enum, default_value_t = SendTo::All)]
    pub send_to: SendTo,
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Seconds to measure for (ignored with --operations).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Measure this many operations instead of a duration.
    #[arg(long, short = 'n')]
    pub operations: Option<u64>,
    /// Operation mix: a preset (read-heavy, write-heavy, reads, writes) or weights
    /// like `create=1,get=8,list=1` of create, get, list, replace, patch, delete.
    #[arg(long, default_value = "read-heavy")]
    pub mix: OperationMix,
    /// Approximate size of a note's JSON in bytes.
    #[arg(long, default_value_t = 100)]
    pub note_bytes: usize,
    /// Notes created before measuring, for reads and updates to find.
    #[arg(long, default_value_t = 100)]
    pub prefill: u64,
    /// Consistency of reads.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// A request not answered in this many milliseconds counts as failed (unknown outcome).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Seed of the operation draws (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Record every operation as a lin-history file (meant for runs of modest length).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Check the recorded history with the linearizability checker. Exit status: 0
    /// linearizable, 1 not linearizable, 3 undecided (the checker gave up), 2 the
    /// run itself failed (as for every noted error).
    #[arg(long)]
    pub check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SendTo {
    /// Every --url, round robin over the connections.
    All,
    /// The primary among the --url replicas, found once before the run.
    Primary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Confirmed by a quorum (VR read rounds).
    Linearizable,
    /// Answered by the replica asked, possibly stale.
    Local,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a cluster file for replicas on 127.0.0.1, with a fresh random secret.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Number of replicas.
    #[arg(long, default_value_t = 3)]
    pub replicas: u8,
    /// Replication protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Vr)]
    pub protocol: ProtocolArg,
    /// remote-write: the fixed primary.
    #[arg(long, default_value_t = 0)]
    pub primary: u8,
    /// Client ports count up from here; peer ports from here + 100, heartbeat ports from here + 200.
    #[arg(long, default_value_t = 7001)]
    pub port_base: u16,
    /// The cluster id (random when absent).
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// Where to write the file; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}
