#!/usr/bin/env bash
# How big a data directory grows: OPERATIONS writes (30% creates, 40% replaces,
# 20% merge patches, 10% deletes) to a three-replica vr cluster with disk storage
# (release build, separate `noted serve` processes), the size of every data
# directory sampled each second meanwhile. Prints the largest sample, the live
# data at the end (the notes' JSON as `GET /notes` returns them, compact), and
# the factor k of "largest <= k x live data + log bound", the log bound being
# twice `limits.log_bytes_max` (the live log may pass it by one batch before a
# checkpoint starts the next, and the old generation is removed only once the
# new one is durable).
#
#   bench/size.sh                      # 1,000,000 writes
#   OPERATIONS=100000 bench/size.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OPERATIONS=${OPERATIONS:-1000000}
LOG_BYTES_MAX=$((32 * 1024 * 1024))
export STORAGE=disk
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
start_cluster

sample_sizes() {
  while true; do
    for id in 0 1 2; do du -sb "$WORK/data-$id" 2>/dev/null | cut -f1; done | sort -n | tail -n 1 >>"$WORK/sizes"
    sleep 1
  done
}
sample_sizes &
SAMPLER=$!
"$NOTED_BIN" bench --url "$URLS" --send-to primary --mix create=3,replace=4,patch=2,delete=1 --connections 64 \
  --operations "$OPERATIONS" --prefill 1000 --json >"$WORK/bench.json"
kill "$SAMPLER"
for id in 0 1 2; do du -sb "$WORK/data-$id" | cut -f1; done | sort -n | tail -n 1 >>"$WORK/sizes"
python3 - "$WORK" "$PORT_BASE" "$LOG_BYTES_MAX" <<'PY'
import json, sys, urllib.request
work, port, log_max = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bench = json.load(open(f"{work}/bench.json"))
live, notes, after = 0, 0, None
while True:
    url = f"http://127.0.0.1:{port}/notes?consistency=local&limit=1000" + (f"&after={after}" if after else "")
    page = json.load(urllib.request.urlopen(url))
    for note in page["notes"]:
        live += len(json.dumps(note, separators=(",", ":")))
        notes += 1
    after = page["next_after"]
    if after is None:
        break
largest = max(int(line) for line in open(f"{work}/sizes") if line.strip())
log_bound = 2 * log_max
k = max(0.0, (largest - log_bound) / live)
print(f"{bench['operations']} writes ({bench['per_second']:.0f}/s); {notes} notes live, {live / 2**20:.1f} MiB of JSON")
print(f"largest data directory seen: {largest / 2**20:.1f} MiB; log bound 2 x {log_max / 2**20:.0f} MiB = {log_bound / 2**20:.0f} MiB")
print(f"largest <= k x live + log bound with k = {k:.2f}")
PY
