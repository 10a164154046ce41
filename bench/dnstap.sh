#!/usr/bin/env bash
# What dnstap costs (docs/PERFORMANCE.md, "dnstap"), in one invocation:
# local answers from bench/peers.sh's data, CPU per query, for
#   NSD; pzdns before dnstap existed (PZDNS_BEFORE: a release binary of
#   that commit, optional); pzdns with dnstap off; dnstap to a file; dnstap
#   to an fstrm_capture on a Unix socket (its own process, pinned beside
#   dnsperf, not counted in pzdns's CPU).
#
#   PZDNS_BEFORE=/path/to/pzdns-of-the-base-commit bash bench/dnstap.sh   # ~4 min on 2 cores
#
# Everything stays on loopback; every process is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=$here/peers.sh
command -v fstrm_capture >/dev/null || { echo "needs fstrm_capture (apt-get install fstrm-bin)"; exit 1; }
out=${OUT:-/tmp/pzdns-bench-dnstap}
rm -rf "$out"
mkdir -p "$out"
export DURATION=${DURATION:-5} REPS=${REPS:-3} WARMUP=${WARMUP:-2} LAT_DURATION=${LAT_DURATION:-5} LAT_QPS=${LAT_QPS:-50000}
export WORK=${WORK:-/tmp/dnsbench-dnstap} RESULTS_DIR=$out SKIP_INSTALL=${SKIP_INSTALL:-1}
(cd "$root" && cargo build --release --locked -q)
bin=$root/target/release/pzdns
version="pzdns $(git -C "$root" rev-parse --short HEAD)"

run() { # LABEL BINARY DNSTAP
    echo "== $1"
    PZDNS_BIN=$2 PZDNS_BENCH_DNSTAP=$3 SERVERS=candidate CANDIDATE_CMD="exec bash $here/candidate.sh" \
        CANDIDATE_NAME=$1 CANDIDATE_VERSION="$version" CANDIDATE_SOURCES=127.0.0.1 bash "$peers" >>"$out/runs.txt" 2>&1
}

echo "== nsd"
SERVERS=nsd bash "$peers" >>"$out/runs.txt" 2>&1
if [ -n "${PZDNS_BEFORE:-}" ]; then run pzdns-before "$PZDNS_BEFORE" ""; fi
run pzdns-dnstap-off "$bin" ""
# Not beside the zones directory: the reload watch would see every write.
rm -rf "$WORK/dnstap-file"
mkdir -p "$WORK/dnstap-file"
run pzdns-dnstap-file "$bin" "file:$WORK/dnstap-file/dnstap.fstrm"
sock=$WORK/dnstap.sock
rm -f "$sock"
setsid taskset -c "${CLIENT_CPU:-1}" fstrm_capture -t protobuf:dnstap.Dnstap -u "$sock" -w "$out/capture.fstrm" >"$out/capture.log" 2>&1 </dev/null &
cap=$!
trap 'kill -INT "$cap" 2>/dev/null || true' EXIT
run pzdns-dnstap-socket "$bin" "socket:$sock"
kill -INT "$cap"
wait "$cap" || true
trap - EXIT

# One row per server: median QPS and CPU µs/query saturated, CPU µs/query at
# LAT_QPS; ratios against dnstap off and NSD; dnstap frames written against
# twice the queries answered (every dnsperf run of that server, warm-up included).
python3 - "$out" "$WORK" <<'PY'
import glob, os, re, sys, statistics
out, work = sys.argv[1:]
rows = {}
for line in open(f"{out}/peers-raw.tsv"):
    f = line.rstrip("\n").split("\t")
    if f[0] == "run_id":
        continue
    r = rows.setdefault(f[1], {"sat": [], "qps": [], "lat": None})
    if f[4].startswith("lat"):
        r["lat"] = float(f[19])
    else:
        r["sat"].append(float(f[19])); r["qps"].append(float(f[5]))
def frames(path):
    n = 0
    with open(path, "rb") as fh:
        while True:
            h = fh.read(4)
            if len(h) < 4:
                return n
            k = int.from_bytes(h, "big")
            if k == 0:
                fh.seek(int.from_bytes(fh.read(4), "big"), 1)
            else:
                fh.seek(k, 1); n += 1
def answered(label):
    total = 0
    for p in glob.glob(f"{work}/run/{label}/*.txt"):
        m = re.search(r"Queries completed:\s+(\d+)", open(p, errors="replace").read())
        total += int(m.group(1)) if m else 0
    return total
written = {"pzdns-dnstap-file": f"{work}/dnstap-file/dnstap.fstrm", "pzdns-dnstap-socket": f"{out}/capture.fstrm"}
off = rows.get("pzdns-dnstap-off"); nsd = rows.get("nsd")
def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"
rate = os.environ.get("LAT_QPS", "50000")
print(f"| server | median QPS | CPU µs/q saturated | CPU µs/q @ {rate} qps | vs dnstap off (saturated, @{rate}) | vs NSD (saturated, @{rate}) | dnstap messages written / 2 × answered |")
print("|---|---:|---:|---:|---|---|---|")
for label in ["nsd", "pzdns-before", "pzdns-dnstap-off", "pzdns-dnstap-file", "pzdns-dnstap-socket"]:
    r = rows.get(label)
    if not r or not r["sat"]:
        continue
    sat, qps, lat = statistics.median(r["sat"]), statistics.median(r["qps"]), r["lat"]
    vs_off = f"{ratio(sat, statistics.median(off['sat']))}, {ratio(lat, off['lat'])}" if off and off["sat"] else "-"
    vs_nsd = f"{ratio(sat, statistics.median(nsd['sat']))}, {ratio(lat, nsd['lat'])}" if nsd and nsd["sat"] else "-"
    w = "-"
    if label in written and os.path.exists(written[label]):
        n, a = frames(written[label]), answered(label)
        w = f"{n} / {2 * a} ({100 * n / max(1, 2 * a):.1f} %)"
    print(f"| {label} | {qps:.0f} | {sat:.2f} | {lat if lat is not None else '-'} | {vs_off} | {vs_nsd} | {w} |")
PY
# The captures take a few hundred MB each.
rm -rf "$WORK/dnstap-file" "$out/capture.fstrm"
