#!/usr/bin/env bash
# Cache misses beside Unbound: pzdns and Unbound each forward to the same
# loopback NSD, and every query asks a name never asked before, so each
# one is a miss that goes upstream.
#
#   bash bench/miss.sh                              # target/release/pzdns
#   PZDNS_BIN=/tmp/old/pzdns LABEL=before bash bench/miss.sh
#
# For each server (pinned to SERVER_CPU, one worker / num-threads 1; NSD
# and dnsperf on CLIENT_CPU):
#   1. saturation: dnsperf for DURATION s with OUTSTANDING queries in
#      flight; answered queries per second;
#   2. at HALF of Unbound's saturation (the same offered rate for both):
#      mean latency, and CPU µs per answered query (the server process's
#      utime+stime over the run, every thread, / answered), also split
#      into user and system time (clock ticks: the split is sampled).
# Prints one table; raw dnsperf output in $OUT. Everything stays on
# loopback; every process started is stopped by its PID, also on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
label=${LABEL:-$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo pzdns)}
DURATION=${DURATION:-10}
OUTSTANDING=${OUTSTANDING:-200}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
OUT=${OUT:-/tmp/pzdns-miss}
P_NSD=5370 P_UNBOUND=5371 P_PZDNS=5372
[ -x "$bin" ] || { echo "no pzdns binary at $bin: cargo build --release first" >&2; exit 1; }
for t in nsd unbound dnsperf taskset; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "$t is needed (apt-get install nsd unbound dnsperf util-linux)" >&2; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The authority: every name under miss.example answers one A record.
mkdir -p "$OUT/nsd"
cat >"$OUT/nsd/miss.zone" <<EOF
\$ORIGIN miss.example.
\$TTL 300
@ SOA ns hostmaster 1 3600 600 86400 300
@ NS ns
ns A 127.0.0.1
* A 192.0.2.1
EOF
cat >"$OUT/nsd/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@$P_NSD
  port: $P_NSD
  username: ""
  chroot: ""
  zonesdir: "$OUT/nsd"
  pidfile: "$OUT/nsd/nsd.pid"
  database: ""
  xfrdfile: "$OUT/nsd/xfrd.state"
  zonelistfile: "$OUT/nsd/zone.list"
  logfile: "$OUT/nsd/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: miss.example
  zonefile: miss.zone
EOF
taskset -c "$CLIENT_CPU" nsd -d -c "$OUT/nsd/nsd.conf" >/dev/null 2>&1 &
pids+=($!)

cat >"$OUT/unbound.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $P_UNBOUND
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$OUT"
  pidfile: "$OUT/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  outgoing-interface: 127.0.0.1
  module-config: "iterator"
  prefetch: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$P_NSD
EOF
taskset -c "$SERVER_CPU" unbound -d -c "$OUT/unbound.conf" >"$OUT/unbound.log" 2>&1 &
unbound_pid=$!
pids+=("$unbound_pid")
mkdir -p "$OUT/zones"
printf 'vpcs:\n  - { id: vpc-bench, cidrs: [127.0.0.1/32] }\n' >"$OUT/zones/vpcs.yaml"
# Unbound here does not validate (module-config "iterator"): pzdns neither,
# unless DNSSEC=validate. A binary from before validation existed has no
# `resolver:` key: it gets an empty file.
printf 'resolver:\n  dnssec: %s\n' "${DNSSEC:-off}" >"$OUT/pzdns.yaml"
"$bin" check --config "$OUT/pzdns.yaml" --zones "$OUT/zones" >/dev/null 2>&1 || : >"$OUT/pzdns.yaml"
taskset -c "$SERVER_CPU" "$bin" serve --config "$OUT/pzdns.yaml" --zones "$OUT/zones" --listen "127.0.0.1:$P_PZDNS" --admin off --workers 1 \
    --upstream "127.0.0.1:$P_NSD" >"$OUT/pzdns.log" 2>&1 &
pzdns_pid=$!
pids+=("$pzdns_pid")

ready() { # port
    for _ in $(seq 100); do
        dig +short +tries=1 +time=1 -p "$1" @127.0.0.1 ready.miss.example A 2>/dev/null | grep -q 192.0.2.1 && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}
ready $P_UNBOUND
ready $P_PZDNS

# Unique names, a new prefix for every run: no run ever hits a cache.
names() { # prefix count -> file
    awk -v p="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s%x.miss.example A\n", p, i }' >"$OUT/$1.txt"
    echo "$OUT/$1.txt"
}
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # user, system
# run PORT PREFIX [extra dnsperf args] -> "answered_qps mean_latency_ms answered"
run() {
    local port=$1 prefix=$2; shift 2
    local f; f=$(names "$prefix" 2000000)
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$f" -l "$DURATION" -q "$OUTSTANDING" -t 2 "$@" >"$OUT/$prefix.out" 2>&1
    rm -f "$f"
    awk '/Queries completed:/ { done = $3 } /Queries per second:/ { qps = $4 } /Average Latency/ { lat = $4 * 1000 }
         END { printf "%.0f %.3f %d\n", qps, lat, done }' "$OUT/$prefix.out"
}
# measure NAME PORT PID RATE -> "cpu_us_per_query mean_latency_ms answered user_us system_us"
measure() {
    local name=$1 port=$2 pid=$3 rate=$4
    local u0 s0 u1 s1; read -r u0 s0 < <(cpu_ticks "$pid")
    read -r _ lat done < <(run "$port" "$name-fixed" -Q "$rate")
    read -r u1 s1 < <(cpu_ticks "$pid")
    local hz; hz=$(getconf CLK_TCK)
    awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$hz" -v n="$done" -v lat="$lat" 'BEGIN {
        k = 1e6 / hz / (n > 0 ? n : 1)
        printf "%.2f %.3f %d %.2f %.2f\n", (u + s) * k, lat, n, u * k, s * k }'
}

# Warm both (sockets, allocator) on names of their own.
run $P_UNBOUND warm-u -Q 2000 >/dev/null
run $P_PZDNS warm-p -Q 2000 >/dev/null
read -r u_sat _ _ < <(run $P_UNBOUND unbound-sat)
read -r p_sat _ _ < <(run $P_PZDNS pzdns-sat)
half=$((u_sat / 2))
read -r u_cpu u_lat u_n u_usr u_sys < <(measure unbound $P_UNBOUND "$unbound_pid" "$half")
read -r p_cpu p_lat p_n p_usr p_sys < <(measure pzdns $P_PZDNS "$pzdns_pid" "$half")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "cache misses, unique names, one core each, both forwarding to one loopback NSD ($(date -u +%FT%TZ), DURATION=$DURATION s)"
echo "| server | saturation answered qps | CPU µs per answered miss @ $half qps (user + system) | mean latency ms @ $half qps | answered @ $half qps |"
echo "|---|---|---|---|---|"
echo "| unbound $(unbound -V 2>/dev/null | awk '/^Version/ {print $2}') | $u_sat | $u_cpu ($u_usr + $u_sys) | $u_lat | $u_n |"
echo "| pzdns $label | $p_sat | $p_cpu ($p_usr + $p_sys) | $p_lat | $p_n |"
echo "| pzdns / unbound | $(ratio "$p_sat" "$u_sat") | $(ratio "$p_cpu" "$u_cpu") (target ≤ 0.8; user $(ratio "$p_usr" "$u_usr"), system $(ratio "$p_sys" "$u_sys")) | $(ratio "$p_lat" "$u_lat") (target ≤ 1.0) | |"
