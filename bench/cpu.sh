#!/usr/bin/env bash
# Server CPU time per operation: starts the same cluster as run.sh, runs
# `noted bench --operations N`, and divides the CPU time the three replicas used
# (user + system, from /proc) by N. Unlike throughput, this hardly depends on
# what else the machine is doing.
#
#   bench/cpu.sh                     # writes and reads, 40,000 operations each, 64 connections
#   OPERATIONS=10000 bench/cpu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OPERATIONS=${OPERATIONS:-40000}
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
start_cluster

cpu_ticks() {
  local total=0 fields
  for pid in "${REPLICA_PIDS[@]}"; do
    read -ra fields <"/proc/$pid/stat"
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}

ticks_per_second=$(getconf CLK_TCK)
for mix in writes reads; do
  before=$(cpu_ticks)
  "$NOTED_BIN" bench --url "$URLS" --mix "$mix" --connections 64 --operations "$OPERATIONS" --prefill 1000 \
    --json >/dev/null
  after=$(cpu_ticks)
  echo "$mix: $(((after - before) * 1000000 / ticks_per_second / OPERATIONS)) µs of server CPU per operation ($OPERATIONS operations, 64 connections)"
done
