#!/usr/bin/env bash
# The performance tables of docs/PERFORMANCE.md in one command, from a clone alone:
#
#   bash bench/run.sh                    # ~9 min on 2 cores once built; as root it apt-get installs
#                                        # the peers and dnsperf when missing (SKIP_INSTALL=1: never)
#   DURATION=15 REPS=3 bash bench/run.sh # bench/peers.sh's own defaults (~30 min)
#   bash bench/run.sh scale              # the scale scenario instead (bench/scale.py: load,
#                                        # bytes per record, one-zone reload; RECORDS=... ZONES=...)
#
# 1. local answers: pzdns (from two VPC source addresses) beside NSD, Knot,
#    Unbound local-data and BIND, through bench/peers.sh;
# 2. cache hits: pzdns as a forwarder beside Unbound, same script;
# 3. mixed profile: pzdns with the apex CNAME zone (local answers, apex
#    CNAMEs whose target comes from the cache, NXDOMAIN) beside Unbound
#    answering the same queries from its cache;
# 4. selection cost (1 VPC × 1 zone vs 100 VPCs × 1,000 zones) and p99
#    latency at 50% of saturation (bench/scenarios.sh);
# 5. reload of 100,000 records under 20k qps (bench/reload_under_load.sh);
# 6. loading 1,000,000 records (time, peak memory);
# 7. the criterion micro-benchmarks (benches/hot_path.rs).
# Prints one table of pzdns's ratios against each peer measured in the same
# invocation. Everything stays on loopback; every process is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=$here/peers.sh
bash "$peers" install
case ${1:-all} in
    all) ;;
    scale) (cd "$root" && cargo build --release --locked -q); exec python3 "$here/scale.py" ;;
    *) echo "usage: bench/run.sh [all|scale]" >&2; exit 2 ;;
esac
out=${OUT:-/tmp/pzdns-bench}
mkdir -p "$out"
export DURATION=${DURATION:-5} REPS=${REPS:-1} WARMUP=${WARMUP:-2} LAT_DURATION=${LAT_DURATION:-5}
# The fixed offered rate for CPU per query and latency (the issue's "say, 50k qps").
export LAT_QPS=${LAT_QPS:-50000}
export WORK=${WORK:-/tmp/dnsbench} RESULTS_DIR=$out

(cd "$root" && cargo build --release --locked -q)
echo "== 1/7 local answers beside the peers"
SERVERS="ceiling nsd knot unbound-local bind candidate" \
    CANDIDATE_CMD="exec bash $here/candidate.sh" CANDIDATE_NAME=pzdns CANDIDATE_VERSION="pzdns $(git -C "$root" rev-parse --short HEAD)" \
    CANDIDATE_SOURCES="127.0.0.1 127.0.0.2" bash "$peers" >"$out/local.txt" 2>&1 || { tail -5 "$out/local.txt"; exit 1; }
echo "== 2/7 cache hits beside Unbound"
SKIP_INSTALL=1 SERVERS="unbound-fwd candidate" CANDIDATE_UPSTREAM=1 PZDNS_BENCH_MODE=forwarder \
    CANDIDATE_CMD="exec bash $here/candidate.sh" CANDIDATE_NAME=pzdns-fwd CANDIDATE_VERSION="pzdns $(git -C "$root" rev-parse --short HEAD)" \
    bash "$peers" >"$out/cache.txt" 2>&1 || { tail -5 "$out/cache.txt"; exit 1; }
echo "== 3/7 mixed profile beside Unbound"
SKIP_INSTALL=1 SERVERS="unbound-fwd candidate" CANDIDATE_UPSTREAM=1 PZDNS_BENCH_ECS_ZONE=ecs.cn-hangzhou.aliyuncs.com \
    CANDIDATE_CMD="exec bash $here/candidate.sh" CANDIDATE_NAME=pzdns-mixed CANDIDATE_VERSION="pzdns $(git -C "$root" rev-parse --short HEAD)" \
    CANDIDATE_SOURCES="127.0.0.1 127.0.0.2" bash "$peers" >"$out/mixed.txt" 2>&1 || { tail -5 "$out/mixed.txt"; exit 1; }
echo "== 4/7 selection cost and latency"
OUT="$out/scenarios" bash "$here/scenarios.sh" >"$out/scenarios.txt" 2>&1
echo "== 5/7 reload under load"
bash "$here/reload_under_load.sh" 100000 20000 >"$out/reload.txt" 2>&1
echo "== 6/7 1,000,000 records"
python3 "$here/gen_zones.py" --records 1000000 --zones 10 --out "$out/zones-1m"
/usr/bin/time -f "wall %e s, peak RSS %M KiB" "$root/target/release/pzdns" check --zones "$out/zones-1m" >"$out/load.txt" 2>&1
rm -rf "$out/zones-1m"
echo "== 7/7 micro-benchmarks"
(cd "$root" && cargo bench --bench hot_path -q -- --warm-up-time 1 --measurement-time 2) >"$out/micro.txt" 2>&1 || true

# Columns of peers.sh's table: 2 label, 5 median QPS, 10 avg latency ms @10k, 15 CPU µs/query saturated, 16 at 10k, 18 bytes.
python3 - "$out" <<'PY'
import os, sys, re
out = sys.argv[1]
def rows(path):
    r = {}
    for line in open(path):
        f = [c.strip() for c in line.split('|')]
        if len(f) > 18 and f[1] and f[1] != 'label' and not f[1].startswith('-') and re.match(r'^[\d.]+$', f[4] or 'x'):
            r[f[1]] = dict(qps=float(f[4]), lat=f[9], cpu=float(f[14]) if f[14] else None, cpu10k=f[15], bytes=f[17])
    return r
local, cache, mixed = rows(f"{out}/local.txt"), rows(f"{out}/cache.txt"), rows(f"{out}/mixed.txt")
def table(rs, me_prefix):
    mine = [k for k in rs if k.startswith(me_prefix)]
    peers = [k for k in rs if not k.startswith(me_prefix) and k != 'ceiling']
    rate = os.environ.get('LAT_QPS', '50000')
    print(f"| pzdns run | peer | pzdns QPS | peer QPS | QPS ratio | CPU µs/q saturated pzdns/peer | ratio | CPU µs/q @ {rate} qps pzdns/peer | ratio (target ≤ 1.0) | avg latency ms @ {rate} pzdns/peer | bytes pzdns/peer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    def ratio(x, y):
        try:
            return f"{float(x)/float(y):.2f}×"
        except (TypeError, ValueError, ZeroDivisionError):
            return "-"
    for m in mine:
        for p in peers:
            a, b = rs[m], rs[p]
            print(f"| {m} | {p} | {a['qps']:.0f} | {b['qps']:.0f} | {a['qps']/b['qps']:.2f}× | {a['cpu']}/{b['cpu']} | {ratio(a['cpu'], b['cpu'])} | "
                  f"{a['cpu10k']}/{b['cpu10k']} | {ratio(a['cpu10k'], b['cpu10k'])} | {a['lat']}/{b['lat']} | {a['bytes']}/{b['bytes']} |")
print("## Local answers\n"); table(local, 'pzdns')
print("\n## Cache hits\n"); table(cache, 'pzdns')
print("\n## Mixed profile (pzdns: 90% local, 5% apex CNAME + cached target, 5% NXDOMAIN; Unbound: all from its cache)\n"); table(mixed, 'pzdns')
print("\n## Selection cost and latency at 50% of saturation (pzdns alone)\n")
print(open(f"{out}/scenarios.txt").read().strip())
print("\n## Reload of 100,000 records under 20k qps\n")
print("```"); print(open(f"{out}/reload.txt").read().strip().splitlines()[-5:] and "\n".join(open(f"{out}/reload.txt").read().strip().splitlines()[-5:])); print("```")
print("\n## 1,000,000 records\n"); print("```"); print(open(f"{out}/load.txt").read().strip()); print("```")
print("\n## Micro-benchmarks\n"); print("```")
lines = open(f"{out}/micro.txt").read().splitlines()
name = None
for l in lines:
    m = re.match(r'^(\S+/\S+)', l)
    if m: name = m.group(1)
    t = re.search(r'time:\s+\[([^\]]+)\]', l)
    if t and name: print(f"{name:40s} {t.group(1)}"); name = None
print("```")
PY
