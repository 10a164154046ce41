#!/usr/bin/env bash
# Reload time and query latency while a large zones directory is reloaded
# under load (docs/REFERENCE.md#reload: no query lost during a reload):
#
#   bench/reload_under_load.sh [RECORDS] [QPS]      # defaults: 100000 20000
#   CHANGE=all bench/reload_under_load.sh          # every zone file changes (a full rebuild)
#
# pzdns (release, 1 worker) is pinned to CPU 0 together with its reload
# thread, dnsperf to CPU 1. Two dnsperf runs at the same fixed rate: one
# quiet, one with a reload every 3 s; before each reload one zone file (of
# ten) is rewritten with a changed record (CHANGE=one, the default: what a
# commit to the zones repository usually is), or every file (CHANGE=all).
# p50/p99 come from dnsperf -v. Loopback only.
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
change=${CHANGE:-one}
run() {
    taskset -c 1 dnsperf -v -s 127.0.0.1 -p $port -d "$work/zones/queries.txt" -c 4 -q 100 -t 1 -l 12 -Q "$qps" >"$work/$1.out" 2>&1
}
# Percentiles of the per-response latencies dnsperf -v prints (last field, seconds).
pct() {
    awk '/^> / { print $NF * 1000 }' "$work/$1.out" | sort -n | awk -v p="$2" '{ a[NR] = $1 } END { i = int(NR * p / 100); if (i < 1) i = 1; printf "%.3f", a[i] }'
}
report() {
    printf '%-10s %s | %s | p50 %s ms, p99 %s ms, p99.9 %s ms\n' "$1" "$(grep -m1 'Queries sent' "$work/$1.out" | xargs)" \
        "$(grep -m1 'Queries lost' "$work/$1.out" | xargs)" "$(pct "$1" 50)" "$(pct "$1" 99)" "$(pct "$1" 99.9)"
}
# Rewrites zone files as a commit would (a new file renamed into place), one
# record changed. The file watch sees it too; the POST below makes the
# reload happen now and times it.
touch_zones() {
    local files
    if [ "$change" = all ]; then files=$(ls "$work"/zones/*.yaml | grep -v vpcs.yaml); else files=$(ls "$work"/zones/*.yaml | grep -v vpcs.yaml | head -1); fi
    for f in $files; do
        sed "0,/value: /s/value: \([0-9.]*\)/value: \1/; \$a\\  - { name: bench-$RANDOM, type: A, value: 10.0.0.$((RANDOM % 250 + 1)) }" "$f" >"$f.new"
        mv "$f.new" "$f"
    done
}
# The zone files were written just now: each is read again by the next
# reload and compared (the racy-stamp rule, docs/REFERENCE.md#reload). One
# reload past that window settles them, so that the measured reloads are
# what a commit to a running server costs.
sleep 2.1
curl -s -XPOST "http://$admin/reload" >/dev/null
run quiet
run reloading & perf=$!
# What this script does from here (rewriting files, curl) runs beside
# dnsperf at the lowest priority, never on the server's CPU.
taskset -cp 1 $$ >/dev/null
renice -n 19 -p $$ >/dev/null
reload_ms=()
for _ in 1 2 3; do
    sleep 3
    touch_zones
    t0=$(date +%s%N)
    curl -s -XPOST "http://$admin/reload" >/dev/null
    reload_ms+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
wait $perf
echo "pzdns $(${bin} --version | awk '{print $2, "commit", $4}' | tr -d ,), $records records in 10 zone files, $qps qps offered, CHANGE=$change"
report quiet
report reloading
echo "reload (POST /reload round trip, load + swap): ${reload_ms[*]} ms"
grep -o '"load_ms":[0-9]*' <(curl -s "http://$admin/zones") | sed 's/"load_ms":/last load_ms from \/zones: /'
grep -o 'files_read=[0-9]* files_reused=[0-9]*' "$work/pzdns.log" | tail -3 | sed 's/^/  /'
