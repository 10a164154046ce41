#!/usr/bin/env bash
# Routed answers beside plain ones (issue #30): one pzdns pinned to
# SERVER_CPU, one worker; dnsperf on CLIENT_CPU sends the same fixed rate
# of queries for
#   plain:    a name with two A records (no routing)
#   weighted: a name with two A records weighted 80/20 (one per answer)
#   health:   a name with two A records health-checked (tcp, to a
#             loopback listener that this script holds open)
# and reports CPU µs per answered query (the process's utime+stime over
# the run / answered) for each, and the ratio to plain.
#
#   bash bench/routing.sh                      # target/release/pzdns
#   PZDNS_BIN=/tmp/old/pzdns bash bench/routing.sh
#
# Everything stays on loopback; every process started is stopped by its
# PID, also on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
DURATION=${DURATION:-10}
RATE=${RATE:-40000}
REPS=${REPS:-3}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
OUT=${OUT:-/tmp/pzdns-routing}
PORT=5390 HC_PORT=5391
[ -x "$bin" ] || { echo "no pzdns binary at $bin: cargo build --release first" >&2; exit 1; }
command -v dnsperf >/dev/null || { echo "dnsperf is needed (apt-get install dnsperf)" >&2; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT/zones"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The health checks' target: a listener on 127.0.0.1 that accepts and
# closes (127.0.0.2's check is refused: one healthy, one not, as in life).
python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $HC_PORT)); s.listen(128)
while True:
    c, _ = s.accept(); c.close()
" &
pids+=($!)

printf 'vpcs:\n  - { id: vpc-bench, cidrs: [127.0.0.1/32] }\n' >"$OUT/zones/vpcs.yaml"
cat >"$OUT/zones/bench.internal.yaml" <<Z
zone: bench.internal
vpcs: [vpc-bench]
records:
  - { name: plain,    type: A, value: [10.0.0.1, 10.0.0.2] }
  - { name: weighted, type: A, value: 10.0.0.1, weight: 80 }
  - { name: weighted, type: A, value: 10.0.0.2, weight: 20 }
  - { name: health,   type: A, value: [127.0.0.1, 127.0.0.2], health: tcp/$HC_PORT }
Z
cat >"$OUT/pzdns.yaml" <<C
listen:
  - address: 127.0.0.1:$PORT
upstreams: []
zones_dir: zones
admin:
  listen: "off"
health_checks: { interval: 1s, timeout: 500ms }
C
taskset -c "$SERVER_CPU" "$bin" serve --config "$OUT/pzdns.yaml" --workers 1 >"$OUT/pzdns.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do
    dig +short +tries=1 +time=1 -p $PORT @127.0.0.1 plain.bench.internal A 2>/dev/null | grep -q 10.0.0 && break
    sleep 0.1
done
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# measure NAME -> "cpu_us_per_query answered"
measure() {
    local f="$OUT/$1.txt"
    for _ in $(seq 1000); do echo "$1.bench.internal A"; done >"$f"
    local t0 t1; t0=$(cpu_ticks "$pid")
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p $PORT -d "$f" -l "$DURATION" -Q "$RATE" -q 200 -t 2 >"$OUT/$1.out" 2>&1
    t1=$(cpu_ticks "$pid")
    local n; n=$(awk '/Queries completed:/ { print $3 }' "$OUT/$1.out")
    awk -v d="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.3f %d\n", d * 1e6 / hz / (n > 0 ? n : 1), n }'
}
measure plain >/dev/null # warm
echo "routed answers beside plain ones, one core, one worker, $RATE qps offered for $DURATION s, $REPS rounds ($(date -u +%FT%TZ))"
echo "| round | plain µs/q | weighted µs/q (÷ plain) | health µs/q (÷ plain) |"
echo "|---|---|---|---|"
for r in $(seq "$REPS"); do
    read -r p _ < <(measure plain)
    read -r w _ < <(measure weighted)
    read -r h _ < <(measure health)
    awk -v r="$r" -v p="$p" -v w="$w" -v h="$h" 'BEGIN { printf "| %d | %.3f | %.3f (%.3f) | %.3f (%.3f) |\n", r, p, w, w / p, h, h / p }'
done
