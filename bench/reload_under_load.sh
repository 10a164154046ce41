#!/usr/bin/env bash
# Reload time and query latency while a large zones directory is reloaded
# under load (docs/REFERENCE.md#reload: no query lost during a reload):
#
#   bench/reload_under_load.sh [RECORDS] [QPS]      # defaults: 100000 20000
#
# pzdns (release, 1 worker) is pinned to CPU 0 together with its reload
# thread, dnsperf to CPU 1. Two dnsperf runs at the same fixed rate: one
# quiet, one with a POST /reload every 3 s. Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
records=${1:-100000}
qps=${2:-20000}
work=${WORK:-/tmp/pzdns-reload-bench}
bin=$here/../target/release/pzdns
command -v dnsperf >/dev/null || { echo "needs dnsperf (apt-get install dnsperf)"; exit 1; }
[ -x "$bin" ] || (cd "$here/.." && cargo build --release --locked -q)
rm -rf "$work" && mkdir -p "$work"
python3 "$here/gen_zones.py" --records "$records" --zones 10 --vpcs 1 --net 127 --queries 100000 --out "$work/zones"
port=5391 admin=127.0.0.1:9191
taskset -c 0 "$bin" serve --zones "$work/zones" --listen 127.0.0.1:$port --admin $admin --upstream 127.0.0.1:9 --workers 1 \
    --ready-file "$work/ready" 2>"$work/pzdns.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { cat "$work/pzdns.log"; exit 1; }
run() {
    taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/zones/queries.txt" -c 4 -q 100 -t 1 -l 12 -Q "$qps" >"$work/$1.out" 2>&1
}
report() {
    printf '%-10s %s | %s | %s\n' "$1" "$(grep -m1 'Queries sent' "$work/$1.out" | xargs)" \
        "$(grep -m1 'Queries lost' "$work/$1.out" | xargs)" "$(grep -m1 'Average Latency' "$work/$1.out" | xargs)"
}
run quiet
run reloading & perf=$!
reload_ms=()
for _ in 1 2 3; do
    sleep 3
    t0=$(date +%s%N)
    curl -s -XPOST "http://$admin/reload" >/dev/null
    reload_ms+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
wait $perf
echo "pzdns $(${bin} --version | awk '{print $2}'), $records records in 10 zone files, $qps qps offered"
report quiet
report reloading
echo "reload (POST /reload round trip, load + swap): ${reload_ms[*]} ms"
grep -o '"load_ms":[0-9]*' <(curl -s "http://$admin/zones") | sed 's/"load_ms":/last load_ms from \/zones: /'
