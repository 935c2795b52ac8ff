// Between the CPU attention kernels (not part of the kernels' interface).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/predicate.hpp"

namespace maskcheck::cpu::detail {

// attention_forward's pass with the statistics the backward recomputes P from, out in f32 (t is
// the storage of q, k, v): per row (B, H, Lq) row_max = the max over the visible keys of
// sign(scale) * <q_i, k_j> (raw dots, no scale: exact differences near the max) and row_sum =
// sum_j 2^((dot_j - row_max) * |scale| * log2(e)), so that p_ij = 2^((dot_ij - row_max) * c) /
// row_sum; -inf and 0 for a row without a visible key. Nothing when B, H, Lq or D is 0.
void attention_forward_stats(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, float* out, float* row_max,
                             float* row_sum);

// The rows' keys as the kernels keep them, per row of a work item: the interval [lo, hi) and the
// attention sinks apart from it [slo, shi); (0, 0) when empty.
struct RowSpans {
  std::int64_t* lo;
  std::int64_t* hi;
  std::int64_t* slo;
  std::int64_t* shi;
};

// A row's keys intersected with [clip_begin, clip_end) (a split-KV chunk); when the window is
// clipped away and its sinks are not, the sinks become the interval (so that a row sees a key of
// the chunk iff hi > lo).
inline RowKeys clip_row(RowKeys rk, std::int64_t clip_begin, std::int64_t clip_end) {
  auto clip = [&](KeyRange k) {
    k.begin = std::max(k.begin, clip_begin);
    k.end = std::min(k.end, clip_end);
    return k.empty() ? KeyRange{0, 0} : k;
  };
  rk.keys = clip(rk.keys);
  rk.sinks = clip(rk.sinks);
  if (rk.keys.empty()) std::swap(rk.keys, rk.sinks);
  return rk;
}

// Keeps row i's keys in rs; returns their TileBounds.
inline TileBounds keep_row(const RowSpans& rs, std::int64_t i, const RowKeys& rk) {
  rs.lo[i] = rk.keys.empty() ? 0 : rk.keys.begin;
  rs.hi[i] = rk.keys.empty() ? 0 : rk.keys.end;
  rs.slo[i] = rk.sinks.empty() ? 0 : rk.sinks.begin;
  rs.shi[i] = rk.sinks.empty() ? 0 : rk.sinks.end;
  return row_tile_bounds(rk);
}

// Whether row i sees a key of [a, z).
inline bool row_meets(const RowSpans& rs, std::int64_t i, std::int64_t a, std::int64_t z) {
  return (rs.hi[i] > rs.lo[i] && rs.lo[i] < z && rs.hi[i] > a) ||
         (rs.shi[i] > rs.slo[i] && rs.slo[i] < z && rs.shi[i] > a);
}

// The per-element test of a register block's rows r0 .. r0 + rn in a boundary tile: their
// intervals relative to the tile's first key `first`, clamped to [-1, bk + 1] (exact in float);
// (0, 0) for an empty one.
constexpr int kMaxR = 6;  // >= the register block rows of every SIMD target
struct RowLimits {
  float lo[kMaxR], hi[kMaxR], slo[kMaxR], shi[kMaxR];
};
inline RowLimits block_limits(const RowSpans& rs, std::int64_t r0, int rn, std::int64_t first,
                              std::int64_t bk) {
  RowLimits l{};
  auto rel = [&](std::int64_t k) {
    return static_cast<float>(std::clamp<std::int64_t>(k - first, -1, bk + 1));
  };
  for (int r = 0; r < rn; ++r) {
    const std::int64_t i = r0 + r;
    if (rs.hi[i] > rs.lo[i]) {
      l.lo[r] = rel(rs.lo[i]);
      l.hi[r] = rel(rs.hi[i]);
    }
    if (rs.shi[i] > rs.slo[i]) {
      l.slo[r] = rel(rs.slo[i]);
      l.shi[r] = rel(rs.shi[i]);
    }
  }
  return l;
}

}  // namespace maskcheck::cpu::detail
