#!/usr/bin/env bash
# A longer fuzzing session than the test command's (which runs each target for a fixed
# MASKCHECK_FUZZ_RUNS executions): builds the fuzz preset (clang, libFuzzer, ASan + UBSan) and
# runs every target, or those named, for FUZZ_SECONDS each (default 600). New inputs go to
# build-fuzz/suite/fuzz/work/<target>; crashes to build-fuzz/suite/fuzz/<target>-crash-*, which
# belong in suite/fuzz/corpus/<target>/ once fixed. Exit 1 when any target found a crash.
#   bash ci/fuzz.sh                      every target, 600 s each
#   FUZZ_SECONDS=60 bash ci/fuzz.sh results safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
export MASKCHECK_SETUP_TESTS=1 MASKCHECK_NO_TORCH=1
. ci/setup.sh
seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors problem_json results cli_values)
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
status=0
for t in "${targets[@]}"; do
  work=build-fuzz/suite/fuzz/work/$t
  mkdir -p "$work"
  echo "ci/fuzz.sh: fuzz_$t for $seconds s"
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build-fuzz/bin/fuzz_$t" -max_total_time="$seconds" -max_len=65536 -timeout=30 \
    -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/suite/fuzz/fuzz_$t-" "$work" "suite/fuzz/corpus/$t" ||
    status=1
done
exit $status
