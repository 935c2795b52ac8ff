// Properties of causal-LM label construction.
#include <rapidcheck.h>

#include "maskcheck/reference/loss.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"

namespace maskcheck {
namespace {

bool draw(const Implementation& impl, LabelsCase& c) {
  c = *gen_labels_case().as("case");
  if (!supported(impl.supports_lm_labels(c.problem))) return false;
  tag_case({c.padding == PaddingSide::left ? "left-padding" : "right-padding"});
  if (!c.prompt_lens.empty()) tag_case({"prompts"});
  if (c.eos_is_pad) tag_case({"eos==pad"});
  return true;
}

std::vector<std::int64_t> run(const Implementation& impl, const LabelsCase& c,
                              const LabelsData& d) {
  return impl.lm_labels(c.problem, d.ids, d.keep, c.prompt_lens);
}

}  // namespace

void add_labels_properties(std::vector<Property>& out) {
  out.push_back(
      {"lm_labels.agreesWithReference", Op::lm_labels, "labels equal the reference exactly",
       [](const Implementation& impl, const CaseLimits&) {
         LabelsCase c;
         if (!draw(impl, c)) return;
         const auto d = make_data(c);
         expect(check_exact("labels", tokens_shape(c.problem.B, c.problem.L), run(impl, c, d),
                            ref::lm_labels(c.problem, d.ids, d.keep, c.prompt_lens)));
       }});

  out.push_back(
      {"lm_labels.targetsAreNextTokensOfTheSequence", Op::lm_labels,
       "labels[t] = ids[t+1] exactly when t and t+1 lie in the sequence and t+1 is past the "
       "prompt; ignore_index everywhere else",
       [](const Implementation& impl, const CaseLimits&) {
         LabelsCase c;
         if (!draw(impl, c)) return;
         const auto d = make_data(c);
         const std::int64_t B = c.problem.B, L = c.problem.L;
         std::vector<std::int64_t> want(B * L, c.problem.ignore_index);
         for (std::int64_t b = 0; b < B; ++b) {
           const std::int64_t t0 = valid_begin(c.padding, L, c.lengths[b]);
           const std::int64_t prompt = c.prompt_lens.empty() ? 0 : c.prompt_lens[b];
           for (std::int64_t i = std::max<std::int64_t>(prompt, 1); i < c.lengths[b]; ++i)
             want[b * L + t0 + i - 1] = d.ids[b * L + t0 + i];
         }
         expect(check_exact("labels", tokens_shape(B, L), run(impl, c, d), want));
       }});

  out.push_back(
      {"lm_labels.keepsRealEosWhenPadIsEos", Op::lm_labels,
       "when the pad id equals the EOS id, the real EOS at the end of a sequence keeps its label",
       [](const Implementation& impl, const CaseLimits&) {
         LabelsCase c;
         if (!draw(impl, c)) return;
         if (!c.eos_is_pad) return;
         const auto d = make_data(c);
         const auto labels = run(impl, c, d);
         const std::int64_t L = c.problem.L;
         for (std::int64_t b = 0; b < c.problem.B; ++b) {
           const std::int64_t len = c.lengths[b];
           const std::int64_t prompt = c.prompt_lens.empty() ? 0 : c.prompt_lens[b];
           if (len < 2 || len - 1 < prompt) continue;
           const std::int64_t t = valid_begin(c.padding, L, len) + len - 2;
           expect(labels[b * L + t] == c.pad_id, "sequence " + std::to_string(b) +
                                                     ": the label before the final EOS (id " +
                                                     std::to_string(c.pad_id) + " == pad id) is " +
                                                     std::to_string(labels[b * L + t]));
         }
       }});

  out.push_back({"lm_labels.leftPaddingIsShiftedRightPadding", Op::lm_labels,
                 "left-padded labels are the right-padded labels shifted by the padding",
                 [](const Implementation& impl, const CaseLimits&) {
                   LabelsCase c;
                   if (!draw(impl, c)) return;
                   LabelsCase right = c, left = c;
                   right.padding = PaddingSide::right;
                   left.padding = PaddingSide::left;
                   const auto dr = make_data(right), dl = make_data(left);
                   const auto lr = run(impl, right, dr), ll = run(impl, left, dl);
                   const std::int64_t L = c.problem.L;
                   std::vector<std::int64_t> want(ll.size(), c.problem.ignore_index);
                   for (std::int64_t b = 0; b < c.problem.B; ++b)
                     for (std::int64_t t = 0; t < c.lengths[b]; ++t)
                       want[b * L + (L - c.lengths[b]) + t] = lr[b * L + t];
                   expect(
                       check_exact("labels (left padded)", tokens_shape(c.problem.B, L), ll, want));
                 }});
}

}  // namespace maskcheck
