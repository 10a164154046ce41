# syntax=docker/dockerfile:1
#
# pzdns container image.
#
#   docker build --build-arg PZDNS_COMMIT=$(git rev-parse --short=12 HEAD) -t pzdns .
#                                             # or: podman build --format docker ... -t pzdns .
#   docker run -d --name pzdns -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:9153:9153 \
#       -v /srv/zones:/etc/pzdns/zones:ro pzdns
#
# Needs BuildKit (the default builder since Docker 23) or podman/buildah for the
# RUN --mount lines; podman needs --format docker, or the image loses HEALTHCHECK.
# deploy/README.md has the run options (capabilities, config, reload);
# deploy/test.sh builds this file and runs the image for real.

############################################################################
# Build: the same command as on a developer's machine.
############################################################################
# Pinned to a Rust minor version (patch releases only), bumped on purpose; the
# crates are pinned by Cargo.lock (--locked). For digests, see deploy/README.md.
FROM rust:1.95-bookworm AS build

WORKDIR /src
# Only what building the binary reads, so edits to zones/, tests/, benches/ or
# docs do not invalidate this stage.
COPY Cargo.toml Cargo.lock build.rs ./
# The commit `pzdns --version` and pzdns_build_info name: there is no .git in
# the build context, so pass it: --build-arg PZDNS_COMMIT=$(git rev-parse --short=12 HEAD)
ARG PZDNS_COMMIT=unknown
ENV PZDNS_COMMIT=${PZDNS_COMMIT}
# Cargo checks every target the manifest declares, and stops when a declared
# file is missing (`[[bench]] hot_path` without benches/hot_path.rs). None of
# the dev-only targets is built here, so this stage's copy of the manifest drops
# the [[bench]], [[test]] and [[example]] tables: adding one never breaks the
# image. [dev-dependencies] stay, so Cargo.lock still matches and --locked holds.
RUN awk '/^[[:space:]]*\[/ { drop = /^[[:space:]]*\[\[(bench|test|example)\]\]/ } !drop' \
        Cargo.toml > Cargo.toml.bin \
 && mv Cargo.toml.bin Cargo.toml
COPY src ./src

# The registry and target/ are cache mounts, so a rebuild recompiles only what
# changed; the binary is copied out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin pzdns \
 && install -D -m 0755 target/release/pzdns /out/pzdns \
 && sha256sum /out/pzdns > /out/pzdns.sha256 \
 && /out/pzdns --version

############################################################################
# Runtime: Debian slim (glibc, bash for the HEALTHCHECK), non-root.
############################################################################
FROM debian:bookworm-slim

# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only verify a numeric USER.
ARG PZDNS_UID=10053
ARG PZDNS_GID=10053

# Install the binary and give it the file capability cap_net_bind_service, so
# the non-root user can bind port 53 wherever the container's capability
# bounding set still holds NET_BIND_SERVICE (Docker's default set does; with
# --cap-drop ALL add it back, see deploy/README.md). setcap runs in this stage,
# in the same layer that creates the file, because COPY --from does not carry
# the security.capability xattr on every builder; libcap2-bin is purged again
# in the same layer, so the image does not keep it.
# The binary's checksum is copied first: COPY keys its layer by content, so a
# new binary invalidates the RUN below on every builder (buildah reuses a RUN
# whose bind-mounted source changed, and would install a stale binary).
COPY --from=build /out/pzdns.sha256 /usr/local/share/pzdns/pzdns.sha256
# hadolint ignore=DL3008
RUN --mount=type=bind,from=build,source=/out/pzdns,target=/tmp/pzdns \
    set -eux; \
    groupadd --gid "${PZDNS_GID}" pzdns; \
    useradd --uid "${PZDNS_UID}" --gid pzdns --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pzdns; \
    apt-get update; \
    apt-get install -y --no-install-recommends libcap2-bin; \
    install -m 0755 /tmp/pzdns /usr/local/bin/pzdns; \
    sed 's#/out/pzdns#/usr/local/bin/pzdns#' /usr/local/share/pzdns/pzdns.sha256 | sha256sum -c -; \
    setcap cap_net_bind_service=+ep /usr/local/bin/pzdns; \
    setcap -v cap_net_bind_service=+ep /usr/local/bin/pzdns; \
    apt-get purge -y --auto-remove libcap2-bin; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    /usr/local/bin/pzdns --version
# (DL3008 ignored above: libcap2-bin lives only inside that one RUN and is purged
# before the layer is written; pinning its Debian revision would only break the
# build when a bookworm point release replaces it.)

COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/pzdns-healthcheck
COPY --chmod=0644 deploy/docker/pzdns.yaml /etc/pzdns/pzdns.yaml
# The example zones as the default data; mount the real zones directory over it.
COPY zones/ /etc/pzdns/zones/
RUN pzdns check --config /etc/pzdns/pzdns.yaml

# Real zones are mounted over /etc/pzdns/zones (read-only), or elsewhere with
# `--zones DIR`; pzdns watches the directory and reloads by itself. No VOLUME
# line: it would give every container an anonymous, writable volume holding a
# copy of the example zones, left behind by `docker rm` without -v.

# DNS over UDP and TCP, and the admin HTTP port (/healthz /readyz /metrics /zones /reload).
EXPOSE 53/udp 53/tcp 9153/tcp

# /healthz answers 200 as soon as the process is up (liveness, not readiness).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/pzdns-healthcheck", "/healthz", "127.0.0.1", "9153"]

USER ${PZDNS_UID}:${PZDNS_GID}
# Without --config pzdns reads ./pzdns.yaml, so `docker run pzdns serve --listen ...`
# still picks up the image's file from here.
WORKDIR /etc/pzdns
# pzdns handles SIGTERM itself (stops listening, drains in-flight queries for up
# to 5 s), so it can run as PID 1 without an init; `docker stop` waits 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pzdns"]
CMD ["serve", "--config", "/etc/pzdns/pzdns.yaml"]
