#!/usr/bin/env bash
# A three-node alo cluster on loopback, in one command:  bash examples/cluster.sh
# Peers on 127.0.0.1:8101-8103, client APIs on 127.0.0.1:9101-9103, all serving the demo group
# (or pass origin flags, e.g.  bash examples/cluster.sh --origin-dir ./public ).
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p alo-node
bin=target/debug/alo-node
peers=http://127.0.0.1:8101,http://127.0.0.1:8102,http://127.0.0.1:8103

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
    "$bin" --listen "127.0.0.1:810$i" --api "127.0.0.1:910$i" --peers "$peers" "$@" \
        > /dev/null &
    pids+=($!)
done

# Wait until every client API answers.
for i in 1 2 3; do
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:910$i/healthz" > /dev/null && break
        sleep 0.1
    done
done

cat <<'TXT'
Three nodes are up. Ask any of them; each key is loaded once, by its owner:
  curl http://127.0.0.1:9101/api/demo/apple
  curl http://127.0.0.1:9102/api/demo/apple
  curl http://127.0.0.1:9103/stats
Ctrl-C stops the cluster.
TXT
wait
