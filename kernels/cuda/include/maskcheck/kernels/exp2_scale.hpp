// The exponent arithmetic of the CUDA kernels' softmaxes (flash and rows attention, masked
// softmax, cross-entropy) as host + device inline functions, so that a host test
// (suite/tests/exp2_scale_test.cpp) runs exactly what the device runs, in builds without CUDA too.
//
// softmax(x * scale) over the scores x of a row, in base 2, with keys y = sign(scale) * x (exact):
//   w_k = 2^e_k / sum_j 2^e_j,   e_k = (y_k - m) * c,   c = |scale| * log2(e),   m = max_j y_j.
// y_k - m is exact within a factor of 2 of m and rounded relative to the distance elsewhere, and
// so is the product: every exponent's error is relative to its distance from the row's top (the
// top's exponent is exactly 0), whatever |m * c|. Keys make the top a plain max for either sign of
// the scale (a kernel that picked min or max at run time paid registers for it).
//
// What it replaced: e_k = fmaf(x_k, c', -fl(max_j x_j c')), c' = scale * log2(e), carried the
// rounding of the max's product, up to 2^-25 |m c|, into every exponent of the row: the top key's
// weight was up to 2^64 at |m c| = 2^31 (inf once P is rounded to fp16 for the flash kernel's
// P V product), inf in fp32 from 2^32, 2^(+-1e22) for scores near 1e30. And the flash kernel's
// boundary tiles rounded x * c' first, e_k = fl(x_k c') - fl(m c'), which its full tiles did not:
// near |m c| = 2^19 one key's weight differed by up to 2^-6 (relative) between the two kinds of
// tile.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "maskcheck/reference/common.hpp"

#if defined(__CUDA_ARCH__)  // the device pass (a host compiler warns of an unknown pragma)
#define MC_EXP2_UNROLL _Pragma("unroll")
#else
#define MC_EXP2_UNROLL
#endif

namespace maskcheck::cuda {

// sign(scale) and c = |scale| log2(e), as a kernel argument (it stays in the constant bank: the
// hot loops spend no register on it). Made by exp2_scale().
struct Exp2Scale {
  float sign = 1.0f;              // +1 or -1
  float c = 1.4426950408889634f;  // |scale| * log2(e): finite and > 0

  // The key of score x: softmax(x * scale) = softmax(key(x) * c), exactly.
  MC_HD float key(float x) const { return x * sign; }
  // The top key to measure exponents from: 0 while no key has been seen (m = -inf), so that
  // exponent(-inf, origin) is -inf rather than NaN.
  MC_HD static float origin(float m) { return m == -INFINITY ? 0.0f : m; }
  // log2 of the weight of key y relative to m, an origin(): <= 0 for y <= m, exactly 0 at y = m,
  // -inf for y = -inf (masked).
  MC_HD float exponent(float y, float m) const { return (y - m) * c; }
  // The same for a score x: fl(x sign - m) (the product is exact), times c.
  MC_HD float score_exponent(float x, float m) const { return exponent(key(x), m); }
  // The natural log-sum-exp of a row whose top key is m, with sum l > 0 of 2^exponent(y, m):
  // (m c + log2 l) ln 2, since m c = max_j x_j * scale * log2(e).
  MC_HD float lse(float m, float l) const { return fmaf(m, c, log2f(l)) * 0.6931471805599453f; }
};

// For softmax(x * scale): sign(scale), and c = |scale| log2(e) rounded to fp32, at most FLT_MAX,
// and where it rounds to 0 (scale 0, or below ~1e-45 in magnitude) the smallest positive subnormal:
// every finite exponent is then 0 after rounding, as for c = 0 (|y - m| 2^-149 < 2^-24 while
// |y - m| < 2^125), while a masked key's stays -inf (-inf * 0 would be NaN).
inline Exp2Scale exp2_scale(double scale) {
  constexpr double kMax = std::numeric_limits<float>::max();
  Exp2Scale s;
  s.sign = scale < 0 ? -1.0f : 1.0f;
  s.c = static_cast<float>(std::min(std::fabs(scale) * 1.4426950408889634, kMax));
  if (s.c == 0.0f) s.c = std::numeric_limits<float>::denorm_min();
  return s;
}

// One thread's online softmax state over scores: m, the top key so far (-inf before any), and
// s = sum 2^exponent(y, origin(m)) over the keys y seen.
struct OnlineExp2 {
  float m = -INFINITY, s = 0.0f;

  template <int N>
  MC_HD void add(const float (&x)[N], const Exp2Scale& sc) {
    float y[N];
    float t = -INFINITY;
    MC_EXP2_UNROLL
    for (int k = 0; k < N; ++k) {
      y[k] = sc.key(x[k]);
      t = fmaxf(t, y[k]);
    }
    if (t > m) {
      s *= exp2f(sc.exponent(m, t));  // 0 while m is -inf (s is 0 then)
      m = t;
    }
    const float o = origin(m);
    MC_EXP2_UNROLL
    for (int k = 0; k < N; ++k) s += exp2f(sc.exponent(y[k], o));
  }
  // s rescaled to the top M of a group of states (0 for a state that saw nothing).
  MC_HD float sum_at(float M, const Exp2Scale& sc) const {
    return m == -INFINITY ? 0.0f : s * exp2f(sc.exponent(m, M));
  }
  MC_HD static float origin(float m) { return Exp2Scale::origin(m); }
};

// A cross-entropy row's state over logits (no scale: keys are the logits, c = log2 e): the
// softmax state, and d = sum (x - m) over the n logits seen, the label smoothing's
// mean_j x_j - max = sum_j (x_j - max) / V formed from distances to the max (a plain fp32 sum of
// the logits has an error relative to |x|: 10 % of mean - max for logits a few ulps apart).
struct OnlineLogits {
  OnlineExp2 e;
  float d = 0.0f, n = 0.0f;

  template <int N>
  MC_HD void add(const float (&x)[N]) {
    constexpr Exp2Scale sc{};
    float t = -INFINITY;
    MC_EXP2_UNROLL
    for (int k = 0; k < N; ++k) t = fmaxf(t, x[k]);
    if (t > e.m) {
      e.s *= exp2f(sc.exponent(e.m, t));  // 0 while m is -inf (s is 0 then)
      if (n > 0.0f) d += n * (e.m - t);
      e.m = t;
    }
    const float o = OnlineExp2::origin(e.m);
    MC_EXP2_UNROLL
    for (int k = 0; k < N; ++k) {
      e.s += exp2f(sc.exponent(x[k], o));
      d += x[k] - o;
    }
    n += static_cast<float>(N);
  }
  // d rescaled to the top M of a group of states: sum (x - M) over this state's logits.
  MC_HD float distance_at(float M) const { return n > 0.0f ? d + n * (e.m - M) : 0.0f; }
};

}  // namespace maskcheck::cuda

#undef MC_EXP2_UNROLL
