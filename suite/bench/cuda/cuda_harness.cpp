#include "cuda_harness.hpp"

#include <cmath>

#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

namespace maskcheck::bench {

namespace {

struct Timing {
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda::DeviceBuffer flush;
};

Timing& timing() {
  static Timing t = [] {
    Timing x;
    cuda::check(cudaEventCreate(&x.start), "cudaEventCreate");
    cuda::check(cudaEventCreate(&x.stop), "cudaEventCreate");
    const cuda::DeviceInfo info = cuda::device_info();
    x.flush = cuda::DeviceBuffer(std::max<std::size_t>(2 * info.l2_bytes, 1 << 20));
    return x;
  }();
  return t;
}

}  // namespace

bool cuda_ready(std::string* why) {
  static std::string reason;
  static const bool ok = cuda::device_available(&reason);
  if (!ok && why) *why = reason;
  return ok;
}

bool require_cuda(benchmark::State& state) {
  std::string why;
  if (cuda_ready(&why)) return true;
  state.SkipWithError(why.c_str());
  return false;
}

void warm_up(const std::function<void()>& launch, int n) {
  for (int i = 0; i < n; ++i) launch();
  cuda::check(cudaDeviceSynchronize(), "warm-up");
}

void time_cuda(benchmark::State& state, const std::function<void()>& launch) {
  Timing& t = timing();
  for (auto _ : state) {
    cuda::check(cudaMemsetAsync(t.flush.get(), static_cast<int>(state.iterations() & 0xff),
                                t.flush.bytes(), kStream),
                "L2 flush");
    cuda::check(cudaEventRecord(t.start, kStream), "cudaEventRecord");
    launch();
    cuda::check(cudaEventRecord(t.stop, kStream), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(t.stop), "cudaEventSynchronize");
    float ms = 0;
    cuda::check(cudaEventElapsedTime(&ms, t.start, t.stop), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
}

HostTensor download(const void* device, DType t, std::int64_t n) {
  HostTensor h;
  h.t = t;
  h.bytes.resize(static_cast<std::size_t>(n) * dtype_bytes(t));
  if (!h.bytes.empty())
    cuda::check(cudaMemcpy(h.bytes.data(), device, h.bytes.size(), cudaMemcpyDeviceToHost),
                "download");
  return h;
}

void run_prepared(benchmark::State& state, const std::string& name, bool ours,
                  const std::function<Prepared&()>& prepare) {
  if (!require_cuda(state)) return;
  // Errors are recorded once per benchmark, not once per call of the benchmark function.
  static std::set<std::string> reported;
  Prepared* p = nullptr;
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
      warm_up(p->launch);
      p->warmed = true;
    }
    time_cuda(state, p->launch);
  } catch (const std::exception& e) {
    if (reported.insert(name).second) record_error(name, e.what(), ours);
    state.SkipWithError(e.what());
    return;
  }
  set_counters(state, p->work);
  // Google Benchmark writes NaN counters as bare NaN, which is not JSON: leave them out.
  if (std::isfinite(p->check.max_abs_err)) state.counters["check_max_err"] = p->check.max_abs_err;
  state.SetLabel(p->label);
}

Prepared& CaseImpls::get(const std::string& impl, const std::function<Prepared()>& build) {
  if (auto f = failures.find(impl); f != failures.end()) throw std::runtime_error(f->second);
  if (auto it = impls.find(impl); it != impls.end()) return it->second;
  try {
    return impls.emplace(impl, build()).first->second;
  } catch (const std::exception& e) {
    failures[impl] = e.what();
    throw;
  }
}

}  // namespace maskcheck::bench
