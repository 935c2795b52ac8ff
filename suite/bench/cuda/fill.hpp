// Deterministic random inputs generated on the device (never time on zeros): every value is a
// function of (seed, index) only, so a rerun with the same MASKCHECK_SEED sees the same inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "maskcheck/reference/dtype.hpp"

namespace maskcheck::bench {

// n values uniform in [lo, hi), stored in dtype t (f32, f16, bf16, f64).
void fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo, double hi,
                  cudaStream_t stream);
// n labels uniform in [0, V), each replaced by ignore_index with probability ignore_frac.
void fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                 std::int64_t ignore_index, std::uint64_t seed, cudaStream_t stream);
// n token ids uniform in [lo, hi).
void fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi, std::uint64_t seed,
              cudaStream_t stream);

}  // namespace maskcheck::bench
