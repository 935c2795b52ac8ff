// Cross-entropy forward + backward on the CPU with ignore_index, token weights, label smoothing
// and reduction.
//   logits: [N, V] (f32 or bf16 storage, fp32 arithmetic), labels: [N] int64, weights: [N] fp32
//   or nullptr, losses: [N] fp32, dlogits: [N, V] or nullptr (forward only).
//   lse_i = log sum_j exp(x_ij);  l_i = (1 - eps)(lse_i - x_iy) + eps (lse_i - mean_j x_ij)
//   losses_i = w_i l_i (0 for ignored rows); loss = sum (none, sum) or sum / weight_sum (mean, 0
//   when the weight sum is 0); dlogits_ij = (softmax_ij - (1 - eps)[j == y_i] - eps / V) *
//   w_i / norm, norm = weight_sum for mean and 1 otherwise; +0.0 for ignored rows and when norm
//   is 0. Rows with the ignore label are never read.
// Complexity: O(N V) time, one exp per logit of a contributing row; memory traffic = logits of
// contributing rows read once + dlogits written once (the gradient sweep re-reads the row from
// L2 while it fits there: V = 128k f32 does); O(N) for the label / weight pre-pass and the
// loss reduction.
// Versions:
//   1. reference/loss.hpp: a max sweep, a sum sweep, a gradient sweep per row, in fp64.
//   2. one online (max, sum of exp, sum of x) sweep, then the gradient recomputing the exps
//      (the CUDA kernel's scheme): two exps per logit.
//   3. this file: labels validated and (count, weight sum) taken first, in row order; then rows
//      in parallel, each cut into blocks of kBlock logits: a (max, sum of x) sweep from memory,
//      e = exp(x - m_blk) from L1 with its sum, e kept in fp32 (in dlogits for f32, a
//      per-thread row buffer for bf16); blocks combine in double; the gradient e * (exp(m_blk -
//      m) / sum * w / norm) - eps / V * w / norm from cache; the label's entry recomputed in
//      double (p_y - (1 - eps) cancels when p_y is near 1). The loss is reduced over `losses`
//      in row order, in double.
// SIMD: Highway, runtime dispatch among the compiled targets; threads: OpenMP over rows, static
// round-robin chunks. Every value of a row depends only on that row, and the reductions run in
// row order on one thread: the results are deterministic and independent of the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <string>
#include <type_traits>

#include "maskcheck/kernels/cpu.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cross_entropy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h re-includes this file once per target; what follows it is compiled per target.
#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "simd-inl.h"

#ifndef MASKCHECK_CPU_CROSS_ENTROPY_SHARED
#define MASKCHECK_CPU_CROSS_ENTROPY_SHARED
namespace maskcheck::cpu::ce_detail {

using simd::block_size;
using simd::kBlock;
using simd::kChunkElements;
using simd::kMaxBlocks;
using simd::kParallelWork;

struct Args {
  std::int64_t N = 0, V = 1, ignore_index = kDefaultIgnoreIndex;
  double eps = 0;   // label smoothing
  double norm = 1;  // the gradient's divisor (weight sum for mean)
  const void* logits = nullptr;
  const std::int64_t* labels = nullptr;
  const float* weights = nullptr;
  float* losses = nullptr;
  void* dlogits = nullptr;
  // Upstream gradient: per row (reduction none) or nullptr; `upstream` multiplies every row's.
  const float* grad_rows = nullptr;
  double upstream = 1;
};

struct CrossEntropyTag {};
inline float* row_buffers(std::int64_t threads, std::int64_t stride) {
  return simd::row_buffers<CrossEntropyTag>(threads, stride);
}

inline double to_double(float v) {
  return v;
}
inline double to_double(hwy::bfloat16_t v) {
  const std::uint32_t bits = std::uint32_t{v.bits} << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline void store_scalar(float* p, double v) {
  *p = static_cast<float>(v);
}
inline void store_scalar(hwy::bfloat16_t* p, double v) {
  p->bits = bfloat16(v).bits;
}

}  // namespace maskcheck::cpu::ce_detail
#endif  // MASKCHECK_CPU_CROSS_ENTROPY_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using namespace ce_detail;  // NOLINT(google-build-using-namespace)
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

using simd::LoadF32;
using simd::LoadTail;
using simd::StoreF32;
using simd::StoreTail;

// Max and sum of x: [len], len >= 1.
template <class T>
HWY_INLINE void BlockMaxSum(DF df, const T* HWY_RESTRICT x, std::int64_t len, float& max,
                            float& sum) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const VF ninf = hn::Set(df, -std::numeric_limits<float>::infinity());
  VF m0 = ninf, m1 = ninf, s0 = hn::Zero(df), s1 = hn::Zero(df);
  std::int64_t i = 0;
  for (; i + 2 * N <= len; i += 2 * N) {
    const VF v0 = LoadF32(df, x + i), v1 = LoadF32(df, x + i + N);
    m0 = hn::Max(m0, v0);
    m1 = hn::Max(m1, v1);
    s0 = hn::Add(s0, v0);
    s1 = hn::Add(s1, v1);
  }
  for (; i + N <= len; i += N) {
    const VF v0 = LoadF32(df, x + i);
    m0 = hn::Max(m0, v0);
    s0 = hn::Add(s0, v0);
  }
  if (i < len) {
    const VF v = LoadTail(df, x + i, len - i);  // zero-padded: adds 0 to the sum
    m1 = hn::Max(m1, hn::IfThenElse(hn::FirstN(df, static_cast<std::size_t>(len - i)), v, ninf));
    s1 = hn::Add(s1, v);
  }
  max = hn::GetLane(hn::MaxOfLanes(df, hn::Max(m0, m1)));
  sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
}

// sum exp(x - m) over x: [len]; with kStore, e = exp(x - m) too. Meanwhile the next block,
// next[0, next_len), is prefetched: this sweep computes from L1, so the next block's memory reads
// overlap it instead of stalling the next max sweep (the hardware prefetcher sees no misses here).
template <bool kStore, class T>
HWY_INLINE float BlockExp(DF df, const T* HWY_RESTRICT x, float* HWY_RESTRICT e, std::int64_t len,
                          float m, const T* next, std::int64_t next_len) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const VF vm = hn::Set(df, m);
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  std::int64_t i = 0;
  for (; i + 2 * N <= len; i += 2 * N) {
    // Every line of next (N elements are at most 64 bytes), nothing past it.
    if (i < next_len) hwy::Prefetch(next + i);
    if (i + N < next_len) hwy::Prefetch(next + i + N);
    const VF e0 = hn::Exp(df, hn::Sub(LoadF32(df, x + i), vm));
    const VF e1 = hn::Exp(df, hn::Sub(LoadF32(df, x + i + N), vm));
    if constexpr (kStore) {
      hn::StoreU(e0, df, e + i);
      hn::StoreU(e1, df, e + i + N);
    }
    s0 = hn::Add(s0, e0);
    s1 = hn::Add(s1, e1);
  }
  for (; i + N <= len; i += N) {
    const VF e0 = hn::Exp(df, hn::Sub(LoadF32(df, x + i), vm));
    if constexpr (kStore) hn::StoreU(e0, df, e + i);
    s0 = hn::Add(s0, e0);
  }
  if (i < len) {
    const VF v = hn::Exp(df, hn::Sub(LoadTail(df, x + i, len - i), vm));
    const VF e0 = hn::IfThenElseZero(hn::FirstN(df, static_cast<std::size_t>(len - i)), v);
    if constexpr (kStore) StoreTail(df, e0, e + i, len - i);
    s1 = hn::Add(s1, e0);
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
}

// g = e * a - b over [len]; e may be g itself (f32).
template <class T>
HWY_INLINE void BlockGrad(DF df, const float* e, T* g, std::int64_t len, float a, float b) {
  const auto N = static_cast<std::int64_t>(hn::Lanes(df));
  const VF va = hn::Set(df, a), vb = hn::Set(df, b);
  std::int64_t i = 0;
  for (; i + 2 * N <= len; i += 2 * N) {
    const VF g0 = hn::MulSub(hn::LoadU(df, e + i), va, vb);
    const VF g1 = hn::MulSub(hn::LoadU(df, e + i + N), va, vb);
    StoreF32(df, g0, g + i);
    StoreF32(df, g1, g + i + N);
  }
  for (; i + N <= len; i += N) StoreF32(df, hn::MulSub(hn::LoadU(df, e + i), va, vb), g + i);
  if (i < len) StoreTail(df, hn::MulSub(LoadTail(df, e + i, len - i), va, vb), g + i, len - i);
}

// logits: [N, V]; dlogits: [N, V] or nullptr. Labels are valid (checked by the caller).
template <class T>
void CrossEntropyT(const Args& a) {
  const std::int64_t N = a.N, V = a.V;
  const T* logits = static_cast<const T*>(a.logits);
  T* dlogits = static_cast<T*>(a.dlogits);
  const bool grad = dlogits != nullptr && a.norm != 0;
  const double t_other = a.eps / static_cast<double>(V);
  const std::int64_t blk = block_size(V), blocks = (V + blk - 1) / blk;
  // Chunks of consecutive rows (long streams for the prefetchers), dealt round-robin, at least 8
  // per thread (ignored rows cost far less than the others).
  const int threads = N * V >= kParallelWork ? omp_get_max_threads() : 1;
  const std::int64_t chunk =
      std::clamp<std::int64_t>(std::min(kChunkElements / V, N / (8 * threads)), 1, N);
  const std::int64_t stride = (V + 15) / 16 * 16;  // 64-byte aligned slices
  float* const buffers = std::is_same_v<T, float> || !grad ? nullptr : row_buffers(threads, stride);
#pragma omp parallel num_threads(threads)
  {
    const DF df;
    float* const buffer = buffers != nullptr ? buffers + omp_get_thread_num() * stride : nullptr;
    float bmax[kMaxBlocks], bsum[kMaxBlocks];
#pragma omp for schedule(static, chunk)
    for (std::int64_t i = 0; i < N; ++i) {
      const std::int64_t label = a.labels[i];
      T* g = dlogits != nullptr ? dlogits + i * V : nullptr;
      if (label == a.ignore_index) {
        a.losses[i] = 0.0f;
        if (g != nullptr)
          std::memset(static_cast<void*>(g), 0, static_cast<std::size_t>(V) * sizeof(T));
        continue;
      }
      const T* x = logits + i * V;
      float* e = nullptr;
      if constexpr (std::is_same_v<T, float>) {
        e = grad ? g : nullptr;
      } else {
        e = buffer;
      }

      // Sweep: per block (max, sum of x), then sum exp(x - m_blk), keeping e for the gradient.
      double xsum = 0;
      for (std::int64_t k = 0; k < blocks; ++k) {
        const std::int64_t lo = k * blk, len = std::min(blk, V - lo);
        float bxs = 0;
        BlockMaxSum(df, x + lo, len, bmax[k], bxs);
        xsum += bxs;
        const std::int64_t next_len = k + 1 < blocks ? std::min(blk, V - lo - blk) : 0;
        bsum[k] = grad ? BlockExp<true>(df, x + lo, e + lo, len, bmax[k], x + lo + blk, next_len)
                       : BlockExp<false>(df, x + lo, e, len, bmax[k], x + lo + blk, next_len);
      }
      // Combine the blocks in double, in block order. lse = m + log_s.
      double m = -std::numeric_limits<double>::infinity();
      for (std::int64_t k = 0; k < blocks; ++k) m = std::max(m, static_cast<double>(bmax[k]));
      double sum = 0;
      for (std::int64_t k = 0; k < blocks; ++k) sum += bsum[k] * std::exp(bmax[k] - m);
      const double log_s = std::log(sum);
      const double x_label = to_double(x[label]);
      const double w = a.weights != nullptr ? a.weights[i] : 1.0;
      const double nll = log_s - (x_label - m);
      const double smooth = log_s - (xsum / static_cast<double>(V) - m);
      a.losses[i] = static_cast<float>(w * ((1 - a.eps) * nll + a.eps * smooth));
      if (g == nullptr) continue;
      if (!grad) {  // mean over zero weight: every gradient is 0
        std::memset(static_cast<void*>(g), 0, static_cast<std::size_t>(V) * sizeof(T));
        continue;
      }

      // Gradient from cache: (e exp(m_blk - m) / sum - eps / V) * w / norm.
      const double coef =
          w * (a.grad_rows != nullptr ? double{a.grad_rows[i]} : a.upstream) / a.norm;
      const auto b = static_cast<float>(t_other * coef);
      for (std::int64_t k = 0; k < blocks; ++k) {
        const std::int64_t lo = k * blk, len = std::min(blk, V - lo);
        BlockGrad(df, e + lo, g + lo, len, static_cast<float>(std::exp(bmax[k] - m) / sum * coef),
                  b);
      }
      const double p_label = std::exp(x_label - m - log_s);
      store_scalar(g + label, (p_label - (1 - a.eps) - t_other) * coef);
    }
  }
}

void CrossEntropyF32(const Args& a) {
  CrossEntropyT<float>(a);
}
void CrossEntropyBF16(const Args& a) {
  CrossEntropyT<hwy::bfloat16_t>(a);
}

}  // namespace
}  // namespace maskcheck::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {

HWY_EXPORT(CrossEntropyF32);
HWY_EXPORT(CrossEntropyBF16);

static_assert(sizeof(bfloat16) == sizeof(hwy::bfloat16_t), "bf16 storage is 2 bytes");

// logits: [N, V] dtype t; labels: [N]; weights: [N] or nullptr; losses: [N]; dlogits: [N, V] or
// nullptr.
LossTotals cross_entropy(const LossProblem& p, DType t, const void* logits,
                         const std::int64_t* labels, const float* weights, float* losses,
                         void* dlogits) {
  return cross_entropy(p, t, logits, labels, weights, losses, dlogits, nullptr);
}

LossTotals cross_entropy(const LossProblem& p, DType t, const void* logits,
                         const std::int64_t* labels, const float* weights, float* losses,
                         void* dlogits, const float* grad_output) {
  p.validate();
  require_cpu_dtype(t);
  LossTotals totals;
  if (p.N == 0) return totals;
  if (grad_output != nullptr && dlogits == nullptr)
    throw_invalid("grad_output", "given", "needs dlogits (an upstream gradient is the backward's)");
  if (logits == nullptr) throw_invalid("logits", "nullptr", "must point to N*V elements");
  if (labels == nullptr) throw_invalid("labels", "nullptr", "must point to N labels");
  if (losses == nullptr) throw_invalid("losses", "nullptr", "must point to N floats");
  if (p.weighted && weights == nullptr)
    throw_invalid("weights", "nullptr", "must point to N floats when weighted");
  // The labels with the reference's own check and message; the weights as it checks them.
  LossProblem unweighted = p;
  unweighted.weighted = false;
  validate_loss_inputs(unweighted, std::span<const std::int64_t>(labels, p.N), {});
  if (p.weighted)
    for (std::int64_t i = 0; i < p.N; ++i)
      if (!(weights[i] >= 0.0f && std::isfinite(weights[i])))
        throw_invalid("weights[" + std::to_string(i) + "]",
                      std::to_string(static_cast<double>(weights[i])), "must be finite and >= 0");

  // Count and weight sum first, in row order: the gradient's norm must be known before any row.
  for (std::int64_t i = 0; i < p.N; ++i) {
    if (labels[i] == p.ignore_index) continue;
    ++totals.count;
    totals.weight_sum += p.weighted ? weights[i] : 1.0;
  }
  const bool mean = p.reduction == Reduction::mean;

  const ce_detail::Args a{
      p.N,
      p.V,
      p.ignore_index,
      p.label_smoothing,
      mean ? totals.weight_sum : 1.0,
      logits,
      labels,
      p.weighted ? weights : nullptr,
      losses,
      dlogits,
      grad_output != nullptr && p.reduction == Reduction::none ? grad_output : nullptr,
      grad_output != nullptr && p.reduction != Reduction::none ? double{grad_output[0]} : 1.0};
  if (t == DType::f32) {
    HWY_DYNAMIC_DISPATCH(CrossEntropyF32)(a);
  } else {
    HWY_DYNAMIC_DISPATCH(CrossEntropyBF16)(a);
  }

  // The reduction over rows, in row order and double (ignored rows hold 0).
  double total = 0;
  for (std::int64_t i = 0; i < p.N; ++i) total += losses[i];
  totals.loss = mean ? (totals.weight_sum > 0 ? total / totals.weight_sum : 0.0) : total;
  return totals;
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
