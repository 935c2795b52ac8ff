#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA GPU: builds the `cuda` preset, runs every test (the
# "cuda" implementation goes through the whole property catalogue), verifies "cuda" at the full
# case count, runs compute-sanitizer memcheck and racecheck over the CUDA properties with few
# cases, runs the benchmarks (maskcheck's kernels beside LibTorch's, with the measured copy
# bandwidth as ceiling) and writes the report.
#   OUT=dir       where results and report go (default build-cuda/gpu-report)
#   GPU_BENCH=0   skip the benchmarks;  GPU_SANITIZE=0  skip compute-sanitizer
# Dependencies come from ci/setup.sh, or on an offline machine from .deps/unpack.sh (made by the
# workplace's pack.sh); LibTorch from the Python torch there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-cuda/gpu-report}
mkdir -p "$out"
if [ -f .deps/unpack.sh ]; then
  # unpack.sh prints a ';'-separated CMAKE_PREFIX_PATH: the environment variable wants ':'.
  eval "$(bash .deps/unpack.sh | sed 's/;/:/g')"
else
  . ci/setup.sh
fi
jobs=$(nproc)
start=$SECONDS
log() { echo "== gpu.sh [$((SECONDS - start))s] $*"; }

command -v nvidia-smi >/dev/null && nvidia-smi | tee "$out/nvidia-smi.txt"
log "configure and build (cuda preset)"
cmake --preset cuda > "$out/configure.log"
cmake --build --preset cuda -j "$jobs" 2>&1 | tail -n 3

status=0
log "tests (CI case counts)"
MASKCHECK_CI=1 ctest --preset cuda -j "$jobs" 2>&1 | tee "$out/ctest.log" | tail -n 25 || status=1
unset MASKCHECK_CI  # verify and the benchmarks run at full size

log "verify (every built-in implementation)"
build-cuda/bin/maskcheck verify --quiet --json "$out/verify.json" || status=1

if [ "${GPU_SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    log "compute-sanitizer $tool"
    compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
      build-cuda/bin/maskcheck verify --impl cuda --cases "${SANITIZE_CASES:-4}" --max-size 40 \
      --quiet > "$out/sanitizer-$tool.log" 2>&1 || { status=1; echo "sanitizer $tool FAILED"; }
    tail -n 4 "$out/sanitizer-$tool.log"
  done
fi

# The benchmarks: by default the probes, and the CUDA rows behind the published targets and a sweep
# around them (BENCH_FILTER selects others, e.g. '^cuda/' for all 762 CUDA rows, which takes longer
# than a 10-minute slot). Names as in suite/bench/README.md: cuda/<op>/..., ceiling/<device>/....
default_filter='^ceiling/|^cuda/(attention/bf16/D128/L(1024|2048|4096)/|attention/f16/D64/L2048/|softmax/(f16|bf16)/|cross_entropy/bf16/|mlm/|build_mask/)'
if [ "${GPU_BENCH:-1}" != 0 ]; then
  log "benchmarks (filter ${BENCH_FILTER:-$default_filter})"
  # Every repetition goes into the JSON (the console shows the aggregates): `maskcheck compare`
  # tests a GPU baseline over them, and the report draws their spread.
  build-cuda/bin/maskcheck_bench --benchmark_repetitions="${BENCH_REPETITIONS:-5}" \
    --benchmark_display_aggregates_only=true --benchmark_filter="${BENCH_FILTER:-$default_filter}" \
    --benchmark_out="$out/bench.json" --benchmark_out_format=json > "$out/bench.log" 2>&1 || status=1
  tail -n 30 "$out/bench.log"
fi

log "report"
reports=("$out/verify.json")
[ -f "$out/bench.json" ] && reports+=("$out/bench.json")
build-cuda/bin/maskcheck report "${reports[@]}" --out "$out" || status=1
log "done (status $status)"
exit "$status"
