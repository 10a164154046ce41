#!/usr/bin/env bash
# pzdns-only scenarios of the performance issue, on loopback, server pinned
# to CPU 0 and dnsperf to CPU 1 (docs/PERFORMANCE.md):
#
#   bench/scenarios.sh            # ~3 min; needs dnsperf, python3, taskset
#
# 1. selection cost: the same 10,000 records as 1 VPC × 1 zone and as
#    100 VPCs × 1,000 zones (bench/gen_zones.py), queried from one VPC:
#    saturated qps and server CPU µs/query, which must not grow;
# 2. latency: p50/p99/p99.9 at 50% of the saturated rate, from dnsperf's
#    per-query report (-v), for both data sets.
# Every process started is stopped by PID; nothing leaves loopback.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${PZDNS_BIN:-$root/target/release/pzdns}
out=${OUT:-/tmp/pzdns-scenarios}
dur=${DURATION:-5}
port=${PORT:-5431}
mkdir -p "$out"
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -q)

server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap stop EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run LABEL ZONES_DIR QUERIES [QPS]: one dnsperf run; prints "qps cpu_us_per_query"
run() {
    local label=$1 zones=$2 queries=$3 rate=${4:-}
    local t0 t1 done_q
    t0=$(cpu_ticks "$server_pid")
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -a 127.0.0.1 -d "$queries" -c 4 -q 100 -t 1 -l "$dur" ${rate:+-Q $rate} ${VERBOSE:+-v} \
        >"$out/$label.out" 2>&1
    t1=$(cpu_ticks "$server_pid")
    done_q=$(awk '/Queries completed/{print $3}' "$out/$label.out")
    python3 -c "print(f\"{float('$(awk '/Queries per second/{print $4}' "$out/$label.out")'):.0f} {($t1 - $t0) * 1e4 / $done_q:.2f}\")"
}

start() {
    stop
    taskset -c 0 "$bin" serve --zones "$1" --listen "127.0.0.1:$port" --admin off --workers 1 >"$out/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        dig +short +tries=1 +time=1 -p "$port" @127.0.0.1 -b 127.0.0.1 "$(head -1 "$2" | cut -d' ' -f1)" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "pzdns did not start:"; cat "$out/server.log"; exit 1
}

# Latency percentiles (ms) from dnsperf -v lines: "> NOERROR name type latency"
percentiles() {
    python3 - "$1" <<'PY'
import sys
lat = sorted(float(l.split()[-1]) for l in open(sys.argv[1]) if l.startswith('> '))
if not lat:
    print("- - -"); sys.exit()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{q(0.5):.3f} {q(0.99):.3f} {q(0.999):.3f} {len(lat)}")
PY
}

python3 "$here/gen_zones.py" --records 10000 --zones 1 --vpcs 1 --net 127 --queries 100000 --query-vpc 0 --out "$out/small" >/dev/null
python3 "$here/gen_zones.py" --records 10000 --zones 1000 --vpcs 100 --net 127 --queries 100000 --query-vpc 0 --out "$out/big" >/dev/null

echo "| data | saturated qps | CPU µs/query (saturated) | CPU µs/query @ 50% | p50 ms @ 50% | p99 ms @ 50% | p99.9 ms @ 50% | answers timed |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for set in small big; do
    case $set in small) what="1 VPC × 1 zone, 10,000 records" ;; big) what="100 VPCs × 1,000 zones, 10,000 records" ;; esac
    start "$out/$set" "$out/$set/queries.txt"
    run "$set-warm" "$out/$set" "$out/$set/queries.txt" >/dev/null
    read -r qps cpu < <(run "$set-sat" "$out/$set" "$out/$set/queries.txt")
    half=$((qps / 2))
    read -r _ cpu_half < <(VERBOSE=1 run "$set-half" "$out/$set" "$out/$set/queries.txt" "$half")
    read -r p50 p99 p999 n < <(percentiles "$out/$set-half.out")
    echo "| $what | $qps | $cpu | $cpu_half (at $half qps, dnsperf -v) | $p50 | $p99 | $p999 | $n |"
done
stop
