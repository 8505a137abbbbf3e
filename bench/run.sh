#!/usr/bin/env bash
# Benchmarks a local three-replica vr cluster (release build, separate `noted serve`
# processes on loopback) with `noted bench`: linearizable writes and reads at 1, 16
# and 64 keep-alive connections sent to the primary, as vr clients do; then both at
# 64 connections spread over the three replicas, where a backup forwards each
# request to the primary and relays its answer. Prints one table.
#
#   bench/run.sh                 # 10 s per row
#   DURATION=5 bench/run.sh      # shorter rows
#   NOTED_BIN=path bench/run.sh  # another build of noted (skips cargo build)
#
# Replicas log warnings only: request logs at info cost more than the requests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_cluster

RESULTS="$WORK/results.jsonl"
bench() {
  "$NOTED_BIN" bench --url "$URLS" --mix "$1" --send-to "$2" --connections "$3" \
    --duration "$DURATION" --prefill 1000 --json >>"$RESULTS"
}
for mix in writes reads; do
  for connections in 1 16 64; do bench "$mix" primary "$connections"; done
done
for mix in writes reads; do bench "$mix" all 64; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" <<'PY'
import json, sys
print(f"{'mix':<8} {'to':<8} {'conns':>5} {'ops/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'failed':>6}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    s, l = r["settings"], r["latency_us"]
    mix = "writes" if "create" in s["mix"] else "reads"
    ms = lambda key: l[key] / 1000
    print(f"{mix:<8} {s['send_to']:<8} {s['connections']:>5} {r['per_second']:>9.0f} {ms('p50'):>7.2f} {ms('p90'):>7.2f} "
          f"{ms('p99'):>7.2f} {ms('p999'):>8.2f} {ms('max'):>7.2f} {r['failed']:>6}")
PY
