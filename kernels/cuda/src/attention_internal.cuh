// What the CUDA attention forward (attention.cu) and backward (attention_backward.cu) share: the
// forward's per-row statistics that the backward starts from, and the one dot product of the fp32
// kernels, so that the backward's scores are bit for bit the forward's.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "maskcheck/kernels/cuda.hpp"

namespace maskcheck::cuda::detail {

// Per-row statistics of the forward for the backward, each [B, H, Lq] fp32 (padded layout):
//   m      the row's top key (keys are sign(scale) q.k, exp2_scale.hpp),
//   inv_l  1 / l, l = sum_j 2^exponent(key_j, m) over the row's visible keys,
//   delta  <dout_i, out_i> with out_i the forward's output in fp32 (before rounding to the dtype).
// A row without a visible key gets m = inv_l = delta = 0, so that its weights 2^exponent(0, 0) *
// inv_l are 0 when its q and dout are read as zeros.
struct RowStats {
  const void* dout = nullptr;  // [B, H, Lq, D] in the storage dtype
  float* m = nullptr;
  float* inv_l = nullptr;
  float* delta = nullptr;
};

// The forward's kernels (the same scores, the same exponents, the same order of accumulation) with
// the statistics written instead of out and lse.
void attention_forward_stats(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, const RowStats& stats,
                             cudaStream_t stream);

// The largest head dim of the attention kernels.
inline constexpr int kMaxHeadDim = 256;

// The kernels' limits on the batch, heads and head dim (InvalidArgument naming the field).
void check_attention_limits(std::int64_t B, std::int64_t H, std::int64_t D);

// f(std::integral_constant<int, D_PAD>{}) with the tensor-core kernels' padded head dim for
// D <= 256: 32, 64, 128 or 256.
template <class F>
void dispatch_head_dim(std::int64_t D, F&& f) {
  if (D <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (D <= 64) {
    f(std::integral_constant<int, 64>{});
  } else if (D <= 128) {
    f(std::integral_constant<int, 128>{});
  } else {
    f(std::integral_constant<int, 256>{});
  }
}

// Lane `lane`'s share of sum_d x_d * (sign * row[d]) over d = lane + 32 u < D (x held by the lanes
// as x[u]), fma'd in the order of u, then summed over the warp by the xor butterfly: every warp
// of every fp32 kernel forms a score this way, so the same (q, k) pair gives the same bits
// whichever kernel holds which operand in registers (fmaf(a, b, c) = fmaf(b, a, c) exactly).
template <int N, class T>
__device__ __forceinline__ float warp_dot(const float (&x)[N], const T* row, int lane,
                                          std::int64_t D, float sign) {
  float dot = 0.f;
#pragma unroll
  for (int u = 0; u < N; ++u) {
    const std::int64_t d = lane + 32 * u;
    if (d < D) dot = fmaf(x[u], sign * to_float(row[d]), dot);
  }
  return warp_sum(dot);
}

}  // namespace maskcheck::cuda::detail
