// Between the CPU attention kernels (not part of the kernels' interface).
#pragma once

#include "maskcheck/kernels/cpu.hpp"

namespace maskcheck::cpu::detail {

// attention_forward's pass with the statistics the backward recomputes P from, out in f32 (t is
// the storage of q, k, v): per row (B, H, Lq) row_max = the max over the visible keys of
// sign(scale) * <q_i, k_j> (raw dots, no scale: exact differences near the max) and row_sum =
// sum_j 2^((dot_j - row_max) * |scale| * log2(e)), so that p_ij = 2^((dot_ij - row_max) * c) /
// row_sum; -inf and 0 for a row without a visible key. Nothing when B, H, Lq or D is 0.
void attention_forward_stats(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, float* out, float* row_max,
                             float* row_sum);

}  // namespace maskcheck::cpu::detail
