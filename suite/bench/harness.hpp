// The benchmark harness shared by every source file of maskcheck_bench: suite registration, the
// devices and the target interface, the CI budget, the seed, deterministic shapes, the case
// cache, work counters and the ledger of checks.
//
// One file per operation (<op>_bench.cpp) writes its case table once (the axes, with sizes per
// device) and lists its targets, one implementation on one device each: maskcheck's CPU and CUDA
// kernels, LibTorch on either device, the reference. MASKCHECK_BENCH_OPERATION registers every
// case of a device for every target of that device, so that the implementations of a case share
// one name scheme, one fixture (inputs and reference), one check and one set of counters. What
// differs between devices (memory, random inputs, copies, timing, counters) is a DeviceHarness,
// in cpu/cpu_harness.cpp and cuda/cuda_harness.cpp.
//
// A source file adds its benchmarks with MASKCHECK_BENCH_SUITE(name, fn) (which
// MASKCHECK_BENCH_OPERATION uses): main() calls every registered fn after Google Benchmark parsed
// its flags and the context providers (machine, ceilings) ran, so fn may read ci() and the
// measured ceilings to decide what to register.
// Names are paths of axes (STYLE 9), one scheme for every device:
//   <device>/<op>/<dtype>/<shape axes...>/<mask>/<implementation>
// e.g. "cuda/attention/bf16/D128/L2048/pad50/padding+causal/maskcheck" and ".../torch_efficient",
// so that a report pairs every maskcheck row with its peers by stripping the last component; the
// probes are "ceiling/<device>/<probe>/...".
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/problems.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

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

// Registers `fn` under `name` with manual time (CUDA events) unless `manual_time` is false; the
// device harnesses call it (DeviceHarness::add).
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
// The stream id of a case's inputs: name_hash of its name, less the "cuda/" that CUDA names gained
// when every device got one scheme ("cuda/attention/..." draws what "attention/..." drew), so that
// a renamed row times the same lengths and values as before. CPU names always began with "cpu/".
std::uint64_t case_stream(std::string_view key);

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
// The label of a checked row: "<shape> | <notes> | check: <message>".
std::string check_label(const std::string& shape, const std::string& notes, const CheckOutcome& c);

// ---- devices ------------------------------------------------------------------------------------

enum class Device : std::uint8_t { cpu, cuda };
// "cpu", "cuda": the first component of the names of the device's rows.
std::string device_name(Device d);

// A MaskSpec's flattened arrays where a device's kernels read them (FlatMask on the CPU,
// cuda::DeviceMask on a GPU); view() is what the kernels take.
class KernelMask {
 public:
  virtual ~KernelMask() = default;
  const MaskView& view() const { return view_; }

 protected:
  MaskView view_;
};

// What differs between devices, and only that: cpu/cpu_harness.cpp and cuda/cuda_harness.cpp
// implement it and register it with add_device. Copies and fills have finished when they return
// unless said otherwise; synchronize() waits for the work of a run (CUDA: the default stream).
class DeviceHarness {
 public:
  virtual ~DeviceHarness() = default;
  // "" when the device's rows can run here, else why not (every row of the device skips with it).
  virtual std::string unavailable() const = 0;

  // Memory: uninitialized, at least 64-byte aligned; nullptr for 0 bytes.
  virtual void* allocate(std::size_t bytes) const = 0;
  virtual void deallocate(void* p) const = 0;
  // True when the device's memory is the host's (the checks then read it in place).
  virtual bool host_memory() const = 0;
  virtual void memset(void* p, int value, std::size_t bytes) const = 0;
  virtual void upload(void* device, const void* host, std::size_t bytes) const = 0;
  virtual void download(void* host, const void* device, std::size_t bytes) const = 0;
  virtual void synchronize() const = 0;

  // Deterministic inputs, never zeros: every value is a function of (seed, index) only, so that a
  // rerun with the same MASKCHECK_SEED sees the same inputs (each device has its own generator).
  // n values uniform in [lo, hi), stored in dtype t.
  virtual void fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo,
                            double hi) const = 0;
  // n labels uniform in [0, V), each replaced by ignore_index with probability ignore_frac.
  virtual void fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                           std::int64_t ignore_index, std::uint64_t seed) const = 0;
  // n token ids uniform in [lo, hi).
  virtual void fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi,
                        std::uint64_t seed) const = 0;
  virtual std::unique_ptr<KernelMask> mask(const MaskSpec& spec) const = 0;

  // Timing. add registers a row with the device's clock (wall clock on the CPU, CUDA events and
  // manual time on a GPU); warm_up runs a checked implementation before its first timed
  // iteration; time is the timed loop; set_counters turns `w` into rates and fractions of the
  // device's measured limits.
  virtual benchmark::internal::Benchmark* add(const std::string& name,
                                              std::function<void(benchmark::State&)> fn) const = 0;
  virtual void warm_up(const std::function<void()>& run) const = 0;
  virtual void time(benchmark::State& state, const std::function<void()>& run) const = 0;
  virtual void set_counters(benchmark::State& state, const Work& w) const = 0;
  // What the label of a row of maskcheck's kernels says about them on this device
  // ("maskcheck::cpu (AVX3, 2 threads)"; "" on CUDA).
  virtual std::string kernels_note() const = 0;
};

int add_device(Device d, const DeviceHarness* harness);
// The harness of a device compiled into this binary (throws for another).
const DeviceHarness& device(Device d);
// The devices compiled into this binary, the CPU first.
std::vector<Device> devices();

// Memory on a device, freed with the Buffer.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device d, std::size_t bytes);
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  std::size_t bytes() const { return bytes_; }
  // Every byte set to `value` (poison: 0xFF is NaN in f32, f16 and bf16).
  void fill(int value);
  void upload(const void* host, std::size_t bytes);

 private:
  Device d_ = Device::cpu;
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// "" when LibTorch's kernels run in dtype t on device d here, else why its rows are not
// registered. Set by the CPU's start-up check (cpu/ceilings.cpp): some virtual machines advertise
// AMX extensions in CPUID that trap (SIGILL) when oneDNN uses them for bf16.
std::string torch_unusable(Device d, DType t);
void set_torch_unusable(Device d, DType t, const std::string& why);
#if MASKCHECK_BENCH_TORCH
inline torch_peers::Device torch_device(Device d) {
  return d == Device::cpu ? torch_peers::Device::cpu : torch_peers::Device::cuda;
}
#endif

// ---- targets ------------------------------------------------------------------------------------

// One implementation of a case, built and checked once: `run` computes the operation into the
// buffers it was built with and nothing else (no allocation of maskcheck's own; LibTorch allocates
// what its operators allocate, as its users pay); on a GPU it only enqueues the work.
struct Prepared {
  std::function<void()> run;
  CheckOutcome check;
  std::string label;  // shape and implementation notes for the console
  Work work;
  bool warmed = false;
};

// The implementations of one case, built (and checked) on first use; a failed build is
// remembered so that the row's later calls skip at once with the same message.
struct CaseImpls {
  std::map<std::string, Prepared> impls;
  std::map<std::string, std::string> failures;
  Prepared& get(const std::string& impl, const std::function<Prepared()>& build);
};

// The body every row shares: skip when the device is unavailable; get the prepared
// implementation (built and checked once per case by `prepare`, which throws on failure); skip it
// on a mismatch; warm it up once; time it; set the counters. An exception becomes SkipWithError
// with its message, recorded once per row.
void run_row(benchmark::State& state, Device d, const std::string& name, bool ours,
             const std::function<Prepared&()>& prepare);

// One implementation on one device, as an operation's file lists it. Case has `device` and
// key() (the name without the implementation); Fixture derives from CaseImpls and holds a case's
// inputs and references, shared by the consecutive rows of that case.
template <class Case, class Fixture>
struct Target {
  Device device = Device::cpu;
  std::string impl;   // the last component of its rows' names
  bool ours = false;  // maskcheck's own: a mismatch fails the run
  // Cases the target does not apply to at all (no row, no note); empty: every case.
  std::function<bool(const Case&)> applies = {};
  // "" when the target takes the case, else why its row is not registered (listed at the end of
  // the run); empty: every case it applies to.
  std::function<std::string(const Case&)> skip = {};
  // Builds the implementation on the case's fixture, runs it once and checks it; throws on failure.
  std::function<Prepared(Fixture&, const std::string& name)> build = {};
};

// Registers an operation: every case of cases(d), for every device d compiled in, for every
// target of that device, case by case (the rows of a case are consecutive and share one fixture
// through the CaseCache), targets in their order. An operation's file ends with
//   MASKCHECK_BENCH_OPERATION(softmax, cases, targets, make_fixture);
template <class Case, class Fixture>
void register_operation(std::vector<Case> (*cases)(Device d),
                        std::vector<Target<Case, Fixture>> (*targets)(),
                        std::unique_ptr<Fixture> (*make_fixture)(const Case&));

#define MASKCHECK_BENCH_OPERATION(name, cases, targets, make_fixture) \
  MASKCHECK_BENCH_SUITE(                                              \
      name, [] { ::maskcheck::bench::register_operation(cases, targets, make_fixture); })

// The axes of an attention-shaped case table on one device (attention, attention_backward):
// dtypes, head dims, lengths, tokens per case (B = tokens / L) and heads.
struct AttentionSizes {
  std::vector<DType> dtypes;
  std::vector<std::int64_t> Ds, Ls;
  std::int64_t tokens, H;
};

// The case of an operation over token sequences (mlm, lm_labels): B sequences of L tokens with
// pad % mean padding, named "<device>/<op>/T<B * L>/L<L>/pad<pad>".
struct TokenCase {
  Device device = Device::cpu;
  std::string op;
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string key() const;
};

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

template <class Case, class Fixture>
void register_operation(std::vector<Case> (*cases)(Device d),
                        std::vector<Target<Case, Fixture>> (*targets)(),
                        std::unique_ptr<Fixture> (*make_fixture)(const Case&)) {
  const std::vector<Target<Case, Fixture>> all = targets();
  for (Device d : devices())
    for (const Case& c : cases(d))
      for (const auto& t : all) {
        if (t.device != c.device || (t.applies && !t.applies(c))) continue;
        const std::string name = c.key() + "/" + t.impl;
        if (const std::string why = t.skip ? t.skip(c) : std::string(); !why.empty()) {
          note_pruned(name, why);
          continue;
        }
        device(c.device).add(name, [c, t, name, make_fixture](benchmark::State& state) {
          run_row(state, c.device, name, t.ours, [&]() -> Prepared& {
            auto& f = CaseCache::get<Fixture>(c.key(), [&] { return make_fixture(c); });
            return f.get(t.impl, [&] { return t.build(f, name); });
          });
        });
      }
}

}  // namespace maskcheck::bench
