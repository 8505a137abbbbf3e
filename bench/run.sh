#!/usr/bin/env bash
# Benchmarks a local three-replica vr cluster (release build, separate `noted serve`
# processes on loopback) with `noted bench`: linearizable writes and reads at 1, 16
# and 64 keep-alive connections, spread over the three replicas; prints one table.
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
for mix in writes reads; do
  for connections in 1 16 64; do
    "$NOTED_BIN" bench --url "$URLS" --mix "$mix" --connections "$connections" \
      --duration "$DURATION" --prefill 1000 --json >>"$RESULTS"
  done
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" <<'PY'
import json, sys
print(f"{'mix':<8} {'conns':>5} {'ops/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'failed':>6}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    s, l = r["settings"], r["latency_us"]
    mix = "writes" if "create" in s["mix"] else "reads"
    ms = lambda key: l[key] / 1000
    print(f"{mix:<8} {s['connections']:>5} {r['per_second']:>9.0f} {ms('p50'):>7.2f} {ms('p90'):>7.2f} "
          f"{ms('p99'):>7.2f} {ms('p999'):>8.2f} {ms('max'):>7.2f} {r['failed']:>6}")
PY
