#include "maskcheck/reference/loss.hpp"

namespace maskcheck::ref {

std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                    std::span<const std::uint8_t> keep,
                                    std::span<const std::int32_t> prompt_lens) {
  p.validate();
  const std::int64_t n = checked_numel("ids", {p.B, p.L});
  require_size("ids", ids.size(), n);
  require_size("keep", keep.size(), n);
  if (!prompt_lens.empty()) require_size("prompt_lens", prompt_lens.size(), p.B);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n), p.ignore_index);
  for (std::int64_t b = 0; b < p.B; ++b) {
    const std::int64_t prompt = prompt_lens.empty() ? 0 : prompt_lens[b];
    require(prompt >= 0, "prompt_lens[" + std::to_string(b) + "]", prompt, "must be >= 0");
    // Index of a position within its sequence: its offset from the sequence's first valid
    // position (positions, as tokenizers and completion-only collators count them; a hole in the
    // keep mask inside the prompt still counts as a prompt position).
    std::int64_t first = 0;
    while (first < p.L && !keep[b * p.L + first]) ++first;
    for (std::int64_t t = 0; t + 1 < p.L; ++t) {
      const bool both_valid = keep[b * p.L + t] && keep[b * p.L + t + 1];
      const bool target_in_prompt = (t + 1 - first) < prompt;
      if (both_valid && !target_in_prompt) labels[b * p.L + t] = ids[b * p.L + t + 1];
    }
  }
  return labels;
}

}  // namespace maskcheck::ref
