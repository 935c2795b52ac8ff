// Masked attention forward on the GPU.
//   padded: q [B, H, Lq, D], k, v [B, Hkv, Lk, D], out [B, H, Lq, D], lse [B, H, Lq] (fp32)
//   packed (varlen, no padding): q [T_q, H, D], k, v [T_k, Hkv, D], out [T_q, H, D], lse [H, T_q]
//   O = softmax(Q K^T * scale + mask) V; head h reads kv head h / (H / Hkv).
// Each query row's visible keys are the interval visible_keys(mask, b, q) of the one predicate;
// a row with none gets O = 0 and lse = -inf. Masks are never materialized.
// Complexity: 4 * D FLOPs per visible (q, k) pair plus the masked remainder of boundary tiles;
// memory O((Lq + Lk) * D) per (b, h).
// Versions:
//   rows_kernel  (fp32): one warp per query row, FMA over exactly the row's visible keys with an
//                online softmax. Reads nothing outside the interval. Any D <= 256.
//   flash_kernel (fp16/bf16): FlashAttention-2 style. A block owns 128 query rows of one (b, h)
//                (4 warps x 32 rows; 8 x 16 for D > 128); K/V tiles of 64 keys (32 for
//                D > 128) stream through shared memory
//                (cp.async, double-buffered); S = Q K^T and O += P V run on tensor cores
//                (mma.sync m16n8k16, fp32 accumulate); online softmax in registers with exp2.
//                Both kernels keep scores as keys sign(scale) q.k (Q negated for a negative scale)
//                and form each weight's exponent relative to the row's top key, the same way in
//                every tile: (key - max) |scale| log2 e (exp2_scale.hpp).
//                Tile skipping derives from the rows' intervals, folded into the predicate's
//                TileBounds (each thread its row, each warp by an xor-shuffle butterfly, then
//                the block): only tiles inside the span of the block's intervals are visited,
//                tiles inside the interval of every row that sees a key skip the per-element
//                test, the rest (boundary tiles) apply it. Keys outside the
//                sequence's valid range and Q rows without visible keys are loaded as zeros,
//                so padding may hold anything (NaN included).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <limits>

#include "attention_internal.cuh"
#include "common.cuh"
#include "maskcheck/kernels/exp2_scale.hpp"
#include "tensor_core.cuh"

namespace maskcheck::cuda {
namespace {

constexpr int kMaxD = detail::kMaxHeadDim;

// Where rows of q / k / v / out / lse live for sequence b and head h, in either layout.
struct Layout {
  bool packed = false;
  const std::int32_t* cu_q = nullptr;  // packed: [B + 1], device
  const std::int32_t* cu_k = nullptr;
  std::int64_t H = 1, Hkv = 1, Lq = 0, Lk = 0, D = 1, total_q = 0;

  __device__ std::int64_t q_row(std::int64_t b, std::int64_t h, std::int64_t i) const {
    return packed ? ((cu_q[b] + i) * H + h) * D : ((b * H + h) * Lq + i) * D;
  }
  __device__ std::int64_t kv_row(std::int64_t b, std::int64_t hk, std::int64_t j) const {
    return packed ? ((cu_k[b] + j) * Hkv + hk) * D : ((b * Hkv + hk) * Lk + j) * D;
  }
  __device__ std::int64_t q_stride() const { return packed ? H * D : D; }
  __device__ std::int64_t kv_stride() const { return packed ? Hkv * D : D; }
  __device__ std::int64_t lse_index(std::int64_t b, std::int64_t h, std::int64_t i) const {
    return packed ? h * total_q + cu_q[b] + i : (b * H + h) * Lq + i;
  }
  // Query rows that exist for sequence b (padded: Lq; packed: the sequence's length).
  __device__ std::int64_t q_extent(std::int64_t b) const {
    return packed ? cu_q[b + 1] - cu_q[b] : Lq;
  }
};

// ---- v1: fp32, one warp per query row --------------------------------------------------------

// STATS: the backward's row statistics (attention_internal.cuh) instead of out and lse.
template <class T, bool STATS>
__global__ void rows_kernel(const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, T* __restrict__ out, float* __restrict__ lse,
                            detail::RowStats st, MaskView mask, Layout lay, Exp2Scale sc,
                            std::int64_t group, std::int64_t rows) {
  constexpr int kPer = kMaxD / 32;
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    const std::int64_t i = r % lay.Lq, h = (r / lay.Lq) % lay.H, b = r / (lay.Lq * lay.H);
    if (i >= lay.q_extent(b)) continue;
    const KeyRange range = visible_keys(mask, b, i);
    const std::int64_t hk = h / group;
    float qv[kPer], acc[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const std::int64_t d = lane + 32 * u;
      qv[u] =
          d < lay.D && !range.empty() ? sc.key(detail::to_float(q[lay.q_row(b, h, i) + d])) : 0.f;
      acc[u] = 0.f;
    }
    // dot: a key, sign(scale) q.k; m: the top key so far, l = sum 2^exponent(dot, m).
    float m = -INFINITY, l = 0.f;
    for (std::int64_t j = range.begin; j < range.end; ++j) {
      const float dot = detail::warp_dot(qv, k + lay.kv_row(b, hk, j), lane, lay.D, 1.f);
      const float m_new = fmaxf(m, dot);
      const float alpha = exp2f(sc.exponent(m, m_new)), p = exp2f(sc.exponent(dot, m_new));
      l = l * alpha + p;
      const T* vr = v + lay.kv_row(b, hk, j);
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const std::int64_t d = lane + 32 * u;
        if (d < lay.D) acc[u] = fmaf(p, detail::to_float(vr[d]), acc[u] * alpha);
      }
      m = m_new;
    }
    const bool empty = range.empty();
    if constexpr (STATS) {
      const T* g = static_cast<const T*>(st.dout) + lay.q_row(b, h, i);
      float delta = 0.f;
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const std::int64_t d = lane + 32 * u;
        if (d < lay.D && !empty) delta = fmaf(detail::to_float(g[d]), acc[u] / l, delta);
      }
      delta = detail::warp_sum(delta);
      if (lane == 0) {
        const std::int64_t at = lay.lse_index(b, h, i);
        st.m[at] = empty ? 0.f : m;
        st.inv_l[at] = empty ? 0.f : 1.f / l;
        st.delta[at] = empty ? 0.f : delta;
      }
    } else {
      T* o = out + lay.q_row(b, h, i);
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const std::int64_t d = lane + 32 * u;
        if (d < lay.D) o[d] = detail::from_float<T>(empty ? 0.f : acc[u] / l);
      }
      if (lse && lane == 0) lse[lay.lse_index(b, h, i)] = empty ? -INFINITY : sc.lse(m, l);
    }
  }
}

// ---- v2: tensor cores --------------------------------------------------------------------------

// Block shape per padded head dim: WARPS warps of MT m-tiles (16 rows each), BN keys per tile,
// STAGES K/V tiles in flight. Two m-tiles per warp let every K/V fragment read from shared memory
// feed two mma's (BN 32 at D 128, for registers); D 256 runs one m-tile per warp, 8 warps, BN 32.
// Measured on an H100 (reports/gpu): two m-tiles per warp beat 8 x 16 rows and 4 x 16 rows by
// 15-25 %; 3 or 4 stages ran no faster than 2.
template <int D_PAD>
struct Config {
  static constexpr bool kWide = D_PAD > 128;
  static constexpr int kMT = kWide ? 1 : 2;  // m-tiles per warp
  static constexpr int kWarps = kWide ? 8 : 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBM = 16 * kMT * kWarps;     // query rows per block: 128
  static constexpr int kBN = D_PAD > 64 ? 32 : 64;  // keys per tile
  static constexpr int kStages = 2;
  static constexpr int kStride = tc::kSmemStride<D_PAD>;
  static constexpr int kQ = kBM * kStride;
  static constexpr int kKV = kBN * kStride;
  static constexpr std::size_t kBytes =
      sizeof(std::uint16_t) * (kQ + 2 * kStages * kKV) + 4 * kBM * sizeof(int);
  // The last kBM ints hold the warps' tile bounds.
  static_assert(kWarps * sizeof(BasicTileBounds<int, false>) <= kBM * sizeof(int));
};

using tc::cp_async_commit;
using tc::cp_async_wait;
using tc::fast_exp2;
using tc::ldmatrix_x4;
using tc::ldmatrix_x4_trans;
using tc::load_tile;
using tc::mma16816;
using tc::pack2;

// Blocks per SM that ptxas must fit: 3 for D <= 32 with element-wise loads (168 registers, as
// ptxas chose unasked before exponents became (key - max) c: left alone it takes 170-173 and fits
// 2); 0 (no directive) for the others, which it sizes well alone (asked for 1 or 3, the 16-byte
// D <= 32 path took 200 registers or spilled).
template <int D_PAD, bool VEC>
inline constexpr int kFlashMinBlocks = D_PAD <= 32 && !VEC ? 3 : 0;

// STATS: the backward's row statistics (attention_internal.cuh) instead of out and lse.
template <class T, int D_PAD, bool VEC, bool STATS>
__global__ void __launch_bounds__(Config<D_PAD>::kThreads, kFlashMinBlocks<D_PAD, VEC>)
    flash_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 T* __restrict__ out, float* __restrict__ lse, detail::RowStats st, MaskView mask,
                 Layout lay, Exp2Scale sc, std::int64_t group) {
  using C = Config<D_PAD>;
  constexpr int MT = C::kMT, kBM = C::kBM, kBN = C::kBN, kStride = C::kStride;
  constexpr int kKSteps = D_PAD / 16;  // k-steps of S = Q K^T
  constexpr int kDBlocks = D_PAD / 8;  // n-blocks of O
  constexpr int kNB = kBN / 8;         // n-blocks of S
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr int kStages = C::kStages;
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + C::kQ;             // kStages buffers
  T* sV = sK + kStages * C::kKV;  // kStages buffers
  int* row_lo = reinterpret_cast<int*>(sV + kStages * C::kKV);
  int* row_hi = row_lo + kBM;
  int* row_ok = row_hi + kBM;
  // One per warp. Key positions are ints here (as in row_lo / row_hi): 64-bit tile bounds in the
  // main loop cost registers (a spill at D = 32 on sm_80). No gap member either (Gap = false):
  // the CUDA kernels decline attention sinks (DeviceMask).
  BasicTileBounds<int, false>* red = reinterpret_cast<BasicTileBounds<int, false>*>(row_ok + kBM);

  const std::int64_t b = blockIdx.z, h = blockIdx.y;
  // Heavier query tiles (later rows see more keys under a causal mask) start first.
  const std::int64_t m0 = std::int64_t(gridDim.x - 1 - blockIdx.x) * kBM;
  const std::int64_t extent = lay.q_extent(b);
  if (m0 >= extent) return;
  const std::int64_t hk = h / group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // 1. Each row's visible keys from the one predicate, and the block's TileBounds, their fold:
  //    each thread folds its rows, each warp its lanes (xor butterfly), then the block its warps.
  //    (suite/tests/tile_bounds_test.cpp runs these steps on the host, lanes emulated.)
  BasicTileBounds<int, false> tb;
  for (int r = tid; r < kBM; r += C::kThreads) {
    const std::int64_t i = m0 + r;
    KeyRange kr{0, 0};
    if (i < extent) kr = visible_keys(mask, b, i);
    row_lo[r] = static_cast<int>(kr.begin);
    row_hi[r] = static_cast<int>(kr.end);
    row_ok[r] = !kr.empty();
    tb = combine(tb, row_tile_bounds<int, false>(kr));
  }
  for (int o = 16; o > 0; o >>= 1) tb = combine(tb, detail::shfl_xor(tb, o));
  if (lane == 0) red[warp] = tb;
  __syncthreads();  // the rows' intervals and the warps' bounds are in shared memory
  tb = BasicTileBounds<int, false>{};
  for (int w = 0; w < C::kWarps; ++w) tb = combine(tb, red[w]);
  const int span_lo = tb.span.begin;
  const int tiles = tb.span.empty() ? 0 : (tb.span.end - tb.span.begin + kBN - 1) / kBN;

  // 2. Q (rows without visible keys as zeros) and the first K/V tile.
  const KeyRange kv_valid =
      lay.packed ? KeyRange{0, lay.cu_k[b + 1] - lay.cu_k[b]} : valid_ranges(mask, b).keys();
  const T* qb = q + lay.q_row(b, h, 0);
  const T* kb = k + lay.kv_row(b, hk, 0);
  const T* vb = v + lay.kv_row(b, hk, 0);
  // Prologue: Q (rows without visible keys as zeros) and K/V tiles 0 .. kStages - 2, one
  // cp.async group each (Q rides with tile 0). Empty groups keep the counting uniform.
  auto load_kv = [&](int tile, int buf) {
    if (tile < tiles) {
      const int first = span_lo + tile * kBN;
      load_tile<T, D_PAD, VEC, C::kThreads>(sK + buf * C::kKV, kb, lay.kv_stride(), first, kBN,
                                            kv_valid.begin, kv_valid.end, lay.D, nullptr);
      load_tile<T, D_PAD, VEC, C::kThreads>(sV + buf * C::kKV, vb, lay.kv_stride(), first, kBN,
                                            kv_valid.begin, kv_valid.end, lay.D, nullptr);
    }
    cp_async_commit();
  };
  if (tiles > 0)
    load_tile<T, D_PAD, VEC, C::kThreads>(sQ, qb, lay.q_stride(), m0, kBM, 0, extent, lay.D,
                                          row_ok);
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) load_kv(t, t);

  // Scores are keys, sign(scale) q.k: for a negative scale Q is negated once it has landed (exact),
  // so that every tile takes plain maxima. (Q rides with tile 0: this waits for both, once.)
  if (sc.sign < 0.f && tiles > 0) {
    cp_async_wait<0>();
    __syncthreads();
    auto* words = reinterpret_cast<std::uint32_t*>(sQ);  // two halves each (sign bits 15, 31)
    constexpr int kRowWords = D_PAD / 2;
    for (int w = tid; w < kBM * kRowWords; w += C::kThreads)
      words[w / kRowWords * (kStride / 2) + w % kRowWords] ^= 0x80008000u;
    // The main loop's first barrier orders these writes before any warp's ldmatrix of Q.
  }

  // This thread's rows: g and g + 8 of each of the warp's m-tiles, and their intervals.
  const int g = lane / 4, t4 = lane % 4;
  int lo[MT][2], hi[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int r = (warp * MT + mt) * 16 + g + 8 * rr;
      lo[mt][rr] = row_lo[r];
      hi[mt][rr] = row_hi[r];
    }

  float o_acc[MT][kDBlocks][4];
  float m_row[MT][2], l_row[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int db = 0; db < kDBlocks; ++db)
#pragma unroll
      for (int e = 0; e < 4; ++e) o_acc[mt][db][e] = 0.f;
    m_row[mt][0] = m_row[mt][1] = -INFINITY;
    l_row[mt][0] = l_row[mt][1] = 0.f;
  }

  int rd = 0;  // buffer of tile j; tile j + kStages - 1 goes into the one tile j - 1 used
  for (int j = 0; j < tiles; ++j) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile j has landed; every warp is done with tile j - 1's buffer
    const int n0 = span_lo + j * kBN;
    load_kv(j + kStages - 1, rd == 0 ? kStages - 1 : rd - 1);
    const T* tK = sK + rd * C::kKV;
    const T* tV = sV + rd * C::kKV;
    rd = rd + 1 == kStages ? 0 : rd + 1;

    // S = Q K^T for this warp's MT x 16 rows and the tile's keys.
    float s[MT][kNB][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nb][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(a[mt],
                    sQ + ((warp * MT + mt) * 16 + lane % 16) * kStride + ks * 16 + (lane / 16) * 8);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        std::uint32_t bk[4];
        ldmatrix_x4(bk, tK + (np * 16 + lane % 8 + (lane / 16) * 8) * kStride + ks * 16 +
                            ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816<T>(s[mt][2 * np], a[mt], bk[0], bk[1]);
          mma16816<T>(s[mt][2 * np + 1], a[mt], bk[2], bk[3]);
        }
      }
    }

    // Boundary tiles: masked keys become -inf element by element; full tiles need no test. Both
    // form each exponent as (key - m) c with m the row's top key, so a key's weight does not
    // depend on the kind of tile it lies in. Rows without visible keys compute on zeros here and
    // are written as empty rows in step 3.
    if (!tb.unmasked(n0, n0 + kBN)) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int col = n0 + nb * 8 + t4 * 2 + (e & 1);
            const int rr = e >> 1;
            if (col < lo[mt][rr] || col >= hi[mt][rr]) s[mt][nb][e] = -INFINITY;
          }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        float mx = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb)
          mx = fmaxf(mx, fmaxf(s[mt][nb][2 * rr], s[mt][nb][2 * rr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_row[mt][rr], mx);
        const float m_use = Exp2Scale::origin(m_new);  // no key yet: avoid -inf - -inf
        const float alpha = fast_exp2(sc.exponent(m_row[mt][rr], m_use));
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
          s[mt][nb][2 * rr] = fast_exp2(sc.exponent(s[mt][nb][2 * rr], m_use));
          s[mt][nb][2 * rr + 1] = fast_exp2(sc.exponent(s[mt][nb][2 * rr + 1], m_use));
          sum += s[mt][nb][2 * rr] + s[mt][nb][2 * rr + 1];
        }
        l_row[mt][rr] = l_row[mt][rr] * alpha + sum;
        m_row[mt][rr] = m_new;
#pragma unroll
        for (int db = 0; db < kDBlocks; ++db) {
          o_acc[mt][db][2 * rr] *= alpha;
          o_acc[mt][db][2 * rr + 1] *= alpha;
        }
      }
    }

    // O += P V: P's accumulator layout is the A-operand layout of the next mma.
#pragma unroll
    for (int kb16 = 0; kb16 < kBN / 16; ++kb16) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = pack2<T>(s[mt][2 * kb16][0], s[mt][2 * kb16][1]);
        a[mt][1] = pack2<T>(s[mt][2 * kb16][2], s[mt][2 * kb16][3]);
        a[mt][2] = pack2<T>(s[mt][2 * kb16 + 1][0], s[mt][2 * kb16 + 1][1]);
        a[mt][3] = pack2<T>(s[mt][2 * kb16 + 1][2], s[mt][2 * kb16 + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D_PAD / 16; ++dp) {
        std::uint32_t bv[4];
        ldmatrix_x4_trans(bv, tV + (kb16 * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride +
                                  dp * 16 + (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816<T>(o_acc[mt][2 * dp], a[mt], bv[0], bv[1]);
          mma16816<T>(o_acc[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
        }
      }
    }
  }

  // 3. Normalize and write. Rows without visible keys write 0 and lse -inf whatever the
  //    accumulators hold (full tiles let them compute on zeros).
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float l = l_row[mt][rr];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int r = (warp * MT + mt) * 16 + g + 8 * rr;
      const std::int64_t i = m0 + r;
      const bool empty = !row_ok[r] || l == 0.f;  // row_ok is 0 past the extent
      const float inv = empty ? 0.f : 1.f / l;
      if constexpr (STATS) {
        // delta = <dout_i, out_i> with out_i in fp32; the quad's four shares added by the
        // butterfly (every lane takes part, whatever its row).
        float delta = 0.f;
        if (!empty) {
          const T* gr = static_cast<const T*>(st.dout) + lay.q_row(b, h, i);
#pragma unroll
          for (int db = 0; db < kDBlocks; ++db) {
            const int col = db * 8 + t4 * 2;
#pragma unroll
            for (int e = 0; e < 2; ++e)
              if (col + e < lay.D)
                delta = fmaf(detail::to_float(gr[col + e]), o_acc[mt][db][2 * rr + e] * inv, delta);
          }
        }
        delta += __shfl_xor_sync(0xffffffffu, delta, 1);
        delta += __shfl_xor_sync(0xffffffffu, delta, 2);
        if (t4 == 0 && i < extent) {
          const std::int64_t at = lay.lse_index(b, h, i);
          st.m[at] = empty ? 0.f : m_row[mt][rr];
          st.inv_l[at] = inv;
          st.delta[at] = delta;
        }
      } else {
        if (i >= extent) continue;
        T* o = out + lay.q_row(b, h, i);
#pragma unroll
        for (int db = 0; db < kDBlocks; ++db) {
          const int col = db * 8 + t4 * 2;
#pragma unroll
          for (int e = 0; e < 2; ++e)  // an empty row writes 0, not inf * 0 from padding garbage
            if (col + e < lay.D)
              o[col + e] = detail::from_float<T>(empty ? 0.f : o_acc[mt][db][2 * rr + e] * inv);
        }
        if (lse && t4 == 0)
          lse[lay.lse_index(b, h, i)] = empty ? -INFINITY : sc.lse(m_row[mt][rr], l);
      }
    }
}

template <class T, int D_PAD, bool VEC, bool STATS>
void launch_flash(const T* q, const T* k, const T* v, T* out, float* lse,
                  const detail::RowStats& st, const MaskView& mask, const Layout& lay, Exp2Scale sc,
                  std::int64_t group, std::int64_t B, std::int64_t max_q, cudaStream_t stream) {
  using C = Config<D_PAD>;
  static bool configured = false;  // one attribute call per instantiation (host-side, benign race)
  if (!configured) {
    check(cudaFuncSetAttribute(flash_kernel<T, D_PAD, VEC, STATS>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(C::kBytes)),
          "attention: shared memory attribute");
    configured = true;
  }
  const dim3 grid(static_cast<unsigned>((max_q + C::kBM - 1) / C::kBM),
                  static_cast<unsigned>(lay.H), static_cast<unsigned>(B));
  flash_kernel<T, D_PAD, VEC, STATS>
      <<<grid, C::kThreads, C::kBytes, stream>>>(q, k, v, out, lse, st, mask, lay, sc, group);
  detail::check_launch("attention flash_kernel");
}

template <class T, int D_PAD, bool STATS>
void launch_flash(const T* q, const T* k, const T* v, T* out, float* lse,
                  const detail::RowStats& st, const MaskView& mask, const Layout& lay, Exp2Scale sc,
                  std::int64_t group, std::int64_t B, std::int64_t max_q, bool vector_ok,
                  cudaStream_t stream) {
  if (vector_ok) {
    launch_flash<T, D_PAD, true, STATS>(q, k, v, out, lse, st, mask, lay, sc, group, B, max_q,
                                        stream);
  } else {
    launch_flash<T, D_PAD, false, STATS>(q, k, v, out, lse, st, mask, lay, sc, group, B, max_q,
                                         stream);
  }
}

// STATS: st's statistics instead of out and lse (st.dout is read).
template <class T, bool STATS>
void run(const T* q, const T* k, const T* v, T* out, float* lse, const detail::RowStats& st,
         const MaskView& mask, const Layout& lay, double scale, std::int64_t group, std::int64_t B,
         std::int64_t max_q, cudaStream_t stream) {
  const Exp2Scale sc = exp2_scale(scale);
  if (B == 0 || lay.H == 0 || max_q == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    const std::int64_t rows = B * lay.H * lay.Lq;
    const int threads = 256;
    rows_kernel<T, STATS><<<detail::grid_for(rows * 32, threads), threads, 0, stream>>>(
        q, k, v, out, lse, st, mask, lay, sc, group, rows);
    detail::check_launch("attention rows_kernel");
  } else {
    auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    const bool vector_ok = lay.D % 8 == 0 && aligned(q) && aligned(k) && aligned(v);
    detail::dispatch_head_dim(lay.D, [&](auto d_pad) {
      launch_flash<T, decltype(d_pad)::value, STATS>(q, k, v, out, lse, st, mask, lay, sc, group, B,
                                                     max_q, vector_ok, stream);
    });
  }
}

// The padded layout of p over mask's sequences (validated, within the kernels' limits).
Layout padded_layout(const AttentionShape& p, const MaskView& mask) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  detail::check_attention_limits(mask.B, p.H, p.D);
  Layout lay;
  lay.H = p.H;
  lay.Hkv = p.Hkv;
  lay.Lq = mask.Lq;
  lay.Lk = mask.Lk;
  lay.D = p.D;
  return lay;
}

}  // namespace

void detail::check_attention_limits(std::int64_t B, std::int64_t H, std::int64_t D) {
  require(D <= kMaxD, "D", D, "the CUDA attention kernels take D <= 256");
  require(H <= 65535, "H", H, "the CUDA attention kernels take H <= 65535");
  require(B <= 65535, "B", B, "the CUDA attention kernels take B <= 65535");
}

void attention_forward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                       const void* k, const void* v, void* out, float* lse, cudaStream_t stream) {
  const Layout lay = padded_layout(p, mask);
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run<T, false>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                  static_cast<T*>(out), lse, {}, mask, lay, p.effective_scale(), p.H / p.Hkv,
                  mask.B, mask.Lq, stream);
  });
}

void detail::attention_forward_stats(const AttentionShape& p, const MaskView& mask, DType t,
                                     const void* q, const void* k, const void* v,
                                     const RowStats& stats, cudaStream_t stream) {
  const Layout lay = padded_layout(p, mask);
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run<T, true>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                 nullptr, nullptr, stats, mask, lay, p.effective_scale(), p.H / p.Hkv, mask.B,
                 mask.Lq, stream);
  });
}

void attention_varlen(const VarlenAttentionProblem& p, const std::int32_t* cu_q,
                      const std::int32_t* cu_k, DType t, const void* q, const void* k,
                      const void* v, void* out, float* lse, cudaStream_t stream) {
  const AttentionProblem padded = p.padded();  // validates; the mask of the equivalent padding
  padded.validate();
  detail::check_attention_limits(padded.mask.B, p.H, p.D);
  // The predicate sees each sequence as right-padded to the longest one; the packed layout
  // addresses only the rows that exist.
  const DeviceMask dmask(padded.mask, stream);
  Layout lay;
  lay.packed = true;
  lay.cu_q = cu_q;
  lay.cu_k = cu_k;
  lay.H = p.H;
  lay.Hkv = p.Hkv;
  lay.Lq = padded.mask.Lq;
  lay.Lk = padded.mask.Lk;
  lay.D = p.D;
  lay.total_q = p.cu_seqlens_q.back();
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    run<T, false>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                  static_cast<T*>(out), lse, {}, dmask.view(), lay, padded.effective_scale(),
                  p.H / p.Hkv, padded.mask.B, padded.mask.Lq, stream);
  });
  // dmask's buffers are freed on return: wait for the kernels that read them.
  check(cudaStreamSynchronize(stream), "attention_varlen");
}

}  // namespace maskcheck::cuda
