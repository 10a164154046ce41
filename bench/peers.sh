#!/usr/bin/env bash
# pzdns beside NSD, Knot, Unbound and BIND on the same data, one UDP server core each, on
# loopback (docs/PERFORMANCE.md). bench/run.sh drives it; it also runs alone:
#
#   bash bench/peers.sh                        # every server below, defaults (~12 min)
#   bash bench/peers.sh install                # only install what is missing (as root, apt-get)
#   DURATION=5 REPS=1 SERVERS="nsd knot candidate" bash bench/peers.sh
#   CANDIDATE_CMD='exec /path/to/server --port $CANDIDATE_PORT' bash bench/peers.sh   # another server
#
# Data: bench/gen_data.py (10,000 endpoint names, an apex CNAME, 5% NXDOMAIN queries), the same
# master files for every server. Each server is pinned to SERVER_CPU with one worker, dnsperf to
# CLIENT_CPU; a server's CPU per query is the on-CPU time of every thread of every process in
# its process group (/proc/PID/task/TID/schedstat, nanoseconds) over the queries it answered.
#
# Environment knobs (defaults in brackets):
#   DURATION [15]   seconds per measured dnsperf run      WARMUP [3]  seconds of discarded warm-up
#   REPS     [3]    measured runs per scenario (median reported)
#   CLIENTS  [4]    dnsperf -c                            OUTSTANDING [100]  dnsperf -q
#            (-q 500 overflowed the default 208 KiB socket buffers of knot/bind/unbound: lost
#            queries; -q 100 saturates every server here with zero loss)
#   TIMEOUT  [1]    dnsperf -t (s) (a query unanswered after this counts as lost)
#   LAT_QPS [10000] LAT_DURATION [10]  one extra run per scenario at a fixed offered rate (dnsperf
#                   -Q) to record latency without queueing and the server's CPU cost per query
#                   below saturation; LAT_QPS=0 skips it
#   SERVER_CPU [0]  CPU the server is pinned to          CLIENT_CPU [1]  CPU dnsperf is pinned to
#   SERVERS  [ceiling nsd knot knot-apex bind bind-views unbound-local unbound-fwd candidate]
#   WORK     [/tmp/dnsbench]  scratch dir (zone data, configs, logs, raw dnsperf output)
#   RESULTS_DIR [$WORK]  peers-raw.tsv (one row per measured run) and
#            peers-summary.md (one markdown table per invocation) are APPENDED there
#   SKIP_INSTALL [0]  1: never run apt-get (otherwise, as root, missing packages are installed)
#
# The candidate is pzdns (bench/candidate.sh, release build in target/) unless CANDIDATE_CMD says
# otherwise. CANDIDATE_CMD is run as `bash -c "$CANDIDATE_CMD"` (so $VARS in it expand at launch
# time; use `exec` for the server itself), pinned to SERVER_CPU, in its own process group, with
# these variables exported: BENCH_DATA (zone files + queries: see gen_data.py), BENCH_RUN (an
# empty scratch dir for its config/logs, wiped before each start), CANDIDATE_PORT. It must serve
# UDP on 127.0.0.1:$CANDIDATE_PORT (default 5399) in the foreground; it is stopped by signalling
# the process group of the PID started (TERM, then KILL after 10 s).
#   CANDIDATE_NAME [pzdns]       label of its rows     CANDIDATE_VERSION  text of the version column
#   CANDIDATE_SOURCES [127.0.0.1]  dnsperf source addresses, one scenario each (e.g.
#                                "127.0.0.2 127.0.0.3" to compare with bind-views-1st/-2nd)
#   CANDIDATE_ZONES              free text recorded in the notes (which zone files it loaded)
#   CANDIDATE_UPSTREAM [0]       1 = also start the loopback NSD upstream on 127.0.0.1:5311
#                                (privatelink.aliyuncs.com + cn-hangzhou.aliyuncs.com) and prime
#                                the cache with one pass over the query file (forwarder candidate)
#
# All traffic stays on 127.0.0.0/8: servers listen on 127.0.0.1:53xx, recursors forward "."
# to a loopback NSD only; the eth0 TX packet delta of every scenario is recorded as a check.
# Every process started is stopped by the PID (process group) it was started as, also on exit.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-100}
TIMEOUT=${TIMEOUT:-1}
LAT_QPS=${LAT_QPS:-10000}
LAT_DURATION=${LAT_DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WORK=${WORK:-/tmp/dnsbench}
RESULTS_DIR=${RESULTS_DIR:-$WORK}
SKIP_INSTALL=${SKIP_INSTALL:-0}
if [ -z "${CANDIDATE_CMD:-}" ]; then
  CANDIDATE_CMD="exec bash $BENCH_DIR/candidate.sh"
  CANDIDATE_VERSION=${CANDIDATE_VERSION:-"pzdns $(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null)"}
  CANDIDATE_ZONES=${CANDIDATE_ZONES:-"the same master files through master_file:, three VPCs on 127.0.0.1-3"}
fi
CANDIDATE_PORT=${CANDIDATE_PORT:-5399}
CANDIDATE_NAME=${CANDIDATE_NAME:-pzdns}
CANDIDATE_SOURCES=${CANDIDATE_SOURCES:-127.0.0.1}
CANDIDATE_ZONES=${CANDIDATE_ZONES:-"(as configured by CANDIDATE_CMD)"}
CANDIDATE_UPSTREAM=${CANDIDATE_UPSTREAM:-0}
DEFAULT_SERVERS="ceiling nsd knot knot-apex bind bind-views unbound-local unbound-fwd candidate"
SERVERS=${SERVERS:-$DEFAULT_SERVERS}

DATA=$WORK/data
RUNROOT=$WORK/run
RAW=$RESULTS_DIR/peers-raw.tsv
SUMMARY=$RESULTS_DIR/peers-summary.md
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
SUMROWS=$WORK/summary-$RUN_ID.tsv

# ports
P_CEIL=5300 P_NSD=5301 P_KNOT=5302 P_KNOT_APEX=5312 P_BIND=5303 P_BINDV=5304 P_UNB_LOCAL=5305
P_UNB_FWD=5306 P_UPSTREAM=5311 P_BLACKHOLE=5390

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# --------------------------------------------------------------------------- install
install_deps() {
  [ "$SKIP_INSTALL" = 1 ] && return 0
  # package:command pairs (Debian/Ubuntu names)
  local pairs="nsd:nsd knot:knotd bind9:named unbound:unbound dnsperf:dnsperf bind9-dnsutils:dig util-linux:taskset procps:pgrep python3:python3 curl:curl"
  local missing="" p
  for p in $pairs; do command -v "${p#*:}" >/dev/null 2>&1 || missing="$missing ${p%%:*}"; done
  [ -x /usr/bin/time ] || missing="$missing time"
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing:$missing (install them, or run as root on Debian/Ubuntu; SKIP_INSTALL=1 to skip this check)"
  log "apt-get install:$missing"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null || die "apt-get install failed"
  # A packaged daemon that the service manager started is left alone (we never touch processes
  # we did not start); we use our own ports 53xx, so one on :53 does not interfere, but it would
  # compete for CPU: stop it yourself before benchmarking.
}

versions() {
  echo "nsd=$(nsd -v 2>&1 | head -1 | awk '{print $3}')"
  echo "knot=$(knotd -V 2>&1 | awk '{print $NF}')"
  echo "bind=$(named -v 2>&1 | awk '{print $2}')"
  echo "unbound=$(unbound -V 2>&1 | head -1 | awk '{print $2}')"
  echo "dnsperf=$(dnsperf -h 2>&1 | grep -i '^Version' | awk '{print $2}')"
  echo "kernel=$(uname -r)"
}
ver_of() { versions | awk -F= -v k="$1" '$1==k{print $2}'; }

# --------------------------------------------------------------------------- data
gen_data() {
  mkdir -p "$DATA"
  if [ ! -s "$DATA/queries.txt" ] || [ "$BENCH_DIR/gen_data.py" -nt "$DATA/queries.txt" ]; then
    log "generating zone data in $DATA"
    rm -rf "$DATA"; mkdir -p "$DATA"
    python3 "$BENCH_DIR/gen_data.py" "$DATA" >&2 || die "gen_data.py failed"
  fi
  named-checkzone -q privatelink.aliyuncs.com "$DATA/privatelink.aliyuncs.com.zone" || die "privatelink zone does not load in BIND"
  named-checkzone -q cn-hangzhou.aliyuncs.com "$DATA/cn-hangzhou.aliyuncs.com.zone" || die "fallback zone does not load in BIND"
}

# --------------------------------------------------------------------------- process control
SRV_PIDS=()
LAST_PID=""
start_bg() { # start_bg NAME LOGFILE CMD... : run pinned to SERVER_CPU in its own session/process
  # group (setsid does not fork here: a background job of a non-interactive shell is no group
  # leader, so pgid == pid == $!). Sets LAST_PID.
  local name=$1 logf=$2; shift 2
  setsid taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 </dev/null &
  LAST_PID=$!
  SRV_PIDS+=("$LAST_PID")
}
stop_pid() { # stop_pid PID : TERM the process group we created (setsid => pgid == pid), then KILL
  local pid=$1 i
  [ -z "$pid" ] && return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; fi
  wait "$pid" 2>/dev/null
  # children in the same group (e.g. NSD's server/xfrd processes) may outlive the main PID briefly
  for i in $(seq 1 50); do pgrep -g "$pid" >/dev/null 2>&1 || break; sleep 0.1; done
  pgrep -g "$pid" >/dev/null 2>&1 && kill -KILL -- "-$pid" 2>/dev/null
  local keep=() p
  for p in "${SRV_PIDS[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
  SRV_PIDS=("${keep[@]+"${keep[@]}"}")
  return 0
}
cleanup() { local p; for p in "${SRV_PIDS[@]+"${SRV_PIDS[@]}"}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # wait_ready PORT NAME [SOURCE] [PID] : until a known name answers NOERROR
  local port=$1 name=$2 src=${3:-127.0.0.1} pid=${4:-} i out
  for i in $(seq 1 120); do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then log "server pid $pid (port $port) exited during start-up"; return 1; fi
    out=$(dig +tries=1 +time=1 -b "$src" -p "$port" @127.0.0.1 "$name" A 2>/dev/null | grep -c 'status: NOERROR')
    [ "$out" = 1 ] && return 0
    sleep 0.5
  done
  log "port $port never answered $name"; return 1
}

# --------------------------------------------------------------------------- measurement
SAMPLE_NAME=""  # first endpoint name of the query file (readiness probe)
NX_NAME="ep-00000000000000000000.epsrv-00000000000000000000.cn-hangzhou.privatelink.aliyuncs.com"
STATS_CMD=""    # optional: command printing "key=value" counters; deltas over the measured runs are noted

probe_one() { # probe_one PORT SRC NAME -> RCODE/answer-types/size (no EDNS, like dnsperf)
  local out rcode types size
  out=$(dig +noedns +tries=1 +time=1 -b "$2" -p "$1" @127.0.0.1 "$3" A 2>/dev/null)
  rcode=$(echo "$out" | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')
  types=$(echo "$out" | awk '/^;; ANSWER SECTION/{a=1;next} /^$/{a=0} a{print $4}' | paste -sd+ -)
  size=$(echo "$out" | awk '/MSG SIZE/{print $NF}')
  echo "${rcode:-noanswer}/${types:-none}/${size:-0}B"
}
probe_answers() { # probe_answers PORT SRC -> "ep=... ecs=... nx=..."
  echo "ep=$(probe_one "$1" "$2" "$SAMPLE_NAME") ecs=$(probe_one "$1" "$2" ecs.cn-hangzhou.aliyuncs.com) nx=$(probe_one "$1" "$2" "$NX_NAME")"
}
record_fail() { # record_fail LABEL SCENARIO VERSION LOGFILE
  local why; why=$(grep -v '^\s*$' "$4" 2>/dev/null | tail -1 | tr '\t|' '  ' | cut -c1-160)
  log "$1: FAILED: $why"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" 0 0 0 - - - - - - - - - - - - - "did not start / answer: $why" >>"$SUMROWS"
}
cpu_busy() { # prints "busy total steal" jiffies for cpu N
  # busy = user+nice+system+irq+softirq; total adds idle+iowait+steal
  awk -v c="cpu$1" '$1==c{b=$2+$3+$4+$7+$8; t=b+$5+$6+$9; print b, t, $9}' /proc/stat
}
MEASURE_PGID=""  # process group of the server being measured (set by each srv_*; = the PID started)
pg_runtime_ns() { # total on-CPU time (ns, from /proc/PID/task/TID/schedstat) of every thread of
  # every process in process group $1. Exact, unlike tick-sampled /proc/stat, which misses most
  # of a lightly loaded server's short bursts.
  python3 - "$1" <<'PY'
import os, sys
pg = sys.argv[1]; total = 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        st = open(f'/proc/{pid}/stat').read()
        if st[st.rindex(')') + 2:].split()[2] != pg:
            continue
        for tid in os.listdir(f'/proc/{pid}/task'):
            total += int(open(f'/proc/{pid}/task/{tid}/schedstat').read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
print(total)
PY
}
us_per_query() { # us_per_query NS0 NS1 COMPLETED
  echo "$1 $2 $3" | awk '{printf "%.2f", ($3 > 0 ? ($2-$1)/1000/$3 : 0)}'
}
udp_rcvbuf_errors() { awk '/^Udp:/{n++; if(n==2) print $6}' /proc/net/snmp; }
eth_tx() { awk -F'[: ]+' '/eth0:/{print $12}' /proc/net/dev 2>/dev/null || echo 0; }

# run_dnsperf OUT SECONDS SRC PORT QFILE [extra] ; prints nothing, leaves dnsperf output in OUT
run_dnsperf() {
  local out=$1 secs=$2 src=$3 port=$4 qf=$5; shift 5
  taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -a "$src" -d "$qf" \
    -c "$CLIENTS" -q "$OUTSTANDING" -t "$TIMEOUT" -l "$secs" "$@" >"$out" 2>&1
}
DNSPERF_CMD_TEMPLATE() { echo "taskset -c $CLIENT_CPU dnsperf -s 127.0.0.1 -p PORT -a SRC -d queries.txt -c $CLIENTS -q $OUTSTANDING -t $TIMEOUT -l $DURATION"; }

parse_dnsperf() { # parse_dnsperf FILE -> "sent completed lost qps avg_lat_ms lat_sd_ms rcodes resp_size"
  awk '
    /Queries sent:/      {sent=$3}
    /Queries completed:/ {comp=$3}
    /Queries lost:/      {lost=$3}
    /Queries per second:/{qps=$4}
    /Average Latency/    {avg=$4*1000; for(i=1;i<=NF;i++) if($i=="(min") {} }
    /Latency StdDev/     {sd=$4*1000}
    /Response codes:/    {sub(/.*Response codes: */,""); gsub(/ /,"_"); rc=$0}
    /Average packet size:/{for(i=1;i<=NF;i++) if($i=="response") rs=$(i+1)}
    END {printf "%s %s %s %s %.3f %.3f %s %s\n", sent+0, comp+0, lost+0, qps+0, avg, sd, (rc==""?"-":rc), (rs==""?"-":rs)}
  ' "$1"
}

# measure LABEL SCENARIO PORT SRC QFILE VERSION NOTES [prime]
measure() {
  local label=$1 scen=$2 port=$3 src=$4 qf=$5 ver=$6 notes=$7 prime=${8:-}
  local d="$RUNROOT/$label"; mkdir -p "$d"
  local tx0 tx1
  tx0=$(eth_tx)
  if [ "$prime" = prime ]; then
    log "  $label: priming cache (one pass over the query file)"
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -a "$src" -d "$qf" -c "$CLIENTS" -q 100 -t 2 -n 1 >"$d/prime.txt" 2>&1
    log "  $label: prime: $(parse_dnsperf "$d/prime.txt")"
  fi
  local answers; answers=$(probe_answers "$port" "$src")
  log "  $label: answers: $answers"
  log "  $label: warm-up ${WARMUP}s"
  run_dnsperf "$d/warmup.txt" "$WARMUP" "$src" "$port" "$qf"
  local st0="" st1="" stnote=""
  [ -n "$STATS_CMD" ] && st0=$(eval "$STATS_CMD" 2>/dev/null)
  local r c0 c1 k0 k1 e0 e1 srvcpu clicpu steal us n0 n1
  local sent comp lost qps avg sd rcodes rsize
  for r in $(seq 1 "$REPS"); do
    n0=$(pg_runtime_ns "$MEASURE_PGID"); c0=$(cpu_busy "$SERVER_CPU"); k0=$(cpu_busy "$CLIENT_CPU"); e0=$(udp_rcvbuf_errors)
    run_dnsperf "$d/rep$r.txt" "$DURATION" "$src" "$port" "$qf"
    c1=$(cpu_busy "$SERVER_CPU"); k1=$(cpu_busy "$CLIENT_CPU"); e1=$(udp_rcvbuf_errors); n1=$(pg_runtime_ns "$MEASURE_PGID")
    read -r sent comp lost qps avg sd rcodes rsize < <(parse_dnsperf "$d/rep$r.txt")
    srvcpu=$(echo "$c0 $c1" | awk '{d=$5-$2; printf "%.0f", (d > 0 ? 100*($4-$1)/d : 0)}')
    clicpu=$(echo "$k0 $k1" | awk '{d=$5-$2; printf "%.0f", (d > 0 ? 100*($4-$1)/d : 0)}')
    steal=$(echo "$c0 $c1 $k0 $k1" | awk '{d=$5-$2; e=$11-$8; printf "%.1f/%.1f", (d > 0 ? 100*($6-$3)/d : 0), (e > 0 ? 100*($12-$9)/e : 0)}')
    us=$(us_per_query "$n0" "$n1" "$comp")
    log "  $label rep$r: qps=$qps avg=${avg}ms lost=$lost/$sent srvcpu=${srvcpu}% (${us}us/q) clicpu=${clicpu}% steal(srv/cli)=${steal}% rcvbuf_err=$((e1 - e0)) rcodes=$rcodes"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$RUN_ID" "$label" "$scen" "$ver" "$r" "$qps" "$avg" "$sd" "$sent" "$comp" "$lost" "$srvcpu" "$clicpu" \
      "$rcodes" "$rsize" "$src" "$port" "$((e1 - e0))" "$steal" "$us" "$notes" >>"$RAW"
  done
  if [ -n "$STATS_CMD" ]; then
    st1=$(eval "$STATS_CMD" 2>/dev/null)
    stnote=$(printf '%s\n%s\n' "$st0" "$st1" | awk -F= 'NF==2{if(!($1 in a)){a[$1]=$2; o[++n]=$1} else b[$1]=$2}
      END{for(i=1;i<=n;i++){k=o[i]; printf "%s+%d ", k, b[k]-a[k]}}')
    log "  $label: server counters over the measured runs: $stnote"
    notes="$notes; counters during runs: $stnote"
  fi
  notes="$notes; probe: $answers"
  local latavg="-" latsd="-" latus="-"
  if [ "${LAT_QPS:-0}" -gt 0 ]; then
    n0=$(pg_runtime_ns "$MEASURE_PGID")
    run_dnsperf "$d/lat.txt" "$LAT_DURATION" "$src" "$port" "$qf" -Q "$LAT_QPS"
    n1=$(pg_runtime_ns "$MEASURE_PGID")
    read -r sent comp lost qps latavg latsd rcodes rsize < <(parse_dnsperf "$d/lat.txt")
    latus=$(us_per_query "$n0" "$n1" "$comp")
    srvcpu=$(echo "$n0 $n1 $LAT_DURATION" | awk '{printf "%.0f", ($2-$1)/1e7/$3}')
    log "  $label at ${LAT_QPS} qps offered: qps=$qps avg=${latavg}ms sd=${latsd}ms lost=$lost server threads on-CPU=${srvcpu}% (${latus}us/q)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$RUN_ID" "$label" "$scen" "$ver" "lat@$LAT_QPS" "$qps" "$latavg" "$latsd" "$sent" "$comp" "$lost" "$srvcpu" "-" \
      "$rcodes" "$rsize" "$src" "$port" "-" "-" "$latus" "$notes" >>"$RAW"
  fi
  tx1=$(eth_tx)
  echo "$label $((tx1 - tx0))" >>"$WORK/eth0-tx-$RUN_ID.txt"
  [ "$((tx1 - tx0))" -gt 50 ] && log "  WARN: eth0 sent $((tx1 - tx0)) packets during $label (other host activity?)"
  # summary row: the median run by QPS, with min/max over the runs
  awk -F'\t' -v id="$RUN_ID" -v l="$label" '$1==id && $2==l && $5 !~ /^lat/' "$RAW" | sort -t$'\t' -k6,6g |
    awk -F'\t' -v la="$latavg" -v lu="$latus" -v notes="$notes" '{q[NR]=$6; row[NR]=$0} END{m=int((NR+1)/2); split(row[m],f,"\t");
      lo=q[1]; hi=q[NR]; spread=((f[6] > 0) ? 100*(hi-lo)/f[6] : 0);
      printf "%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.1f\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f[2], f[3], f[4], f[6], lo, hi, spread, f[7], la, f[11], f[9], f[12], f[13], f[20], lu, f[14], f[15], f[18], f[19], notes}' >>"$SUMROWS"
}

# --------------------------------------------------------------------------- servers
# Each srv_NAME starts its server(s) pinned to SERVER_CPU with one worker thread/process, waits
# until it answers, measures, and stops exactly the PIDs (process groups) it started.
conf_nsd() { # conf_nsd DIR PORT ZONES... (zone=file pairs)
  local d=$1 port=$2; shift 2
  mkdir -p "$d"
  {
    echo "server:"
    echo "  ip-address: 127.0.0.1"
    echo "  port: $port"
    echo "  server-count: 1"
    echo "  do-ip6: no"
    echo "  username: \"\""
    echo "  chroot: \"\""
    echo "  database: \"\""
    echo "  zonesdir: \"$DATA\""
    echo "  pidfile: \"$d/nsd.pid\""
    echo "  xfrdfile: \"$d/xfrd.state\""
    echo "  zonelistfile: \"$d/zone.list\""
    echo "  xfrdir: \"$d\""
    echo "  verbosity: 0"
    echo "  # Debian's NSD is built with RRL, on by default at 200 qps per source: it silently"
    echo "  # drops most of the NXDOMAIN and apex-CNAME answers of a benchmark. Off, as elsewhere."
    echo "  rrl-ratelimit: 0"
    echo "  rrl-whitelist-ratelimit: 0"
    echo "remote-control:"
    echo "  control-enable: no"
    local z
    for z in "$@"; do
      echo "zone:"
      echo "  name: \"${z%%=*}\""
      echo "  zonefile: \"$DATA/${z#*=}\""
    done
  } >"$d/nsd.conf"
  nsd-checkconf "$d/nsd.conf" || die "nsd-checkconf failed"
}
ZONES_STD="privatelink.aliyuncs.com=privatelink.aliyuncs.com.zone cn-hangzhou.aliyuncs.com=cn-hangzhou.aliyuncs.com.zone"
ZONES_APEX="privatelink.aliyuncs.com=privatelink.aliyuncs.com.zone ecs.cn-hangzhou.aliyuncs.com=ecs.cn-hangzhou.aliyuncs.com.zone"
SCEN_STD="auth; ecs via fallback zone cn-hangzhou.aliyuncs.com"
SCEN_APEX="auth; ecs zone with apex CNAME"

run_nsd_like() { # label port scenario qfile probe-name zones...
  local label=$1 port=$2 scen=$3 qf=$4 probe=$5; shift 5
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d"
  conf_nsd "$d" "$port" "$@"
  log "$label: starting nsd on :$port"
  local pid; start_bg "$label" "$d/server.log" nsd -d -c "$d/nsd.conf"; pid=$LAST_PID
  if wait_ready "$port" "$probe" 127.0.0.1 "$pid"; then
    MEASURE_PGID=$pid
    measure "$label" "$scen" "$port" 127.0.0.1 "$qf" "nsd $(ver_of nsd)" "server-count 1, rrl off"
  else
    record_fail "$label" "$scen" "nsd $(ver_of nsd)" "$d/server.log"
  fi
  stop_pid "$pid"
}

srv_ceiling() {
  run_nsd_like ceiling "$P_CEIL" "ceiling check: nsd, 1-record zone, 1 query name" "$DATA/one-record.queries.txt" \
    www.one-record.test "one-record.test=one-record.test.zone"
}
srv_nsd() { run_nsd_like nsd "$P_NSD" "$SCEN_STD" "$DATA/queries.txt" "$SAMPLE_NAME" $ZONES_STD; }

run_knot() { # label port zones soft(yes|no) scenario
  local label=$1 port=$2 zones=$3 soft=$4 scen=$5
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d/db"
  {
    echo "server:"
    echo "  listen: 127.0.0.1@$port"
    echo "  rundir: \"$d\""
    echo "  udp-workers: 1"
    echo "  tcp-workers: 1"
    echo "  background-workers: 1"
    echo "database:"
    echo "  storage: \"$d/db\""
    echo "log:"
    echo "  - target: stderr"
    echo "    any: info"
    echo "template:"
    echo "  - id: default"
    echo "    storage: \"$DATA\""
    echo "    journal-content: none"
    echo "    zonefile-sync: -1"
    echo "    zonefile-load: whole"
    # 'soft' lets knotd load a zone that fails the mandatory CNAME-and-other-data check
    [ "$soft" = yes ] && echo "    semantic-checks: soft"
    echo "zone:"
    local z
    for z in $zones; do
      echo "  - domain: \"${z%%=*}\""
      echo "    file: \"${z#*=}\""
    done
  } >"$d/knot.conf"
  local notes="udp-workers 1"; [ "$soft" = yes ] && notes="$notes, semantic-checks soft"
  log "$label: starting knotd on :$port"
  local pid; start_bg "$label" "$d/server.log" knotd -c "$d/knot.conf"; pid=$LAST_PID
  if wait_ready "$port" "$SAMPLE_NAME" 127.0.0.1 "$pid"; then
    MEASURE_PGID=$pid
    measure "$label" "$scen" "$port" 127.0.0.1 "$DATA/queries.txt" "knot $(ver_of knot)" "$notes"
  else
    record_fail "$label" "$scen" "knot $(ver_of knot)" "$d/server.log"
  fi
  stop_pid "$pid"
}
srv_knot() { run_knot knot "$P_KNOT" "$ZONES_STD" no "$SCEN_STD"; }
srv_knot-apex() { run_knot knot-apex "$P_KNOT_APEX" "$ZONES_APEX" yes "$SCEN_APEX"; }

bind_zones() { # indent
  local z
  for z in $ZONES_STD; do
    echo "$1zone \"${z%%=*}\" { type primary; file \"$DATA/${z#*=}\"; notify no; };"
  done
}
run_bind() { # label port views(yes|no)
  local label=$1 port=$2 views=$3
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d"
  {
    echo "options {"
    echo "  directory \"$d\";"
    echo "  pid-file \"$d/named.pid\";"
    echo "  session-keyfile \"$d/session.key\";"
    echo "  listen-on port $port { 127.0.0.1; };"
    echo "  listen-on-v6 { none; };"
    echo "  recursion no;"
    echo "  dnssec-validation no;"
    echo "  notify no;"
    echo "  allow-transfer { none; };"
    echo "};"
    echo "controls { };"
    echo "logging { category default { default_stderr; }; category lame-servers { null; }; };"
    if [ "$views" = yes ]; then
      # two views with the same zones; a query from 127.0.0.1 matches neither (REFUSED)
      echo "view \"vpc-a\" { match-clients { 127.0.0.2/32; };"; bind_zones "  "; echo "};"
      echo "view \"vpc-b\" { match-clients { 127.0.0.3/32; };"; bind_zones "  "; echo "};"
    else
      bind_zones ""
    fi
  } >"$d/named.conf"
  named-checkconf "$d/named.conf" || die "named-checkconf failed"
  local ver="bind $(ver_of bind)"
  log "$label: starting named on :$port"
  local pid; start_bg "$label" "$d/server.log" named -g -n 1 -c "$d/named.conf"; pid=$LAST_PID
  if [ "$views" = yes ]; then
    if wait_ready "$port" "$SAMPLE_NAME" 127.0.0.3 "$pid" && wait_ready "$port" "$SAMPLE_NAME" 127.0.0.2 "$pid"; then
      MEASURE_PGID=$pid
      measure "$label-2nd" "$SCEN_STD; 2 views, client matches 2nd view (src 127.0.0.3)" "$port" 127.0.0.3 "$DATA/queries.txt" "$ver" "named -n 1"
      MEASURE_PGID=$pid
      measure "$label-1st" "$SCEN_STD; 2 views, client matches 1st view (src 127.0.0.2)" "$port" 127.0.0.2 "$DATA/queries.txt" "$ver" "named -n 1"
    else
      record_fail "$label" "$SCEN_STD; 2 views" "$ver" "$d/server.log"
    fi
  else
    if wait_ready "$port" "$SAMPLE_NAME" 127.0.0.1 "$pid"; then
      MEASURE_PGID=$pid
      measure "$label" "$SCEN_STD" "$port" 127.0.0.1 "$DATA/queries.txt" "$ver" "named -n 1"
    else
      record_fail "$label" "$SCEN_STD" "$ver" "$d/server.log"
    fi
  fi
  stop_pid "$pid"
}
srv_bind() { run_bind bind "$P_BIND" no; }
srv_bind-views() { run_bind bind-views "$P_BINDV" yes; }

unbound_base() { # dir port
  local d=$1 port=$2
  cat <<EOF
server:
  interface: 127.0.0.1
  port: $port
  do-ip6: no
  do-tcp: yes
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
  outgoing-interface: 127.0.0.1
  module-config: "iterator"
  prefetch: no
remote-control:
  control-enable: yes
  control-interface: "$d/control.sock"
  control-use-cert: no
EOF
}
unbound_stats() { # config -> key=value counters
  unbound-control -c "$1" stats_noreset 2>/dev/null | grep -E '^total\.num\.(queries|cachehits|cachemiss)='
}
srv_unbound-local() {
  local label=unbound-local port=$P_UNB_LOCAL scen="local-zone/local-data; ecs as apex CNAME (static local-zone)"
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d"
  {
    unbound_base "$d" "$port"
    echo "server:"
    echo "  include: \"$DATA/unbound-localdata.conf\""
    # loopback guard: anything not answered locally would go to a closed loopback port
    echo "forward-zone:"
    echo "  name: \".\""
    echo "  forward-addr: 127.0.0.1@$P_BLACKHOLE"
  } >"$d/unbound.conf"
  unbound-checkconf "$d/unbound.conf" >/dev/null || die "unbound-checkconf failed"
  log "$label: starting unbound on :$port"
  local pid; start_bg "$label" "$d/server.log" unbound -d -c "$d/unbound.conf"; pid=$LAST_PID
  if wait_ready "$port" "$SAMPLE_NAME" 127.0.0.1 "$pid"; then
    STATS_CMD="unbound_stats $d/unbound.conf"
    MEASURE_PGID=$pid
    measure "$label" "$scen" "$port" 127.0.0.1 "$DATA/queries.txt" "unbound $(ver_of unbound)" "num-threads 1"
    STATS_CMD=""
  else
    record_fail "$label" "$scen" "unbound $(ver_of unbound)" "$d/server.log"
  fi
  stop_pid "$pid"
}

UP_PID=""
start_upstream() { # label : an NSD upstream on P_UPSTREAM (pinned to SERVER_CPU too); sets UP_PID
  local d="$RUNROOT/$1-upstream"; rm -rf "$d"; mkdir -p "$d"
  conf_nsd "$d" "$P_UPSTREAM" $ZONES_STD
  start_bg "$1-upstream" "$d/server.log" nsd -d -c "$d/nsd.conf"; UP_PID=$LAST_PID
  wait_ready "$P_UPSTREAM" "$SAMPLE_NAME" 127.0.0.1 "$UP_PID" || { stop_pid "$UP_PID"; UP_PID=""; return 1; }
}

srv_unbound-fwd() {
  local label=unbound-fwd port=$P_UNB_FWD scen="caching forwarder (. -> nsd upstream), primed: cache hits"
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d"
  {
    unbound_base "$d" "$port"
    echo "server:"
    echo "  msg-cache-size: 64m"
    echo "  rrset-cache-size: 128m"
    echo "  cache-min-ttl: 3600   # records are TTL 60: keep them cached for the whole run"
    echo "forward-zone:"
    echo "  name: \".\""
    echo "  forward-addr: 127.0.0.1@$P_UPSTREAM"
  } >"$d/unbound.conf"
  unbound-checkconf "$d/unbound.conf" >/dev/null || die "unbound-checkconf failed"
  if ! start_upstream "$label"; then record_fail "$label" "$scen" "unbound $(ver_of unbound)" "$RUNROOT/$label-upstream/server.log"; return; fi
  local up=$UP_PID
  log "$label: starting unbound (forwarder to nsd :$P_UPSTREAM) on :$port"
  local pid; start_bg "$label" "$d/server.log" unbound -d -c "$d/unbound.conf"; pid=$LAST_PID
  if wait_ready "$port" "$SAMPLE_NAME" 127.0.0.1 "$pid"; then
    STATS_CMD="unbound_stats $d/unbound.conf"
    MEASURE_PGID=$pid
    measure "$label" "$scen" "$port" 127.0.0.1 "$DATA/queries.txt" "unbound $(ver_of unbound)" "num-threads 1, cache-min-ttl 3600" prime
    STATS_CMD=""
  else
    record_fail "$label" "$scen" "unbound $(ver_of unbound)" "$d/server.log"
  fi
  stop_pid "$pid"; stop_pid "$up"
}

srv_candidate() {
  [ -n "$CANDIDATE_CMD" ] || return 0
  local label=$CANDIDATE_NAME port=$CANDIDATE_PORT ver=${CANDIDATE_VERSION:-candidate}
  local d="$RUNROOT/$label"; rm -rf "$d"; mkdir -p "$d"
  local up="" prime=""
  if [ "$CANDIDATE_UPSTREAM" = 1 ]; then
    if ! start_upstream "$label"; then record_fail "$label" "candidate" "$ver" "$RUNROOT/$label-upstream/server.log"; return; fi
    up=$UP_PID; prime=prime
  fi
  export BENCH_DATA=$DATA BENCH_RUN=$d CANDIDATE_PORT=$port
  log "$label: starting candidate on :$port: $CANDIDATE_CMD"
  local pid; start_bg "$label" "$d/server.log" bash -c "$CANDIDATE_CMD"; pid=$LAST_PID
  local src sfx
  for src in $CANDIDATE_SOURCES; do
    sfx=""; [ "$(echo $CANDIDATE_SOURCES | wc -w)" -gt 1 ] && sfx="-from-$src"
    local scen="candidate, client src $src"
    [ -n "$up" ] && scen="$scen, upstream nsd on :$P_UPSTREAM, primed"
    if wait_ready "$port" "$SAMPLE_NAME" "$src" "$pid"; then
      MEASURE_PGID=$pid
      measure "$label$sfx" "$scen" "$port" "$src" "$DATA/queries.txt" "$ver" "zones: $CANDIDATE_ZONES" $prime
    else
      record_fail "$label$sfx" "$scen" "$ver" "$d/server.log"
    fi
  done
  stop_pid "$pid"
  [ -n "$up" ] && stop_pid "$up"
  return 0
}

# --------------------------------------------------------------------------- main
main() {
  if [ "${1:-}" = install ]; then install_deps; exit 0; fi
  install_deps
  command -v dnsperf >/dev/null || die "dnsperf missing"
  gen_data
  SAMPLE_NAME=$(head -1 "$DATA/queries.txt" | awk '{print $1}')
  mkdir -p "$RUNROOT" "$RESULTS_DIR"
  [ -s "$RAW" ] || printf 'run_id\tlabel\tscenario\tversion\trep\tqps\tavg_lat_ms\tlat_sd_ms\tsent\tcompleted\tlost\tserver_cpu_pct\tclient_cpu_pct\trcodes\tavg_resp_bytes\tsrc\tport\tudp_rcvbuf_errors\tsteal_pct_srv/cli\tsrv_cpu_us_per_query\tnotes\n' >"$RAW"
  : >"$SUMROWS"
  log "run $RUN_ID: servers=[$SERVERS] duration=${DURATION}s warmup=${WARMUP}s reps=$REPS dnsperf -c $CLIENTS -q $OUTSTANDING -t $TIMEOUT; server cpu $SERVER_CPU, dnsperf cpu $CLIENT_CPU"
  local s
  for s in $SERVERS; do
    if declare -F "srv_$s" >/dev/null; then "srv_$s"; else log "unknown server '$s' (known: $DEFAULT_SERVERS)"; fi
  done
  {
    echo
    echo "## Run $RUN_ID ($(hostname), $(nproc) CPUs, $(uname -r))"
    echo
    echo "dnsperf: \`$(DNSPERF_CMD_TEMPLATE)\` after a ${WARMUP}s warm-up; $REPS runs, median by QPS; server pinned to CPU $SERVER_CPU."
    echo "Versions: $(versions | tr '\n' ' ')"
    echo
    echo "| label | scenario | version | median QPS | min QPS | max QPS | spread % | avg latency ms (saturated) | avg latency ms @${LAT_QPS} qps | lost | sent | server CPU % | dnsperf CPU % | server CPU us/query (saturated) | server CPU us/query @${LAT_QPS} qps | rcodes | resp bytes | rcvbuf errs | steal % srv/cli | notes |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|"
    awk -F'\t' '{printf "| %s |", $1; for(i=2;i<=NF;i++) printf " %s |", $i; printf "\n"}' "$SUMROWS"
    echo
    echo "eth0 TX packets per scenario (loopback-only check): $(tr '\n' ' ' <"$WORK/eth0-tx-$RUN_ID.txt" 2>/dev/null)"
  } | tee -a "$SUMMARY"
}
main "$@"
