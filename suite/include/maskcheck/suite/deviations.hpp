// Deviations: the named policies on which real libraries legitimately differ from maskcheck's
// contract (problems.hpp). Each one is a convention, not a masking bug: the valid outputs are
// right and only the encoding of an edge case differs.
//
//   fully_masked_row_nan  A query with no visible key (a fully masked row) comes out NaN in every
//                         element, where the contract says zeros (softmax of an all -inf row:
//                         torch.softmax(x + additive_mask), SDPA before PyTorch 2.5). Only rows
//                         the reference says are empty; a plugin's output left unwritten is told
//                         apart (outputs are poisoned with a signaling NaN, loader.cpp) and fails.
//   empty_row_lse         The log-sum-exp of a fully masked row is +inf (FlashAttention, so that
//                         exp(s - lse) is 0 in the backward pass) or 0 (PyTorch's CPU flash
//                         kernel) instead of -inf. NaN is never a deviation. Only where the
//                         reference row is empty and the implementation's output row is exactly
//                         zero: a row that wrongly sees keys and happens to have LSE 0 fails.
//   all_ignored_mean_nan  Cross-entropy with reduction mean over rows that are all ignored is NaN
//                         (0 / 0: torch.nn.functional.cross_entropy), with zero gradient or NaN
//                         gradient, where the contract says loss 0 and zero gradient.
//   top_left_causal       Causal masks or windows aligned top-left (k <= q, PyTorch's
//                         is_causal=True) where bottom-right (the last query sees the last key)
//                         was asked for; they differ only where a segment has q_len != k_len.
//                         Named when every output row agrees with the top-left reference (each
//                         row against its own bound) and some row that disagrees with bottom-right
//                         differs from a row that sees no key, and only for an implementation
//                         that is top-left throughout the run: once a call of the run has shown
//                         bottom-right alignment where the two differ (a segment of either sign
//                         of Lk - Lq), a top-left call fails, and the other way round. An
//                         implementation whose alignment follows the sign of Lk - Lq, or an
//                         exclusive window edge that equals top-left only for Lk - Lq = 1, fails.
//
// The runner wraps the implementation under test in a DeviationFilter. It recognizes exactly these
// patterns in the outputs, records each under its name, and hands the properties the output the
// contract asks for (zeros, -inf, loss 0, the bottom-right result), so that every other
// difference is still a failure. In strict mode the filter throws instead: the case fails with the
// deviation's name and where it was seen. (A fully masked row of signed zeros, -0 from 0 * v, is
// the contract's zero row and is made +0 without a deviation.)
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "maskcheck/suite/forwarding.hpp"

namespace maskcheck {

struct DeviationPolicy {
  std::string name;
  std::vector<Op> ops;
  std::string summary;  // what differs, from what, and where it is seen
};
const std::vector<DeviationPolicy>& deviation_catalogue();

// Thrown by a strict DeviationFilter: what() names the deviation and the first place it was seen.
class DeviationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Deviations seen since the last reset (this thread): name -> number of calls that showed it.
void reset_deviation_ledger();
std::map<std::string, int> deviation_ledger();

class DeviationFilter : public ForwardingImplementation {
 public:
  DeviationFilter(const Implementation& inner, bool strict)
      : ForwardingImplementation(inner), strict_(strict) {}

  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override;
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override;
  // The padded filter on the keys and values gathered from the pages.
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override;
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override;

 private:
  // attention's deviations in result r of the padded problem (q, k, v its inputs).
  AttentionResult filter_attention(const AttentionProblem& p, DType t, std::span<const double> q,
                                   std::span<const double> k, std::span<const double> v,
                                   bool want_lse, AttentionResult r) const;
  // Records the deviation, or throws DeviationError in strict mode.
  void observe(const std::string& name, const std::string& where) const;
  // The run's alignment so far, for top_left_causal (both only where the alignments differ).
  enum class Seen : std::uint8_t { nothing, top_left, bottom_right };
  // Notes a call's alignment; throws DeviationError when the run has shown the other one.
  void note_alignment(Seen now, const std::string& where) const;
  bool strict_;
  mutable Seen alignment_ = Seen::nothing;
  mutable std::string alignment_where_;  // where the run's alignment was first shown
};

}  // namespace maskcheck
