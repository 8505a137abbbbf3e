#!/usr/bin/env bash
# The checker on one large history: a `noted-sim gen-history` history of 600,000 events
# (10 clients, 300,000 operations, 0.2% lists that each show every note, 2% unknown
# outcomes), read and checked by `noted-sim check --json`, which reports the verdict, the
# time and the process's peak resident memory.
#
#   bash bench/checker-large.sh            # TIMEOUT=120 seconds by default
#   SEED=2 CLIENTS=20 TIMEOUT=300 bash bench/checker-large.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${SEED:-1}"
clients="${CLIENTS:-10}"
operations="${OPERATIONS:-300000}"
timeout="${TIMEOUT:-120}"
cargo build --release --locked -p noted-sim >&2
target="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
history="$work/history.jsonl"
"$target/release/noted-sim" gen-history --seed "$seed" --clients "$clients" --operations "$operations" \
  --list-share 0.002 -o "$history"
events=$(($(wc -l <"$history") - 1))
bytes=$(wc -c <"$history")
echo "history: $events events, $bytes bytes (gen-history --seed $seed --clients $clients --operations $operations --list-share 0.002)"
status=0
"$target/release/noted-sim" check --json --timeout "$timeout" "$history" || status=$?
echo
echo "noted-sim check exited $status (0 linearizable, 1 not, 2 undecided, 3 unreadable)"
