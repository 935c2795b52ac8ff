#include "cpu_harness.hpp"

#include <omp.h>

#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>

#include "maskcheck/kernels/cpu.hpp"

namespace maskcheck::bench {

namespace {

CpuCeilings g_ceilings;

// splitmix64's finalizer over (seed, index): a counter-based stream, so that any thread can
// produce any element.
std::uint64_t hash(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double unit(std::uint64_t seed, std::uint64_t i) {
  return static_cast<double>(hash(seed, i) >> 11) * 0x1.0p-53;
}

// Round to nearest even (finite inputs only); the exact conversion of the dtype's constructor is
// far slower and these are just random inputs.
std::uint16_t bf16_bits(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// ---- inputs (see the header) ----------------------------------------------------------------

void cpu_fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo, double hi) {
  const double span = hi - lo;
  switch (t) {
    case DType::f64: {
      auto* d = static_cast<double*>(p);
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) d[i] = lo + span * unit(seed, i);
      break;
    }
    case DType::f32: {
      auto* d = static_cast<float*>(p);
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(lo + span * unit(seed, i));
      break;
    }
    case DType::bf16: {
      auto* d = static_cast<std::uint16_t*>(p);
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i)
        d[i] = bf16_bits(static_cast<float>(lo + span * unit(seed, i)));
      break;
    }
    case DType::f16: {
      auto* d = static_cast<half*>(p);
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) d[i] = half(lo + span * unit(seed, i));
      break;
    }
  }
}

void cpu_fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                     std::int64_t ignore_index, std::uint64_t seed) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const bool ignored = unit(seed, 2 * static_cast<std::uint64_t>(i)) < ignore_frac;
    p[i] = ignored ? ignore_index
                   : static_cast<std::int64_t>(hash(seed, 2 * static_cast<std::uint64_t>(i) + 1) %
                                               static_cast<std::uint64_t>(V));
  }
}

void cpu_fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi,
                  std::uint64_t seed) {
  const auto span = static_cast<std::uint64_t>(hi - lo);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    p[i] = lo + static_cast<std::int64_t>(hash(seed, static_cast<std::uint64_t>(i)) % span);
}

}  // namespace

// ---- ceilings -------------------------------------------------------------------------------

const CpuCeilings& cpu_ceilings() {
  return g_ceilings;
}

void set_cpu_ceilings(const CpuCeilings& c) {
  g_ceilings = c;
}

double triad_once(double* a, const double* b, const double* c, std::int64_t n) {
  const double s = 3.0;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- counters -------------------------------------------------------------------------------

void set_cpu_counters(benchmark::State& state, const Work& w) {
  using C = benchmark::Counter;
  const CpuCeilings& ceil = cpu_ceilings();
  if (w.bytes > 0) {
    state.SetBytesProcessed(
        static_cast<std::int64_t>(w.bytes * static_cast<double>(state.iterations())));
    if (w.memory_bound && ceil.triad_bytes_per_second > 0)
      state.counters["bw_frac"] =
          C(w.bytes / ceil.triad_bytes_per_second, C::kIsIterationInvariantRate);
  }
  if (w.dense_flops > 0) {
    state.counters["useful_FLOPS"] = C(w.useful_flops, C::kIsIterationInvariantRate);
    state.counters["dense_FLOPS"] = C(w.dense_flops, C::kIsIterationInvariantRate);
    state.counters["visible_frac"] = C(w.useful_flops / w.dense_flops);
    if (ceil.fma_flops > 0)
      state.counters["fma_frac"] = C(w.useful_flops / ceil.fma_flops, C::kIsIterationInvariantRate);
  }
}

// ---- rows -----------------------------------------------------------------------------------

benchmark::internal::Benchmark* add_cpu(const std::string& name,
                                        std::function<void(benchmark::State&)> fn) {
  return add(name, std::move(fn), /*manual_time=*/false)->UseRealTime();
}

// ---- the device ---------------------------------------------------------------------------------

namespace {

class CpuMask final : public KernelMask {
 public:
  explicit CpuMask(const MaskSpec& spec) : flat_(spec) { view_ = flat_.view(); }

 private:
  FlatMask flat_;
};

class CpuHarness final : public DeviceHarness {
 public:
  std::string unavailable() const override { return ""; }
  void* allocate(std::size_t bytes) const override {
    if (bytes == 0) return nullptr;
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p) const override { std::free(p); }
  bool host_memory() const override { return true; }
  void memset(void* p, int value, std::size_t bytes) const override {
    std::memset(p, value, bytes);
  }
  void upload(void* device, const void* host, std::size_t bytes) const override {
    std::memcpy(device, host, bytes);
  }
  void download(void* host, const void* device, std::size_t bytes) const override {
    std::memcpy(host, device, bytes);
  }
  void synchronize() const override {}
  void fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo,
                    double hi) const override {
    cpu_fill_uniform(p, t, n, seed, lo, hi);
  }
  void fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                   std::int64_t ignore_index, std::uint64_t seed) const override {
    cpu_fill_labels(p, n, V, ignore_frac, ignore_index, seed);
  }
  void fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi,
                std::uint64_t seed) const override {
    cpu_fill_ids(p, n, lo, hi, seed);
  }
  std::unique_ptr<KernelMask> mask(const MaskSpec& spec) const override {
    return std::make_unique<CpuMask>(spec);
  }
  benchmark::internal::Benchmark* add(const std::string& name,
                                      std::function<void(benchmark::State&)> fn) const override {
    return add_cpu(name, std::move(fn));
  }
  void warm_up(const std::function<void()>& run) const override { run(); }
  void time(benchmark::State& state, const std::function<void()>& run) const override {
    for (auto _ : state) run();
  }
  void set_counters(benchmark::State& state, const Work& w) const override {
    set_cpu_counters(state, w);
  }
  std::string kernels_note() const override {
    return "maskcheck::cpu (" + cpu::simd_target() + ", " + std::to_string(cpu::max_threads()) +
           " threads)";
  }
};

const CpuHarness kCpu;
[[maybe_unused]] const int kCpuAdded = add_device(Device::cpu, &kCpu);

}  // namespace

}  // namespace maskcheck::bench
