// The FMA peak probe: every OpenMP thread runs 12 independent chains of Highway MulAdd on full
// f32 vectors (12 >= FMA latency x FMA ports on current x86 cores: 4 x 2, so the ports never
// wait; 12 + 2 constants still fit AVX2's 16 registers), compiled for every Highway target and
// dispatched at run time to the best one this CPU supports, as the kernels are. FLOPs: 2 per lane
// per FMA. The chains x <- x * m + c converge to c / (1 - m) and stay normal numbers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/fma_probe.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
//
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <cstdint>
#include <string>

HWY_BEFORE_NAMESPACE();
namespace maskcheck::bench::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Runs `iterations` x 12 FMAs on one thread; returns their FLOPs and leaves a checksum in *sink
// so that nothing is optimized away.
double FmaChains(std::int64_t iterations, float seed, float* sink, const char** target) {
  const hn::ScalableTag<float> d;
  const auto m = hn::Set(d, 0.9999f);
  const auto c = hn::Set(d, 1e-4f);
  auto x0 = hn::Set(d, seed), x1 = hn::Set(d, seed + 0.01f), x2 = hn::Set(d, seed + 0.02f);
  auto x3 = hn::Set(d, seed + 0.03f), x4 = hn::Set(d, seed + 0.04f), x5 = hn::Set(d, seed + 0.05f);
  auto x6 = hn::Set(d, seed + 0.06f), x7 = hn::Set(d, seed + 0.07f), x8 = hn::Set(d, seed + 0.08f);
  auto x9 = hn::Set(d, seed + 0.09f), x10 = hn::Set(d, seed + 0.1f), x11 = hn::Set(d, seed + 0.11f);
  for (std::int64_t i = 0; i < iterations; ++i) {
    x0 = hn::MulAdd(x0, m, c);
    x1 = hn::MulAdd(x1, m, c);
    x2 = hn::MulAdd(x2, m, c);
    x3 = hn::MulAdd(x3, m, c);
    x4 = hn::MulAdd(x4, m, c);
    x5 = hn::MulAdd(x5, m, c);
    x6 = hn::MulAdd(x6, m, c);
    x7 = hn::MulAdd(x7, m, c);
    x8 = hn::MulAdd(x8, m, c);
    x9 = hn::MulAdd(x9, m, c);
    x10 = hn::MulAdd(x10, m, c);
    x11 = hn::MulAdd(x11, m, c);
  }
  const auto s = hn::Add(
      hn::Add(hn::Add(hn::Add(x0, x1), hn::Add(x2, x3)), hn::Add(hn::Add(x4, x5), hn::Add(x6, x7))),
      hn::Add(hn::Add(x8, x9), hn::Add(x10, x11)));
  *sink = hn::GetLane(hn::SumOfLanes(d, s));
  *target = hwy::TargetName(HWY_TARGET);
  return 2.0 * 12.0 * static_cast<double>(hn::Lanes(d)) * static_cast<double>(iterations);
}

}  // namespace maskcheck::bench::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <omp.h>

#include "cpu_harness.hpp"

namespace maskcheck::bench {

HWY_EXPORT(FmaChains);

double fma_probe_once(std::int64_t iterations, std::string* target) {
  double flops = 0;
  float checksum = 0;
  const char* name = "";
#pragma omp parallel reduction(+ : flops, checksum)
  {
    float sink = 0;
    const char* t = "";
    flops += HWY_DYNAMIC_DISPATCH(FmaChains)(
        iterations, 1.0f + 0.001f * static_cast<float>(omp_get_thread_num()), &sink, &t);
    checksum += sink;
#pragma omp master
    name = t;
  }
  benchmark::DoNotOptimize(checksum);
  if (target) *target = name;
  return flops;
}

}  // namespace maskcheck::bench
#endif  // HWY_ONCE
