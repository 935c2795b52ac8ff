// The benchmark harness shared by every source file of maskcheck_bench (CUDA today, CPU later):
// suite registration, benchmark names, the CI budget, the seed, deterministic shapes, the case
// cache, work counters and the ledger of checks.
//
// A source file adds its benchmarks with MASKCHECK_BENCH_SUITE(name, fn): main() calls every
// registered fn after Google Benchmark parsed its flags and the context providers (machine,
// ceilings) ran, so fn may read ci_budget() and the measured ceilings to decide what to register.
// Names are paths of axes (STYLE 9):
//   <op>/<dtype>/<shape axes...>/<mask>/<implementation>
// e.g. "attention/bf16/D128/L2048/pad50/padding+causal/maskcheck" and ".../torch_efficient", so
// that a report pairs every maskcheck row with its peers by stripping the last component.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::bench {

// ---- registration -----------------------------------------------------------------------------

using RegisterFn = void (*)();
int add_suite(const char* name, RegisterFn fn);
// Context providers run once before registration (machine description, ceilings).
int add_context_provider(const char* name, RegisterFn fn);
void run_context_providers();
void register_all_suites();

#define MASKCHECK_BENCH_SUITE(name, fn)                            \
  [[maybe_unused]] static const int maskcheck_bench_suite_##name = \
      ::maskcheck::bench::add_suite(#name, fn)
#define MASKCHECK_BENCH_CONTEXT(name, fn)                            \
  [[maybe_unused]] static const int maskcheck_bench_context_##name = \
      ::maskcheck::bench::add_context_provider(#name, fn)

// Registers `fn` under `name` with manual time (CUDA events) unless `manual_time` is false.
benchmark::internal::Benchmark* add(const std::string& name,
                                    std::function<void(benchmark::State&)> fn,
                                    bool manual_time = true);

// A benchmark that was not registered on purpose (an implementation that cannot express a case):
// counted and listed by reason at the end instead of filling the table with skipped rows.
void note_pruned(const std::string& name, const std::string& reason);

// ---- run-wide settings --------------------------------------------------------------------------

bool ci();             // MASKCHECK_CI=1: small shapes, the whole binary in seconds
std::uint64_t seed();  // MASKCHECK_SEED, default 1: every input is a function of it
std::string dtype_name(DType t);

// splitmix64: the harness' deterministic stream of numbers (same on every platform).
struct Rng {
  std::uint64_t state;
  explicit Rng(std::uint64_t s) : state(s) {}
  std::uint64_t next();
  std::int64_t uniform(std::int64_t lo, std::int64_t hi);  // [lo, hi]
  double unit();                                           // [0, 1)
};
std::uint64_t mix(std::uint64_t seed, std::uint64_t stream);
// FNV-1a of a name: a stable stream id per case (std::hash is not stable across libraries).
std::uint64_t name_hash(std::string_view name);

// B lengths in [1, L] whose mean padding is pad_pct % of L (drawn, then nudged to the exact total).
std::vector<std::int32_t> draw_lengths(std::int64_t B, std::int64_t L, int pad_pct, Rng& rng);
// cu_seqlens of `docs` documents (at most len of them) splitting [0, len) at random points.
std::vector<std::int32_t> draw_documents(std::int32_t len, int docs, Rng& rng);

// Visible (q, k) pairs of a mask summed over its sequences, from the one predicate.
double visible_pairs(const MaskSpec& m);

// ---- work counters ------------------------------------------------------------------------------

struct Work {
  double bytes = 0;         // minimal bytes: visible inputs read once, outputs written once
  double useful_flops = 0;  // attention: 4 D per visible (q, k) pair and head
  double dense_flops = 0;   // attention: 4 D Lq Lk per head
  bool memory_bound = false;
};
// The measured device-to-device copy bandwidth in bytes/s (0 until a ceiling provider set it).
double copy_bandwidth();
void set_copy_bandwidth(double bytes_per_second);
// bytes_per_second, bw_frac (memory-bound only), useful_TFLOPS, dense_TFLOPS, visible_frac.
void set_counters(benchmark::State& state, const Work& w);

// ---- checks -------------------------------------------------------------------------------------

// The outcome of one check before timing; recorded in the ledger and printed at the end.
struct CheckOutcome {
  bool ok = true;
  std::string message;  // first mismatches on failure; "max|err| ... on N rows" on success
  double max_abs_err = 0;
};
// ours: a maskcheck implementation (a mismatch makes the binary exit 1); peers are reported only.
void record_check(const std::string& name, const CheckOutcome& c, bool ours);
void record_error(const std::string& name, const std::string& what, bool ours);
// Prints the summary ("All results match ..." or the mismatches) and returns the exit status.
int print_summary();

// ---- the case cache -----------------------------------------------------------------------------

// One case's state at a time (inputs, references, peers), shared by the consecutive benchmarks of
// that case (maskcheck and its peers): built by the first of them, freed when another case asks,
// so that device memory holds one case. A failed build is remembered and rethrown.
class CaseCache {
 public:
  template <class T>
  static T& get(const std::string& key, const std::function<std::unique_ptr<T>()>& make) {
    Slot& s = slot();
    if (s.key != key) {
      release();
      s.key = key;
      try {
        std::unique_ptr<T> made = make();
        s.value = std::shared_ptr<void>(made.release(), [](void* p) { delete static_cast<T*>(p); });
      } catch (const std::exception& e) {
        s.error = e.what();
      }
    }
    if (!s.error.empty()) throw std::runtime_error(s.error);
    return *static_cast<T*>(s.value.get());
  }
  static void release();
  // Called after a case is freed (the torch peers return LibTorch's cached memory).
  static void on_release(std::function<void()> fn);

 private:
  struct Slot {
    std::string key;
    std::shared_ptr<void> value;
    std::string error;
  };
  static Slot& slot();
};

}  // namespace maskcheck::bench
