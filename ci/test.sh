#!/usr/bin/env bash
# The test command: installs what is missing, builds the default preset (warnings are errors) and
# runs every test, then builds the AddressSanitizer + UBSan preset (no benchmarks, -O1) and runs
# the tests again with fewer cases (all but the mutant catalogue, which runs only the reference's
# code), then builds the fuzz targets (clang, libFuzzer) and runs each for a fixed number
# of executions. MASKCHECK_CI=1 (the default here) caps property case counts and benchmark sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests also need what the main job does not: a headless browser for the HTML report's test.
export MASKCHECK_SETUP_TESTS=1
. ci/setup.sh
export MASKCHECK_CI=${MASKCHECK_CI:-1}
start=$SECONDS

cmake --preset default
cmake --build --preset default
echo "ci/test.sh: default build done at $((SECONDS - start)) s"
ctest --preset default
echo "ci/test.sh: default tests done at $((SECONDS - start)) s"

if [ "${MASKCHECK_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan
  cmake --build --preset asan
  echo "ci/test.sh: ASan build done at $((SECONDS - start)) s"
  ctest --preset asan
  echo "ci/test.sh: ASan tests done at $((SECONDS - start)) s"
fi

# The fuzz targets (suite/fuzz) under libFuzzer with ASan + UBSan, MASKCHECK_FUZZ_RUNS executions
# each from their corpora (ci/fuzz.sh runs longer sessions).
if [ "${MASKCHECK_SKIP_FUZZ:-0}" != 1 ]; then
  cmake --preset fuzz
  cmake --build --preset fuzz
  ctest --preset fuzz
fi
echo "ci/test.sh: all tests passed in $((SECONDS - start)) s"
