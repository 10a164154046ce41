#!/usr/bin/env bash
# Cold resolution beside Unbound (issue #27, "Speed and bounds"): pzdns in
# `resolver.mode: recursive` and Unbound resolve from the root of a signed
# hierarchy built here on loopback NSDs (port 53, so as root):
#   $NET.1  .              signed (NSEC)
#   $NET.2  test.          signed (NSEC)
#   $NET.3  secure.test.   signed (NSEC), *.w.secure.test. A
#           insecure.test. unsigned, no DS, *.w.insecure.test. A
# Every name asked is new (a fresh prefix under a wildcard), so every one
# is a cache miss resolved at the leaf; the root's, test.'s and the
# leaves' delegations and keys are warmed first on other names.
#
#   bash bench/cold.sh                              # target/release/pzdns
#   SHORT=1 bash bench/cold.sh                      # a smoke run
#   PZDNS_BIN=/tmp/old/pzdns LABEL=before bash bench/cold.sh
#
# 1. Cold resolution: pzdns (recursive; dnssec validate, then off) and
#    Unbound (module-config "validator iterator" with aggressive-nsec off,
#    then "iterator"; and, for reference, validating as it comes), each on
#    SERVER_CPU with one worker / num-threads 1, each sent NAMES unique
#    names under secure.test. and then under insecure.test. at RATE qps
#    (dnsperf, each name once); CPU µs per answered name (the server's
#    utime+stime, every thread, from /proc), the leaf's queries per name
#    (nsd-control stats), and whether a secure name came back with AD.
# 2. Cache hits, validation on vs off: pzdns in forward mode (to an
#    Unbound on $NET.10 that only iterates), dnssec validate and off; HITS
#    names under secure.test. asked once, then asked again for DURATION s
#    at HIT_RATE qps: CPU µs per answered hit, and the ratio.
# Both in ROUNDS rounds (each server in turn within a round, a quarter of
# the names or of the time each by default): the machine drifts by several
# percent over minutes, and rounds spread that over every server alike.
# NSDs, the forwarders' Unbound and dnsperf run on CLIENT_CPU. Results as
# markdown in bench/results/cold-DATE.md (RESULT to choose); raw files in
# $OUT. Everything stays on loopback; every process started is stopped by
# its PID, also on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
label=${LABEL:-$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo pzdns)}
if [ -n "${SHORT:-}" ]; then
    NAMES=${NAMES:-1000} RATE=${RATE:-500} HITS=${HITS:-1000} HIT_RATE=${HIT_RATE:-5000} DURATION=${DURATION:-3} ROUNDS=${ROUNDS:-1}
fi
NAMES=${NAMES:-20000}
RATE=${RATE:-2000}
HITS=${HITS:-10000}
HIT_RATE=${HIT_RATE:-20000}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-4}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
# Addresses of the hierarchy (port 53): none the integration tests use.
NET=${NET:-127.53.27}
OUT=${OUT:-/tmp/pzdns-cold}
RESULT=${RESULT:-$here/results/cold-$(date -u +%F).md}
# Client ports: pzdns recursive validate/off, Unbound validator/iterator,
# pzdns forward validate/off, Unbound validator with aggressive NSEC.
P_PV=${P_PV:-25390} P_PO=${P_PO:-25391} P_UV=${P_UV:-25392} P_UI=${P_UI:-25393} P_FV=${P_FV:-25394} P_FO=${P_FO:-25395} P_UA=${P_UA:-25396}
[ -x "$bin" ] || { echo "no pzdns binary at $bin: cargo build --release first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the hierarchy listens on port 53: run as root" >&2; exit 1; }
export PATH=$PATH:/usr/sbin
for t in nsd nsd-control unbound dnsperf dig taskset dnssec-keygen dnssec-signzone dnssec-dsfromkey; do
    command -v "$t" >/dev/null || { echo "$t is needed (apt-get install nsd unbound dnsperf dnsutils bind9-utils util-linux)" >&2; exit 1; }
done
for p in $P_PV $P_PO $P_UV $P_UI $P_FV $P_FO $P_UA; do
    ! ss -Hlntu "sport = :$p" | grep -q . || { echo "port $p is taken: choose others (P_PV, P_PO, P_UV, P_UI, P_FV, P_FO, P_UA)" >&2; exit 1; }
done
for a in 1 2 3 10; do
    ! ss -Hlntu "src $NET.$a" | grep -q . || { echo "$NET.$a is in use: choose another NET" >&2; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT/zones"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The signed hierarchy, as tests/fixtures/dnssec/make-zones.sh builds its own.
(
    cd "$OUT/zones"
    keys() { # zone dir
        mkdir -p "$2"
        dnssec-keygen -q -K "$2" -a ECDSAP256SHA256 -f KSK "$1" >/dev/null
        dnssec-keygen -q -K "$2" -a ECDSAP256SHA256 "$1" >/dev/null
    }
    ds() { dnssec-dsfromkey -2 "$(grep -l 'IN DNSKEY 257' "$1"/*.key)"; }
    sign() { dnssec-signzone -q -S -O full -K "$1" -o "$2" -f "$3" "$4" >/dev/null; }
    soa() { echo "$1 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 300"; }
    {
        echo "\$TTL 3600"; soa secure.test.
        echo "secure.test. IN NS ns.leaf.test."
        echo "www.secure.test. IN A 192.0.2.1"
        echo "*.w.secure.test. IN A 192.0.2.9"
    } >secure.zone
    keys secure.test. k-secure
    sign k-secure secure.test. secure.signed secure.zone
    {
        echo "\$TTL 3600"; soa insecure.test.
        echo "insecure.test. IN NS ns.leaf.test."
        echo "www.insecure.test. IN A 192.0.2.2"
        echo "*.w.insecure.test. IN A 192.0.2.10"
    } >insecure.signed
    {
        echo "\$TTL 3600"; soa test.
        echo "test. IN NS ns.test."
        echo "ns.test. IN A $NET.2"
        echo "a.root-servers.test. IN A $NET.1"
        echo "ns.leaf.test. IN A $NET.3"
        echo "secure.test. IN NS ns.leaf.test."
        echo "insecure.test. IN NS ns.leaf.test."
        ds k-secure
    } >test.zone
    keys test. k-test
    sign k-test test. test.signed test.zone
    {
        echo "\$TTL 3600"
        echo ". 3600 IN SOA a.root-servers.test. admin.test. 1 3600 600 86400 300"
        echo ". IN NS a.root-servers.test."
        echo "a.root-servers.test. IN A $NET.1"
        echo "test. IN NS ns.test."
        echo "ns.test. IN A $NET.2"
        ds k-test
    } >root.zone
    keys . k-root
    sign k-root . root.signed root.zone
    ds k-root >root.ds
    printf '. 3600000 IN NS a.root-servers.test.\na.root-servers.test. 3600000 IN A %s\n' "$NET.1" >root.hints
)

# nsd ADDR INDEX ZONE FILE [ZONE FILE...], with a control socket for its counters.
nsd_start() {
    local addr=$1 i=$2; shift 2
    local d="$OUT/nsd$i"
    mkdir -p "$d"
    {
        printf 'server:\n  ip-address: %s\n  port: 53\n  do-ip6: no\n  username: ""\n  chroot: ""\n  zonesdir: "%s"\n' "$addr" "$OUT/zones"
        printf '  pidfile: "%s/nsd.pid"\n  database: ""\n  xfrdfile: "%s/xfrd.state"\n  zonelistfile: "%s/zone.list"\n' "$d" "$d" "$d"
        printf '  logfile: "%s/nsd.log"\n  server-count: 1\n  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n' "$d"
        printf 'remote-control:\n  control-enable: yes\n  control-interface: "%s/nsd.sock"\n' "$d"
        while [ $# -gt 0 ]; do
            printf 'zone:\n  name: "%s"\n  zonefile: "%s"\n' "$1" "$2"
            shift 2
        done
    } >"$d/nsd.conf"
    taskset -c "$CLIENT_CPU" nsd -d -c "$d/nsd.conf" >"$d/out.log" 2>&1 &
    pids+=($!)
}
nsd_start "$NET.1" 1 . root.signed
nsd_start "$NET.2" 2 test. test.signed
nsd_start "$NET.3" 3 secure.test. secure.signed insecure.test. insecure.signed
# Queries the leaf server answered since its counters were last read.
leaf_queries() { nsd-control -c "$OUT/nsd3/nsd.conf" stats 2>/dev/null | awk -F= '$1 == "num.queries" { print $2 }'; }

# unbound NAME ADDR PORT MODULES CPU [EXTRA_LINE]
unbound_start() {
    local name=$1 addr=$2 port=$3 modules=$4 cpu=$5 extra=${6:-} d="$OUT/$1"
    mkdir -p "$d"
    cat >"$d/unbound.conf" <<EOF
server:
  interface: $addr
  port: $port
  do-ip6: no
  do-daemonize: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$d"
  pidfile: "$d/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  local-zone: "test." nodefault
  module-config: "$modules"
  root-hints: "$OUT/zones/root.hints"
  trust-anchor-file: "$OUT/zones/root.ds"
  msg-cache-size: 64m
  rrset-cache-size: 128m
  prefetch: no
$extra
remote-control:
  control-enable: no
EOF
    [ "$modules" = iterator ] && sed -i '/trust-anchor-file/d' "$d/unbound.conf"
    taskset -c "$cpu" unbound -d -c "$d/unbound.conf" >"$d/out.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=\$!"
}
# Unbound's aggressive NSEC (RFC 8198, on by default) answers a new name
# under a signed wildcard from the NSEC and the wildcard it holds, without
# asking the leaf: cold resolution is measured with it off, and beside it,
# as a reference, Unbound as it comes.
unbound_start uv 127.0.0.1 "$P_UV" "validator iterator" "$SERVER_CPU" "  aggressive-nsec: no"
unbound_start ua 127.0.0.1 "$P_UA" "validator iterator" "$SERVER_CPU"
unbound_start ui 127.0.0.1 "$P_UI" iterator "$SERVER_CPU"
# The forwarders' upstream: iterates only, passes DNSSEC records to DO=1 queries.
unbound_start fwd "$NET.10" 53 iterator "$CLIENT_CPU"

# pzdns NAME PORT RESOLVER_YAML
mkdir -p "$OUT/pz-zones"
printf 'vpcs:\n  - { id: vpc-bench, cidrs: [127.0.0.0/8] }\n' >"$OUT/pz-zones/vpcs.yaml"
pzdns_start() {
    local name=$1 port=$2 resolver=$3
    printf 'listen:\n  - address: 127.0.0.1:%s\n%s' "$port" "$resolver" >"$OUT/$name.yaml"
    "$bin" check --config "$OUT/$name.yaml" --zones "$OUT/pz-zones" >"$OUT/$name.check" 2>&1 || { cat "$OUT/$name.check" >&2; exit 1; }
    taskset -c "$SERVER_CPU" "$bin" serve --config "$OUT/$name.yaml" --zones "$OUT/pz-zones" --admin off --workers 1 >"$OUT/$name.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=\$!"
}
hints=$OUT/zones/root.hints anchor=$OUT/zones/root.ds
pzdns_start pv "$P_PV" "upstreams: []
resolver: { mode: recursive, root_hints: $hints, dnssec: validate, trust_anchors: $anchor }
"
pzdns_start po "$P_PO" "upstreams: []
resolver: { mode: recursive, root_hints: $hints, dnssec: off }
"
pzdns_start fv "$P_FV" "upstreams: [$NET.10:53]
resolver: { mode: forward, dnssec: validate, trust_anchors: $anchor }
"
pzdns_start fo "$P_FO" "upstreams: [$NET.10:53]
resolver: { mode: forward, dnssec: off }
"

# ready PORT: a name of the hierarchy resolves through it (loads, binds, walks from the root).
ready() {
    for _ in $(seq 100); do
        dig +short +tries=1 +time=2 -p "$1" @127.0.0.1 www.secure.test A 2>/dev/null | grep -q 192.0.2.1 && return 0
        sleep 0.2
    done
    echo "nothing resolves www.secure.test on port $1 (logs in $OUT)" >&2
    return 1
}
for p in $P_PV $P_PO $P_UV $P_UI $P_FV $P_FO $P_UA; do ready "$p"; done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# names PREFIX ZONE COUNT -> file of unique names under ZONE's wildcard
names() {
    awk -v p="$1" -v z="$2" -v n="$3" 'BEGIN { for (i = 0; i < n; i++) printf "%s%x.w.%s A\n", p, i, z }' >"$OUT/$1.txt"
    echo "$OUT/$1.txt"
}
# ad PORT: whether a secure name comes back with AD (the client sets AD).
ad() { dig +adflag +tries=2 +time=3 -p "$1" @127.0.0.1 "adcheck$RANDOM.w.secure.test" A | grep -q 'flags:.* ad[ ;]' && echo yes || echo no; }
# dnsperf_run PORT FILE TAG [args] -> "answered noerror"
dnsperf_run() {
    local port=$1 file=$2 tag=$3; shift 3
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$file" -t 5 -q 200 "$@" >"$OUT/$tag.out" 2>&1
    awk '/Queries completed:/ { done = $3 } /NOERROR/ { for (i = 1; i <= NF; i++) if ($i == "NOERROR") ok = $(i + 1) }
         END { printf "%d %d\n", done, ok }' "$OUT/$tag.out"
}
# cold NAME PORT PID ZONE ROUND -> "cpu_ticks answered noerror leaf_queries",
# over NAMES / ROUNDS names new to it
cold() {
    local name=$1 port=$2 pid=$3 zone=$4 round=$5
    local f; f=$(names "c-$name-${zone%%.*}-r$round-" "$zone" "$((NAMES / ROUNDS))")
    # Warm: the delegations and keys on the way, on names of their own.
    dnsperf_run "$port" "$(names "warm-$name-${zone%%.*}-" "$zone" 50)" "warm-$name-$zone" -n 1 -Q 100 >/dev/null
    leaf_queries >/dev/null
    local t0 t1; t0=$(cpu_ticks "$pid")
    read -r done ok < <(dnsperf_run "$port" "$f" "cold-$name-$zone-r$round" -n 1 -Q "$RATE")
    t1=$(cpu_ticks "$pid")
    local q; q=$(leaf_queries)
    echo "$((t1 - t0)) $done $ok ${q:-0}"
}
# hits NAME PORT PID -> "cpu_ticks answered" over DURATION / ROUNDS s
hits() {
    local name=$1 port=$2 pid=$3
    local f; f=$(names "h-$name-" secure.test "$HITS")
    dnsperf_run "$port" "$f" "fill-$name" -n 1 -Q 2000 >/dev/null
    local t0 t1; t0=$(cpu_ticks "$pid")
    read -r done _ < <(dnsperf_run "$port" "$f" "hits-$name" -l "$(awk -v d="$DURATION" -v r="$ROUNDS" 'BEGIN { print d / r }')" -Q "$HIT_RATE")
    t1=$(cpu_ticks "$pid")
    echo "$((t1 - t0)) $done"
}
# add KEY "numbers...": sums them into sum[KEY] field by field.
declare -A sum
add() {
    sum[$1]=$(awk -v a="${sum[$1]:-}" -v b="$2" 'BEGIN { n = split(a, x); m = split(b, y); for (i = 1; i <= m; i++) printf "%s%d", (i > 1 ? " " : ""), x[i] + y[i]; print "" }')
}

# ROUNDS rounds, each server in turn within each: the machine's own drift
# over minutes (it moves every server's figures by several percent) falls
# on all of them alike. The figures pool the rounds: all CPU over all names.
declare -A row
for r in $(seq "$ROUNDS"); do
    for s in pv po uv ui ua; do
        port_var="P_${s^^}" pid_var="pid_$s"
        for zone in secure.test insecure.test; do
            add "$s-$zone" "$(cold "$s" "${!port_var}" "${!pid_var}" "$zone" "$r")"
        done
    done
    add fv "$(hits fv "$P_FV" "$pid_fv")"
    add fo "$(hits fo "$P_FO" "$pid_fo")"
done
for s in pv po uv ui ua; do
    port_var="P_${s^^}"
    for zone in secure.test insecure.test; do
        row[$s-$zone]=$(awk -v hz="$hz" '{ n = ($2 > 0 ? $2 : 1); printf "%.1f %d %d %.2f\n", $1 * 1e6 / hz / n, $2, $3, $4 / n }' <<<"${sum[$s-$zone]}")
    done
    row[$s-ad]=$(ad "${!port_var}")
done
read -r fv_cpu fv_n < <(awk -v hz="$hz" '{ printf "%.2f %d\n", $1 * 1e6 / hz / ($2 > 0 ? $2 : 1), $2 }' <<<"${sum[fv]}")
read -r fo_cpu fo_n < <(awk -v hz="$hz" '{ printf "%.2f %d\n", $1 * 1e6 / hz / ($2 > 0 ? $2 : 1), $2 }' <<<"${sum[fo]}")
row[fv-ad]=$(ad "$P_FV")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) printf "-"; else printf "%.2f", a / b }'; }
field() { echo "${row[$1]}" | awk -v i="$2" '{ print $i }'; }
uver=$(unbound -V 2>/dev/null | awk '/^Version/ { print $2 }')
{
    echo "## Cold resolution from a local signed root ($(date -u +%FT%TZ), pzdns $label, Unbound $uver)"
    echo
    echo "$NAMES unique names per zone, each asked once at $RATE qps, in $ROUNDS rounds (each server in turn within a round; the figures pool the rounds); servers on CPU $SERVER_CPU (one worker / one thread), NSDs and dnsperf on CPU $CLIENT_CPU. CPU: the server's process, every thread, over the names answered. Leaf queries: what the leaf NSD answered, per name (0: answered from what the server held, not resolved). The ratios compare pzdns with the Unbound rows that resolve every name."
    echo
    echo "| server | dnssec | AD on a secure name | secure.test.: CPU µs per name | answered (NOERROR) | leaf queries per name | insecure.test.: CPU µs per name | answered (NOERROR) | leaf queries per name |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for s in pv po uv ui ua; do
        case $s in
            pv) who="pzdns $label (recursive)" v=validate ;;
            po) who="pzdns $label (recursive)" v=off ;;
            uv) who="unbound (validator iterator, aggressive-nsec: no)" v=validate ;;
            ua) who="unbound as it comes (aggressive-nsec: yes), for reference" v=validate ;;
            ui) who="unbound (iterator)" v=off ;;
        esac
        a=$(field "$s-secure.test" 1) b=$(field "$s-secure.test" 2) c=$(field "$s-secure.test" 3) d=$(field "$s-secure.test" 4)
        e=$(field "$s-insecure.test" 1) f=$(field "$s-insecure.test" 2) g=$(field "$s-insecure.test" 3) h=$(field "$s-insecure.test" 4)
        echo "| $who | $v | ${row[$s-ad]} | $a | $b ($c) | $d | $e | $f ($g) | $h |"
    done
    for v in "pv uv validate" "po ui off"; do
        read -r p u name <<<"$v"
        # A pzdns whose recursive mode does not validate yet gives no AD: its row measures no validation.
        note="goal ≤ 1"
        [ "$name" = validate ] && [ "${row[$p-ad]}" = no ] && note="pzdns gave no AD: it did not validate"
        echo "| pzdns / unbound | $name | | $(ratio "$(field "$p-secure.test" 1)" "$(field "$u-secure.test" 1)") ($note) | | | $(ratio "$(field "$p-insecure.test" 1)" "$(field "$u-insecure.test" 1)") ($note) | | |"
    done
    echo
    echo "Cache hits, pzdns forward mode (upstream: an iterating Unbound): $HITS names under secure.test. asked once, then again at $HIT_RATE qps for $DURATION s in all, in $ROUNDS rounds alternating validate and off."
    echo
    echo "| pzdns $label forward | AD on a secure name | CPU µs per hit | answered |"
    echo "|---|---|---|---|"
    echo "| dnssec validate | ${row[fv-ad]} | $fv_cpu | $fv_n |"
    echo "| dnssec off | | $fo_cpu | $fo_n |"
    echo "| validate / off | | $(ratio "$fv_cpu" "$fo_cpu") (goal ≤ 1.05) | |"
} | tee "$OUT/table.md"
mkdir -p "$(dirname "$RESULT")"
{ cat "$OUT/table.md"; echo; } >>"$RESULT"
echo "appended to $RESULT" >&2
