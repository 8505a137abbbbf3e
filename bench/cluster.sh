#!/usr/bin/env bash
# Starts a three-replica vr cluster of `noted serve` processes on loopback and
# waits until it serves. Sourced by run.sh and cpu.sh; stops the replicas on exit.
#   NOTED_BIN   the noted binary (default: target/release/noted, built first)
#   PORT_BASE   first client port (default 7401; peers +100, heartbeats +200)
#   STORAGE     memory (default) or disk: each replica in a data directory under
#               the work directory, created with `noted init`
#   PROTOCOL    vr (default) or remote-write (replica 0 the fixed primary)

if [[ -z ${NOTED_BIN:-} ]]; then
  cargo build --release --quiet -p noted-server --bin noted --manifest-path "$ROOT/Cargo.toml"
fi
NOTED_BIN=${NOTED_BIN:-$ROOT/target/release/noted}
PORT_BASE=${PORT_BASE:-7401}
STORAGE=${STORAGE:-memory}
PROTOCOL=${PROTOCOL:-vr}
WORK=$(mktemp -d)
REPLICA_PIDS=()

stop_cluster() {
  for pid in "${REPLICA_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap stop_cluster EXIT

start_cluster() {
  "$NOTED_BIN" config init --replicas 3 --port-base "$PORT_BASE" --out "$WORK/cluster.json"
  if [[ $PROTOCOL == remote-write ]]; then
    # remote-write keeps its state in memory unless the cluster file says disk.
    python3 - "$WORK/cluster.json" "$STORAGE" <<'PY'
import json, sys
path, storage = sys.argv[1], sys.argv[2]
cluster = json.load(open(path))
cluster.update(protocol="remote-write", primary=0, storage=storage)
json.dump(cluster, open(path, "w"), indent=2)
PY
  elif [[ $PROTOCOL != vr ]]; then
    echo "bench/cluster.sh: PROTOCOL is vr or remote-write, not $PROTOCOL" >&2
    exit 2
  fi
  for id in 0 1 2; do
    if [[ $STORAGE == disk ]]; then
      "$NOTED_BIN" init --config "$WORK/cluster.json" --id "$id" --data-dir "$WORK/data-$id" >/dev/null
    fi
    # Request logs at info cost more than the requests: a benchmark logs warnings only.
    RUST_LOG=${RUST_LOG:-warn} "$NOTED_BIN" serve --config "$WORK/cluster.json" --id "$id" \
      --storage "$STORAGE" --data-dir "$WORK/data-$id" >"$WORK/replica-$id.log" 2>&1 &
    REPLICA_PIDS+=($!)
  done
  URLS="http://127.0.0.1:$PORT_BASE,http://127.0.0.1:$((PORT_BASE + 1)),http://127.0.0.1:$((PORT_BASE + 2))"
  for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$PORT_BASE/status" | grep -q '"role":"primary"' \
      || curl -fs "http://127.0.0.1:$((PORT_BASE + 1))/status" | grep -q '"role":"primary"' \
      || curl -fs "http://127.0.0.1:$((PORT_BASE + 2))/status" | grep -q '"role":"primary"'; then
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not elect a primary; logs in $WORK" >&2
  tail -n 20 "$WORK"/replica-*.log >&2
  exit 1
}
