// An Implementation that forwards every call to another one: the base of decorators that the
// runner wraps around the implementation under test (the deviation policy, the recorder of
// counterexamples). A decorator overrides the calls it looks at and inherits the rest.
#pragma once

#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

class ForwardingImplementation : public Implementation {
 public:
  explicit ForwardingImplementation(const Implementation& inner) : inner_(inner) {}
  const Implementation& inner() const { return inner_; }

  std::string name() const override { return inner_.name(); }
  std::string description() const override { return inner_.description(); }
  std::vector<Op> ops() const override { return inner_.ops(); }
  bool third_party() const override { return inner_.third_party(); }
  std::vector<DType> dtypes(Op op) const override { return inner_.dtypes(op); }
  Storage storage(DType t) const override { return inner_.storage(t); }

  Support supports_masks(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    return inner_.supports_masks(spec, e, t);
  }
  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    return inner_.build_mask(spec, e, t);
  }
  std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                   MaskEncoding to, DType t) const override {
    return inner_.convert_mask(values, from, to, t);
  }
  std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                              PaddingSide side) const override {
    return inner_.keep_from_lengths(lengths, L, side);
  }
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                             PaddingSide side) const override {
    return inner_.last_valid_index(lengths, L, side);
  }

  Support supports_softmax(const SoftmaxProblem& p, DType t) const override {
    return inner_.supports_softmax(p, t);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    return inner_.softmax(p, t, x);
  }

  bool attention_lse() const override { return inner_.attention_lse(); }
  ScoreModifierSupport score_modifiers() const override { return inner_.score_modifiers(); }
  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override {
    return inner_.supports_attention(p, t, want_lse);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    return inner_.attention(p, t, q, k, v, want_lse);
  }

  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    return inner_.supports_attention_backward(p, t);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    return inner_.attention_backward(p, t, q, k, v, dout);
  }

  Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t,
                                    bool want_lse) const override {
    return inner_.supports_attention_varlen(p, t, want_lse);
  }
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    return inner_.attention_varlen(p, t, q, k, v, want_lse);
  }

  Support supports_attention_chunk(const AttentionProblem& p, DType t) const override {
    return inner_.supports_attention_chunk(p, t);
  }
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    return inner_.attention_chunk(p, t, q, k, v, key_begin, key_end);
  }
  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override {
    return inner_.supports_attention_paged(p, kv, t, want_lse);
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    return inner_.attention_paged(p, kv, t, q, k_cache, v_cache, want_lse);
  }

  Support supports_cross_entropy(const LossProblem& p, DType t) const override {
    return inner_.supports_cross_entropy(p, t);
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    return inner_.cross_entropy(p, t, logits, labels, weights, backward);
  }
  Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const override {
    return inner_.supports_cross_entropy_upstream(p, t);
  }
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    return inner_.cross_entropy_upstream(p, t, logits, labels, weights, grad_output);
  }

  Support supports_lm_labels(const LmLabelsProblem& p) const override {
    return inner_.supports_lm_labels(p);
  }
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override {
    return inner_.lm_labels(p, ids, keep, prompt_lens);
  }

  Support supports_mlm(const MlmProblem& p) const override { return inner_.supports_mlm(p); }
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    return inner_.mlm(p, ids, keep, special, continuation);
  }

 private:
  const Implementation& inner_;
};

}  // namespace maskcheck
