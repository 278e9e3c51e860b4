#!/bin/bash
# The lbproxy image's HEALTHCHECK: HEAD /stats on the admin endpoint must answer 200 (bash alone: no curl in the image).
# Usage: lbproxy-healthcheck [HOST:PORT [PATH]]   (default: the admin endpoint, 127.0.0.1:9900 /stats)
# Builtins only (/dev/tcp, read -t): nothing is forked, so no orphan is left for PID 1 to reap.
addr=${1:-127.0.0.1:9900} path=${2:-/stats}
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 1
printf 'HEAD %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lbproxy-healthcheck\r\nConnection: close\r\n\r\n' \
  "$path" "$addr" >&3 || exit 1
IFS= read -r -t 3 status <&3 || { echo "no answer from $addr within 3 s"; exit 1; }
[[ $status == "HTTP/1."[01]" 200 "* ]] || { echo "HEAD $path: ${status%$'\r'}"; exit 1; }
