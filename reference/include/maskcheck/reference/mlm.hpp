// Reference BERT-style MLM masking (see MlmProblem for the rules).
//   ids, keep, special, continuation: [B, L] -> ids_out, labels: [B, L]
// Per token t of sequence b with position i = t - (first valid index of b):
//   draw = Philox4x32-10(counter = (i, b, 0, 0), key = seed)
//   selected = eligible(t) && draw(word_start(t)).x < select   (word_start(t) = t without
//              whole-word masking), then the max_predictions cap keeps the words with the
//              smallest (x, position) whose tokens still fit;
//   selected: labels = ids, ids_out = mask_id if draw(t).y < mask, a uniform token from
//             draw(t).z if y < mask_or_random, ids otherwise;
//   not selected: labels = ignore_index, ids_out = ids.
// Eligible: keep = 1 and special = 0. Complexity O(B L log L) (the cap sorts).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "maskcheck/reference/philox.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck {

namespace ref {

struct MlmOutput {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> labels;
};

// continuation may be empty unless p.whole_word.
MlmOutput mlm_mask(const MlmProblem& p, std::span<const std::int64_t> ids,
                   std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                   std::span<const std::uint8_t> continuation);

}  // namespace ref
}  // namespace maskcheck
