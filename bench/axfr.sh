#!/usr/bin/env bash
# AXFR beside Knot (issue #29, "Speed"): one zone of RECORDS records (A,
# AAAA, CNAME, TXT), one master file served by pzdns (a YAML zone naming
# it, a TSIG key as `transfers:` requires) and by Knot as primary (same
# file, same key); Knot as the secondary transfers from each in turn.
#
#   bash bench/axfr.sh                              # target/release/pzdns, 1,000,000 records
#   SHORT=1 bash bench/axfr.sh                      # a smoke run: 50,000 records, short phases
#   PZDNS_BIN=/tmp/old/pzdns LABEL=before bash bench/axfr.sh
#
# 1. Transfers: ROUNDS rounds, each a fresh secondary (empty storage,
#    nothing written to disk) per primary, alternating; the wall time is
#    the one Knot's secondary logs for the AXFR ("finished, N seconds"),
#    the primary's CPU is its process's utime+stime (every thread, from
#    /proc) from the secondary's start to that line. The table: the
#    median wall time, the mean CPU (read in clock ticks: the mean over
#    every round is the finer figure).
# 2. Answering during transfers: dnsperf at RATE qps for DURATION s to the
#    primary's UDP listener, quiet, then while the secondary re-transfers
#    the zone from it in a loop (knotc zone-retransfer, one after the
#    other). Two p99s, a lost query counting as slower than every answer:
#    - on the wire (the goal's figure): a capture on lo (tcpdump), each
#      query's packet to its response's, as the kernel stamped them
#      (bench/pcap_latency.py): the server's latency alone;
#    - as dnsperf sees it (-v): also the load generator's own delays in
#      getting the CPU to send and to read, which on a shared core are
#      not the server's.
# pzdns runs with --workers 1: UDP and the transfer share one thread, as
# Knot's UDP and TCP workers share its one core.
# Primaries on SERVER_CPU (one at a time busy), the secondary, dnsperf and
# tcpdump on CLIENT_CPU. During phase 2 the secondary and tcpdump run at
# SCHED_IDLE (chrt -i): a task at nice 19 still holds the core for up to a
# scheduler slice when dnsperf wakes (several ms under EEVDF, seen with
# `perf sched timehist`), which dnsperf counts as the primary's latency;
# at SCHED_IDLE a waking dnsperf runs at once. Results as markdown in
# bench/results/axfr-DATE.md (RESULT to choose), raw files in $OUT.
# Everything stays on loopback; every process started is stopped by its
# PID, also on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
label=${LABEL:-$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo pzdns)}
if [ -n "${SHORT:-}" ]; then
    RECORDS=${RECORDS:-50000} ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-5} RATE=${RATE:-5000} REPS=${REPS:-1}
fi
RECORDS=${RECORDS:-1000000}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
REPS=${REPS:-3}
RATE=${RATE:-20000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
OUT=${OUT:-/tmp/pzdns-axfr}
RESULT=${RESULT:-$here/results/axfr-$(date -u +%F).md}
P_PZDNS=${P_PZDNS:-25380} P_KNOT=${P_KNOT:-25381} P_SEC=${P_SEC:-25382}
ZONE=xfr.bench
SECRET=YmVuY2gta2V5LW9mLXRoZS1heGZyLWJlbmNoLCAzMiBi
[ -x "$bin" ] || { echo "no pzdns binary at $bin: cargo build --release first" >&2; exit 1; }
for t in knotd knotc dnsperf kdig taskset chrt tcpdump python3; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "$t is needed (apt-get install knot knot-dnsutils dnsperf util-linux tcpdump python3)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin
for p in $P_PZDNS $P_KNOT $P_SEC; do
    ! ss -Hlntu "sport = :$p" | grep -q . || { echo "port $p is taken: choose others (P_PZDNS, P_KNOT, P_SEC)" >&2; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT/zones" "$OUT/knot"
# This script and everything it starts (the retransfer loop's knotc, grep
# and sleep included) stay off the primaries' core: a process started
# there at normal priority stalls the primary being measured for as long
# as its start-up takes. The primaries are moved to SERVER_CPU by name.
taskset -pc "$CLIENT_CPU" $$ >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The zone, as an operator would write it (a master file), and the names
# dnsperf asks (every 7th name of the zone, each type as it is in the zone).
python3 - "$RECORDS" "$OUT/zones/$ZONE.zone" "$OUT/queries.txt" "$ZONE" <<'EOF'
import sys
n, path, queries, zone = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(path, "w") as f, open(queries, "w") as q:
    f.write(f"$ORIGIN {zone}.\n$TTL 3600\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    out = []
    # Three records above; the rest: 60% A, 20% AAAA, 10% CNAME, 10% TXT.
    for i in range(n - 3):
        k = i % 10
        if k < 6:
            line, t = f"h{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n", "A"
        elif k < 8:
            line, t = f"h{i} AAAA 2001:db8::{(i >> 16) & 0xffff:x}:{i & 0xffff:x}\n", "AAAA"
        elif k == 8:
            line, t = f"h{i} CNAME h{i - 8}\n", "CNAME"
        else:
            line, t = f'h{i} TXT "v=bench1 record {i} of the transfer bench"\n', "TXT"
        out.append(line)
        if i % 7 == 0:
            q.write(f"h{i}.{zone} {t}\n")
        if len(out) >= 10000:
            f.writelines(out)
            out = []
    f.writelines(out)
EOF
printf '%s\n' "$SECRET" >"$OUT/bench.key"

# pzdns: the zone for one VPC (all of loopback), the key standing for it.
printf 'vpcs:\n  - { id: vpc-onprem, cidrs: [127.0.0.0/8] }\n' >"$OUT/zones/vpcs.yaml"
printf 'zone: %s\nvpcs: [vpc-onprem]\nmaster_file: %s.zone\n' "$ZONE" "$ZONE" >"$OUT/zones/$ZONE.yaml"
cat >"$OUT/pzdns.yaml" <<EOF
listen:
  - address: 127.0.0.1:$P_PZDNS
upstreams: []
resolver:
  dnssec: off
transfers:
  keys:
    - { name: bench-key, algorithm: hmac-sha256, secret_file: $OUT/bench.key, vpc: vpc-onprem }
EOF
"$bin" check --config "$OUT/pzdns.yaml" --zones "$OUT/zones" >"$OUT/pzdns-check.txt" 2>&1 || { cat "$OUT/pzdns-check.txt" >&2; exit 1; }
taskset -c "$SERVER_CPU" "$bin" serve --config "$OUT/pzdns.yaml" --zones "$OUT/zones" --admin off --workers 1 >"$OUT/pzdns.log" 2>&1 &
pzdns_pid=$!
pids+=("$pzdns_pid")

# Knot as primary of the same file with the same key.
cat >"$OUT/knot/knot.conf" <<EOF
server:
  listen: 127.0.0.1@$P_KNOT
  rundir: "$OUT/knot"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: info
database:
  storage: "$OUT/knot"
key:
  - id: bench-key
    algorithm: hmac-sha256
    secret: $SECRET
acl:
  - id: secondary
    address: 127.0.0.0/8
    key: bench-key
    action: transfer
template:
  - id: default
    storage: "$OUT/zones"
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
zone:
  - domain: $ZONE
    file: $ZONE.zone
    acl: secondary
EOF
taskset -c "$SERVER_CPU" knotd -c "$OUT/knot/knot.conf" >"$OUT/knot/knot.log" 2>&1 &
knot_pid=$!
pids+=("$knot_pid")

# Both answer the zone's SOA once loaded (a large zone takes a while).
ready() { # port
    for _ in $(seq 1200); do
        kdig +short +retry=0 +time=1 -p "$1" @127.0.0.1 "$ZONE" SOA 2>/dev/null | grep -q hostmaster && return 0
        sleep 0.25
    done
    echo "nothing answers $ZONE SOA on port $1 (logs in $OUT)" >&2
    return 1
}
ready $P_PZDNS
ready $P_KNOT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# A secondary of $ZONE from the primary on port $1, in directory $2; $3
# "idle" runs it at SCHED_IDLE.
secondary_start() {
    local port=$1 d=$2 prio=$3
    rm -rf "$d"; mkdir -p "$d"
    cat >"$d/knot.conf" <<EOF
server:
  listen: 127.0.0.1@$P_SEC
  rundir: "$d"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
control:
  listen: "$d/knot.sock"
log:
  - target: stderr
    any: info
database:
  storage: "$d"
key:
  - id: bench-key
    algorithm: hmac-sha256
    secret: $SECRET
remote:
  - id: primary
    address: 127.0.0.1@$port
    key: bench-key
template:
  - id: default
    storage: "$d"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
    semantic-checks: off
zone:
  - domain: $ZONE
    master: primary
EOF
    local sched=()
    [ "$prio" = idle ] && sched=(chrt -i 0)
    taskset -c "$CLIENT_CPU" "${sched[@]}" knotd -c "$d/knot.conf" >"$d/knot.log" 2>&1 &
    sec_pid=$!
    pids+=("$sec_pid")
}
secondary_stop() {
    kill "$sec_pid" 2>/dev/null || true
    wait "$sec_pid" 2>/dev/null || true
}
# Waits until the secondary's log holds $2 finished incoming AXFRs (or a
# failed one, which ends the run).
transfers_done() { grep -c 'AXFR, incoming.*finished' "$1/knot.log" 2>/dev/null || true; }
wait_transfers() { # dir count
    for _ in $(seq 2400); do
        [ "$(transfers_done "$1")" -ge "$2" ] && return 0
        if grep -q 'AXFR, incoming.*failed' "$1/knot.log" 2>/dev/null; then
            echo "a transfer failed: $1/knot.log" >&2
            grep 'AXFR' "$1/knot.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "no transfer finished in 120 s: $1/knot.log" >&2
    exit 1
}

# Phase 1: one transfer from each primary per round, a fresh secondary each time.
# transfer NAME PORT PID -> "seconds cpu_seconds messages bytes", appended to $OUT/NAME.transfers
transfer() {
    local name=$1 port=$2 pid=$3 d="$OUT/sec-$1"
    local t0 t1
    t0=$(cpu_ticks "$pid")
    secondary_start "$port" "$d" normal
    wait_transfers "$d" 1
    t1=$(cpu_ticks "$pid")
    secondary_stop
    # Knot 3.2: "... AXFR, incoming, remote 127.0.0.1@5380 TCP, finished, 1.23 seconds, 456 messages, 7890 bytes"
    grep 'AXFR, incoming.*finished' "$d/knot.log" | tail -1 | awk -v d="$((t1 - t0))" -v hz="$hz" '{
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^seconds/) s = $i
            if ($(i + 1) ~ /^messages/) m = $i
            if ($(i + 1) ~ /^bytes/) b = $i
        }
        printf "%s %.3f %s %s\n", s, d / hz, m, b }' >>"$OUT/$name.transfers"
}
for _ in $(seq "$ROUNDS"); do
    transfer pzdns $P_PZDNS "$pzdns_pid"
    transfer knot $P_KNOT "$knot_pid"
done
# median COLUMN FILE
median() { sort -g -k"$1","$1" "$2" | awk -v c="$1" '{ v[NR] = $c } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# mean COLUMN FILE: CPU is read in clock ticks; the mean over every round
# is finer than any one round's figure.
mean() { awk -v c="$1" '{ t += $c } END { printf "%.3f\n", t / NR }' "$2"; }

# Phase 2: p99 at RATE qps, quiet and during transfers from that primary.
# p99 NAME PORT TAG -> "wire_p99 dnsperf_p99 answered lost wire_lost
# capture_drops" in $OUT/NAME-TAG.p99 (ms; "lost" when the 99th is a lost query).
p99() {
    local name=$1 port=$2 tag=$3
    taskset -c "$CLIENT_CPU" chrt -i 0 tcpdump -i lo -n -s 64 -B 262144 --time-stamp-precision=nano \
        -w "$OUT/$name-$tag.pcap" "udp port $port" 2>"$OUT/$name-$tag.tcpdump" &
    local td=$!
    pids+=("$td")
    # tcpdump says "listening on" once its capture is open.
    for _ in $(seq 100); do grep -q listening "$OUT/$name-$tag.tcpdump" && break; sleep 0.05; done
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.txt" -l "$DURATION" -Q "$RATE" -q 500 -t 2 -v \
        >"$OUT/$name-$tag.out" 2>&1
    kill -INT "$td"
    wait "$td" 2>/dev/null || true
    local drops wire
    drops=$(awk '/dropped by kernel/ { print $1 }' "$OUT/$name-$tag.tcpdump")
    read -r _ wire_lost wire < <(python3 "$here/pcap_latency.py" "$OUT/$name-$tag.pcap" "$port" 0.99)
    rm -f "$OUT/$name-$tag.pcap"
    # -v: one line per answer, "> RCODE NAME TYPE LATENCY" (seconds).
    awk '/^> / { print $NF }' "$OUT/$name-$tag.out" | sort -g >"$OUT/$name-$tag.lat"
    local n lost
    n=$(wc -l <"$OUT/$name-$tag.lat")
    lost=$(awk '/Queries lost:/ { print $3 }' "$OUT/$name-$tag.out")
    [ "$n" -gt 0 ] || { echo "dnsperf got no answers from $name ($OUT/$name-$tag.out)" >&2; exit 1; }
    awk -v n="$n" -v lost="$lost" -v wire="$wire" -v wl="$wire_lost" -v drops="${drops:-?}" '
        BEGIN { k = int((n + lost) * 0.99 + 0.999999); if (k > n) { printf "%s lost %d %d %d %s\n", wire, n, lost, wl, drops; exit } }
        NR == k { printf "%s %.3f %d %d %d %s\n", wire, $1 * 1000, n, lost, wl, drops }' "$OUT/$name-$tag.lat" >"$OUT/$name-$tag.p99"
}
# loaded NAME PORT -> as p99, while the secondary re-transfers in a loop
loaded() {
    local name=$1 port=$2 tag=$3 d="$OUT/loop-$1"
    secondary_start "$port" "$d" idle
    wait_transfers "$d" 1
    (
        while :; do
            have=$(transfers_done "$d")
            knotc -s "$d/knot.sock" zone-retransfer "$ZONE" >/dev/null 2>&1 || exit 0
            for _ in $(seq 2400); do
                [ "$(transfers_done "$d")" -gt "$have" ] && break
                sleep 0.05
            done
        done
    ) &
    local loop=$!
    pids+=("$loop")
    local before; before=$(transfers_done "$d")
    p99 "$name" "$port" "$tag"
    kill "$loop" 2>/dev/null || true
    wait "$loop" 2>/dev/null || true
    echo "$(( $(transfers_done "$d") - before ))" >"$OUT/$name-$tag.transfers"
    secondary_stop
}
# Warm both (sockets, allocator) on the same names.
DURATION=2 p99 pzdns $P_PZDNS warm
DURATION=2 p99 knot $P_KNOT warm
# REPS rounds, alternating, each quiet then loaded: the table gives the
# median of each figure over the rounds (the machine's own noise moves a
# single round's p99 more than the transfers do).
for r in $(seq "$REPS"); do
    p99 pzdns $P_PZDNS "quiet-$r"
    loaded pzdns $P_PZDNS "loaded-$r"
    p99 knot $P_KNOT "quiet-$r"
    loaded knot $P_KNOT "loaded-$r"
done
# med NAME TAG FIELD -> the median of field FIELD of NAME-TAG-*.p99 ("lost" sorts last).
med() {
    for f in "$OUT/$1-$2"-*.p99; do awk -v c="$3" '{ print ($c == "lost" ? 1e9 : $c) }' "$f"; done |
        sort -g | awk '{ v[NR] = $1 } END { m = v[int((NR + 1) / 2)]; if (m >= 1e9) print "lost"; else print m }'
}
# total NAME TAG FIELD -> the sum over the rounds
total() { cat "$OUT/$1-$2"-*."${4:-p99}" | awk -v c="$3" '{ t += $c } END { print t }'; }
for s in pzdns knot; do
    for t in quiet loaded; do
        echo "$(med $s $t 1) $(med $s $t 2) $(total $s $t 4) $(total $s $t 5) $(total $s $t 6)" >"$OUT/$s-$t.p99"
    done
    total $s loaded 1 transfers >"$OUT/$s-loaded.transfers"
done
read -r pwq pdq pq_lost pwq_lost pq_drops <"$OUT/pzdns-quiet.p99"
read -r pwl pdl pl_lost pwl_lost pl_drops <"$OUT/pzdns-loaded.p99"
read -r kwq kdq kq_lost kwq_lost kq_drops <"$OUT/knot-quiet.p99"
read -r kwl kdl kl_lost kwl_lost kl_drops <"$OUT/knot-loaded.p99"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) printf "-"; else printf "%.2f", a / b }'; }
records=$(($(grep -c . "$OUT/zones/$ZONE.zone") - 2))
kver=$(knotd -V 2>/dev/null | awk '{ print $NF }')
{
    echo "## AXFR of $records records to Knot $kver as the secondary ($(date -u +%FT%TZ), pzdns $label, ROUNDS=$ROUNDS)"
    echo
    echo "Primaries on CPU $SERVER_CPU, secondary and dnsperf on CPU $CLIENT_CPU; $ROUNDS transfers each, alternating (all in $OUT/*.transfers); wall time as the secondary logs it (median); CPU: the primary's process, from the secondary's start to the transfer's end (mean)."
    echo
    echo "| primary | transfer wall s (median) | primary CPU s (mean) | messages | bytes |"
    echo "|---|---|---|---|---|"
    for s in pzdns knot; do
        f="$OUT/$s.transfers"
        echo "| $s | $(median 1 "$f") | $(mean 2 "$f") | $(median 3 "$f") | $(median 4 "$f") |"
    done
    echo "| pzdns / knot | $(ratio "$(median 1 "$OUT/pzdns.transfers")" "$(median 1 "$OUT/knot.transfers")") (goal ≤ 1) | $(ratio "$(mean 2 "$OUT/pzdns.transfers")" "$(mean 2 "$OUT/knot.transfers")") | | |"
    echo
    echo "Answering during transfers: $REPS rounds of dnsperf at $RATE qps for $DURATION s to the primary's UDP listener, quiet and while the secondary (at SCHED_IDLE) re-transfers the zone in a loop; p99 latency in ms over every query sent, a lost query counting as slower than any answer, the median over the rounds (raw: $OUT/*.p99); transfers, lost queries and capture drops summed over the rounds. On the wire: from a query's packet to its response's on lo (tcpdump, the server's latency); dnsperf: as the load generator saw it (also its own scheduling delays)."
    echo
    echo "| server | p99 on the wire, quiet | during transfers | during / quiet | dnsperf p99 quiet | during | during / quiet | transfers during the run | lost quiet, during: dnsperf / on the wire | capture drops |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    echo "| pzdns | $pwq | $pwl | $(ratio "$pwl" "$pwq") (goal ≤ 2) | $pdq | $pdl | $(ratio "$pdl" "$pdq") | $(cat "$OUT/pzdns-loaded.transfers") | $pq_lost, $pl_lost / $pwq_lost, $pwl_lost | $pq_drops, $pl_drops |"
    echo "| knot | $kwq | $kwl | $(ratio "$kwl" "$kwq") | $kdq | $kdl | $(ratio "$kdl" "$kdq") | $(cat "$OUT/knot-loaded.transfers") | $kq_lost, $kl_lost / $kwq_lost, $kwl_lost | $kq_drops, $kl_drops |"
} | tee "$OUT/table.md"
mkdir -p "$(dirname "$RESULT")"
{ cat "$OUT/table.md"; echo; } >>"$RESULT"
echo "appended to $RESULT" >&2
