#!/usr/bin/env bash
# ci/gate.sh end to end on an existing build: record a baseline, pass against it, fail against a
# baseline that is ten times faster (the report is written all the same), and refuse to run
# without a baseline.
#   gate_test.sh SOURCE_DIR MASKCHECK_EXECUTABLE WORK_DIR
set -euo pipefail
root=$1 mc=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
cd "$root"
export BUILD=0 MASKCHECK_BIN=$mc MASKCHECK_PROGRESS=off GATE_IMPL=reference REPETITIONS=5
export GATE_FILTER='^cpu/(mlm|lm_labels)/'
verify_args=(-- --op masks --cases 5 --seed 7)
fail() { echo "gate_test: $*" >&2; exit 1; }

# 1. Record a baseline.
OUT=$work/record BASELINE=$work/baseline UPDATE_BASELINE=1 bash ci/gate.sh "${verify_args[@]}" ||
  fail "recording the baseline failed"
for f in verify.json bench.json; do [ -s "$work/baseline/$f" ] || fail "baseline $f missing"; done

# 2. The same code against it, with a threshold no noise reaches: passes, writes everything.
OUT=$work/same BASELINE=$work/baseline MAX_SLOWDOWN=1000% bash ci/gate.sh "${verify_args[@]}" ||
  fail "the unchanged code failed the gate"
for f in compare.md report.md report.html verify.json bench.json; do
  [ -s "$work/same/$f" ] || fail "$f missing after a passing gate"
done
grep -q "PASS" "$work/same/compare.md" || fail "compare.md has no PASS verdict"

# 3. A baseline ten times faster: every gated row is a significant slowdown; exit 1, report kept.
mkdir -p "$work/fast"
cp "$work/baseline/verify.json" "$work/fast/verify.json"
python3 - "$work/baseline/bench.json" "$work/fast/bench.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for b in doc["benchmarks"]:
    if b.get("aggregate_unit", "time") == "time":
        for k in ("real_time", "cpu_time"):
            if k in b:
                b[k] *= 0.1
json.dump(doc, open(sys.argv[2], "w"))
PY
status=0
OUT=$work/slow BASELINE=$work/fast bash ci/gate.sh "${verify_args[@]}" || status=$?
[ "$status" -eq 1 ] || fail "a 10x slowdown exited $status, not 1"
grep -q "FAIL" "$work/slow/compare.md" || fail "compare.md has no FAIL verdict"
grep -q "cpu/mlm/" "$work/slow/compare.md" || fail "compare.md does not name the slow row"
[ -s "$work/slow/report.html" ] || fail "no report after a failing gate"

# 4. No baseline: a usage error.
status=0
OUT=$work/none BASELINE=$work/no-such-baseline bash ci/gate.sh "${verify_args[@]}" || status=$?
[ "$status" -eq 2 ] || fail "a missing baseline exited $status, not 2"
echo "gate_test: passed"
