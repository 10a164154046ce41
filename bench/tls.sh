#!/usr/bin/env bash
# DNS over TLS and over HTTPS beside Unbound (issue #28, "Speed"), and plain
# UDP with cookies on and off. Both servers answer the same data (NAMES A
# records under bench.test, as Unbound `local-data` and as a pzdns master
# file, plus names that do not exist: NXDOMAIN with the SOA from both), with
# the same certificate (a test PKI made here with openssl, P-256) over TLS 1.3.
#
#   bash bench/tls.sh                      # target/release/pzdns, every mode
#   SHORT=1 bash bench/tls.sh              # smoke run: 2 s per measurement, one rep
#   MODES="dot doh" bash bench/tls.sh      # some of: dot doh handshake dnsperf-doh cookies
#   PZDNS_BIN=/tmp/old/pzdns LABEL=before bash bench/tls.sh
#
# Each server is pinned to SERVER_CPU (pzdns --workers 1, Unbound
# num-threads 1), the load generator to CLIENT_CPU. For every measurement:
# answered queries per second, the server's CPU (utime+stime of every
# thread, from /proc/PID/task/*/schedstat) per answered query, and the
# queries per second one core would answer at that cost (1 s / CPU per
# query): read that, since the load generator, on one core too, may not
# saturate the faster server. Modes:
#
#   dot          dnsperf -m dot, CONNS connections, OUTSTANDING queries in flight (pipelined).
#   doh          h2load (nghttp2-client), HTTP/2, CONNS connections, STREAMS streams each:
#                POST of one query, and GET cycling through every query (?dns=, base64url).
#                Not dnsperf: dnsperf 2.10-2.14 loses an answer that it reads in the same
#                pass as another one (its issue 240; it returns NGHTTP2_ERR_PAUSE from the
#                data callback and drops that chunk, which nghttp2 counts as delivered). A
#                server that writes one TLS record per response (Unbound) never shows it;
#                one that puts several responses in a record (hyper/h2 in pzdns) does.
#                STREAMS is at most pzdns's SETTINGS_MAX_CONCURRENT_STREAMS: h2load opens
#                its first streams before the server's SETTINGS arrive and counts the ones
#                refused (REFUSED_STREAM) as errors.
#   dnsperf-doh  dnsperf -m doh POST with OUTSTANDING in flight: answered and lost, to show
#                the above (not a speed figure).
#   handshake    HANDSHAKERS parallel `openssl s_time -new -tls1_3` on the DoT port: full
#                handshakes (no resumption), then close; server CPU per handshake and
#                handshakes per second per core at that cost.
#   cookies      pzdns alone over plain UDP, dnsperf at a fixed COOKIE_QPS (the same
#                offered load for every run): CPU per query with `cookies: off` and `on`,
#                for queries with EDNS and no cookie, a client cookie alone (-E 10:...),
#                and a client cookie with a valid server cookie (read with dig +cookie
#                from the same source address). Runs alternate off/on, REPS times;
#                medians. Target (issue #28): on within ±3% of off.
#
# The table goes to stdout and to RESULTS (default bench/results/tls-DATE.md); raw
# output in OUT. Everything stays on loopback; every process started is stopped by
# its PID, also on exit. Needs unbound (with DoH: built with libnghttp2, as
# Debian's), dnsperf, h2load (nghttp2-client), openssl, dig, taskset: as root,
# what is missing is installed with apt-get.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
label=${LABEL:-$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo pzdns)}
if [ -n "${SHORT:-}" ]; then DURATION=${DURATION:-2} REPS=${REPS:-1}; fi
DURATION=${DURATION:-10}
REPS=${REPS:-3}
MODES=${MODES:-dot doh dnsperf-doh handshake cookies}
NAMES=${NAMES:-1000}
CONNS=${CONNS:-4}
OUTSTANDING=${OUTSTANDING:-100}
STREAMS=${STREAMS:-16}
HANDSHAKERS=${HANDSHAKERS:-4}
COOKIE_QPS=${COOKIE_QPS:-20000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
OUT=${OUT:-/tmp/pzdns-tls}
RESULTS=${RESULTS:-$here/results/tls-$(date -u +%F).md}
P_PZ=5481 P_UB=5491 # UDP; DoT on +1, DoH on +2
[ -x "$bin" ] || { echo "no pzdns binary at $bin: cargo build --release first" >&2; exit 1; }
# package:command; what is missing is installed as root with apt-get, as bench/peers.sh does.
missing=""
for p in unbound:unbound dnsperf:dnsperf nghttp2-client:h2load openssl:openssl bind9-dnsutils:dig util-linux:taskset python3:python3; do
    command -v "${p#*:}" >/dev/null || missing="$missing ${p%%:*}"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "needed:$missing (apt-get install them)" >&2; exit 1; }
    apt-get update -qq || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
rm -rf "$OUT"; mkdir -p "$OUT/zones"
pids=()
cleanup() { for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The test PKI: a CA and a leaf for dns.bench.test and 127.0.0.1.
(
    cd "$OUT"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca
    printf 'subjectAltName=DNS:dns.bench.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=dns.bench.test
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile leaf.ext
) >"$OUT/pki.log" 2>&1 || { cat "$OUT/pki.log" >&2; exit 1; }

# The data: hN.bench.test A for N < NAMES, and one query in 20 for a name that does not exist.
awk -v n="$NAMES" 'BEGIN {
    print "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 10.0.0.53"
    for (i = 0; i < n; i++) printf "h%d A 10.%d.%d.%d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256
}' >"$OUT/zones/bench.test.zone"
awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++) { printf "h%d.bench.test A\n", i; if (i % 20 == 19) printf "nx%d.bench.test A\n", i } }' >"$OUT/queries.txt"
# h2load's inputs: one POST body, and a GET URI per query.
python3 - "$OUT" "$P_PZ" "$P_UB" <<'PY'
import base64, struct, sys
out, ports = sys.argv[1], sys.argv[2:]
def wire(name, qid=0):
    b = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip('.').split('.'):
        b += bytes([len(label)]) + label.encode()
    return b + b'\0' + struct.pack('>HH', 1, 1)
open(f'{out}/post.bin', 'wb').write(wire('h1.bench.test'))
names = [l.split()[0] for l in open(f'{out}/queries.txt')]
for p in ports:
    with open(f'{out}/get-{p}.txt', 'w') as f:
        for n in names:
            f.write(f'https://127.0.0.1:{int(p) + 2}/dns-query?dns={base64.urlsafe_b64encode(wire(n)).decode().rstrip("=")}\n')
PY

# pzdns: the zone in one VPC that holds every loopback source.
printf 'vpcs:\n  - { id: vpc-bench, cidrs: [127.0.0.0/8] }\n' >"$OUT/zones/vpcs.yaml"
printf 'zone: bench.test\nvpcs: [vpc-bench]\nmaster_file: bench.test.zone\n' >"$OUT/zones/bench.test.yaml"
openssl rand -hex 16 >"$OUT/cookie.secret"
pzdns_config() { # cookies(on|off) -> file
    cat >"$OUT/pzdns-$1.yaml" <<EOF
listen:
  - address: 127.0.0.1:$P_PZ
  - address: 127.0.0.1:$((P_PZ + 1))
    transport: tls
    tls: { cert: $OUT/server.pem, key: $OUT/server.key }
  - address: 127.0.0.1:$((P_PZ + 2))
    transport: https
    tls: { cert: $OUT/server.pem, key: $OUT/server.key }
zones_dir: $OUT/zones
upstreams: []
admin:
  listen: "off"
resolver:
  dnssec: off
cookies: $1
cookie_secret_file: $OUT/cookie.secret
EOF
    "$bin" check --config "$OUT/pzdns-$1.yaml" >"$OUT/check.log" 2>&1 || { cat "$OUT/check.log" >&2; exit 1; }
    echo "$OUT/pzdns-$1.yaml"
}
# Unbound: the same records as local-data (a static zone: other names NXDOMAIN with the SOA).
{
    cat <<EOF
server:
  interface: 127.0.0.1@$P_UB
  interface: 127.0.0.1@$((P_UB + 1))
  interface: 127.0.0.1@$((P_UB + 2))
  port: $P_UB
  tls-port: $((P_UB + 1))
  https-port: $((P_UB + 2))
  http-endpoint: "/dns-query"
  tls-service-key: "$OUT/server.key"
  tls-service-pem: "$OUT/server.pem"
  do-ip6: no
  num-threads: 1
  # Connections per thread (default 10): more than the load generators open.
  incoming-num-tcp: 256
  username: ""
  chroot: ""
  directory: "$OUT"
  pidfile: "$OUT/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "bench.test." static
  local-data: "bench.test. 300 IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300"
  local-data: "bench.test. 300 IN NS ns.bench.test."
  local-data: "ns.bench.test. 300 IN A 10.0.0.53"
EOF
    awk '/^h/ { printf "  local-data: \"%s.bench.test. 300 IN A %s\"\n", $1, $3 }' "$OUT/zones/bench.test.zone"
    printf 'remote-control:\n  control-enable: no\n'
} >"$OUT/unbound.conf"

ready() { # port
    for _ in $(seq 100); do
        dig +short +tries=1 +time=1 -p "$1" @127.0.0.1 h1.bench.test A 2>/dev/null | grep -q 10.0.0.1 && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}
start_pzdns() { # cookies -> sets pz_pid
    taskset -c "$SERVER_CPU" "$bin" serve --config "$(pzdns_config "$1")" --workers 1 >"$OUT/pzdns-$1.log" 2>&1 &
    pz_pid=$!
    pids+=("$pz_pid")
    ready $P_PZ
}
start_unbound() { # -> sets ub_pid
    taskset -c "$SERVER_CPU" unbound -d -c "$OUT/unbound.conf" >"$OUT/unbound.log" 2>&1 &
    ub_pid=$!
    pids+=("$ub_pid")
    ready $P_UB
}
stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Each client prints "answered lost" for its run; measure adds the server's CPU.
client_dot() { # port tag
    taskset -c "$CLIENT_CPU" dnsperf -m dot -s 127.0.0.1 -p "$1" -d "$OUT/queries.txt" -c "$CONNS" -q "$OUTSTANDING" \
        -l "$DURATION" -t 5 >"$OUT/$2.out" 2>&1
    awk '/Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 } END { print c + 0, l + 0 }' "$OUT/$2.out"
}
client_dnsperf_doh() { # port tag
    taskset -c "$CLIENT_CPU" dnsperf -m doh -O doh-method=POST -O "doh-uri=https://127.0.0.1:$1/dns-query" -s 127.0.0.1 -p "$1" \
        -d "$OUT/queries.txt" -c "$CONNS" -q "$OUTSTANDING" -l "$DURATION" -t 5 >"$OUT/$2.out" 2>&1
    awk '/Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 } END { print c + 0, l + 0 }' "$OUT/$2.out"
}
h2load_counts() { # file -> "answered lost": 2xx answers; failed, errored and timed out requests
    awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($i ~ /^(failed|errored|timeout)/) l += $(i - 1) }
         /^status codes:/ { ok = $3 } END { print ok + 0, l + 0 }' "$1"
}
client_doh_post() { # udp-port tag
    taskset -c "$CLIENT_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" -d "$OUT/post.bin" \
        -H 'content-type: application/dns-message' -H 'accept: application/dns-message' \
        "https://127.0.0.1:$(($1 + 2))/dns-query" >"$OUT/$2.out" 2>&1
    h2load_counts "$OUT/$2.out"
}
client_doh_get() { # udp-port tag
    taskset -c "$CLIENT_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" -i "$OUT/get-$1.txt" \
        -H 'accept: application/dns-message' >"$OUT/$2.out" 2>&1
    h2load_counts "$OUT/$2.out"
}
client_handshake() { # dot-port tag
    local i hp=()
    for i in $(seq "$HANDSHAKERS"); do
        taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$1" -new -tls1_3 -time "$DURATION" >"$OUT/$2-$i.out" 2>&1 &
        hp+=($!)
    done
    wait "${hp[@]}"
    # "N connections in T real seconds": the last such line of each.
    cat "$OUT/$2"-*.out | awk '/connections in .* real seconds/ { n += $1 } END { print n + 0, 0 }'
}
# measure PID CLIENT PORT TAG -> "answered lost cpu_us_per_answer"
measure() {
    local pid=$1 client=$2 port=$3 tag=$4 c0 c1 answered lost
    c0=$(cpu_ns "$pid")
    read -r answered lost < <("$client" "$port" "$tag")
    c1=$(cpu_ns "$pid")
    awk -v d="$((c1 - c0))" -v n="$answered" -v l="$lost" 'BEGIN { printf "%d %d %.2f\n", n, l, (n > 0 ? d / 1000 / n : 0) }'
}

rows=()
row() { # what server answered lost us
    local qps per_core
    qps=$(awk -v n="$3" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
    per_core=$(awk -v u="$5" 'BEGIN { printf "%.0f", (u > 0 ? 1e6 / u : 0) }')
    rows+=("| $1 | $2 | $qps | $4 | $5 | $per_core |")
    log "$1 $2: $qps/s answered, $4 lost, $5 µs CPU each, $per_core/s per core"
}
has() { case " $MODES " in *" $1 "*) return 0 ;; esac; return 1; }

if has dot || has doh || has dnsperf-doh || has handshake; then
    start_unbound
    start_pzdns on
    # Warm both (connections, allocator).
    for srv in "unbound $ub_pid $P_UB" "pzdns $pz_pid $P_PZ"; do
        read -r name pid port <<<"$srv"
        DURATION=1 client_dot $((port + 1)) "warm-$name" >/dev/null
    done
    declare -A acc
    for r in $(seq "$REPS"); do
        for srv in "unbound $ub_pid $P_UB" "pzdns $pz_pid $P_PZ"; do
            read -r name pid port <<<"$srv"
            m() { # key client port
                local a l u
                read -r a l u < <(measure "$pid" "$2" "$3" "$name-$1-$r")
                acc[$name,$1,a]+=" $a" acc[$name,$1,l]+=" $l" acc[$name,$1,u]+=" $u"
            }
            has dot && m dot client_dot $((port + 1))
            has doh && m doh-post client_doh_post "$port"
            has doh && m doh-get client_doh_get "$port"
            has dnsperf-doh && m dnsperf-doh client_dnsperf_doh $((port + 2))
            has handshake && m handshake client_handshake $((port + 1))
        done
    done
    stop "$pz_pid"
    stop "$ub_pid"
    for k in dot doh-post doh-get dnsperf-doh handshake; do
        for name in unbound pzdns; do
            [ -n "${acc[$name,$k,a]:-}" ] || continue
            case $k in
                dot) what="DoT, dnsperf -m dot -c $CONNS -q $OUTSTANDING" ;;
                doh-post) what="DoH POST, h2load -c $CONNS -m $STREAMS (HTTP/2)" ;;
                doh-get) what="DoH GET, h2load -c $CONNS -m $STREAMS (HTTP/2)" ;;
                dnsperf-doh) what="DoH POST, dnsperf -m doh -c $CONNS -q $OUTSTANDING (loses answers: see bench/tls.sh)" ;;
                handshake) what="TLS 1.3 handshakes, $HANDSHAKERS × openssl s_time -new (a row is a handshake)" ;;
            esac
            row "$what" "$name" "$(median <<<"${acc[$name,$k,a]}")" "$(median <<<"${acc[$name,$k,l]}")" "$(median <<<"${acc[$name,$k,u]}")"
        done
    done
fi

cookie_rows=()
if has cookies; then
    # The traffic: EDNS and no cookie; a client cookie alone; a client cookie and the
    # server cookie pzdns gave this source for it (valid for an hour: one per start).
    client_hex=0123456789abcdef
    declare -A cacc
    for r in $(seq "$REPS"); do
        for cookies in on off; do
            start_pzdns "$cookies"
            full=$(dig -b 127.0.0.1 -p $P_PZ @127.0.0.1 +cookie=$client_hex h1.bench.test A | sed -n 's/.*COOKIE: \([0-9a-f]*\).*/\1/p')
            [ "$cookies" = off ] || [ "${#full}" -gt 16 ] || { echo "no server cookie from pzdns (cookies: on)" >&2; exit 1; }
            # With cookies off pzdns sends none: the server half is one it would have made.
            [ "$cookies" = on ] && server_hex=${full#"$client_hex"}
            DURATION=1 client_dot $((P_PZ + 1)) warm >/dev/null
            for traffic in edns client server; do
                case $traffic in
                    edns) opt=(-e) ;;
                    client) opt=(-E "10:$client_hex") ;;
                    server) opt=(-E "10:$client_hex${server_hex:-0000000000000000}") ;;
                esac
                [ "$traffic" = server ] && [ -z "${server_hex:-}" ] && continue
                c0=$(cpu_ns "$pz_pid")
                taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -a 127.0.0.1 -p $P_PZ -d "$OUT/queries.txt" -c 4 -q 100 -t 2 \
                    -l "$DURATION" -Q "$COOKIE_QPS" "${opt[@]}" >"$OUT/udp-$cookies-$traffic-$r.out" 2>&1
                c1=$(cpu_ns "$pz_pid")
                n=$(awk '/Queries completed:/ { print $3 }' "$OUT/udp-$cookies-$traffic-$r.out")
                u=$(awk -v d="$((c1 - c0))" -v n="${n:-0}" 'BEGIN { printf "%.3f", (n > 0 ? d / 1000 / n : 0) }')
                log "UDP cookies: $cookies, $traffic: $n answered, $u µs CPU each"
                cacc[$cookies,$traffic]+=" $u"
            done
            stop "$pz_pid"
        done
    done
    for traffic in edns client server; do
        [ -n "${cacc[off,$traffic]:-}" ] && [ -n "${cacc[on,$traffic]:-}" ] || continue
        off=$(median <<<"${cacc[off,$traffic]}") on=$(median <<<"${cacc[on,$traffic]}")
        case $traffic in
            edns) what="EDNS, no cookie (dnsperf -e)" ;;
            client) what="a client cookie (dnsperf -E 10:<8 bytes>)" ;;
            server) what="a client cookie and a valid server cookie (-E 10:<24 bytes>)" ;;
        esac
        cookie_rows+=("| $what | $off | $on | $(awk -v a="$on" -v b="$off" 'BEGIN { printf "%+.1f%%", (b > 0 ? 100 * (a - b) / b : 0) }') |")
    done
fi

{
    echo "## DoT and DoH beside Unbound, $label ($(date -u +%FT%TZ))"
    echo
    echo "One core each (taskset $SERVER_CPU; pzdns --workers 1, Unbound num-threads 1), the load generator on core $CLIENT_CPU;"
    echo "TLS 1.3, one P-256 certificate for both; $NAMES names (A) and 5% NXDOMAIN; DURATION=$DURATION s, median of $REPS."
    echo "Unbound $(unbound -V 2>/dev/null | awk '/^Version/ { print $2 }'), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }'), $(h2load --version 2>&1 | head -1), $(openssl version | awk '{ print $1, $2 }')."
    echo
    if [ ${#rows[@]} -gt 0 ]; then
        echo "| load | server | answered per second | lost | CPU µs per answer | answers per second per core |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${rows[@]}"
        echo
    fi
    if [ ${#cookie_rows[@]} -gt 0 ]; then
        echo "pzdns over plain UDP, dnsperf -c 4 -Q $COOKIE_QPS (the same offered load for each), CPU µs per answer:"
        echo
        echo "| queries | cookies: off | cookies: on | on vs off (target ±3%) |"
        echo "|---|---|---|---|"
        printf '%s\n' "${cookie_rows[@]}"
        echo
    fi
} | tee -a "$RESULTS"
