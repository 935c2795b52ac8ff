#include "maskcheck/reference/mlm.hpp"

#include <algorithm>
#include <tuple>

namespace maskcheck {

namespace ref {

MlmOutput mlm_mask(const MlmProblem& p, std::span<const std::int64_t> ids,
                   std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                   std::span<const std::uint8_t> continuation) {
  validate_mlm_inputs(p, ids, keep, special, continuation);
  const MlmThresholds th = mlm_thresholds(p);
  MlmOutput o;
  o.ids.assign(ids.begin(), ids.end());
  o.labels.assign(ids.size(), p.ignore_index);
  const std::int64_t L = p.L;
  for (std::int64_t b = 0; b < p.B; ++b) {
    const std::int64_t row = b * L;
    std::int64_t first = 0;
    while (first < L && !keep[row + first]) ++first;
    auto draw = [&](std::int64_t t) {
      return mlm_draw(p.seed, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(t - first));
    };
    // Word start of each token: itself, or with whole-word masking the nearest position at or
    // before it that is not a continuation (never before the sequence's first valid position).
    std::vector<std::int64_t> start(static_cast<std::size_t>(L));
    for (std::int64_t t = 0; t < L; ++t) {
      start[t] = t;
      if (p.whole_word && t > first && continuation[row + t]) start[t] = start[t - 1];
    }
    std::vector<std::uint8_t> selected(static_cast<std::size_t>(L), 0);
    std::int64_t count = 0;
    for (std::int64_t t = first; t < L; ++t) {
      const bool eligible = keep[row + t] && !special[row + t];
      if (eligible && draw(start[t]).x < th.select) {
        selected[t] = 1;
        ++count;
      }
    }
    if (p.max_predictions > 0 && count > p.max_predictions) {
      // Rank words by (draw, start) and keep whole words while they fit.
      std::vector<std::int64_t> size(static_cast<std::size_t>(L), 0);  // selected tokens by start
      for (std::int64_t t = 0; t < L; ++t) size[start[t]] += selected[t];
      std::vector<std::tuple<std::uint32_t, std::int64_t, std::int64_t>> words;  // x, start, size
      for (std::int64_t s = 0; s < L; ++s)
        if (size[s] > 0) words.emplace_back(draw(s).x, s, size[s]);
      std::sort(words.begin(), words.end());
      std::vector<std::uint8_t> keep_word(static_cast<std::size_t>(L), 0);  // by start
      std::int64_t total = 0;
      for (const auto& [x, s, n] : words)
        if (total + n <= p.max_predictions) {
          total += n;
          keep_word[s] = 1;
        }
      for (std::int64_t t = 0; t < L; ++t)
        if (selected[t] && !keep_word[start[t]]) selected[t] = 0;
    }
    for (std::int64_t t = 0; t < L; ++t) {
      if (!selected[t]) continue;
      const U32x4 d = draw(t);
      o.labels[row + t] = ids[row + t];
      if (d.y < th.mask) {
        o.ids[row + t] = p.mask_id;
      } else if (d.y < th.mask_or_random) {
        o.ids[row + t] = uniform_token(d.z, p.V);
      }
    }
  }
  return o;
}

}  // namespace ref
}  // namespace maskcheck
