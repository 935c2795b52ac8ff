// maskcheck_bench: Google Benchmark over maskcheck's kernels and their peers, one binary.
//
//   maskcheck_bench [--benchmark_filter=REGEX] [--benchmark_repetitions=N]
//                   [--benchmark_report_aggregates_only=true] [--benchmark_out=FILE.json]
//
// --benchmark_min_time defaults to 0.1 (seconds of measured GPU time per row) unless given.
// Order of a run: the seed (MASKCHECK_SEED, default 1) and the replay line; the context
// providers (machine description, the copy-bandwidth ceiling); registration of every suite
// (MASKCHECK_CI=1 registers small shapes); the benchmarks, each checked once before it is timed
// (a mismatch skips the row with "mismatch: ..."); a summary of the checks. The exit status is 1
// when a maskcheck implementation mismatched or failed, 0 otherwise (peers' deviations are
// reported, not fatal). Without a GPU every CUDA row is skipped with the reason.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"
#include "maskcheck/suite/about.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

namespace {

void maskcheck_context() {
  namespace mb = maskcheck::bench;
  const auto about = maskcheck::about_json();
  for (const char* key :
       {"maskcheck", "commit", "dirty", "build_type", "compiler", "cpu", "cores"}) {
    if (!about.contains(key)) continue;
    const auto& v = about[key];
    const std::string name = std::string(key) == "maskcheck" ? "version" : key;
    benchmark::AddCustomContext("maskcheck." + name,
                                v.is_string() ? v.get<std::string>() : v.dump());
  }
  benchmark::AddCustomContext("maskcheck.seed", std::to_string(mb::seed()));
  benchmark::AddCustomContext("maskcheck.ci_budget", mb::ci() ? "1" : "0");
  benchmark::AddCustomContext(
      "maskcheck.timing",
      "CUDA events around each launch, manual time; L2 flushed (memset of 2x L2) before every "
      "iteration outside the events; 3 warm-up launches; outputs checked before timing");
#if MASKCHECK_BENCH_TORCH
  namespace tp = maskcheck::torch_peers;
  benchmark::AddCustomContext("torch.version", tp::torch_version());
  if (const auto v = tp::torch_cuda_version(); !v.empty())
    benchmark::AddCustomContext("torch.cuda", v);
  if (const auto v = tp::torch_cudnn_version(); !v.empty())
    benchmark::AddCustomContext("torch.cudnn", v);
  // Between cases, LibTorch gives its cached memory back so that the next case's buffers fit.
  mb::CaseCache::on_release([] { tp::release_cached_memory(); });
#else
  benchmark::AddCustomContext("torch.version", "not built (MASKCHECK_ENABLE_TORCH=OFF)");
#endif
}

}  // namespace

MASKCHECK_BENCH_CONTEXT(maskcheck, maskcheck_context);

int main(int argc, char** argv) {
  namespace mb = maskcheck::bench;
  std::fprintf(stderr, "maskcheck_bench seed %llu%s; replay: MASKCHECK_SEED=%llu%s %s\n",
               static_cast<unsigned long long>(mb::seed()), mb::ci() ? " (CI budget)" : "",
               static_cast<unsigned long long>(mb::seed()), mb::ci() ? " MASKCHECK_CI=1" : "",
               argv[0]);
  // GPU rows time with events, so 0.1 s of measured time is hundreds of launches for most rows;
  // Google Benchmark's 0.5 s default would make a full run several times longer.
  std::vector<char*> args(argv, argv + argc);
  std::string min_time = "--benchmark_min_time=0.1";
  if (std::none_of(args.begin(), args.end(), [](const char* a) {
        return std::string_view(a).starts_with("--benchmark_min_time");
      }))
    args.insert(args.begin() + 1, min_time.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;
  mb::run_context_providers();
  mb::register_all_suites();
  benchmark::RunSpecifiedBenchmarks();
  mb::CaseCache::release();
  benchmark::Shutdown();
  return mb::print_summary();
}
