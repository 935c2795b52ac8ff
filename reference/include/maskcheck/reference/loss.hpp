// Reference cross-entropy with ignore_index, token weights, label smoothing and reduction, its
// backward, and causal-LM label construction.
//   logits: [N, V], labels: [N], weights: [N] (optional), dlogits: [N, V] (optional)
//   lse_i = log sum_j exp(x_ij);  l_i = (1 - eps)(lse_i - x_iy) + eps (lse_i - mean_j x_ij)
//   dlogits_ij = (softmax_ij - (1 - eps)[j == y_i] - eps / V) * w_i / norm for contributing
//   rows, exactly 0 for ignored rows (never read); norm = sum of w over contributing rows for
//   mean (0 contributing weight gives loss 0 and zero gradients), 1 otherwise.
// Upstream gradient (optional, backward only): grad_output [N] for reduction none (g_i, the
//   gradient of row i's loss) or [1] for mean and sum (g, the reduced loss's); the gradient above
//   is multiplied by g_i (or g) instead of assuming ones. An ignored row's g_i is never read (its
//   gradient row stays +0.0 whatever g_i holds, NaN included), nor is g when no weight
//   contributes to a mean.
// Labels outside [0, V) other than ignore_index throw InvalidArgument naming the row.
// Complexity: O(N V). Accumulation in A.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "maskcheck/reference/numeric.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::ref {

template <class A>
struct LossOutput {
  A loss = 0;              // the reduced loss (sum of `losses` for reduction none)
  std::vector<A> losses;   // [N]: w_i l_i, 0 for ignored rows
  std::int64_t count = 0;  // contributing (non-ignored) rows
  A weight_sum = 0;        // sum of w over contributing rows
};

// sum_i w_i x_i / sum_i w_i, and 0 when the weights sum to 0 (never NaN).
template <class A>
A weighted_mean(std::span<const double> values, std::span<const double> weights) {
  require_size("weights", weights.size(), static_cast<std::int64_t>(values.size()));
  A num = 0, den = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    num += static_cast<A>(weights[i]) * static_cast<A>(values[i]);
    den += static_cast<A>(weights[i]);
  }
  return den > 0 ? num / den : A(0);
}

template <class S, class A>
LossOutput<A> cross_entropy(const LossProblem& p, std::span<const S> logits,
                            std::span<const std::int64_t> labels, std::span<const double> weights,
                            std::span<S> dlogits, std::span<const double> grad_output = {}) {
  p.validate();
  require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
  validate_loss_inputs(p, labels, weights);
  const bool backward = !dlogits.empty();
  if (backward) require_size("dlogits", dlogits.size(), checked_numel("dlogits", {p.N, p.V}));
  validate_upstream_gradient(p, backward, grad_output);
  const A eps = static_cast<A>(p.label_smoothing);
  const std::int64_t V = p.V;

  LossOutput<A> o;
  o.losses.assign(static_cast<std::size_t>(p.N), A(0));
  std::vector<A> lse(static_cast<std::size_t>(p.N), A(0));
  A total = 0;
  for (std::int64_t i = 0; i < p.N; ++i) {
    if (labels[i] == p.ignore_index) continue;
    const S* x = logits.data() + i * V;
    A m = -std::numeric_limits<A>::infinity();
    for (std::int64_t j = 0; j < V; ++j) m = std::max(m, load<A>(x[j]));
    A sum = 0, xsum = 0;
    for (std::int64_t j = 0; j < V; ++j) {
      sum += std::exp(load<A>(x[j]) - m);
      xsum += load<A>(x[j]);
    }
    lse[i] = m + std::log(sum);
    const A nll = lse[i] - load<A>(x[labels[i]]);
    const A smooth = lse[i] - xsum / static_cast<A>(V);
    const A w = p.weighted ? static_cast<A>(weights[i]) : A(1);
    o.losses[i] = w * ((1 - eps) * nll + eps * smooth);
    total += o.losses[i];
    o.weight_sum += w;
    ++o.count;
  }
  o.loss =
      p.reduction == Reduction::mean ? (o.weight_sum > 0 ? total / o.weight_sum : A(0)) : total;

  if (backward) {
    const A norm = p.reduction == Reduction::mean ? o.weight_sum : A(1);
    for (std::int64_t i = 0; i < p.N; ++i) {
      S* g = dlogits.data() + i * V;
      if (labels[i] == p.ignore_index || norm == 0) {
        for (std::int64_t j = 0; j < V; ++j) g[j] = store<S>(A(0));
        continue;
      }
      const S* x = logits.data() + i * V;
      const A w = p.weighted ? static_cast<A>(weights[i]) : A(1);
      const A up = grad_output.empty()              ? A(1)
                   : p.reduction == Reduction::none ? static_cast<A>(grad_output[i])
                                                    : static_cast<A>(grad_output[0]);
      for (std::int64_t j = 0; j < V; ++j) {
        const A target = (j == labels[i] ? 1 - eps : A(0)) + eps / static_cast<A>(V);
        g[j] = store<S>((std::exp(load<A>(x[j]) - lse[i]) - target) * w * up / norm);
      }
    }
  }
  return o;
}

// Causal-LM labels (see LmLabelsProblem). ids, keep: [B, L]; prompt_lens: [B] or empty.
// Padding comes from `keep`, never from comparing ids with a pad id, so a real EOS equal to
// the pad id keeps its label.
std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                    std::span<const std::uint8_t> keep,
                                    std::span<const std::int32_t> prompt_lens);

}  // namespace maskcheck::ref
