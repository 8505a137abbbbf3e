//! Counters and histograms of one replica, rendered in the Prometheus text format.
//!
//! A mutex around ordered maps is plenty at the rates one replica sees, and keeps
//! the output sorted and the code free of a metrics framework. Labels on the
//! per-request and per-message paths are static strings and replica numbers, so
//! counting allocates nothing once a series exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the request latency buckets, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<MetricsState>,
}

#[derive(Debug, Default)]
struct MetricsState {
    /// (route, method, status) -> requests.
    http_requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    http_latency: BTreeMap<&'static str, Histogram>,
    /// (peer, kind) -> frames.
    peer_sent: BTreeMap<(u8, &'static str), u64>,
    peer_received: BTreeMap<(u8, &'static str), u64>,
    /// (peer, kind) -> bytes of frames, as sent and as received.
    peer_sent_bytes: BTreeMap<(u8, &'static str), u64>,
    peer_received_bytes: BTreeMap<(u8, &'static str), u64>,
    /// (stage, reason) -> frames: `transport` (queue overflow, injected faults, failed
    /// authentication, oversized frames, floods and connections over the per-address
    /// limits) or `core` (refused by the protocol, e.g. of a view it has left).
    peer_dropped: BTreeMap<(String, String), u64>,
    heartbeats_received: u64,
    /// reason -> datagrams dropped: `unknown_sender`, an authentication failure, `malformed`, `replayed`.
    heartbeats_rejected: BTreeMap<&'static str, u64>,
    peer_connections: u64,
    view_changes: u64,
    /// Core events by kind.
    events: BTreeMap<&'static str, u64>,
    storage: StorageState,
}

/// The data directory's side of a replica with disk storage.
#[derive(Debug, Default)]
struct StorageState {
    syncs: u64,
    sync_latency: Histogram,
    bytes_written: u64,
    wal_bytes: Option<u64>,
    checkpoint_bytes: Option<u64>,
    repairs_started: u64,
    repairs_completed: u64,
    /// Why the disk takes no writes now (full, or failing them), while it does not.
    stalled: Option<String>,
    stalls: u64,
}

/// What `/status` reports of the data directory.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StorageReport {
    pub syncs: u64,
    pub sync_seconds_mean: Option<f64>,
    pub bytes_written: u64,
    pub wal_bytes: Option<u64>,
    pub checkpoint_bytes: Option<u64>,
    pub repairs_started: u64,
    pub repairs_completed: u64,
    pub stalled: Option<String>,
    pub stalls: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    bucket_counts: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(self.bucket_counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

impl Metrics {
    fn with<T>(&self, update: impl FnOnce(&mut MetricsState) -> T) -> T {
        // A panic while holding the lock leaves plain counters behind: still usable.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut state)
    }

    pub fn http_request(&self, route: &'static str, method: &'static str, status: u16, latency: Duration) {
        self.with(|state| {
            *state.http_requests.entry((route, method, status)).or_default() += 1;
            state.http_latency.entry(route).or_default().observe(latency.as_secs_f64());
        });
    }

    pub fn peer_sent(&self, peer: u8, kind: &'static str, bytes: usize) {
        self.with(|state| {
            *state.peer_sent.entry((peer, kind)).or_default() += 1;
            *state.peer_sent_bytes.entry((peer, kind)).or_default() += bytes as u64;
        });
    }

    pub fn peer_received(&self, peer: u8, kind: &'static str, bytes: usize) {
        self.with(|state| {
            *state.peer_received.entry((peer, kind)).or_default() += 1;
            *state.peer_received_bytes.entry((peer, kind)).or_default() += bytes as u64;
        });
    }

    pub fn peer_dropped(&self, stage: &str, reason: &str) {
        self.with(|state| *state.peer_dropped.entry((stage.into(), reason.into())).or_default() += 1);
    }

    pub fn heartbeat_received(&self) {
        self.with(|state| state.heartbeats_received += 1);
    }

    pub fn heartbeat_rejected(&self, reason: &'static str) {
        self.with(|state| *state.heartbeats_rejected.entry(reason).or_default() += 1);
    }

    pub fn peer_connected(&self) {
        self.with(|state| state.peer_connections += 1);
    }

    pub fn view_change(&self) {
        self.with(|state| state.view_changes += 1);
    }

    pub fn event(&self, kind: &'static str) {
        self.with(|state| *state.events.entry(kind).or_default() += 1);
    }

    pub fn storage_written(&self, bytes: usize) {
        self.with(|state| state.storage.bytes_written += bytes as u64);
    }

    pub fn storage_synced(&self, latency: Duration, sizes: crate::storage::FileSizes) {
        self.with(|state| {
            state.storage.syncs += 1;
            state.storage.sync_latency.observe(latency.as_secs_f64());
            state.storage.wal_bytes = sizes.wal_bytes.or(state.storage.wal_bytes);
            state.storage.checkpoint_bytes = sizes.checkpoint_bytes.or(state.storage.checkpoint_bytes);
        });
    }

    /// The replica found damage on its disk (`started`) or finished repairing it from its peers.
    pub fn storage_repair(&self, started: bool) {
        self.with(|state| {
            if started {
                state.storage.repairs_started += 1;
            } else {
                state.storage.repairs_completed += 1;
            }
        });
    }

    /// The disk took no write (`Some`: why), or takes them again (`None`).
    pub fn storage_stalled(&self, reason: Option<String>) {
        self.with(|state| {
            if reason.is_some() && state.storage.stalled.is_none() {
                state.storage.stalls += 1;
            }
            state.storage.stalled = reason;
        });
    }

    pub fn storage_report(&self) -> StorageReport {
        self.with(|state| {
            let storage = &state.storage;
            StorageReport {
                syncs: storage.syncs,
                sync_seconds_mean: (storage.syncs > 0)
                    .then(|| storage.sync_latency.sum_seconds / storage.sync_latency.count as f64),
                bytes_written: storage.bytes_written,
                wal_bytes: storage.wal_bytes,
                checkpoint_bytes: storage.checkpoint_bytes,
                repairs_started: storage.repairs_started,
                repairs_completed: storage.repairs_completed,
                stalled: storage.stalled.clone(),
                stalls: storage.stalls,
            }
        })
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.with(|state| {
            let mut out = String::new();
            header(&mut out, "noted_http_requests_total", "counter", "HTTP requests by route, method and status.");
            for ((route, method, status), count) in &state.http_requests {
                let _ = writeln!(
                    out,
                    "noted_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
            header(&mut out, "noted_http_request_duration_seconds", "histogram", "HTTP request latency by route.");
            for (route, histogram) in &state.http_latency {
                let name = "noted_http_request_duration_seconds";
                for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(histogram.bucket_counts) {
                    let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", histogram.count);
                let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", histogram.sum_seconds);
                let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", histogram.count);
            }
            header(&mut out, "noted_peer_messages_sent_total", "counter", "Protocol messages queued for a peer.");
            for ((peer, kind), count) in &state.peer_sent {
                let _ = writeln!(out, "noted_peer_messages_sent_total{{peer=\"{peer}\",kind=\"{kind}\"}} {count}");
            }
            header(&mut out, "noted_peer_messages_received_total", "counter", "Authenticated protocol messages.");
            for ((peer, kind), count) in &state.peer_received {
                let _ = writeln!(out, "noted_peer_messages_received_total{{peer=\"{peer}\",kind=\"{kind}\"}} {count}");
            }
            header(&mut out, "noted_peer_bytes_sent_total", "counter", "Bytes of protocol frames queued for a peer.");
            for ((peer, kind), bytes) in &state.peer_sent_bytes {
                let _ = writeln!(out, "noted_peer_bytes_sent_total{{peer=\"{peer}\",kind=\"{kind}\"}} {bytes}");
            }
            header(&mut out, "noted_peer_bytes_received_total", "counter", "Bytes of authenticated protocol frames.");
            for ((peer, kind), bytes) in &state.peer_received_bytes {
                let _ = writeln!(out, "noted_peer_bytes_received_total{{peer=\"{peer}\",kind=\"{kind}\"}} {bytes}");
            }
            header(
                &mut out,
                "noted_peer_messages_dropped_total",
                "counter",
                "Peer messages dropped, by stage and reason.",
            );
            for ((stage, reason), count) in &state.peer_dropped {
                let _ =
                    writeln!(out, "noted_peer_messages_dropped_total{{stage=\"{stage}\",reason=\"{reason}\"}} {count}");
            }
            header(
                &mut out,
                "noted_heartbeats_rejected_total",
                "counter",
                "Heartbeat datagrams dropped, by reason: from no peer's address, failed authentication, \
                 malformed, or replayed (not newer than the last one of that peer).",
            );
            for (reason, count) in &state.heartbeats_rejected {
                let _ = writeln!(out, "noted_heartbeats_rejected_total{{reason=\"{reason}\"}} {count}");
            }
            for (name, help, value) in [
                ("noted_heartbeats_received_total", "Authenticated heartbeats received.", state.heartbeats_received),
                ("noted_peer_connections_total", "Peer TCP connections established.", state.peer_connections),
                ("noted_view_changes_total", "View changes started by this replica (vr).", state.view_changes),
            ] {
                header(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {value}");
            }
            render_storage(&mut out, &state.storage);
            header(&mut out, "noted_replica_events_total", "counter", "Events reported by the replica's core.");
            for (kind, count) in &state.events {
                let _ = writeln!(out, "noted_replica_events_total{{kind=\"{kind}\"}} {count}");
            }
            out
        })
    }
}

fn render_storage(out: &mut String, storage: &StorageState) {
    let name = "noted_storage_sync_duration_seconds";
    header(out, name, "histogram", "Syncs of the data directory: each covers every write before it (group commit).");
    for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(storage.sync_latency.bucket_counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", storage.sync_latency.count);
    let _ = writeln!(out, "{name}_sum {}", storage.sync_latency.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", storage.sync_latency.count);
    for (name, kind, help, value) in [
        (
            "noted_storage_bytes_written_total",
            "counter",
            "Bytes written to the data directory.",
            Some(storage.bytes_written),
        ),
        ("noted_storage_wal_bytes", "gauge", "Size of the live write-ahead log file.", storage.wal_bytes),
        ("noted_storage_checkpoint_bytes", "gauge", "Size of the live checkpoint file.", storage.checkpoint_bytes),
        (
            "noted_storage_repairs_started_total",
            "counter",
            "Damage found in the data directory at start, to be repaired from the peers.",
            Some(storage.repairs_started),
        ),
        (
            "noted_storage_repairs_completed_total",
            "counter",
            "Repairs of damaged data finished: the replica holds its view's log again.",
            Some(storage.repairs_completed),
        ),
        (
            "noted_storage_stalled",
            "gauge",
            "1 while the data directory takes no writes (full, or failing them): the replica takes no prepares.",
            Some(u64::from(storage.stalled.is_some())),
        ),
        (
            "noted_storage_stalls_total",
            "counter",
            "Times the data directory stopped taking writes.",
            Some(storage.stalls),
        ),
    ] {
        if let Some(value) = value {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.http_request("/notes", "POST", 201, Duration::from_millis(3));
        metrics.peer_dropped("transport", "bad_mac");
        let text = metrics.render();
        assert!(text.contains("noted_http_requests_total{route=\"/notes\",method=\"POST\",status=\"201\"} 1"));
        assert!(text.contains("noted_http_request_duration_seconds_bucket{route=\"/notes\",le=\"0.005\"} 1"));
        assert!(text.contains("noted_http_request_duration_seconds_bucket{route=\"/notes\",le=\"0.001\"} 0"));
        assert!(text.contains("noted_peer_messages_dropped_total{stage=\"transport\",reason=\"bad_mac\"} 1"));
    }
}
