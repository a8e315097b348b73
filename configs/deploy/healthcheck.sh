#!/bin/bash
# Liveness check of a TinyKV-rs node, for container HEALTHCHECKs: installed in the image as
# /usr/local/bin/tinykv-healthcheck, so the image needs no curl. Uses bash's /dev/tcp.
#
#   tinykv-healthcheck [PORT]     (default: $TINYKV_HEALTH_PORT, else 8080)
#
# Sends `GET /health?live` (200 whenever the HTTP server answers) to 127.0.0.1:PORT.
# Exit 0 when the answer is `HTTP/1.x 200`; exit 1 when the port refuses the connection,
# nothing answers within 4 s, or the answer is another HTTP status.
#
# With TLS on the client port (security.cert_path set) bash cannot speak HTTPS: the node
# answers the plaintext request with a TLS alert, or closes the connection, instead of an
# HTTP status line. That still shows the listener accepts and answers, so it counts as
# live; in that case the check is "the port accepts connections and answers", not a full
# HTTP round trip.
set -u

port=${1:-${TINYKV_HEALTH_PORT:-8080}}

probe() {
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "unhealthy: nothing listens on 127.0.0.1:$port"; return 1; }
    printf 'GET /health?live HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 2>/dev/null
    local status="" rc=0
    # A TLS listener answers with binary alert bytes (or closes): read whatever comes.
    IFS= read -r -t 4 status <&3 2>/dev/null || rc=$?
    exec 3<&- 3>&-
    if [ "$rc" -gt 128 ]; then
        echo "unhealthy: 127.0.0.1:$port accepted but did not answer within 4 s"
        return 1
    fi
    status=${status%$'\r'}
    case $status in
        "HTTP/1."?" 200 "*) echo "live: $status"; return 0 ;;
        HTTP/*) echo "unhealthy: $status"; return 1 ;;
        *) echo "live: 127.0.0.1:$port accepts connections (no HTTP answer: a TLS listener)"; return 0 ;;
    esac
}

probe
