#include "cpu_harness.hpp"

#include <omp.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace maskcheck::bench {

namespace {

CpuCeilings g_ceilings;
std::map<DType, std::string> g_torch_unusable;

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

}  // namespace

// ---- memory ---------------------------------------------------------------------------------

CpuBuffer::CpuBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  p_ = std::aligned_alloc(64, rounded);
  if (p_ == nullptr) throw std::bad_alloc();
}

CpuBuffer::CpuBuffer(CpuBuffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

CpuBuffer& CpuBuffer::operator=(CpuBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = std::exchange(o.p_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

CpuBuffer::~CpuBuffer() {
  std::free(p_);
}

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

void cpu_zero(void* p, std::size_t bytes) {
  auto* c = static_cast<char*>(p);
  const std::int64_t chunks = static_cast<std::int64_t>((bytes + (1 << 20) - 1) >> 20);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < chunks; ++i) {
    const std::size_t begin = static_cast<std::size_t>(i) << 20;
    std::memset(c + begin, 0, std::min<std::size_t>(std::size_t{1} << 20, bytes - begin));
  }
}

HostTensor host_copy(const void* p, DType t, std::int64_t n) {
  HostTensor h;
  h.t = t;
  h.bytes.resize(static_cast<std::size_t>(n) * dtype_bytes(t));
  if (!h.bytes.empty()) std::memcpy(h.bytes.data(), p, h.bytes.size());
  return h;
}

double value_at(const void* p, DType t, std::int64_t i) {
  return dispatch_dtype(t, [&](auto tag) {
    using S = decltype(tag);
    S v;
    std::memcpy(static_cast<void*>(&v), static_cast<const char*>(p) + i * sizeof(S), sizeof(S));
    return to_double(v);
  });
}

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

std::string torch_cpu_unusable(DType t) {
  const auto it = g_torch_unusable.find(t);
  return it == g_torch_unusable.end() ? std::string() : it->second;
}

void set_torch_cpu_unusable(DType t, const std::string& why) {
  g_torch_unusable[t] = why;
}

// ---- counters -------------------------------------------------------------------------------

void set_cpu_counters(benchmark::State& state, const CpuWork& w) {
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

void run_cpu(benchmark::State& state, const std::string& name, bool ours,
             const std::function<CpuPrepared&()>& prepare) {
  // Errors are recorded once per row, not once per call of the benchmark function.
  static std::set<std::string> reported;
  CpuPrepared* p = nullptr;
  try {
    p = &prepare();
  } catch (const std::exception& e) {
    if (reported.insert(name).second) record_error(name, e.what(), ours);
    state.SkipWithError(e.what());
    return;
  }
  if (!p->check.ok) {
    const std::string msg = "mismatch: " + p->check.message;
    state.SkipWithError(msg.c_str());
    return;
  }
  try {
    if (!p->warmed) {
      p->run();
      p->warmed = true;
    }
    for (auto _ : state) p->run();
  } catch (const std::exception& e) {
    if (reported.insert(name).second) record_error(name, e.what(), ours);
    state.SkipWithError(e.what());
    return;
  }
  set_cpu_counters(state, p->work);
  // Google Benchmark writes NaN counters as bare NaN, which is not JSON: leave them out.
  if (std::isfinite(p->check.max_abs_err)) state.counters["check_max_err"] = p->check.max_abs_err;
  state.SetLabel(p->label);
}

CpuPrepared& CpuCaseImpls::get(const std::string& impl, const std::function<CpuPrepared()>& build) {
  if (auto f = failures.find(impl); f != failures.end()) throw std::runtime_error(f->second);
  if (auto it = impls.find(impl); it != impls.end()) return it->second;
  try {
    return impls.emplace(impl, build()).first->second;
  } catch (const std::exception& e) {
    failures[impl] = e.what();
    throw;
  }
}

std::string check_label(const std::string& shape, const std::string& notes, const CheckOutcome& c) {
  return shape + (notes.empty() ? "" : " | " + notes) + " | check: " + c.message;
}

}  // namespace maskcheck::bench
