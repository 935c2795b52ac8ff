// CPU timing for maskcheck_bench: maskcheck's CPU kernels (Highway SIMD + OpenMP) beside LibTorch
// on the CPU and the reference, in the same process as the CUDA rows.
//
// A timed iteration is one call of the operation, wall clock (UseRealTime: the kernels and
// LibTorch run on several threads, so the main thread's CPU time would be meaningless). No cache
// flush: the memory-bound cases are sized beyond the last-level cache (see each *_bench.cpp), the
// compute-bound ones do not care. Before timing, every row runs once and is checked (check.hpp),
// then runs once more as a warm-up (first-touch page faults of outputs and LibTorch's temporaries
// happen there, not in the first timed iteration).
//
// Counters (set_cpu_counters):
//   bytes_per_second  minimal bytes (visible inputs read once, outputs written once) per second;
//   bw_frac           memory-bound rows: that rate over the STREAM triad bandwidth of the probe;
//   useful_FLOPS      attention: 4 D per visible (q, k) pair and head, per second;
//   dense_FLOPS       attention: 4 D Lq Lk per head, per second; visible_frac their ratio;
//   fma_frac          attention: useful FLOP/s over the FMA peak of the probe.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "../check.hpp"
#include "../harness.hpp"

namespace maskcheck::bench {

// ---- memory ---------------------------------------------------------------------------------

// A 64-byte aligned host buffer (cache-line and AVX-512 aligned, as a framework's allocator
// would give), uninitialized; first touched by whoever writes it first.
class CpuBuffer {
 public:
  CpuBuffer() = default;
  explicit CpuBuffer(std::size_t bytes);
  CpuBuffer(CpuBuffer&& o) noexcept;
  CpuBuffer& operator=(CpuBuffer&& o) noexcept;
  CpuBuffer(const CpuBuffer&) = delete;
  CpuBuffer& operator=(const CpuBuffer&) = delete;
  ~CpuBuffer();

  void* get() const { return p_; }
  std::size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// Deterministic inputs, written by all threads (first touch): every value is a function of
// (seed, index) only, so a rerun with the same MASKCHECK_SEED sees the same inputs.
// n values uniform in [lo, hi), stored in dtype t.
void cpu_fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo, double hi);
// n labels uniform in [0, V), each replaced by ignore_index with probability ignore_frac.
void cpu_fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                     std::int64_t ignore_index, std::uint64_t seed);
// n token ids uniform in [lo, hi).
void cpu_fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi,
                  std::uint64_t seed);
// Zeroes a buffer with all threads (first touch of outputs outside timing).
void cpu_zero(void* p, std::size_t bytes);

// A copy of n elements of dtype t as the checks' HostTensor.
HostTensor host_copy(const void* p, DType t, std::int64_t n);
// Element i of dtype-t storage as a double.
double value_at(const void* p, DType t, std::int64_t i);

// ---- the machine's limits, measured by the probes in ceilings.cpp -----------------------------

struct CpuCeilings {
  double triad_bytes_per_second = 0;  // STREAM triad, 3 x 8 bytes per element
  double fma_flops = 0;               // f32 FMA peak, all threads, 2 FLOPs per lane per FMA
};
const CpuCeilings& cpu_ceilings();
void set_cpu_ceilings(const CpuCeilings& c);

// The probes themselves (ceilings.cpp runs them at start-up; the ceiling/cpu rows time them).
// triad: a[i] = b[i] + s * c[i] over n doubles per array, OpenMP static schedule; returns seconds.
double triad_once(double* a, const double* b, const double* c, std::int64_t n);
// FMA: every OpenMP thread runs `iterations` of independent Highway MulAdd chains; returns the
// FLOPs done (2 per lane per FMA, all threads) and sets *target to the Highway target used.
double fma_probe_once(std::int64_t iterations, std::string* target);

// ---- LibTorch on this CPU ----------------------------------------------------------------------

// "" when LibTorch's CPU kernels run in dtype t here, else why its rows are not registered. Set
// by the start-up check in ceilings.cpp: some virtual machines advertise AMX extensions in CPUID
// that trap (SIGILL) when oneDNN uses them for bf16; the check runs LibTorch's bf16 attention in a
// forked child, caps oneDNN's ISA (ONEDNN_MAX_CPU_ISA) when the child dies, and gives up on bf16
// peers when no cap helps.
std::string torch_cpu_unusable(DType t);
void set_torch_cpu_unusable(DType t, const std::string& why);

// ---- work counters ------------------------------------------------------------------------

struct CpuWork {
  double bytes = 0;         // minimal bytes: visible inputs read once, outputs written once
  double useful_flops = 0;  // attention: 4 D per visible (q, k) pair and head
  double dense_flops = 0;   // attention: 4 D Lq Lk per head
  bool memory_bound = false;
};
void set_cpu_counters(benchmark::State& state, const CpuWork& w);

// ---- rows -----------------------------------------------------------------------------------

// Registers a CPU row: wall-clock time (UseRealTime), microseconds.
benchmark::internal::Benchmark* add_cpu(const std::string& name,
                                        std::function<void(benchmark::State&)> fn);

// One implementation of a case, built and checked once: `run` computes the operation into the
// case's output buffers and nothing else (no allocation of maskcheck's own; LibTorch allocates
// what its operators allocate, as its users pay).
struct CpuPrepared {
  std::function<void()> run;
  CheckOutcome check;
  std::string label;  // shape and implementation notes for the console
  CpuWork work;
  bool warmed = false;
};
// The body every CPU benchmark shares: get the prepared implementation (built and checked once
// per case by `prepare`, which throws on failure), skip it on a mismatch, warm it up once, time
// it. An exception becomes SkipWithError with its message, recorded once per row.
void run_cpu(benchmark::State& state, const std::string& name, bool ours,
             const std::function<CpuPrepared&()>& prepare);

// The implementations of one case, built (and checked) on first use; a failed build is
// remembered so that the row's later calls skip at once with the same message.
struct CpuCaseImpls {
  std::map<std::string, CpuPrepared> impls;
  std::map<std::string, std::string> failures;
  CpuPrepared& get(const std::string& impl, const std::function<CpuPrepared()>& build);
};

// The label of a checked row: "<shape> | <notes> | check: <message>".
std::string check_label(const std::string& shape, const std::string& notes, const CheckOutcome& c);

}  // namespace maskcheck::bench
