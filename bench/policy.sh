#!/usr/bin/env bash
# Response policy cost (docs/PERFORMANCE.md, "Response policies"):
#
#   bench/policy.sh            # ~2 min once built
#
# 1. load: `pzdns check` on a zones directory without a policy, with a
#    1,000,000-name domain list, and with a 1,000,000-trigger RPZ file:
#    wall time and peak RSS (/usr/bin/time); then the RSS of a server
#    holding each, once loaded: the memory per rule;
# 2. CPU per query: one pzdns serving two VPCs, one bound to the
#    1,000,000-name policy and one without; dnsperf asks the same local
#    name from a source of each VPC in turn at a fixed rate, REPS times,
#    alternating; pzdns's CPU time (utime+stime from /proc) over the
#    queries answered is the CPU per query. The name is not in the list,
#    so every label is probed (the worst case for a miss). NSD answers
#    the same name at the same rate in the same run, for scale.
# Everything stays on loopback; every process is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${WORK:-/tmp/pzdns-policy-bench}
rules=${RULES:-1000000}
qps=${QPS:-20000}
secs=${SECS:-10}
reps=${REPS:-3}
rm -rf "$work"; mkdir -p "$work"
(cd "$root" && cargo build --release --locked -q)
pz=$root/target/release/pzdns

mk_base() { # dir
    mkdir -p "$1/lists"
    cat >"$1/vpcs.yaml" <<EOF
vpcs:
  - id: vpc-policy
    cidrs: [127.0.11.0/24]
  - id: vpc-plain
    cidrs: [127.0.12.0/24]
EOF
    cat >"$1/bench.yaml" <<EOF
zone: svc.bench.test
vpcs: [vpc-policy, vpc-plain]
records:
  - { name: www, type: A, value: 10.0.0.1 }
EOF
}
mk_base "$work/none"
mk_base "$work/list"
mk_base "$work/rpz"
python3 - "$work" "$rules" <<'EOF'
import sys
work, n = sys.argv[1], int(sys.argv[2])
# Names of 3 to 5 labels, as threat feeds have them.
def name(i):
    return f"h{i}.d{i % 50000}.{['com','net','org','io','example'][i % 5]}" if i % 3 else f"x{i}.y{i % 977}.d{i % 50000}.example"
with open(f"{work}/list/lists/feed.txt", "w") as f:
    f.write("# generated feed\n")
    for i in range(n):
        f.write(name(i) + "\n")
with open(f"{work}/rpz/lists/feed.rpz", "w") as f:
    f.write("$TTL 300\n@ SOA ns.rpz. hostmaster.rpz. 1 3600 600 86400 60\n@ NS ns.rpz.\n")
    for i in range(n):
        f.write(f"{name(i)} CNAME .\n" if i % 2 else f"*.{name(i)} CNAME .\n")
EOF
printf 'policy: feed\nvpcs: [vpc-policy]\nrules:\n  - domains: lists/feed.txt\n    action: nxdomain\n' >"$work/list/feed.yaml"
printf 'policy: feed\nvpcs: [vpc-policy]\nrules:\n  - rpz: lists/feed.rpz\n' >"$work/rpz/feed.yaml"

echo "== load (pzdns check), $rules rules"
printf '%-12s %10s %12s\n' case wall_s peak_rss_MiB
for c in none list rpz; do
    /usr/bin/time -v "$pz" check --zones "$work/$c" >"$work/$c.check" 2>"$work/$c.time" || { cat "$work/$c.check"; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$c.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$c.time")
    printf '%-12s %10s %12.1f\n' "$c" "$wall" "$(echo "$rss / 1024" | bc -l)"
    echo "$c $rss" >>"$work/rss"
done
base=$(awk '$1=="none" {print $2}' "$work/rss")
for c in list rpz; do
    r=$(awk -v c=$c '$1==c {print $2}' "$work/rss")
    echo "$c: $(( (r - base) * 1024 / rules )) bytes per rule (peak RSS over the no-policy load)"
done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
serve_rss() { # zones-dir -> RSS (KiB) of a server once it has loaded
    printf 'listen:\n  - address: 127.0.0.1:5390\nupstreams: []\nzones_dir: %s\nadmin:\n  listen: "off"\n' "$1" >"$work/rss.yaml"
    rm -f "$work/rss.ready"
    "$pz" serve --config "$work/rss.yaml" --workers 1 --ready-file "$work/rss.ready" 2>/dev/null &
    local pid=$!
    for _ in $(seq 600); do [ -s "$work/rss.ready" ] && break; sleep 0.1; done
    sleep 1
    rss_kib $pid
    kill $pid; wait $pid 2>/dev/null || true
}
echo "== serving RSS after the load"
r0=$(serve_rss none); r1=$(serve_rss list); r2=$(serve_rss rpz)
echo "no policy: $((r0 / 1024)) MiB; 1M-name list: $((r1 / 1024)) MiB ($(( (r1 - r0) * 1024 / rules )) bytes per rule); 1M-trigger RPZ: $((r2 / 1024)) MiB ($(( (r2 - r0) * 1024 / rules )) bytes per rule)"

echo "== CPU per local answer, with and without the policy, one server, $qps qps x ${secs}s x $reps"
cat >"$work/pzdns.yaml" <<EOF
listen:
  - address: 127.0.0.1:5391
upstreams: []
zones_dir: list
admin:
  listen: "off"
EOF
"$pz" serve --config "$work/pzdns.yaml" --workers 1 --ready-file "$work/ready" 2>"$work/serve.log" &
pzpid=$!
cat >"$work/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@5392
  port: 5392
  username: ""
  chroot: ""
  zonesdir: "$work"
  pidfile: "$work/nsd.pid"
  database: ""
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
  logfile: "$work/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: svc.bench.test
  zonefile: bench.zone
EOF
printf '$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 127.0.0.1\nwww A 10.0.0.1\n' >"$work/bench.zone"
nsd -d -c "$work/nsd.conf" 2>"$work/nsd.err" &
nsdpid=$!
trap 'kill $pzpid $nsdpid 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.1; done
sleep 1
echo "www.svc.bench.test A" >"$work/q.txt"
# utime+stime of a process and its descendants (NSD serves from a grandchild).
cpu() {
    local t=$(awk '{print $14 + $15}' "/proc/$1/stat") c
    for c in $(pgrep -P "$1"); do t=$((t + $(cpu "$c"))); done
    echo "$t"
}
run() { # label pid port source
    local t0 t1 n
    t0=$(cpu "$2")
    n=$(dnsperf -s 127.0.0.1 -p "$3" -a "$4" -d "$work/q.txt" -l "$secs" -Q "$qps" -c 4 2>/dev/null | awk '/Queries completed/ {print $3}')
    t1=$(cpu "$2")
    local hz; hz=$(getconf CLK_TCK)
    printf '%-22s %10s queries %8.2f us CPU/query\n' "$1" "$n" "$(echo "($t1 - $t0) * 1000000 / $hz / $n" | bc -l)"
}
for r in $(seq "$reps"); do
    run "pzdns no-policy VPC" $pzpid 5391 127.0.12.1
    run "pzdns policy VPC (1M)" $pzpid 5391 127.0.11.1
    run "nsd" $nsdpid 5392 127.0.0.1
done
