// Masked attention backward on the CPU, flash-style, fp32 arithmetic, deterministic.
//   q, dout, dq: [B, H, Lq, D]; k, v, dk, dv: [B, Hkv, Lk, D] (f32 or bf16 storage). The gradients
//   of out = softmax(q k^T * scale + mask) v (reference/attention.hpp's attention_backward): per
//   row i and visible key j, p_ij from the recomputed scores, dp_ij = <dout_i, v_j>,
//   delta_i = sum_j p_ij dp_ij = <dout_i, out_i>, ds_ij = p_ij (dp_ij - delta_i);
//   dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dout_i, summed
//   over the query heads of a kv head. Each row's visible keys are row_keys(mask, b, i) (an
//   interval and its sinks) of the one predicate; masks are never materialized, padded inputs are
//   never read, keys no row sees get dk = dv = +0.0 and rows that see no key dq = +0.0.
// Complexity: 4 D FLOPs per visible (q, k) pair in the forward pass (statistics and out), 10 D in
//   the main pass (the FlashAttention-2 count: S, dP, dV, dK, dQ), plus the masked remainder of
//   the boundary tiles; O((Lq + Lk) D) memory traffic per head beyond that.
// Versions:
//   v1  (21bdf95) two passes over (row, key) pairs with per-pair dots: 0.15 of the FMA peak.
//   v2  this file: tiles and register-blocked micro-kernels (attention-inl.h, the forward's):
//       1. the forward kernel (attention_forward_stats) gives each row's max m_i, sum l_i (the
//          exponents relative to the max, as the forward: huge scores stay exact) and out_i;
//       2. rows: sign(scale) q and dout in f32 (zero rows where no key is visible, so that a
//          tile needs no test for them), delta_i = <dout_i, out_i>, 1 / l_i;
//       3. K^T, V^T and K of the valid keys packed in key tiles of kBk keys (zeros past the
//          valid range: padding is never read);
//       4. OpenMP over (sequence, kv head, chunk of query rows), heaviest first: per key tile
//          of the chunk's span, per query head of the group and query tile of kBq rows that
//          sees it: P = 2^((Q K^T - m) c) / l and dS = P (dO V^T - delta) |scale| per register
//          block of rows (tiles and blocks the predicate's TileBounds skip are never touched,
//          the per-element test only where a row's interval ends inside the tile), dQ += dS K,
//          and for the key tile dV += P^T dO, dK += dS^T Q over the rows that see it;
//       5. the chunks' dK and dV added in chunk order.
//       Chunks have a size fixed by the problem (not by the thread count), every output element
//       is written by one work item in a fixed order, and the chunks are added in order: the
//       result is bitwise the same across runs and thread counts.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention_backward.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h re-includes this file once per SIMD target; hwy/highway.h must follow it.
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "attention_internal.hpp"
#include "maskcheck/kernels/cpu.hpp"
// The shared tile geometry and SIMD pieces (after foreach_target.h: once per target).
#include "attention-inl.h"

#ifndef MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED
#define MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED
namespace maskcheck::cpu::attn_bwd {

// Query rows per chunk (a work item's rows, of every query head of its kv head): at least
// kMinChunk, and at most kMaxChunks chunks per sequence, so that the partial dK and dV of the
// chunks after the first cost at most (kMaxChunks - 1) times dK and dV.
constexpr std::int64_t kMinChunk = 512;
constexpr std::int64_t kMaxChunks = 4;

// One chunk of query rows [qa, qb) of sequence b, and the key tiles [kt0, kt1) it sees.
struct Item {
  std::int64_t b = 0, qa = 0, qb = 0, kt0 = 0, kt1 = 0;
  std::int64_t part = -1;  // chunks after the first: offset in Problem::part of kv head 0
  double work = 0;         // visible (q, k) pairs per query head: the schedule's order
};

// Everything a pass reads; built once per call.
struct Problem {
  const void* k = nullptr;  // storage dtype
  const void* v = nullptr;
  bool bf16 = false;
  float* q = nullptr;      // [B, H, Lq, dp]: sign(scale) q; zero rows without a visible key
  float* g = nullptr;      // [B, H, Lq, dp]: dout, the same zero rows
  float* m = nullptr;      // [B, H, Lq]: the forward's row max (0 for a row without a key)
  float* inv_l = nullptr;  // 1 / the forward's row sum (0 for a row without a key)
  float* delta = nullptr;  // <dout_i, out_i> (0 for a row without a key)
  float* dq = nullptr;     // [B, H, Lq, dp]: |scale| sum_j ds_ij k_j (the sign at the store)
  float* dk = nullptr;     // [B, Hkv, Lk, dp]: the chunks' sum
  float* dv = nullptr;
  float* part = nullptr;  // chunks after the first: [Hkv, kt1 - kt0, 2 (dk, dv), kBk, dp]
  float* pack = nullptr;  // per (b, kv head): K^T tiles [D, bk], V^T tiles, K tiles [bk, dp]
  const std::int64_t* slab = nullptr;  // [B]: offset in pack of sequence b's kv head 0
  const Item* items = nullptr;         // per sequence in chunk order; first_item[b] indexes
  const std::int64_t* first_item = nullptr;
  MaskView mask;
  std::int64_t H = 1, Hkv = 1, group = 1, D = 1, dp = 1, bk = 1, bq = 1;
  float qsign = 1;       // sign of the scale
  float exp2_scale = 1;  // |scale| * log2(e)
  float abs_scale = 1;
};

inline std::int64_t tiles_of(const Problem& pr, std::int64_t k_len) {
  return attn::ceil_div(k_len, pr.bk);
}
// Floats per kv head of a sequence with `tiles` key tiles.
inline std::int64_t slab_stride(const Problem& pr, std::int64_t tiles) {
  return tiles * pr.bk * (2 * pr.D + pr.dp);
}

// Per-thread buffers (sizes from the geometry and the longest chunk).
struct Scratch {
  std::int64_t* lo = nullptr;  // [chunk] the chunk rows' visible key intervals [lo, hi)
  std::int64_t* hi = nullptr;
  std::int64_t* slo = nullptr;  // [chunk] their attention sinks apart from it [slo, shi)
  std::int64_t* shi = nullptr;
  TileBounds* blk = nullptr;   // [chunk / bq, blocks per tile]: per register block of rows
  TileBounds* tile = nullptr;  // [chunk / bq]: per query tile
  float* p = nullptr;          // [bq, bk]: P of the current (query tile, key tile)
  float* ds = nullptr;         // [bq, bk]: dS, times |scale|
  float* dk = nullptr;         // [bk, dp]: the key tile's dK, dV over the item's rows
  float* dv = nullptr;
};

}  // namespace maskcheck::cpu::attn_bwd
#endif  // MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::attn_bwd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace maskcheck::cpu::attn::HWY_NAMESPACE;  // NOLINT: the shared micro-kernels
using maskcheck::cpu::attn::ceil_div;

std::int64_t Lanes() {
  return kN;
}
std::int64_t KeyTile() {
  return kBk;
}
std::int64_t QueryTile() {
  return kBq;
}
std::int64_t RowBlock() {
  return kR;
}

// P of RN rows and KC vectors of keys of a key tile: 2^((q k^T - m) c) / l, 0 outside each row's
// keys (lim: [lo, hi) and the sinks [slo, shi), relative to the first key passed) when MASKED. Rows
// without a visible key come as q = 0, m = 0, 1/l = 0: P = 0 without a test.
//   q: [RN, row stride dp], kt: [D, row stride kBk]; p: [RN, row stride kBk].
template <int RN, bool MASKED, int KC>
HWY_NOINLINE void BlockP(const float* HWY_RESTRICT q, std::int64_t dp, std::int64_t D,
                         const float* HWY_RESTRICT kt, const detail::RowLimits* lim,
                         const float* HWY_RESTRICT m, const float* HWY_RESTRICT inv_l,
                         float exp2_scale, float* HWY_RESTRICT p) {
  const DF df;
  VF s[RN][KC];
  Scores<RN, KC>(q, dp, D, kt, s);
  const VF c2 = hn::Set(df, exp2_scale);
  for (int r = 0; r < RN; ++r) {
    const VF vm = hn::Set(df, m[r]), vl = hn::Set(df, inv_l[r]);
    const VF vlo = hn::Set(df, MASKED ? lim->lo[r] : 0.0f);
    const VF vhi = hn::Set(df, MASKED ? lim->hi[r] : 0.0f);
    const VF vslo = hn::Set(df, MASKED ? lim->slo[r] : 0.0f);
    const VF vshi = hn::Set(df, MASKED ? lim->shi[r] : 0.0f);
    for (int c = 0; c < KC; ++c) {
      // Masked lanes may overflow or be NaN (garbage-free inputs, but any finite score): the
      // select drops them.
      VF e = hn::Mul(Exp2(df, hn::Mul(hn::Sub(s[r][c], vm), c2)), vl);
      if constexpr (MASKED) {
        const VF key = hn::Iota(df, static_cast<float>(c * kN));
        e = hn::IfThenElseZero(hn::Or(hn::And(hn::Ge(key, vlo), hn::Lt(key, vhi)),
                                      hn::And(hn::Ge(key, vslo), hn::Lt(key, vshi))),
                               e);
      }
      hn::Store(e, df, p + r * kBk + c * kN);
    }
  }
}

// dS of the same rows and keys: P (dout v^T - delta) |scale|, 0 outside their keys when MASKED.
//   g: [RN, row stride dp], vt: [D, row stride kBk]; p, ds: [RN, row stride kBk].
template <int RN, bool MASKED, int KC>
HWY_NOINLINE void BlockDS(const float* HWY_RESTRICT g, std::int64_t dp, std::int64_t D,
                          const float* HWY_RESTRICT vt, const detail::RowLimits* lim,
                          const float* HWY_RESTRICT delta, float abs_scale,
                          const float* HWY_RESTRICT p, float* HWY_RESTRICT ds) {
  const DF df;
  VF s[RN][KC];
  Scores<RN, KC>(g, dp, D, vt, s);
  const VF sc = hn::Set(df, abs_scale);
  for (int r = 0; r < RN; ++r) {
    const VF vd = hn::Set(df, delta[r]);
    const VF vlo = hn::Set(df, MASKED ? lim->lo[r] : 0.0f);
    const VF vhi = hn::Set(df, MASKED ? lim->hi[r] : 0.0f);
    const VF vslo = hn::Set(df, MASKED ? lim->slo[r] : 0.0f);
    const VF vshi = hn::Set(df, MASKED ? lim->shi[r] : 0.0f);
    for (int c = 0; c < KC; ++c) {
      const VF pv = hn::Load(df, p + r * kBk + c * kN);
      VF e = hn::Mul(hn::Mul(pv, hn::Sub(s[r][c], vd)), sc);
      if constexpr (MASKED) {
        const VF key = hn::Iota(df, static_cast<float>(c * kN));
        e = hn::IfThenElseZero(hn::Or(hn::And(hn::Ge(key, vlo), hn::Lt(key, vhi)),
                                      hn::And(hn::Ge(key, vslo), hn::Lt(key, vshi))),
                               e);
      }
      hn::Store(e, df, ds + r * kBk + c * kN);
    }
  }
}

template <int RN>
struct PFull {
  template <class... A>
  static void run(A... a) {
    BlockP<RN, false, kC>(a...);
  }
};
template <int RN>
struct DSFull {
  template <class... A>
  static void run(A... a) {
    BlockDS<RN, false, kC>(a...);
  }
};
// Boundary tiles: only the kc vectors of keys some row of the block sees.
template <int RN>
struct PMasked {
  template <class... A>
  static void run(int kc, A... a) {
    static_assert(kC == 4, "PMasked dispatches up to 4 vectors of keys");
    switch (kc) {
      case 1:
        return BlockP<RN, true, 1>(a...);
      case 2:
        return BlockP<RN, true, 2>(a...);
      case 3:
        return BlockP<RN, true, 3>(a...);
      default:
        return BlockP<RN, true, 4>(a...);
    }
  }
};
template <int RN>
struct DSMasked {
  template <class... A>
  static void run(int kc, A... a) {
    switch (kc) {
      case 1:
        return BlockDS<RN, true, 1>(a...);
      case 2:
        return BlockDS<RN, true, 2>(a...);
      case 3:
        return BlockDS<RN, true, 3>(a...);
      default:
        return BlockDS<RN, true, 4>(a...);
    }
  }
};
// dQ += dS K (rows of dS times key rows).
template <int RN>
struct RowsTimesKeys {
  template <class... A>
  static void run(A... a) {
    AccumulateAll<RN, false, false>(a...);
  }
};
// dV += P^T dO and dK += dS^T Q (columns of P times query rows).
template <int RN>
struct KeysTimesRows {
  template <class... A>
  static void run(A... a) {
    AccumulateAll<RN, false, true>(a...);
  }
};

// Key tile kt of (b, kv head hk): K^T and V^T as [D, kBk], K as [kBk, dp], zeros past the valid
// range; and the tile's rows of the f32 dK and dV zeroed (chunks after the first add to them).
template <class S>
void PackTileT(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t kt) {
  const ValidRanges s = valid_ranges(pr.mask, b);
  const std::int64_t tiles = tiles_of(pr, s.k_len);
  if (kt >= tiles) return;
  const std::int64_t D = pr.D, dp = pr.dp;
  float* base = pr.pack + pr.slab[b] + hk * slab_stride(pr, tiles);
  const std::int64_t first = s.k0 + kt * kBk;
  const std::int64_t n = std::min(kBk, s.k0 + s.k_len - first);  // valid keys in this tile
  const std::int64_t row0 = (b * pr.Hkv + hk) * pr.mask.Lk + first;
  PackTransposed(static_cast<const S*>(pr.k) + row0 * D, n, D, base + kt * kBk * D);
  PackTransposed(static_cast<const S*>(pr.v) + row0 * D, n, D, base + (tiles + kt) * kBk * D);
  PackRows(static_cast<const S*>(pr.k) + row0 * D, n, D, dp,
           base + 2 * tiles * kBk * D + kt * kBk * dp);
  std::fill_n(pr.dk + row0 * dp, n * dp, 0.0f);
  std::fill_n(pr.dv + row0 * dp, n * dp, 0.0f);
}

void PackTile(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t kt) {
  if (pr.bf16) {
    PackTileT<std::uint16_t>(pr, b, hk, kt);
  } else {
    PackTileT<float>(pr, b, hk, kt);
  }
}

// Work item: chunk `it` of sequence it.b, kv head hk (all its query heads).
void RunItem(const Problem& pr, const Scratch& sc, const Item& it, std::int64_t hk) {
  const std::int64_t b = it.b, D = pr.D, dp = pr.dp, Lq = pr.mask.Lq;
  const ValidRanges s = valid_ranges(pr.mask, b);
  const std::int64_t nrows = it.qb - it.qa;
  const std::int64_t qtiles = ceil_div(nrows, kBq), bpt = ceil_div(kBq, kR);

  // 1. The rows' intervals (the same for every query head), folded into the bounds of each
  //    register block of kR rows and of each query tile.
  for (std::int64_t t = 0; t < qtiles; ++t) {
    sc.tile[t] = TileBounds{};
    for (std::int64_t bl = 0; bl < bpt; ++bl) sc.blk[t * bpt + bl] = TileBounds{};
  }
  const detail::RowSpans rs{sc.lo, sc.hi, sc.slo, sc.shi};
  for (std::int64_t i = 0; i < nrows; ++i) {
    const std::int64_t t = i / kBq, bl = (i % kBq) / kR;
    TileBounds& tb = sc.blk[t * bpt + bl];
    tb = combine(tb, detail::keep_row(rs, i, row_keys(pr.mask, b, it.qa + i)));
  }
  for (std::int64_t t = 0; t < qtiles; ++t)
    for (std::int64_t bl = 0; bl < bpt; ++bl)
      sc.tile[t] = combine(sc.tile[t], sc.blk[t * bpt + bl]);

  const std::int64_t tiles = tiles_of(pr, s.k_len);
  const float* base = pr.pack + pr.slab[b] + hk * slab_stride(pr, tiles);
  for (std::int64_t kt = it.kt0; kt < it.kt1; ++kt) {
    const std::int64_t k_begin = s.k0 + kt * kBk, k_end = k_begin + kBk;
    const float* kt_tile = base + kt * kBk * D;
    const float* vt_tile = base + (tiles + kt) * kBk * D;
    const float* k_rows = base + 2 * tiles * kBk * D + kt * kBk * dp;
    std::fill_n(sc.dk, kBk * dp, 0.0f);
    std::fill_n(sc.dv, kBk * dp, 0.0f);
    for (std::int64_t h = hk * pr.group; h < (hk + 1) * pr.group; ++h) {
      for (std::int64_t t = 0; t < qtiles; ++t) {
        const TileBounds& tb = sc.tile[t];
        if (tb.skips(k_begin, k_end)) continue;
        const std::int64_t i0 = t * kBq, nr = std::min(kBq, nrows - i0);
        const std::int64_t row0 = (b * pr.H + h) * Lq + it.qa + i0;  // the tile's first row
        const float* q = pr.q + row0 * dp;
        const float* g = pr.g + row0 * dp;
        const std::int64_t blocks = ceil_div(nr, kR);
        // P and dS per register block; zeros where a block computes nothing, so that the key
        // pass below may read whole columns.
        for (std::int64_t bl = 0; bl < blocks; ++bl) {
          const TileBounds& bb = sc.blk[t * bpt + bl];
          const std::int64_t r0 = bl * kR;
          const int rn = static_cast<int>(std::min<std::int64_t>(kR, nr - r0));
          float* p = sc.p + r0 * kBk;
          float* ds = sc.ds + r0 * kBk;
          if (bb.skips(k_begin, k_end)) {
            std::fill_n(p, rn * kBk, 0.0f);
            std::fill_n(ds, rn * kBk, 0.0f);
            continue;
          }
          const float* m = pr.m + row0 + r0;
          const float* il = pr.inv_l + row0 + r0;
          const float* dl = pr.delta + row0 + r0;
          if (bb.unmasked(k_begin, k_end)) {
            WithRows<PFull>(rn, q + r0 * dp, dp, D, kt_tile,
                            static_cast<const detail::RowLimits*>(nullptr), m, il, pr.exp2_scale,
                            p);
            WithRows<DSFull>(rn, g + r0 * dp, dp, D, vt_tile,
                             static_cast<const detail::RowLimits*>(nullptr), dl, pr.abs_scale,
                             static_cast<const float*>(p), ds);
            continue;
          }
          const std::int64_t c0 = (std::max(k_begin, bb.span.begin) - k_begin) / kN;
          const std::int64_t c1 = ceil_div(std::min(k_end, bb.span.end) - k_begin, kN);
          const std::int64_t first = k_begin + c0 * kN;
          const detail::RowLimits lim = detail::block_limits(rs, i0 + r0, rn, first, kBk);
          for (int r = 0; r < rn; ++r) {
            std::fill(p + r * kBk, p + r * kBk + c0 * kN, 0.0f);
            std::fill(p + r * kBk + c1 * kN, p + (r + 1) * kBk, 0.0f);
            std::fill(ds + r * kBk, ds + r * kBk + c0 * kN, 0.0f);
            std::fill(ds + r * kBk + c1 * kN, ds + (r + 1) * kBk, 0.0f);
          }
          const int kc = static_cast<int>(c1 - c0);
          WithRows<PMasked>(rn, kc, q + r0 * dp, dp, D, kt_tile + c0 * kN, &lim, m, il,
                            pr.exp2_scale, p + c0 * kN);
          WithRows<DSMasked>(rn, kc, g + r0 * dp, dp, D, vt_tile + c0 * kN, &lim, dl, pr.abs_scale,
                             static_cast<const float*>(p + c0 * kN), ds + c0 * kN);
        }
        // dQ += dS K over each block's keys.
        float* dq = pr.dq + row0 * dp;
        for (std::int64_t bl = 0; bl < blocks; ++bl) {
          const TileBounds& bb = sc.blk[t * bpt + bl];
          if (bb.skips(k_begin, k_end)) continue;
          const std::int64_t r0 = bl * kR;
          const int rn = static_cast<int>(std::min<std::int64_t>(kR, nr - r0));
          const std::int64_t kb = std::max(k_begin, bb.span.begin) - k_begin;
          const std::int64_t ke = std::min(k_end, bb.span.end) - k_begin;
          WithRows<RowsTimesKeys>(rn, static_cast<const float*>(sc.ds + r0 * kBk), kb, ke, k_rows,
                                  dp, dp, static_cast<const float*>(nullptr), dq + r0 * dp, dp);
        }
        // dV += P^T dO and dK += dS^T Q per block of kR keys, over the rows that may see them.
        const std::int64_t ka = std::max(k_begin, tb.span.begin) - k_begin;
        const std::int64_t kz = std::min(k_end, tb.span.end) - k_begin;
        for (std::int64_t j0 = ka; j0 < kz; j0 += kR) {
          const int kn = static_cast<int>(std::min<std::int64_t>(kR, kz - j0));
          const std::int64_t ja = k_begin + j0, jz = ja + kn;
          std::int64_t rf = nr, rl = 0;
          for (std::int64_t r = 0; r < nr; ++r) {
            const std::int64_t i = i0 + r;
            if (detail::row_meets(rs, i, ja, jz)) {
              rf = std::min(rf, r);
              rl = r + 1;
            }
          }
          if (rf >= rl) continue;
          WithRows<KeysTimesRows>(kn, static_cast<const float*>(sc.p + j0), rf, rl, g, dp, dp,
                                  static_cast<const float*>(nullptr), sc.dv + j0 * dp, dp);
          WithRows<KeysTimesRows>(kn, static_cast<const float*>(sc.ds + j0), rf, rl, q, dp, dp,
                                  static_cast<const float*>(nullptr), sc.dk + j0 * dp, dp);
        }
      }
    }
    // The key tile's dK and dV over this chunk: the first chunk's are the sum's start, the
    // others are added in order after every item is done.
    const std::int64_t n = std::min(kBk, s.k0 + s.k_len - k_begin);
    float *dk, *dv;
    if (it.part < 0) {
      const std::int64_t row = (b * pr.Hkv + hk) * pr.mask.Lk + k_begin;
      dk = pr.dk + row * dp;
      dv = pr.dv + row * dp;
    } else {
      dk = pr.part + it.part + ((hk * (it.kt1 - it.kt0) + kt - it.kt0) * 2) * kBk * dp;
      dv = dk + kBk * dp;
    }
    std::copy_n(sc.dk, n * dp, dk);
    std::copy_n(sc.dv, n * dp, dv);
  }
}

// Key tile kt of (b, kv head hk): the chunks after the first added to the first's, in order.
void AddChunks(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t kt) {
  const ValidRanges s = valid_ranges(pr.mask, b);
  if (kt >= tiles_of(pr, s.k_len)) return;
  const std::int64_t dp = pr.dp, k_begin = s.k0 + kt * kBk;
  const std::int64_t n = std::min(kBk, s.k0 + s.k_len - k_begin);
  const std::int64_t row = (b * pr.Hkv + hk) * pr.mask.Lk + k_begin;
  float* dk = pr.dk + row * dp;
  float* dv = pr.dv + row * dp;
  const DF df;
  for (std::int64_t ix = pr.first_item[b] + 1; ix < pr.first_item[b + 1]; ++ix) {
    const Item& it = pr.items[ix];
    if (kt < it.kt0 || kt >= it.kt1) continue;
    const float* pk = pr.part + it.part + ((hk * (it.kt1 - it.kt0) + kt - it.kt0) * 2) * kBk * dp;
    const float* pv = pk + kBk * dp;
    for (std::int64_t e = 0; e < n * dp; e += kN) {
      hn::Store(hn::Add(hn::Load(df, dk + e), hn::Load(df, pk + e)), df, dk + e);
      hn::Store(hn::Add(hn::Load(df, dv + e), hn::Load(df, pv + e)), df, dv + e);
    }
  }
}

// Row r of (B, H, Lq): q and dout in f32 (zero without a visible key), the statistics, delta,
// and dq zeroed. `out` [B, H, Lq, D] is the forward's output in f32.
template <class S>
void PrepareRowT(const Problem& pr, const S* q, const S* dout, const float* out,
                 const float* row_max, const float* row_sum, std::int64_t r) {
  const std::int64_t Lq = pr.mask.Lq, D = pr.D, dp = pr.dp;
  const std::int64_t b = r / (pr.H * Lq), i = r % Lq;
  float* qr = pr.q + r * dp;
  float* gr = pr.g + r * dp;
  std::fill_n(pr.dq + r * dp, dp, 0.0f);
  const bool ok = !visible_keys(pr.mask, b, i).empty() && row_sum[r] > 0.0f;
  if (!ok) {
    std::fill_n(qr, dp, 0.0f);
    std::fill_n(gr, dp, 0.0f);
    pr.m[r] = 0.0f;
    pr.inv_l[r] = 0.0f;
    pr.delta[r] = 0.0f;
    return;
  }
  LoadRow(q + r * D, D, pr.qsign, qr);
  LoadRow(dout + r * D, D, 1.0f, gr);
  std::fill(qr + D, qr + dp, 0.0f);
  std::fill(gr + D, gr + dp, 0.0f);
  const DF df;
  const float* o = out + r * D;
  VF acc = hn::Zero(df);
  std::int64_t d = 0;
  for (; d + kN <= D; d += kN) acc = hn::MulAdd(hn::Load(df, gr + d), hn::LoadU(df, o + d), acc);
  float delta = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; d < D; ++d) delta += gr[d] * o[d];
  pr.m[r] = row_max[r];
  pr.inv_l[r] = 1.0f / row_sum[r];
  pr.delta[r] = delta;
}

void PrepareRows(const Problem& pr, const void* q, const void* dout, const float* out,
                 const float* row_max, const float* row_sum, std::int64_t r) {
  if (pr.bf16) {
    PrepareRowT(pr, static_cast<const std::uint16_t*>(q), static_cast<const std::uint16_t*>(dout),
                out, row_max, row_sum, r);
  } else {
    PrepareRowT(pr, static_cast<const float*>(q), static_cast<const float*>(dout), out, row_max,
                row_sum, r);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace maskcheck::cpu::attn_bwd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {
namespace attn_bwd {
HWY_EXPORT(Lanes);
HWY_EXPORT(KeyTile);
HWY_EXPORT(QueryTile);
HWY_EXPORT(RowBlock);
HWY_EXPORT(PackTile);
HWY_EXPORT(RunItem);
HWY_EXPORT(AddChunks);
HWY_EXPORT(PrepareRows);

// Per-thread buffers of the calling thread, kept between calls (a call after the first of a size
// allocates nothing and touches no new page); one per use.
template <int Tag>
float* keep(std::size_t n) {
  thread_local hwy::AlignedFreeUniquePtr<float[]> data;
  thread_local std::size_t size = 0;
  if (n > size) {
    data.reset();
    size = 0;
    data = hwy::AllocateAligned<float>(n);
    if (!data) throw std::bad_alloc();
    size = n;
  }
  return data.get();
}

// Row of x [rows, dp] f32 to n storage elements of dtype bf16 or f32; `neg` negates. Adding +0
// (or subtracting from it) turns -0 into +0: no gradient is -0.
void store_row(const float* x, std::int64_t n, bool bf16, bool neg, void* out) {
  if (bf16) {
    auto* o = static_cast<std::uint16_t*>(out);
    for (std::int64_t d = 0; d < n; ++d)
      o[d] = attn::float_to_bf16(neg ? 0.0f - x[d] : x[d] + 0.0f);
  } else {
    auto* o = static_cast<float*>(out);
    for (std::int64_t d = 0; d < n; ++d) o[d] = neg ? 0.0f - x[d] : x[d] + 0.0f;
  }
}
void zero_row(std::int64_t n, bool bf16, void* out) {
  if (bf16) {
    std::fill_n(static_cast<std::uint16_t*>(out), n, std::uint16_t{0});
  } else {
    std::fill_n(static_cast<float*>(out), n, 0.0f);
  }
}
}  // namespace attn_bwd

void attention_backward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                        const void* k, const void* v, const void* dout, void* dq, void* dk,
                        void* dv) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  if (p.mods.any())
    throw InvalidArgument("mods", p.mods.describe(), "attention backward takes no score modifiers");
  require_cpu_dtype(t);
  const std::int64_t B = mask.B, H = p.H, Hkv = p.Hkv, Lq = mask.Lq, Lk = mask.Lk, D = p.D;
  const std::int64_t rows = B * H * Lq, kv_rows = B * Hkv * Lk;
  const bool bf16 = t == DType::bf16;
  const std::size_t es = dtype_bytes(t);
  if (D == 0) return;
  if (rows == 0) {  // no query: every key's gradients are 0
    if (kv_rows > 0) {
      std::memset(dk, 0, static_cast<std::size_t>(kv_rows * D) * es);
      std::memset(dv, 0, static_cast<std::size_t>(kv_rows * D) * es);
    }
    return;
  }

  attn_bwd::Problem pr;
  pr.k = k;
  pr.v = v;
  pr.bf16 = bf16;
  pr.mask = mask;
  pr.H = H;
  pr.Hkv = Hkv;
  pr.group = H / Hkv;
  pr.D = D;
  const std::int64_t kN = HWY_DYNAMIC_DISPATCH(attn_bwd::Lanes)();
  pr.dp = attn::ceil_div(D, kN) * kN;
  pr.bk = HWY_DYNAMIC_DISPATCH(attn_bwd::KeyTile)();
  pr.bq = HWY_DYNAMIC_DISPATCH(attn_bwd::QueryTile)();
  const std::int64_t kR = HWY_DYNAMIC_DISPATCH(attn_bwd::RowBlock)();
  const double scale = p.effective_scale();
  pr.qsign = scale < 0 ? -1.0f : 1.0f;
  pr.exp2_scale = static_cast<float>(std::fabs(scale) * 1.4426950408889634);
  pr.abs_scale = static_cast<float>(std::fabs(scale));
  const std::int64_t dp = pr.dp, bk = pr.bk, bq = pr.bq;

  // 1. The forward's statistics and output (f32).
  const auto urows = static_cast<std::size_t>(rows);
  float* out = attn_bwd::keep<0>(urows * static_cast<std::size_t>(D));
  float* row_max = attn_bwd::keep<1>(urows);
  float* row_sum = attn_bwd::keep<2>(urows);
  detail::attention_forward_stats(p, mask, t, q, k, v, out, row_max, row_sum);

  // The chunks of every sequence and the layout of the packed tiles and partial sums.
  std::vector<attn_bwd::Item> items;
  std::vector<std::int64_t> first_item(static_cast<std::size_t>(B) + 1);
  std::vector<std::int64_t> slab(static_cast<std::size_t>(B));
  std::int64_t pack_total = 0, part_total = 0, max_chunk = 0, max_k_tiles = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    first_item[static_cast<std::size_t>(b)] = static_cast<std::int64_t>(items.size());
    const ValidRanges s = valid_ranges(mask, b);
    const std::int64_t tiles = attn_bwd::tiles_of(pr, s.k_len);
    slab[static_cast<std::size_t>(b)] = pack_total;
    pack_total += Hkv * attn_bwd::slab_stride(pr, tiles);
    max_k_tiles = std::max(max_k_tiles, tiles);
    const std::int64_t chunk =
        std::max(attn_bwd::kMinChunk,
                 attn::ceil_div(attn::ceil_div(s.q_len, attn_bwd::kMaxChunks), bq) * bq);
    for (std::int64_t qa = s.q0; qa < s.q0 + s.q_len; qa += chunk) {
      attn_bwd::Item it;
      it.b = b;
      it.qa = qa;
      it.qb = std::min(qa + chunk, s.q0 + s.q_len);
      TileBounds tb;
      for (std::int64_t i = it.qa; i < it.qb; ++i) {
        const RowKeys kr = row_keys(mask, b, i);
        tb = combine(tb, row_tile_bounds(kr));
        it.work += static_cast<double>(kr.size());
      }
      if (tb.span.empty()) continue;  // no row of the chunk sees a key
      it.kt0 = (tb.span.begin - s.k0) / bk;
      it.kt1 = attn::ceil_div(tb.span.end - s.k0, bk);
      if (items.size() > static_cast<std::size_t>(first_item[static_cast<std::size_t>(b)])) {
        it.part = part_total;
        part_total += Hkv * (it.kt1 - it.kt0) * 2 * bk * dp;
      }
      max_chunk = std::max(max_chunk, it.qb - it.qa);
      items.push_back(it);
    }
  }
  first_item[static_cast<std::size_t>(B)] = static_cast<std::int64_t>(items.size());
  pr.items = items.data();
  pr.first_item = first_item.data();
  pr.slab = slab.data();
  // Work items (chunk, kv head), heaviest first; the order only balances the threads.
  std::vector<std::int64_t> order(items.size() * static_cast<std::size_t>(Hkv));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t c) {
    return items[static_cast<std::size_t>(a / Hkv)].work >
           items[static_cast<std::size_t>(c / Hkv)].work;
  });

  const auto nq = static_cast<std::size_t>(rows * dp);
  const auto nkv = static_cast<std::size_t>(kv_rows * dp);
  pr.q = attn_bwd::keep<3>(nq);
  pr.g = attn_bwd::keep<4>(nq);
  pr.dq = attn_bwd::keep<5>(nq);
  pr.m = attn_bwd::keep<6>(urows);
  pr.inv_l = attn_bwd::keep<7>(urows);
  pr.delta = attn_bwd::keep<8>(urows);
  pr.dk = attn_bwd::keep<9>(nkv);
  pr.dv = attn_bwd::keep<10>(nkv);
  pr.pack = attn_bwd::keep<11>(static_cast<std::size_t>(std::max<std::int64_t>(pack_total, 1)));
  pr.part = attn_bwd::keep<12>(static_cast<std::size_t>(std::max<std::int64_t>(part_total, 1)));

  const std::int64_t pack_items = B * Hkv * max_k_tiles;
  const auto n_items = static_cast<std::int64_t>(order.size());
  const std::int64_t chunk_tiles = attn::ceil_div(std::max<std::int64_t>(max_chunk, 1), bq);
  const std::int64_t bpt = attn::ceil_div(bq, kR);
#pragma omp parallel
  {
    auto slo = hwy::AllocateAligned<std::int64_t>(static_cast<std::size_t>(chunk_tiles * bq));
    auto shi = hwy::AllocateAligned<std::int64_t>(static_cast<std::size_t>(chunk_tiles * bq));
    auto sslo = hwy::AllocateAligned<std::int64_t>(static_cast<std::size_t>(chunk_tiles * bq));
    auto sshi = hwy::AllocateAligned<std::int64_t>(static_cast<std::size_t>(chunk_tiles * bq));
    std::vector<TileBounds> sblk(static_cast<std::size_t>(chunk_tiles * bpt));
    std::vector<TileBounds> stile(static_cast<std::size_t>(chunk_tiles));
    auto sp = hwy::AllocateAligned<float>(static_cast<std::size_t>(bq * bk));
    auto sds = hwy::AllocateAligned<float>(static_cast<std::size_t>(bq * bk));
    auto sdk = hwy::AllocateAligned<float>(static_cast<std::size_t>(bk * dp));
    auto sdv = hwy::AllocateAligned<float>(static_cast<std::size_t>(bk * dp));
    const attn_bwd::Scratch sc{slo.get(),    shi.get(), sslo.get(), sshi.get(), sblk.data(),
                               stile.data(), sp.get(),  sds.get(),  sdk.get(),  sdv.get()};

    // 2. Rows; 3. key tiles.
#pragma omp for schedule(static) nowait
    for (std::int64_t r = 0; r < rows; ++r)
      HWY_DYNAMIC_DISPATCH(attn_bwd::PrepareRows)(pr, q, dout, out, row_max, row_sum, r);
#pragma omp for schedule(dynamic, 4)
    for (std::int64_t i = 0; i < pack_items; ++i) HWY_DYNAMIC_DISPATCH(attn_bwd::PackTile)
    (pr, i / (max_k_tiles * Hkv), (i / max_k_tiles) % Hkv, i % max_k_tiles);
    // 4. Chunks, heaviest first.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t i = 0; i < n_items; ++i) {
      const std::int64_t w = order[static_cast<std::size_t>(i)];
      HWY_DYNAMIC_DISPATCH(attn_bwd::RunItem)
      (pr, sc, items[static_cast<std::size_t>(w / Hkv)], w % Hkv);
    }
    // 5. The chunks' sums.
    if (part_total > 0) {
#pragma omp for schedule(dynamic, 4)
      for (std::int64_t i = 0; i < pack_items; ++i) HWY_DYNAMIC_DISPATCH(attn_bwd::AddChunks)
      (pr, i / (max_k_tiles * Hkv), (i / max_k_tiles) % Hkv, i % max_k_tiles);
    }
    // The outputs in the storage dtype: dq = sign(scale) * the f32 sum; padded keys 0.
#pragma omp for schedule(static) nowait
    for (std::int64_t r = 0; r < rows; ++r)
      attn_bwd::store_row(pr.dq + r * dp, D, bf16, pr.qsign < 0,
                          static_cast<char*>(dq) + static_cast<std::size_t>(r * D) * es);
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < kv_rows; ++r) {
      const std::int64_t b = r / (Hkv * Lk), j = r % Lk;
      const std::size_t at = static_cast<std::size_t>(r * D) * es;
      if (valid_ranges(mask, b).keys().contains(j)) {
        attn_bwd::store_row(pr.dk + r * dp, D, bf16, false, static_cast<char*>(dk) + at);
        attn_bwd::store_row(pr.dv + r * dp, D, bf16, false, static_cast<char*>(dv) + at);
      } else {
        attn_bwd::zero_row(D, bf16, static_cast<char*>(dk) + at);
        attn_bwd::zero_row(D, bf16, static_cast<char*>(dv) + at);
      }
    }
  }
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
