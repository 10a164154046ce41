#!/usr/bin/env bash
# A change on the query path, before and after, beside the peers in one
# invocation (docs/PERFORMANCE.md):
#   1. local answers: NSD, pzdns before, pzdns after (bench/peers.sh's data);
#   2. cache hits: Unbound forwarding, pzdns before, pzdns after (each
#      forwarding to the loopback NSD, cache primed);
#   3. cache misses: bench/miss.sh for each binary (Unbound beside it in
#      the same run).
#
#   PZDNS_BEFORE=/path/to/release/pzdns-of-the-base bash bench/ab.sh   # ~12 min on 2 cores
#
# The after binary is this tree's release build. Everything stays on
# loopback; every process is stopped by PID (peers.sh and miss.sh do it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=$here/peers.sh
before=${PZDNS_BEFORE:?PZDNS_BEFORE: a release binary of the base commit}
out=${OUT:-/tmp/pzdns-bench-ab}
rm -rf "$out"
mkdir -p "$out"
export DURATION=${DURATION:-5} REPS=${REPS:-2} WARMUP=${WARMUP:-2} LAT_DURATION=${LAT_DURATION:-5} LAT_QPS=${LAT_QPS:-50000}
export WORK=${WORK:-/tmp/dnsbench-ab} RESULTS_DIR=$out SKIP_INSTALL=${SKIP_INSTALL:-1}
(cd "$root" && cargo build --release --locked -q)
after=$root/target/release/pzdns
version="pzdns $(git -C "$root" rev-parse --short HEAD)"

candidate() { # LABEL BINARY [env...]
    local label=$1 bin=$2
    shift 2
    echo "== $label"
    env "$@" PZDNS_BIN="$bin" SERVERS=candidate CANDIDATE_CMD="exec bash $here/candidate.sh" \
        CANDIDATE_NAME="$label" CANDIDATE_VERSION="$version" CANDIDATE_SOURCES=127.0.0.1 bash "$peers" >>"$out/runs.txt" 2>&1
}

echo "== nsd"
SERVERS=nsd bash "$peers" >>"$out/runs.txt" 2>&1
candidate local-before "$before"
candidate local-after "$after"
echo "== unbound-fwd"
SERVERS=unbound-fwd bash "$peers" >>"$out/runs.txt" 2>&1
candidate hits-before "$before" CANDIDATE_UPSTREAM=1 PZDNS_BENCH_MODE=forwarder
candidate hits-after "$after" CANDIDATE_UPSTREAM=1 PZDNS_BENCH_MODE=forwarder
echo "== misses"
PZDNS_BIN="$before" LABEL=before OUT="$out/miss-before" bash "$here/miss.sh" >"$out/miss-before.txt" 2>&1
PZDNS_BIN="$after" LABEL=after OUT="$out/miss-after" bash "$here/miss.sh" >"$out/miss-after.txt" 2>&1
echo
grep -h '^| ' "$out/peers-summary.md" | awk -F'|' 'NR == 1 || $2 !~ /label/' || true
echo
cat "$out/miss-before.txt" "$out/miss-after.txt"
