// maskcheck_bench: Google Benchmark over maskcheck's kernels and their peers, one binary.
//
//   maskcheck_bench [--plugin=LIB.so]... [--benchmark_filter=REGEX] [--benchmark_repetitions=N]
//                   [--benchmark_report_aggregates_only=true] [--benchmark_out=FILE.json]
//
// --plugin loads a plugin library (maskcheck/plugin.h) into this process and times its operations
// beside maskcheck's rows of the same cases (plugins.hpp); a library that cannot be loaded: exit 2.
//
// --benchmark_min_time defaults to 0.1 (seconds of measured GPU time per row) unless given.
// Order of a run: the seed (MASKCHECK_SEED, default 1) and the replay line; the context
// providers (machine description, the copy-bandwidth ceiling); registration of every suite
// (MASKCHECK_CI=1 registers small shapes); the benchmarks, each checked once before it is timed
// (a mismatch skips the row with "mismatch: ..."), with "benchmark k of n" and the time left on
// stderr (a status line on a terminal, plain lines otherwise; MASKCHECK_PROGRESS=off silences it);
// a summary of the checks. The exit status is 1 when a maskcheck implementation mismatched or
// failed, 2 when the filter matched no benchmark, 0 otherwise (peers' deviations are reported,
// not fatal). Without a GPU every CUDA row is skipped with the reason.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/progress.hpp"
#include "plugins.hpp"
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

// Forwards to the display reporter Google Benchmark would have used (--benchmark_format) and shows
// "benchmark k of n" with the time left after each benchmark (maskcheck/suite/progress.hpp): a
// status line on a terminal, erased before every result line; plain lines on stderr in a log.
class ProgressReporter : public benchmark::BenchmarkReporter {
 public:
  ProgressReporter(benchmark::BenchmarkReporter* inner, std::size_t total)
      : inner_(inner), progress_("benchmarks", total, stderr) {}
  bool ReportContext(const Context& context) override {
    const bool go = inner_->ReportContext(context);
    std::fflush(stdout);
    progress_.update(0);
    return go;
  }
  void ReportRuns(const std::vector<Run>& runs) override {
    progress_.clear();
    inner_->ReportRuns(runs);
    std::fflush(stdout);
    if (runs.empty()) return;
    // One call per benchmark after its repetitions (without random interleaving).
    progress_.update(++done_, runs.front().run_name.str());
  }
  void Finalize() override {
    progress_.finish();
    inner_->Finalize();
  }

 private:
  benchmark::BenchmarkReporter* inner_;
  maskcheck::Progress progress_;
  std::size_t done_ = 0;
};

// Counts the benchmarks the filter selects: a pass whose reporter declines to run them
// (RunSpecifiedBenchmarks returns the number matched before it asks the reporter).
class CountOnly : public benchmark::BenchmarkReporter {
 public:
  CountOnly() { SetErrorStream(&quiet_); }
  bool ReportContext(const Context&) override { return false; }
  void ReportRuns(const std::vector<Run>&) override {}

 private:
  std::ostream quiet_{nullptr};  // its complaints come again from the real pass
};

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
  // Listing prints names only: no progress. (Read before Initialize, which consumes the flags.)
  const bool listing = std::any_of(args.begin() + 1, args.end(), [](const char* a) {
    const std::string_view v(a);
    return v == "--benchmark_list_tests" || v == "--benchmark_list_tests=true" ||
           v == "--benchmark_list_tests=1";
  });
  // --plugin=LIB or --plugin LIB, ours: taken out before Google Benchmark reads the rest.
  std::vector<std::string> plugin_paths;
  for (std::size_t i = 1; i < args.size();) {
    const std::string_view a(args[i]);
    if (a.starts_with("--plugin=")) {
      plugin_paths.emplace_back(a.substr(9));
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (a == "--plugin" && i + 1 < args.size()) {
      plugin_paths.emplace_back(args[i + 1]);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i + 2));
    } else {
      ++i;
    }
  }
  try {
    mb::load_plugins(plugin_paths);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "maskcheck_bench: %s\n", e.what());
    return 2;
  }
  nlohmann::json described = nlohmann::json::array();
  for (const auto& plugin : mb::plugins())
    described.push_back(maskcheck::plugin::plugin_info(*plugin)->to_json());
  if (!described.empty()) benchmark::AddCustomContext("plugins", described.dump());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;
  mb::run_context_providers();
  mb::register_all_suites();
  bool matched_nothing = false;
  std::unique_ptr<benchmark::BenchmarkReporter> display(benchmark::CreateDefaultDisplayReporter());
  if (listing) {
    benchmark::RunSpecifiedBenchmarks(display.get());
  } else {
    CountOnly counter;
    const std::size_t total = benchmark::RunSpecifiedBenchmarks(&counter);
    if (total > 0) {
      ProgressReporter reporter(display.get(), total);
      benchmark::RunSpecifiedBenchmarks(&reporter);
    } else {
      benchmark::RunSpecifiedBenchmarks(display.get());  // prints why nothing matched
      matched_nothing = true;
    }
  }
  mb::CaseCache::release();
  benchmark::Shutdown();
  const int status = mb::print_summary();
  return matched_nothing ? 2 : status;
}
