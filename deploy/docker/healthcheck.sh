#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on pzdns's admin port and succeed on a
# 200. It needs nothing but bash, whose /dev/tcp redirection opens the TCP
# connection: debian:bookworm-slim has no curl or wget, and pzdns has no HTTP
# client of its own, so this adds no package (and no attack surface) to the image.
#
# usage: pzdns-healthcheck [PATH [HOST [PORT]]]   (default: /healthz 127.0.0.1 9153)
# exit:  0 healthy, 1 unhealthy (the reason on stderr, which `docker inspect` shows)
set -eu

path=${1:-/healthz}
host=${2:-127.0.0.1}
port=${3:-9153}
url="http://${host}:${port}${path}"

# (bash's own "connect: Connection refused" lines are silenced: one clear line is enough)
if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
    echo "pzdns-healthcheck: cannot connect to ${host}:${port}" >&2
    exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: pzdns-healthcheck\r\nConnection: close\r\n\r\n' \
    "$path" "$host" "$port" >&3

# Only the status line matters: "HTTP/1.1 200 OK".
if ! IFS=' ' read -r -t 3 proto code _ <&3; then
    echo "pzdns-healthcheck: no answer from ${url}" >&2
    exit 1
fi
exec 3<&-
code=${code%$'\r'}

if [ "$code" = 200 ]; then
    exit 0
fi
echo "pzdns-healthcheck: ${url} answered ${proto} ${code}" >&2
exit 1
