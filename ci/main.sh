#!/usr/bin/env bash
# The main job: installs what is missing, builds the default preset, verifies maskcheck's own
# implementations (reference, CPU and CUDA kernels) against the property catalogue, verifies the
# third-party LibTorch and ggml adapters (their findings are reported, they do not fail the job), runs the
# benchmarks behind the CPU targets and writes the report.
#   OUT=dir (default build/report): where verify.json, verify-third-party.json, bench.json,
#   report.md and report.html go
#   BENCH=0: skip the benchmarks; BENCH_FILTER=RE: benchmark these rows instead of the curated
#   set below (`build/bin/maskcheck_bench --benchmark_list_tests=true` lists them all)
#   Extra arguments are passed to `maskcheck verify` (for example --cases 1000 or --seed 7).
# Exit code: that of `maskcheck verify --impl own` (0 all passed, 1 a property failed), or when it passed
# that of `maskcheck bench` (1: a maskcheck kernel mismatched before timing), after the report
# has been written either way.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
out=${OUT:-build/report}

cmake --preset default
cmake --build --preset default

status=0
rm -f "$out/verify.json" "$out/verify-third-party.json"
build/bin/maskcheck verify --impl own --json "$out/verify.json" "$@" || status=$?
if [ ! -f "$out/verify.json" ]; then
  echo "ci/main.sh: maskcheck verify wrote no results (exit $status)" >&2
  exit "$status"
fi
reports=("$out/verify.json")
# LibTorch and ggml as implementations under test: failures here are their findings (see
# suite/adapters/{torch,ggml}/tests/expected_verdicts.json), reported beside maskcheck's own results.
third_status=0
build/bin/maskcheck verify --impl third-party --quiet --json "$out/verify-third-party.json" "$@" ||
  third_status=$?
if [ -f "$out/verify-third-party.json" ]; then
  reports+=("$out/verify-third-party.json")
  echo "ci/main.sh: third-party implementations: exit $third_status (findings, not gating)"
fi

# The rows behind the CPU targets, with their peers, 5 repetitions each (about ten minutes on 2
# cores): the probes (triad bandwidth, FMA peak), fp32 masked softmax over rows of >= 1024 keys,
# fp32 attention with 50 % padding + causal at D 64 over L 512..4096 (the report's throughput
# against sequence length) and D 128 at L 2048, fp32 attention at D 128, L 2048 causal with and
# without the score modifiers, attention sinks + a sliding window at L 8192 (StreamingLLM, bf16),
# decode over a paged KV cache (f32 and bf16, 8k and 32k keys),
# fp32 cross-entropy fwd+bwd at V 128k with 50 % ignored, MLM over 1M tokens and mask construction.
default_filter='^ceiling/cpu/|^cpu/softmax/f32/Lk(1024|8192|65536)/'
default_filter+='|^cpu/attention/f32/(D64/L(512|1024|2048|4096)|D128/L2048)/pad50/padding\+causal/'
default_filter+='|^cpu/attention/f32/D128/L2048/pad0/causal(\+softcap\+alibi\+sinks)?/'
default_filter+='|^cpu/attention/bf16/D128/L8192/pad0/sinks4\+window1020/'
default_filter+='|^cpu/attention_paged/(f32|bf16)/D128/Lk(8192|32768)/'
default_filter+='|^cpu/cross_entropy/f32/V131072/N[0-9]+/ignore50/|^cpu/mlm/|^cpu/build_mask/'
bench_status=0
if [ "${BENCH:-1}" != 0 ]; then
  build/bin/maskcheck bench --filter "${BENCH_FILTER:-$default_filter}" --json "$out/bench.json" ||
    bench_status=$?
  # A run that did not finish leaves an older bench.json behind: report only this run's.
  if [ "$out/bench.json" -nt "$out/verify.json" ]; then
    reports+=("$out/bench.json")
  else
    echo "ci/main.sh: maskcheck bench wrote no results (exit $bench_status)" >&2
  fi
fi
build/bin/maskcheck report "${reports[@]}" --out "$out"
echo "ci/main.sh: report in $out/report.html and $out/report.md"
if [ "$status" -eq 0 ]; then status=$bench_status; fi
exit "$status"
