#!/usr/bin/env bash
# `make run`: two demo backends on 127.0.0.1:9001/9002 and lbproxy on config/lbproxy.yaml.
# Ctrl-C stops all of it.
set -u
build=${1:-build}
cd "$(dirname "$0")/../.."
backend=$build/tests/support/lbp-backend
proxy=$build/workers/lbproxy
pids=()

stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  echo "demo stopped"
}
trap stop INT TERM EXIT

for i in 1 2; do
  "$backend" --listen "127.0.0.1:900$i" --name "demo-$i" >"$build/demo-$i.log" 2>&1 &
  pids+=($!)
done
echo "demo: backends demo-1 and demo-2 on 127.0.0.1:9001 and 127.0.0.1:9002 (logs: $build/demo-*.log)"
echo "demo: lbproxy on http://127.0.0.1:8080/ (try: curl -i http://127.0.0.1:8080/); Ctrl-C stops it"
echo "demo: status page on http://127.0.0.1:9900/ (also /stats, /metrics, /events); access log below"
"$proxy" -c config/lbproxy.yaml &
pids+=($!)
wait "${pids[-1]}"
