#!/usr/bin/env bash
# CPU time per operation: starts the same cluster as run.sh, runs `noted bench
# --operations N` (after its 1,000-note prefill, which is counted too) and divides the CPU time each replica used (user + system, from
# /proc) and the load generator used (from bash's `times`) by N. Unlike
# throughput, this hardly depends on what else the machine is doing.
#
#   bench/cpu.sh                     # writes and reads, 40,000 operations each, 64 connections
#   OPERATIONS=10000 bench/cpu.sh
#   SEND_TO=all bench/cpu.sh         # connections spread over the replicas (default: the primary)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OPERATIONS=${OPERATIONS:-40000}
SEND_TO=${SEND_TO:-primary}
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
start_cluster

ticks_per_second=$(getconf CLK_TCK)
# CPU ticks (user + system) of each replica.
replica_ticks() {
  local fields
  for pid in "${REPLICA_PIDS[@]}"; do
    read -ra fields <"/proc/$pid/stat"
    echo -n "$((fields[13] + fields[14])) "
  done
}
# CPU time of this shell's finished children, in microseconds: `times` (run in
# this shell, not a subshell, whose children would be its own) prints the
# children's user and system time on its second line, like 0m1.250s 0m0.310s.
children_micros() {
  times >"$WORK/times"
  tail -n 1 "$WORK/times" | python3 -c '
import re, sys
print(sum(round((int(m) * 60 + float(s)) * 1e6) for m, s in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read())))'
}
micros_per_operation() { echo "$(($1 / OPERATIONS))"; }

for mix in writes reads; do
  before=($(replica_ticks))
  children_micros >"$WORK/before"
  "$NOTED_BIN" bench --url "$URLS" --send-to "$SEND_TO" --mix "$mix" --connections 64 --operations "$OPERATIONS" \
    --prefill 1000 --json >/dev/null 2>&1
  children_micros >"$WORK/after"
  after=($(replica_ticks))
  total=0 line=""
  for index in "${!REPLICA_PIDS[@]}"; do
    micros=$(((after[index] - before[index]) * 1000000 / ticks_per_second))
    total=$((total + micros))
    line+=" R$index $(micros_per_operation "$micros")"
  done
  generator=$(($(cat "$WORK/after") - $(cat "$WORK/before")))
  echo "$mix (to $SEND_TO): $(micros_per_operation "$total") µs of replica CPU per operation (${line# }), load generator $(micros_per_operation "$generator") µs; $OPERATIONS operations, 64 connections"
done
