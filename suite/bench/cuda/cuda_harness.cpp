#include "cuda_harness.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>

#include "fill.hpp"

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

double g_copy_bandwidth = 0;

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

double copy_bandwidth() {
  return g_copy_bandwidth;
}

void set_copy_bandwidth(double bytes_per_second) {
  g_copy_bandwidth = bytes_per_second;
}

void set_cuda_counters(benchmark::State& state, const Work& w) {
  using C = benchmark::Counter;
  if (w.bytes > 0) {
    state.SetBytesProcessed(
        static_cast<std::int64_t>(w.bytes * static_cast<double>(state.iterations())));
    if (w.memory_bound && g_copy_bandwidth > 0)
      state.counters["bw_frac"] = C(w.bytes / g_copy_bandwidth, C::kIsIterationInvariantRate);
  }
  if (w.dense_flops > 0) {
    state.counters["useful_TFLOPS"] = C(w.useful_flops * 1e-12, C::kIsIterationInvariantRate);
    state.counters["dense_TFLOPS"] = C(w.dense_flops * 1e-12, C::kIsIterationInvariantRate);
    state.counters["visible_frac"] = C(w.useful_flops / w.dense_flops);
  }
}

// ---- the device ---------------------------------------------------------------------------------

namespace {

class CudaMask final : public KernelMask {
 public:
  explicit CudaMask(const MaskSpec& spec) : mask_(spec, kStream) { view_ = mask_.view(); }

 private:
  cuda::DeviceMask mask_;
};

class CudaHarness final : public DeviceHarness {
 public:
  std::string unavailable() const override {
    std::string why;
    return cuda_ready(&why) ? std::string() : why;
  }
  void* allocate(std::size_t bytes) const override {
    void* p = nullptr;
    if (bytes > 0) cuda::check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  }
  void deallocate(void* p) const override { cudaFree(p); }
  bool host_memory() const override { return false; }
  void memset(void* p, int value, std::size_t bytes) const override {
    cuda::check(cudaMemsetAsync(p, value, bytes, kStream), "memset");
    cuda::check(cudaStreamSynchronize(kStream), "memset");
  }
  void upload(void* device, const void* host, std::size_t bytes) const override {
    cuda::check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "upload");
  }
  void download(void* host, const void* device, std::size_t bytes) const override {
    cuda::check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "download");
  }
  void synchronize() const override { cuda::check(cudaDeviceSynchronize(), "synchronize"); }
  void fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo,
                    double hi) const override {
    bench::fill_uniform(p, t, n, seed, lo, hi, kStream);
    synchronize();
  }
  void fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                   std::int64_t ignore_index, std::uint64_t seed) const override {
    bench::fill_labels(p, n, V, ignore_frac, ignore_index, seed, kStream);
    synchronize();
  }
  void fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi,
                std::uint64_t seed) const override {
    bench::fill_ids(p, n, lo, hi, seed, kStream);
    synchronize();
  }
  std::unique_ptr<KernelMask> mask(const MaskSpec& spec) const override {
    return std::make_unique<CudaMask>(spec);
  }
  benchmark::internal::Benchmark* add(const std::string& name,
                                      std::function<void(benchmark::State&)> fn) const override {
    return bench::add(name, std::move(fn), /*manual_time=*/true);
  }
  void warm_up(const std::function<void()>& run) const override { bench::warm_up(run); }
  void time(benchmark::State& state, const std::function<void()>& run) const override {
    time_cuda(state, run);
  }
  void set_counters(benchmark::State& state, const Work& w) const override {
    set_cuda_counters(state, w);
  }
  std::string kernels_note() const override { return ""; }
};

const CudaHarness kCuda;
[[maybe_unused]] const int kCudaAdded = add_device(Device::cuda, &kCuda);

}  // namespace

}  // namespace maskcheck::bench
