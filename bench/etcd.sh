#!/usr/bin/env bash
# noted with disk storage beside etcd, in one run on the same disk: three noted vr
# replicas (separate `noted serve` processes, release build) and a three-member
# etcd cluster (Debian's etcd-server, its default fsync'd WAL), each loaded by wrk
# with CONNECTIONS keep-alive connections of single-key writes sent to the leader
# (noted: POST /notes, a create; etcd: POST /v3/kv/put through its JSON gateway).
# Then noted with memory storage, the same way. Prints the disk's measured sync
# latency, and per system: writes/s, p50, p99, and syncs/s of the leader.
#
#   bench/etcd.sh                  # 20 s per system
#   DURATION=10 bench/etcd.sh
#   SYSTEMS="noted-disk" bench/etcd.sh   # a subset, in this order
#
# Needs wrk, etcd and curl; as root it installs what is missing with apt-get.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
SYSTEMS=${SYSTEMS:-etcd noted-disk noted-memory}

install_missing() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "bench/etcd.sh needs ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
    exit 2
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
}
install_missing
cargo build --release --quiet -p noted-server --bin noted --manifest-path "$ROOT/Cargo.toml"
NOTED_BIN=$ROOT/target/release/noted

# Every data directory under one directory of the repository's disk.
mkdir -p "$ROOT/target"
WORK=$(mktemp -d "$ROOT/target/bench-etcd.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

# 4 KiB written and fdatasync'd 200 times in a file on this disk: the median and p99.
sync_latency() {
  python3 - "$WORK/sync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
block = b"x" * 4096
samples = []
for i in range(200):
    os.pwrite(fd, block, i * 4096)
    started = time.perf_counter()
    os.fdatasync(fd)
    samples.append((time.perf_counter() - started) * 1000)
os.close(fd)
samples.sort()
print(f"disk sync latency (4 KiB write + fdatasync, 200 samples): p50 {samples[100]:.3f} ms, p99 {samples[198]:.3f} ms")
PY
}

# wrk against $1 with Lua script $2; writes wrk's report to $3.
load() {
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$2" "$1" >"$3"
}

# The value of a Prometheus counter (summed over its series) at $1/metrics.
counter() {
  curl -fs "$1/metrics" | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { sum += $2 } END { printf "%d\n", sum }'
}

cat >"$WORK/etcd-put.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- key "bench", value: 96 bytes, base64
wrk.body = '{"key":"YmVuY2g=","value":"' .. string.rep("QUJD", 32) .. '"}'
LUA
cat >"$WORK/noted-create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench","body":"' .. string.rep("x", 80) .. '"}'
LUA

RESULTS="$WORK/results"
: >"$RESULTS"
# One result line: name, wrk report, syncs of the leader during the run.
record() {
  python3 - "$1" "$2" "$3" "$DURATION" >>"$RESULTS" <<'PY'
import re, sys
name, report, syncs, duration = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3]), float(sys.argv[4])
def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
p50 = ms(re.search(r"\n\s+50%\s+(\S+)", report).group(1))
p99 = ms(re.search(r"\n\s+99%\s+(\S+)", report).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
errors = re.search(r"Socket errors: (.*)", report)
print(f"{name}\t{rate:.0f}\t{p50:.2f}\t{p99:.2f}\t{syncs / duration:.0f}\t{bad.group(1) if bad else 0}\t{errors.group(1) if errors else 'none'}")
PY
}

sync_latency | tee "$WORK/sync"

# --- etcd: three members on loopback ---
run_etcd() {
  local CLUSTER="" LEADER="" before after status
  for i in 0 1 2; do CLUSTER+="${CLUSTER:+,}m$i=http://127.0.0.1:2380$i"; done
  for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$WORK/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
      --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
      --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token noted-bench \
      --logger zap --log-level warn >"$WORK/etcd-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 100); do
    for i in 0 1 2; do
      status=$(curl -fs -X POST "http://127.0.0.1:2379$i/v3/maintenance/status" -d '{}' 2>/dev/null || true)
      if [[ -n $status ]] && python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s.get("leader") and s["leader"] == s["header"]["member_id"] else 1)' "$status"; then
        LEADER="http://127.0.0.1:2379$i"
      fi
    done
    [[ -n $LEADER ]] && break
    sleep 0.1
  done
  [[ -n $LEADER ]] || { echo "etcd elected no leader; logs in $WORK" >&2; tail "$WORK"/etcd-*.log >&2; exit 1; }
  before=$(counter "$LEADER" etcd_disk_wal_fsync_duration_seconds_count)
  load "$LEADER/v3/kv/put" "$WORK/etcd-put.lua" "$WORK/etcd.wrk"
  after=$(counter "$LEADER" etcd_disk_wal_fsync_duration_seconds_count)
  record "etcd $(etcd --version | awk '/etcd Version/ {print $3}')" "$WORK/etcd.wrk" $((after - before))
  stop_all
}

# --- noted: three `noted serve` processes ---
run_noted() {
  local storage=$1 port_base=$2 dir="$WORK/noted-$1"
  mkdir -p "$dir"
  "$NOTED_BIN" config init --replicas 3 --port-base "$port_base" --out "$dir/cluster.json"
  for id in 0 1 2; do
    if [[ $storage == disk ]]; then
      "$NOTED_BIN" init --config "$dir/cluster.json" --id "$id" --data-dir "$dir/data-$id" >/dev/null
    fi
    RUST_LOG=warn "$NOTED_BIN" serve --config "$dir/cluster.json" --id "$id" --storage "$storage" \
      --data-dir "$dir/data-$id" >"$dir/replica-$id.log" 2>&1 &
    PIDS+=($!)
  done
  local primary=""
  for _ in $(seq 100); do
    for id in 0 1 2; do
      if curl -fs "http://127.0.0.1:$((port_base + id))/status" | grep -q '"role":"primary"'; then
        primary="http://127.0.0.1:$((port_base + id))"
      fi
    done
    [[ -n $primary ]] && break
    sleep 0.1
  done
  [[ -n $primary ]] || { echo "noted elected no primary; logs in $dir" >&2; tail "$dir"/replica-*.log >&2; exit 1; }
  local before after
  before=$(counter "$primary" noted_storage_sync_duration_seconds_count)
  load "$primary/notes" "$WORK/noted-create.lua" "$dir/wrk"
  after=$(counter "$primary" noted_storage_sync_duration_seconds_count)
  record "noted $storage" "$dir/wrk" $((after - before))
  stop_all
}
for system in $SYSTEMS; do
  case $system in
    etcd) run_etcd ;;
    noted-disk) run_noted disk 7601 ;;
    noted-memory) run_noted memory 7651 ;;
    *) echo "unknown system $system (etcd, noted-disk, noted-memory)" >&2; exit 2 ;;
  esac
done

echo "machine: $(nproc) cores; $CONNECTIONS connections, ${DURATION}s each, writes sent to the leader"
python3 - "$RESULTS" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print(f"{'system':<14} {'writes/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'syncs/s':>8} {'non-2xx':>7}  socket errors")
for name, rate, p50, p99, syncs, bad, errors in rows:
    print(f"{name:<14} {rate:>9} {p50:>7} {p99:>7} {syncs:>8} {bad:>7}  {errors}")
etcd = next((row for row in rows if row[0].startswith("etcd")), None)
disk = next((row for row in rows if row[0] == "noted disk"), None)
if etcd and disk:
    print(f"noted disk / etcd: {float(disk[1]) / float(etcd[1]):.1f}x the writes/s, p99 {disk[3]} ms vs {etcd[3]} ms")
PY
