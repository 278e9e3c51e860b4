#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time from its seed corpus; fails on any crash or report.
#
#   tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]     (make fuzz: build-fuzz, FUZZ_SECONDS=60)
#
# Targets: request response ipc config (default: all). New inputs the fuzzer finds go to
# BUILD_DIR/corpus/TARGET (kept between runs, never into the repository); crash, leak and
# timeout inputs to BUILD_DIR/artifacts/TARGET-*; each run's output to BUILD_DIR/fuzz-TARGET.log.
# Reproduce a crash with: BUILD_DIR/tests/fuzz/fuzz_TARGET BUILD_DIR/artifacts/TARGET-crash-...
set -uo pipefail

build=${1:?usage: run.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-60}
shift $(($# >= 2 ? 2 : 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request response ipc config)
src=$(cd "$(dirname "$0")" && pwd)

# Sanitizer settings for this run (CI exports its own for the test suite; these win here).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

declare -A dict=([request]=http.dict [response]=http.dict [config]=config.dict)
declare -A max_len=([request]=8192 [response]=8192 [ipc]=4096 [config]=8192)

mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "run.sh: no fuzzer $bin (build it first: make fuzz)" >&2
    exit 2
  fi
  work="$build/corpus/$t"
  log="$build/fuzz-$t.log"
  mkdir -p "$work"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]:-4096}"
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-")
  [ -n "${dict[$t]:-}" ] && args+=(-dict="$src/dict/${dict[$t]}")
  printf '=== fuzz_%s: %ss ... ' "$t" "$secs"
  "$bin" "${args[@]}" "$work" "$src/corpus/$t" >"$log" 2>&1
  rc=$?
  # A report that did not stop the run (none should: UBSan halts, ASan aborts) fails it too.
  if [ $rc -ne 0 ] || grep -qE "ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" "$log"; then
    echo "FAILED (exit $rc)"
    grep -vE '^(#[0-9]+|INFO:|MS:)' "$log" | tail -n 60
    failed+=("$t")
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, features \2, corpus \3/p' \
    <<<"$last")
  echo "ok: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-?}"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in $build/artifacts/)"
  exit 1
fi
