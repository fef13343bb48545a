#!/usr/bin/env bash
# RSS of alo-node after caching 10,000 values of 100 bytes fetched from an HTTP origin.
#
# Usage: bash benches/rss.sh
#
# 1. Builds the release binary, makes 10,000 files of exactly 100 bytes, serves them with a
#    Python HTTP server on 127.0.0.1.
# 2. Single node: one alo-node with --origin-url and no peers. VmRSS after start, after one
#    warm-up request, and after GET of all 10,000 keys through /api/web/<key>; /stats gives the
#    cache's reported bytes (key + value + a fixed per-entry charge, ENTRY_OVERHEAD = 256).
# 3. Cluster: three alo-node processes with --origin-url and the same --peers; all keys requested
#    through node 1 (about 2/3 are owned by the other nodes and come over the peer protocol).
#
# Everything runs on 127.0.0.1; every process started here is killed on exit. Temporary data
# goes under /tmp. Environment: KEYS (default 10000), VALUE_BYTES (default 100), CLIENTS (8).
set -euo pipefail

KEYS=${KEYS:-10000}
VALUE_BYTES=${VALUE_BYTES:-100}
CLIENTS=${CLIENTS:-8}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release/alo-node"
WORK=$(mktemp -d /tmp/alo-rss.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on, scanning upward from $1 and skipping ports already handed out.
TAKEN=" "
pick_port() {
    local p=$1
    while (( p < $1 + 500 )); do
        if [[ $TAKEN != *" $p "* ]] && ! ss -Htln "sport = :$p" | grep -q .; then
            TAKEN+="$p "
            echo "$p"
            return 0
        fi
        p=$((p + 1))
    done
    echo "no free port from $1" >&2
    return 1
}

wait_http() { # url: wait up to 10 s for an answer
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

stat_of() { # api-port group field.path: one number from /stats
    curl -s --max-time 2 "http://127.0.0.1:$1/stats" |
        python3 -c 'import json,sys
d=json.load(sys.stdin)["groups"][sys.argv[1]]
for p in sys.argv[2].split("."): d=d[p]
print(d)' "$2" "$3"
}

echo "building the release binary..." >&2
(cd "$ROOT" && cargo build --release -q -p alo-node)

# The origin's files: k00000 .. k09999, each exactly VALUE_BYTES bytes.
mkdir -p "$WORK/origin"
python3 - "$WORK/origin" "$KEYS" "$VALUE_BYTES" <<'EOF'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    name = f"k{i:05d}"
    body = (name.encode() * (size // len(name) + 1))[:size]
    with open(os.path.join(d, name), "wb") as f:
        f.write(body)
EOF

ORIGIN_PORT=$(pick_port 18190)
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/origin" "$ORIGIN_PORT" \
    >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ORIGIN_PORT/k00000"

# GETs every key once through one node's API with CLIENTS keep-alive connections; exits non-zero
# if any answer is not 200 with the right length. Bounded: 10,000 requests, 5 s timeout each.
fetch_all() { # api-port
    python3 - "$1" "$KEYS" "$CLIENTS" "$VALUE_BYTES" <<'EOF'
import http.client, sys, threading
port, n, clients, size = (int(a) for a in sys.argv[1:5])
bad = []
def run(part):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(part, n, clients):
        c.request("GET", f"/api/web/k{i:05d}")
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or len(body) != size:
            bad.append((i, r.status, len(body)))
threads = [threading.Thread(target=run, args=(p,)) for p in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
if bad:
    print(f"{len(bad)} bad answers, e.g. {bad[:3]}", file=sys.stderr)
    sys.exit(1)
EOF
}

start_node() { # listen-port api-port [peers]: starts alo-node (a child of this shell), sets NODE_PID
    local args=(--listen "127.0.0.1:$1" --api "127.0.0.1:$2" --origin-url "http://127.0.0.1:$ORIGIN_PORT")
    [[ -n ${3:-} ]] && args+=(--peers "$3")
    "$BIN" "${args[@]}" >"$WORK/node-$1.out" 2>"$WORK/node-$1.log" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
}

fmt() { printf "%'d" "$1"; }

# ---------------------------------------------------------------- single node
L1=$(pick_port 18101)
A1=$(pick_port 19101)
start_node "$L1" "$A1"
N1=$NODE_PID
wait_http "http://127.0.0.1:$A1/healthz"
sleep 1
rss_start=$(rss_kib "$N1")
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$A1/api/web/k00000"
sleep 0.5
rss_warm=$(rss_kib "$N1")
bytes_warm=$(stat_of "$A1" web main_cache.bytes)

t0=$(date +%s.%N)
fetch_all "$A1"
t1=$(date +%s.%N)
sleep 1
rss_after=$(rss_kib "$N1")
hwm_after=$(awk '/^VmHWM:/ {print $2}' "/proc/$N1/status")
items=$(stat_of "$A1" web main_cache.items)
bytes=$(stat_of "$A1" web main_cache.bytes)
local_loads=$(stat_of "$A1" web local_loads)

growth=$(( (rss_after - rss_warm) * 1024 ))
reported=$(( bytes - bytes_warm ))
payload=$(( (items - 1) * (VALUE_BYTES + 6) ))

echo
echo "== single node: $KEYS keys of $VALUE_BYTES bytes via --origin-url ($(rustc --version | cut -d' ' -f1-2), $(date -u +%F))"
echo "fetch of all keys took $(python3 -c "print(f'{$t1-$t0:.2f}')") s; items=$items local_loads=$local_loads"
printf "%-44s %14s\n" "measure" "value"
printf "%-44s %14s\n" "VmRSS after start (KiB)" "$(fmt "$rss_start")"
printf "%-44s %14s\n" "VmRSS after warm-up request (KiB)" "$(fmt "$rss_warm")"
printf "%-44s %14s\n" "VmRSS after all keys (KiB)" "$(fmt "$rss_after")"
printf "%-44s %14s\n" "VmHWM (peak) after all keys (KiB)" "$(fmt "$hwm_after")"
printf "%-44s %14s\n" "RSS growth since warm-up (bytes)" "$(fmt "$growth")"
printf "%-44s %14s\n" "main_cache.bytes reported (total)" "$(fmt "$bytes")"
printf "%-44s %14s\n" "main_cache.bytes growth since warm-up" "$(fmt "$reported")"
printf "%-44s %14s\n" "  of which key+value payload" "$(fmt "$payload")"
printf "%-44s %14s\n" "growth - reported growth (fixed overhead)" "$(fmt $((growth - reported)))"
printf "%-44s %14s\n" "RSS growth / reported growth" "$(python3 -c "print(f'{$growth/$reported:.2f}')")"
printf "%-44s %14s\n" "RSS growth per item (bytes)" "$(( growth / (items - 1) ))"

kill "$N1"; wait "$N1" 2>/dev/null || true

# ---------------------------------------------------------------- three nodes
LP=(); AP=(); NP=()
for i in 1 2 3; do LP+=("$(pick_port $((18100 + i)))"); AP+=("$(pick_port $((19100 + i)))"); done
PEERS="http://127.0.0.1:${LP[0]},http://127.0.0.1:${LP[1]},http://127.0.0.1:${LP[2]}"
for i in 0 1 2; do
    start_node "${LP[$i]}" "${AP[$i]}" "$PEERS"
    NP+=("$NODE_PID")
done
for i in 0 1 2; do wait_http "http://127.0.0.1:${AP[$i]}/healthz"; done
sleep 1
RS=(); RW=(); BW=()
for i in 0 1 2; do RS+=("$(rss_kib "${NP[$i]}")"); done
# One warm-up request per node, each through its own API (a key the node may or may not own).
for i in 0 1 2; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:${AP[$i]}/api/web/k0000$i"; done
sleep 0.5
for i in 0 1 2; do
    RW+=("$(rss_kib "${NP[$i]}")")
    BW+=("$(( $(stat_of "${AP[$i]}" web main_cache.bytes) + $(stat_of "${AP[$i]}" web hot_cache.bytes) ))")
done
t0=$(date +%s.%N)
fetch_all "${AP[0]}"
t1=$(date +%s.%N)
sleep 1

echo
echo "== 3-node cluster: all $KEYS keys requested through node 1 (fetch took $(python3 -c "print(f'{$t1-$t0:.2f}')") s)"
printf "%-6s %10s %10s %10s %12s %8s %10s %8s %12s %12s %7s\n" \
    node "rss0_KiB" "rssW_KiB" "rss1_KiB" "growth_B" "main_it" "main_B" "hot_it" "hot_B" "grow-rep_B" "ratio"
for i in 0 1 2; do
    r1=$(rss_kib "${NP[$i]}")
    mi=$(stat_of "${AP[$i]}" web main_cache.items); mb=$(stat_of "${AP[$i]}" web main_cache.bytes)
    hi=$(stat_of "${AP[$i]}" web hot_cache.items); hb=$(stat_of "${AP[$i]}" web hot_cache.bytes)
    g=$(( (r1 - RW[i]) * 1024 )); rep=$(( mb + hb - BW[i] ))
    ratio=$(python3 -c "print(f'{$g/$rep:.2f}' if $rep else 'n/a')")
    printf "%-6s %10s %10s %10s %12s %8s %10s %8s %12s %12s %7s\n" "$((i + 1))" \
        "$(fmt "${RS[$i]}")" "$(fmt "${RW[$i]}")" "$(fmt "$r1")" "$(fmt "$g")" \
        "$mi" "$(fmt "$mb")" "$hi" "$(fmt "$hb")" "$(fmt $((g - rep)))" "$ratio"
done
echo "(rss0 = after start, rssW = after one warm-up request, rss1 = after all keys;"
echo " growth and reported bytes (main+hot) are measured from the warm-up; ratio = growth / reported growth)"
for i in 0 1 2; do
    echo "node $((i + 1)): gets=$(stat_of "${AP[$i]}" web gets) local_loads=$(stat_of "${AP[$i]}" web local_loads) peer_loads=$(stat_of "${AP[$i]}" web peer_loads) server_requests=$(stat_of "${AP[$i]}" web server_requests) peer_errors=$(stat_of "${AP[$i]}" web peer_errors)"
done
