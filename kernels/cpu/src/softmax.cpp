// Masked softmax over the last axis on the CPU, the mask never materialized.
//   x, y: [B, H, Lq, Lk] (f32 or bf16 storage, fp32 arithmetic). Row (b, h, q) sees the keys
//   r = visible_keys(mask, b, q):
//   y[k] = exp(s_k - m) / sum_{j in r} exp(s_j - m), s = scale * x, m = max_{j in r} s_j, for k
//   in r; exactly +0.0 elsewhere and on rows with no visible key. Only x[r] is read.
// Complexity: O(B H Lq Lk) time, one exp per visible element; memory traffic = visible x read
// once + y written once (the normalization re-reads the row from L1/L2 while it fits there).
// Versions:
//   1. reference/softmax.hpp: the keep mask materialized, three plain loops in fp64.
//   2. one sweep for an online (max, sum), a second for y = exp(s - m) / sum (the CUDA kernel's
//      scheme): two exps per element, compute-bound on AVX-512 here.
//   3. this file: the row in blocks of kBlock keys. Per block, a max sweep (from memory) and
//      e = exp(scale * x - m_blk) (from L1; see Exponent for how, huge scores included), kept in
//      fp32 (in y itself for f32, in a per-thread row buffer for bf16) with the block's sum;
//      blocks combine in double, m = max m_blk, sum = sum_blk sum_blk exp(m_blk - m); then
//      y = e * (exp(m_blk - m) / sum), from cache.
//   4. f32 outputs beyond the caches: the row is finished in a per-thread buffer and streamed to
//      y with non-temporal stores (no read-for-ownership of y: 8 instead of 12 bytes of DRAM
//      traffic per element). Causal rows of 1024 keys: 0.44 -> 0.71 of the triad bandwidth on a
//      2-core VM.
// SIMD: Highway, runtime dispatch among the compiled targets; threads: OpenMP over rows, static
// round-robin chunks (causal rows grow with q, so contiguous halves would be unbalanced).
// Every value of a row depends only on that row's visible x (blocks are counted from r.begin,
// partial vectors go through a zero-padded stack buffer): the output is deterministic and
// independent of the thread count, the batch neighbours and whatever lies outside r.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include "maskcheck/kernels/cpu.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "softmax.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h re-includes this file once per target; what follows it is compiled per target.
#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "simd-inl.h"

#ifndef MASKCHECK_CPU_SOFTMAX_SHARED
#define MASKCHECK_CPU_SOFTMAX_SHARED
namespace maskcheck::cpu::softmax_detail {

using simd::block_size;
using simd::kBlock;
using simd::kChunkElements;
using simd::kMaxBlocks;
using simd::kParallelWork;

// f32 outputs of this many bytes and more (beyond any last-level cache share) are written with
// non-temporal stores: a row is finished in a per-thread buffer (L1/L2) and streamed to y, which
// saves the read-for-ownership of every output line (a third of the DRAM traffic).
constexpr std::int64_t kStreamBytes = std::int64_t{8} << 20;

struct Args {
  MaskView mask;
  std::int64_t H = 1;
  float scale = 1.0f;
  const void* x = nullptr;
  void* y = nullptr;
};

struct SoftmaxTag {};
inline float* row_buffers(std::int64_t threads, std::int64_t stride) {
  return simd::row_buffers<SoftmaxTag>(threads, stride);
}

}  // namespace maskcheck::cpu::softmax_detail
#endif  // MASKCHECK_CPU_SOFTMAX_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using namespace softmax_detail;  // NOLINT(google-build-using-namespace)
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

using simd::LoadF32;
using simd::LoadTail;
using simd::StoreF32;
using simd::StoreTail;

// max_k sign * x_k over x: [len], len >= 1, with sign = +-1 the sign of the scale (exact: the
// max of scale * x is scale times the max or the min of x).
template <class T>
HWY_INLINE float BlockMax(DF df, const T* HWY_RESTRICT x, std::int64_t len, VF sign) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const VF ninf = hn::Set(df, -std::numeric_limits<float>::infinity());
  VF m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  std::int64_t i = 0;
  for (; i + 4 * N <= len; i += 4 * N) {
    m0 = hn::Max(m0, hn::Mul(LoadF32(df, x + i), sign));
    m1 = hn::Max(m1, hn::Mul(LoadF32(df, x + i + N), sign));
    m2 = hn::Max(m2, hn::Mul(LoadF32(df, x + i + 2 * N), sign));
    m3 = hn::Max(m3, hn::Mul(LoadF32(df, x + i + 3 * N), sign));
  }
  for (; i + N <= len; i += N) m0 = hn::Max(m0, hn::Mul(LoadF32(df, x + i), sign));
  if (i < len) {
    const VF v = hn::Mul(LoadTail(df, x + i, len - i), sign);
    m1 = hn::Max(m1, hn::IfThenElse(hn::FirstN(df, static_cast<std::size_t>(len - i)), v, ninf));
  }
  return hn::GetLane(hn::MaxOfLanes(df, hn::Max(hn::Max(m0, m1), hn::Max(m2, m3))));
}

// The exponent of x in a block whose largest scale * x is at xm, as one or two roundings:
// Fused: fl(scale * x - mc) with mc = fl(scale * xm): one rounding, relative to the distance
//   from the max; every exponent carries mc's rounding alike, which cancels in e / sum as long as
//   it is small: used while |mc| < 2^19 (rounding <= 2^-5).
// Otherwise fl(fl(x - xm) * scale): x - xm is exact near xm and the product's rounding is relative
//   to the distance too. The fused form carried the rounding of scale * xm, about 1e23 for scores
//   near 1e30, into every exponent: exp overflowed or vanished on the whole row.
template <bool kFused>
struct Exponent {
  VF a, b;  // fused: scale, -mc; otherwise: xm, scale
  HWY_INLINE VF operator()(VF x) const {
    if constexpr (kFused) {
      return hn::MulAdd(x, a, b);
    } else {
      return hn::Mul(hn::Sub(x, a), b);
    }
  }
};

// e = exp(exponent(x)) over x, e: [len]; returns sum e. Meanwhile the next block, next[0,
// next_len), is prefetched: this sweep computes from L1, so the next block's memory reads overlap
// it instead of stalling the next max sweep (the hardware prefetcher sees no misses here).
template <class T, bool kFused>
HWY_INLINE float BlockExp(DF df, const T* HWY_RESTRICT x, float* e, std::int64_t len,
                          Exponent<kFused> ex, const T* next, std::int64_t next_len) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  std::int64_t i = 0;
  for (; i + 2 * N <= len; i += 2 * N) {
    // Every line of next (N elements are at most 64 bytes), nothing past it.
    if (i < next_len) hwy::Prefetch(next + i);
    if (i + N < next_len) hwy::Prefetch(next + i + N);
    const VF e0 = hn::Exp(df, ex(LoadF32(df, x + i)));
    const VF e1 = hn::Exp(df, ex(LoadF32(df, x + i + N)));
    hn::StoreU(e0, df, e + i);
    hn::StoreU(e1, df, e + i + N);
    s0 = hn::Add(s0, e0);
    s1 = hn::Add(s1, e1);
  }
  for (; i + N <= len; i += N) {
    const VF e0 = hn::Exp(df, ex(LoadF32(df, x + i)));
    hn::StoreU(e0, df, e + i);
    s0 = hn::Add(s0, e0);
  }
  if (i < len) {
    const VF v = hn::Exp(df, ex(LoadTail(df, x + i, len - i)));
    const VF e0 = hn::IfThenElseZero(hn::FirstN(df, static_cast<std::size_t>(len - i)), v);
    StoreTail(df, e0, e + i, len - i);
    s1 = hn::Add(s1, e0);
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
}

// y = e * c over [len]; e may be y itself (f32).
template <class T>
HWY_INLINE void BlockScale(DF df, const float* e, T* y, std::int64_t len, float c) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const VF vc = hn::Set(df, c);
  std::int64_t i = 0;
  for (; i + 2 * N <= len; i += 2 * N) {
    const VF y0 = hn::Mul(hn::LoadU(df, e + i), vc);
    const VF y1 = hn::Mul(hn::LoadU(df, e + i + N), vc);
    StoreF32(df, y0, y + i);
    StoreF32(df, y1, y + i + N);
  }
  for (; i + N <= len; i += N) StoreF32(df, hn::Mul(hn::LoadU(df, e + i), vc), y + i);
  if (i < len) StoreTail(df, hn::Mul(LoadTail(df, e + i, len - i), vc), y + i, len - i);
}

// dst[0, n) = src[0, n) * c (zeros when src is nullptr) with non-temporal stores for the
// vector-aligned middle of dst; the unaligned ends (shared with the neighbouring pieces and rows)
// take plain stores. Needs FlushStream() before anybody else reads dst.
HWY_INLINE void StreamScale(DF df, const float* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                            std::int64_t n, float c) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const auto bytes = static_cast<std::uintptr_t>(N) * sizeof(float);
  const VF vc = hn::Set(df, c);
  std::int64_t i = 0;
  for (; i < n && reinterpret_cast<std::uintptr_t>(dst + i) % bytes != 0; ++i)
    dst[i] = src != nullptr ? src[i] * c : 0.0f;
  if (src == nullptr) {
    const VF z = hn::Zero(df);
    for (; i + N <= n; i += N) hn::Stream(z, df, dst + i);
  } else {
    for (; i + 2 * N <= n; i += 2 * N) {
      hn::Stream(hn::Mul(hn::LoadU(df, src + i), vc), df, dst + i);
      hn::Stream(hn::Mul(hn::LoadU(df, src + i + N), vc), df, dst + i + N);
    }
    for (; i + N <= n; i += N) hn::Stream(hn::Mul(hn::LoadU(df, src + i), vc), df, dst + i);
  }
  for (; i < n; ++i) dst[i] = src != nullptr ? src[i] * c : 0.0f;
}

// One row's visible part. x, y: [n], n >= 1; e: [n] fp32 (y itself for f32 unless streaming);
// next: the visible x of the row this thread does next ([next_n], to prefetch). With stream
// (f32 only), y is written with non-temporal stores from e.
template <class T>
HWY_INLINE void SoftmaxRow(DF df, const T* HWY_RESTRICT x, T* y, float* e, std::int64_t n, VF scale,
                           VF sign, const T* next, std::int64_t next_n, bool stream) {
  const std::int64_t blk = block_size(n);
  const std::int64_t blocks = (n + blk - 1) / blk;
  // Per block: the sum of e and the offset of its exponents (e = exp(scale * x - off)), in double.
  float bsum[kMaxBlocks];
  double off[kMaxBlocks];
  const float scale_f = hn::GetLane(scale), sign_f = hn::GetLane(sign);
  for (std::int64_t k = 0; k < blocks; ++k) {
    const std::int64_t lo = k * blk, len = std::min(blk, n - lo);
    const bool last = k + 1 == blocks;
    const T* nx = last ? next : x + lo + blk;
    const std::int64_t nn = last ? next_n : std::min(blk, n - lo - blk);
    const float xm = sign_f * BlockMax(df, x + lo, len, sign);  // scale * x is largest at xm
    const float mc = scale_f * xm;
    if (std::fabs(mc) < 0x1p19f) {
      off[k] = mc;
      bsum[k] = BlockExp(df, x + lo, e + lo, len, Exponent<true>{scale, hn::Set(df, -mc)}, nx, nn);
    } else {
      off[k] = double{scale_f} * xm;
      bsum[k] = BlockExp(df, x + lo, e + lo, len, Exponent<false>{hn::Set(df, xm), scale}, nx, nn);
    }
  }
  // Combine the blocks in double, in block order.
  double m = -std::numeric_limits<double>::infinity();
  for (std::int64_t k = 0; k < blocks; ++k) m = std::max(m, off[k]);
  double sum = 0;
  for (std::int64_t k = 0; k < blocks; ++k) sum += bsum[k] * std::exp(off[k] - m);
  for (std::int64_t k = 0; k < blocks; ++k) {
    const std::int64_t lo = k * blk, len = std::min(blk, n - lo);
    const auto c = static_cast<float>(std::exp(off[k] - m) / sum);
    if constexpr (std::is_same_v<T, float>) {
      if (stream) {
        StreamScale(df, e + lo, y + lo, len, c);
        continue;
      }
    }
    BlockScale(df, e + lo, y + lo, len, c);
  }
}

// x, y: [B, H, Lq, Lk].
template <class T>
void MaskedSoftmaxT(const Args& a) {
  const MaskView& mask = a.mask;
  const std::int64_t H = a.H, Lq = mask.Lq, Lk = mask.Lk;
  const std::int64_t rows = mask.B * H * Lq;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  auto range = [&](std::int64_t row) { return row_keys(mask, row / (H * Lq), row % Lq); };
  // Chunks of consecutive rows (long streams for the prefetchers), dealt round-robin (causal
  // rows grow with q: contiguous halves would leave one thread twice the work), at least 8 per
  // thread.
  const int threads = rows * Lk >= kParallelWork ? omp_get_max_threads() : 1;
  const std::int64_t chunk = std::clamp<std::int64_t>(
      std::min(kChunkElements / std::max<std::int64_t>(Lk, 1), rows / (8 * threads)), 1, rows);
  const std::int64_t chunks = (rows + chunk - 1) / chunk;
  const std::int64_t stride = (Lk + 15) / 16 * 16;  // 64-byte aligned slices
  // f32 rows go straight to y unless y is large enough to stream; then, as for bf16, the row is
  // computed in a per-thread fp32 buffer first.
  const bool stream = std::is_same_v<T, float> &&
                      rows * Lk * static_cast<std::int64_t>(sizeof(float)) >= kStreamBytes;
  float* const buffers =
      std::is_same_v<T, float> && !stream ? nullptr : row_buffers(threads, stride);
#pragma omp parallel num_threads(threads)
  {
    const DF df;
    const VF scale = hn::Set(df, a.scale);
    const VF sign = hn::Set(df, a.scale < 0 ? -1.0f : 1.0f);
    float* const buffer = buffers != nullptr ? buffers + omp_get_thread_num() * stride : nullptr;
    // Rows with attention sinks apart from their window: the two intervals gathered into one
    // row of `gather` (x, then y), the softmax of that row, scattered back.
    std::vector<T> gather;
    std::vector<float> gather_e;
#pragma omp for schedule(static, 1)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t row_end = std::min(rows, (c + 1) * chunk);
      RowKeys rk = range(c * chunk);
      for (std::int64_t row = c * chunk; row < row_end; ++row) {
        const RowKeys next_rk = row + 1 < row_end ? range(row + 1) : RowKeys{};
        const KeyRange r = rk.keys, next = next_rk.keys;
        const T* xr = x + row * Lk;
        T* yr = y + row * Lk;
        if (!rk.sinks.empty()) {
          const std::int64_t ns = rk.sinks.size(), n = ns + r.size();
          if (gather.empty()) {
            gather.resize(static_cast<std::size_t>(2 * Lk));
            gather_e.resize(static_cast<std::size_t>(Lk));
          }
          T* gx = gather.data();
          T* gy = gx + Lk;
          std::copy_n(xr + rk.sinks.begin, ns, gx);
          std::copy_n(xr + r.begin, r.size(), gx + ns);
          SoftmaxRow(df, static_cast<const T*>(gx), gy, gather_e.data(), n, scale, sign,
                     xr + Lk + next.begin, next.size(), false);
          std::fill(yr, yr + Lk, T{});
          std::copy_n(gy, ns, yr + rk.sinks.begin);
          std::copy_n(gy + ns, r.size(), yr + r.begin);
          rk = next_rk;
          continue;
        }
        if constexpr (std::is_same_v<T, float>) {
          if (stream) {
            if (r.empty()) {
              StreamScale(df, nullptr, yr, Lk, 0.0f);
            } else {
              StreamScale(df, nullptr, yr, r.begin, 0.0f);
              SoftmaxRow(df, xr + r.begin, yr + r.begin, buffer, r.size(), scale, sign,
                         xr + Lk + next.begin, next.size(), true);
              StreamScale(df, nullptr, yr + r.end, Lk - r.end, 0.0f);
            }
            rk = next_rk;
            continue;
          }
        }
        if (r.empty()) {
          std::memset(static_cast<void*>(yr), 0, static_cast<std::size_t>(Lk) * sizeof(T));
        } else {
          std::memset(static_cast<void*>(yr), 0, static_cast<std::size_t>(r.begin) * sizeof(T));
          std::memset(static_cast<void*>(yr + r.end), 0,
                      static_cast<std::size_t>(Lk - r.end) * sizeof(T));
          float* e = nullptr;
          if constexpr (std::is_same_v<T, float>) {
            e = yr + r.begin;
          } else {
            e = buffer;
          }
          SoftmaxRow(df, xr + r.begin, yr + r.begin, e, r.size(), scale, sign, xr + Lk + next.begin,
                     next.size(), false);
        }
        rk = next_rk;
      }
    }
    if (stream) hwy::FlushStream();
  }
}

void MaskedSoftmaxF32(const Args& a) {
  MaskedSoftmaxT<float>(a);
}
void MaskedSoftmaxBF16(const Args& a) {
  MaskedSoftmaxT<hwy::bfloat16_t>(a);
}

}  // namespace
}  // namespace maskcheck::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {

HWY_EXPORT(MaskedSoftmaxF32);
HWY_EXPORT(MaskedSoftmaxBF16);

static_assert(sizeof(bfloat16) == sizeof(hwy::bfloat16_t), "bf16 storage is 2 bytes");

// x, y: [B, H, Lq, Lk] in dtype t.
void masked_softmax(const SoftmaxProblem& p, const MaskView& mask, DType t, const void* x,
                    void* y) {
  p.validate();
  require_cpu_dtype(t);
  require(mask.B == p.mask.B, "mask.B", mask.B, "must equal the problem's B");
  require(mask.Lq == p.mask.Lq, "mask.Lq", mask.Lq, "must equal the problem's Lq");
  require(mask.Lk == p.mask.Lk, "mask.Lk", mask.Lk, "must equal the problem's Lk");
  if (p.numel() == 0) return;
  if (x == nullptr) throw_invalid("x", "nullptr", "must point to B*H*Lq*Lk elements");
  if (y == nullptr) throw_invalid("y", "nullptr", "must point to B*H*Lq*Lk elements");
  const softmax_detail::Args a{mask, p.H, static_cast<float>(p.scale), x, y};
  if (t == DType::f32) {
    HWY_DYNAMIC_DISPATCH(MaskedSoftmaxF32)(a);
  } else {
    HWY_DYNAMIC_DISPATCH(MaskedSoftmaxBF16)(a);
  }
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
