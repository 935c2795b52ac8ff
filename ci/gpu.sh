#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA GPU: builds the `cuda` preset (sm_90), runs every test
# (the "cuda" implementation through the whole property catalogue, the attention.backward.*
# properties included, cuda_kernels_test on huge scores and the attention backward; a test that
# finds no usable device fails here instead of skipping), verifies "cuda" and
# LibTorch's CUDA SDPA backends (torch:cuda-*) at the full case count, replays case files through
# `maskcheck eval --impl cuda` against the reference, runs compute-sanitizer memcheck and
# racecheck over `verify --impl cuda` with few cases, runs the benchmarks (maskcheck's kernels
# beside LibTorch's, with the measured copy bandwidth as ceiling) and writes the report.
#   OUT=dir          where everything goes (default build-cuda/gpu-report)
#   STEPS='...'      which steps, in this order (default all): build tests verify eval sanitize
#                    bench report. A machine that keeps build-cuda/ between commands can run them
#                    in several commands, e.g. STEPS='build tests' then STEPS='verify eval ...'
#                    with the same OUT.
#   GPU_BENCH=0      skip the benchmarks;  GPU_SANITIZE=0  skip compute-sanitizer
#   VERIFY_IMPL      what verify gates on (default cuda; own adds the reference and the CPU kernels)
#   VERIFY_CASES, SANITIZE_CASES (default 4), BENCH_FILTER, BENCH_REPETITIONS (default 5)
#   PUBLISH=dir      also copy the files to commit into dir (at most 8): gpu.log, ctest.log,
#                    verify.json, verify-torch-cuda.json, sanitizer-memcheck.log,
#                    sanitizer-racecheck.log, bench.json, report.md; PUBLISH=1 means
#                    reports/gpu/<date>-<device> (e.g. reports/gpu/2026-12-05-h100)
# Exit code: 0 when every step passed, else 1 (the log names the failed steps). LibTorch's
# findings (torch:cuda-* failing properties) are reported, not failed.
# Dependencies come from ci/setup.sh, or on an offline machine from .deps/unpack.sh (made by the
# workplace's pack.sh); LibTorch from the Python torch there. pack.sh's own list predates RE2
# (reports/, through pkg-config): give it `libre2-dev libre2-9`, and where the machine has no
# pkg-config also `pkgconf pkgconf-bin libpkgconf3`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-cuda/gpu-report}
mkdir -p "$out"
exec > >(tee -a "$out/gpu.log") 2>&1
offline=0
if [ -f .deps/unpack.sh ]; then
  # unpack.sh prints a ';'-separated CMAKE_PREFIX_PATH: the environment variable wants ':'.
  eval "$(bash .deps/unpack.sh | sed 's/;/:/g')"
  offline=1
  # The unpacked .pc files name /usr: the sysroot maps their paths into /tmp/deps (unpack.sh's
  # tree); an unpacked pkg-config is found on PATH.
  [ -f /tmp/deps/usr/lib/x86_64-linux-gnu/pkgconfig/re2.pc ] && export PKG_CONFIG_SYSROOT_DIR=/tmp/deps
  export PATH=$PATH:/tmp/deps/usr/bin
else
  . ci/setup.sh
fi
jobs=$(nproc)
start=$SECONDS
steps=" ${STEPS:-build tests verify eval sanitize bench report} "
[ "${GPU_BENCH:-1}" = 0 ] && steps=${steps/ bench / }
[ "${GPU_SANITIZE:-1}" = 0 ] && steps=${steps/ sanitize / }
log() { echo "== gpu.sh [$((SECONDS - start))s] $*"; }
run_step() { case $steps in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
status=0
failed=()
fail() {
  status=1
  failed+=("$1")
  echo "gpu.sh: $1 FAILED"
}

log "commit $(git rev-parse HEAD 2>/dev/null || cat .git-commit 2>/dev/null || echo unknown), steps:$steps"
command -v nvidia-smi >/dev/null && nvidia-smi
bin=build-cuda/bin

if run_step build; then
  log "configure and build (cuda preset)"
  cmake --preset cuda > "$out/configure.log" 2>&1 || { tail -n 20 "$out/configure.log"; fail build; exit 1; }
  cmake --build --preset cuda -j "$jobs" > "$out/build.log" 2>&1 || {
    grep -E 'error|FAILED' "$out/build.log" | head -n 20
    fail build
    exit 1
  }
  tail -n 2 "$out/build.log"
fi

if run_step tests; then
  # CI case counts. Without a registry the test that sources ci/setup.sh (apt-get) cannot pass.
  exclude=()
  [ $offline = 1 ] && exclude=(-E '^setup_keeps_shell_options$')
  log "tests (CI case counts${exclude[*]:+, excluding setup_keeps_shell_options: offline})"
  MASKCHECK_CI=1 MASKCHECK_REQUIRE_CUDA=1 ctest --preset cuda -j "$jobs" "${exclude[@]}" \
    > "$out/ctest.log" 2>&1 || fail tests
  tail -n 30 "$out/ctest.log"
fi

if run_step verify; then
  cases=()
  [ -n "${VERIFY_CASES:-}" ] && cases=(--cases "$VERIFY_CASES")
  log "verify --impl ${VERIFY_IMPL:-cuda} (gating)"
  "$bin/maskcheck" verify --impl "${VERIFY_IMPL:-cuda}" --quiet --json "$out/verify.json" \
    "${cases[@]}" || fail verify
  # Without a usable device every property is skipped (exit 0): that is a failure here.
  passed=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"]["passed"])' \
    "$out/verify.json" 2>/dev/null || echo 0)
  [ "$passed" -gt 0 ] || fail "verify (no property passed: no usable device?)"
  # LibTorch's CUDA SDPA backends: findings (NaN rows, +inf lse, ...), reported beside ours.
  impls=$("$bin/maskcheck" list)
  if grep -q '^  torch:cuda-' <<< "$impls"; then
    log "verify --impl 'torch:cuda-*' (findings, not gating)"
    "$bin/maskcheck" verify --impl 'torch:cuda-*' --quiet --json "$out/verify-torch-cuda.json" \
      "${cases[@]}" || echo "gpu.sh: torch:cuda-* exit $? (findings are in verify-torch-cuda.json)"
  else
    echo "gpu.sh: no torch:cuda-* implementation registered (LibTorch without CUDA, or no device)"
  fi
fi

if run_step eval; then
  # Case files (ci/gpu_cases.py) through `maskcheck eval --impl cuda`, compared with the reference.
  log "eval --impl cuda on case files"
  cases_dir=$out/eval
  rm -rf "$cases_dir"
  python3 ci/gpu_cases.py write "$cases_dir" > "$cases_dir.list" || fail eval
  while read -r op file; do
    base=${file%.safetensors}
    echo "$op $(basename "$file"):"
    if "$bin/maskcheck" eval "$op" --impl cuda --in "$file" --out "$base.cuda.result" --quiet &&
      "$bin/maskcheck" eval "$op" --impl reference --in "$file" --out "$base.reference.result" \
        --quiet; then
      python3 ci/gpu_cases.py compare "$file" "$base.cuda.result" "$base.reference.result" ||
        fail "eval $(basename "$file")"
    else
      fail "eval $(basename "$file")"
    fi
  done < "$cases_dir.list"
  rm -f "$cases_dir.list"
fi

sanitizer=$(command -v compute-sanitizer || true)
[ -z "$sanitizer" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] &&
  sanitizer=/usr/local/cuda/bin/compute-sanitizer
if run_step sanitize && [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    log "compute-sanitizer $tool over verify --impl cuda"
    "$sanitizer" --tool "$tool" --error-exitcode 99 --print-limit 20 \
      "$bin/maskcheck" verify --impl cuda --cases "${SANITIZE_CASES:-4}" --max-size 40 \
      --quiet > "$out/sanitizer-$tool.log" 2>&1 || fail "compute-sanitizer $tool"
    tail -n 4 "$out/sanitizer-$tool.log"
  done
elif run_step sanitize; then
  fail "compute-sanitizer (not found)"
fi

# The benchmarks: by default the CUDA probe and the CUDA rows behind the published targets and a
# sweep around them, each beside its LibTorch peers, and every CUDA attention backward row
# (BENCH_FILTER selects others, e.g. '^cuda/' for all CUDA rows, which takes longer than a
# 10-minute slot). Names as in suite/bench/README.md: cuda/<op>/<dtype>/.../<implementation>,
# ceiling/cuda/d2d_copy/<MiB>MiB.
default_filter='^ceiling/cuda/|^cuda/(attention/bf16/D128/L(1024|2048|4096)/|attention/f16/D64/L2048/|attention_backward/|softmax/(f16|bf16)/|cross_entropy/bf16/|mlm/|build_mask/)'
if run_step bench; then
  log "benchmarks (filter ${BENCH_FILTER:-$default_filter})"
  # Every repetition goes into the JSON (the console shows the aggregates): `maskcheck compare`
  # tests a GPU baseline over them, and the report draws their spread.
  "$bin/maskcheck_bench" --benchmark_repetitions="${BENCH_REPETITIONS:-5}" \
    --benchmark_display_aggregates_only=true --benchmark_filter="${BENCH_FILTER:-$default_filter}" \
    --benchmark_out="$out/bench.json" --benchmark_out_format=json > "$out/bench.log" 2>&1 ||
    fail bench
  tail -n 30 "$out/bench.log"
fi

if run_step report; then
  log "report"
  reports=()
  for f in verify.json verify-torch-cuda.json bench.json; do
    [ -f "$out/$f" ] && reports+=("$out/$f")
  done
  if [ ${#reports[@]} -gt 0 ]; then
    "$bin/maskcheck" report "${reports[@]}" --out "$out" || fail report
  fi
fi

log "done (status $status${failed[*]:+, failed: ${failed[*]}})"
if [ -n "${PUBLISH:-}" ]; then
  dest=$PUBLISH
  if [ "$dest" = 1 ]; then
    device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 |
      tr '[:upper:]' '[:lower:]' | grep -oE '\b[a-z][0-9]{2,4}\b' | head -n 1 || true)
    dest=reports/gpu/$(date -u +%F)-${device:-gpu}
  fi
  mkdir -p "$dest"
  for f in gpu.log ctest.log verify.json verify-torch-cuda.json sanitizer-memcheck.log \
    sanitizer-racecheck.log bench.json report.md; do
    [ -f "$out/$f" ] && cp "$out/$f" "$dest/"
  done
  echo "gpu.sh: the files to commit are in $dest (add its entry to reports/gpu/README.md)"
fi
exit "$status"
