#!/usr/bin/env bash
# The CI gate a kernel project runs on every change: verify, a CI-sized benchmark run, a comparison
# with the committed baseline, and the report. Installs what is missing and builds maskcheck first
# (like ci/main.sh), unless BUILD=0.
#
#   bash ci/gate.sh [-- VERIFY_ARGS...]    e.g.  bash ci/gate.sh -- --plugin ./libmykernels.so
#
# Steps (OUT=build/gate by default):
#   1. maskcheck verify --impl $GATE_IMPL (default own) at CI case counts (MASKCHECK_CI=1)
#      -> $OUT/verify.json; a failing property fails the gate.
#   2. maskcheck bench over $GATE_FILTER at CI sizes, $REPETITIONS repetitions -> $OUT/bench.json;
#      a maskcheck kernel that mismatches before timing fails the gate.
#   3. maskcheck compare $BASELINE $OUT -> $OUT/compare.md (a Markdown table for a pull-request
#      comment): a benchmark significantly slower than MAX_SLOWDOWN (Mann-Whitney U over the
#      repetitions, ALPHA) or a property that passed in the baseline and now fails fails the gate.
#      Only rows matching GATE_ROWS gate (default: maskcheck's own kernels); peers are shown.
#   4. maskcheck report -> $OUT/report.md and $OUT/report.html, written whatever the verdict.
#
# Settings (environment):
#   OUT            output directory (default build/gate)
#   BASELINE       baseline directory with verify.json and bench.json
#                  (default reports/baselines/cpu-ci)
#   UPDATE_BASELINE=1  after a passing verify and bench, copy this run's verify.json and bench.json
#                  into BASELINE instead of comparing (commit them; record on the machine kind
#                  that CI runs on: timings from another machine are not comparable)
#   MAX_SLOWDOWN   percent a median may grow before it can fail (default 10%: on a shared 2-core VM
#                  an unchanged tree drifted by up to +8 % between runs, significant at 5 x 5)
#   ALPHA          significance level of the test (default 0.05)
#   REPETITIONS    benchmark repetitions (default 5; the test needs >= 2, and 5 x 5 reaches
#                  p = 0.004)
#   GATE_IMPL      implementations to verify (default own: reference, cpu, cuda)
#   GATE_FILTER    benchmark rows (default: the CPU probes and the fp32 CPU rows)
#   GATE_ROWS      rows that can fail the comparison (default: /maskcheck[^/]*$)
#   BENCH=0        no benchmarks: verify and compare verdicts only (e.g. for a plugin, which has
#                  no benchmark entry points)
#   BUILD=0        use the existing build in build/ (bin/maskcheck) without configuring or building
#   MASKCHECK_BIN  the maskcheck executable to use (default build/bin/maskcheck; with BUILD=0)
# Exit code: 0 the gate passed; 1 a property failed, a kernel mismatched, or compare found a
# regression; 2 a usage or input error (e.g. a missing baseline), each with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--" ]; then shift; fi
if [ "${BUILD:-1}" != 0 ]; then
  . ci/setup.sh
  cmake --preset default
  cmake --build --preset default
fi
mc=${MASKCHECK_BIN:-build/bin/maskcheck}
if [ ! -x "$mc" ]; then
  echo "ci/gate.sh: $mc is missing (build it, or run without BUILD=0)" >&2
  exit 2
fi
out=${OUT:-build/gate}
baseline=${BASELINE:-reports/baselines/cpu-ci}
update=${UPDATE_BASELINE:-0}
filter=${GATE_FILTER:-'^ceiling/cpu/|^cpu/([a-z_]+/(f32|T)|build_mask/)'}
export MASKCHECK_CI=1
mkdir -p "$out"
if [ "$update" != 1 ] && [ ! -f "$baseline/bench.json" ] && [ ! -f "$baseline/verify.json" ]; then
  echo "ci/gate.sh: no baseline in $baseline (record one with UPDATE_BASELINE=1)" >&2
  exit 2
fi

status=0
rm -f "$out/verify.json" "$out/bench.json" "$out/compare.md"
"$mc" verify --impl "${GATE_IMPL:-own}" --quiet --json "$out/verify.json" "$@" || status=$?
if [ ! -f "$out/verify.json" ]; then
  echo "ci/gate.sh: maskcheck verify wrote no results (exit $status)" >&2
  exit "$status"
fi
bench_status=0
if [ "${BENCH:-1}" != 0 ]; then
  "$mc" bench --filter "$filter" --repetitions "${REPETITIONS:-5}" --json "$out/bench.json" ||
    bench_status=$?
  if [ "$status" -eq 0 ]; then status=$bench_status; fi
fi

reports=("$out/verify.json")
[ -f "$out/bench.json" ] && reports+=("$out/bench.json")
if [ "$update" = 1 ]; then
  if [ "$status" -ne 0 ]; then
    echo "ci/gate.sh: not updating the baseline: verify or bench failed (exit $status)" >&2
  else
    mkdir -p "$baseline"
    for f in verify.json bench.json; do
      [ -f "$out/$f" ] || continue
      cp "$out/$f" "$baseline/$f.tmp.$$" && mv "$baseline/$f.tmp.$$" "$baseline/$f"
    done
    echo "ci/gate.sh: baseline $baseline updated from this run"
  fi
else
  compare_status=0
  "$mc" compare "$baseline" "$out" --max-slowdown "${MAX_SLOWDOWN:-10%}" --alpha "${ALPHA:-0.05}" \
    --gate "${GATE_ROWS:-/maskcheck[^/]*\$}" --out "$out/compare.md" || compare_status=$?
  if [ "$status" -eq 0 ]; then status=$compare_status; fi
fi
"$mc" report "${reports[@]}" --out "$out"
echo "ci/gate.sh: exit $status; report in $out/report.html"
exit "$status"
