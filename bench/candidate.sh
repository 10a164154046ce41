#!/usr/bin/env bash
# Runs pzdns as the candidate of bench/peers.sh (its default CANDIDATE_CMD):
#
#   CANDIDATE_SOURCES="127.0.0.1 127.0.0.2" SERVERS="ceiling nsd candidate" bash bench/peers.sh
#
# peers.sh exports BENCH_DATA (master files + queries), BENCH_RUN (scratch)
# and CANDIDATE_PORT. pzdns loads the bench's master files unchanged through
# `master_file:`, with three VPCs on 127.0.0.1/.2/.3 so that the per-source
# scenarios go through the view selection. PZDNS_BENCH_ECS_ZONE picks the
# zone that holds ecs.cn-hangzhou.aliyuncs.com: the legal fallback
# cn-hangzhou.aliyuncs.com (default: CNAME + in-zone A, as NSD serves it) or
# ecs.cn-hangzhou.aliyuncs.com (the apex CNAME, whose target goes upstream).
# PZDNS_BENCH_MODE=forwarder loads no zone and forwards everything to the
# loopback NSD that CANDIDATE_UPSTREAM=1 starts on 127.0.0.1:5311 (the
# cache-hit scenario, beside unbound-fwd). In every mode the only upstream
# is that loopback NSD, so nothing ever leaves the machine (with
# PZDNS_BENCH_ECS_ZONE=ecs.cn-hangzhou.aliyuncs.com and CANDIDATE_UPSTREAM=1
# it is the mixed profile: local answers, apex CNAMEs whose target comes
# from the cache, NXDOMAIN). PZDNS_BENCH_DNSTAP=file:PATH or socket:PATH
# turns dnstap on (bench/dnstap.sh; a relative PATH is in BENCH_RUN).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PZDNS_BIN:-$here/../target/release/pzdns}
[ -x "$bin" ] || { echo "no pzdns binary at $bin: run cargo build --release first" >&2; exit 1; }
z=$BENCH_RUN/zones
mkdir -p "$z"
cat > "$z/vpcs.yaml" <<YAML
vpcs:
  - { id: vpc-bench-1, cidrs: [127.0.0.1/32] }
  - { id: vpc-bench-2, cidrs: [127.0.0.2/32] }
  - { id: vpc-bench-3, cidrs: [127.0.0.3/32] }
YAML
upstream=(--upstream 127.0.0.1:5311 --config "$BENCH_RUN/pzdns.yaml")
# The peers here do not validate (Unbound runs module-config "iterator"):
# pzdns neither, unless PZDNS_BENCH_DNSSEC=validate. A binary from before
# validation existed has no `resolver:` key: it gets an empty file.
printf 'resolver:\n  dnssec: %s\n' "${PZDNS_BENCH_DNSSEC:-off}" >"$BENCH_RUN/pzdns.yaml"
"$bin" check --config "$BENCH_RUN/pzdns.yaml" --zones "$z" >/dev/null 2>&1 || : >"$BENCH_RUN/pzdns.yaml"
if [ -n "${PZDNS_BENCH_DNSTAP:-}" ]; then
    printf 'dnstap:\n  %s: %s\n' "${PZDNS_BENCH_DNSTAP%%:*}" "${PZDNS_BENCH_DNSTAP#*:}" >>"$BENCH_RUN/pzdns.yaml"
fi
if [ "${PZDNS_BENCH_MODE:-auth}" = forwarder ]; then
    exec "$bin" serve --zones "$z" --listen "127.0.0.1:$CANDIDATE_PORT" --admin off --workers "${PZDNS_WORKERS:-1}" "${upstream[@]}"
fi
for zone in privatelink.aliyuncs.com "${PZDNS_BENCH_ECS_ZONE:-cn-hangzhou.aliyuncs.com}"; do
    # Master files are read only from inside the zones directory.
    cp "$BENCH_DATA/$zone.zone" "$z/$zone.zone"
    cat > "$z/$zone.yaml" <<YAML
zone: $zone
vpcs: [vpc-bench-1, vpc-bench-2, vpc-bench-3]
master_file: $zone.zone
YAML
done
exec "$bin" serve --zones "$z" --listen "127.0.0.1:$CANDIDATE_PORT" --admin off --workers "${PZDNS_WORKERS:-1}" "${upstream[@]}"
