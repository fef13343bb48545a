#!/usr/bin/env bash
# A three-node alo cluster on loopback whose members come from DNS, in one command:
#   bash examples/dns-cluster.sh
# dnsmasq (Debian: apt-get install dnsmasq-base) serves the SRV record _alo._tcp.cluster.test
# on 127.0.0.1:5353, naming the three nodes' peer ports (127.0.0.1:8101-8103); each node looks
# it up with --peers-dns and serves its client API on 127.0.0.1:9101-9103. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v dnsmasq > /dev/null || { echo "needs dnsmasq (apt-get install dnsmasq-base)" >&2; exit 1; }
cargo build --quiet -p alo-node
bin="${CARGO_TARGET_DIR:-target}/debug/alo-node"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
records=()
for i in 1 2 3; do
    records+=(--srv-host="_alo._tcp.cluster.test,n$i.cluster.test,810$i"
              --host-record="n$i.cluster.test,127.0.0.1")
done
# Answers from the records above only (no upstream, no hosts file), with a TTL of 0.
dnsmasq --keep-in-foreground --port 5353 --listen-address 127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local-ttl 0 "${records[@]}" &
pids+=($!)

for i in 1 2 3; do
    "$bin" --listen "127.0.0.1:810$i" --api "127.0.0.1:910$i" \
        --peers-dns _alo._tcp.cluster.test --peers-dns-server 127.0.0.1:5353 "$@" > /dev/null &
    pids+=($!)
done

# Wait until every node is ready: DNS has named it, with the others.
for i in 1 2 3; do
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:910$i/readyz" > /dev/null && break
        sleep 0.1
    done
done

cat <<'TXT'
Three nodes found each other through DNS. Ask any of them; each key is loaded once, by its owner:
  curl http://127.0.0.1:9101/api/demo/apple
  curl http://127.0.0.1:9102/api/demo/apple
  curl http://127.0.0.1:9103/stats          # "membership": {"source": "DNS _alo._tcp.cluster.test", ...}
Ctrl-C stops the cluster.
TXT
wait
