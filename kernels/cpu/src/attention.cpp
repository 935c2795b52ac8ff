// Masked attention forward on the CPU, flash-style, fp32 arithmetic.
//   q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], out: [B, H, Lq, D] (f32 or bf16 storage),
//   lse: [B, H, Lq] fp32 or nullptr. O = softmax(Q K^T * scale + mask) V; head h reads kv head
//   h / (H / Hkv). Each query row's visible keys are the interval visible_keys(mask, b, q) of the
//   one predicate, plus its attention sinks apart from it (row_keys); a row with none gets O = 0
//   and lse = -inf. Masks are never materialized.
// Complexity: 4 * D FLOPs per visible (q, k) pair, plus the masked remainder of boundary tiles
//   (at most one key tile per register block of rows at each interval end); O((Lq + Lk) * D)
//   memory traffic per (b, h) beyond that, and one packed copy of the valid K and V.
// Versions:
//   v1  this file: K^T and V of the valid keys packed once per call into key tiles of kBk keys
//       (zeros outside the valid range, so padding is never read); OpenMP over (query tile, b, h),
//       heaviest tiles first, dynamic; per query tile the rows' intervals, folded into the
//       predicate's TileBounds, give the key span (tiles outside are never touched) and, per
//       register block of kR rows, which tiles it skips, which are inside the interval of every
//       row that sees a key (no per-element test) and which need lo <= k < hi; S = Q K^T
//       and O += P V as kR x 4-vector FMA micro-kernels; online softmax in base 2 with a
//       polynomial exp2 and selects (P = 0 exactly for masked pairs).
//   v2  the decode path (Decode): when a sequence's rows of one kv head (Lq x group) fit one
//       query tile, those rows (the group's heads) are one tile, K and V are packed tile by tile
//       into per-thread L1 buffers as the rows need them (read once per kv head, from the padded
//       layout or a paged cache), and the keys are split into chunks (split-KV) merged by the
//       log-sum-exp rule: decode over long caches is memory-bound, and v1 re-read each kv head's
//       packed K and V once per query head. Score modifiers (soft-cap, ALiBi, sink logits) and
//       paged caches in both paths.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h re-includes this file once per SIMD target; hwy/highway.h must follow it.
#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "attention_internal.hpp"
#include "maskcheck/kernels/cpu.hpp"
// The shared tile geometry and SIMD pieces (after foreach_target.h: once per target).
#include <hwy/contrib/math/math-inl.h>  // Tanh (soft-capping), once per target
#include "attention-inl.h"

#ifndef MASKCHECK_CPU_ATTENTION_SHARED
#define MASKCHECK_CPU_ATTENTION_SHARED
namespace maskcheck::cpu::attn {

// Tile geometry of one SIMD target (the one chosen at run time is used for a whole call).
struct Geometry {
  std::int64_t bq = 1;  // query rows per work item
  std::int64_t bk = 1;  // keys per key tile
  std::int64_t dp = 1;  // D rounded up to whole vectors (row stride of packed V and of O)
};

// The decode path (Problem::decode): the rows of one (sequence, kv head), Lq queries times the
// group's heads (row r: query r / group of head hk * group + r % group), share every K and V tile,
// so each tile is packed on the fly into an L1-sized buffer and read once for all of them; the
// keys of a (sequence, kv head) are split into chunks (split-KV) whose partial rows (max, sum,
// unnormalized output) are merged by the log-sum-exp rule once every chunk is done.
struct Decode {
  bool on = false;
  std::int64_t rows = 0;    // Lq * group
  std::int64_t splits = 1;  // key chunks per (sequence, kv head), from the problem alone
  float* part_o = nullptr;  // [B, Hkv, splits, rows, dp] unnormalized outputs
  float* part_m = nullptr;  // [B, Hkv, splits, rows] row maxima in the scores' units
  float* part_l = nullptr;  // [B, Hkv, splits, rows] sums relative to them
};

// Everything a work item reads; built once per call.
struct Problem {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
  // The backward's statistics (attention_forward_stats), or nullptr: per row the final max of
  // the raw dots and the sum l, as exp2_scale-based exponents relative to it (-inf and 0 for a
  // row without a visible key).
  float* row_max = nullptr;
  float* row_sum = nullptr;
  MaskView mask;
  bool bf16 = false;      // q, k, v in bf16
  bool out_bf16 = false;  // out in bf16 (else f32)
  std::int64_t H = 1, Hkv = 1, group = 1, D = 1;
  // Scores are kept as raw dots of sign(scale) * q with k: negating Q is exact, so the running
  // max and the differences dot - max carry no rounding of the scale; exp(scale * (s - max))
  // = 2^((dot - max) * exp2_scale) with exp2_scale = |scale| * log2(e).
  float qsign = 1;
  float exp2_scale = 1;
  // Score modifiers (ScoreModifiers). With soft-capping or ALiBi the scores are no longer raw
  // dots: Q is loaded times the scale (qsign holds it), each tile's scores are transformed in
  // BlockScores, and exp2_scale is log2(e). Sink logits join each row's sum when it is written.
  float softcap = 0;              // 0: none
  const float* alibi = nullptr;   // [H] slopes, or nullptr
  const double* sinks = nullptr;  // [H] sink logits, or nullptr
  bool modified = false;          // softcap or alibi
  // A paged KV cache (PagedKv): k and v are [num_pages, page_size, Hkv, D] and sequence b's key
  // j lives in page block_table[b * max_pages + j / page_size]; nullptr: the padded layout.
  const std::int32_t* block_table = nullptr;
  std::int64_t page_size = 1, max_pages = 0;
  Decode dec;
  // A split-KV chunk (attention_forward_chunk): every row's interval intersected with
  // [clip_begin, clip_end); the whole key axis otherwise.
  std::int64_t clip_begin = 0, clip_end = std::numeric_limits<std::int64_t>::max();
  Geometry g;
  // f32 with D a multiple of the vector: O += P V reads V in place (rows of the valid range
  // only); otherwise V is packed (widened, rows padded to dp) next to K^T.
  bool v_direct = false;
  bool stream = false;                 // f32 output rows written with non-temporal stores
  float* pack = nullptr;               // packed tiles, see slab_stride
  const std::int64_t* slab = nullptr;  // [B]: offset in pack of sequence b's kv head 0
};

// Floats per kv head of sequence b: K^T tiles [tiles, D, bk], then (unless v_direct) V tiles
// [tiles, bk, dp].
inline std::int64_t slab_stride(const Problem& pr, std::int64_t tiles) {
  return tiles * pr.g.bk * (pr.D + (pr.v_direct ? 0 : pr.g.dp));
}

// Per-thread buffers of one call (sizes from the geometry, allocated once per thread).
struct Scratch {
  float* q =
      nullptr;  // [bq, D]     the query tile times sign(scale), zero rows where no key is visible
  float* o = nullptr;          // [bq, dp]    unnormalized output accumulators
  float* m = nullptr;          // [bq]        running row max of the raw dots
  float* l = nullptr;          // [bq, lanes] running row sums, one vector per row
  float* p = nullptr;          // [bq, bk]    probabilities of the current key tile
  float* alpha = nullptr;      // [bq]     the rows' rescale factors for the current key tile
  std::int64_t* lo = nullptr;  // [bq] the rows' visible key intervals [lo, hi) (empty: 0, 0)
  std::int64_t* hi = nullptr;
  std::int64_t* slo = nullptr;  // [bq] their attention sinks apart from it [slo, shi), or 0, 0
  std::int64_t* shi = nullptr;
  std::int64_t* diag = nullptr;  // [bq] the rows' diagonals (ALiBi), when modified
};

// The transformation of a register block's scores (Problem::modified): soft-cap (cap 0: none),
// then ALiBi with `slope` (0: none) and per row its diagonal relative to the block's first key.
struct BlockMods {
  float cap = 0, inv_cap = 0;
  bool alibi = false;
  const float* slope = nullptr;  // [RN] per row (the decode path packs several heads' rows)
  const float* diag = nullptr;   // [RN]
};

// Row i's keys (row_keys intersected with [clip_begin, clip_end)) kept in sc; their TileBounds.
inline TileBounds SetRow(const Problem& pr, const Scratch& sc, std::int64_t i, std::int64_t b,
                         std::int64_t q, std::int64_t clip_begin, std::int64_t clip_end) {
  if (pr.modified) sc.diag[i] = query_diagonal(pr.mask, b, q);
  return detail::keep_row(detail::RowSpans{sc.lo, sc.hi, sc.slo, sc.shi}, i,
                          detail::clip_row(row_keys(pr.mask, b, q), clip_begin, clip_end));
}
inline detail::RowLimits BlockLimits(const Scratch& sc, std::int64_t r0, int rn, std::int64_t first,
                                     std::int64_t bk) {
  return detail::block_limits(detail::RowSpans{sc.lo, sc.hi, sc.slo, sc.shi}, r0, rn, first, bk);
}
using detail::RowLimits;

}  // namespace maskcheck::cpu::attn
#endif  // MASKCHECK_CPU_ATTENTION_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
static_assert(kR <= detail::kMaxR, "RowLimits holds kMaxR rows");

// Scores of one key tile for RN query rows: S = Q K^T (RN x KC vectors of keys in registers),
// then, for a boundary tile (MASKED), the select lo <= k < hi or slo <= k < shi (the row's
// attention sinks); online-softmax update of m and l; P and the rows' rescale factors alpha
// written for BlockPV. Boundary tiles pass only the vectors of keys some row of the block sees
// (KC < kC on a causal diagonal).
//   q: [RN, D], kt: [D, row stride kBk], lim: RowLimits relative to kt; p: [RN, stride kBk].
// With MOD, the scores are first transformed by `mods` (soft-cap, then ALiBi).
template <int RN, bool MASKED, int KC = kC, bool MOD = false>
HWY_NOINLINE void BlockScores(const float* HWY_RESTRICT q, std::int64_t D,
                              const float* HWY_RESTRICT kt, const RowLimits* lim, float exp2_scale,
                              float* HWY_RESTRICT m, float* HWY_RESTRICT l, float* HWY_RESTRICT p,
                              float* HWY_RESTRICT alpha, const BlockMods* mods) {
  const DF df;
  VF s[RN][KC];
  Scores<RN, KC>(q, D, D, kt, s);
  if constexpr (MOD) {
    const VF cap = hn::Set(df, mods->cap), inv_cap = hn::Set(df, mods->inv_cap);
    for (int r = 0; r < RN; ++r) {
      const VF diag = hn::Set(df, mods->diag[r]);
      const VF slope = hn::Set(df, mods->alibi ? mods->slope[r] : 0.0f);
      for (int c = 0; c < KC; ++c) {
        if (mods->cap != 0) s[r][c] = hn::Mul(cap, hn::Tanh(df, hn::Mul(s[r][c], inv_cap)));
        if (mods->alibi) {
          const VF dist = hn::Abs(hn::Sub(hn::Iota(df, static_cast<float>(c * kN)), diag));
          s[r][c] = hn::NegMulAdd(slope, dist, s[r][c]);
        }
      }
    }
  }

  const VF neg_inf = hn::Set(df, -std::numeric_limits<float>::infinity());
  const VF c2 = hn::Set(df, exp2_scale);
  for (int r = 0; r < RN; ++r) {
    hn::Mask<DF> visible[KC];
    if constexpr (MASKED) {
      const VF vlo = hn::Set(df, lim->lo[r]), vhi = hn::Set(df, lim->hi[r]);
      const VF vslo = hn::Set(df, lim->slo[r]), vshi = hn::Set(df, lim->shi[r]);
      for (int c = 0; c < KC; ++c) {
        const VF key = hn::Iota(df, static_cast<float>(c * kN));
        visible[c] = hn::Or(hn::And(hn::Ge(key, vlo), hn::Lt(key, vhi)),
                            hn::And(hn::Ge(key, vslo), hn::Lt(key, vshi)));
        s[r][c] = hn::IfThenElse(visible[c], s[r][c], neg_inf);  // garbage and NaN drop out here
      }
    }
    VF mx = s[r][0];
    for (int c = 1; c < KC; ++c) mx = hn::Max(mx, s[r][c]);
    mx = hn::MaxOfLanes(df, mx);
    // P = 2^((s - m) * c2) for the row max m: s - m is exact near the max (and <= 0), and the
    // product's rounding is relative to the distance from the max, whatever |m|. (The fused
    // s * c2 - fl(m * c2) shifted every exponent by the rounding of m * c2, up to 2^-25 |m c2|:
    // scores near 1e30 then gave P = 0 or inf for the whole row.)
    // No visible key yet: m = -inf; subtract 0 (every P is 0 then and O, l are still 0).
    const VF m_old = hn::Set(df, m[r]);
    const VF m_new = hn::Max(m_old, mx);
    m[r] = hn::GetLane(m_new);
    const VF m_use = hn::IfThenZeroElse(hn::Eq(m_new, neg_inf), m_new);
    // m_old = -inf (x = -inf, or NaN when c2 = 0) gives x = -200: alpha ~ 0 multiplies O = l = 0.
    const VF a = Exp2(df, hn::Max(hn::Mul(hn::Sub(m_old, m_use), c2), hn::Set(df, -200.0f)));
    alpha[r] = hn::GetLane(a);
    VF sum = hn::Zero(df);
    for (int c = 0; c < KC; ++c) {
      VF e = Exp2(df, hn::Mul(hn::Sub(s[r][c], m_use), c2));
      if constexpr (MASKED) e = hn::IfThenElseZero(visible[c], e);
      sum = hn::Add(sum, e);
      hn::Store(e, df, p + r * kBk + c * kN);
    }
    hn::Store(hn::MulAdd(hn::Load(df, l + r * kN), a, sum), df, l + r * kN);
  }
}

template <int RN>
struct ScoresFull {
  template <class... A>
  static void run(bool mod, A... a) {
    if (mod) return BlockScores<RN, false, kC, true>(a...);
    BlockScores<RN, false>(a...);
  }
};
template <int RN>
struct ScoresMasked {
  template <bool MOD, class... A>
  static void dispatch(int kc, A... a) {
    static_assert(kC == 4, "ScoresMasked dispatches up to 4 vectors of keys");
    switch (kc) {
      case 1:
        return BlockScores<RN, true, 1, MOD>(a...);
      case 2:
        return BlockScores<RN, true, 2, MOD>(a...);
      case 3:
        return BlockScores<RN, true, 3, MOD>(a...);
      default:
        return BlockScores<RN, true, 4, MOD>(a...);
    }
  }
  template <class... A>
  static void run(bool mod, int kc, A... a) {
    if (mod) return dispatch<true>(kc, a...);
    dispatch<false>(kc, a...);
  }
};
template <int RN>
struct PV {
  template <class... A>
  static void run(A... a) {
    AccumulateAll<RN, true, false>(a...);
  }
};

Geometry GetGeometry(std::int64_t D) {
  return Geometry{kBq, kBk, ceil_div(std::max<std::int64_t>(D, 1), kN) * kN};
}

// Packs key tile kt of (b, kv head hk): K^T as [D, kBk] (and, unless v_direct, V as [kBk, dp]),
// zeros for keys past the valid range and for columns D..dp. Only valid keys are read.
template <class S>
void PackTileT(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t kt) {
  const ValidRanges s = valid_ranges(pr.mask, b);
  const std::int64_t tiles = ceil_div(s.k_len, kBk);
  if (kt >= tiles) return;
  const std::int64_t D = pr.D, dp = pr.g.dp;
  float* base = pr.pack + pr.slab[b] + hk * slab_stride(pr, tiles);
  float* HWY_RESTRICT kt_tile = base + kt * kBk * D;
  const std::int64_t first = s.k0 + kt * kBk;
  const std::int64_t n = std::min(kBk, s.k0 + s.k_len - first);  // valid keys in this tile
  float* v_tile = base + tiles * kBk * D + kt * kBk * dp;
  if (pr.block_table) {
    // Key first + j from its page (paged_slot).
    const std::int64_t Hkv = pr.Hkv;
    auto row = [&](const void* cache) {
      return [=, &pr](std::int64_t j) {
        const std::int64_t slot =
            paged_slot(pr.block_table, pr.max_pages, pr.page_size, b, first + j);
        return static_cast<const S*>(cache) + (slot * Hkv + hk) * D;
      };
    };
    PackTransposedRows<S>(row(pr.k), n, D, kt_tile);
    PackRowsOf<S>(row(pr.v), n, D, dp, v_tile);  // v_direct is off for a paged cache
    return;
  }
  const std::int64_t row0 = ((b * pr.Hkv + hk) * pr.mask.Lk + first) * D;
  PackTransposed(static_cast<const S*>(pr.k) + row0, n, D, kt_tile);
  if (pr.v_direct) return;
  PackRows(static_cast<const S*>(pr.v) + row0, n, D, dp, v_tile);
}

void PackTile(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t kt) {
  if (pr.bf16) {
    PackTileT<std::uint16_t>(pr, b, hk, kt);
  } else {
    PackTileT<float>(pr, b, hk, kt);
  }
}

// Writes output row `row` ([B, H, Lq] index) of head h from its unnormalized output o (dp floats),
// its max m (in the scores' units) and sum l relative to m: normalized, with head h's sink logit
// in the denominator; a row without a visible key (!ok, or l not > 0) as 0 with lse -inf.
void WriteRow(const Problem& pr, std::int64_t h, std::int64_t row, const float* orow, float m,
              float l, bool ok) {
  const DF df;
  const std::int64_t D = pr.D;
  const bool empty = !ok || !(l > 0.0f);
  float inv = empty ? 0.0f : 1.0f / l;
  double sink_lse = 0;  // the row's lse with its sink logit
  if (pr.sinks && !empty) {
    // Relative to M = max(row max, sink) in natural units: the sum l e^(m - M) + e^(sink - M).
    const double mn = double{m} * pr.exp2_scale * kLn2, sink = pr.sinks[h];
    const double mx = std::max(mn, sink), a = std::exp(mn - mx);
    const double total = double{l} * a + std::exp(sink - mx);
    inv = static_cast<float>(a / total);
    sink_lse = mx + std::log(total);
  }
  const std::int64_t dst = row * D;
  if (pr.out_bf16) {
    auto* out = static_cast<std::uint16_t*>(pr.out) + dst;
    for (std::int64_t d = 0; d < D; ++d) out[d] = float_to_bf16(empty ? 0.0f : orow[d] * inv);
  } else if (pr.stream) {
    float* out = static_cast<float*>(pr.out) + dst;
    const VF vinv = hn::Set(df, inv);
    for (std::int64_t d = 0; d < D; d += kN)
      hn::Stream(empty ? hn::Zero(df) : hn::Mul(hn::Load(df, orow + d), vinv), df, out + d);
  } else {
    float* out = static_cast<float*>(pr.out) + dst;
    for (std::int64_t d = 0; d < D; ++d) out[d] = empty ? 0.0f : orow[d] * inv;
  }
  if (pr.lse)
    pr.lse[row] =
        empty      ? -std::numeric_limits<float>::infinity()
        : pr.sinks ? static_cast<float>(sink_lse)
                   : static_cast<float>((double{m} * pr.exp2_scale + std::log2(double{l})) * kLn2);
  if (pr.row_max) {
    pr.row_max[row] = empty ? -std::numeric_limits<float>::infinity() : m;
    pr.row_sum[row] = empty ? 0.0f : l;
  }
}

// Query tile t (rows q0 + t * kBq ...) of head h of sequence b.
void RunTile(const Problem& pr, const Scratch& sc, std::int64_t b, std::int64_t h, std::int64_t t) {
  const ValidRanges s = valid_ranges(pr.mask, b);
  const std::int64_t qa = s.q0 + t * kBq;
  if (qa >= s.q0 + s.q_len) return;
  const std::int64_t nr = std::min(kBq, s.q0 + s.q_len - qa);
  const std::int64_t D = pr.D, dp = pr.g.dp, Lq = pr.mask.Lq, H = pr.H;
  const std::int64_t hk = h / pr.group;

  // 1. The rows' intervals from the one predicate, folded (row_tile_bounds, combine) into the
  //    tile bounds of each register block of kR rows (which key tiles it skips, which need no
  //    per-element test) and of the whole tile (its key span).
  const std::int64_t blocks = ceil_div(nr, kR);
  TileBounds blk[kBq / kR + 1];
  TileBounds tile;
  for (std::int64_t i = 0; i < nr; ++i)
    blk[i / kR] = combine(blk[i / kR], SetRow(pr, sc, i, b, qa + i, pr.clip_begin, pr.clip_end));
  // The block transformation of the scores (soft-cap, ALiBi slope of head h).
  BlockMods mods;
  float slopes[kR];
  if (pr.modified) {
    mods.cap = pr.softcap;
    mods.inv_cap = pr.softcap != 0 ? 1.0f / pr.softcap : 0.0f;
    mods.alibi = pr.alibi != nullptr;
    std::fill_n(slopes, kR, pr.alibi ? pr.alibi[h] : 0.0f);
    mods.slope = slopes;
  }
  float diag_rel[kR];  // the block's rows' diagonals relative to the key its scores start at
  auto block_mods = [&](std::int64_t r0, int rn, std::int64_t first) {
    if (!pr.modified) return static_cast<const BlockMods*>(nullptr);
    for (int r = 0; r < rn; ++r)  // exact in float: |diag - first| < 2^24
      diag_rel[r] = static_cast<float>(sc.diag[r0 + r] - first);
    mods.diag = diag_rel;
    return static_cast<const BlockMods*>(&mods);
  };
  for (std::int64_t bl = 0; bl < blocks; ++bl) tile = combine(tile, blk[bl]);
  const std::int64_t row0 = (b * H + h) * Lq + qa;  // row index of the tile's first query

  if (!tile.span.empty()) {
    // 2. Q rows with visible keys, times sign(scale); the others as zeros (never read).
    for (std::int64_t i = 0; i < nr; ++i) {
      float* qr = sc.q + i * D;
      if (sc.hi[i] > sc.lo[i]) {
        const std::int64_t src = (row0 + i) * D;
        if (pr.bf16) {
          LoadRow(static_cast<const std::uint16_t*>(pr.q) + src, D, pr.qsign, qr);
        } else {
          LoadRow(static_cast<const float*>(pr.q) + src, D, pr.qsign, qr);
        }
      } else {
        std::fill(qr, qr + D, 0.0f);
      }
    }
    std::fill(sc.o, sc.o + nr * dp, 0.0f);
    std::fill(sc.m, sc.m + nr, -std::numeric_limits<float>::infinity());
    std::fill(sc.l, sc.l + nr * kN, 0.0f);

    // 3. Key tiles of the span. Per register block of rows: skip the tiles it skips, run the
    //    tiles it needs no test for unmasked (its rows without keys are written as empty rows in
    //    step 4), test the rest per element.
    const std::int64_t tiles = ceil_div(s.k_len, kBk);
    const float* base = pr.pack + pr.slab[b] + hk * slab_stride(pr, tiles);
    const std::int64_t vs = pr.v_direct ? D : dp;  // row stride of the V rows read
    const std::int64_t kt0 = (tile.span.begin - s.k0) / kBk,
                       kt1 = ceil_div(tile.span.end - s.k0, kBk);
    for (std::int64_t kt = kt0; kt < kt1; ++kt) {
      const std::int64_t k_begin = s.k0 + kt * kBk, k_end = k_begin + kBk;
      const float* kt_tile = base + kt * kBk * D;
      const float* v_tile = pr.v_direct ? static_cast<const float*>(pr.v) +
                                              ((b * pr.Hkv + hk) * pr.mask.Lk + k_begin) * D
                                        : base + tiles * kBk * D + kt * kBk * dp;
      // Scores and P of every block first, then O += P V: each phase keeps its panel (K^T or
      // V, up to 32 KiB) in L1 across the blocks.
      for (std::int64_t bl = 0; bl < blocks; ++bl) {
        if (blk[bl].skips(k_begin, k_end)) continue;
        const std::int64_t r0 = bl * kR;
        const int rn = static_cast<int>(std::min<std::int64_t>(kR, nr - r0));
        if (blk[bl].unmasked(k_begin, k_end)) {
          WithRows<ScoresFull>(rn, pr.modified, sc.q + r0 * D, D, kt_tile,
                               static_cast<const RowLimits*>(nullptr), pr.exp2_scale, sc.m + r0,
                               sc.l + r0 * kN, sc.p + r0 * kBk, sc.alpha + r0,
                               block_mods(r0, rn, k_begin));
        } else {
          // Only the vectors of keys [c0, c1) that some row of the block sees.
          const std::int64_t c0 = (std::max(k_begin, blk[bl].span.begin) - k_begin) / kN;
          const std::int64_t c1 = ceil_div(std::min(k_end, blk[bl].span.end) - k_begin, kN);
          const std::int64_t first = k_begin + c0 * kN;
          const RowLimits lim = BlockLimits(sc, r0, rn, first, kBk);
          WithRows<ScoresMasked>(rn, pr.modified, static_cast<int>(c1 - c0), sc.q + r0 * D, D,
                                 kt_tile + c0 * kN, &lim, pr.exp2_scale, sc.m + r0, sc.l + r0 * kN,
                                 sc.p + r0 * kBk + c0 * kN, sc.alpha + r0,
                                 block_mods(r0, rn, first));
        }
      }
      for (std::int64_t bl = 0; bl < blocks; ++bl) {
        if (blk[bl].skips(k_begin, k_end)) continue;
        const std::int64_t r0 = bl * kR;
        const int rn = static_cast<int>(std::min<std::int64_t>(kR, nr - r0));
        const std::int64_t kb = std::max(k_begin, blk[bl].span.begin) - k_begin;
        const std::int64_t ke = std::min(k_end, blk[bl].span.end) - k_begin;
        WithRows<PV>(rn, static_cast<const float*>(sc.p + r0 * kBk), kb, ke, v_tile, vs, dp,
                     static_cast<const float*>(sc.alpha + r0), sc.o + r0 * dp, dp);
      }
    }
  }

  // 4. Normalize and write; rows without a visible key write 0 and lse -inf.
  const DF df;
  for (std::int64_t i = 0; i < nr; ++i) {
    const bool ok = !tile.span.empty() && sc.hi[i] > sc.lo[i];
    const float l = ok ? hn::GetLane(hn::SumOfLanes(df, hn::Load(df, sc.l + i * kN))) : 0.0f;
    WriteRow(pr, h, row0 + i, sc.o + i * dp, sc.m[i], l, ok);
  }
}

// ---- the decode path (Decode)
// --------------------------------------------------------------------

// Keys [k_begin, k_begin + n) of (b, kv head hk) packed into kt [D, kBk] (K^T) and vt [kBk, dp]
// fp32, zeros past n, from the padded layout or the pages.
template <class S>
void PackKeys(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t k_begin,
              std::int64_t n, float* HWY_RESTRICT kt, float* HWY_RESTRICT vt) {
  const std::int64_t D = pr.D, Hkv = pr.Hkv;
  auto row = [&](const void* base) {
    return [=, &pr](std::int64_t j) -> const S* {
      const std::int64_t key = k_begin + j;
      if (pr.block_table) {
        const std::int64_t slot = paged_slot(pr.block_table, pr.max_pages, pr.page_size, b, key);
        return static_cast<const S*>(base) + (slot * Hkv + hk) * D;
      }
      return static_cast<const S*>(base) + ((b * Hkv + hk) * pr.mask.Lk + key) * D;
    };
  };
  PackTransposedRows<S>(row(pr.k), n, D, kt);
  PackRowsOf<S>(row(pr.v), n, D, pr.g.dp, vt);
}

// Chunk `split` of sequence b's valid keys: whole tiles of kBk keys, the last one possibly short
// or empty.
KeyRange DecodeChunk(const Problem& pr, std::int64_t b, std::int64_t split) {
  const ValidRanges s = valid_ranges(pr.mask, b);
  const std::int64_t per = ceil_div(ceil_div(s.k_len, kBk), pr.dec.splits) * kBk;
  const std::int64_t begin = std::min(s.k0 + s.k_len, s.k0 + split * per);
  return KeyRange{begin, std::min(s.k0 + s.k_len, begin + per)};
}

// The rows of (b, hk) over chunk `split` of the keys: their partial max, sum and unnormalized
// output in pr.dec. kt, vt: the thread's tile buffers ([D, kBk] and [kBk, dp]).
void DecodeItem(const Problem& pr, const Scratch& sc, float* kt, float* vt, std::int64_t b,
                std::int64_t hk, std::int64_t split) {
  const std::int64_t R = pr.dec.rows, G = pr.group, D = pr.D, dp = pr.g.dp, Lq = pr.mask.Lq;
  const KeyRange chunk = DecodeChunk(pr, b, split);
  const std::int64_t item = (b * pr.Hkv + hk) * pr.dec.splits + split;
  float* HWY_RESTRICT po = pr.dec.part_o + item * R * dp;
  float* HWY_RESTRICT pm = pr.dec.part_m + item * R;
  float* HWY_RESTRICT pl = pr.dec.part_l + item * R;

  // 1. Each row's interval within the chunk; the bounds of each register block and of all rows.
  const std::int64_t blocks = ceil_div(R, kR);
  TileBounds blk[kBq / kR + 1];
  TileBounds all;
  for (std::int64_t r = 0; r < R; ++r)
    blk[r / kR] =
        combine(blk[r / kR], SetRow(pr, sc, r, b, r / G, std::max(chunk.begin, pr.clip_begin),
                                    std::min(chunk.end, pr.clip_end)));
  for (std::int64_t bl = 0; bl < blocks; ++bl) all = combine(all, blk[bl]);
  std::fill(po, po + R * dp, 0.0f);
  std::fill(pm, pm + R, -std::numeric_limits<float>::infinity());
  std::fill(pl, pl + R, 0.0f);
  if (all.span.empty()) return;

  // 2. Q rows (head hk * G + r % G, query r / G) that see a key, times the sign or the scale.
  for (std::int64_t r = 0; r < R; ++r) {
    float* qr = sc.q + r * D;
    if (sc.hi[r] > sc.lo[r]) {
      const std::int64_t src = ((b * pr.H + hk * G + r % G) * Lq + r / G) * D;
      if (pr.bf16) {
        LoadRow(static_cast<const std::uint16_t*>(pr.q) + src, D, pr.qsign, qr);
      } else {
        LoadRow(static_cast<const float*>(pr.q) + src, D, pr.qsign, qr);
      }
    } else {
      std::fill(qr, qr + D, 0.0f);
    }
  }
  std::fill(sc.o, sc.o + R * dp, 0.0f);
  std::fill(sc.m, sc.m + R, -std::numeric_limits<float>::infinity());
  std::fill(sc.l, sc.l + R * kN, 0.0f);
  BlockMods mods;
  float slopes[kR], diag_rel[kR];
  if (pr.modified) {
    mods.cap = pr.softcap;
    mods.inv_cap = pr.softcap != 0 ? 1.0f / pr.softcap : 0.0f;
    mods.alibi = pr.alibi != nullptr;
    mods.slope = slopes;
    mods.diag = diag_rel;
  }
  auto block_mods = [&](std::int64_t r0, int rn, std::int64_t first) {
    if (!pr.modified) return static_cast<const BlockMods*>(nullptr);
    for (int r = 0; r < rn; ++r) {
      slopes[r] = pr.alibi ? pr.alibi[hk * G + (r0 + r) % G] : 0.0f;
      diag_rel[r] = static_cast<float>(sc.diag[r0 + r] - first);
    }
    return static_cast<const BlockMods*>(&mods);
  };

  // 3. Tiles of kBk keys from the rows' span (but not the gap between attention sinks and the
  //    window that no row sees), packed once for all rows.
  for (std::int64_t k_begin = all.span.begin; k_begin < all.span.end; k_begin += kBk) {
    const std::int64_t k_end = k_begin + kBk, n = std::min(kBk, all.span.end - k_begin);
    if (all.skips(k_begin, k_end)) continue;
    if (pr.bf16) {
      PackKeys<std::uint16_t>(pr, b, hk, k_begin, n, kt, vt);
    } else {
      PackKeys<float>(pr, b, hk, k_begin, n, kt, vt);
    }
    for (std::int64_t bl = 0; bl < blocks; ++bl) {
      if (blk[bl].skips(k_begin, k_end)) continue;
      const std::int64_t r0 = bl * kR;
      const int rn = static_cast<int>(std::min<std::int64_t>(kR, R - r0));
      if (blk[bl].unmasked(k_begin, k_end) && k_begin + n == k_end) {
        WithRows<ScoresFull>(rn, pr.modified, sc.q + r0 * D, D, static_cast<const float*>(kt),
                             static_cast<const RowLimits*>(nullptr), pr.exp2_scale, sc.m + r0,
                             sc.l + r0 * kN, sc.p + r0 * kBk, sc.alpha + r0,
                             block_mods(r0, rn, k_begin));
      } else {
        const RowLimits lim = BlockLimits(sc, r0, rn, k_begin, kBk);
        WithRows<ScoresMasked>(rn, pr.modified, kC, sc.q + r0 * D, D, static_cast<const float*>(kt),
                               &lim, pr.exp2_scale, sc.m + r0, sc.l + r0 * kN, sc.p + r0 * kBk,
                               sc.alpha + r0, block_mods(r0, rn, k_begin));
      }
    }
    for (std::int64_t bl = 0; bl < blocks; ++bl) {
      if (blk[bl].skips(k_begin, k_end)) continue;
      const std::int64_t r0 = bl * kR;
      const int rn = static_cast<int>(std::min<std::int64_t>(kR, R - r0));
      WithRows<PV>(rn, static_cast<const float*>(sc.p + r0 * kBk), std::int64_t{0}, n,
                   static_cast<const float*>(vt), dp, dp, static_cast<const float*>(sc.alpha + r0),
                   sc.o + r0 * dp, dp);
    }
  }

  // 4. The partial rows.
  const DF df;
  for (std::int64_t r = 0; r < R; ++r) {
    if (!(sc.hi[r] > sc.lo[r])) continue;
    pm[r] = sc.m[r];
    pl[r] = hn::GetLane(hn::SumOfLanes(df, hn::Load(df, sc.l + r * kN)));
    std::copy_n(sc.o + r * dp, dp, po + r * dp);
  }
}

// The rows of (b, hk): their chunks merged by the log-sum-exp rule (a chunk where a row sees no
// key has max -inf and takes no part: never 2^(-inf * 0) = NaN), then written. o: dp floats.
void DecodeFinish(const Problem& pr, float* HWY_RESTRICT o, std::int64_t b, std::int64_t hk) {
  const std::int64_t R = pr.dec.rows, G = pr.group, dp = pr.g.dp, Lq = pr.mask.Lq;
  const std::int64_t S = pr.dec.splits, first = (b * pr.Hkv + hk) * S;
  const ValidRanges v = valid_ranges(pr.mask, b);
  const DF df;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t qi = r / G, h = hk * G + r % G;
    if (!v.has_query(qi)) continue;  // a padded query: ZeroPaddedRows writes it
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t c = 0; c < S; ++c) m = std::max(m, pr.dec.part_m[(first + c) * R + r]);
    std::fill(o, o + dp, 0.0f);
    float l = 0;
    if (m != -std::numeric_limits<float>::infinity()) {
      for (std::int64_t c = 0; c < S; ++c) {
        const float mc = pr.dec.part_m[(first + c) * R + r];
        if (mc == -std::numeric_limits<float>::infinity()) continue;
        const float w = std::exp2((mc - m) * pr.exp2_scale);
        l += w * pr.dec.part_l[(first + c) * R + r];
        const float* src = pr.dec.part_o + ((first + c) * R + r) * dp;
        const VF vw = hn::Set(df, w);
        for (std::int64_t d = 0; d < dp; d += kN)
          hn::Store(hn::MulAdd(vw, hn::Load(df, src + d), hn::Load(df, o + d)), df, o + d);
      }
    }
    WriteRow(pr, h, (b * pr.H + h) * Lq + qi, o, m, l,
             m != -std::numeric_limits<float>::infinity());
  }
}

// Padded query rows of head bh (= b * H + h): 0 and lse -inf.
void ZeroPaddedRows(const Problem& pr, std::int64_t bh) {
  const ValidRanges s = valid_ranges(pr.mask, bh / pr.H);
  const std::int64_t Lq = pr.mask.Lq, D = pr.D;
  const DF df;
  for (std::int64_t i = 0; i < Lq; ++i) {
    if (s.has_query(i)) continue;
    const std::int64_t row = bh * Lq + i;
    if (pr.out_bf16) {
      std::fill_n(static_cast<std::uint16_t*>(pr.out) + row * D, D, std::uint16_t{0});
    } else if (pr.stream) {
      float* out = static_cast<float*>(pr.out) + row * D;
      for (std::int64_t d = 0; d < D; d += kN) hn::Stream(hn::Zero(df), df, out + d);
    } else {
      std::fill_n(static_cast<float*>(pr.out) + row * D, D, 0.0f);
    }
    if (pr.lse) pr.lse[row] = -std::numeric_limits<float>::infinity();
    if (pr.row_max) {
      pr.row_max[row] = -std::numeric_limits<float>::infinity();
      pr.row_sum[row] = 0.0f;
    }
  }
}

// Streaming (non-temporal) stores are fine as they are; the stream flush is what orders them
// before the parallel region's barrier.
void FlushStores() {
  hwy::FlushStream();
}

}  // namespace HWY_NAMESPACE
}  // namespace maskcheck::cpu::attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {
namespace attn {
HWY_EXPORT(GetGeometry);
HWY_EXPORT(PackTile);
HWY_EXPORT(RunTile);
HWY_EXPORT(DecodeItem);
HWY_EXPORT(DecodeFinish);
HWY_EXPORT(ZeroPaddedRows);
HWY_EXPORT(FlushStores);

// The packed K/V tiles of the calling thread's last call, kept to avoid page faults per call; it
// grows to the largest problem seen.
struct PackBuffer {
  hwy::AlignedFreeUniquePtr<float[]> data;
  std::size_t size = 0;
  float* get(std::size_t n) {
    if (n > size) {
      data = hwy::AllocateAligned<float>(n);
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data.get();
  }
};
}  // namespace attn

namespace {
// attention_forward, and with stats the backward's first pass (out in f32 whatever t is).
void forward(const AttentionShape& p, const MaskView& mask, DType t, const void* q, const void* k,
             const void* v, void* out, float* lse, float* row_max, float* row_sum,
             const PagedKvView* paged = nullptr, const KeyRange* clip = nullptr) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  require_cpu_dtype(t);
  const std::int64_t B = mask.B, H = p.H, Hkv = p.Hkv, Lq = mask.Lq, D = p.D;
  if (B == 0 || H == 0 || Lq == 0 || D == 0) return;

  attn::Problem pr;
  pr.q = q;
  pr.k = k;
  pr.v = v;
  pr.out = out;
  pr.lse = lse;
  pr.row_max = row_max;
  pr.row_sum = row_sum;
  pr.mask = mask;
  pr.bf16 = t == DType::bf16;
  pr.out_bf16 = pr.bf16 && row_max == nullptr;
  pr.H = H;
  pr.Hkv = Hkv;
  pr.group = H / Hkv;
  pr.D = D;
  const double scale = p.effective_scale();
  pr.qsign = scale < 0 ? -1.0f : 1.0f;
  pr.exp2_scale = static_cast<float>(std::fabs(scale) * 1.4426950408889634);
  std::vector<float> alibi(p.mods.alibi_slopes.begin(), p.mods.alibi_slopes.end());
  pr.softcap = static_cast<float>(p.mods.softcap);
  pr.alibi = alibi.empty() ? nullptr : alibi.data();
  pr.sinks = p.mods.sink_logits.empty() ? nullptr : p.mods.sink_logits.data();
  pr.modified = pr.softcap != 0 || pr.alibi != nullptr;
  if (pr.modified) {  // scores in natural units: Q times the scale
    pr.qsign = static_cast<float>(scale);
    pr.exp2_scale = static_cast<float>(1.4426950408889634);
  }
  pr.g = HWY_DYNAMIC_DISPATCH(attn::GetGeometry)(D);
  const attn::Geometry g = pr.g;
  if (paged) {
    pr.block_table = paged->block_table;
    pr.page_size = paged->page_size;
    pr.max_pages = paged->max_pages;
  }
  pr.v_direct = !pr.bf16 && g.dp == D && !paged;
  if (clip) {
    pr.clip_begin = clip->begin;
    pr.clip_end = clip->end;
  }
  // Decode-shaped problems (the rows of a sequence's kv head, Lq times the group, fit one query
  // tile) take the decode path: K and V packed tile by tile as the rows need them, once for the
  // whole group, and the keys split into chunks of at least 4 tiles so that few (sequence, kv
  // head) pairs still give every thread work. The split depends on the problem alone, so results
  // do not depend on the thread count. (Not for the backward's statistics: they come per row from
  // the tiled path.)
  attn::Decode& dec = pr.dec;
  std::int64_t max_k_tiles = 0;
  for (std::int64_t b = 0; b < B; ++b)
    max_k_tiles = std::max(max_k_tiles, attn::ceil_div(valid_ranges(mask, b).k_len, g.bk));
  dec.on = row_max == nullptr && Lq * pr.group <= g.bq;
  hwy::AlignedFreeUniquePtr<float[]> part;  // aligned: the merge loads whole vectors
  if (dec.on) {
    dec.rows = Lq * pr.group;
    dec.splits = std::clamp<std::int64_t>(attn::ceil_div(16, B * Hkv), 1,
                                          std::max<std::int64_t>(1, max_k_tiles / 4));
    const std::int64_t parts = B * Hkv * dec.splits * dec.rows;
    part = hwy::AllocateAligned<float>(static_cast<std::size_t>(parts * (g.dp + 2)));
    if (!part) throw std::bad_alloc();
    dec.part_o = part.get();
    dec.part_m = dec.part_o + parts * g.dp;
    dec.part_l = dec.part_m + parts;
  }
  // Outputs larger than the caches go around them (aligned full vectors only).
  pr.stream = !dec.on && !pr.out_bf16 && g.dp == D &&
              reinterpret_cast<std::uintptr_t>(out) % 64 == 0 &&
              B * H * Lq * D * 4 >= (std::int64_t{16} << 20);

  // Sequence b's slab: Hkv heads of ceil(k_len / bk) tiles of K^T [D, bk] then V [bk, dp]
  // (the tiled path only).
  std::vector<std::int64_t> slab(static_cast<std::size_t>(B));
  std::int64_t total = 0, max_q_tiles = 0;
  for (std::int64_t b = 0; b < B && !dec.on; ++b) {
    const ValidRanges s = valid_ranges(mask, b);
    const std::int64_t tiles = attn::ceil_div(s.k_len, g.bk);
    slab[static_cast<std::size_t>(b)] = total;
    total += Hkv * attn::slab_stride(pr, tiles);
    max_q_tiles = std::max(max_q_tiles, attn::ceil_div(s.q_len, g.bq));
  }
  if (!dec.on) {
    thread_local attn::PackBuffer pack;
    pr.pack = pack.get(static_cast<std::size_t>(std::max<std::int64_t>(total, 1)));
  }
  pr.slab = slab.data();

  const std::int64_t pack_items = dec.on ? 0 : B * Hkv * max_k_tiles;
  const std::int64_t heads = B * H;
  const std::int64_t tile_items = dec.on ? 0 : heads * max_q_tiles;
  const std::int64_t decode_items = dec.on ? B * Hkv * dec.splits : 0;
#pragma omp parallel
  {
    const std::size_t bq = static_cast<std::size_t>(g.bq);
    auto sq = hwy::AllocateAligned<float>(bq * static_cast<std::size_t>(D));
    auto so = hwy::AllocateAligned<float>(bq * static_cast<std::size_t>(g.dp));
    auto sm = hwy::AllocateAligned<float>(bq);
    auto sl = hwy::AllocateAligned<float>(bq * 64);
    auto sp = hwy::AllocateAligned<float>(bq * static_cast<std::size_t>(g.bk));
    auto sa = hwy::AllocateAligned<float>(bq);
    auto slo = hwy::AllocateAligned<std::int64_t>(bq);
    auto shi = hwy::AllocateAligned<std::int64_t>(bq);
    auto sslo = hwy::AllocateAligned<std::int64_t>(bq);
    auto sshi = hwy::AllocateAligned<std::int64_t>(bq);
    auto sdg = hwy::AllocateAligned<std::int64_t>(bq);
    const attn::Scratch sc{sq.get(),  so.get(),  sm.get(),   sl.get(),   sp.get(), sa.get(),
                           slo.get(), shi.get(), sslo.get(), sshi.get(), sdg.get()};

    if (dec.on) {
      // The thread's K^T and V tiles, then every chunk of every (sequence, kv head), then the
      // merge (after the loop's barrier).
      auto kt = hwy::AllocateAligned<float>(static_cast<std::size_t>(D * g.bk));
      auto vt = hwy::AllocateAligned<float>(static_cast<std::size_t>(g.bk * g.dp));
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t i = 0; i < decode_items; ++i) {
        const std::int64_t split = i % dec.splits, bh = i / dec.splits;
        HWY_DYNAMIC_DISPATCH(attn::DecodeItem)
        (pr, sc, kt.get(), vt.get(), bh / Hkv, bh % Hkv, split);
      }
#pragma omp for schedule(static) nowait
      for (std::int64_t bh = 0; bh < B * Hkv; ++bh)
        HWY_DYNAMIC_DISPATCH(attn::DecodeFinish)(pr, so.get(), bh / Hkv, bh % Hkv);
    }

#pragma omp for schedule(dynamic, 4)
    for (std::int64_t i = 0; i < pack_items; ++i) {
      const std::int64_t kt = i % max_k_tiles, hk = (i / max_k_tiles) % Hkv,
                         b = i / (max_k_tiles * Hkv);
      HWY_DYNAMIC_DISPATCH(attn::PackTile)(pr, b, hk, kt);
    }
    // Head by head (consecutive items share K/V tiles in cache), each head's heaviest query
    // tiles first (under a causal mask later rows see more keys), so that the last items are
    // light ones; dynamic, so that uneven lengths balance too.
#pragma omp for schedule(dynamic, 1) nowait
    for (std::int64_t i = 0; i < tile_items; ++i) {
      const std::int64_t tq = max_q_tiles - 1 - i % max_q_tiles, bh = i / max_q_tiles;
      HWY_DYNAMIC_DISPATCH(attn::RunTile)(pr, sc, bh / H, bh % H, tq);
    }
    // Padded query rows: 0 and lse -inf.
#pragma omp for schedule(static) nowait
    for (std::int64_t bh = 0; bh < heads; ++bh) HWY_DYNAMIC_DISPATCH(attn::ZeroPaddedRows)(pr, bh);
    if (pr.stream) HWY_DYNAMIC_DISPATCH(attn::FlushStores)();
  }
}
}  // namespace

void attention_forward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                       const void* k, const void* v, void* out, float* lse) {
  forward(p, mask, t, q, k, v, out, lse, nullptr, nullptr);
}

void attention_forward_chunk(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, std::int64_t key_begin,
                             std::int64_t key_end, void* out, float* lse) {
  if (key_begin < 0 || key_end < key_begin || key_end > mask.Lk)
    throw InvalidArgument("key_begin", std::to_string(key_begin),
                          "must satisfy 0 <= key_begin <= key_end <= Lk");
  if (!p.mods.sink_logits.empty())
    throw InvalidArgument("sink_logits", "given", "a split-KV chunk takes none (merge the sink)");
  const KeyRange clip{key_begin, key_end};
  forward(p, mask, t, q, k, v, out, lse, nullptr, nullptr, nullptr, &clip);
}

void attention_forward_paged(const AttentionShape& p, const MaskView& mask, const PagedKvView& kv,
                             DType t, const void* q, const void* k_cache, const void* v_cache,
                             void* out, float* lse) {
  if (kv.page_size < 1 || (kv.block_table == nullptr && mask.B * kv.max_pages > 0) ||
      mask.Lk > kv.max_pages * kv.page_size)
    throw InvalidArgument("paged", "page_size " + std::to_string(kv.page_size),
                          "needs page_size >= 1, a block table and Lk <= max_pages * page_size");
  if (mask.padding == PaddingSide::left && mask.k_lens != nullptr)
    throw InvalidArgument("padding", "left", "a paged cache is right-padded");
  forward(p, mask, t, q, k_cache, v_cache, out, lse, nullptr, nullptr, &kv);
}

namespace detail {
void attention_forward_stats(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, float* out, float* row_max,
                             float* row_sum) {
  forward(p, mask, t, q, k, v, out, nullptr, row_max, row_sum);
}
}  // namespace detail

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
