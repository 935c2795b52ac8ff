// The machine: device description in the benchmark context, and the ceilings measured in this
// process. The copy-bandwidth probe (cudaMemcpyAsync device to device, bytes read + written, best
// of 10 after warm-up) runs before any benchmark; memory-bound rows report bw_frac against it.
// The "ceiling/cuda/d2d_copy/..." rows re-measure it with the same statistics as every other row
// (named "ceiling/d2d_copy/..." before every device's names began with the device).
#include <algorithm>
#include <cstdio>
#include <string>

#include "../harness.hpp"
#include "cuda_harness.hpp"

namespace maskcheck::bench {

namespace {

// Bytes copied by the probe: 1 GiB, or 1/16 of the device memory if smaller; 64 MiB under CI.
std::size_t probe_bytes(const cuda::DeviceInfo& info) {
  if (ci()) return std::size_t{64} << 20;
  return std::min<std::size_t>(std::size_t{1} << 30, info.memory_bytes / 16);
}

double measure_copy_bandwidth(std::size_t bytes) {
  cuda::DeviceBuffer src(bytes), dst(bytes);
  cuda::check(cudaMemsetAsync(src.get(), 0x3c, bytes, kStream), "memset");
  cudaEvent_t a, b;
  cuda::check(cudaEventCreate(&a), "cudaEventCreate");
  cuda::check(cudaEventCreate(&b), "cudaEventCreate");
  float best = 0;
  for (int i = 0; i < 12; ++i) {
    cuda::check(cudaEventRecord(a, kStream), "cudaEventRecord");
    cuda::check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, kStream),
                "copy");
    cuda::check(cudaEventRecord(b, kStream), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    cuda::check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    if (i >= 2 && (best == 0 || ms < best)) best = ms;  // the first two are warm-up
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 2.0 * static_cast<double>(bytes) / (static_cast<double>(best) * 1e-3);
}

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

void cuda_context() {
  std::string why;
  if (!cuda_ready(&why)) {
    benchmark::AddCustomContext("cuda", "unavailable (" + why + ")");
    return;
  }
  try {
    const cuda::DeviceInfo d = cuda::device_info();
    auto version = [](int v) {
      return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
    };
    benchmark::AddCustomContext("cuda.device", d.name);
    // Only where the CUDA rows run: a CPU-only file used to carry this beside cpu.timing.
    benchmark::AddCustomContext(
        "cuda.timing",
        "CUDA events around each launch, manual time; L2 flushed (memset of 2x L2) before every "
        "iteration outside the events; 3 warm-up launches; outputs checked before timing");
    benchmark::AddCustomContext("cuda.compute_capability",
                                std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
    benchmark::AddCustomContext("cuda.sm_count", std::to_string(d.sm_count));
    benchmark::AddCustomContext("cuda.driver", version(d.driver_version));
    benchmark::AddCustomContext("cuda.runtime", version(d.runtime_version));
    benchmark::AddCustomContext("cuda.sm_clock_mhz", std::to_string(d.sm_clock_khz / 1000));
    benchmark::AddCustomContext("cuda.memory_clock_mhz", std::to_string(d.memory_clock_khz / 1000));
    benchmark::AddCustomContext("cuda.memory_bus_bits", std::to_string(d.memory_bus_bits));
    benchmark::AddCustomContext("cuda.memory_gib",
                                fixed(static_cast<double>(d.memory_bytes) / (1 << 30), 1));
    benchmark::AddCustomContext("cuda.l2_mib",
                                fixed(static_cast<double>(d.l2_bytes) / (1 << 20), 1));
    const std::size_t bytes = probe_bytes(d);
    const double bw = measure_copy_bandwidth(bytes);
    set_copy_bandwidth(bw);
    benchmark::AddCustomContext("cuda.copy_bandwidth_gbps", fixed(bw * 1e-9, 1));
    benchmark::AddCustomContext("cuda.copy_probe", "cudaMemcpyAsync D2D of " +
                                                       std::to_string(bytes >> 20) +
                                                       " MiB, bytes read + written, best of 10");
  } catch (const std::exception& e) {
    benchmark::AddCustomContext("cuda", std::string("error (") + e.what() + ")");
  }
}

void register_ceilings() {
  const std::size_t mib = ci() ? 64 : 1024;
  const std::string name = "ceiling/cuda/d2d_copy/" + std::to_string(mib) + "MiB";
  add(name, [name, mib](benchmark::State& state) {
    if (!require_cuda(state)) return;
    try {
      const std::size_t bytes = mib << 20;
      cuda::DeviceBuffer src(bytes), dst(bytes);
      cuda::check(cudaMemsetAsync(src.get(), 0x3c, bytes, kStream), "memset");
      auto launch = [&] {
        cuda::check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, kStream),
                    "copy");
      };
      warm_up(launch);
      time_cuda(state, launch);
      Work w;
      w.bytes = 2.0 * static_cast<double>(bytes);
      w.memory_bound = true;
      set_cuda_counters(state, w);
      state.SetLabel("cudaMemcpyAsync device to device, bytes read + written");
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
    }
  });
}

}  // namespace

MASKCHECK_BENCH_CONTEXT(cuda, cuda_context);
MASKCHECK_BENCH_SUITE(ceiling_cuda, register_ceilings);

}  // namespace maskcheck::bench
