// Threads and SIMD target reporting, dtype checks.
#include <omp.h>

#include <hwy/highway.h>
#include <hwy/targets.h>

#include "maskcheck/kernels/cpu.hpp"

namespace maskcheck::cpu {

int max_threads() {
  return omp_get_max_threads();
}

std::string simd_target() {
  const std::int64_t best = hwy::SupportedTargets() & HWY_TARGETS;
  // The lowest set bit is the best target compiled in and supported here.
  return hwy::TargetName(best & -best);
}

void require_cpu_dtype(DType t) {
  if (t != DType::f32 && t != DType::bf16)
    throw_invalid("dtype", std::string(to_string(t)), "the CPU kernels take f32 or bf16");
}

}  // namespace maskcheck::cpu
