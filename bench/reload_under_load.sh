#!/usr/bin/env bash
# Reload time and query latency while a large zones directory is reloaded
# under load (docs/REFERENCE.md#reload: no query lost during a reload):
#
#   bench/reload_under_load.sh [RECORDS] [QPS]      # defaults: 100000 20000
#   CHANGE=all bench/reload_under_load.sh          # every zone file changes (a full rebuild)
#   PRIORITY=low bench/reload_under_load.sh        # reload.priority: low (default: idle)
#
# pzdns (release, 1 worker) is pinned to CPU 0 together with its reload
# thread, dnsperf to CPU 1. Two dnsperf runs at the same fixed rate: one
# quiet, one with RELOADS reloads (default 10) 1.5 s apart; before each reload one zone file (of
# ten) is rewritten with a changed record (CHANGE=one, the default: what a
# commit to the zones repository usually is), or every file (CHANGE=all).
# p50/p99 come from dnsperf -v. "during reloads" takes the answers to the
# queries sent while a reload ran (from its "reload started" to its "reload
# swapped in" log line, plus 5 ms): the reloads are a small part of the
# run, so the whole run's p99 would hide them. Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
records=${1:-100000}
qps=${2:-20000}
work=${WORK:-/tmp/pzdns-reload-bench}
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
command -v dnsperf >/dev/null || { echo "needs dnsperf (apt-get install dnsperf)"; exit 1; }
[ -x "$bin" ] || (cd "$here/.." && cargo build --release --locked -q)
rm -rf "$work" && mkdir -p "$work"
python3 "$here/gen_zones.py" --records "$records" --zones 10 --vpcs 1 --net 127 --queries 100000 --out "$work/zones"
port=5391 admin=127.0.0.1:9191
printf 'reload:\n  threads: 1\n  priority: %s\n' "${PRIORITY:-idle}" >"$work/pzdns.yaml"
RUST_LOG=info,pzdns::reload=debug taskset -c 0 "$bin" serve --config "$work/pzdns.yaml" --zones "$work/zones" --listen 127.0.0.1:$port --admin $admin --upstream 127.0.0.1:9 --workers 1 \
    --ready-file "$work/ready" 2>"$work/pzdns.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { cat "$work/pzdns.log"; exit 1; }
change=${CHANGE:-one}
reloads=${RELOADS:-10}
duration=$(( reloads * 2 + 3 ))
run() {
    taskset -c 1 dnsperf -v -s 127.0.0.1 -p $port -d "$work/zones/queries.txt" -c 4 -q 100 -t 1 -l "$duration" -Q "$qps" >"$work/$1.out" 2>&1
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
# dnsperf on the time dnsperf leaves (SCHED_IDLE: at nice 19 a freshly
# started curl still held dnsperf off its CPU for up to a tick, which
# dnsperf counted as answer latency), never on the server's CPU.
taskset -cp 1 $$ >/dev/null
chrt -i -p 0 $$ 2>/dev/null || renice -n 19 -p $$ >/dev/null
reload_ms=()
sleep 0.5
for _ in $(seq "$reloads"); do
    sleep 1.5
    touch_zones
    t0=$(date +%s%N)
    curl -s -XPOST "http://$admin/reload" >/dev/null
    reload_ms+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
wait $perf
end_ns=$(date +%s%N); echo "$end_ns" >"$work/end_ns"
echo "pzdns $(${bin} --version | awk '{print $2, "commit", $4}' | tr -d ,), $records records in 10 zone files, $qps qps offered, CHANGE=$change, $reloads reloads, reload.priority: ${PRIORITY:-idle}"
report quiet
report reloading
# The answers to the queries sent during each reload. dnsperf sends at a
# fixed rate and prints answers in about the order it sent them, so the
# k-th answer's query left at (end - duration) + k / qps.
python3 - "$work" "$qps" "$end_ns" "$duration" <<'PY'
import datetime, re, sys
work, qps, end = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) / 1e9
t0 = end - float(sys.argv[4])
def lat(name):
    return [float(l.split()[-1]) * 1000 for l in open(f"{work}/{name}.out") if l.startswith("> ")]
def when(line):
    return datetime.datetime.fromisoformat(line.split()[0].rstrip("Z")).replace(tzinfo=datetime.timezone.utc).timestamp()
starts, swaps = [], []
for line in open(f"{work}/pzdns.log"):
    if 'trigger="api"' in line or "trigger=api" in line:
        if "reload started" in line and when(line) > t0:
            starts.append(when(line))
        elif "reload swapped in" in line and when(line) > t0:
            swaps.append(when(line))
during, outside = [], []
for k, x in enumerate(lat("reloading")):
    (during if any(a <= t0 + k / qps <= b + 0.005 for a, b in zip(starts, swaps)) else outside).append(x)
quiet = sorted(lat("quiet"))
def pct(v, p):
    v = sorted(v)
    return v[max(0, int(len(v) * p / 100) - 1)] if v else float("nan")
print(f"during reloads ({', '.join(str(round((b - a) * 1000)) for a, b in zip(starts, swaps))} ms): {len(during)} answers, "
      f"p50 {pct(during, 50):.3f} ms, p99 {pct(during, 99):.3f} ms = {pct(during, 99) / pct(quiet, 99):.2f}x the quiet run's p99 "
      f"({pct(during, 99) / pct(outside, 99):.2f}x the p99 of the same run outside reloads, {pct(outside, 99):.3f} ms)")
PY
echo "reload (POST /reload round trip, load + swap): ${reload_ms[*]} ms"
grep -o '"load_ms":[0-9]*' <(curl -s "http://$admin/zones") | sed 's/"load_ms":/last load_ms from \/zones: /'
grep -o 'files_read=[0-9]* files_reused=[0-9]*' "$work/pzdns.log" | tail -3 | sed 's/^/  /'
