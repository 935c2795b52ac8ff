// Masked attention backward on the CPU, fp32 arithmetic, deterministic.
//   q, dout, dq: [B, H, Lq, D]; k, v, dk, dv: [B, Hkv, Lk, D] (f32 or bf16 storage). The gradients
//   of out = softmax(q k^T * scale + mask) v (reference/attention.hpp's attention_backward): per
//   row i and visible key j, p_ij from the recomputed scores, dp_ij = <dout_i, v_j>,
//   delta_i = sum_j p_ij dp_ij, ds_ij = p_ij (dp_ij - delta_i); dq_i = scale sum_j ds_ij k_j,
//   dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dout_i, summed over the query heads of a kv
//   head. Each row's visible keys are visible_keys(mask, b, i) of the one predicate; masks are
//   never materialized, masked and padded inputs are never read, keys no row sees get dk = dv = 0
//   and rows that see no key dq = 0 (+0.0).
// Two passes, flash-style (P recomputed, never stored):
//   rows  OpenMP over (b, h, i): the row's scores over its visible interval, its max m_i and sum
//         l_i (exponents relative to the max, base 2, as the forward), delta_i, and dq_i; keeps
//         m_i, l_i and delta_i.
//   keys  OpenMP over (b, kv head, block of keys): each key's dk and dv over the query heads of
//         its kv head and the rows that see it, P recomputed from (m_i, l_i) with the same dot
//         and exponent as the row pass.
// Every output element is written by one thread in a fixed order of additions: the result is
// bitwise the same across runs and thread counts.
// Complexity: 4 D FLOPs per visible (q, k) pair in the row pass, 8 D in the key pass (3.5x the
// forward's), plus an O(Lq) interval test per key; bf16 inputs are widened once per call.
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
#include <vector>

#include "maskcheck/kernels/cpu.hpp"

#ifndef MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED
#define MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED
namespace maskcheck::cpu::attn_bwd {

// Everything the passes read, in f32 (bf16 inputs widened once per call).
struct Problem {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* dout = nullptr;
  float* dq = nullptr;  // f32 results, stored to the storage dtype at the end
  float* dk = nullptr;
  float* dv = nullptr;
  float* m = nullptr;      // [B, H, Lq]: max of qsign * <q_i, k_j> over the visible keys
  float* l = nullptr;      // sum of 2^((dot - m) * c); 0 for a row without a visible key
  float* delta = nullptr;  // sum_j p_ij dp_ij
  MaskView mask;
  std::int64_t H = 1, Hkv = 1, group = 1, D = 1;
  float qsign = 1;       // sign of the scale: dots of qsign * q and k keep the scale's rounding out
  float exp2_scale = 1;  // |scale| * log2(e)
  float scale = 1;
};

constexpr std::int64_t kKeyBlock = 16;

}  // namespace maskcheck::cpu::attn_bwd
#endif  // MASKCHECK_CPU_ATTENTION_BACKWARD_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::attn_bwd::HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// <a, b> over n floats, in a fixed order (vector lanes, then the tail, then the lane sum).
HWY_INLINE float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, std::int64_t n) {
  const DF df;
  const std::int64_t N = static_cast<std::int64_t>(hn::Lanes(df));
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  std::int64_t d = 0;
  for (; d + 2 * N <= n; d += 2 * N) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + d), hn::LoadU(df, b + d), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + d + N), hn::LoadU(df, b + d + N), acc1);
  }
  for (; d + N <= n; d += N) acc0 = hn::MulAdd(hn::LoadU(df, a + d), hn::LoadU(df, b + d), acc0);
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

// y += alpha x over n floats.
HWY_INLINE void Axpy(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
                     std::int64_t n) {
  const DF df;
  const std::int64_t N = static_cast<std::int64_t>(hn::Lanes(df));
  const auto va = hn::Set(df, alpha);
  std::int64_t d = 0;
  for (; d + N <= n; d += N)
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + d), hn::LoadU(df, y + d)), df, y + d);
  for (; d < n; ++d) y[d] += alpha * x[d];
}

// One query row: m, l, delta and dq. `s` holds the row's scores (one float per key).
void RowPass(const Problem& pr, std::int64_t b, std::int64_t h, std::int64_t i, float* s) {
  const MaskView& mk = pr.mask;
  const std::int64_t Lq = mk.Lq, Lk = mk.Lk, D = pr.D, hk = h / pr.group;
  const std::int64_t row = (b * pr.H + h) * Lq + i;
  float* dq = pr.dq + row * D;
  std::fill(dq, dq + D, 0.0f);
  const KeyRange r = visible_keys(mk, b, i);
  if (r.empty()) {
    pr.m[row] = -std::numeric_limits<float>::infinity();
    pr.l[row] = 0;
    pr.delta[row] = 0;
    return;
  }
  const float* q = pr.q + row * D;
  const float* g = pr.dout + row * D;
  const float* k0 = pr.k + (b * pr.Hkv + hk) * Lk * D;
  const float* v0 = pr.v + (b * pr.Hkv + hk) * Lk * D;
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = r.begin; j < r.end; ++j) {
    s[j] = pr.qsign * Dot(q, k0 + j * D, D);
    m = std::max(m, s[j]);
  }
  float l = 0;
  for (std::int64_t j = r.begin; j < r.end; ++j) {
    s[j] = std::exp2((s[j] - m) * pr.exp2_scale);
    l += s[j];
  }
  // p = e / l exactly as the key pass computes it.
  float delta = 0;
  for (std::int64_t j = r.begin; j < r.end; ++j) delta += s[j] / l * Dot(g, v0 + j * D, D);
  for (std::int64_t j = r.begin; j < r.end; ++j) {
    const float p = s[j] / l;
    const float ds = p * (Dot(g, v0 + j * D, D) - delta);
    Axpy(pr.scale * ds, k0 + j * D, dq, D);
  }
  pr.m[row] = m;
  pr.l[row] = l;
  pr.delta[row] = delta;
}

// A block of keys [j0, j1) of kv head hk of sequence b: dk and dv over the rows that see them.
// `ranges` holds the visible interval of each query row of sequence b.
void KeyPass(const Problem& pr, std::int64_t b, std::int64_t hk, std::int64_t j0, std::int64_t j1,
             const KeyRange* ranges) {
  const MaskView& mk = pr.mask;
  const std::int64_t Lq = mk.Lq, Lk = mk.Lk, D = pr.D;
  for (std::int64_t j = j0; j < j1; ++j) {
    const std::int64_t kv = ((b * pr.Hkv + hk) * Lk + j) * D;
    float* dk = pr.dk + kv;
    float* dv = pr.dv + kv;
    std::fill(dk, dk + D, 0.0f);
    std::fill(dv, dv + D, 0.0f);
    const float* kj = pr.k + kv;
    const float* vj = pr.v + kv;
    for (std::int64_t h = hk * pr.group; h < (hk + 1) * pr.group; ++h)
      for (std::int64_t i = 0; i < Lq; ++i) {
        if (!ranges[i].contains(j)) continue;
        const std::int64_t row = (b * pr.H + h) * Lq + i;
        const float* q = pr.q + row * D;
        const float* g = pr.dout + row * D;
        const float p =
            std::exp2((pr.qsign * Dot(q, kj, D) - pr.m[row]) * pr.exp2_scale) / pr.l[row];
        const float ds = p * (Dot(g, vj, D) - pr.delta[row]);
        Axpy(p, g, dv, D);
        Axpy(pr.scale * ds, q, dk, D);
      }
  }
}

}  // namespace maskcheck::cpu::attn_bwd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {
namespace attn_bwd {
HWY_EXPORT(RowPass);
HWY_EXPORT(KeyPass);

// n storage elements as f32: the input itself (f32), or widened into `buf` (bf16, exact).
const float* as_f32(const void* x, bool bf16, std::int64_t n, std::vector<float>& buf) {
  if (!bf16) return static_cast<const float*>(x);
  buf.resize(static_cast<std::size_t>(n));
  const auto* in = static_cast<const std::uint16_t*>(x);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t bits = std::uint32_t{in[i]} << 16;
    std::memcpy(&buf[static_cast<std::size_t>(i)], &bits, sizeof(float));
  }
  return buf.data();
}

void store(const std::vector<float>& x, bool bf16, void* out) {
  if (x.empty()) return;  // an empty tensor may come as a null pointer
  if (!bf16) {
    std::memcpy(out, x.data(), x.size() * sizeof(float));
    return;
  }
  auto* o = static_cast<bfloat16*>(out);
  for (std::size_t i = 0; i < x.size(); ++i) o[i] = bfloat16(static_cast<double>(x[i]));
}
}  // namespace attn_bwd

void attention_backward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                        const void* k, const void* v, const void* dout, void* dq, void* dk,
                        void* dv) {
  p.validate(mask.B, mask.Lq, mask.Lk);
  require_cpu_dtype(t);
  const std::int64_t B = mask.B, H = p.H, Hkv = p.Hkv, Lq = mask.Lq, Lk = mask.Lk, D = p.D;
  const std::int64_t nq = B * H * Lq * D, nkv = B * Hkv * Lk * D, rows = B * H * Lq;
  const bool bf16 = t == DType::bf16;
  std::vector<float> wq, wk, wv, wg;
  attn_bwd::Problem pr;
  pr.q = attn_bwd::as_f32(q, bf16, nq, wq);
  pr.k = attn_bwd::as_f32(k, bf16, nkv, wk);
  pr.v = attn_bwd::as_f32(v, bf16, nkv, wv);
  pr.dout = attn_bwd::as_f32(dout, bf16, nq, wg);
  std::vector<float> gq(static_cast<std::size_t>(nq)), gk(static_cast<std::size_t>(nkv)),
      gv(static_cast<std::size_t>(nkv));
  std::vector<float> m(static_cast<std::size_t>(rows)), l(m.size()), delta(m.size());
  pr.dq = gq.data();
  pr.dk = gk.data();
  pr.dv = gv.data();
  pr.m = m.data();
  pr.l = l.data();
  pr.delta = delta.data();
  pr.mask = mask;
  pr.H = H;
  pr.Hkv = Hkv;
  pr.group = Hkv > 0 ? H / Hkv : 1;
  pr.D = D;
  const double scale = p.effective_scale();
  pr.scale = static_cast<float>(scale);
  pr.qsign = scale < 0 ? -1.0f : 1.0f;
  pr.exp2_scale = static_cast<float>(std::fabs(scale) * 1.4426950408889634);
  const std::int64_t key_blocks = (Lk + attn_bwd::kKeyBlock - 1) / attn_bwd::kKeyBlock;
  const std::int64_t key_items = B * Hkv * key_blocks;
  if (rows > 0 && D > 0) {
#pragma omp parallel
    {
      std::vector<float> s(static_cast<std::size_t>(std::max<std::int64_t>(Lk, 1)));
#pragma omp for schedule(dynamic, 8)
      for (std::int64_t r = 0; r < rows; ++r)
        HWY_DYNAMIC_DISPATCH(attn_bwd::RowPass)(pr, r / (H * Lq), (r / Lq) % H, r % Lq, s.data());
      // The implicit barrier: every row's statistics are in place before the key pass.
      std::vector<KeyRange> ranges(static_cast<std::size_t>(Lq));
      std::int64_t ranges_of = -1;
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t it = 0; it < key_items; ++it) {
        const std::int64_t kb = it % key_blocks, hk = (it / key_blocks) % Hkv,
                           b = it / (key_blocks * Hkv);
        if (ranges_of != b) {
          for (std::int64_t i = 0; i < Lq; ++i)
            ranges[static_cast<std::size_t>(i)] = visible_keys(mask, b, i);
          ranges_of = b;
        }
        const std::int64_t j0 = kb * attn_bwd::kKeyBlock;
        HWY_DYNAMIC_DISPATCH(attn_bwd::KeyPass)
        (pr, b, hk, j0, std::min(Lk, j0 + attn_bwd::kKeyBlock), ranges.data());
      }
    }
  }
  attn_bwd::store(gq, bf16, dq);
  attn_bwd::store(gk, bf16, dk);
  attn_bwd::store(gv, bf16, dv);
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
