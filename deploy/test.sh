#!/usr/bin/env bash
# deploy/test.sh: build the container image from ./Dockerfile with podman, run
# it the way deploy/README.md says, and check it from outside. Run by .ci/run.
#
#   bash deploy/test.sh                      as root; installs podman, runc, debootstrap, dig, curl
#   PZDNS_TEST_BREAK=binary bash deploy/test.sh
#                                            builds a deliberately broken variant of the image
#                                            (binary|user|healthcheck; 1 = binary): the test must fail
#   PZDNS_TEST_REBUILD_BASES=1               remakes the stand-in base images
#   PZDNS_DEBIAN_MIRROR=URL                  the mirror debootstrap uses (default: apt's sources)
#   PZDNS_TEST_PORT=15353                    DNS port; admin on +1, the (dead) upstream on +2
#   PZDNS_KUBECTL=kubectl                    the kubectl that renders deploy/kubernetes
#
# First, without any image: deploy/kubernetes rendered by `kubectl kustomize`
# and every object validated offline against the Kubernetes schemas by
# `kubernetes-validate --strict` (PyPI), which rejects unknown fields.
# No registry is reachable here, so the two base images the Dockerfile names are
# made locally, once, and cached by tag: debian:bookworm-slim from debootstrap,
# rust:1-bookworm from debootstrap + build-essential + this machine's rustup
# stable toolchain. The Dockerfile itself is built unchanged (--pull=never).
#
# Everything runs on loopback: the container uses the host's network and
# listens on 127.0.0.1 only; its upstream is a loopback port where nothing
# listens, and the checks query with RD=0, so no query leaves 127.0.0.0/8.
# Every container this script starts is removed on exit.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$PWD

dns_port=${PZDNS_TEST_PORT:-15353}
admin_port=$((dns_port + 1))
upstream_port=$((dns_port + 2)) # nothing listens there: a forwarded query fails at once
drain_bound=6                    # seconds: pzdns drains for at most 5 s after SIGTERM
image=localhost/pzdns:test
name=pzdns-test-$$
break_kind=${PZDNS_TEST_BREAK:-}
[ "$break_kind" = 1 ] && break_kind=binary

pass=0
fail=0
skipped=0
ok() { pass=$((pass + 1)); echo "PASS  $*"; }
bad() { fail=$((fail + 1)); echo "FAIL  $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP  $*"; }
info() { echo "      $*"; }
die() { echo "deploy/test.sh: $*" >&2; exit 2; }
finish() {
    [ "$skipped" -gt 0 ] && echo "($skipped checks not run)"
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$skipped" -eq 0 ]
    exit
}

[ "$(id -u)" = 0 ] || die "run as root (apt-get, debootstrap and rootful podman)"
case "$break_kind" in
    "" | binary | user | healthcheck) ;;
    *) die "PZDNS_TEST_BREAK=$break_kind: expected binary, user or healthcheck" ;;
esac

############################################################################
# Tools
############################################################################
need=()
command -v podman >/dev/null || need+=(podman)
[ -x /usr/sbin/runc ] || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v dig >/dev/null || need+=(dnsutils)
command -v curl >/dev/null || need+=(curl)
command -v ss >/dev/null || need+=(iproute2)
kubectl=${PZDNS_KUBECTL:-kubectl}
command -v "$kubectl" >/dev/null || need+=(kubernetes-client)
command -v kubernetes-validate >/dev/null || python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
        die "apt-get install ${need[*]} failed"
    fi
fi
if ! command -v kubernetes-validate >/dev/null; then
    echo "installing: kubernetes-validate (pip)"
    # Debian's python3 is "externally managed"; this is a CI machine's own tool.
    python3 -m pip install -q --break-system-packages kubernetes-validate >/dev/null ||
        die "pip install kubernetes-validate failed"
    hash -r
    command -v kubernetes-validate >/dev/null || die "kubernetes-validate installed, but not on PATH ($PATH)"
fi

work=$(mktemp -d /tmp/pzdns-deploy-test.XXXXXX)
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local ids
    ids=$(podman ps -aq --filter "label=pzdns-test=$$" 2>/dev/null)
    # shellcheck disable=SC2086 # one id a word
    [ -n "$ids" ] && podman rm -f -v -t 0 $ids >/dev/null 2>&1
    [ -n "$break_kind" ] && podman rmi -f "$image" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Debian's podman with Debian's runc: crun (the default) refuses this kernel's
# hybrid cgroups and the default ulimits; there is no systemd for cgroups.
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF=$work/containers.conf
podman() { command podman --runtime /usr/sbin/runc "$@"; }

############################################################################
# Kubernetes manifests: rendered as `kubectl apply -k` renders them, and
# every object validated against the schemas of the Kubernetes API (shipped
# with kubernetes-validate: offline). --strict rejects a field the API does
# not have; a kind it has no schema for is only a warning there, so any
# warning fails here. Then the same check must reject a copy with one field
# misspelled: a check that passes everything would show here.
############################################################################
echo "== kubernetes: $kubectl kustomize deploy/kubernetes | kubernetes-validate --strict ($(kubernetes-validate --version 2>&1))"
validate() { # FILE: "ok" or what failed, on stdout
    local out objects passed
    out=$(kubernetes-validate --strict "$1" 2>&1)
    local rc=$?
    objects=$(grep -c '^kind:' "$1")
    passed=$(grep -c ' passed for resource ' <<<"$out")
    if [ "$rc" = 0 ] && [ "$objects" -gt 0 ] && [ "$passed" = "$objects" ] && ! grep -q '^WARN' <<<"$out"; then
        echo ok
    else
        echo "exit $rc, $passed of $objects objects passed: $(grep -v ' passed for resource ' <<<"$out" | head -n 3)"
    fi
}
if "$kubectl" kustomize deploy/kubernetes >"$work/k8s.yaml" 2>"$work/k8s.err"; then
    kinds=$(awk '/^kind:/ {print $2}' "$work/k8s.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep = ", "}')
    got=$(validate "$work/k8s.yaml")
    if [ "$got" = ok ]; then
        ok "deploy/kubernetes renders ($kinds); every object passes kubernetes-validate --strict"
    else
        bad "deploy/kubernetes ($kinds): kubernetes-validate --strict: $got"
    fi
    sed '0,/imagePullPolicy:/s//imagePulPolicy:/' "$work/k8s.yaml" >"$work/k8s-typo.yaml"
    got=$(validate "$work/k8s-typo.yaml")
    if cmp -s "$work/k8s.yaml" "$work/k8s-typo.yaml"; then
        bad "the self-check found no imagePullPolicy to misspell in deploy/kubernetes"
    elif [ "$got" = ok ]; then
        bad "imagePullPolicy misspelled imagePulPolicy passes kubernetes-validate --strict: the check checks nothing"
    else
        ok "the same check rejects imagePullPolicy misspelled: ${got#*passed: }"
    fi
else
    bad "$kubectl kustomize deploy/kubernetes failed: $(tail -n 3 "$work/k8s.err")"
fi

############################################################################
# Stand-in base images (made once, cached by tag)
############################################################################
# The images the Dockerfile's FROM lines name (stage references skipped, a
# pinned @sha256 digest dropped: a stand-in cannot have the real digest).
mapfile -t bases < <(awk 'toupper($1) == "FROM" {
        for (i = 2; i <= NF && $i ~ /^--/; i++) ;
        print $i }' Dockerfile | sed 's/@sha256:[0-9a-f]*$//')
pinned=$(grep -ciE '^FROM[[:space:]].*@sha256:' Dockerfile)

# The Debian mirror apt is configured with (deb822 .sources first, then
# one-line .list entries): the first "deb" source of the bookworm suite.
debian_mirror() {
    local f
    if [ -n "${PZDNS_DEBIAN_MIRROR:-}" ]; then
        echo "$PZDNS_DEBIAN_MIRROR"
        return
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n"; IGNORECASE = 1 }
            {   types = suites = uris = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/) types = " " substr($i, 7) " "
                    if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
                    if ($i ~ /^URIs:/) uris = substr($i, 6)
                }
                if (types ~ /[ \t]deb[ \t]/ && suites ~ /[ \t]bookworm[ \t]/) {
                    split(uris, u, " "); print u[1]; exit
                } }' "$f"
    done | head -n1 | grep . && return
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -n 's/\[[^]]*\]//; s/^[[:space:]]*deb[[:space:]]\+\([^[:space:]]\+\)[[:space:]]\+bookworm[[:space:]].*/\1/p' |
        head -n1 | grep .
}

debootstrap_into() { # DIR [--include=...]
    local dir=$1 mirror
    shift
    mirror=$(debian_mirror) || die "no Debian bookworm source in /etc/apt/sources.list*; set PZDNS_DEBIAN_MIRROR"
    mkdir -p "$work/debs"
    echo "      debootstrap --variant=minbase $* bookworm from $mirror"
    debootstrap --variant=minbase --cache-dir="$work/debs" "$@" bookworm "$dir" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log"
        die "debootstrap failed"
    }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    # As in Docker's official Debian images: apt keeps no package caches.
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
}

path_env=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

make_debian() { # IMAGE
    local dir=$work/rootfs-debian
    debootstrap_into "$dir"
    # what makes the real image "slim": no documentation, manual pages or translations
    rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/usr/share/locale/* "$dir"/usr/share/lintian
    tar -C "$dir" -c . | podman import \
        --change "ENV=PATH=$path_env" --change 'CMD=["bash"]' \
        --change 'LABEL org.pzdns.stand-in="debootstrap --variant=minbase bookworm, slimmed"' \
        - "localhost/$1" >"$work/import.log" 2>&1 || {
        cat "$work/import.log"
        die "podman import $1 failed"
    }
    rm -rf "$dir"
}

make_rust() { # IMAGE
    local dir=$work/rootfs-rust want sysroot version f v
    # The Rust version the tag asks for (rust:1.95-bookworm: 1.95.x): this
    # machine's stable toolchain if it matches, else another installed one
    # that does, else stable anyway (said so).
    want=${1#rust:}
    want=${want%%-*}
    sysroot=$(rustup run stable rustc --print sysroot 2>/dev/null || rustc --print sysroot) ||
        die "no Rust toolchain on this machine to copy into the $1 stand-in"
    version=$("$sysroot/bin/rustc" --version | awk '{print $2}')
    if [ "$version" != "$want" ] && [[ "$version" != "$want".* ]]; then
        for f in "$sysroot" "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/*; do
            [ -x "$f/bin/rustc" ] || continue
            v=$("$f/bin/rustc" --version | awk '{print $2}')
            if [ "$v" = "$want" ] || [[ "$v" == "$want".* && "$v" != *-* ]]; then
                sysroot=$f version=$v
                break
            fi
        done
        [ "$version" = "$want" ] || [[ "$version" == "$want".* ]] ||
            info "note: the Dockerfile asks for Rust $want, this machine has no such toolchain: the stand-in holds $version"
    fi
    debootstrap_into "$dir" --include=build-essential,ca-certificates
    echo "      + Rust $version from $sysroot (without its HTML docs)"
    mkdir -p "$dir/usr/local/rust" "$dir/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$dir/usr/local/rust" -x
    for f in "$dir"/usr/local/rust/bin/*; do
        ln -s "/usr/local/rust/bin/${f##*/}" "$dir/usr/local/cargo/bin/${f##*/}"
    done
    tar -C "$dir" -c . | podman import \
        --change "ENV=PATH=/usr/local/cargo/bin:$path_env" \
        --change 'ENV=CARGO_HOME=/usr/local/cargo' \
        --change "ENV=RUST_VERSION=$version" --change 'CMD=["bash"]' \
        --change "LABEL org.pzdns.stand-in=\"debootstrap bookworm + build-essential + rustc $version\"" \
        - "localhost/$1" >"$work/import.log" 2>&1 || {
        cat "$work/import.log"
        die "podman import $1 failed"
    }
    rm -rf "$dir"
}

echo "== base images (stand-ins, cached by tag)"
for base in "${bases[@]}"; do
    case "$base" in */*) die "FROM $base: only Docker Hub library images (rust:..., debian:...) have stand-ins" ;; esac
    if [ -z "${PZDNS_TEST_REBUILD_BASES:-}" ] && podman image exists "localhost/$base"; then
        info "$base: cached ($(podman image inspect --format '{{index .Labels "org.pzdns.stand-in"}}' "localhost/$base"))"
        continue
    fi
    start=$SECONDS
    case "$base" in
        debian:bookworm*) make_debian "$base" ;;
        rust:*bookworm*) make_rust "$base" ;;
        *) die "FROM $base: no stand-in for it (only rust:*-bookworm and debian:bookworm*)" ;;
    esac
    info "$base: made in $((SECONDS - start)) s"
done
[ "$pinned" -gt 0 ] && info "note: the Dockerfile pins base digests; the stand-ins are used under the tag alone"

############################################################################
# Build
############################################################################
dockerfile=$repo/Dockerfile
if [ "$pinned" -gt 0 ] || [ -n "$break_kind" ]; then
    # A copy, only for the two cases that need one: digests dropped (a stand-in
    # cannot have them), or a deliberately broken image for PZDNS_TEST_BREAK.
    dockerfile=$work/Dockerfile
    sed -E 's/^(FROM[[:space:]].*)@sha256:[0-9a-f]+/\1/I' "$repo/Dockerfile" >"$dockerfile"
    # shellcheck disable=SC2016 # ${PZDNS_UID} is the Dockerfile's ARG
    case "$break_kind" in
        binary) printf '%s\n' "" "# PZDNS_TEST_BREAK=binary: an image without its binary" \
            "USER 0" "RUN rm /usr/local/bin/pzdns" 'USER ${PZDNS_UID}:${PZDNS_GID}' >>"$dockerfile" ;;
        user) printf '%s\n' "" "# PZDNS_TEST_BREAK=user: runs as root" "USER 0" >>"$dockerfile" ;;
        healthcheck) printf '%s\n' "" "# PZDNS_TEST_BREAK=healthcheck: no HEALTHCHECK" "HEALTHCHECK NONE" >>"$dockerfile" ;;
    esac
    [ -n "$break_kind" ] && image=localhost/pzdns:test-broken &&
        echo "== PZDNS_TEST_BREAK=$break_kind: building a deliberately broken image; this run must FAIL"
fi

echo "== build: podman build --format docker --pull=never --network host ${dockerfile#"$repo"/}"
start=$(date +%s.%N)
# --format docker: an OCI image would drop HEALTHCHECK. --network host and the
# machine's CA bundle: the build stage fetches crates from crates.io.
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if podman build --format docker --pull=never --network host \
    --build-arg "PZDNS_COMMIT=$commit" \
    -v /etc/ssl/certs:/etc/ssl/certs:ro \
    -f "$dockerfile" -t "$image" "$repo" >"$work/build.log" 2>&1; then
    ok "image builds in $(awk "BEGIN {printf \"%.0f\", $(date +%s.%N) - $start}") s: $image"
else
    bad "image build failed; the end of the build log:"
    tail -n 25 "$work/build.log" | sed 's/^/      | /'
    finish
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
info "image size: $((size / 1000000)) MB ($size bytes; the Debian base is a debootstrap stand-in)"
image_user=$(podman image inspect --format '{{.Config.User}}' "$image")
info "image user: ${image_user:-<none: root>}"

hc=$(podman image inspect --format '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$image")
if [[ "$hc" == '["CMD'* ]]; then
    ok "the image has a HEALTHCHECK: $hc"
else
    bad "the image has no HEALTHCHECK (${hc:-none}: built as OCI, or the Dockerfile lost it)"
fi
case "$image_user" in
    "" | 0 | 0:* | root | root:*) bad "the image runs as root (USER '${image_user}'), expected 10053:10053" ;;
    10053:10053) ok "the image's USER is 10053:10053 (non-root)" ;;
    *) bad "the image's USER is '$image_user', expected 10053:10053" ;;
esac

############################################################################
# Run, as deploy/README.md says: host network, loopback ports, read-only,
# no capability but NET_BIND_SERVICE, zones mounted read-only.
############################################################################
for p in "$dns_port" "$admin_port" "$upstream_port"; do
    if [ -n "$(ss -Hlntu "sport = :$p" 2>/dev/null)" ]; then
        die "port $p is in use on this machine; set PZDNS_TEST_PORT to another base port"
    fi
done

# The zones directory as git-sync lays it out: /git/.worktrees/<commit> holds
# each checkout, and the symlink /git/zones points at the current one. pzdns's
# zones_dir is the symlink; the mount is its parent, so a swap shows inside.
git_root=$work/git
mkdir -p "$git_root/.worktrees"
cp -r zones "$git_root/.worktrees/rev1"
ln -s .worktrees/rev1 "$git_root/zones"
chmod -R a+rX "$git_root"

# The admin API with a token, as deploy/kubernetes runs it: the token a file
# mounted read-only, named by admin.token_file of the config.
admin_token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$admin_token" >"$work/admin.token"
printf 'admin:\n  listen: 127.0.0.1:%s\n  token_file: /run/secrets/pzdns-admin-token\n' "$admin_port" >"$work/pzdns.yaml"
chmod a+r "$work/admin.token" "$work/pzdns.yaml"

run_args=(
    --name "$name" --label "pzdns-test=$$" --network host
    # read-only as Kubernetes' readOnlyRootFilesystem: without podman's tmpfs on /tmp, /run
    --read-only --read-only-tmpfs=false
    --cap-drop ALL --cap-add NET_BIND_SERVICE --security-opt no-new-privileges
    -v "$git_root:/git:ro"
    -v "$work/admin.token:/run/secrets/pzdns-admin-token:ro"
    -v "$work/pzdns.yaml:/etc/pzdns-test/pzdns.yaml:ro"
    # the admin port moved off 9153, so the health check is told where it is
    --health-cmd "pzdns-healthcheck /healthz 127.0.0.1 $admin_port"
    "$image"
    serve --config /etc/pzdns-test/pzdns.yaml --zones /git/zones
    --listen "127.0.0.1:$dns_port"
    --upstream "127.0.0.1:$upstream_port"
)
echo "== run: podman run -d $(printf '%q ' "${run_args[@]}")"
if ! podman run -d "${run_args[@]}" >/dev/null 2>"$work/run.err"; then
    bad "the container did not start: $(grep -v 'systemd connection' "$work/run.err" | tail -n1)"
    for c in "DNS from two VPCs" /readyz "health check" "non-root process" reload SIGTERM \
        "port 53: file capability" "port 53: no-new-privileges + sysctl" "port 53: --cap-drop ALL"; do
        skip "$c (no container)"
    done
    finish
fi

logs() { podman logs --tail "${1:-15}" "$name" 2>&1 | sed 's/^/      | /'; }
running() { [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; }
readyz() { curl -s --max-time 2 "http://127.0.0.1:$admin_port/readyz"; }

# Ready: /readyz is 200 once the zones are loaded.
ready=
for _ in $(seq 1 60); do
    if code=$(curl -s -o "$work/readyz" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$admin_port/readyz") &&
        [ "$code" = 200 ]; then
        ready=1
        break
    fi
    running || break
    sleep 0.5
done
if [ -n "$ready" ]; then
    ok "/readyz through the admin port 127.0.0.1:$admin_port: 200 $(head -n1 "$work/readyz")"
    # Everything but /healthz and /readyz needs the token.
    metrics_url="http://127.0.0.1:$admin_port/metrics"
    no_token=$(curl -s -D "$work/401.head" -o /dev/null -w '%{http_code}' --max-time 2 "$metrics_url")
    with_token=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Authorization: Bearer $admin_token" "$metrics_url")
    if [ "$no_token" = 401 ] && grep -qi '^www-authenticate: bearer' "$work/401.head" && [ "$with_token" = 200 ]; then
        ok "admin token: /metrics 401 (WWW-Authenticate: Bearer) without it, 200 with it"
    else
        bad "admin token: /metrics answered $no_token without the token, $with_token with it"
    fi
else
    bad "/readyz never answered 200 (last: ${code:-none}); the container is $(podman inspect --format '{{.State.Status}} (exit {{.State.ExitCode}})' "$name")"
    logs
fi

# dig SRC NAME TYPE [OPTIONS...]: "STATUS FLAGS: answer data..." on one line.
ask() {
    local src=$1 qname=$2 qtype=$3 out
    shift 3
    out=$(dig -b "$src" @127.0.0.1 -p "$dns_port" +time=2 +tries=1 +norecurse "$@" "$qname" "$qtype" 2>&1)
    printf '%s %s:%s\n' \
        "$(echo "$out" | sed -n 's/.*status: \([A-Z]*\).*/\1/p' | head -n1)" \
        "$(echo "$out" | sed -n 's/^;; flags: \([a-z ]*\);.*/\1/p' | head -n1 | tr ' ' ,)" \
        "$(echo "$out" | awk '/^;; ANSWER SECTION/ {a = 1; next} /^$/ {a = 0} a {printf " %s", $NF}')"
}
expect() { # DESCRIPTION PATTERN SRC NAME TYPE [OPTIONS...]
    local what=$1 pattern=$2 got
    shift 2
    got=$(ask "$@")
    if [[ "$got" =~ $pattern ]]; then
        ok "$what: $got"
    else
        bad "$what: got '$got', expected /$pattern/"
    fi
}
# zones/vpcs.yaml: 127.0.10.0/24 is vpc-hz-prod, 127.0.20.0/24 vpc-bj-prod,
# 127.0.0.1 is in no VPC. svc.hz.internal is visible to vpc-hz-prod only, and
# ecs.cn-beijing.aliyuncs.com to vpc-bj-prod only.
hz=127.0.10.1 bj=127.0.20.1
# (RD=0: a name that is not local is not forwarded, just not answered with AA.)
www='^NOERROR [a-z,]*aa[a-z,]*: 10\.0\.0\.[12] 10\.0\.0\.[12]$'
ecs_bj='^NOERROR [a-z,]*aa[a-z,]*: popunify-vpc\.cn-beijing\.aliyuncs\.com\.$'
not_local='^[A-Z]+ (qr|qr,ra):$'
expect "vpc-hz-prod ($hz) www.svc.hz.internal A over UDP: its zone" "$www" $hz www.svc.hz.internal A
expect "vpc-hz-prod ($hz) www.svc.hz.internal A over TCP: its zone" "$www" $hz www.svc.hz.internal A +tcp
expect "vpc-bj-prod ($bj) www.svc.hz.internal A: not its zone" "$not_local" $bj www.svc.hz.internal A
expect "vpc-bj-prod ($bj) ecs.cn-beijing.aliyuncs.com CNAME: its zone" "$ecs_bj" $bj ecs.cn-beijing.aliyuncs.com CNAME
expect "vpc-hz-prod ($hz) ecs.cn-beijing.aliyuncs.com CNAME: not its zone" "$not_local" $hz ecs.cn-beijing.aliyuncs.com CNAME
expect "127.0.0.1 (in no VPC) is refused" '^REFUSED ' 127.0.0.1 www.svc.hz.internal A

# The health check, run as the engine runs it on its schedule. (Podman schedules
# it with a systemd timer; where there is no systemd, `podman run` logs "unable
# to get systemd connection to add healthchecks" and only this manual run
# exercises it.)
if out=$(timeout 20 podman healthcheck run "$name" 2>&1); then
    ok "podman healthcheck run: ${out:-healthy} ($(podman inspect --format '{{.State.Health.Status}}' "$name"))"
else
    bad "podman healthcheck run: ${out:-exit $?}"
fi

# No anonymous volume: the mounts are the three this script binds (zones,
# admin token, config), each read-only.
mounts=$(podman inspect --format '{{range .Mounts}}{{.Type}}:{{.Destination}}:rw={{.RW}}{{"\n"}}{{end}}' "$name" |
    sed '/^$/d' | sort | tr '\n' ' ')
want_mounts="bind:/etc/pzdns-test/pzdns.yaml:rw=false bind:/git:rw=false bind:/run/secrets/pzdns-admin-token:rw=false "
if [ "$mounts" = "$want_mounts" ]; then
    ok "mounts: ${mounts% } only"
else
    bad "mounts: ${mounts% } (expected only ${want_mounts% }; a VOLUME line adds an anonymous volume)"
fi

# The process runs as 10053, seen from the host.
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$pid/status" 2>/dev/null)
gid=$(awk '/^Gid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
if [ "$uid" = 10053:10053:10053:10053 ] && [ "$gid" = 10053 ]; then
    ok "pzdns (host pid $pid) runs as uid 10053, gid 10053; effective capabilities $capeff; root filesystem read-only"
else
    bad "pzdns (host pid ${pid:-?}) runs as uid ${uid:-?} gid ${gid:-?}, expected 10053"
fi

# A zone change published as git-sync publishes a commit: a new worktree,
# then a new symlink renamed over the old one (one atomic rename).
gen_before=$(readyz | sed -n 's/.*generation \([0-9]*\).*/\1/p')
cp -r "$git_root/.worktrees/rev1" "$git_root/.worktrees/rev2"
cat >>"$git_root/.worktrees/rev2/svc.hz.internal.yaml" <<'EOF'
  - { name: deploy-test, type: A, value: 10.9.9.9 }   # added by deploy/test.sh
EOF
chmod -R a+rX "$git_root/.worktrees/rev2"
ln -s .worktrees/rev2 "$git_root/.zones.tmp"
mv -T "$git_root/.zones.tmp" "$git_root/zones"
swapped=$(date +%s.%N)
got=
for _ in $(seq 1 50); do
    got=$(ask $hz deploy-test.svc.hz.internal A)
    [[ "$got" == *10.9.9.9* ]] && break
    sleep 0.2
done
took=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $swapped}")
gen_after=$(readyz | sed -n 's/.*generation \([0-9]*\).*/\1/p')
if [[ "$got" == *10.9.9.9* ]]; then
    ok "reload after a git-sync style symlink swap: deploy-test.svc.hz.internal $got after ${took} s (generation ${gen_before:-?} -> ${gen_after:-?})"
else
    bad "no reload ${took} s after the symlink swap: deploy-test.svc.hz.internal gave '$got'"
    logs
fi
# git-sync then deletes the old worktree; the new data keeps serving.
rm -rf "$git_root/.worktrees/rev1"
sleep 1.5
expect "after the old worktree is removed, www.svc.hz.internal still answers" \
    '^NOERROR [a-z,]*aa[a-z,]*: 10\.0\.0\.[12] 10\.0\.0\.[12]$' $hz www.svc.hz.internal A

# SIGTERM: pzdns stops listening, drains, exits 0 within the drain bound.
start=$(date +%s.%N)
podman kill --signal TERM "$name" >/dev/null
code=$(timeout 30 podman wait "$name" 2>/dev/null)
took=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $start}")
if [ "$code" = 0 ] && awk "BEGIN {exit !($took <= $drain_bound)}"; then
    ok "SIGTERM: exit 0 after ${took} s (bound ${drain_bound} s)"
else
    bad "SIGTERM: exit ${code:-none} after ${took} s (expected 0 within ${drain_bound} s)"
fi
info "the container's last log lines:"
logs 4

############################################################################
# The image's own defaults: its config (listen 0.0.0.0:53, admin 127.0.0.1:9153),
# its HEALTHCHECK unchanged, the zones mounted over /etc/pzdns/zones as in
# deploy/README.md. Port 53 as uid 10053, the three ways deploy/README.md
# describes. Each in a network namespace of its own (--network none: loopback
# only), queried from the host through nsenter: port 53 of the machine is not
# touched. (Podman gives a non-root process the capabilities of --cap-add as
# ambient ones, Docker and Kubernetes do not: so these runs add none, and the
# capability bounding set keeps NET_BIND_SERVICE from podman's default set.)
############################################################################
runs=0
zones_copy=$work/zones
cp -r zones "$zones_copy"
chmod -R a+rX "$zones_copy"

defaults() { # LABEL CAPEFF [PODMAN RUN OPTIONS...]: run, health check, dig on port 53
    local what=$1 want_eff=$2 health='' pid eff amb got
    shift 2
    runs=$((runs + 1))
    name=pzdns-test-$$-$runs
    echo "== run: podman run -d --name $name --network none --read-only --read-only-tmpfs=false $* -v $zones_copy:/etc/pzdns/zones:ro $image"
    if ! podman run -d --name "$name" --label "pzdns-test=$$" --network none \
        --read-only --read-only-tmpfs=false "$@" \
        -v "$zones_copy:/etc/pzdns/zones:ro" "$image" >/dev/null 2>"$work/run.err"; then
        bad "$what: the container did not start: $(grep -v 'systemd connection' "$work/run.err" | tail -n1)"
        return
    fi
    for _ in $(seq 1 30); do
        health=$(timeout 10 podman healthcheck run "$name" 2>&1) && break
        [[ "$health" == *"no defined healthcheck"* ]] && break
        running || break
        sleep 0.5
    done
    pid=$(podman inspect --format '{{.State.Pid}}' "$name")
    eff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    amb=$(awk '/^CapAmb:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    got=$(nsenter -t "$pid" -n dig -b $hz @127.0.0.1 -p 53 +time=2 +tries=1 +norecurse +short \
        www.svc.hz.internal A 2>&1 | sort | tr '\n' ' ')
    if [ "${health:-healthy}" = healthy ] && [ "$got" = "10.0.0.1 10.0.0.2 " ] &&
        [ "$eff" = "$want_eff" ] && [ "$amb" = 0000000000000000 ]; then
        ok "$what: port 53 as uid $(awk '/^Uid:/ {print $2}' "/proc/$pid/status"), CapEff $eff, HEALTHCHECK healthy, www.svc.hz.internal ${got% }"
    else
        bad "$what: HEALTHCHECK '${health:-healthy}', www.svc.hz.internal '${got% }', CapEff ${eff:-?} (expected $want_eff), CapAmb ${amb:-?}"
        logs
    fi
    podman rm -f -t 0 "$name" >/dev/null 2>&1
}

# Docker's way: the file capability cap_net_bind_service+ep set in the image.
defaults "file capability (no option)" 0000000000000400
# Kubernetes' way: no_new_privs (allowPrivilegeEscalation: false) ignores the
# file capability; the namespaced sysctl lets uid 10053 bind port 53.
defaults "no-new-privileges + sysctl (as the Kubernetes pod)" 0000000000000000 \
    --security-opt no-new-privileges --sysctl net.ipv4.ip_unprivileged_port_start=53
# Without NET_BIND_SERVICE in the bounding set the kernel refuses to exec a
# binary that carries it as a file capability: deploy/README.md says so.
if out=$(podman run --rm --label "pzdns-test=$$" --network none --cap-drop ALL "$image" --version 2>&1); then
    bad "--cap-drop ALL: pzdns started ('$out'): deploy/README.md says exec is refused"
elif [[ "$out" == *"ermission denied"* || "$out" == *"not permitted"* ]]; then
    ok "--cap-drop ALL without --cap-add NET_BIND_SERVICE: exec refused, as deploy/README.md says"
else
    bad "--cap-drop ALL: failed otherwise than deploy/README.md says: $(echo "$out" | grep -v 'systemd connection' | tail -n1)"
fi

finish
