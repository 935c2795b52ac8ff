// Properties of masked attention backward (Implementation::attention_backward): the gradients
// dq, dk, dv of out = softmax(q k^T * scale + mask) v for an upstream gradient dout. Cases are the
// forward's (gen_attention_case: every mask feature, GQA, long decode rows, every data style);
// dout is drawn like the values. An implementation without a backward skips them with its reason.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {
namespace {

struct Case {
  AttentionCase c;
  AttentionData d;
  std::vector<double> dout;
};

bool draw(const Implementation& impl, const CaseLimits& lim, Case& k) {
  CaseLimits fwd = lim;
  fwd.score_modifiers = {};  // the backward takes none (registry.hpp)
  k.c = *gen_attention_case(fwd).as("case");
  k.c.want_lse = false;
  if (!supported(impl.supports_attention_backward(k.c.problem, k.c.dtype))) return false;
  tag_case(k.c.problem.mask, k.c.dtype);
  if (k.c.problem.Hkv != k.c.problem.H) tag_case({"gqa"});
  k.d = make_data(k.c);
  DataRng rng(k.c.data_seed ^ 0x6a09e667f3bcc909ULL);
  const DataStyle style = k.c.style == DataStyle::huge ? DataStyle::large : k.c.style;
  k.dout = draw_values(rng, static_cast<std::size_t>(k.c.problem.q_numel()), style,
                       storage_of(k.c).out, 3.0, 12.0);
  return true;
}

AttentionGradients run(const Implementation& impl, const Case& k, const AttentionProblem& p,
                       const AttentionData& d, const std::vector<double>& dout) {
  return impl.attention_backward(p, k.c.dtype, d.q, d.k, d.v, dout);
}

Shape q_shape(const AttentionProblem& p) {
  return attention_out_shape(p);
}
Shape kv_shape(const AttentionProblem& p) {
  return Shape{{"b", "hkv", "k", "d"}, {p.mask.B, p.Hkv, p.mask.Lk, p.D}};
}

std::int64_t qrow(const AttentionProblem& p, std::int64_t b, std::int64_t h, std::int64_t q) {
  return ((b * p.H + h) * p.mask.Lq + q) * p.D;
}
std::int64_t kvrow(const AttentionProblem& p, std::int64_t b, std::int64_t h, std::int64_t k) {
  return ((b * p.Hkv + h) * p.mask.Lk + k) * p.D;
}

// Whether key k of sequence b is visible to some query, and whether query q sees any key.
std::vector<std::uint8_t> seen_keys(const AttentionProblem& p, const MaskView& m) {
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(p.mask.B * p.mask.Lk), 0);
  for (std::int64_t b = 0; b < p.mask.B; ++b)
    for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
      row_keys(m, b, q).for_each(
          [&](std::int64_t k) { seen[static_cast<std::size_t>(b * p.mask.Lk + k)] = 1; });
    }
  return seen;
}

// The gradients of a run against the truth: the FlashAttention rule against the naive backward
// in the dtype, or each element's first-order rounding bound.
void expect_close(const AttentionProblem& p, DType t, const AttentionData& d,
                  const std::vector<double>& dout, const AttentionGradients& got,
                  const std::string& what = "") {
  // The exact gradients rounded to the dtype: a gradient beyond its range is +-inf there (unlike
  // forward outputs, gradients are not bounded by the inputs).
  auto want = reference_attention_backward(p, t, d.q, d.k, d.v, dout, Precision::exact);
  for (auto* w : {&want.dq, &want.dk, &want.dv})
    for (double& x : *w)
      if (std::abs(x) >= max_finite(t)) x = round_to(t, x);
  const auto naive = reference_attention_backward(p, t, d.q, d.k, d.v, dout, Precision::naive);
  // The rounding bound costs a reference pass: computed only when the rule alone fails.
  std::optional<AttentionGradients> bound;
  auto check = [&](const char* name, const Shape& shape, const std::vector<double>& g,
                   const std::vector<double>& w, const std::vector<double>& n,
                   const std::vector<double> AttentionGradients::*field) {
    CheckResult r = check_close(what + name, shape, g, w, n, t);
    if (!r.ok) {
      if (!bound) bound = attention_backward_rounding_bound(p, t, d.q, d.k, d.v, dout);
      r = check_close(what + name, shape, g, w, n, t, (*bound).*field);
    }
    expect(r);
  };
  check("dq", q_shape(p), got.dq, want.dq, naive.dq, &AttentionGradients::dq);
  check("dk", kv_shape(p), got.dk, want.dk, naive.dk, &AttentionGradients::dk);
  check("dv", kv_shape(p), got.dv, want.dv, naive.dv, &AttentionGradients::dv);
}

// Per (b, kv head): sum_j <dv_j, v_j>, sum_j <dk_j, k_j> and sum over the group's rows of
// <dq_i, q_i> and <dout_i, out_i>.
struct Sums {
  std::vector<double> dv_v, dk_k, dq_q, dout_out;
};
Sums sums(const AttentionProblem& p, const AttentionData& d, const std::vector<double>& dout,
          const std::vector<double>& out, const AttentionGradients& g) {
  Sums s;
  const std::int64_t group = p.H / p.Hkv;
  for (std::int64_t b = 0; b < p.mask.B; ++b)
    for (std::int64_t hk = 0; hk < p.Hkv; ++hk) {
      double a = 0, c = 0, e = 0, f = 0;
      for (std::int64_t k = 0; k < p.mask.Lk; ++k)
        for (std::int64_t x = 0; x < p.D; ++x) {
          const std::int64_t i = kvrow(p, b, hk, k) + x;
          a += g.dv[i] * d.v[i];
          c += g.dk[i] * d.k[i];
        }
      for (std::int64_t h = hk * group; h < (hk + 1) * group; ++h)
        for (std::int64_t q = 0; q < p.mask.Lq; ++q)
          for (std::int64_t x = 0; x < p.D; ++x) {
            const std::int64_t i = qrow(p, b, h, q) + x;
            e += g.dq[i] * d.q[i];
            f += dout[i] * out[i];
          }
      s.dv_v.push_back(a);
      s.dk_k.push_back(c);
      s.dq_q.push_back(e);
      s.dout_out.push_back(f);
    }
  return s;
}

// The same sums over absolute values: the scale of each identity's rounding.
Sums magnitudes(const AttentionProblem& p, const AttentionData& d, const std::vector<double>& dout,
                const std::vector<double>& out, const AttentionGradients& g) {
  auto abs_of = [](const std::vector<double>& x) {
    std::vector<double> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = std::abs(x[i]);
    return y;
  };
  const AttentionData a{abs_of(d.q), abs_of(d.k), abs_of(d.v)};
  return sums(p, a, abs_of(dout), abs_of(out),
              AttentionGradients{abs_of(g.dq), abs_of(g.dk), abs_of(g.dv)});
}

}  // namespace

void add_attention_backward_properties(std::vector<Property>& out) {
  out.push_back(
      {"attention.backward.agreesWithReference", Op::attention,
       "dq, dk and dv agree with the fp64 reference backward (FlashAttention rule against the "
       "naive backward in the case's dtype)",
       [](const Implementation& impl, const CaseLimits& lim) {
         Case k;
         if (!draw(impl, lim, k)) return;
         const AttentionProblem& p = k.c.problem;
         expect_close(p, k.c.dtype, k.d, k.dout, run(impl, k, p, k.d, k.dout));
       }});

  out.push_back(
      {"attention.backward.maskedGradientsAreExactlyZero", Op::attention,
       "keys no query sees get dk = dv = 0 exactly, queries that see no key get dq = 0 exactly, "
       "and no gradient is NaN or infinite",
       [](const Implementation& impl, const CaseLimits& lim) {
         Case k;
         if (!draw(impl, lim, k)) return;
         const AttentionProblem& p = k.c.problem;
         const auto got = run(impl, k, p, k.d, k.dout);
         const FlatMask flat(p.mask);
         const auto seen = seen_keys(p, flat.view());
         std::vector<double> gq, gk, zq, zk;
         for (std::int64_t b = 0; b < p.mask.B; ++b) {
           for (std::int64_t q = 0; q < p.mask.Lq; ++q)
             if (visible_keys(flat.view(), b, q).empty())
               for (std::int64_t h = 0; h < p.H; ++h)
                 for (std::int64_t x = 0; x < p.D; ++x) gq.push_back(got.dq[qrow(p, b, h, q) + x]);
           for (std::int64_t j = 0; j < p.mask.Lk; ++j)
             if (!seen[static_cast<std::size_t>(b * p.mask.Lk + j)])
               for (std::int64_t h = 0; h < p.Hkv; ++h)
                 for (std::int64_t x = 0; x < p.D; ++x) {
                   gk.push_back(got.dk[kvrow(p, b, h, j) + x]);
                   gk.push_back(got.dv[kvrow(p, b, h, j) + x]);
                 }
         }
         zq.assign(gq.size(), 0.0);
         zk.assign(gk.size(), 0.0);
         expect(check_exact("dq of rows that see no key", Shape{{"i"}, {std::int64_t(gq.size())}},
                            gq, zq));
         expect(check_exact("dk and dv of keys no query sees",
                            Shape{{"i"}, {std::int64_t(gk.size())}}, gk, zk));
         // NaN or inf only where the exact gradient itself overflows the dtype.
         const auto exact = reference_attention_backward(p, k.c.dtype, k.d.q, k.d.k, k.d.v, k.dout,
                                                         Precision::exact);
         const double top = max_finite(k.c.dtype);
         const std::pair<const std::vector<double>*, const std::vector<double>*> pairs[] = {
             {&got.dq, &exact.dq}, {&got.dk, &exact.dk}, {&got.dv, &exact.dv}};
         for (const auto& [g, e] : pairs)
           for (std::size_t i = 0; i < g->size(); ++i)
             if (!std::isfinite((*g)[i]) && std::abs((*e)[i]) < top) {
               expect(false, "a gradient is " + std::to_string((*g)[i]) +
                                 " where the exact one is " + std::to_string((*e)[i]) +
                                 " (finite in the dtype)");
               return;
             }
       }});

  out.push_back(
      {"attention.backward.paddingContentsCannotLeak", Op::attention,
       "NaN in every padded position of q, k, v and dout changes no bit of any gradient; padded "
       "queries get dq = 0 and padded keys dk = dv = 0 exactly",
       [](const Implementation& impl, const CaseLimits& lim) {
         Case k;
         if (!draw(impl, lim, k)) return;
         const AttentionProblem& p = k.c.problem;
         const MaskSpec& m = p.mask;
         const double nan = std::numeric_limits<double>::quiet_NaN();
         auto d = k.d;
         auto dout = k.dout;
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
           for (std::int64_t q = 0; q < m.Lq; ++q)
             if (q < q0 || q >= q0 + m.q_len(b))
               for (std::int64_t h = 0; h < p.H; ++h)
                 for (std::int64_t x = 0; x < p.D; ++x) {
                   d.q[qrow(p, b, h, q) + x] = nan;
                   dout[qrow(p, b, h, q) + x] = nan;
                 }
           for (std::int64_t j = 0; j < m.Lk; ++j)
             if (j < k0 || j >= k0 + m.k_len(b))
               for (std::int64_t h = 0; h < p.Hkv; ++h)
                 for (std::int64_t x = 0; x < p.D; ++x) {
                   d.k[kvrow(p, b, h, j) + x] = nan;
                   d.v[kvrow(p, b, h, j) + x] = nan;
                 }
         }
         const auto clean = run(impl, k, p, k.d, k.dout);
         const auto got = run(impl, k, p, d, dout);
         expect(check_exact("dq", q_shape(p), got.dq, clean.dq));
         expect(check_exact("dk", kv_shape(p), got.dk, clean.dk));
         expect(check_exact("dv", kv_shape(p), got.dv, clean.dv));
       }});

  out.push_back({"attention.backward.gqaEqualsRepeatedKv", Op::attention,
                 "grouped-query backward equals multi-head backward with K and V repeated, dk "
                 "and dv summed over each group",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   Case k;
                   if (!draw(impl, lim, k)) return;
                   const AttentionProblem& p = k.c.problem;
                   if (p.Hkv == p.H) return;
                   AttentionProblem mha = p;
                   mha.Hkv = p.H;
                   if (!supported(impl.supports_attention_backward(mha, k.c.dtype))) return;
                   const std::int64_t group = p.H / p.Hkv;
                   AttentionData r{k.d.q, std::vector<double>(mha.kv_numel()),
                                   std::vector<double>(mha.kv_numel())};
                   for (std::int64_t b = 0; b < p.mask.B; ++b)
                     for (std::int64_t h = 0; h < p.H; ++h)
                       for (std::int64_t j = 0; j < p.mask.Lk; ++j) {
                         std::copy_n(k.d.k.begin() + kvrow(p, b, h / group, j), p.D,
                                     r.k.begin() + kvrow(mha, b, h, j));
                         std::copy_n(k.d.v.begin() + kvrow(p, b, h / group, j), p.D,
                                     r.v.begin() + kvrow(mha, b, h, j));
                       }
                   // Both layouts against the truth: the grouped dk, dv sum the group's
                   // contributions, the repeated ones keep them per head (comparing the grouped
                   // run with the sum of the repeated run's rounded per-head gradients would
                   // charge it with their rounding, which cancellation can make dominate).
                   const auto got = run(impl, k, p, k.d, k.dout);
                   const auto rep = run(impl, k, mha, r, k.dout);
                   expect_close(p, k.c.dtype, k.d, k.dout, got, "gqa: ");
                   expect_close(mha, k.c.dtype, r, k.dout, rep, "repeated kv: ");
                 }});

  out.push_back(
      {"attention.backward.consistentWithForward", Op::attention,
       "the backward's probabilities are the forward's: per (sequence, kv head) sum_j <dv_j, v_j> "
       "equals sum_i <dout_i, out_i> with out the implementation's own forward, and sum_j "
       "<dk_j, k_j> equals sum_i <dq_i, q_i> (both sides sum_ij ds_ij s_ij), each residual within "
       "twice the naive backward's",
       [](const Implementation& impl, const CaseLimits& lim) {
         Case k;
         if (!draw(impl, lim, k)) return;
         const AttentionProblem& p = k.c.problem;
         if (!supported(impl.supports_attention(p, k.c.dtype, false))) return;
         const auto fwd = impl.attention(p, k.c.dtype, k.d.q, k.d.k, k.d.v, false);
         const auto got = run(impl, k, p, k.d, k.dout);
         const auto naive_g = reference_attention_backward(p, k.c.dtype, k.d.q, k.d.k, k.d.v,
                                                           k.dout, Precision::naive);
         const auto naive_f =
             reference_attention(p, k.c.dtype, k.d.q, k.d.k, k.d.v, false, Precision::naive);
         const Sums s = sums(p, k.d, k.dout, fwd.out, got);
         const Sums n = sums(p, k.d, k.dout, naive_f.out, naive_g);
         const Sums mag = magnitudes(p, k.d, k.dout, naive_f.out, naive_g);
         // The FlashAttention rule on each identity's residual: the implementation's may be
         // twice the naive backward's plus a few units of roundoff on the terms' magnitudes, or,
         // when that fails (ill-conditioned rows: large scales, peaked scores), the first-order
         // rounding bounds of both sides (each gradient's and the forward output's bound times
         // the factor it is multiplied by), computed then.
         const double u = unit_roundoff(k.c.dtype);
         std::optional<Sums> rb;
         auto rounding = [&]() -> const Sums& {
           if (!rb) {
             auto abs_of = [](const std::vector<double>& x) {
               std::vector<double> y(x.size());
               for (std::size_t i = 0; i < x.size(); ++i) y[i] = std::abs(x[i]);
               return y;
             };
             const auto fb = attention_rounding_bound(p, k.c.dtype, k.d.q, k.d.k, k.d.v, false);
             const auto bb =
                 attention_backward_rounding_bound(p, k.c.dtype, k.d.q, k.d.k, k.d.v, k.dout);
             rb = sums(p, AttentionData{abs_of(k.d.q), abs_of(k.d.k), abs_of(k.d.v)},
                       abs_of(k.dout), fb.out, bb);
           }
           return *rb;
         };
         auto identity = [&](const char* what, const std::vector<double>& gl,
                             const std::vector<double>& gr, const std::vector<double>& nl,
                             const std::vector<double>& nr, const std::vector<double>& ml,
                             const std::vector<double>& mr, std::vector<double> Sums::*lhs,
                             std::vector<double> Sums::*rhs) {
           for (std::size_t i = 0; i < gl.size(); ++i) {
             // An identity whose terms overflow the dtype says nothing (agreesWithReference
             // judges those gradients).
             if (!std::isfinite(ml[i]) || !std::isfinite(mr[i]) ||
                 ml[i] + mr[i] >= max_finite(k.c.dtype))
               continue;
             const double got_res = std::abs(gl[i] - gr[i]);
             double allowed = 2 * std::abs(nl[i] - nr[i]) + 8 * u * (ml[i] + mr[i]) +
                              8 * u * (std::abs(gl[i]) + std::abs(gr[i]));
             if (!(got_res <= allowed)) allowed += (rounding().*lhs)[i] + (rounding().*rhs)[i];
             if (!(got_res <= allowed)) {
               std::ostringstream os;
               os << what << " (sequence " << i / p.Hkv << ", kv head " << i % p.Hkv
                  << "): " << gl[i] << " vs " << gr[i] << ", residual " << got_res << " > allowed "
                  << allowed << " (2 * naive residual " << std::abs(nl[i] - nr[i])
                  << " + 8 u * (magnitudes + |sides|) + both sides' rounding bounds)";
               expect(false, os.str());
               return;
             }
           }
         };
         identity("sum_j <dv_j, v_j> = sum_i <dout_i, out_i> of the forward", s.dv_v, s.dout_out,
                  n.dv_v, n.dout_out, mag.dv_v, mag.dout_out, &Sums::dv_v, &Sums::dout_out);
         identity("sum_j <dk_j, k_j> = sum_i <dq_i, q_i>", s.dk_k, s.dq_q, n.dk_k, n.dq_q, mag.dk_k,
                  mag.dq_q, &Sums::dk_k, &Sums::dq_q);
       }});

  out.push_back({"attention.backward.deterministic", Op::attention,
                 "two runs of the same backward give bitwise the same dq, dk and dv",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   Case k;
                   if (!draw(impl, lim, k)) return;
                   const AttentionProblem& p = k.c.problem;
                   const auto a = run(impl, k, p, k.d, k.dout);
                   const auto b = run(impl, k, p, k.d, k.dout);
                   expect(check_exact("dq (second run)", q_shape(p), b.dq, a.dq));
                   expect(check_exact("dk (second run)", kv_shape(p), b.dk, a.dk));
                   expect(check_exact("dv (second run)", kv_shape(p), b.dv, a.dv));
                 }});
}

}  // namespace maskcheck
