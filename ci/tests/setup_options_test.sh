#!/usr/bin/env bash
# ci/setup.sh, sourced, must leave the caller's shell options as they were: a script with
# `set -euo pipefail` (ci/test.sh, ci/main.sh) must still stop at its first failing command, and
# a shell without them must not gain them.
#   bash ci/tests/setup_options_test.sh [ROOT]
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
fail=0
out=$(bash -c 'set -euo pipefail; . "$1/ci/setup.sh" >/dev/null 2>&1; false; echo survived' _ "$root")
if [ -n "$out" ]; then
  echo "FAIL: errexit was lost: a command after a failure ran" >&2
  fail=1
fi
flags=$(bash -c 'set -euo pipefail; . "$1/ci/setup.sh" >/dev/null 2>&1; echo "$-"; shopt -qo pipefail && echo pipefail' _ "$root")
case $flags in *e*u*pipefail* | *u*e*pipefail*) ;; *)
  echo "FAIL: options after sourcing with set -euo pipefail: $flags" >&2
  fail=1 ;;
esac
flags=$(bash -c '. "$1/ci/setup.sh" >/dev/null 2>&1; echo "$-"; shopt -qo pipefail && echo pipefail' _ "$root")
case $flags in *e* | *u* | *pipefail*)
  echo "FAIL: options after sourcing without them: $flags" >&2
  fail=1 ;;
esac
[ $fail = 0 ] && echo "setup.sh keeps the caller's shell options"
exit $fail
