// Properties of fused scale + mask + softmax.
#include <rapidcheck.h>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {
namespace {

bool draw(const Implementation& impl, const CaseLimits& lim, SoftmaxCase& c) {
  c = *gen_softmax_case(lim).as("case");
  if (!supported(impl.supports_softmax(c.problem, c.dtype))) return false;
  tag_case(c.problem.mask, c.dtype);
  return true;
}

// Two runs on equivalent problems agree within the dtype floor or, failing that, within twice
// what check_close allows a run of `p` on `x` (the problem and data `want` was computed for;
// tolerance.hpp's Conditioning).
void expect_consistent_softmax(const std::string& what, const std::vector<double>& got,
                               const std::vector<double>& want, const SoftmaxProblem& p, DType t,
                               const std::vector<double>& x, std::string_view want_name) {
  CheckResult r = check_consistent(what, softmax_shape(p), got, want, t, want_name);
  if (!r.ok) {
    const Conditioning cond = conditioning(reference_softmax(p, t, x, Precision::exact),
                                           reference_softmax(p, t, x, Precision::naive), t);
    r = check_consistent(what, softmax_shape(p), got, want, t, want_name, &cond);
  }
  expect(r);
}

}  // namespace

void add_softmax_properties(std::vector<Property>& out) {
  out.push_back({"softmax.agreesWithReference", Op::softmax,
                 "the masked softmax agrees with the fp64 reference (FlashAttention rule)",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   SoftmaxCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   const auto got = impl.softmax(c.problem, c.dtype, d.x);
                   expect(check_close("y", softmax_shape(c.problem), got,
                                      reference_softmax(c.problem, c.dtype, d.x, Precision::exact),
                                      reference_softmax(c.problem, c.dtype, d.x, Precision::naive),
                                      c.dtype));
                 }});

  out.push_back(
      {"softmax.shiftInvariant", Op::softmax,
       "adding a constant (+1024, -1024 or -8192) to every score leaves the softmax unchanged: "
       "rows of huge or very negative scores agree with the unshifted fp64 reference "
       "(FlashAttention rule)",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const double shift = draw_one_of({-1024.0, 1024.0, -8192.0}, "shift");
         // Scores in [-64, 64] shifted by a power of two at least 16 times larger: x + shift
         // rounds to a multiple of its own ulp, which the unshifted value is then a multiple of
         // too, so both are exact in the dtype and differ by exactly `shift`.
         auto lo = make_data(c).x;
         std::vector<double> hi(lo.size());
         for (std::size_t i = 0; i < lo.size(); ++i) {
           hi[i] = round_to(c.dtype, std::clamp(lo[i], -64.0, 64.0) + shift);
           lo[i] = hi[i] - shift;
         }
         expect(check_close("y (shifted by " + std::to_string(shift) + ")",
                            softmax_shape(c.problem), impl.softmax(c.problem, c.dtype, hi),
                            reference_softmax(c.problem, c.dtype, lo, Precision::exact),
                            reference_softmax(c.problem, c.dtype, hi, Precision::naive), c.dtype));
       }});

  out.push_back(
      {"softmax.scaleFoldsIntoScores", Op::softmax,
       "a run with scale s (0, -1, -1/2, 2^-20, 2, 256) equals the fp64 reference with scale 1 "
       "on the scores multiplied by s beforehand: the scale is applied, once, with its sign, "
       "and 0 means uniform weights over the visible keys",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const double s = draw_one_of({0.0, -1.0, -0.5, 0x1p-20, 2.0, 256.0}, "scale");
         c.problem.scale = s;
         if (!supported(impl.supports_softmax(c.problem, c.dtype))) return;
         // Scores on a grid of 1/16 in [-64, 64]: x * s is then exact in every dtype (in f16
         // too, where 64 * 256 stays below its maximum and x * 2^-20 is a multiple of its
         // smallest subnormal), so both runs see the same scores.
         auto x = make_data(c).x;
         SoftmaxProblem folded = c.problem;
         folded.scale = 1.0;
         std::vector<double> xs(x.size());
         for (std::size_t i = 0; i < x.size(); ++i) {
           x[i] = round_to(c.dtype, std::round(std::clamp(x[i], -64.0, 64.0) * 16) / 16);
           xs[i] = x[i] * s;
         }
         char name[48];
         std::snprintf(name, sizeof name, "y (scale %g)", s);
         expect(check_close(name, softmax_shape(c.problem), impl.softmax(c.problem, c.dtype, x),
                            reference_softmax(folded, c.dtype, xs, Precision::exact),
                            reference_softmax(c.problem, c.dtype, x, Precision::naive), c.dtype));
       }});

  out.push_back(
      {"softmax.rowsSumToOneOrAreZero", Op::softmax,
       "rows with a visible key sum to 1; rows with none are all exactly zero",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const auto y = impl.softmax(c.problem, c.dtype, d.x);
         const MaskSpec& m = c.problem.mask;
         const FlatMask flat(m);
         const std::int64_t rows = m.B * c.problem.H * m.Lq;
         std::vector<double> sums(rows), want(rows), naive_sums(rows);
         // The reference in the same dtype shows how far a row sum may drift from 1.
         const auto naive = reference_softmax(c.problem, c.dtype, d.x, Precision::naive);
         for (std::int64_t r = 0; r < rows; ++r) {
           const std::int64_t b = r / (c.problem.H * m.Lq), q = r % m.Lq;
           want[r] = visible_keys(flat.view(), b, q).empty() ? 0.0 : 1.0;
           for (std::int64_t k = 0; k < m.Lk; ++k) {
             sums[r] += y[r * m.Lk + k];
             naive_sums[r] += naive[r * m.Lk + k];
           }
         }
         const Shape shape{{"b", "h", "q"}, {m.B, c.problem.H, m.Lq}};
         expect(check_close("row sum", shape, sums, want, naive_sums, c.dtype));
         for (std::int64_t r = 0; r < rows; ++r)
           if (want[r] == 0.0)
             for (std::int64_t k = 0; k < m.Lk; ++k)
               expect(std::bit_cast<std::uint64_t>(y[r * m.Lk + k]) == 0,
                      "fully masked row " + shape.coords(r) + " has y[k=" + std::to_string(k) +
                          "] = " + std::to_string(y[r * m.Lk + k]) + ", want exactly +0.0");
       }});

  out.push_back({"softmax.maskedEntriesAreExactlyZero", Op::softmax,
                 "every masked entry of the output is +0.0 bit for bit",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   SoftmaxCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   const auto y = impl.softmax(c.problem, c.dtype, d.x);
                   const auto keep = ref::build_keep_mask(c.problem.mask);
                   const MaskSpec& m = c.problem.mask;
                   std::vector<double> masked_y(y.size()), zeros(y.size(), 0.0);
                   for (std::size_t i = 0; i < y.size(); ++i) {
                     const std::int64_t k = static_cast<std::int64_t>(i) % m.Lk;
                     const std::int64_t q = (static_cast<std::int64_t>(i) / m.Lk) % m.Lq;
                     const std::int64_t b =
                         static_cast<std::int64_t>(i) / (m.Lk * m.Lq * c.problem.H);
                     masked_y[i] = keep[(b * m.Lq + q) * m.Lk + k] ? 0.0 : y[i];
                   }
                   expect(check_exact("masked y", softmax_shape(c.problem), masked_y, zeros));
                 }});

  out.push_back(
      {"softmax.maskedScoresCannotLeak", Op::softmax,
       "NaN, +-inf or huge values in masked-out scores (padding, future, other documents) change "
       "no bit of the output",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const Garbage kind =
             draw_garbage({Garbage::nan, Garbage::pos_inf, Garbage::neg_inf, Garbage::half_max});
         DataRng rng(0);
         const auto keep = ref::build_keep_mask(c.problem.mask);
         const MaskSpec& m = c.problem.mask;
         auto x = d.x;
         for (std::size_t i = 0; i < x.size(); ++i) {
           const std::int64_t k = static_cast<std::int64_t>(i) % m.Lk;
           const std::int64_t q = (static_cast<std::int64_t>(i) / m.Lk) % m.Lq;
           const std::int64_t b = static_cast<std::int64_t>(i) / (m.Lk * m.Lq * c.problem.H);
           if (!keep[(b * m.Lq + q) * m.Lk + k]) x[i] = garbage_value(kind, c.dtype, rng);
         }
         expect(check_exact("y", softmax_shape(c.problem), impl.softmax(c.problem, c.dtype, x),
                            impl.softmax(c.problem, c.dtype, d.x)));
       }});

  out.push_back({"softmax.causalIsUnboundedLeftWindow", Op::softmax,
                 "causal equals the window (unbounded, 0) under the same alignment",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   SoftmaxCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   SoftmaxProblem causal = c.problem, window = c.problem;
                   causal.mask.causal = true;
                   window.mask.causal = false;
                   causal.mask.prefix_lens.clear();  // prefix-LM relaxes causal only
                   window.mask.prefix_lens.clear();
                   Window w = c.problem.mask.window.value_or(Window{});
                   w.right = std::min<std::int64_t>(w.right, 0);
                   window.mask.window = w;
                   expect_consistent_softmax("y", impl.softmax(window, c.dtype, d.x),
                                             impl.softmax(causal, c.dtype, d.x), causal, c.dtype,
                                             d.x, "causal run");
                 }});

  out.push_back({"softmax.leftPaddingIsShiftedRightPadding", Op::softmax,
                 "left padding gives the right-padded result shifted by the padding",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   SoftmaxCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   SoftmaxProblem right = c.problem, left = c.problem;
                   right.mask.padding = PaddingSide::right;
                   left.mask.padding = PaddingSide::left;
                   const MaskSpec& m = c.problem.mask;
                   const std::int64_t H = c.problem.H;
                   // Move each sequence's valid block of x to the left-padded position.
                   auto xl = d.x;
                   for (std::int64_t b = 0; b < m.B; ++b)
                     for (std::int64_t h = 0; h < H; ++h) {
                       const std::int64_t dq = m.Lq - m.q_len(b), dk = m.Lk - m.k_len(b);
                       for (std::int64_t q = 0; q < m.q_len(b); ++q)
                         for (std::int64_t k = 0; k < m.k_len(b); ++k)
                           xl[(((b * H + h) * m.Lq) + q + dq) * m.Lk + k + dk] =
                               d.x[(((b * H + h) * m.Lq) + q) * m.Lk + k];
                     }
                   const auto yr = impl.softmax(right, c.dtype, d.x);
                   const auto yl = impl.softmax(left, c.dtype, xl);
                   std::vector<double> want(yl.size(), 0.0);
                   for (std::int64_t b = 0; b < m.B; ++b)
                     for (std::int64_t h = 0; h < H; ++h) {
                       const std::int64_t dq = m.Lq - m.q_len(b), dk = m.Lk - m.k_len(b);
                       for (std::int64_t q = 0; q < m.q_len(b); ++q)
                         for (std::int64_t k = 0; k < m.k_len(b); ++k)
                           want[(((b * H + h) * m.Lq) + q + dq) * m.Lk + k + dk] =
                               yr[(((b * H + h) * m.Lq) + q) * m.Lk + k];
                     }
                   expect_consistent_softmax("y (left padded)", yl, want, left, c.dtype, xl,
                                             "right-padded run");
                 }});

  out.push_back(
      {"softmax.deterministic", Op::softmax, "two runs on the same inputs are bitwise identical",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         expect(check_exact("y", softmax_shape(c.problem), impl.softmax(c.problem, c.dtype, d.x),
                            impl.softmax(c.problem, c.dtype, d.x)));
       }});

  out.push_back(
      {"softmax.independentOfBatchNeighbours", Op::softmax,
       "changing the other sequences of the batch changes no bit of a sequence's output",
       [](const Implementation& impl, const CaseLimits& lim) {
         SoftmaxCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const MaskSpec& m = c.problem.mask;
         const std::int64_t b = *rc::gen::inRange<std::int64_t>(0, m.B).as("kept sequence");
         const std::int64_t per_seq = c.problem.H * m.Lq * m.Lk;
         auto x = d.x;
         DataRng rng(c.data_seed ^ 0x5eed);
         for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i)
           if (i / per_seq != b) x[i] = round_to(c.dtype, 3.0 * rng.normal());
         const auto y0 = impl.softmax(c.problem, c.dtype, d.x);
         const auto y1 = impl.softmax(c.problem, c.dtype, x);
         const std::vector<double> a(y0.begin() + b * per_seq, y0.begin() + (b + 1) * per_seq);
         const std::vector<double> a1(y1.begin() + b * per_seq, y1.begin() + (b + 1) * per_seq);
         expect(check_exact("y[b]", Shape{{"h", "q", "k"}, {c.problem.H, m.Lq, m.Lk}}, a1, a));
       }});
}

}  // namespace maskcheck
