#!/usr/bin/env bash
# make bench: lbproxy's dispatch strategies vs nginx, HAProxy and direct, under wrk, interleaved.
#
# Usage: bench/run.sh BUILD_DIR [--quick]     (see bench/README.md)
#
# 1. Three bench backends (lbp-backend) start once and serve every target: A and B (one process
#    each) are the upstream pool of every proxy; D (two processes, the same CPU as A+B) is what
#    "direct" measures, wrk straight at a backend.
# 2. Rounds x workloads x targets, one at a time: a round runs every workload, and within a
#    workload every target, in an order rotated by one each round and reversed every other
#    round, so neither slow drift of this shared machine nor the target measured just before
#    always hits the same target. Each measurement starts its target fresh,
#    warms it up, measures with wrk while sampling /proc, then stops it. The imbalanced
#    workload uses lbp-imbalance instead of wrk: one process warms up, pauses with nothing in
#    flight (lbproxy's per-worker request counts are read from its admin API then), measures,
#    and holds its connections until the counts are read again.
# 3. Anything dead (a target or backend process, wrk errors, no requests) stops the run with
#    the log that shows why; the EXIT trap stops every process this script started.
# 4. Results: bench/results/<date>-<host>[-quick]/ (results.csv, raw/, logs/, micro.*), then
#    bench/report.sh writes report.md and the SVG charts from them.
set -euo pipefail

usage() {
  echo "usage: bench/run.sh BUILD_DIR [--quick]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
BUILD=$1
shift
QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --quick) QUICK=1 ;;
  *) usage ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
LBPROXY=$BUILD/workers/lbproxy
BACKEND=$BUILD/tests/support/lbp-backend
IDLE=$BUILD/bench/lbp-idle-conns
IMB=$BUILD/bench/lbp-imbalance
MICRO=$BUILD/bench/lbp-micro
PATH=$PATH:/usr/sbin:/sbin

# ---- settings (LBP_BENCH_* override them; see README) ----
if [[ $QUICK == 1 ]]; then
  ROUNDS=${LBP_BENCH_ROUNDS:-1} DURATION=${LBP_BENCH_DURATION:-3} WARMUP=1
  MICRO_HEAD=20000 MICRO_HANDOFF=5000
else
  ROUNDS=${LBP_BENCH_ROUNDS:-3} DURATION=${LBP_BENCH_DURATION:-10} WARMUP=2
  MICRO_HEAD=100000 MICRO_HANDOFF=20000
fi
IDLE_CONNS=${LBP_BENCH_IDLE_CONNS:-10000}
read -r -a TARGETS <<<"${LBP_BENCH_TARGETS:-direct lbproxy-handoff lbproxy-handoff-least \
lbproxy-proxy lbproxy-shared lbproxy-reuseport nginx haproxy}"
read -r -a WORKLOADS <<<"${LBP_BENCH_WORKLOADS:-ka-small close-small resp-64k resp-1m slow-10ms \
idle-10k imbalanced}"
# Per workload: request path, client connections, a new connection per request (1) or keep-alive.
declare -A WL_PATH=([ka-small]=/ [close-small]=/ [resp-64k]="/bytes?n=65536"
  [resp-1m]="/bytes?n=1048576" [slow-10ms]="/delay?ms=10" [idle-10k]=/ [imbalanced]=/)
declare -A WL_CONNS=([ka-small]=50 [close-small]=50 [resp-64k]=50 [resp-1m]=20 [slow-10ms]=500
  [idle-10k]=50 [imbalanced]=50)
declare -A WL_CLOSE=([close-small]=1)
# imbalanced (lbp-imbalance): half the connections heavy, each making IMB_RATIO times the requests
# of a light one, connected heavy, light, heavy, ... so that dealing in turn piles them up.
IMB_HEAVY=0.5 IMB_RATIO=10

die() {
  echo "bench: error: $*" >&2
  exit 1
}

for w in "${WORKLOADS[@]}"; do [[ -n ${WL_PATH[$w]:-} ]] || die "unknown workload '$w'"; done
for t in "${TARGETS[@]}"; do
  case $t in direct | nginx | haproxy | lbproxy-handoff | lbproxy-handoff-least | lbproxy-proxy | \
    lbproxy-shared | lbproxy-reuseport) ;;
  *) die "unknown target '$t'" ;;
  esac
done
for f in "$LBPROXY" "$BACKEND" "$IDLE" "$IMB" "$MICRO"; do
  [[ -x $f ]] || die "$f is missing: build with 'make bench' (or cmake --build $BUILD)"
done
for tool in wrk curl nginx haproxy gnuplot valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || die "$tool is not installed (make bench installs it)"
done

# 10 000 idle connections need that many descriptors in one process, and more where a process
# holds two per client (the master of dispatch proxy; HAProxy's single process by its own count).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
((NOFILE >= 4096)) || die "open-file limit $NOFILE is too low (need >= 4096; 20000 for idle-10k)"
CLK_TCK=$(getconf CLK_TCK)

HOST=$(hostname -s 2>/dev/null || hostname)
RESULTS=$BENCH/results/$(date +%F)-$HOST
[[ $QUICK == 1 ]] && RESULTS+=-quick
rm -rf "$RESULTS"
mkdir -p "$RESULTS/raw" "$RESULTS/logs"
CSV=$RESULTS/results.csv
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lbp-bench.XXXXXX")

# ---- processes: every one we start is a process-group leader (setsid), stopped at exit ----
STARTED=()
WRK_PID=""
GEN_PID="" # lbp-imbalance, while it runs (it is in STARTED too)

# Reads /proc/PID/stat after the command name: S_STATE, S_PPID, S_PGRP, S_CPU (utime+stime).
read_stat() {
  local line rest f
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  rest=${line##*) }
  read -r -a f <<<"$rest"
  S_STATE=${f[0]} S_PPID=${f[1]} S_PGRP=${f[2]} S_CPU=$((f[11] + f[12]))
}

is_running() {
  read_stat "$1" && [[ $S_STATE != Z && $S_STATE != X ]]
}

# Prints the pids whose parent is $1 (this kernel may lack /proc/PID/task/*/children).
children_of() {
  local f p
  for f in /proc/[0-9]*/stat; do
    p=${f#/proc/}
    p=${p%/stat}
    if read_stat "$p" && [[ $S_PPID == "$1" && $S_STATE != Z ]]; then echo "$p"; fi
  done
}

group_alive() {
  local f p
  for f in /proc/[0-9]*/stat; do
    p=${f#/proc/}
    p=${p%/stat}
    if read_stat "$p" && [[ $S_PGRP == "$1" && $S_STATE != Z ]]; then return 0; fi
  done
  return 1
}

# Starts "$@" as a new process group with stdout+stderr to $LOG; sets SPAWNED.
spawn() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  SPAWNED=$!
  STARTED+=("$SPAWNED")
}

# Stops a group we started: SIGTERM to its leader (which stops its own children), SIGKILL to
# the whole group after $2 seconds. Returns 1 if it had to kill.
stop_group() {
  local pid=$1 deadline=$((SECONDS + ${2:-15})) rc=0 keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  while group_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      echo "bench: warning: process group $pid did not stop in time: SIGKILL" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
      rc=1
      break
    fi
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
  for p in "${STARTED[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
  return $rc
}

cleanup() {
  local rc=$? p deadline
  trap - EXIT INT TERM HUP
  set +e
  [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
  for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + 12))
  for p in "${STARTED[@]}"; do
    while group_alive "$p" && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL -- "-$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
  if ((rc != 0)); then
    echo "bench: FAILED (exit $rc); logs and raw outputs so far are in $RESULTS" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM HUP

# Polls until FILE has a line matching ERE, while PID runs, for at most SECS seconds.
wait_line() {
  local file=$1 re=$2 pid=$3 secs=$4 what=$5 deadline=$((SECONDS + $4))
  until grep -qE "$re" "$file" 2>/dev/null; do
    if ! is_running "$pid"; then
      tail -n 20 "$file" >&2 || true
      die "$what exited before it was ready (log: $file)"
    fi
    ((SECONDS <= deadline)) || die "$what not ready after ${secs}s (log: $file)"
    sleep 0.05
  done
}

# True if something listens on 127.0.0.1:PORT (or any address), from /proc/net/tcp{,6}.
port_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p="$hex" '$4 == "0A" && substr($2, index($2, ":") + 1) == p { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port nothing listens on, below the ephemeral range so clients never take it meanwhile.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    port_listening "$p" || break
  done
  echo "$p"
}

# ---- figures from /proc ----

cpu_ticks() {
  local sum=0 p
  for p in "$@"; do read_stat "$p" && sum=$((sum + S_CPU)); done
  echo "$sum"
}

# Sum of a /proc/PID/status field (kB) over the pids: VmRSS now, VmHWM the peak.
status_kib() {
  local field=$1 p files=()
  shift
  for p in "$@"; do files+=("/proc/$p/status"); done
  ((${#files[@]})) || {
    echo 0
    return
  }
  awk -v f="$field:" '$1 == f { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null
}

# Machine-wide CPU from /proc/stat, in ticks: sets M_BUSY (not idle, not iowait) and M_STEAL.
machine_ticks() {
  local user nice sys irq sirq steal
  read -r _ user nice sys _ _ irq sirq steal _ </proc/stat
  M_BUSY=$((user + nice + sys + irq + sirq + steal)) M_STEAL=$steal
}

# CPU of this shell's reaped children (wrk, mostly), in ticks, from the `times` builtin.
children_ticks() {
  times | awk -v k="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
    printf "%d\n", t * k }'
}

fd_count() {
  local n=0 p fds
  for p in "$@"; do
    fds=(/proc/"$p"/fd/*)
    n=$((n + ${#fds[@]}))
  done
  echo "$n"
}

# ---- backends ----

start_backend() { # NAME PROCS -> BE_PORT, BE_PID
  local log=$RESULTS/logs/backend-$1.log
  spawn "$log" "$BACKEND" --listen 127.0.0.1:0 --name "$1" --procs "$2"
  BE_PID=$SPAWNED
  wait_line "$log" '^ready listen=' "$BE_PID" 10 "backend $1"
  BE_PORT=$(sed -n 's/^ready listen=[0-9.]*:\([0-9]*\) .*/\1/p' "$log" | head -n 1)
}

check_backends() {
  local p
  for p in "$BE_A_PID" "$BE_B_PID" "$BE_D_PID"; do
    is_running "$p" || die "a bench backend (pid $p) died; see $RESULTS/logs/backend-*.log"
  done
}

# ---- targets: start sets T_PORT, T_LEADER, T_MASTER (pid or empty), T_WORKERS (pids) and
# T_PROCS (both: every process whose CPU, memory and descriptors count for the target) ----

fill() { # TEMPLATE OUT KEY=VALUE...
  local tpl=$1 out=$2 kv sed_args=()
  shift 2
  for kv in "$@"; do sed_args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${sed_args[@]}" "$tpl" >"$out"
  ! grep -q '@[A-Z_0-9]*@' "$out" || die "unfilled placeholder in $out"
}

# Children of the leader, waiting until there are $2 of them.
wait_children() {
  local leader=$1 want=$2 what=$3 log=$4 deadline=$((SECONDS + 10))
  while :; do
    mapfile -t T_WORKERS < <(children_of "$leader")
    ((${#T_WORKERS[@]} == want)) && return 0
    is_running "$leader" || die "$what exited at start-up (log: $log)"
    ((SECONDS < deadline)) || die "$what: ${#T_WORKERS[@]} workers, expected $want (log: $log)"
    sleep 0.05
  done
}

start_lbproxy() { # DISPATCH LOG
  local cfg=$TMP/lbproxy-$1.yaml
  fill "$BENCH/peers/lbproxy.yaml.in" "$cfg" DISPATCH="$1" BACKEND1="$BE_A_PORT" \
    BACKEND2="$BE_B_PORT"
  spawn "$2" "$LBPROXY" -c "$cfg"
  T_LEADER=$SPAWNED T_MASTER=$SPAWNED
  wait_line "$2" ' master info: ready listen=' "$T_LEADER" 20 "lbproxy ($1)"
  T_PORT=$(sed -n 's/.* master info: ready listen=[0-9.]*:\([0-9]*\) .*/\1/p' "$2" | head -n 1)
  T_ADMIN=$(sed -n 's/.* master info: ready listen=.* admin=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$2" |
    head -n 1)
  [[ -n $T_ADMIN ]] || die "lbproxy ($1): no admin address in its ready line (log: $2)"
  wait_children "$T_LEADER" 2 "lbproxy ($1)" "$2"
}

# Starts a peer on a free port; a port taken meanwhile by someone else means another try.
start_peer() { # KIND LOG
  local kind=$1 log=$2 dir=$TMP/$1 try user_line=""
  mkdir -p "$dir"
  for ((try = 1; try <= 5; try++)); do
    T_PORT=$(free_port)
    if [[ $kind == nginx ]]; then
      [[ $(id -u) == 0 ]] && user_line="user root;"
      fill "$BENCH/peers/nginx.conf.in" "$dir/nginx.conf" DIR="$dir" PORT="$T_PORT" \
        BACKEND1="$BE_A_PORT" BACKEND2="$BE_B_PORT" NOFILE="$NOFILE" \
        WORKER_CONNECTIONS="$NOFILE" USER_LINE="$user_line"
      spawn "$log" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
        -g "daemon off; pid $dir/nginx.pid;"
    else
      fill "$BENCH/peers/haproxy.cfg.in" "$dir/haproxy.cfg" PORT="$T_PORT" \
        BACKEND1="$BE_A_PORT" BACKEND2="$BE_B_PORT" MAXCONN="$(((NOFILE - 64) / 2))"
      spawn "$log" haproxy -f "$dir/haproxy.cfg" -db
    fi
    T_LEADER=$SPAWNED
    local deadline=$((SECONDS + 10))
    while is_running "$T_LEADER" && ! port_listening "$T_PORT" && ((SECONDS < deadline)); do
      sleep 0.05
    done
    if is_running "$T_LEADER" && port_listening "$T_PORT"; then break; fi
    cat "$dir/error.log" >>"$log" 2>/dev/null || true
    stop_group "$T_LEADER" 2 || true
    grep -qi 'address already in use' "$log" || die "$kind did not start (log: $log)"
  done
  is_running "$T_LEADER" || die "$kind could not get a free port (log: $log)"
  if [[ $kind == nginx ]]; then
    T_MASTER=$T_LEADER
    wait_children "$T_LEADER" 2 nginx "$log"
  else
    T_MASTER="" T_WORKERS=("$T_LEADER") # one process, two threads
  fi
}

target_start() { # TARGET LOG
  T_ADMIN=""
  case $1 in
  direct) T_PORT=$BE_D_PORT T_LEADER="" T_MASTER="" T_WORKERS=() ;;
  lbproxy-*) start_lbproxy "${1#lbproxy-}" "$2" ;;
  nginx | haproxy) start_peer "$1" "$2" ;;
  esac
  T_PROCS=(${T_MASTER:+"$T_MASTER"} "${T_WORKERS[@]}")
}

# Every process of the target still runs (a restarted lbproxy worker has a new pid: it died).
target_check() { # TARGET LOG
  local p
  for p in "${T_PROCS[@]}"; do
    is_running "$p" || die "$1: process $p died during the measurement (log: $2)"
  done
  if [[ $1 == lbproxy-* ]] && grep -qE 'exited unexpectedly|worker [0-9]+ exit ' "$2"; then
    die "$1: a worker exited during the measurement (log: $2)"
  fi
}

target_stop() { # TARGET LOG
  [[ -n $T_LEADER ]] || return 0
  stop_group "$T_LEADER" 15 || echo "bench: warning: $1 needed SIGKILL to stop (log: $2)" >&2
  T_LEADER=""
}

# ---- wrk ----

# Runs wrk for one workload against T_PORT; fills R[] from the LBP_RESULT line. While wrk runs,
# samples the descriptors of the target's processes every 250 ms into FDS_MAX (and sees wrk's
# end within 50 ms).
run_wrk() { # WORKLOAD SECONDS OUTFILE
  local w=$1 secs=$2 out=$3 conns=${WL_CONNS[$1]} threads=2 args=() line kv n i
  ((conns < threads)) && threads=$conns
  args=(-t "$threads" -c "$conns" -d "${secs}s" --timeout 10s --latency -s "$BENCH/wrk-report.lua")
  [[ -n ${WL_CLOSE[$w]:-} ]] && args+=(-H "Connection: close")
  echo "# wrk ${args[*]} http://127.0.0.1:$T_PORT${WL_PATH[$w]}" >"$out"
  wrk "${args[@]}" "http://127.0.0.1:$T_PORT${WL_PATH[$w]}" >>"$out" 2>&1 &
  WRK_PID=$!
  FDS_MAX=0
  i=0
  while is_running "$WRK_PID"; do
    if ((i++ % 5 == 0)); then
      n=$(fd_count "${T_PROCS[@]}")
      ((n > FDS_MAX)) && FDS_MAX=$n
    fi
    sleep 0.05
  done
  wait "$WRK_PID" || die "wrk failed against $T_PORT (output: $out)"
  WRK_PID=""
  read_result "$out" wrk
  # A healthy target answers everything; a few errors in a million is noise, 1 % is a fault.
  ((R[errors] * 100 <= R[requests])) ||
    die "${R[errors]} errors out of ${R[requests]} requests (output: $out)"
}
declare -A R

# Fills R[] from the LBP_RESULT line of OUTFILE (wrk-report.lua's keys; lbp-imbalance adds
# heavy= and light=), with R[sockerr] and R[errors] summed from them.
read_result() { # OUTFILE WHO
  local line kv
  line=$(grep '^LBP_RESULT ' "$1" | tail -n 1) || die "no result line from $2 (output: $1)"
  R=()
  # shellcheck disable=SC2086 # the line is space-separated key=value words
  for kv in ${line#LBP_RESULT }; do R[${kv%%=*}]=${kv#*=}; done
  ((R[requests] > 0)) || die "no request succeeded (output: $1)"
  R[sockerr]=$((R[connect_err] + R[read_err] + R[write_err]))
  R[errors]=$((R[sockerr] + R[timeout_err] + R[status_err]))
}

# ---- lbp-imbalance (the imbalanced workload) ----

# Starts lbp-imbalance against T_PORT and waits until it has set up its connections, warmed up
# and paused with nothing in flight; sets GEN_PID.
imb_start() { # TARGET OUTFILE
  local out=$2 args
  args=(--connect "127.0.0.1:$T_PORT" --path "${WL_PATH[imbalanced]}"
    --conns "${WL_CONNS[imbalanced]}" --heavy "$IMB_HEAVY" --ratio "$IMB_RATIO"
    --warmup "$WARMUP" --duration "$DURATION" --timeout-ms 10000 --hold)
  # sh prints the command line first and execs the generator, so the pid stays its own.
  # shellcheck disable=SC2016 # $0, $* and $@ are the inner sh's
  spawn "$out" sh -c 'echo "# lbp-imbalance $*"; exec "$0" "$@"' "$IMB" "${args[@]}"
  GEN_PID=$SPAWNED
  wait_line "$out" '^warm requests=' "$GEN_PID" $((WARMUP + 60)) "lbp-imbalance against $1"
  grep -q '^warm .* errors=0$' "$out" || die "lbp-imbalance against $1: errors in the set-up or \
warm-up (output: $out)"
}

# Lets the paused lbp-imbalance measure; fills R[] from its result line. It then holds its
# connections (quiet) until imb_stop. Samples the target's descriptors into FDS_MAX meanwhile.
imb_measure() { # TARGET OUTFILE
  local out=$2 deadline=$((SECONDS + DURATION + 30)) i=0 n
  kill -USR1 "$GEN_PID"
  FDS_MAX=0
  until grep -q '^LBP_RESULT ' "$out"; do
    is_running "$GEN_PID" || die "lbp-imbalance against $1 exited before its result (output: $out)"
    ((SECONDS <= deadline)) || die "no result from lbp-imbalance against $1 (output: $out)"
    if ((i++ % 5 == 0)); then
      n=$(fd_count "${T_PROCS[@]}")
      ((n > FDS_MAX)) && FDS_MAX=$n
    fi
    sleep 0.05
  done
  read_result "$out" lbp-imbalance
  # Every connection counts here: one lost moves the load, so no error is noise.
  ((R[errors] == 0)) || die "${R[errors]} errors from lbp-imbalance against $1 (output: $out)"
}

imb_stop() {
  [[ -n $GEN_PID ]] || return 0
  stop_group "$GEN_PID" 5 || true
  GEN_PID=""
}

# lbproxy's per-worker request counts ("a,b") from its admin API's /stats: the "requests" of
# each object in "workers" (the totals and the servers come before and after that array).
admin_requests() {
  local json counts
  json=$(curl -sS --max-time 5 "http://$T_ADMIN/stats") ||
    die "GET http://$T_ADMIN/stats failed"
  counts=$(awk '{
    s = substr($0, index($0, "\"workers\":["))
    s = substr(s, 1, index(s, "],\"servers\":"))
    while (match(s, /"requests":[0-9]+/)) {
      out = out (out == "" ? "" : ",") substr(s, RSTART + 11, RLENGTH - 11)
      s = substr(s, RSTART + RLENGTH)
    }
    print out }' <<<"$json")
  [[ $counts =~ ^[0-9]+(,[0-9]+)+$ ]] || die "no per-worker request counts in /stats of $T_ADMIN"
  echo "$counts"
}

# ---- lbproxy's stats lines: per-worker accepted counts ----

stats_count() { grep -c ' master info: stats dispatch=' "$1" || true; }

# Per-worker deltas between two count lists ("a,b"): prints "d1;d2 share1;share2 jain" (shares
# in % of the sum; Jain's index (sum d)^2 / (n * sum d^2), 0 when nothing moved).
shares() { # BEFORE AFTER
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, ","); split(b, y, ","); s = 0; q = 0
    for (i = 1; i <= n; i++) { d[i] = y[i] - x[i]; s += d[i]; q += d[i] * d[i] }
    for (i = 1; i <= n; i++) {
      acc = acc (i > 1 ? ";" : "") d[i]
      sh = sh (i > 1 ? ";" : "") sprintf("%.1f", s ? 100 * d[i] / s : 0)
    }
    printf "%s %s %.4f\n", acc, sh, q ? s * s / (n * q) : 0 }'
}

# Sets wreq, wshare, wjain (measure's) from lbproxy's per-worker request counts now and BEFORE.
# lbp-imbalance holds its connections with nothing in flight: the counts stand still, and their
# sum is its own request count (a warning says otherwise).
request_share() { # TARGET BEFORE LOG
  local after sum
  after=$(admin_requests)
  read -r wreq wshare wjain < <(shares "$2" "$after")
  sum=$((${wreq//;/+}))
  ((sum * 100 >= R[requests] * 99 && sum * 100 <= R[requests] * 101)) ||
    echo "bench: warning: $1: lbproxy's workers counted $sum requests, lbp-imbalance" \
      "${R[requests]} (log: $3)" >&2
}

# Waits for a stats line newer than the first $2, and prints its accepted list ("a,b").
stats_after() { # LOG COUNT
  local deadline=$((SECONDS + 5))
  while (($(stats_count "$1") <= $2)); do
    ((SECONDS < deadline)) || die "no stats line from lbproxy (log: $1)"
    sleep 0.05
  done
  grep ' master info: stats dispatch=' "$1" | tail -n 1 | sed -n 's/.* accepted=\([0-9,]*\) .*/\1/p'
}

# ---- one measurement ----

idle_target_conns() { # TARGET: what fits the descriptor limit (see NOFILE above)
  local n=$IDLE_CONNS max
  case $1 in
  lbproxy-proxy | haproxy) max=$(((NOFILE - 256) / 2 - 100)) ;;
  *) max=$((NOFILE - 256)) ;;
  esac
  ((n > max)) && n=$max
  echo "$n"
}

CSV_HEADER="round,workload,target,conns,duration_s,requests,rps,mib_s,p50_ms,p90_ms,p99_ms,\
p999_ms,max_ms,socket_errors,timeouts,non2xx,master_cpu_s,workers_cpu_s,master_cpu_pct,\
workers_cpu_pct,cpu_us_per_req,max_rss_mib,fds_per_conn,accepted,share_pct,jain,idle_conns,\
idle_bytes_per_conn,other_cpu_pct,steal_pct,heavy_requests,light_requests,worker_requests,\
request_share_pct,request_jain"

# calc DIGITS EXPR [NAME=VALUE...]: prints the awk expression EXPR over the named values.
calc() {
  local d=$1 e=$2 kv args=()
  shift 2
  for kv in "$@"; do args+=(-v "$kv"); done
  awk "${args[@]}" -v d="$d" "BEGIN { printf \"%.*f\", d, $e }"
}

# Warms TARGET up with WORKLOAD. lbproxy: sets s0 (measure's) to the per-worker accepted counts
# from which connections count and, for imbalanced, rq0 to the request counts.
warm_up() { # TARGET WORKLOAD TAG OUTFILE LOG
  local lb=""
  [[ $1 == lbproxy-* ]] && lb=1
  if [[ $2 == imbalanced ]]; then
    # Its connections are set up before the warm-up and stay: count them from the start.
    if [[ -n $lb ]]; then s0=$(stats_after "$5" "$(stats_count "$5")"); fi
    imb_start "$1" "$4"
    if [[ -n $lb ]]; then rq0=$(admin_requests); fi
  else
    run_wrk "$2" "$WARMUP" "$RESULTS/raw/$3.warmup.txt"
    if [[ -n $lb ]]; then s0=$(stats_after "$5" "$(stats_count "$5")"); fi
  fi
}

measure() { # ROUND WORKLOAD TARGET
  local round=$1 w=$2 t=$3 tag="r$1-$2-$3" log out fd0 c0m c0w c1m c1w s0 s1 ncons
  local idle_n="" idle_bytes="" idle_pid="" idle_out rss0 rss1 acc="" share="" jain=""
  local mcpu="" wcpu="" mpct="" wpct="" cpr="" rss="" fpc="" c0b c1b c0k c1k m0 s0t other steal
  local imb="" c0g c1g rq0="" wreq="" wshare="" wjain=""
  [[ $w == imbalanced ]] && imb=1
  log=$RESULTS/logs/$tag.log
  out=$RESULTS/raw/$tag.txt
  : >"$log"
  target_start "$t" "$log"
  fd0=$(fd_count "${T_PROCS[@]}")
  warm_up "$t" "$w" "$tag" "$out" "$log"
  ncons=${WL_CONNS[$w]}
  if [[ $w == idle-* ]]; then
    idle_n=$(idle_target_conns "$t")
    idle_out=$RESULTS/raw/$tag.idle.txt
    rss0=$(status_kib VmRSS "${T_PROCS[@]}")
    spawn "$idle_out" "$IDLE" --connect "127.0.0.1:$T_PORT" --conns "$idle_n" --timeout-ms 60000
    idle_pid=$SPAWNED
    wait_line "$idle_out" '^ready conns=' "$idle_pid" 90 "lbp-idle-conns against $t"
    rss1=$(status_kib VmRSS "${T_PROCS[@]}")
    ncons=$((ncons + idle_n))
    [[ $t == direct ]] || idle_bytes=$(((rss1 - rss0) * 1024 / idle_n))
  fi
  c0m=$(cpu_ticks ${T_MASTER:+"$T_MASTER"})
  c0w=$(cpu_ticks "${T_WORKERS[@]}")
  c0b=$(cpu_ticks "${BE_PROCS[@]}")
  c0k=$(children_ticks)
  c0g=$(cpu_ticks ${GEN_PID:+"$GEN_PID"})
  machine_ticks
  m0=$M_BUSY s0t=$M_STEAL
  if [[ -n $imb ]]; then imb_measure "$t" "$out"; else run_wrk "$w" "$DURATION" "$out"; fi
  c1m=$(cpu_ticks ${T_MASTER:+"$T_MASTER"})
  c1w=$(cpu_ticks "${T_WORKERS[@]}")
  c1b=$(cpu_ticks "${BE_PROCS[@]}")
  c1k=$(children_ticks)
  c1g=$(cpu_ticks ${GEN_PID:+"$GEN_PID"})
  machine_ticks
  # Whatever else ran meanwhile (other users of this shared machine), and the hypervisor's steal.
  # The load generator counts as the bench's: wrk once reaped, lbp-imbalance while it holds.
  other=$(calc 1 '1e8 * (m - t) / k / us' m=$((M_BUSY - m0)) k="$CLK_TCK" us="${R[duration_us]}" \
    t=$((c1m - c0m + c1w - c0w + c1b - c0b + c1k - c0k + c1g - c0g)))
  steal=$(calc 1 '1e8 * s / k / us' s=$((M_STEAL - s0t)) k="$CLK_TCK" us="${R[duration_us]}")
  if [[ -n $idle_pid ]]; then
    is_running "$idle_pid" || die "lbp-idle-conns against $t died (output: $idle_out)"
    ! grep -q '^lost ' "$idle_out" || die "$t closed idle connections (output: $idle_out)"
    stop_group "$idle_pid" 10 || true
  fi
  target_check "$t" "$log"
  if [[ $t != direct ]]; then
    local us=${R[duration_us]} k=$CLK_TCK
    if [[ -n $T_MASTER ]]; then
      mcpu=$(calc 2 't / k' t=$((c1m - c0m)) k="$k")
      mpct=$(calc 1 '1e8 * t / k / us' t=$((c1m - c0m)) k="$k" us="$us")
    fi
    wcpu=$(calc 2 't / k' t=$((c1w - c0w)) k="$k")
    wpct=$(calc 1 '1e8 * t / k / us' t=$((c1w - c0w)) k="$k" us="$us")
    cpr=$(calc 1 '1e6 * t / k / n' t=$((c1m - c0m + c1w - c0w)) k="$k" n="${R[requests]}")
    rss=$(calc 1 'r / 1024' r="$(status_kib VmHWM "${T_PROCS[@]}")")
    fpc=$(calc 2 '(a - b) / n' a="$FDS_MAX" b="$fd0" n="$ncons")
  fi
  if [[ $t == lbproxy-* ]]; then
    if [[ -n $imb ]]; then request_share "$t" "$rq0" "$log"; fi
    s1=$(stats_after "$log" "$(stats_count "$log")")
    read -r acc share jain < <(shares "$s0" "$s1")
  fi
  imb_stop
  target_stop "$t" "$log"
  check_backends
  local row=("$round" "$w" "$t" "$ncons" "$DURATION" "${R[requests]}" "${R[rps]}"
    "$(calc 2 'b / 1048576 / us * 1e6' b="${R[bytes]}" us="${R[duration_us]}")"
    "$(calc 3 'x / 1000' x="${R[p50_us]}")" "$(calc 3 'x / 1000' x="${R[p90_us]}")"
    "$(calc 3 'x / 1000' x="${R[p99_us]}")" "$(calc 3 'x / 1000' x="${R[p999_us]}")"
    "$(calc 3 'x / 1000' x="${R[max_us]}")" "${R[sockerr]}" "${R[timeout_err]}"
    "${R[status_err]}" "$mcpu" "$wcpu" "$mpct" "$wpct" "$cpr" "$rss" "$fpc" "$acc" "$share"
    "$jain" "$idle_n" "$idle_bytes" "$other" "$steal" "${R[heavy]:-}" "${R[light]:-}" "$wreq"
    "$wshare" "$wjain")
  (
    IFS=,
    echo "${row[*]}"
  ) >>"$CSV"
  LAST_RPS=${R[rps]} LAST_P99=$(calc 2 'x / 1000' x="${R[p99_us]}")
}

# ---- micro-benchmark: instructions per operation under callgrind ----

micro() {
  local mode iters out total ipo
  echo "mode,iterations,instructions,instructions_per_op" >"$RESULTS/micro.csv"
  for mode in head handoff handoff-batch select; do
    iters=$MICRO_HEAD
    # handoff-batch: iterations are connections (in batches of 32), so ipo is per connection.
    [[ $mode == handoff* ]] && iters=$MICRO_HANDOFF
    out=$RESULTS/micro-$mode.callgrind
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
      "$MICRO" "$mode" "$iters" >"$RESULTS/micro-$mode.txt" 2>&1 ||
      die "lbp-micro $mode failed under valgrind (output: $RESULTS/micro-$mode.txt)"
    total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$out" | head -n 1)
    [[ -n $total && $total -gt 0 ]] || die "no instruction total in $out"
    ipo=$(awk -v t="$total" -v n="$iters" 'BEGIN { printf "%.0f", t / n }')
    echo "$mode,$iters,$total,$ipo" >>"$RESULTS/micro.csv"
    callgrind_annotate "$out" 2>/dev/null | head -n 40 >"$RESULTS/micro-$mode.annotate.txt" || true
    echo "micro $mode: $ipo instructions per operation ($iters iterations, callgrind)"
  done
}

# ---- main ----

write_meta() {
  {
    echo "date=$(date -u +%FT%TZ)"
    echo "host=$HOST"
    echo "kernel=$(uname -r)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "cpus=$(nproc)"
    echo "mode=$([[ $QUICK == 1 ]] && echo quick || echo full)"
    echo "rounds=$ROUNDS"
    echo "duration_s=$DURATION"
    echo "warmup_s=$WARMUP"
    echo "nofile=$NOFILE"
    echo "idle_conns=$IDLE_CONNS"
    echo "targets=${TARGETS[*]}"
    echo "workloads=${WORKLOADS[*]}"
    echo "lbproxy_rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "wrk=$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
    echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy=$(haproxy -v 2>&1 | head -n 1 | awk '{ print $3 }')"
    echo "valgrind=$(valgrind --version)"
  } >"$RESULTS/meta.txt"
}

main() {
  local total done_n=0 round i j n t w t0 eta
  write_meta
  echo "bench: results in $RESULTS"
  micro
  start_backend A 1
  BE_A_PORT=$BE_PORT BE_A_PID=$BE_PID
  start_backend B 1
  BE_B_PORT=$BE_PORT BE_B_PID=$BE_PID
  start_backend D 2
  BE_D_PORT=$BE_PORT BE_D_PID=$BE_PID
  wait_children "$BE_D_PID" 2 "backend D" "$RESULTS/logs/backend-D.log"
  BE_PROCS=("$BE_A_PID" "$BE_B_PID" "$BE_D_PID" "${T_WORKERS[@]}")
  echo "bench: backends A=:$BE_A_PORT B=:$BE_B_PORT (the pool), D=:$BE_D_PORT (direct, 2 procs)"
  echo "$CSV_HEADER" >"$CSV"
  n=${#TARGETS[@]}
  total=$((ROUNDS * ${#WORKLOADS[@]} * n))
  t0=$SECONDS
  for ((round = 1; round <= ROUNDS; round++)); do
    for w in "${WORKLOADS[@]}"; do
      for ((i = 0; i < n; i++)); do
        # Rotated by one each round, and reversed every other round, so no target always
        # follows the same neighbour (the one before can leave the machine warm or busy).
        j=$(((i + round - 1) % n))
        if ((round % 2 == 0)); then j=$(((n - 1 - i + round - 1) % n)); fi
        t=${TARGETS[$j]}
        measure "$round" "$w" "$t"
        done_n=$((done_n + 1))
        eta=$(((SECONDS - t0) * (total - done_n) / done_n))
        printf '[%3d/%d] round %d/%d  %-11s  %-21s %10.0f req/s  p99 %8s ms  (eta %dm%02ds)\n' \
          "$done_n" "$total" "$round" "$ROUNDS" "$w" "$t" "$LAST_RPS" "$LAST_P99" \
          $((eta / 60)) $((eta % 60))
      done
    done
  done
  stop_group "$BE_A_PID" 5 || true
  stop_group "$BE_B_PID" 5 || true
  stop_group "$BE_D_PID" 5 || true
  "$BENCH/report.sh" "$RESULTS"
  echo "bench: done in $((SECONDS / 60))m$((SECONDS % 60))s: $RESULTS/report.md"
}

main
