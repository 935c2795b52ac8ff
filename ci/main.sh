#!/usr/bin/env bash
# The main job: installs what is missing, builds the default preset, verifies every built-in
# implementation against the property catalogue and writes the report.
#   OUT=dir (default build/report): where verify.json and report.md go
#   Extra arguments are passed to `maskcheck verify` (for example --cases 1000 or --seed 7).
# Exit code: that of `maskcheck verify` (0 all passed, 1 a property failed), after the report
# has been written either way.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
out=${OUT:-build/report}

cmake --preset default
cmake --build --preset default

status=0
build/bin/maskcheck verify --json "$out/verify.json" "$@" || status=$?
if [ ! -f "$out/verify.json" ]; then
  echo "ci/main.sh: maskcheck verify wrote no results (exit $status)" >&2
  exit "$status"
fi
build/bin/maskcheck report "$out/verify.json" --out "$out"
echo "ci/main.sh: report in $out/report.md"
exit "$status"
