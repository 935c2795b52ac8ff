#include "maskcheck/suite/reference_impl.hpp"

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

template <class S, class A>
AttentionResult attention_as(const AttentionProblem& p, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v, bool want_lse) {
  validate_attention_inputs(p, q.size(), k.size(), v.size());
  const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
  std::vector<S> out(qs.size());
  std::vector<A> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
  ref::attention_forward<S, A>(p, std::span<const S>(qs), std::span<const S>(ks),
                               std::span<const S>(vs), std::span<S>(out), std::span<A>(lse));
  AttentionResult r;
  r.out = to_double_vec(out);
  r.lse.assign(lse.begin(), lse.end());
  return r;
}

template <class S, class A>
LossResult cross_entropy_as(const LossProblem& p, std::span<const double> logits,
                            std::span<const std::int64_t> labels, std::span<const double> weights,
                            bool backward) {
  p.validate();
  require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
  const auto xs = to_storage_vec<S>(logits);
  std::vector<S> g(backward ? xs.size() : 0);
  const auto o =
      ref::cross_entropy<S, A>(p, std::span<const S>(xs), labels, weights, std::span<S>(g));
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

Support ReferenceImplementation::supports_attention(const AttentionProblem&, DType, bool) const {
  return Support::yes();
}
AttentionResult ReferenceImplementation::attention(const AttentionProblem& p, DType t,
                                                   std::span<const double> q,
                                                   std::span<const double> k,
                                                   std::span<const double> v, bool want_lse) const {
  return dispatch_dtype(
      t, [&](auto s) { return attention_as<decltype(s), double>(p, q, k, v, want_lse); });
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
