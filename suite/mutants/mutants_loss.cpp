// Mutants of masked cross-entropy and of causal-LM label construction.
#include <algorithm>
#include <cmath>

#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

// The mean divided by the wrong denominator: the sum-reduced loss and gradient over
// denominator(p, r) instead of the contributing weight.
class WrongMeanDenominator : public Named {
 public:
  using DenominatorFn = double (*)(const LossProblem&, const LossResult&);
  WrongMeanDenominator(std::string id, std::string how, DenominatorFn denominator)
      : Named(std::move(id), std::move(how)), denominator_(denominator) {}
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    if (p.reduction != Reduction::mean)
      return ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    LossProblem sum = p;
    sum.reduction = Reduction::sum;
    LossResult r =
        ReferenceImplementation::cross_entropy(sum, t, logits, labels, weights, backward);
    const double n = denominator_(p, r);
    r.loss = n > 0 ? r.loss / n : 0.0;
    for (auto& g : r.dlogits) g = round_to(t, n > 0 ? g / n : 0.0);
    return r;
  }

 private:
  DenominatorFn denominator_;
};

// Ignored rows counted in the mean's denominator: sum / N instead of sum / sum(w).
double all_rows(const LossProblem& p, const LossResult&) {
  return static_cast<double>(p.N);
}

// Token weights left out of the denominator: sum(w l) / count instead of sum(w l) / sum(w).
double contributing_count(const LossProblem&, const LossResult& r) {
  return static_cast<double>(r.count);
}

// softmax(x_i) of row i in double.
std::vector<double> row_softmax(std::span<const double> logits, std::int64_t i, std::int64_t V) {
  const double* x = logits.data() + i * V;
  const double m = *std::max_element(x, x + V);
  std::vector<double> p(static_cast<std::size_t>(V));
  double sum = 0;
  for (std::int64_t j = 0; j < V; ++j) sum += p[j] = std::exp(x[j] - m);
  for (auto& e : p) e /= sum;
  return p;
}

// Gradient rows of ignored labels left as softmax - 0 instead of zeroed.
class GradientNotZeroed : public Named {
 public:
  using Named::Named;
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    LossResult r = ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    if (!backward) return r;
    const double norm = p.reduction == Reduction::mean ? r.weight_sum : 1.0;
    for (std::int64_t i = 0; i < p.N; ++i) {
      if (labels[i] != p.ignore_index || norm == 0) continue;
      const auto sm = row_softmax(logits, i, p.V);
      for (std::int64_t j = 0; j < p.V; ++j) r.dlogits[i * p.V + j] = round_to(t, sm[j] / norm);
    }
    return r;
  }
};

// Label smoothing applied to ignored rows: the smoothing term eps * (lse - mean_j x_j) of every
// row enters the loss and its gradient, the ignored rows' included (the NLL term is masked, the
// smoothing term is not).
class SmoothingOnIgnoredRows : public Named {
 public:
  using Named::Named;
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    LossResult r = ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    const double eps = p.label_smoothing;
    if (eps == 0) return r;
    const double norm = p.reduction == Reduction::mean ? r.weight_sum : 1.0;
    const double V = static_cast<double>(p.V);
    double extra = 0;
    for (std::int64_t i = 0; i < p.N; ++i) {
      if (labels[i] != p.ignore_index) continue;
      const double* x = logits.data() + i * p.V;
      const double m = *std::max_element(x, x + p.V);
      double sum = 0, xsum = 0;
      for (std::int64_t j = 0; j < p.V; ++j) {
        sum += std::exp(x[j] - m);
        xsum += x[j];
      }
      const double w = p.weighted ? weights[i] : 1.0;
      const double li = w * eps * (m + std::log(sum) - xsum / V);
      r.losses[i] = round_to(t, li);
      extra += li;
      if (backward && norm > 0) {
        const auto sm = row_softmax(logits, i, p.V);
        for (std::int64_t j = 0; j < p.V; ++j)
          r.dlogits[i * p.V + j] = round_to(t, eps * (sm[j] - 1.0 / V) * w / norm);
      }
    }
    r.loss += norm > 0 ? extra / norm : 0.0;
    return r;
  }
};

// Causal-LM labels masked by token id (labels[labels == pad_id] = -100) instead of by the
// attention mask. The pad id is the one the batch's padding holds.
class PadIsEosLabels : public Named {
 public:
  using Named::Named;
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override {
    const auto pad = std::find(keep.begin(), keep.end(), std::uint8_t{0});
    auto labels = ReferenceImplementation::lm_labels(p, ids, keep, prompt_lens);
    if (pad == keep.end()) return labels;  // no padding in the batch: no pad id to compare with
    const std::int64_t pad_id = ids[pad - keep.begin()];
    for (auto& y : labels)
      if (y == pad_id) y = p.ignore_index;
    return labels;
  }
};

// Prompt masking one token too long: the first response token loses its label too.
class PromptOffByOne : public Named {
 public:
  using Named::Named;
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override {
    std::vector<std::int32_t> longer(prompt_lens.begin(), prompt_lens.end());
    for (auto& n : longer) ++n;
    return ReferenceImplementation::lm_labels(p, ids, keep, longer);
  }
};

}  // namespace

// ---- the backward with an upstream gradient (cross_entropy_upstream) --------------------------

// How a mutant reads the upstream gradient of reduction none.
enum class UpstreamBug : std::uint8_t {
  ones,            // not at all: the backward of ones
  compacted,       // row i reads grad_output[k] for the k-th contributing row (a packed index)
  ignored_scaled,  // ignored rows' zero gradient multiplied by their grad_output too (0 * NaN)
};

class UpstreamMisread : public Named {
 public:
  UpstreamMisread(std::string id, std::string how, UpstreamBug bug)
      : Named(std::move(id), std::move(how)), bug_(bug) {}
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    if (bug_ == UpstreamBug::ones || p.reduction != Reduction::none)
      return bug_ == UpstreamBug::ones
                 ? ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, true)
                 : ReferenceImplementation::cross_entropy_upstream(p, t, logits, labels, weights,
                                                                   grad_output);
    std::vector<double> g(grad_output.begin(), grad_output.end());
    if (bug_ == UpstreamBug::compacted) {
      std::size_t k = 0;
      for (std::int64_t i = 0; i < p.N; ++i)
        if (labels[i] != p.ignore_index) g[static_cast<std::size_t>(i)] = grad_output[k++];
    }
    LossResult r =
        ReferenceImplementation::cross_entropy_upstream(p, t, logits, labels, weights, g);
    if (bug_ == UpstreamBug::ignored_scaled)
      for (std::int64_t i = 0; i < p.N; ++i)
        if (labels[i] == p.ignore_index)
          for (std::int64_t j = 0; j < p.V; ++j)
            r.dlogits[i * p.V + j] = round_to(t, r.dlogits[i * p.V + j] * grad_output[i]);
    return r;
  }

 private:
  UpstreamBug bug_;
};

// A mutant of the upstream-gradient backward: it meets the cross_entropy.upstream.* properties
// only (its plain cross_entropy is the reference's).
Mutant upstream(std::string bug, std::string id, std::string how, UpstreamBug b) {
  return in_entry(
      Mutant::Entry::backward,
      entry<UpstreamMisread>(Op::cross_entropy, std::move(bug), std::move(id), std::move(how), b));
}

void add_loss_mutants(std::vector<Mutant>& out) {
  const Op op = Op::cross_entropy;
  out.push_back(entry<WrongMeanDenominator>(
      op, "ignored labels counted in the mean's denominator", "ignored-labels-in-mean",
      "mean divides by all rows, ignored ones included", all_rows));
  out.push_back(entry<GradientNotZeroed>(
      op, "gradient not zeroed for ignored rows", "ignored-gradient-not-zeroed",
      "ignored rows are excluded from the loss but still get softmax as gradient"));
  out.push_back(entry<SmoothingOnIgnoredRows>(
      op, "label smoothing applied to ignored rows", "smoothing-on-ignored-rows",
      "the NLL term is masked by ignore_index but the label-smoothing term is not: ignored rows "
      "add eps * (lse - mean logit) to the loss and eps * (softmax - 1/V) to the gradient"));
  out.push_back(entry<WrongMeanDenominator>(
      op, "token weights left out of the mean's denominator", "weighted-mean-over-count",
      "the weighted mean divides sum(w * l) by the number of contributing tokens, not sum(w)",
      contributing_count));
  out.push_back(upstream("upstream gradient ignored", "ce-upstream-ones",
                         "the backward assumes an upstream gradient of ones whatever it is given",
                         UpstreamBug::ones));
  out.push_back(upstream(
      "upstream gradient indexed by contributing row", "ce-upstream-compacted",
      "reduction none: row i is scaled by grad_output[k], k its rank among the contributing rows "
      "(the index of a kernel that packs the non-ignored rows), instead of grad_output[i]",
      UpstreamBug::compacted));
  out.push_back(upstream(
      "ignored rows' upstream gradient read", "ce-upstream-ignored-read",
      "reduction none: the ignored rows' zero gradient is multiplied by their grad_output like "
      "the others' (0 * g: NaN when g is NaN or inf)",
      UpstreamBug::ignored_scaled));
}

void add_labels_mutants(std::vector<Mutant>& out) {
  const Op op = Op::lm_labels;
  out.push_back(entry<PadIsEosLabels>(
      op, "pad == eos label masking", "pad-eos-label-masking",
      "labels equal to the pad id are set to ignore_index, which also drops the label of a real "
      "EOS when pad == eos"));
  out.push_back(entry<PromptOffByOne>(
      op, "prompt masking off by one", "prompt-off-by-one",
      "prompt positions are masked with <= instead of <: the first response token loses its "
      "label"));
}

}  // namespace maskcheck::mutants
