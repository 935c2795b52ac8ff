// The reference as a registered implementation ("reference": storage in the case's dtype,
// accumulation in double), and the two reference evaluations the properties compare against:
// Precision::exact is reference<double, double> (the ground truth); Precision::naive is
// reference<S, float> with S the case's dtype, the naive same-dtype baseline of the
// FlashAttention tolerance rule.
#pragma once

#include <memory>

#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

enum class Precision { exact, naive };

// Registry-boundary doubles <-> storage type S (exact: the doubles are representable in S).
template <class S>
std::vector<S> to_storage_vec(std::span<const double> x) {
  std::vector<S> v(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) v[i] = to_storage<S>(x[i]);
  return v;
}
template <class S>
std::vector<double> to_double_vec(const std::vector<S>& x) {
  std::vector<double> v(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) v[i] = to_double(x[i]);
  return v;
}

std::vector<double> reference_softmax(const SoftmaxProblem& p, DType t, std::span<const double> x,
                                      Precision prec);
AttentionResult reference_attention(const AttentionProblem& p, DType t, std::span<const double> q,
                                    std::span<const double> k, std::span<const double> v,
                                    bool want_lse, Precision prec);
// First-order rounding bounds of attention, for check_close's `rounding`: per output element and
// per log-sum-exp, how far an implementation storing in dtype t and computing in fp32 (t = f64:
// in f64) may land from the exact value when every operation of the formula is rounded once, to
// first order in the unit roundoff u of the arithmetic (u_t: of the storage). Per visible key j
// of a row (n keys, exact probabilities p_j, output o):
//   score s_j = scale <q, k_j>, exp(s_j - m): D + 2 rounding terms of size at most
//     mag_j = |scale| sum_d |q_d k_jd| (the dot, the scale), 2 of size |s_j - m| (the shift and its
//     base-2 scaling) and 2 of size 1 (exp), so |ds_j| <= u ((D + 2) mag_j + 2 |s_j - m| + 2);
//   out_d = sum_j p_j v_jd moves by sum_j p_j (v_jd - out_d) ds_j, plus n + 2 terms of size at
//     most size_d = sum_j p_j |v_jd| + |out_d| (the n-term sum, normalization, rescaling);
//   lse = log sum_j e^{s_j} moves by sum_j p_j ds_j, plus n + 2 terms of size 1 and 2 u |lse|.
// Each bound is the smaller of the worst case (every term at its size, aligned) and the
// probabilistic bound of Higham and Mary (SIAM J. Sci. Comput. 41(5), 2019): with the rounding
// errors independent and mean zero, Hoeffding's inequality bounds their sum by lambda u
// sqrt(sum of squared sizes) except with probability 2 exp(-lambda^2 / 2), 3e-8 for lambda = 6.
// Worst case decides rows dominated by a few keys (nearly tied large scores: the ill-conditioned
// rows the FlashAttention rule's single naive draw misjudges); the probabilistic bound keeps rows
// of many comparable keys as tight as the rule's fp32 floor. The storage terms u_t size_d are
// added in full. Rows that see no key get 0. Computed in double, O(B H Lq Lk D).
inline constexpr double kRoundingLambda = 6.0;
AttentionResult attention_rounding_bound(const AttentionProblem& p, DType t,
                                         std::span<const double> q, std::span<const double> k,
                                         std::span<const double> v, bool want_lse);
// What an attention result in dtype t is checked against (check_close): the exact reference, the
// naive one in t and the per-element rounding bounds, each with out and (want_lse) lse.
struct AttentionExpectation {
  AttentionResult want, naive, rounding;
};
AttentionExpectation attention_expectation(const AttentionProblem& p, DType t,
                                           std::span<const double> q, std::span<const double> k,
                                           std::span<const double> v, bool want_lse);
// Attention backward (reference/attention.hpp) in the same two precisions.
AttentionGradients reference_attention_backward(const AttentionProblem& p, DType t,
                                                std::span<const double> q,
                                                std::span<const double> k,
                                                std::span<const double> v,
                                                std::span<const double> dout, Precision prec);
// First-order rounding bounds of attention backward (check_close's `rounding`), in the manner of
// attention_rounding_bound: per visible pair the score error (D + 2 roundings of its magnitude,
// the shift, the exponential), the probability's (its score's and the row mean's, the
// normalization's n + 2), dp's (D + 1 roundings), delta's and ds's, carried into each gradient
// element's sum with that sum's own roundings (n + 1 terms), plus the storage rounding u_t of the
// exact value. Worst case, in double, O(B H Lq Lk D); rows that see no key contribute 0.
AttentionGradients attention_backward_rounding_bound(const AttentionProblem& p, DType t,
                                                     std::span<const double> q,
                                                     std::span<const double> k,
                                                     std::span<const double> v,
                                                     std::span<const double> dout);
LossResult reference_cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                                   std::span<const std::int64_t> labels,
                                   std::span<const double> weights, bool backward, Precision prec);
// The backward with an upstream gradient (reference/loss.hpp), exact or naive as above.
LossResult reference_cross_entropy_upstream(const LossProblem& p, DType t,
                                            std::span<const double> logits,
                                            std::span<const std::int64_t> labels,
                                            std::span<const double> weights,
                                            std::span<const double> grad_output, Precision prec);

class ReferenceImplementation : public Implementation {
 public:
  std::string name() const override { return "reference"; }
  std::string description() const override;
  std::vector<Op> ops() const override;

  Support supports_masks(const MaskSpec& spec, MaskEncoding e, DType t) const override;
  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override;
  std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                   MaskEncoding to, DType t) const override;
  std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                              PaddingSide side) const override;
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                             PaddingSide side) const override;

  Support supports_softmax(const SoftmaxProblem& p, DType t) const override;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override;

  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override;
  ScoreModifierSupport score_modifiers() const override;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override;

  Support attention_backward_support(const AttentionProblem& p, DType t) const override;
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override;

  Support supports_attention_chunk(const AttentionProblem& p, DType t) const override;
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override;
  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override;
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override;

  Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t,
                                    bool want_lse) const override;
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override;

  Support supports_cross_entropy(const LossProblem& p, DType t) const override;
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override;
  Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const override;
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override;

  Support supports_lm_labels(const LmLabelsProblem& p) const override;
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override;

  Support supports_mlm(const MlmProblem& p) const override;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override;
};

}  // namespace maskcheck
