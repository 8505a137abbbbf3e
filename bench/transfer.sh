#!/usr/bin/env bash
# Measures state transfer on loopback: fills a three-replica vr cluster (release
# build, separate `noted serve` processes) with SIZE_MIB of notes of about 60 kB,
# SIGKILLs a backup, restarts it with empty memory and times its recovery, which
# fetches the store as a snapshot in chunks. Prints one line.
#
#   bench/transfer.sh                 # a store of 1 GiB
#   SIZE_MIB=64 bench/transfer.sh     # a smaller one
#   NOTED_BIN=path bench/transfer.sh  # another build of noted (skips cargo build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
NOTE_BYTES=60000
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
start_cluster

status() { curl -fs "http://127.0.0.1:$((PORT_BASE + $1))/status" || true; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', ''))" 2>/dev/null || true; }
primary=""
for id in 0 1 2; do
  if [[ $(status "$id" | field role) == primary ]]; then primary=$id; fi
done
backup=$(( (primary + 1) % 3 ))

notes=$(( SIZE_MIB * 1024 * 1024 / NOTE_BYTES + 1 ))
fill_started=$(date +%s.%N)
"$NOTED_BIN" bench --url "http://127.0.0.1:$((PORT_BASE + primary))" --mix create=1 --note-bytes "$NOTE_BYTES" \
  --prefill 0 --operations "$notes" --connections 16 --timeout-ms 30000 --json >"$WORK/fill.json"
fill_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $fill_started:.1f}')")
applied=$(status "$primary" | field applied)

kill -9 "${REPLICA_PIDS[$backup]}"
wait "${REPLICA_PIDS[$backup]}" 2>/dev/null || true
started=$(date +%s.%N)
RUST_LOG=${RUST_LOG:-warn} "$NOTED_BIN" serve --config "$WORK/cluster.json" --id "$backup" \
  --storage "$STORAGE" --data-dir "$WORK/data-$backup" >>"$WORK/replica-$backup.log" 2>&1 &
REPLICA_PIDS[$backup]=$!
until [[ $(status "$backup" | field role) == backup && $(status "$backup" | field applied) -ge $applied ]]; do
  sleep 0.05
done
seconds=$(python3 -c "print(f'{$(date +%s.%N) - $started:.2f}')")
metrics=$(curl -fs "http://127.0.0.1:$((PORT_BASE + backup))/metrics")
chunk_bytes=$(grep '^noted_peer_bytes_received_total{.*kind="snapshot_chunk"' <<<"$metrics" | awk '{s += $2} END {print s + 0}')
chunks=$(grep '^noted_peer_messages_received_total{.*kind="snapshot_chunk"' <<<"$metrics" | awk '{s += $2} END {print s + 0}')
python3 - "$SIZE_MIB" "$notes" "$fill_seconds" "$applied" "$chunk_bytes" "$chunks" "$seconds" <<'PY'
import sys
size, notes, fill, applied, chunk_bytes, chunks, seconds = sys.argv[1:]
mib = int(chunk_bytes) / 2**20
print(f"store of {size} MiB ({notes} notes of 60 kB, written in {fill} s, {applied} operations): "
      f"a restarted backup fetched {mib:.0f} MiB in {chunks} snapshot chunks and recovered "
      f"{seconds} s after it started ({mib / float(seconds):.0f} MiB/s)")
PY
if [[ -n ${KEEP_LOGS:-} ]]; then cp "$WORK"/replica-*.log "$KEEP_LOGS"/; fi
