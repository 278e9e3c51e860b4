#!/usr/bin/env bash
# The compose stack (docker/compose.yml) run for real on a Docker engine: discovery, scaling, failures, 0 replicas, reload, stop.
#
# Usage: docker/test-compose.sh   (as root or a member of the docker group; a few minutes, the
#        first image build included). LBPROXY_PORT=9090 to publish another port than 8080;
#        LBP_TEST_RMI=1 to remove the images at the end (kept by default: they are the stack's,
#        and the next run starts from them).
#
# Every client request goes to the published port on 127.0.0.1, and only there:
#   1. every web replica and the api answer;
#   2. web scaled to 5: the new replicas get traffic within resolve_interval, and lbproxy was not
#      restarted (same container id and start time);
#   3. a web replica stopped under a load loop: no client error once lbproxy noticed (its health
#      check or its DNS), and at most the requests in flight before;
#   4. api scaled to 0: /api/ answers 503 (not 404, not a hang); back to 1: 200 again;
#   5. the mounted config edited and HUP sent: the new route answers, no request failed;
#   6. docker stop: a graceful stop (a request in flight completes, exit code 0).
# The stack is the project "lbproxy-test", with docker/ mounted from a copy, so the repository's
# lbproxy.yaml is never edited. It is always taken down (trap); on failure the containers' logs
# and the engine's are printed first. Waits poll against deadlines; nothing sleeps blindly.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PROJECT=lbproxy-test
PORT=${LBPROXY_PORT:-8080}
URL="http://127.0.0.1:$PORT"
LOADERS=4 # concurrent clients of the load loops: at most this many requests are in flight
T0=${EPOCHREALTIME/./}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
say() {
  local us=$((${EPOCHREALTIME/./} - T0))
  printf '[%4d.%01ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*"
}
fail() { say "FAIL: $*"; exit 1; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it succeeds, or fails the test.
wait_for() {
  local secs=$1 what=$2 end
  shift 2
  end=$(($(now_ms) + secs * 1000))
  until "$@"; do
    [ "$(now_ms)" -lt "$end" ] || fail "no $what within ${secs} s"
    sleep 0.2
  done
}

# ---- the engine ----

tool="$(cd "$here/../.." && pwd)/shared/tools/container-engine" # ../shared from the repository
if [ -x "$tool" ]; then
  say "engine: $tool"
  eval "$("$tool" | tail -n1)" # ENGINE=docker COMPOSE="docker-compose"
elif docker compose version >/dev/null 2>&1; then
  ENGINE=docker COMPOSE="docker compose"
elif command -v docker-compose >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker COMPOSE=docker-compose
else
  fail "no Docker engine with compose here (docker compose or docker-compose)"
fi
[ "$ENGINE" = docker ] || fail "this test needs Docker (engine: $ENGINE; podman-compose ignores --scale)"
read -r -a COMPOSE_CMD <<<"$COMPOSE"
if ! command -v curl >/dev/null 2>&1; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl >/dev/null
fi
say "engine: docker $(docker version --format '{{.Server.Version}}'), $COMPOSE $("${COMPOSE_CMD[@]}" version --short 2>/dev/null || true)"

# ---- the stack's files, set-up and teardown ----

tmp=$(mktemp -d /tmp/lbproxy-compose.XXXXXX)
mkdir "$tmp/etc"
cp "$here/lbproxy.yaml" "$tmp/etc/lbproxy.yaml"
cat >"$tmp/override.yml" <<EOF
# The test's copy of the config directory, mounted where compose.yml mounts docker/.
services:
  lbproxy:
    volumes:
      - "$tmp/etc:/etc/lbproxy:ro"
EOF
LOAD_PIDS=()

dc() { timeout 600 "${COMPOSE_CMD[@]}" -p "$PROJECT" -f "$here/compose.yml" -f "$tmp/override.yml" "$@"; }

stop_load() {
  touch "$tmp/stop-load"
  [ ${#LOAD_PIDS[@]} -eq 0 ] || wait "${LOAD_PIDS[@]}" 2>/dev/null || true
  LOAD_PIDS=()
  rm -f "$tmp/stop-load"
}

teardown() {
  local rc=$?
  set +e
  for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [ $rc -ne 0 ]; then
    echo "---- containers"
    docker ps -a --filter "label=com.docker.compose.project=$PROJECT"
    echo "---- their logs (last 150 lines each)"
    dc logs --no-color --timestamps --tail=150
    if [ -r /tmp/dockerd.log ]; then
      echo "---- dockerd (last 40 lines of /tmp/dockerd.log)"
      tail -n 40 /tmp/dockerd.log
    fi
  fi
  say "teardown: down -v"
  dc down -v --remove-orphans -t 5 >"$tmp/down.log" 2>&1 || cat "$tmp/down.log"
  if [ "${LBP_TEST_RMI:-0}" = 1 ]; then
    docker rmi lbproxy lbproxy-demo-backend >/dev/null 2>&1
  fi
  rm -rf "$tmp"
  [ $rc -eq 0 ] && say "PASS" || say "FAILED (exit $rc)"
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---- helpers ----

# get PATH: one request; sets CODE (000: no answer within 5 s) and NAME (the first body line:
# the demo backend's name, its container's host name).
get() {
  local out
  out=$(curl -s -m 5 -w '\n%{http_code}' "$URL$1") || true
  CODE=${out##*$'\n'} NAME=${out%%$'\n'*}
}

# ids SERVICE: the running containers' short ids (their host names), sorted.
ids() {
  docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" | sort
}

lbproxy_cid() { docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=lbproxy"; }
identity() { docker inspect -f '{{.Id}} started={{.State.StartedAt}} restarts={{.RestartCount}}' "$LBP"; }

# log_time LINE: the time of an lbproxy log line (it starts with an ISO time), in ms.
log_time() { date -u -d "${1%% *}" +%s%3N; }

# load_start PATH: LOADERS clients in a loop, each request logged as "start_us code name".
load_start() {
  local i
  for ((i = 0; i < LOADERS; i++)); do
    (
      while [ ! -e "$tmp/stop-load" ]; do
        t=${EPOCHREALTIME/./}
        get "$1"
        echo "$t $CODE $NAME"
      done >"$tmp/load.$i"
    ) &
    LOAD_PIDS+=($!)
  done
}
load_count() { cat "$tmp"/load.* 2>/dev/null | wc -l; }
load_at_least() { [ "$(load_count)" -ge "$1" ]; }

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$LBP")" = healthy ]; }
answers() { get "$1"; [ "$CODE" = "$2" ]; }
past() { [ "$(now_ms)" -ge "$1" ]; }

# ---- build and start ----

RESOLVE_S=$(sed -n 's/^ *resolve_interval: *\([0-9]*\)s.*/\1/p' "$tmp/etc/lbproxy.yaml" | head -n1)
[ -n "$RESOLVE_S" ] || fail "no resolve_interval (in seconds) in docker/lbproxy.yaml"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  fail "127.0.0.1:$PORT is already in use (another lbproxy, make run?): LBPROXY_PORT=... picks another"
fi
dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || true # a previous run killed before its trap

say "build: the lbproxy and demo backend images (log: $tmp/build.log)"
dc build >"$tmp/build.log" 2>&1 || { tail -n 60 "$tmp/build.log"; fail "the images did not build"; }
say "build: done; lbproxy image $(docker image inspect -f '{{.Size}}' lbproxy | awk '{printf "%.1f MB", $1/1e6}')"
dc up -d >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log"; fail "compose up failed"; }
LBP=$(lbproxy_cid)
[ -n "$LBP" ] || fail "no lbproxy container"
wait_for 60 "healthy lbproxy container (its HEALTHCHECK)" healthy
wait_for 30 "200 on $URL/" answers / 200
say "up: lbproxy healthy, $(ids web | wc -l) web replicas, $(ids api | wc -l) api"

# ---- 1. every web replica and the api answer ----

say "1. every web replica and the api answer"
declare -A seen=()
web3=$(ids web)
[ "$(wc -l <<<"$web3")" -eq 3 ] || fail "expected 3 web replicas (deploy.replicas), got: $web3"
# all_seen: one more request to /, then whether every replica has answered one.
all_seen() {
  get /
  [ "$CODE" = 200 ] || fail "GET / answered $CODE"
  seen[$NAME]=$((${seen[$NAME]:-0} + 1))
  for id in $web3; do [ -n "${seen[$id]:-}" ] || return 1; done
}
wait_for 15 "answer from every one of the 3 web replicas" all_seen
get /api/
[ "$CODE" = 200 ] && [ "$NAME" = "$(ids api)" ] || fail "GET /api/: $CODE from '$NAME', not the api $(ids api)"
say "   ok: / answered by all of $(for id in $web3; do printf '%s (x%s) ' "$id" "${seen[$id]}"; done); /api/ by $NAME"

# ---- 2. web scaled to 5, lbproxy untouched ----

say "2. web scaled to 5 (resolve_interval ${RESOLVE_S}s)"
before=$(identity)
dc up -d --no-deps --no-recreate --scale web=5 web >"$tmp/scale.log" 2>&1 || { cat "$tmp/scale.log"; fail "scale web=5"; }
t_scaled=$(now_ms)
new=$(comm -13 <(echo "$web3") <(ids web))
[ "$(wc -l <<<"$new")" -eq 2 ] || fail "expected 2 new web replicas, got: $new"
declare -A first=()
end=$((t_scaled + (RESOLVE_S + 10) * 1000))
while :; do
  get /
  [ "$CODE" = 200 ] || fail "GET / answered $CODE while scaling"
  [ -z "${first[$NAME]:-}" ] && first[$NAME]=$(($(now_ms) - t_scaled))
  all=1
  for id in $new; do [ -n "${first[$id]:-}" ] || all=0; done
  [ $all = 1 ] && break
  [ "$(now_ms)" -lt "$end" ] || fail "new replicas $(echo $new) not all reached within $((RESOLVE_S + 10)) s"
done
for id in $new; do
  say "   new replica $id: first answered ${first[$id]} ms after the scale-up"
  [ "${first[$id]}" -le $((RESOLVE_S * 1000 + 1500)) ] ||
    fail "replica $id got traffic only after ${first[$id]} ms (resolve_interval ${RESOLVE_S}s)"
done
after=$(identity)
[ "$before" = "$after" ] || fail "lbproxy was restarted: $before -> $after"
say "   ok: lbproxy not restarted: ${after:0:12} ${after#* }"

# ---- 3. a web replica stopped under load ----

say "3. one web replica stopped under load ($LOADERS clients in a loop)"
victim=$(head -n1 <<<"$web3")
vip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$victim")
load_start /
wait_for 20 "first 100 requests of the load loop" load_at_least 100
t_stop=$(now_ms)
docker stop -t 10 "$victim" >/dev/null
say "   stopped $victim ($vip) after $(load_count) requests"
# lbproxy noticed when its check took the server down, or its DNS dropped the address.
noticed() {
  local line
  while IFS= read -r line; do
    case $line in
    *"server: upstream web server $vip:"*": down"* | *"dns: web resolves to"*)
      [[ $line == *"dns: web resolves to"*"$vip,"* || $line == *"dns: web resolves to"*"$vip (was"* ]] && continue
      t_noticed=$(log_time "$line")
      [ "$t_noticed" -ge "$t_stop" ] || continue
      noticed_by=${line#* * * * }
      return 0
      ;;
    esac
  done < <(docker logs "$LBP" 2>&1)
  return 1
}
wait_for 20 "sign that lbproxy noticed the stopped replica (check or DNS)" noticed
say "   lbproxy noticed $((t_noticed - t_stop)) ms after the stop: $noticed_by"
t_end=$((t_noticed + 3000))
wait_for 20 "3 more seconds of load" past "$t_end"
stop_load
awk -v n="$t_noticed" -v v="$victim" '
  { total++; late = int($1 / 1000) >= n; ok = $2 == 200 }
  !ok && late { after++; print "   error after noticed: " $0 }
  !ok && !late { before++; print "   error before noticed: " $0 }
  ok && late && $3 == v { stale++ }
  END { printf "%d %d %d %d\n", total, before + 0, after + 0, stale + 0 }' "$tmp"/load.* >"$tmp/load.sum"
read -r total errs_before errs_after stale < <(tail -n1 "$tmp/load.sum")
sed -n '1,20{$!p}' "$tmp/load.sum"
say "   $total requests: $errs_before errors before lbproxy noticed, $errs_after after"
[ "$errs_after" -eq 0 ] || fail "$errs_after client errors after lbproxy noticed the stopped replica"
[ "$errs_before" -le $LOADERS ] || fail "$errs_before errors before it noticed: more than the $LOADERS in flight"
[ "$stale" -eq 0 ] || fail "$stale answers from the stopped replica after it was noticed"
rm -f "$tmp"/load.*

# ---- 4. api at 0 replicas: 503; back to 1: 200 ----

say "4. api scaled to 0, then back to 1"
dc up -d --no-deps --scale api=0 api >"$tmp/scale.log" 2>&1 || { cat "$tmp/scale.log"; fail "scale api=0"; }
t0=$(now_ms)
declare -A codes=()
end=$((t0 + (RESOLVE_S + 8) * 1000))
while :; do
  get /api/
  codes[$CODE]=$((${codes[$CODE]:-0} + 1))
  case $CODE in
  503) break ;;
  # Until lbproxy notices (next resolve, or fall * interval of the check), a request may still
  # reach the replica (200) or its address after it is gone: refused (502) or, once the address
  # no longer exists, no answer within timeouts.connect (504). There is nothing to retry on.
  200 | 502 | 504) ;;
  *) fail "GET /api/ with api going to 0 replicas answered $CODE (want 503; 000 = no answer in 5 s)" ;;
  esac
  [ "$(now_ms)" -lt "$end" ] || fail "no 503 within $((RESOLVE_S + 8)) s of api going to 0"
done
say "   503 after $(($(now_ms) - t0)) ms (answers until then: $(for c in "${!codes[@]}"; do printf '%s x%s ' "$c" "${codes[$c]}"; done))"
for ((i = 0; i < 10; i++)); do
  t=$(now_ms)
  get /api/
  [ "$CODE" = 503 ] || fail "GET /api/ with api at 0 answered $CODE after a 503"
  [ $(($(now_ms) - t)) -lt 1000 ] || fail "a 503 took $(($(now_ms) - t)) ms"
done
curl -s -m 5 -D "$tmp/head" -o /dev/null "$URL/api/" || true
grep -qi '^retry-after: *1' "$tmp/head" || fail "the 503 has no Retry-After: 1: $(cat "$tmp/head")"
say "   ok: 10 more, each 503 at once, with Retry-After: 1"
dc up -d --no-deps --scale api=1 api >"$tmp/scale.log" 2>&1 || { cat "$tmp/scale.log"; fail "scale api=1"; }
t0=$(now_ms)
wait_for $((RESOLVE_S + 15)) "200 on /api/ with api back to 1" answers /api/ 200
[ "$NAME" = "$(ids api)" ] || fail "/api/ answered by '$NAME', not the new api $(ids api)"
say "   ok: 200 from the new api replica $NAME after $(($(now_ms) - t0)) ms"

# ---- 5. the mounted config edited, HUP: the new route, no request failed ----

say "5. a route added to the mounted config, HUP"
get /v2/
[ "$CODE" = 404 ] || fail "GET /v2/ before the reload: $CODE (want the web backend's 404)"
load_start /
wait_for 20 "first 50 requests of the load loop" load_at_least 50
sed -i 's|^routes:$|routes:\n  - path: /v2/\n    upstream: api\n    strip_prefix: true|' "$tmp/etc/lbproxy.yaml"
grep -q '^  - path: /v2/' "$tmp/etc/lbproxy.yaml" || fail "could not edit the config copy"
t_hup=$(now_ms)
dc kill -s HUP lbproxy >"$tmp/kill.log" 2>&1 || { cat "$tmp/kill.log"; fail "kill -s HUP"; }
# reloaded: the master logged "reload: requested" and then "generation: N active" after the HUP.
reloaded() {
  local line t
  t_req=
  while IFS= read -r line; do
    [[ $line == *"master info: reload: requested"* || $line == *"generation: "*" active"* ]] || continue
    t=$(log_time "$line")
    [ "$t" -ge "$t_hup" ] || continue
    [[ $line == *"reload: requested"* ]] && t_req=$t
    [[ $line == *" active"* && -n $t_req ]] && t_active=$t && return 0
  done < <(docker logs "$LBP" 2>&1)
  return 1
}
wait_for 30 "'reload: requested' then 'generation: N active' in the log after the HUP" reloaded
say "   the master got the HUP $((t_req - t_hup)) ms after '$COMPOSE kill' started; new generation active $((t_active - t_req)) ms later"
wait_for 10 "200 on /v2/ (the new route)" answers /v2/ 200
[ "$NAME" = "$(ids api)" ] || fail "/v2/ answered by '$NAME', not the api"
t_end=$(($(now_ms) + 1000))
wait_for 10 "1 more second of load" past "$t_end"
stop_load
total=$(load_count)
failed=$(awk '$2 != 200' "$tmp"/load.* | wc -l)
awk '$2 != 200 && n++ < 20 { print "   failed: " $0 }' "$tmp"/load.*
[ "$failed" -eq 0 ] || fail "$failed of $total requests failed across the reload"
[ "$(identity)" = "$after" ] || fail "lbproxy was restarted by the reload: $after -> $(identity)"
say "   ok: /v2/ reaches the api ($NAME); $total requests across the reload, none failed; same container"

# ---- 6. docker stop: graceful (beyond the issue's steps: PID 1 and STOPSIGNAL at work) ----

say "6. docker stop with a request in flight"
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello' >&5
IFS= read -r -t 5 status <&5 || fail "no response head to POST /echo"
[[ $status == "HTTP/1.1 200"* ]] || fail "POST /echo: $status"
while IFS= read -r -t 5 line <&5 && [ "$line" != $'\r' ]; do :; done
read -r -t 5 -N 5 part <&5 && [ "$part" = hello ] || fail "the first half was not echoed: '$part'"
t_stop=$(now_ms)
docker stop -t 30 "$LBP" >/dev/null &
stopper=$!
quitting() { docker logs "$LBP" 2>&1 | grep -F 'graceful stop' >/dev/null; }
wait_for 10 "'graceful stop' in lbproxy's log" quitting
printf 'world' >&5
read -r -t 10 -N 5 rest <&5 || true
exec 5<&-
[ "$rest" = world ] || fail "the request in flight was cut by docker stop (got '$rest')"
wait "$stopper" || fail "docker stop failed"
code=$(docker inspect -f '{{.State.ExitCode}}' "$LBP")
[ "$code" = 0 ] || fail "lbproxy exited with $code after docker stop"
say "   ok: the request in flight completed; lbproxy exited 0, $(($(now_ms) - t_stop)) ms after docker stop"
