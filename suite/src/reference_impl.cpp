#include "maskcheck/suite/reference_impl.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "maskcheck/reference/reference.hpp"

namespace maskcheck {
namespace {

template <class S, class A>
std::vector<double> softmax_as(const SoftmaxProblem& p, std::span<const double> x) {
  p.validate();
  require_size("x", x.size(), p.numel());
  const auto xs = to_storage_vec<S>(x);
  std::vector<S> y(xs.size());
  ref::masked_softmax<S, A>(p, std::span<const S>(xs), std::span<S>(y));
  return to_double_vec(y);
}

// chunk: the keys [begin, end) of a split-KV chunk (the mask's columns outside it cleared), or
// none.
template <class S, class A>
AttentionResult attention_as(const AttentionProblem& p, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v, bool want_lse,
                             std::optional<KeyRange> chunk = std::nullopt) {
  validate_attention_inputs(p, q.size(), k.size(), v.size());
  const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
  std::vector<S> out(qs.size());
  std::vector<A> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
  auto keep = ref::build_keep_mask(p.mask);
  if (chunk)
    for (std::size_t i = 0; i < keep.size(); ++i)
      if (!chunk->contains(static_cast<std::int64_t>(i % static_cast<std::size_t>(p.mask.Lk))))
        keep[i] = 0;
  ref::attention_forward<S, A>(p, std::span<const std::uint8_t>(keep), std::span<const S>(qs),
                               std::span<const S>(ks), std::span<const S>(vs), std::span<S>(out),
                               std::span<A>(lse));
  AttentionResult r;
  r.out = to_double_vec(out);
  r.lse.assign(lse.begin(), lse.end());
  return r;
}

template <class S, class A>
AttentionGradients attention_backward_as(const AttentionProblem& p, std::span<const double> q,
                                         std::span<const double> k, std::span<const double> v,
                                         std::span<const double> dout) {
  validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
  const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v),
             gs = to_storage_vec<S>(dout);
  std::vector<S> dq(qs.size()), dk(ks.size()), dv(vs.size());
  ref::attention_backward<S, A>(p, std::span<const S>(qs), std::span<const S>(ks),
                                std::span<const S>(vs), std::span<const S>(gs), std::span<S>(dq),
                                std::span<S>(dk), std::span<S>(dv));
  return {to_double_vec(dq), to_double_vec(dk), to_double_vec(dv)};
}

template <class S, class A>
LossResult cross_entropy_as(const LossProblem& p, std::span<const double> logits,
                            std::span<const std::int64_t> labels, std::span<const double> weights,
                            bool backward, std::span<const double> grad_output = {}) {
  p.validate();
  require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
  const auto xs = to_storage_vec<S>(logits);
  std::vector<S> g(backward ? xs.size() : 0);
  const auto o = ref::cross_entropy<S, A>(p, std::span<const S>(xs), labels, weights,
                                          std::span<S>(g), grad_output);
  LossResult r;
  r.loss = static_cast<double>(o.loss);
  r.losses.assign(o.losses.begin(), o.losses.end());
  r.count = o.count;
  r.weight_sum = static_cast<double>(o.weight_sum);
  r.dlogits = to_double_vec(g);
  return r;
}

}  // namespace

std::vector<double> reference_softmax(const SoftmaxProblem& p, DType t, std::span<const double> x,
                                      Precision prec) {
  if (prec == Precision::exact) return softmax_as<double, double>(p, x);
  return dispatch_dtype(t, [&](auto s) {
    using S = decltype(s);
    return softmax_as<S, std::conditional_t<std::is_same_v<S, double>, double, float>>(p, x);
  });
}

AttentionGradients reference_attention_backward(const AttentionProblem& p, DType t,
                                                std::span<const double> q,
                                                std::span<const double> k,
                                                std::span<const double> v,
                                                std::span<const double> dout, Precision prec) {
  if (prec == Precision::exact) return attention_backward_as<double, double>(p, q, k, v, dout);
  return dispatch_dtype(t, [&](auto s) {
    using S = decltype(s);
    return attention_backward_as<S, std::conditional_t<std::is_same_v<S, double>, double, float>>(
        p, q, k, v, dout);
  });
}

AttentionResult reference_attention(const AttentionProblem& p, DType t, std::span<const double> q,
                                    std::span<const double> k, std::span<const double> v,
                                    bool want_lse, Precision prec) {
  if (prec == Precision::exact) return attention_as<double, double>(p, q, k, v, want_lse);
  return dispatch_dtype(t, [&](auto s) {
    using S = decltype(s);
    return attention_as<S, std::conditional_t<std::is_same_v<S, double>, double, float>>(p, q, k, v,
                                                                                         want_lse);
  });
}

AttentionGradients attention_backward_rounding_bound(const AttentionProblem& p, DType t,
                                                     std::span<const double> q,
                                                     std::span<const double> k,
                                                     std::span<const double> v,
                                                     std::span<const double> dout) {
  validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
  const double u = t == DType::f64 ? unit_roundoff(DType::f64) : unit_roundoff(DType::f32);
  const double ut = unit_roundoff(t);
  const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  const std::int64_t group = H / p.Hkv;
  const double scale = p.effective_scale(), as = std::abs(scale);
  const auto keep = ref::build_keep_mask(p.mask);
  AttentionGradients r{std::vector<double>(static_cast<std::size_t>(p.q_numel()), 0.0),
                       std::vector<double>(static_cast<std::size_t>(p.kv_numel()), 0.0),
                       std::vector<double>(static_cast<std::size_t>(p.kv_numel()), 0.0)};
  // The exact values of the result, for the storage rounding term.
  const auto exact = attention_backward_as<double, double>(p, q, k, v, dout);
  std::vector<double> sc(static_cast<std::size_t>(Lk)), es(sc.size()), pr(sc.size()), dp(sc.size()),
      edp(sc.size()), ep(sc.size()), eds(sc.size()), dsv(sc.size());
  // Terms each gradient element sums, and the row and key counts, for the sum roundings.
  std::vector<std::int64_t> kcount(static_cast<std::size_t>(B * p.Hkv * Lk), 0);
  std::vector<double> dk_abs(r.dk.size(), 0.0), dv_abs(r.dv.size(), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t hk = h / group;
      for (std::int64_t i = 0; i < Lq; ++i) {
        const std::uint8_t* kr = keep.data() + (b * Lq + i) * Lk;
        const std::int64_t row = ((b * H + h) * Lq + i) * D;
        const double* qi = q.data() + row;
        const double* gi = dout.data() + row;
        double m = -std::numeric_limits<double>::infinity();
        std::int64_t n = 0;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const double* kj = k.data() + ((b * p.Hkv + hk) * Lk + j) * D;
          const double* vj = v.data() + ((b * p.Hkv + hk) * Lk + j) * D;
          double dot = 0, mag = 0, g = 0, gmag = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            dot += qi[d] * kj[d];
            mag += std::abs(qi[d] * kj[d]);
            g += gi[d] * vj[d];
            gmag += std::abs(gi[d] * vj[d]);
          }
          sc[j] = scale * dot;
          // Score: D + 2 roundings of its magnitude, the shift by the max and the exponential.
          es[j] = u * ((D + 2) * as * mag + 2 * std::abs(sc[j]) + 2);
          dp[j] = g;
          edp[j] = u * (D + 1) * gmag;
          m = std::max(m, sc[j]);
          ++n;
        }
        if (n == 0) continue;
        double sum = 0;
        for (std::int64_t j = 0; j < Lk; ++j)
          if (kr[j]) sum += std::exp(sc[j] - m);
        double e_mean = 0, delta = 0, dabs = 0;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          pr[j] = std::exp(sc[j] - m) / sum;
          e_mean += pr[j] * es[j];
          delta += pr[j] * dp[j];
          dabs += pr[j] * std::abs(dp[j]);
        }
        // p_j moves by p_j (ds_j + mean ds) plus the n + 2 roundings of the normalization.
        double edelta = u * (n + 2) * dabs;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          ep[j] = pr[j] * (es[j] + e_mean + u * (n + 2));
          edelta += ep[j] * std::abs(dp[j]) + pr[j] * edp[j];
        }
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          dsv[j] = pr[j] * (dp[j] - delta);
          eds[j] = ep[j] * std::abs(dp[j] - delta) + pr[j] * (edp[j] + edelta) +
                   2 * u * std::abs(dsv[j]);
        }
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const std::int64_t kv = ((b * p.Hkv + hk) * Lk + j) * D;
          ++kcount[static_cast<std::size_t>(kv / D)];
          const double* kj = k.data() + kv;
          for (std::int64_t d = 0; d < D; ++d) {
            r.dq[row + d] += as * (eds[j] + u * (n + 1) * std::abs(dsv[j])) * std::abs(kj[d]);
            r.dk[kv + d] += as * eds[j] * std::abs(qi[d]);
            dk_abs[kv + d] += as * std::abs(dsv[j] * qi[d]);
            r.dv[kv + d] += ep[j] * std::abs(gi[d]);
            dv_abs[kv + d] += pr[j] * std::abs(gi[d]);
          }
        }
      }
    }
  // Storage rounding: u_t of the exact value, and half the dtype's smallest subnormal (a
  // gradient below it rounds to 0, as tiny scales make them in f16).
  const double tiny = t == DType::f16    ? std::ldexp(1.0, -25)
                      : t == DType::bf16 ? std::ldexp(1.0, -134)
                      : t == DType::f32  ? std::ldexp(1.0, -150)
                                         : 0.0;
  for (std::size_t i = 0; i < r.dk.size(); ++i) {
    const auto m =
        static_cast<double>(kcount[i / static_cast<std::size_t>(std::max<std::int64_t>(D, 1))]);
    r.dk[i] += u * (m + 1) * dk_abs[i] + ut * std::abs(exact.dk[i]) + tiny;
    r.dv[i] += u * (m + 1) * dv_abs[i] + ut * std::abs(exact.dv[i]) + tiny;
  }
  for (std::size_t i = 0; i < r.dq.size(); ++i) r.dq[i] += ut * std::abs(exact.dq[i]) + tiny;
  return r;
}

AttentionResult attention_rounding_bound(const AttentionProblem& p, DType t,
                                         std::span<const double> q, std::span<const double> k,
                                         std::span<const double> v, bool want_lse) {
  validate_attention_inputs(p, q.size(), k.size(), v.size());
  const double u = t == DType::f64 ? unit_roundoff(DType::f64) : unit_roundoff(DType::f32);
  const double ut = unit_roundoff(t);
  const double lambda = kRoundingLambda;
  const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  const std::int64_t group = H / p.Hkv;
  const double scale = p.effective_scale();
  const auto keep = ref::build_keep_mask(p.mask);
  const ScoreModifiers& mods = p.mods;
  const FlatMask flat(p.mask);
  AttentionResult r;
  r.out.assign(static_cast<std::size_t>(p.q_numel()), 0.0);
  if (want_lse) r.lse.assign(static_cast<std::size_t>(p.lse_numel()), 0.0);
  // Per visible key j: s the exact score, mag = |scale| sum_d |q_d k_jd|, then ds the worst-case
  // score error and a2 the sum of squared magnitudes of its rounding terms; w the probability.
  std::vector<double> s(static_cast<std::size_t>(Lk)), mag(s.size()), ds(s.size()), a2(s.size()),
      w(s.size());
  std::vector<double> o(static_cast<std::size_t>(D));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t hk = h / group;
      for (std::int64_t i = 0; i < Lq; ++i) {
        const std::uint8_t* kr = keep.data() + (b * Lq + i) * Lk;
        const double* qi = q.data() + ((b * H + h) * Lq + i) * D;
        double m = -std::numeric_limits<double>::infinity();
        std::int64_t n = 0;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const double* kj = k.data() + ((b * p.Hkv + hk) * Lk + j) * D;
          double dot = 0, sum_abs = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            dot += qi[d] * kj[d];
            sum_abs += std::fabs(qi[d] * kj[d]);
          }
          s[j] = scale * dot;
          mag[j] = std::fabs(scale) * sum_abs;
          if (mods.any()) {
            // Soft-capping's slope is at most 1, so it passes the score's error on no larger and
            // adds the rounding of its own result; ALiBi's bias adds its magnitude's rounding.
            const std::int64_t diag = query_diagonal(flat.view(), b, i);
            s[j] = ref::modified_score(mods, h, s[j], j > diag ? j - diag : diag - j);
            if (mods.softcap != 0) mag[j] += mods.softcap;
            if (!mods.alibi_slopes.empty()) mag[j] += std::fabs(s[j]);
          }
          m = std::max(m, s[j]);
          ++n;
        }
        if (n == 0) continue;
        // A sink logit joins the denominator exactly (it is an input, not a computed score).
        const bool sink = !mods.sink_logits.empty();
        const double sink_logit = sink ? mods.sink_logits[static_cast<std::size_t>(h)] : 0.0;
        if (sink) m = std::max(m, sink_logit);
        double sum = sink ? std::exp(sink_logit - m) : 0.0;
        for (std::int64_t j = 0; j < Lk; ++j)
          if (kr[j]) sum += w[j] = std::exp(s[j] - m);
        std::fill(o.begin(), o.end(), 0.0);
        const auto terms = static_cast<double>(D + 2);
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          w[j] /= sum;
          const double sm = std::fabs(s[j] - m);
          ds[j] = u * (terms * mag[j] + 2 * sm + 2);
          a2[j] = terms * mag[j] * mag[j] + 2 * sm * sm + 2;
          const double* vj = v.data() + ((b * p.Hkv + hk) * Lk + j) * D;
          for (std::int64_t d = 0; d < D; ++d) o[d] += w[j] * vj[d];
        }
        const auto acc_terms = static_cast<double>(n + 2);
        double* bo = r.out.data() + ((b * H + h) * Lq + i) * D;
        for (std::int64_t d = 0; d < D; ++d) {
          double worst = 0, var = 0, mass = 0;
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!kr[j]) continue;
            const double vjd = v[static_cast<std::size_t>(((b * p.Hkv + hk) * Lk + j) * D + d)];
            const double c = w[j] * std::fabs(vjd - o[d]);
            worst += c * ds[j];
            var += c * c * a2[j];
            mass += w[j] * std::fabs(vjd);
          }
          const double size = mass + std::fabs(o[d]);
          worst += acc_terms * u * size;
          var += acc_terms * size * size;
          bo[d] = ut * size + std::min(worst, lambda * u * std::sqrt(var));
        }
        if (want_lse) {
          double worst = 0, var = 0;
          for (std::int64_t j = 0; j < Lk; ++j)
            if (kr[j]) {
              worst += w[j] * ds[j];
              var += w[j] * w[j] * a2[j];
            }
          worst += acc_terms * u;
          var += acc_terms;
          const double lse = m + std::log(sum);
          r.lse[static_cast<std::size_t>((b * H + h) * Lq + i)] =
              std::min(worst, lambda * u * std::sqrt(var)) + 2 * u * std::fabs(lse);
        }
      }
    }
  return r;
}

AttentionExpectation attention_expectation(const AttentionProblem& p, DType t,
                                           std::span<const double> q, std::span<const double> k,
                                           std::span<const double> v, bool want_lse) {
  return {reference_attention(p, t, q, k, v, want_lse, Precision::exact),
          reference_attention(p, t, q, k, v, want_lse, Precision::naive),
          attention_rounding_bound(p, t, q, k, v, want_lse)};
}

LossResult reference_cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                                   std::span<const std::int64_t> labels,
                                   std::span<const double> weights, bool backward, Precision prec) {
  if (prec == Precision::exact)
    return cross_entropy_as<double, double>(p, logits, labels, weights, backward);
  return dispatch_dtype(t, [&](auto s) {
    using S = decltype(s);
    return cross_entropy_as<S, std::conditional_t<std::is_same_v<S, double>, double, float>>(
        p, logits, labels, weights, backward);
  });
}

LossResult reference_cross_entropy_upstream(const LossProblem& p, DType t,
                                            std::span<const double> logits,
                                            std::span<const std::int64_t> labels,
                                            std::span<const double> weights,
                                            std::span<const double> grad_output, Precision prec) {
  if (prec == Precision::exact)
    return cross_entropy_as<double, double>(p, logits, labels, weights, true, grad_output);
  return dispatch_dtype(t, [&](auto s) {
    using S = decltype(s);
    return cross_entropy_as<S, std::conditional_t<std::is_same_v<S, double>, double, float>>(
        p, logits, labels, weights, true, grad_output);
  });
}

std::string ReferenceImplementation::description() const {
  return "naive reference: full mask materialized from the one predicate, plain loops, storage "
         "in the case's dtype, accumulation in double";
}

std::vector<Op> ReferenceImplementation::ops() const {
  return {std::begin(kAllOps), std::end(kAllOps)};
}

Support ReferenceImplementation::supports_masks(const MaskSpec&, MaskEncoding, DType) const {
  return Support::yes();
}
std::vector<double> ReferenceImplementation::build_mask(const MaskSpec& spec, MaskEncoding e,
                                                        DType t) const {
  return ref::encode_mask(ref::build_keep_mask(spec), e, t);
}
std::vector<double> ReferenceImplementation::convert_mask(std::span<const double> values,
                                                          MaskEncoding from, MaskEncoding to,
                                                          DType t) const {
  return ref::convert_mask(values, from, to, t);
}
std::vector<std::uint8_t> ReferenceImplementation::keep_from_lengths(
    std::span<const std::int32_t> lengths, std::int64_t L, PaddingSide side) const {
  return ref::keep_from_lengths(lengths, L, side);
}
std::vector<std::int64_t> ReferenceImplementation::last_valid_index(
    std::span<const std::int32_t> lengths, std::int64_t L, PaddingSide side) const {
  return ref::last_valid_index(lengths, L, side);
}

Support ReferenceImplementation::supports_softmax(const SoftmaxProblem&, DType) const {
  return Support::yes();
}
std::vector<double> ReferenceImplementation::softmax(const SoftmaxProblem& p, DType t,
                                                     std::span<const double> x) const {
  return dispatch_dtype(t, [&](auto s) { return softmax_as<decltype(s), double>(p, x); });
}

Support ReferenceImplementation::attention_support(const AttentionProblem&, DType, bool) const {
  return Support::yes();
}
ScoreModifierSupport ReferenceImplementation::score_modifiers() const {
  return ScoreModifierSupport::all();
}
Support ReferenceImplementation::supports_attention_chunk(const AttentionProblem& p,
                                                          DType t) const {
  return supports_attention(p, t, true);
}
AttentionResult ReferenceImplementation::attention_chunk(
    const AttentionProblem& p, DType t, std::span<const double> q, std::span<const double> k,
    std::span<const double> v, std::int64_t key_begin, std::int64_t key_end) const {
  require(key_begin >= 0 && key_begin <= key_end && key_end <= p.mask.Lk, "key_begin", key_begin,
          "must satisfy 0 <= key_begin <= key_end <= Lk");
  AttentionProblem chunk = p;
  chunk.mods.sink_logits.clear();  // the sink is a chunk of its own
  return dispatch_dtype(t, [&](auto s) {
    return attention_as<decltype(s), double>(chunk, q, k, v, true, KeyRange{key_begin, key_end});
  });
}
Support ReferenceImplementation::supports_attention_paged(const AttentionProblem& p,
                                                          const PagedKv& kv, DType t,
                                                          bool want_lse) const {
  kv.validate(p);
  return supports_attention(p, t, want_lse);
}
AttentionResult ReferenceImplementation::attention_paged(
    const AttentionProblem& p, const PagedKv& kv, DType t, std::span<const double> q,
    std::span<const double> k_cache, std::span<const double> v_cache, bool want_lse) const {
  validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
  // The pages gathered into the contiguous layout (padded keys 0: never read), then attention.
  return attention(p, t, q, ref::gather_paged(p, kv, k_cache), ref::gather_paged(p, kv, v_cache),
                   want_lse);
}
AttentionResult ReferenceImplementation::attention(const AttentionProblem& p, DType t,
                                                   std::span<const double> q,
                                                   std::span<const double> k,
                                                   std::span<const double> v, bool want_lse) const {
  return dispatch_dtype(
      t, [&](auto s) { return attention_as<decltype(s), double>(p, q, k, v, want_lse); });
}

Support ReferenceImplementation::attention_backward_support(const AttentionProblem&, DType) const {
  return Support::yes();
}
AttentionGradients ReferenceImplementation::attention_backward(const AttentionProblem& p, DType t,
                                                               std::span<const double> q,
                                                               std::span<const double> k,
                                                               std::span<const double> v,
                                                               std::span<const double> dout) const {
  return dispatch_dtype(
      t, [&](auto s) { return attention_backward_as<decltype(s), double>(p, q, k, v, dout); });
}

Support ReferenceImplementation::supports_attention_varlen(const VarlenAttentionProblem&, DType,
                                                           bool) const {
  return Support::yes();
}
AttentionResult ReferenceImplementation::attention_varlen(const VarlenAttentionProblem& p, DType t,
                                                          std::span<const double> q,
                                                          std::span<const double> k,
                                                          std::span<const double> v,
                                                          bool want_lse) const {
  return dispatch_dtype(t, [&](auto tag) {
    using S = decltype(tag);
    const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
    std::vector<S> out(qs.size());
    std::vector<double> lse(want_lse ? static_cast<std::size_t>(p.H * p.total_q()) : 0);
    ref::attention_forward_varlen<S, double>(p, std::span<const S>(qs), std::span<const S>(ks),
                                             std::span<const S>(vs), std::span<S>(out),
                                             std::span<double>(lse));
    return AttentionResult{to_double_vec(out), lse};
  });
}

Support ReferenceImplementation::supports_cross_entropy(const LossProblem&, DType) const {
  return Support::yes();
}
LossResult ReferenceImplementation::cross_entropy(const LossProblem& p, DType t,
                                                  std::span<const double> logits,
                                                  std::span<const std::int64_t> labels,
                                                  std::span<const double> weights,
                                                  bool backward) const {
  return dispatch_dtype(t, [&](auto s) {
    return cross_entropy_as<decltype(s), double>(p, logits, labels, weights, backward);
  });
}
Support ReferenceImplementation::supports_cross_entropy_upstream(const LossProblem&, DType) const {
  return Support::yes();
}
LossResult ReferenceImplementation::cross_entropy_upstream(
    const LossProblem& p, DType t, std::span<const double> logits,
    std::span<const std::int64_t> labels, std::span<const double> weights,
    std::span<const double> grad_output) const {
  return dispatch_dtype(t, [&](auto s) {
    return cross_entropy_as<decltype(s), double>(p, logits, labels, weights, true, grad_output);
  });
}

Support ReferenceImplementation::supports_lm_labels(const LmLabelsProblem&) const {
  return Support::yes();
}
std::vector<std::int64_t> ReferenceImplementation::lm_labels(
    const LmLabelsProblem& p, std::span<const std::int64_t> ids, std::span<const std::uint8_t> keep,
    std::span<const std::int32_t> prompt_lens) const {
  return ref::lm_labels(p, ids, keep, prompt_lens);
}

Support ReferenceImplementation::supports_mlm(const MlmProblem&) const {
  return Support::yes();
}
MlmResult ReferenceImplementation::mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                                       std::span<const std::uint8_t> keep,
                                       std::span<const std::uint8_t> special,
                                       std::span<const std::uint8_t> continuation) const {
  auto o = ref::mlm_mask(p, ids, keep, special, continuation);
  return {std::move(o.ids), std::move(o.labels)};
}

}  // namespace maskcheck
