#!/usr/bin/env bash
# ci/gpu_cases.py without a GPU: each case file it writes loads in `maskcheck eval` and runs through
# the reference; its comparison passes two equal results and fails results of another case.
#   gpu_cases_test.sh SOURCE_DIR MASKCHECK_EXECUTABLE PYTHON WORK_DIR
set -euo pipefail
root=$1 mc=$2 py=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
fail() { echo "gpu_cases_test: $*" >&2; exit 1; }

"$py" "$root/ci/gpu_cases.py" write "$work/cases" > "$work/list" || fail "write failed"
[ "$(wc -l < "$work/list")" -ge 4 ] || fail "fewer than 4 cases: $(cat "$work/list")"
first=
while read -r op file; do
  base=${file%.safetensors}
  "$mc" eval "$op" --impl reference --in "$file" --out "$base.a" --quiet || fail "eval $file"
  cp "$base.a" "$base.b"
  "$py" "$root/ci/gpu_cases.py" compare "$file" "$base.a" "$base.b" || fail "equal results of $file"
  [ -n "$first" ] || first=$base
done < "$work/list"
last=$base
if "$py" "$root/ci/gpu_cases.py" compare "$first.safetensors" "$first.a" "$last.a"; then
  fail "results of another case passed"
fi
echo "gpu_cases_test: passed"
