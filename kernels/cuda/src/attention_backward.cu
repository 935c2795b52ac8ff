// Masked attention backward on the GPU, deterministic (no floating-point atomics).
//   q, dout, dq: [B, H, Lq, D]; k, v, dk, dv: [B, Hkv, Lk, D] (f32, f16 or bf16 storage, fp32
//   arithmetic). The gradients of out = softmax(q k^T * scale + mask) v (the reference's
//   attention_backward): per row i and visible key j, p_ij from the recomputed scores,
//   dp_ij = <dout_i, v_j>, delta_i = <dout_i, out_i>, ds_ij = p_ij (dp_ij - delta_i);
//   dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dout_i, the dk
//   and dv sums over every query head of the key's kv head. Each row's visible keys are the
//   interval visible_keys(mask, b, i) of the one predicate; masks are never materialized.
// Complexity: 4 D FLOPs per visible (q, k) pair for the statistics (the forward, recomputed), 8 D
//   for dK/dV (S, dP, dV, dK) and 6 D for dQ (S, dP, dQ), plus the masked remainder of boundary
//   tiles; memory O((Lq + Lk) D) per head.
// Steps (FlashAttention-2's backward with its preprocessing):
//   0. bounds_kernel: each query row's interval [lo, hi) and the predicate's TileBounds of every
//      32 query rows (the fold of row_tile_bounds, by a warp's xor butterfly), [B, Lq] and
//      [B, ceil(Lq / 32)], shared by every head.
//   1. The forward's own kernels (attention.cu, attention_forward_stats) give each row its top key
//      m, 1 / l and delta = <dout_i, out_i> with out_i in fp32. The backward recomputes every score
//      with the same instruction sequence (the same mma k-steps from zero, or the fp32 kernels'
//      one warp_dot), so a score is bit for bit the forward's and a weight is
//      2^((key - m) |scale| log2 e) / l with key <= m exactly: huge scores stay exact (no single
//      log-sum-exp, whose rounding would be multiplied by |scale| log2 e).
//   2. dK/dV: one block per (b, kv head, 64 keys), 16 keys per warp; it walks the query tiles that
//      see its keys (TileBounds::skips), every query head of the group in order, Q and dO tiles
//      double-buffered (cp.async). fp16/bf16 on tensor cores (mma.sync m16n8k16, fp32
//      accumulation), in the transposed form S^T = K Q^T, dP^T = V dO^T, so that P^T and dS^T
//      are, from the accumulators, the A operands of dV += P^T dO and dK += dS^T Q. D > 128 runs
//      dK and dV as two passes (registers).
//   3. dQ: one block per (b, head, 64 query rows), 16 rows per warp, over the key tiles of the
//      rows' span (K/V double-buffered): S = Q K^T, dP = dO V^T, dQ += dS K.
//   Tiles no row sees are never touched (in 2 also per warp); tiles every row with a visible key
//   sees in full (TileBounds::unmasked) skip the per-element test, which boundary tiles apply.
//   fp32 has no tensor-core path: one warp per query row (dQ) and per key (dK/dV), over exactly
//   the visible pairs.
// Exactness: padded and invisible rows and keys are loaded as zeros (padding is never read, so
//   NaN there changes nothing), and a row without a visible key has m = 1 / l = delta = 0, so its
//   weights are 2^0 * 0 = 0 and its ds 0 without a test; masked elements are selected to 0, never
//   multiplied. Keys no query sees get dk = dv = +0.0 and rows that see no key dq = +0.0 (written,
//   or sums of exact zeros plus +0.0). Negative scales: the scores' operand whose sign the forward
//   flips (Q there) is flipped the same way, exactly (sign bits of the fragments), and the
//   gradients take the signed scale at the end.
// Determinism: every output element is written by one thread, after sums in a fixed order (keys
//   and query tiles ascending, query heads ascending), so two runs agree bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "attention_internal.cuh"
#include "common.cuh"
#include "maskcheck/kernels/exp2_scale.hpp"
#include "tensor_core.cuh"

namespace maskcheck::cuda {
namespace {

using Bounds = BasicTileBounds<int, false>;  // no gap: the CUDA kernels decline sinks

constexpr int kMaxD = detail::kMaxHeadDim;
constexpr int kBoundRows = 32;  // query rows per precomputed TileBounds (one warp)

// What every kernel of a call reads besides the operands.
struct Plan {
  const int* lo = nullptr;  // [B, Lq]: the row's visible keys [lo, hi), {0, 0} without any
  const int* hi = nullptr;
  const int* ok = nullptr;         // [B, Lq]: whether the row sees a key
  const Bounds* bounds = nullptr;  // [B, q_bounds]: the TileBounds of each 32 query rows
  const float* m = nullptr;        // [B, H, Lq]: the forward's statistics (RowStats)
  const float* inv_l = nullptr;
  const float* delta = nullptr;
  MaskView mask;
  std::int64_t H = 1, Hkv = 1, group = 1, Lq = 0, Lk = 0, D = 1;
  int q_bounds = 0;  // ceil(Lq / kBoundRows)
  Exp2Scale sc;
  float scale = 1.f;      // the scale, signed, as dq and dk take it at the end
  std::uint32_t neg = 0;  // 0x80008000 for a negative scale: flips both halves of a fragment
};

// The workspace: statistics, row intervals, tile bounds; each array 256-byte aligned.
struct Workspace {
  float *m = nullptr, *inv_l = nullptr, *delta = nullptr;
  int *lo = nullptr, *hi = nullptr, *ok = nullptr;
  Bounds* bounds = nullptr;
  std::size_t bytes = 0;
};
Workspace carve(void* base, std::int64_t B, std::int64_t H, std::int64_t Lq) {
  Workspace w;
  auto* p = static_cast<unsigned char*>(base);
  auto take = [&](std::size_t n) {
    unsigned char* at = p ? p + w.bytes : nullptr;
    w.bytes += (n + 255) / 256 * 256;
    return at;
  };
  const auto rows = static_cast<std::size_t>(B * H * Lq),
             seq_rows = static_cast<std::size_t>(B * Lq);
  const auto tiles = static_cast<std::size_t>(B * ((Lq + kBoundRows - 1) / kBoundRows));
  w.m = reinterpret_cast<float*>(take(rows * sizeof(float)));
  w.inv_l = reinterpret_cast<float*>(take(rows * sizeof(float)));
  w.delta = reinterpret_cast<float*>(take(rows * sizeof(float)));
  w.lo = reinterpret_cast<int*>(take(seq_rows * sizeof(int)));
  w.hi = reinterpret_cast<int*>(take(seq_rows * sizeof(int)));
  w.ok = reinterpret_cast<int*>(take(seq_rows * sizeof(int)));
  w.bounds = reinterpret_cast<Bounds*>(take(tiles * sizeof(Bounds)));
  return w;
}

// ---- 0. row intervals and tile bounds ----------------------------------------------------------

// One warp per 32 query rows of sequence blockIdx.y.
__global__ void bounds_kernel(MaskView mask, std::int64_t Lq, int q_bounds, int* __restrict__ lo,
                              int* __restrict__ hi, int* __restrict__ ok,
                              Bounds* __restrict__ bounds) {
  const std::int64_t b = blockIdx.y;
  const int t = blockIdx.x, lane = threadIdx.x;
  const std::int64_t i = std::int64_t(t) * kBoundRows + lane;
  KeyRange kr{0, 0};
  if (i < Lq) {
    kr = visible_keys(mask, b, i);
    if (kr.empty()) kr = KeyRange{0, 0};
    lo[b * Lq + i] = static_cast<int>(kr.begin);
    hi[b * Lq + i] = static_cast<int>(kr.end);
    ok[b * Lq + i] = !kr.empty();
  }
  Bounds tb = row_tile_bounds<int, false>(kr);
  for (int o = 16; o > 0; o >>= 1) tb = combine(tb, detail::shfl_xor(tb, o));
  if (lane == 0) bounds[b * q_bounds + t] = tb;
}

// The TileBounds of query rows [i0, i0 + n) of sequence b (i0 and n multiples of kBoundRows).
__device__ __forceinline__ Bounds rows_bounds(const Plan& pl, std::int64_t b, std::int64_t i0,
                                              int n) {
  Bounds tb;
  const std::int64_t t0 = i0 / kBoundRows;
  for (int u = 0; u < n / kBoundRows; ++u)
    if (t0 + u < pl.q_bounds) tb = combine(tb, pl.bounds[b * pl.q_bounds + t0 + u]);
  return tb;
}

// ---- tensor-core kernels (fp16, bf16) --------------------------------------------------------

template <int D_PAD>
struct BwdConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStride = tc::kSmemStride<D_PAD>;
  // dQ: 16 query rows per warp; K/V tiles of kBN keys, double-buffered.
  static constexpr int kBM = 16 * kWarps;
  static constexpr int kBN = D_PAD <= 64 ? 64 : 32;
  // dK/dV: 16 keys per warp; Q/dO tiles of kBQ query rows, double-buffered; for D > 128 the
  // accumulators of dK and dV do not fit the registers together: two passes.
  static constexpr int kBK = 16 * kWarps;
  static constexpr int kBQ = D_PAD <= 64 ? 64 : 32;
  static constexpr bool kSplit = D_PAD > 128;
  static_assert(kBM % kBoundRows == 0 && kBQ % kBoundRows == 0);
  static constexpr std::size_t kHalf = sizeof(std::uint16_t);
  // sQ, sG (dout), 2 x sK, 2 x sV.
  static constexpr std::size_t kDqBytes = kHalf * (2 * kBM + 4 * kBN) * kStride;
  // sK, sV, 2 x sQ, 2 x sG, then 2 x (m, 1 / l, delta, lo, hi) of kBQ rows.
  static constexpr std::size_t kDkvBytes =
      kHalf * (2 * kBK + 4 * kBQ) * kStride + 2 * 5 * kBQ * sizeof(float);
};

// The B operand (keys or rows of a [n][k] tile, k = the head dim) of k-step ks for n-blocks
// 2 np, 2 np + 1: b[0], b[1] and b[2], b[3].
template <int kStride>
__device__ __forceinline__ void load_b(std::uint32_t (&r)[4], const void* tile, int np, int ks,
                                       int lane) {
  tc::ldmatrix_x4(r, static_cast<const std::uint16_t*>(tile) +
                         (np * 16 + lane % 8 + (lane / 16) * 8) * kStride + ks * 16 +
                         ((lane / 8) % 2) * 8);
}
// The A operand of rows [r0, r0 + 16) of a [rows][k] tile, k-step ks.
template <int kStride>
__device__ __forceinline__ void load_a(std::uint32_t (&r)[4], const void* tile, int r0, int ks,
                                       int lane) {
  tc::ldmatrix_x4(r, static_cast<const std::uint16_t*>(tile) + (r0 + lane % 16) * kStride +
                         ks * 16 + (lane / 16) * 8);
}
// The B operand of a [k][n] tile (rows kb16 * 16 .. + 16 as k, head-dim columns as n) for
// n-blocks 2 dp, 2 dp + 1.
template <int kStride>
__device__ __forceinline__ void load_b_trans(std::uint32_t (&r)[4], const void* tile, int kb16,
                                             int dp, int lane) {
  tc::ldmatrix_x4_trans(r, static_cast<const std::uint16_t*>(tile) +
                               (kb16 * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + dp * 16 +
                               (lane / 16) * 8);
}
// The A operand of a 16 x 16 block (n-blocks 2 kb16, 2 kb16 + 1) of fp32 accumulators, rounded.
template <class T, int N>
__device__ __forceinline__ void pack_a(std::uint32_t (&a)[4], const float (&x)[N][4], int kb16) {
  a[0] = tc::pack2<T>(x[2 * kb16][0], x[2 * kb16][1]);
  a[1] = tc::pack2<T>(x[2 * kb16][2], x[2 * kb16][3]);
  a[2] = tc::pack2<T>(x[2 * kb16 + 1][0], x[2 * kb16 + 1][1]);
  a[3] = tc::pack2<T>(x[2 * kb16 + 1][2], x[2 * kb16 + 1][3]);
}

enum class Grads { both, dk, dv };

// 2. dK and dV of keys [n0, n0 + 64) of (b = blockIdx.z, kv head blockIdx.y).
template <class T, int D_PAD, bool VEC, Grads G>
__global__ void __launch_bounds__(BwdConfig<D_PAD>::kThreads)
    dkdv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                const T* __restrict__ dout, T* __restrict__ dk, T* __restrict__ dv, Plan pl) {
  using C = BwdConfig<D_PAD>;
  constexpr bool kDK = G != Grads::dv, kDV = G != Grads::dk;
  constexpr int kBK = C::kBK, kBQ = C::kBQ, kStride = C::kStride, kThreads = C::kThreads;
  constexpr int kKSteps = D_PAD / 16, kDBlocks = D_PAD / 8, kNB = kBQ / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + kBK * kStride;
  T* sQ = sV + kBK * kStride;  // 2 buffers
  T* sG = sQ + 2 * kBQ * kStride;
  float* sM = reinterpret_cast<float*>(sG + 2 * kBQ * kStride);  // 2 buffers each
  float* sIL = sM + 2 * kBQ;
  float* sDl = sIL + 2 * kBQ;
  int* sLo = reinterpret_cast<int*>(sDl + 2 * kBQ);
  int* sHi = sLo + 2 * kBQ;
  __shared__ int s_range[2 * C::kWarps];

  const std::int64_t b = blockIdx.z, hk = blockIdx.y;
  const int n0 = blockIdx.x * kBK;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const std::int64_t Lq = pl.Lq, Lk = pl.Lk, D = pl.D;
  const KeyRange kv_valid = valid_ranges(pl.mask, b).keys();

  // 1. The query tiles that may see a key of the block: [first, last] (tiles inside that do not,
  //    gaps between documents, are skipped below). Folded by min / max: the same every run.
  const int n_tiles = static_cast<int>((Lq + kBQ - 1) / kBQ);
  int lo_t = n_tiles, hi_t = -1;
  for (int t = tid; t < n_tiles; t += kThreads)
    if (!rows_bounds(pl, b, std::int64_t(t) * kBQ, kBQ).skips(n0, n0 + kBK)) {
      lo_t = min(lo_t, t);
      hi_t = max(hi_t, t);
    }
  for (int o = 16; o > 0; o >>= 1) {
    lo_t = min(lo_t, __shfl_xor_sync(0xffffffffu, lo_t, o));
    hi_t = max(hi_t, __shfl_xor_sync(0xffffffffu, hi_t, o));
  }
  if (lane == 0) {
    s_range[2 * warp] = lo_t;
    s_range[2 * warp + 1] = hi_t;
  }
  __syncthreads();
  int first = n_tiles, last = -1;
  for (int w = 0; w < C::kWarps; ++w) {
    first = min(first, s_range[2 * w]);
    last = max(last, s_range[2 * w + 1]);
  }
  // Positions (query head of the group, tile), heads and tiles ascending; hh == group: done.
  // (Stepped, not divided: a 64-bit division is a call, which costs the kernel spills.)
  struct Pos {
    int hh, t;
  };
  const int group = static_cast<int>(pl.group);
  auto sees = [&](int t) {
    return !rows_bounds(pl, b, std::int64_t(t) * kBQ, kBQ).skips(n0, n0 + kBK);
  };
  auto step = [&](Pos at) {  // the position after `at`
    if (++at.t > last) {
      at.t = first;
      ++at.hh;
    }
    return at;
  };
  auto next = [&](Pos at) {  // the first position from `at` on whose tile sees a key of the block
    while (at.hh < group && !sees(at.t)) at = step(at);
    return at;
  };
  // Q and dO rows of a tile (rows without a visible key as zeros) and their statistics.
  auto load_rows = [&](Pos at, int buf) {
    const std::int64_t h = hk * pl.group + at.hh, i0 = std::int64_t(at.t) * kBQ;
    const std::int64_t row0 = (b * pl.H + h) * Lq;
    const int* ok = pl.ok + b * Lq + i0;
    tc::load_tile<T, D_PAD, VEC, kThreads>(sQ + buf * kBQ * kStride, q + row0 * D, D, i0, kBQ, 0,
                                           Lq, D, ok);
    tc::load_tile<T, D_PAD, VEC, kThreads>(sG + buf * kBQ * kStride, dout + row0 * D, D, i0, kBQ, 0,
                                           Lq, D, ok);
    for (int r = tid; r < kBQ; r += kThreads) {
      const std::int64_t i = i0 + r;
      const bool in = i < Lq;
      sM[buf * kBQ + r] = in ? pl.m[row0 + i] : 0.f;
      sIL[buf * kBQ + r] = in ? pl.inv_l[row0 + i] : 0.f;
      sDl[buf * kBQ + r] = in ? pl.delta[row0 + i] : 0.f;
      sLo[buf * kBQ + r] = in ? pl.lo[b * Lq + i] : 0;
      sHi[buf * kBQ + r] = in ? pl.hi[b * Lq + i] : 0;
    }
  };

  // 2. K (and V) of the block, keys outside the sequence's valid range as zeros, with the first
  //    tile; one cp.async group per tile from there on (empty groups keep the counting uniform).
  Pos cur = next(Pos{last >= first ? 0 : group, first});
  if (cur.hh < group) {
    const std::int64_t kv0 = (b * pl.Hkv + hk) * Lk * D;
    tc::load_tile<T, D_PAD, VEC, kThreads>(sK, k + kv0, D, n0, kBK, kv_valid.begin, kv_valid.end, D,
                                           nullptr);
    if constexpr (kDK)
      tc::load_tile<T, D_PAD, VEC, kThreads>(sV, v + kv0, D, n0, kBK, kv_valid.begin, kv_valid.end,
                                             D, nullptr);
    load_rows(cur, 0);
  }
  tc::cp_async_commit();

  float acc_k[kDK ? kDBlocks : 1][4], acc_v[kDV ? kDBlocks : 1][4];
#pragma unroll
  for (int db = 0; db < kDBlocks; ++db)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if constexpr (kDK) acc_k[db][e] = 0.f;
      if constexpr (kDV) acc_v[db][e] = 0.f;
    }

  const int wk0 = n0 + warp * 16;  // this warp's keys: wk0 + g and wk0 + g + 8 of each fragment
  int buf = 0;
  while (cur.hh < group) {
    tc::cp_async_wait<0>();
    __syncthreads();  // the tile has landed; every warp is done with the other buffer
    const Pos nxt = next(step(cur));
    if (nxt.hh < group) load_rows(nxt, buf ^ 1);
    tc::cp_async_commit();

    const Bounds tb = rows_bounds(pl, b, std::int64_t(cur.t) * kBQ, kBQ);
    const T* tQ = sQ + buf * kBQ * kStride;
    const T* tG = sG + buf * kBQ * kStride;
    const float* m = sM + buf * kBQ;
    const float* il = sIL + buf * kBQ;
    const float* dl = sDl + buf * kBQ;
    const int* rlo = sLo + buf * kBQ;
    const int* rhi = sHi + buf * kBQ;
    cur = nxt;
    buf ^= 1;
    if (tb.skips(wk0, wk0 + 16)) continue;  // no row of the tile sees this warp's keys
    const bool full = tb.unmasked(wk0, wk0 + 16);

    // S^T = K Q^T (K's sign flipped for a negative scale: the forward's keys, bit for bit) and
    // dP^T = V dO^T for the warp's 16 keys and the tile's kBQ rows.
    float st[kNB][4], dpt[kDK ? kNB : 1][4];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        st[nb][e] = 0.f;
        if constexpr (kDK) dpt[nb][e] = 0.f;
      }
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      std::uint32_t ak[4], av[4];
      load_a<kStride>(ak, sK, warp * 16, ks, lane);
#pragma unroll
      for (int x = 0; x < 4; ++x) ak[x] ^= pl.neg;
      if constexpr (kDK) load_a<kStride>(av, sV, warp * 16, ks, lane);
#pragma unroll
      for (int np = 0; np < kBQ / 16; ++np) {
        std::uint32_t bq[4];
        load_b<kStride>(bq, tQ, np, ks, lane);
        tc::mma16816<T>(st[2 * np], ak, bq[0], bq[1]);
        tc::mma16816<T>(st[2 * np + 1], ak, bq[2], bq[3]);
        if constexpr (kDK) {
          std::uint32_t bg[4];
          load_b<kStride>(bg, tG, np, ks, lane);
          tc::mma16816<T>(dpt[2 * np], av, bg[0], bg[1]);
          tc::mma16816<T>(dpt[2 * np + 1], av, bg[2], bg[3]);
        }
      }
    }

    // P^T and dS^T: element (key wk0 + g + 8 (e / 2), row nb * 8 + 2 t4 + e % 2 of the tile).
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nb * 8 + 2 * t4 + (e & 1);
        const int key = wk0 + g + 8 * (e >> 1);
        const bool vis = full || (rlo[col] <= key && key < rhi[col]);
        const float p = tc::fast_exp2(pl.sc.exponent(st[nb][e], m[col])) * il[col];
        if constexpr (kDK) dpt[nb][e] = vis ? p * (dpt[nb][e] - dl[col]) : 0.f;
        st[nb][e] = vis ? p : 0.f;
      }

      // dV += P^T dO and dK += dS^T Q (Q as stored: the signed scale comes at the end).
#pragma unroll
    for (int kb16 = 0; kb16 < kBQ / 16; ++kb16) {
      std::uint32_t ap[4], ad[4];
      if constexpr (kDV) pack_a<T>(ap, st, kb16);
      if constexpr (kDK) pack_a<T>(ad, dpt, kb16);
#pragma unroll
      for (int dp = 0; dp < D_PAD / 16; ++dp) {
        if constexpr (kDV) {
          std::uint32_t bg[4];
          load_b_trans<kStride>(bg, tG, kb16, dp, lane);
          tc::mma16816<T>(acc_v[2 * dp], ap, bg[0], bg[1]);
          tc::mma16816<T>(acc_v[2 * dp + 1], ap, bg[2], bg[3]);
        }
        if constexpr (kDK) {
          std::uint32_t bq[4];
          load_b_trans<kStride>(bq, tQ, kb16, dp, lane);
          tc::mma16816<T>(acc_k[2 * dp], ad, bq[0], bq[1]);
          tc::mma16816<T>(acc_k[2 * dp + 1], ad, bq[2], bq[3]);
        }
      }
    }
  }

  // 3. Write: keys outside the valid range 0; + 0.0f turns the -0.0 of sums of exact zeros into
  //    +0.0 (keys no row sees).
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int key = wk0 + g + 8 * rr;
    if (key >= Lk) continue;
    const bool valid = kv_valid.contains(key);
    const std::int64_t at = ((b * pl.Hkv + hk) * Lk + key) * D;
#pragma unroll
    for (int db = 0; db < kDBlocks; ++db)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = db * 8 + 2 * t4 + e;
        if (col >= D) continue;
        if constexpr (kDK)
          dk[at + col] =
              detail::from_float<T>(valid ? acc_k[db][2 * rr + e] * pl.scale + 0.f : 0.f);
        if constexpr (kDV)
          dv[at + col] = detail::from_float<T>(valid ? acc_v[db][2 * rr + e] + 0.f : 0.f);
      }
  }
}

// 3. dQ of query rows [m0, m0 + 64) of (b = blockIdx.z, head blockIdx.y).
template <class T, int D_PAD, bool VEC>
__global__ void __launch_bounds__(BwdConfig<D_PAD>::kThreads)
    dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
              const T* __restrict__ dout, T* __restrict__ dq, Plan pl) {
  using C = BwdConfig<D_PAD>;
  constexpr int kBM = C::kBM, kBN = C::kBN, kStride = C::kStride, kThreads = C::kThreads;
  constexpr int kKSteps = D_PAD / 16, kDBlocks = D_PAD / 8, kNB = kBN / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sG = sQ + kBM * kStride;
  T* sK = sG + kBM * kStride;      // 2 buffers
  T* sV = sK + 2 * kBN * kStride;  // 2 buffers

  const std::int64_t b = blockIdx.z, h = blockIdx.y;
  // Heavier query tiles (later rows see more keys under a causal mask) start first.
  const std::int64_t m0 = std::int64_t(gridDim.x - 1 - blockIdx.x) * kBM;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const std::int64_t Lq = pl.Lq, D = pl.D;
  const std::int64_t hk = h / pl.group;
  const std::int64_t row0 = (b * pl.H + h) * Lq;  // the head's first row

  const Bounds tb = rows_bounds(pl, b, m0, kBM);
  const int span_lo = tb.span.begin;
  const int tiles = tb.span.empty() ? 0 : (tb.span.end - tb.span.begin + kBN - 1) / kBN;
  const KeyRange kv_valid = valid_ranges(pl.mask, b).keys();
  const T* kb = k + (b * pl.Hkv + hk) * pl.Lk * D;
  const T* vb = v + (b * pl.Hkv + hk) * pl.Lk * D;
  auto load_kv = [&](int tile, int buf) {
    if (tile < tiles) {
      const int first = span_lo + tile * kBN;
      tc::load_tile<T, D_PAD, VEC, kThreads>(sK + buf * kBN * kStride, kb, D, first, kBN,
                                             kv_valid.begin, kv_valid.end, D, nullptr);
      tc::load_tile<T, D_PAD, VEC, kThreads>(sV + buf * kBN * kStride, vb, D, first, kBN,
                                             kv_valid.begin, kv_valid.end, D, nullptr);
    }
    tc::cp_async_commit();
  };
  // Q and dO (rows without a visible key as zeros) ride with the first K/V tile.
  if (tiles > 0) {
    const int* ok = pl.ok + b * Lq + m0;
    tc::load_tile<T, D_PAD, VEC, kThreads>(sQ, q + row0 * D, D, m0, kBM, 0, Lq, D, ok);
    tc::load_tile<T, D_PAD, VEC, kThreads>(sG, dout + row0 * D, D, m0, kBM, 0, Lq, D, ok);
  }
  load_kv(0, 0);

  // This thread's rows g and g + 8 of the warp's 16: intervals and statistics.
  int lo[2], hi[2];
  float rm[2], ril[2], rdl[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t i = m0 + warp * 16 + g + 8 * rr;
    const bool in = i < Lq;
    lo[rr] = in ? pl.lo[b * Lq + i] : 0;
    hi[rr] = in ? pl.hi[b * Lq + i] : 0;
    rm[rr] = in ? pl.m[row0 + i] : 0.f;
    ril[rr] = in ? pl.inv_l[row0 + i] : 0.f;
    rdl[rr] = in ? pl.delta[row0 + i] : 0.f;
  }

  float acc[kDBlocks][4];
#pragma unroll
  for (int db = 0; db < kDBlocks; ++db)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[db][e] = 0.f;

  for (int j = 0; j < tiles; ++j) {
    tc::cp_async_wait<0>();
    __syncthreads();  // tile j has landed; every warp is done with tile j - 1's buffer
    const int n0 = span_lo + j * kBN;
    load_kv(j + 1, (j + 1) & 1);
    const T* tK = sK + (j & 1) * kBN * kStride;
    const T* tV = sV + (j & 1) * kBN * kStride;

    // S = Q K^T (Q's sign flipped for a negative scale, as the forward) and dP = dO V^T.
    float s[kNB][4], dp[kNB][4];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = dp[nb][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      std::uint32_t aq[4], ag[4];
      load_a<kStride>(aq, sQ, warp * 16, ks, lane);
#pragma unroll
      for (int x = 0; x < 4; ++x) aq[x] ^= pl.neg;
      load_a<kStride>(ag, sG, warp * 16, ks, lane);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        std::uint32_t bk[4], bv[4];
        load_b<kStride>(bk, tK, np, ks, lane);
        load_b<kStride>(bv, tV, np, ks, lane);
        tc::mma16816<T>(s[2 * np], aq, bk[0], bk[1]);
        tc::mma16816<T>(s[2 * np + 1], aq, bk[2], bk[3]);
        tc::mma16816<T>(dp[2 * np], ag, bv[0], bv[1]);
        tc::mma16816<T>(dp[2 * np + 1], ag, bv[2], bv[3]);
      }
    }

    // dS: element (row g + 8 (e / 2), key n0 + nb * 8 + 2 t4 + e % 2), into s.
    const bool full = tb.unmasked(n0, n0 + kBN);
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int rr = e >> 1;
        const int col = n0 + nb * 8 + 2 * t4 + (e & 1);
        const bool vis = full || (lo[rr] <= col && col < hi[rr]);
        const float p = tc::fast_exp2(pl.sc.exponent(s[nb][e], rm[rr])) * ril[rr];
        s[nb][e] = vis ? p * (dp[nb][e] - rdl[rr]) : 0.f;
      }

      // dQ += dS K.
#pragma unroll
    for (int kb16 = 0; kb16 < kBN / 16; ++kb16) {
      std::uint32_t a[4];
      pack_a<T>(a, s, kb16);
#pragma unroll
      for (int dpi = 0; dpi < D_PAD / 16; ++dpi) {
        std::uint32_t bk[4];
        load_b_trans<kStride>(bk, tK, kb16, dpi, lane);
        tc::mma16816<T>(acc[2 * dpi], a, bk[0], bk[1]);
        tc::mma16816<T>(acc[2 * dpi + 1], a, bk[2], bk[3]);
      }
    }
  }

  // Write: rows without a visible key +0.0 whatever the sums hold.
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t i = m0 + warp * 16 + g + 8 * rr;
    if (i >= Lq) continue;
    const bool empty = hi[rr] <= lo[rr];
    T* o = dq + (row0 + i) * D;
#pragma unroll
    for (int db = 0; db < kDBlocks; ++db)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = db * 8 + 2 * t4 + e;
        if (col < D)
          o[col] = detail::from_float<T>(empty ? 0.f : acc[db][2 * rr + e] * pl.scale + 0.f);
      }
  }
}

// One cudaFuncSetAttribute per kernel instantiation and process (host-side, benign race).
template <class Kernel>
void allow_smem(Kernel kernel, std::size_t bytes, bool& configured) {
  if (configured) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)),
        "attention_backward: shared memory attribute");
  configured = true;
}

template <class T, int D_PAD, bool VEC, Grads G>
void launch_dkdv(const T* q, const T* k, const T* v, const T* dout, T* dk, T* dv, const Plan& pl,
                 std::int64_t B, cudaStream_t stream) {
  using C = BwdConfig<D_PAD>;
  static bool configured = false;
  allow_smem(dkdv_kernel<T, D_PAD, VEC, G>, C::kDkvBytes, configured);
  const dim3 grid(static_cast<unsigned>((pl.Lk + C::kBK - 1) / C::kBK),
                  static_cast<unsigned>(pl.Hkv), static_cast<unsigned>(B));
  dkdv_kernel<T, D_PAD, VEC, G>
      <<<grid, C::kThreads, C::kDkvBytes, stream>>>(q, k, v, dout, dk, dv, pl);
  detail::check_launch("attention_backward dkdv_kernel");
}

template <class T, int D_PAD, bool VEC>
void launch_tensor_cores(const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk, T* dv,
                         const Plan& pl, std::int64_t B, cudaStream_t stream) {
  using C = BwdConfig<D_PAD>;
  if (pl.Lk > 0) {
    if constexpr (C::kSplit) {
      launch_dkdv<T, D_PAD, VEC, Grads::dk>(q, k, v, dout, dk, dv, pl, B, stream);
      launch_dkdv<T, D_PAD, VEC, Grads::dv>(q, k, v, dout, dk, dv, pl, B, stream);
    } else {
      launch_dkdv<T, D_PAD, VEC, Grads::both>(q, k, v, dout, dk, dv, pl, B, stream);
    }
  }
  static bool configured = false;
  allow_smem(dq_kernel<T, D_PAD, VEC>, C::kDqBytes, configured);
  const dim3 grid(static_cast<unsigned>((pl.Lq + C::kBM - 1) / C::kBM), static_cast<unsigned>(pl.H),
                  static_cast<unsigned>(B));
  dq_kernel<T, D_PAD, VEC><<<grid, C::kThreads, C::kDqBytes, stream>>>(q, k, v, dout, dq, pl);
  detail::check_launch("attention_backward dq_kernel");
}

// ---- fp32: one warp per query row (dQ) and per key (dK/dV) --------------------------------

template <class T>
__global__ void dq_rows_kernel(const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, const T* __restrict__ dout,
                               T* __restrict__ dq, Plan pl, std::int64_t rows) {
  constexpr int kPer = kMaxD / 32;
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
  const std::int64_t Lq = pl.Lq, D = pl.D;
  for (std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {  // r = (b H + h) Lq + i
    const std::int64_t i = r % Lq, h = (r / Lq) % pl.H, b = r / (Lq * pl.H);
    const std::int64_t kv0 = (b * pl.Hkv + h / pl.group) * pl.Lk;
    const int lo = pl.lo[b * Lq + i], hi = pl.hi[b * Lq + i];
    // The forward's keys: sign(scale) q, in the lanes as the forward holds them.
    float qv[kPer], gv[kPer], acc[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const std::int64_t d = lane + 32 * u;
      const bool in = d < D && lo < hi;
      qv[u] = in ? pl.sc.key(detail::to_float(q[r * D + d])) : 0.f;
      gv[u] = in ? detail::to_float(dout[r * D + d]) : 0.f;
      acc[u] = 0.f;
    }
    const float m = pl.m[r], il = pl.inv_l[r], dl = pl.delta[r];
    for (int j = lo; j < hi; ++j) {
      const T* kr = k + (kv0 + j) * D;
      const float s = detail::warp_dot(qv, kr, lane, D, 1.f);
      const float dp = detail::warp_dot(gv, v + (kv0 + j) * D, lane, D, 1.f);
      const float ds = exp2f(pl.sc.exponent(s, m)) * il * (dp - dl);
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const std::int64_t d = lane + 32 * u;
        if (d < D) acc[u] = fmaf(ds, detail::to_float(kr[d]), acc[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const std::int64_t d = lane + 32 * u;
      if (d < D) dq[r * D + d] = detail::from_float<T>(lo < hi ? acc[u] * pl.scale + 0.f : 0.f);
    }
  }
}

template <class T>
__global__ void dkdv_rows_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                 const T* __restrict__ v, const T* __restrict__ dout,
                                 T* __restrict__ dk, T* __restrict__ dv, Plan pl,
                                 std::int64_t keys) {
  constexpr int kPer = kMaxD / 32;
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
  const std::int64_t Lq = pl.Lq, Lk = pl.Lk, D = pl.D;
  for (std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < keys;
       r += warps) {  // r = (b Hkv + hk) Lk + j
    const std::int64_t j = r % Lk, hk = (r / Lk) % pl.Hkv, b = r / (Lk * pl.Hkv);
    const bool valid = valid_ranges(pl.mask, b).keys().contains(j);
    float kv[kPer], vv[kPer], ak[kPer], av[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const std::int64_t d = lane + 32 * u;
      const bool in = valid && d < D;
      kv[u] = in ? detail::to_float(k[r * D + d]) : 0.f;
      vv[u] = in ? detail::to_float(v[r * D + d]) : 0.f;
      ak[u] = av[u] = 0.f;
    }
    for (std::int64_t h = hk * pl.group; valid && h < (hk + 1) * pl.group; ++h) {
      const std::int64_t row0 = (b * pl.H + h) * Lq;
      for (int t = 0; t < pl.q_bounds; ++t) {
        if (pl.bounds[b * pl.q_bounds + t].skips(static_cast<int>(j), static_cast<int>(j) + 1))
          continue;
        const std::int64_t i_end = min(std::int64_t(t + 1) * kBoundRows, Lq);
        for (std::int64_t i = std::int64_t(t) * kBoundRows; i < i_end; ++i) {
          if (!(pl.lo[b * Lq + i] <= j && j < pl.hi[b * Lq + i])) continue;
          const T* qr = q + (row0 + i) * D;
          const T* gr = dout + (row0 + i) * D;
          // The forward's score: sign(scale) q . k, the same products in the same order.
          const float s = detail::warp_dot(kv, qr, lane, D, pl.sc.sign);
          const float dp = detail::warp_dot(vv, gr, lane, D, 1.f);
          const float p = exp2f(pl.sc.exponent(s, pl.m[row0 + i])) * pl.inv_l[row0 + i];
          const float ds = p * (dp - pl.delta[row0 + i]);
#pragma unroll
          for (int u = 0; u < kPer; ++u) {
            const std::int64_t d = lane + 32 * u;
            if (d < D) {
              av[u] = fmaf(p, detail::to_float(gr[d]), av[u]);
              ak[u] = fmaf(ds, detail::to_float(qr[d]), ak[u]);
            }
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const std::int64_t d = lane + 32 * u;
      if (d < D) {
        dk[r * D + d] = detail::from_float<T>(valid ? ak[u] * pl.scale + 0.f : 0.f);
        dv[r * D + d] = detail::from_float<T>(valid ? av[u] + 0.f : 0.f);
      }
    }
  }
}

template <class T>
void run(const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk, T* dv, const Plan& pl,
         std::int64_t B, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    const int threads = 256;
    const std::int64_t rows = B * pl.H * pl.Lq, keys = B * pl.Hkv * pl.Lk;
    if (keys > 0) {
      dkdv_rows_kernel<T><<<detail::grid_for(keys * 32, threads), threads, 0, stream>>>(
          q, k, v, dout, dk, dv, pl, keys);
      detail::check_launch("attention_backward dkdv_rows_kernel");
    }
    dq_rows_kernel<T>
        <<<detail::grid_for(rows * 32, threads), threads, 0, stream>>>(q, k, v, dout, dq, pl, rows);
    detail::check_launch("attention_backward dq_rows_kernel");
  } else {
    auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    const bool vec = pl.D % 8 == 0 && aligned(q) && aligned(k) && aligned(v) && aligned(dout);
    detail::dispatch_head_dim(pl.D, [&](auto d_pad) {
      constexpr int kPad = decltype(d_pad)::value;
      if (vec) {
        launch_tensor_cores<T, kPad, true>(q, k, v, dout, dq, dk, dv, pl, B, stream);
      } else {
        launch_tensor_cores<T, kPad, false>(q, k, v, dout, dq, dk, dv, pl, B, stream);
      }
    });
  }
}

// Lengths whose key positions, and the tiles past them, fit in an int.
constexpr std::int64_t kMaxLen = (std::int64_t{1} << 31) - 1024;

}  // namespace

std::size_t attention_backward_workspace_bytes(const AttentionShape& p, const MaskView& mask) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  return carve(nullptr, mask.B, p.H, mask.Lq).bytes;
}

void attention_backward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                        const void* k, const void* v, const void* dout, void* dq, void* dk,
                        void* dv, void* workspace, cudaStream_t stream) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  require_cuda_dtype(t);
  const std::int64_t B = mask.B, H = p.H, Hkv = p.Hkv, Lq = mask.Lq, Lk = mask.Lk, D = p.D;
  detail::check_attention_limits(B, H, D);
  require(Lq <= kMaxLen, "Lq", Lq, "the CUDA attention backward takes Lq <= 2^31 - 1024");
  require(Lk <= kMaxLen, "Lk", Lk, "the CUDA attention backward takes Lk <= 2^31 - 1024");
  const std::size_t es = dtype_bytes(t);
  const auto kv_bytes = static_cast<std::size_t>(B * Hkv * Lk * D) * es;
  if (B * H * Lq * D == 0) {  // no query: every key's gradients are +0.0
    if (kv_bytes > 0) {
      check(cudaMemsetAsync(dk, 0, kv_bytes, stream), "attention_backward: dk");
      check(cudaMemsetAsync(dv, 0, kv_bytes, stream), "attention_backward: dv");
    }
    return;
  }
  require(workspace != nullptr, "workspace", 0,
          "must hold attention_backward_workspace_bytes(p, mask) bytes of device memory");
  const Workspace w = carve(workspace, B, H, Lq);

  const double scale = p.effective_scale();
  const Plan pl{.lo = w.lo,
                .hi = w.hi,
                .ok = w.ok,
                .bounds = w.bounds,
                .m = w.m,
                .inv_l = w.inv_l,
                .delta = w.delta,
                .mask = mask,
                .H = H,
                .Hkv = Hkv,
                .group = H / Hkv,
                .Lq = Lq,
                .Lk = Lk,
                .D = D,
                .q_bounds = static_cast<int>((Lq + kBoundRows - 1) / kBoundRows),
                .sc = exp2_scale(scale),
                .scale = static_cast<float>(scale),
                .neg = scale < 0 ? 0x80008000u : 0u};

  // 0. Row intervals and tile bounds; 1. the forward's statistics.
  bounds_kernel<<<dim3(static_cast<unsigned>(pl.q_bounds), static_cast<unsigned>(B)), 32, 0,
                  stream>>>(mask, Lq, pl.q_bounds, w.lo, w.hi, w.ok, w.bounds);
  detail::check_launch("attention_backward bounds_kernel");
  detail::attention_forward_stats(p, mask, t, q, k, v,
                                  detail::RowStats{dout, w.m, w.inv_l, w.delta}, stream);
  // 2. dK, dV; 3. dQ.
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run<T>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
           static_cast<const T*>(dout), static_cast<T*>(dq), static_cast<T*>(dk),
           static_cast<T*>(dv), pl, B, stream);
  });
}

}  // namespace maskcheck::cuda
