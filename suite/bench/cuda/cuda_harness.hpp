// CUDA timing for maskcheck_bench. Everything runs on the legacy default stream (stream 0), which
// is also LibTorch's current stream unless someone changes it, so that events bracket maskcheck's
// kernels and the torch peers alike.
//
// A timed iteration: L2 flush (cudaMemsetAsync over 2x the L2 size, outside the events), event,
// launch, event, wait; SetIterationTime(elapsed) with UseManualTime. Warm-up runs come first, and
// every benchmark checks its result once before timing (see check.hpp).
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "../check.hpp"
#include "maskcheck/kernels/cuda.hpp"

namespace maskcheck::bench {

inline constexpr cudaStream_t kStream = nullptr;

// Whether a CUDA device is usable (asked once); otherwise why not ("no CUDA device: ...").
bool cuda_ready(std::string* why = nullptr);
// SkipWithError(why) and false when there is no device.
bool require_cuda(benchmark::State& state);

// Runs `launch` n times and waits.
void warm_up(const std::function<void()>& launch, int n = 3);
// The benchmark loop described above.
void time_cuda(benchmark::State& state, const std::function<void()>& launch);

// Device -> host copies of raw storage (synchronous).
HostTensor download(const void* device, DType t, std::int64_t n);
template <class T>
std::vector<T> download_vector(const void* device, std::int64_t n) {
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0)
    cuda::check(cudaMemcpy(v.data(), device, v.size() * sizeof(T), cudaMemcpyDeviceToHost),
                "download");
  return v;
}

// The body every CUDA benchmark shares: skip without a device; otherwise get the prepared
// implementation (built and checked once per case by `prepare`, which returns the launch or
// throws), then warm up and time it. An exception becomes SkipWithError with its message.
struct Prepared {
  std::function<void()> launch;
  CheckOutcome check;
  std::string label;  // shape and implementation notes for the console
  Work work;
  bool warmed = false;
};
void run_prepared(benchmark::State& state, const std::string& name, bool ours,
                  const std::function<Prepared&()>& prepare);

// The implementations of one case, built (and checked) on first use; a failed build is
// remembered so that the benchmark's later calls skip at once with the same message.
struct CaseImpls {
  std::map<std::string, Prepared> impls;
  std::map<std::string, std::string> failures;
  Prepared& get(const std::string& impl, const std::function<Prepared()>& build);
};

}  // namespace maskcheck::bench
