// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the
// counter-based generator behind MLM masking: output = f(counter, key) with no state, so every
// token's draw is computed independently and identically on the CPU and the GPU.
// Checked against the Random123 known-answer vectors in the unit tests.
#pragma once

#include <cstdint>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {

struct U32x4 {
  std::uint32_t x, y, z, w;
};

MC_HD constexpr U32x4 philox4x32_10(U32x4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += W0;
      k1 += W1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * ctr.x;
    const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * ctr.z;
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = U32x4{hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0};
  }
  return ctr;
}

// The MLM draw of one token: key = seed, counter = (position in sequence, sequence, 0, 0).
// x decides selection, y the mask/random/keep split, z the random token.
MC_HD constexpr U32x4 mlm_draw(std::uint64_t seed, std::uint32_t sequence, std::uint32_t position) {
  return philox4x32_10(U32x4{position, sequence, 0u, 0u}, static_cast<std::uint32_t>(seed),
                       static_cast<std::uint32_t>(seed >> 32));
}

// Integer thresholds, computed once on the host so that every implementation compares the same
// integers: selected iff x < select; [MASK] iff y < mask; random iff mask <= y < mask_or_random.
struct MlmThresholds {
  std::uint64_t select = 0;
  std::uint64_t mask = 0;
  std::uint64_t mask_or_random = 0;
};

// floor(p * 2^32) for p in [0, 1] (2^32 means "always").
constexpr std::uint64_t probability_threshold(double p) {
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return std::uint64_t{1} << 32;
  return static_cast<std::uint64_t>(p * 4294967296.0);
}

// Uniform token in [0, V) from one 32-bit draw: floor(z * V / 2^32) (bias below V / 2^32).
MC_HD constexpr std::int64_t uniform_token(std::uint32_t z, std::int64_t V) {
  return static_cast<std::int64_t>(
      (static_cast<std::uint64_t>(z) * static_cast<std::uint64_t>(V)) >> 32);
}

}  // namespace maskcheck
