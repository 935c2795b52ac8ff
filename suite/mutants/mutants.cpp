// Deliberately broken implementations. Each one is the reference with one bug that real masking
// code has shipped with; they exist to prove that the property catalogue catches such bugs.
#include <algorithm>
#include <cmath>

#include "maskcheck/reference/reference.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {
namespace {

// A mutant whose bug lives in mask construction: every masked operation uses its broken mask.
class MaskBug : public ReferenceImplementation {
 public:
  MaskBug(std::string id, std::string bug) : id_(std::move(id)), bug_(std::move(bug)) {}
  std::string name() const override { return "mutant:" + id_; }
  std::string description() const override { return bug_; }
  virtual std::vector<std::uint8_t> keep(const MaskSpec& spec) const = 0;

  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    return ref::encode_mask(keep(spec), e, t);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto k = keep(p.mask);
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      const auto xs = to_storage_vec<S>(x);
      std::vector<S> y(xs.size());
      ref::masked_softmax<S, double>(p, k, std::span<const S>(xs), std::span<S>(y));
      return to_double_vec(y);
    });
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    p.validate();
    const auto m = keep(p.mask);
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
      std::vector<S> out(qs.size());
      std::vector<double> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
      ref::attention_forward<S, double>(p, m, std::span<const S>(qs), std::span<const S>(ks),
                                        std::span<const S>(vs), std::span<S>(out),
                                        std::span<double>(lse));
      return AttentionResult{to_double_vec(out), lse};
    });
  }

 private:
  std::string id_, bug_;
};

template <class F>
class MaskBugFn : public MaskBug {
 public:
  MaskBugFn(std::string id, std::string bug, F f) : MaskBug(std::move(id), std::move(bug)), f_(f) {}
  std::vector<std::uint8_t> keep(const MaskSpec& spec) const override { return f_(spec); }

 private:
  F f_;
};

template <class F>
std::shared_ptr<const Implementation> mask_bug(std::string id, std::string bug, F f) {
  return std::make_shared<MaskBugFn<F>>(std::move(id), std::move(bug), f);
}

// Causal diagonal off by one: each query also sees the next key (k <= diag + 1).
std::vector<std::uint8_t> causal_off_by_one(MaskSpec s) {
  if (s.causal) {
    s.causal = false;
    Window w = s.window.value_or(Window{});
    w.right = std::min<std::int64_t>(w.right, 0) + 1;
    s.window = w;
  }
  return ref::build_keep_mask(s);
}

// The padding mask transposed: the key lengths limit the queries, keys are never limited.
std::vector<std::uint8_t> padding_on_queries(MaskSpec s) {
  if (!s.k_lens.empty()) {
    s.q_lens.assign(s.k_lens.begin(), s.k_lens.end());
    for (auto& l : s.q_lens) l = static_cast<std::int32_t>(std::min<std::int64_t>(l, s.Lq));
    s.k_lens.clear();
    s.cu_seqlens_q.clear();  // documents no longer line up with the lengths
    s.cu_seqlens_k.clear();
  }
  return ref::build_keep_mask(s);
}

// Top-left alignment where bottom-right was asked for (PyTorch is_causal with Lq != Lk).
std::vector<std::uint8_t> top_left_always(MaskSpec s) {
  s.alignment = Alignment::top_left;
  return ref::build_keep_mask(s);
}

// Ignored rows counted in the mean's denominator: sum / N instead of sum / sum(w).
class IgnoredInMean : public ReferenceImplementation {
 public:
  std::string name() const override { return "mutant:ignored-labels-in-mean"; }
  std::string description() const override {
    return "mean divides by all rows, ignored ones included";
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    if (p.reduction != Reduction::mean)
      return ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    LossProblem sum = p;
    sum.reduction = Reduction::sum;
    LossResult r =
        ReferenceImplementation::cross_entropy(sum, t, logits, labels, weights, backward);
    const double n = static_cast<double>(p.N);
    r.loss = n > 0 ? r.loss / n : 0.0;
    for (auto& g : r.dlogits) g = round_to(t, n > 0 ? g / n : 0.0);
    return r;
  }
};

// Gradient rows of ignored labels left as softmax - 0 instead of zeroed.
class GradientNotZeroed : public ReferenceImplementation {
 public:
  std::string name() const override { return "mutant:ignored-gradient-not-zeroed"; }
  std::string description() const override {
    return "ignored rows are excluded from the loss but still get softmax as gradient";
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    LossResult r = ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    if (!backward) return r;
    const double norm = p.reduction == Reduction::mean ? r.weight_sum : 1.0;
    for (std::int64_t i = 0; i < p.N; ++i) {
      if (labels[i] != p.ignore_index || norm == 0) continue;
      const double* x = logits.data() + i * p.V;
      const double m = *std::max_element(x, x + p.V);
      double sum = 0;
      for (std::int64_t j = 0; j < p.V; ++j) sum += std::exp(x[j] - m);
      for (std::int64_t j = 0; j < p.V; ++j)
        r.dlogits[i * p.V + j] = round_to(t, std::exp(x[j] - m) / sum / norm);
    }
    return r;
  }
};

}  // namespace

const std::vector<Mutant>& mutant_catalogue() {
  static const std::vector<Mutant> catalogue = {
      {mask_bug("causal-off-by-one", "the causal diagonal is off by one: k <= q + offset + 1",
                causal_off_by_one),
       "causal diagonal off by one", Op::attention},
      {mask_bug("padding-on-queries",
                "the key-padding mask is applied to the queries instead of the keys",
                padding_on_queries),
       "padding mask applied to queries instead of keys", Op::attention},
      {mask_bug("top-left-causal", "causal and window always top-left aligned (is_causal=True)",
                top_left_always),
       "top-left vs bottom-right confusion when Lq != Lk", Op::attention},
      {std::make_shared<IgnoredInMean>(), "ignored labels counted in the mean's denominator",
       Op::cross_entropy},
      {std::make_shared<GradientNotZeroed>(), "gradient not zeroed for ignored rows",
       Op::cross_entropy},
  };
  return catalogue;
}

Registry mutant_registry() {
  Registry r;
  for (const auto& m : mutant_catalogue()) r.add(m.impl);
  return r;
}

}  // namespace maskcheck
