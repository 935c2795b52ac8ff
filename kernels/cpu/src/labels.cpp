// Causal-LM label construction on the CPU, the same values as ref::lm_labels.
//   ids, keep: [B, L] (int64, uint8), prompt_lens: [B] int32 or nullptr -> labels: [B, L] int64
//   labels[b, t] = ids[b, t + 1] when keep[b, t] and keep[b, t + 1] and t + 1 - first_b >=
//   prompt_lens[b] (first_b: the sequence's first kept position), ignore_index elsewhere (the
//   last position included). Padding comes from `keep` only, so an EOS equal to the pad id keeps
//   its label.
// Complexity: O(B L); one read of ids and keep, one write of labels (17 bytes a token), a
// branch-free select per token that the compiler vectorizes; OpenMP over sequences.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "maskcheck/kernels/cpu.hpp"

namespace maskcheck::cpu {

namespace {
// Below this many tokens a call stays on the calling thread.
constexpr std::int64_t kParallelTokens = std::int64_t{1} << 15;
}  // namespace

void lm_labels(const LmLabelsProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
               const std::int32_t* prompt_lens, std::int64_t* labels) {
  p.validate();
  const std::int64_t B = p.B, L = p.L;
  if (B * L == 0) return;
  if (ids == nullptr) throw_invalid("ids", "nullptr", "must point to B*L ids");
  if (keep == nullptr) throw_invalid("keep", "nullptr", "must point to B*L flags");
  if (labels == nullptr) throw_invalid("labels", "nullptr", "must point to B*L labels");
  if (prompt_lens != nullptr)  // before anything is written
    for (std::int64_t b = 0; b < B; ++b)
      require(prompt_lens[b] >= 0, "prompt_lens[" + std::to_string(b) + "]", prompt_lens[b],
              "must be >= 0");
  const std::int64_t ignore = p.ignore_index;
  const int threads = B * L >= kParallelTokens ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t* __restrict x = ids + b * L;
    const std::uint8_t* __restrict k = keep + b * L;
    std::int64_t* __restrict y = labels + b * L;
    const std::int64_t first = std::find(k, k + L, std::uint8_t{1}) - k;
    // Targets t + 1 < first + prompt are part of the prompt: labels start at t0.
    const std::int64_t prompt = prompt_lens != nullptr ? prompt_lens[b] : 0;
    const std::int64_t t0 = std::min(L - 1, std::max<std::int64_t>(0, first + prompt - 1));
    for (std::int64_t t = 0; t < t0; ++t) y[t] = ignore;
    for (std::int64_t t = t0; t + 1 < L; ++t) y[t] = (k[t] & k[t + 1]) != 0 ? x[t + 1] : ignore;
    y[L - 1] = ignore;
  }
}

}  // namespace maskcheck::cpu
