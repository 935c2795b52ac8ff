// Reference masked softmax. x, y: [B, H, Lq, Lk]; keep: [B, Lq, Lk] shared by the heads.
//   y[b,h,q,k] = exp(s_k - m) / sum_{visible j} exp(s_j - m),  s = scale * x, m = max visible s
// for visible (q, k), and exactly 0 for masked keys; rows with no visible key are all zero.
// Masked entries of x are never read, so their contents (NaN included) cannot leak.
// Complexity: O(B H Lq Lk). Plain loops, accumulation in A.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/numeric.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::ref {

template <class S, class A>
void masked_softmax(const SoftmaxProblem& p, std::span<const std::uint8_t> keep,
                    std::span<const S> x, std::span<S> y) {
  p.validate();
  const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
  require_size("keep", keep.size(), checked_numel("keep", {B, Lq, Lk}));
  require_size("x", x.size(), p.numel());
  require_size("y", y.size(), p.numel());
  const A scale = static_cast<A>(p.scale);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t q = 0; q < Lq; ++q) {
        const std::uint8_t* kr = keep.data() + (b * Lq + q) * Lk;
        const S* xr = x.data() + ((b * H + h) * Lq + q) * Lk;
        S* yr = y.data() + ((b * H + h) * Lq + q) * Lk;
        A m = -std::numeric_limits<A>::infinity();
        bool any = false;
        for (std::int64_t k = 0; k < Lk; ++k)
          if (kr[k]) {
            m = std::max(m, scale * load<A>(xr[k]));
            any = true;
          }
        A sum = 0;
        if (any)
          for (std::int64_t k = 0; k < Lk; ++k)
            if (kr[k]) sum += std::exp(scale * load<A>(xr[k]) - m);
        for (std::int64_t k = 0; k < Lk; ++k)
          yr[k] = store<S>(kr[k] ? std::exp(scale * load<A>(xr[k]) - m) / sum : A(0));
      }
}

// The structured mask, materialized first.
template <class S, class A>
void masked_softmax(const SoftmaxProblem& p, std::span<const S> x, std::span<S> y) {
  const auto keep = build_keep_mask(p.mask);
  masked_softmax<S, A>(p, std::span<const std::uint8_t>(keep), x, y);
}

// softmax(x * scale + add) applied literally, the way frameworks apply an additive mask
// (add: [B, Lq, Lk] in the mask's own values). A row whose every entry is -inf gives zeros,
// as in the spec; a finite additive mask gives whatever the arithmetic gives (a uniform row for
// a fully masked row, for instance), which is the point of comparing encodings.
template <class S, class A>
void softmax_additive(const SoftmaxProblem& p, std::span<const double> add, std::span<const S> x,
                      std::span<S> y) {
  p.validate();
  const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
  require_size("additive mask", add.size(), checked_numel("mask", {B, Lq, Lk}));
  require_size("x", x.size(), p.numel());
  require_size("y", y.size(), p.numel());
  const A scale = static_cast<A>(p.scale);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t q = 0; q < Lq; ++q) {
        const double* ar = add.data() + (b * Lq + q) * Lk;
        const S* xr = x.data() + ((b * H + h) * Lq + q) * Lk;
        S* yr = y.data() + ((b * H + h) * Lq + q) * Lk;
        auto s = [&](std::int64_t k) {
          return round_through<S, A>(scale * load<A>(xr[k]) + static_cast<A>(ar[k]));
        };
        A m = -std::numeric_limits<A>::infinity();
        for (std::int64_t k = 0; k < Lk; ++k) m = std::max(m, s(k));
        const bool empty = m == -std::numeric_limits<A>::infinity();
        A sum = 0;
        if (!empty)
          for (std::int64_t k = 0; k < Lk; ++k) sum += std::exp(s(k) - m);
        for (std::int64_t k = 0; k < Lk; ++k)
          yr[k] = store<S>(empty ? A(0) : std::exp(s(k) - m) / sum);
      }
}

}  // namespace maskcheck::ref
