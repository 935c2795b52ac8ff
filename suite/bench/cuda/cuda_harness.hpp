// CUDA timing for maskcheck_bench: the DeviceHarness of Device::cuda. Everything runs on the
// legacy default stream (stream 0), which is also LibTorch's current stream unless someone
// changes it, so that events bracket maskcheck's kernels and the torch peers alike.
//
// A timed iteration: L2 flush (cudaMemsetAsync over 2x the L2 size, outside the events), event,
// launch, event, wait; SetIterationTime(elapsed) with UseManualTime. Three warm-up launches come
// first, and every row checks its result once before timing (see check.hpp). Inputs are
// generated on the device (fill.cu).
//
// Counters (set_cuda_counters):
//   bytes_per_second  minimal bytes (visible inputs read once, outputs written once) per second;
//   bw_frac           memory-bound rows: that rate over the device-to-device copy bandwidth;
//   useful_TFLOPS     attention: 4 D per visible (q, k) pair and head, per second;
//   dense_TFLOPS      attention: 4 D Lq Lk per head, per second; visible_frac their ratio.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <functional>
#include <string>

#include "../harness.hpp"
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

// The measured device-to-device copy bandwidth in bytes/s (0 until the ceiling provider set it).
double copy_bandwidth();
void set_copy_bandwidth(double bytes_per_second);
void set_cuda_counters(benchmark::State& state, const Work& w);

}  // namespace maskcheck::bench
