// Properties of MLM token masking.
#include <rapidcheck.h>
#include <cmath>

#include "maskcheck/reference/mlm.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"

namespace maskcheck {
namespace {

bool draw(const Implementation& impl, MlmCase& c, bool statistical = false) {
  c = statistical ? *gen_mlm_stat_case().as("case") : *gen_mlm_case().as("case");
  if (!supported(impl.supports_mlm(c.problem))) return false;
  tag_case({c.padding == PaddingSide::left ? "left-padding" : "right-padding"});
  if (c.problem.whole_word) tag_case({"whole-word"});
  if (c.problem.max_predictions > 0) tag_case({"max-predictions"});
  return true;
}

MlmResult run(const Implementation& impl, const MlmCase&, const MlmProblem& p, const MlmData& d) {
  return impl.mlm(p, d.ids, d.keep, d.special, d.continuation);
}

// Statistical bounds: at 6 standard deviations a correct implementation fails about once in
// 10^9 cases, while a wrong rate shows up as tens of deviations at these sample sizes.
constexpr double kSigmas = 6.0;

}  // namespace

void add_mlm_properties(std::vector<Property>& out) {
  out.push_back({"mlm.agreesWithReference", Op::mlm,
                 "masked ids and labels are bit-identical to the reference for the same seed",
                 [](const Implementation& impl, const CaseLimits&) {
                   MlmCase c;
                   if (!draw(impl, c)) return;
                   const auto d = make_data(c);
                   const auto got = run(impl, c, c.problem, d);
                   const auto want =
                       ref::mlm_mask(c.problem, d.ids, d.keep, d.special, d.continuation);
                   const Shape s = tokens_shape(c.problem.B, c.problem.L);
                   expect(check_exact("ids", s, got.ids, want.ids));
                   expect(check_exact("labels", s, got.labels, want.labels));
                 }});

  out.push_back(
      {"mlm.specialsAndPadsNeverSelected", Op::mlm,
       "special and padding tokens are never selected: their label is ignore_index, their id kept",
       [](const Implementation& impl, const CaseLimits&) {
         MlmCase c;
         if (!draw(impl, c)) return;
         const auto d = make_data(c);
         const auto got = run(impl, c, c.problem, d);
         for (std::size_t i = 0; i < d.ids.size(); ++i)
           if (!d.keep[i] || d.special[i])
             expect(got.labels[i] == c.problem.ignore_index && got.ids[i] == d.ids[i],
                    std::string(d.keep[i] ? "special" : "padding") + " token at " +
                        tokens_shape(c.problem.B, c.problem.L).coords(std::int64_t(i)) +
                        " was selected (label " + std::to_string(got.labels[i]) + ", id " +
                        std::to_string(d.ids[i]) + " -> " + std::to_string(got.ids[i]) + ")");
       }});

  out.push_back(
      {"mlm.labelsMarkExactlyTheSelectedTokens", Op::mlm,
       "a label is the original id at selected tokens and ignore_index elsewhere; unselected ids "
       "are unchanged, selected ones are [MASK], a token in [0, V) or themselves; the per-sequence "
       "cap holds and whole words are selected together",
       [](const Implementation& impl, const CaseLimits&) {
         MlmCase c;
         if (!draw(impl, c)) return;
         const auto d = make_data(c);
         const MlmProblem& p = c.problem;
         const auto got = run(impl, c, p, d);
         const Shape s = tokens_shape(p.B, p.L);
         for (std::int64_t b = 0; b < p.B; ++b) {
           std::int64_t selected = 0;
           for (std::int64_t t = 0; t < p.L; ++t) {
             const std::int64_t i = b * p.L + t;
             if (got.labels[i] == p.ignore_index) {
               expect(got.ids[i] == d.ids[i], "unselected token at " + s.coords(i) +
                                                  " changed from " + std::to_string(d.ids[i]) +
                                                  " to " + std::to_string(got.ids[i]));
               continue;
             }
             ++selected;
             expect(got.labels[i] == d.ids[i], "label at " + s.coords(i) + " is " +
                                                   std::to_string(got.labels[i]) +
                                                   ", original id " + std::to_string(d.ids[i]));
             expect(got.ids[i] >= 0 && got.ids[i] < p.V,
                    "selected token at " + s.coords(i) + " became " + std::to_string(got.ids[i]) +
                        ", outside [0, V)");
             if (p.p_random == 0.0)
               expect(got.ids[i] == p.mask_id || got.ids[i] == d.ids[i],
                      "with p_random = 0 the token at " + s.coords(i) + " became " +
                          std::to_string(got.ids[i]));
           }
           if (p.max_predictions > 0)
             expect(selected <= p.max_predictions,
                    "sequence " + std::to_string(b) + " has " + std::to_string(selected) +
                        " predictions, cap " + std::to_string(p.max_predictions));
           if (p.whole_word) {
             // Eligible tokens of one word share their fate.
             const std::int64_t t0 = valid_begin(c.padding, p.L, c.lengths[b]);
             int word_fate = -1;
             for (std::int64_t t = t0; t < t0 + c.lengths[b]; ++t) {
               const std::int64_t i = b * p.L + t;
               if (t == t0 || !d.continuation[i]) word_fate = -1;
               if (d.special[i]) continue;
               const int fate = got.labels[i] != p.ignore_index;
               if (word_fate == -1) word_fate = fate;
               expect(fate == word_fate, "whole-word masking split a word at " + s.coords(i));
             }
           }
         }
       }});

  out.push_back({"mlm.sameSeedSameMask", Op::mlm, "two runs with the same seed are bit-identical",
                 [](const Implementation& impl, const CaseLimits&) {
                   MlmCase c;
                   if (!draw(impl, c)) return;
                   const auto d = make_data(c);
                   const auto a = run(impl, c, c.problem, d), b = run(impl, c, c.problem, d);
                   const Shape s = tokens_shape(c.problem.B, c.problem.L);
                   expect(check_exact("ids", s, b.ids, a.ids));
                   expect(check_exact("labels", s, b.labels, a.labels));
                 }});

  out.push_back(
      {"mlm.sequencesAreIndependent", Op::mlm,
       "a sequence's mask depends neither on the other sequences' tokens nor on its padding side",
       [](const Implementation& impl, const CaseLimits&) {
         MlmCase c;
         if (!draw(impl, c)) return;
         const MlmProblem& p = c.problem;
         if (p.B == 0) return;
         const auto d = make_data(c);
         const std::int64_t kb = *rc::gen::inRange<std::int64_t>(0, p.B).as("kept sequence");
         auto other = d;
         DataRng rng(c.data_seed ^ 0x1d5);
         for (std::int64_t i = 0; i < p.B * p.L; ++i)
           if (i / p.L != kb) other.ids[i] = rng.below(p.V);
         const auto a = run(impl, c, p, d), b = run(impl, c, p, other);
         const std::vector<std::int64_t> a_ids(a.ids.begin() + kb * p.L,
                                               a.ids.begin() + (kb + 1) * p.L),
             b_ids(b.ids.begin() + kb * p.L, b.ids.begin() + (kb + 1) * p.L),
             a_lab(a.labels.begin() + kb * p.L, a.labels.begin() + (kb + 1) * p.L),
             b_lab(b.labels.begin() + kb * p.L, b.labels.begin() + (kb + 1) * p.L);
         const Shape s{{"t"}, {p.L}};
         expect(check_exact("ids of the kept sequence", s, b_ids, a_ids));
         expect(check_exact("labels of the kept sequence", s, b_lab, a_lab));
         // The same tokens padded on the other side give the same mask, shifted.
         MlmCase flipped = c;
         flipped.padding = c.padding == PaddingSide::left ? PaddingSide::right : PaddingSide::left;
         const auto fd = make_data(flipped);
         const auto f = run(impl, flipped, p, fd);
         std::vector<std::int64_t> want(f.labels.size(), p.ignore_index),
             got_valid(f.labels.size(), p.ignore_index);
         for (std::int64_t bb = 0; bb < p.B; ++bb) {
           const std::int64_t t0 = valid_begin(c.padding, p.L, c.lengths[bb]);
           const std::int64_t f0 = valid_begin(flipped.padding, p.L, c.lengths[bb]);
           for (std::int64_t t = 0; t < c.lengths[bb]; ++t) {
             want[bb * p.L + t] = a.labels[bb * p.L + t0 + t];
             got_valid[bb * p.L + t] = f.labels[bb * p.L + f0 + t];
           }
         }
         expect(check_exact("labels after flipping the padding side", tokens_shape(p.B, p.L),
                            got_valid, want));
       }});

  out.push_back(
      {"mlm.selectionRateAndSplitWithinBounds", Op::mlm,
       "the selected share of eligible tokens is binomial(p) and the [MASK] / random / kept split "
       "matches the ratios (6-sigma binomial bound, chi-square with p < 1e-9)",
       [](const Implementation& impl, const CaseLimits&) {
         MlmCase c;
         if (!draw(impl, c, true)) return;
         const auto d = make_data(c);
         const MlmProblem& p = c.problem;
         const auto got = run(impl, c, p, d);
         double eligible = 0, selected = 0;
         double n_mask = 0, n_same = 0, n_other = 0;
         for (std::size_t i = 0; i < d.ids.size(); ++i) {
           if (!d.keep[i] || d.special[i]) continue;
           ++eligible;
           if (got.labels[i] == p.ignore_index) continue;
           ++selected;
           if (d.ids[i] == p.mask_id) continue;  // outcome ambiguous, left out of the split
           if (got.ids[i] == p.mask_id)
             ++n_mask;
           else if (got.ids[i] == d.ids[i])
             ++n_same;
           else
             ++n_other;
         }
         const double sd = std::sqrt(eligible * p.p * (1 - p.p));
         expect(std::fabs(selected - eligible * p.p) <= kSigmas * sd + 1,
                "selected " + std::to_string(selected) + " of " + std::to_string(eligible) +
                    " eligible tokens, expected " + std::to_string(eligible * p.p) + " +- " +
                    std::to_string(kSigmas * sd));
         const double V = double(p.V), n = n_mask + n_same + n_other;
         const double keep = 1 - p.p_mask - p.p_random;
         const double e[3] = {n * (p.p_mask + p.p_random / V), n * (keep + p.p_random / V),
                              n * p.p_random * (V - 2) / V};
         const double o[3] = {n_mask, n_same, n_other};
         double chi2 = 0;
         for (int k = 0; k < 3; ++k)
           if (e[k] > 0)
             chi2 += (o[k] - e[k]) * (o[k] - e[k]) / e[k];
           else
             expect(o[k] == 0,
                    "an outcome with probability 0 occurred " + std::to_string(o[k]) + " times");
         // Chi-square, 2 degrees of freedom: P(X > 41.4) = 1e-9.
         expect(chi2 <= 41.4, "[MASK]/kept/random split " + std::to_string(n_mask) + "/" +
                                  std::to_string(n_same) + "/" + std::to_string(n_other) +
                                  " vs expected " + std::to_string(e[0]) + "/" +
                                  std::to_string(e[1]) + "/" + std::to_string(e[2]) +
                                  ": chi2 = " + std::to_string(chi2));
       }});

  out.push_back(
      {"mlm.sequencesUseDifferentStreams", Op::mlm,
       "identical sequences get independent masks: their selections agree only as often as "
       "independent draws would",
       [](const Implementation& impl, const CaseLimits&) {
         MlmCase c;
         if (!draw(impl, c, true)) return;
         auto d = make_data(c);
         MlmProblem p = c.problem;
         // Make every sequence a copy of the first.
         for (std::int64_t b = 1; b < p.B; ++b)
           for (std::int64_t t = 0; t < p.L; ++t) {
             d.ids[b * p.L + t] = d.ids[t];
             d.keep[b * p.L + t] = d.keep[t];
             d.special[b * p.L + t] = d.special[t];
           }
         const auto got = run(impl, c, p, d);
         double n = 0, agree = 0;
         for (std::int64_t t = 0; t < p.L; ++t) {
           if (!d.keep[t] || d.special[t]) continue;
           for (std::int64_t b = 1; b < p.B; ++b) {
             ++n;
             agree +=
                 (got.labels[t] == p.ignore_index) == (got.labels[b * p.L + t] == p.ignore_index);
           }
         }
         const double q = p.p * p.p + (1 - p.p) * (1 - p.p);
         // Pairs share the first sequence, so allow for correlation with a wider bound.
         const double sd = std::sqrt(n * q * (1 - q)) * std::sqrt(double(p.B));
         expect(agree <= n * q + kSigmas * sd + 1,
                "selections of identical sequences agree at " + std::to_string(agree) + " of " +
                    std::to_string(n) + " positions, independent streams give " +
                    std::to_string(n * q) + " +- " + std::to_string(kSigmas * sd));
       }});
}

}  // namespace maskcheck
