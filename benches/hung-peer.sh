#!/usr/bin/env bash
# Throughput of a healthy node while one of its two peers hangs (SIGSTOP), and how fast it
# recovers.
#
# Usage: bash benches/hung-peer.sh            (3 runs with SIGSTOP, then 1 baseline run without)
#        RUNS=1 BASELINE=0 bash benches/hung-peer.sh
#
# Each run starts three fresh alo-node processes (--origin-dir on 10,000 files of 100 bytes, the
# same --peers list, nothing warmed), loads node 1's API with wrk for 15 s (48 connections,
# uniformly random keys, so about 1/3 are owned by node 3), samples node 1's /stats every 250 ms,
# sends SIGSTOP to node 3 at t = 5 s and SIGCONT when wrk is done, then waits (at most 45 s) for
# node 1's peer_health to show node 3 up again. benches/hung_peer.py does the timing and the
# report. Only 127.0.0.1 is used; every process started here is killed on exit.
set -euo pipefail

RUNS=${RUNS:-3}
BASELINE=${BASELINE:-1}
KEYS=${KEYS:-10000}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-48}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN="$ROOT/target/release/alo-node"
WORK=$(mktemp -d /tmp/alo-hung.XXXXXX)
KEEP=${KEEP:-0}   # KEEP=1 leaves $WORK (JSON results and node logs) for a look afterwards
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then echo "results and logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }

TAKEN=" "
pick_port() { # a port nobody listens on, from $1 upward
    local p=$1
    while (( p < $1 + 500 )); do
        if [[ $TAKEN != *" $p "* ]] && ! ss -Htln "sport = :$p" | grep -q .; then
            TAKEN+="$p "; echo "$p"; return 0
        fi
        p=$((p + 1))
    done
    echo "no free port from $1" >&2; return 1
}

wait_http() {
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2; return 1
}

echo "building the release binary..." >&2
(cd "$ROOT" && cargo build --release -q -p alo-node)

mkdir -p "$WORK/origin"
python3 - "$WORK/origin" "$KEYS" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    name = f"k{i:05d}"
    with open(os.path.join(d, name), "wb") as f:
        f.write((name.encode() * 20)[:100])
EOF

LP=(); AP=()
for i in 1 2 3; do LP+=("$(pick_port $((18100 + i)))"); AP+=("$(pick_port $((19100 + i)))"); done
PEERS="http://127.0.0.1:${LP[0]},http://127.0.0.1:${LP[1]},http://127.0.0.1:${LP[2]}"

one_run() { # name [--no-stop]
    local name=$1; shift
    local np=()
    for i in 0 1 2; do
        for _ in $(seq 50); do # the previous run's ports may take a moment to be free
            ss -Htln "sport = :${LP[$i]}" | grep -q . || ss -Htln "sport = :${AP[$i]}" | grep -q . || break
            sleep 0.1
        done
        "$BIN" --listen "127.0.0.1:${LP[$i]}" --api "127.0.0.1:${AP[$i]}" --peers "$PEERS" \
            --origin-dir "$WORK/origin" >"$WORK/$name-node$((i + 1)).out" 2>"$WORK/$name-node$((i + 1)).log" &
        np+=($!); PIDS+=($!)
    done
    for i in 0 1 2; do wait_http "http://127.0.0.1:${AP[$i]}/healthz"; done
    python3 "$HERE/hung_peer.py" run --api1 "${AP[0]}" --node3-pid "${np[2]}" \
        --node3-url "http://127.0.0.1:${LP[2]}" --log1 "$WORK/$name-node1.log" \
        --lua "$HERE/random-key.lua" --out "$WORK/$name.json" --keys "$KEYS" \
        --duration "$DURATION" --connections "$CONNECTIONS" "$@"
    for pid in "${np[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    for pid in "${np[@]}"; do wait "$pid" 2>/dev/null || true; done
    sleep 1
}

FILES=()
for r in $(seq "$RUNS"); do one_run "run$r"; FILES+=("$WORK/run$r.json"); done
if [[ $BASELINE == 1 ]]; then one_run baseline --no-stop; FILES+=("$WORK/baseline.json"); fi

echo
echo "== hung peer: $KEYS keys, wrk -t2 -c$CONNECTIONS -d${DURATION}s on node 1, SIGSTOP node 3 at t=5 s" \
     "($(rustc --version | cut -d' ' -f1-2), $(date -u +%F), $(nproc) cores)"
python3 "$HERE/hung_peer.py" report "${FILES[@]}"
