// Size tiers: the lengths each tier draws, its work cap and its memory budget, and the memory
// estimate of one case that the generators keep within the budget.
#include <cmath>
#include <cstdio>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/generators.hpp"

namespace maskcheck {

std::string_view to_string(SizeTier t) {
  switch (t) {
    case SizeTier::small:
      return "small";
    case SizeTier::medium:
      return "medium";
    case SizeTier::large:
      return "large";
  }
  return "?";
}

SizeTier size_tier_from_string(std::string_view s) {
  for (SizeTier t : {SizeTier::small, SizeTier::medium, SizeTier::large})
    if (to_string(t) == s) return t;
  throw_invalid("--size", s.empty() ? "''" : std::string(s), "must be small, medium or large");
}

// The naive fp64 reference does about 1e9 multiply-adds a second on one core, and a property
// runs it about three times per case (the implementation, the reference in fp64 and in the
// case's dtype): the work caps keep the largest case of a tier near 10 ms (small), 0.5 s
// (medium) and 4 s (large). Most cases are far smaller: rapidcheck grows lengths with the case
// size over each chunk of 100 cases.
CaseLimits tier_limits(SizeTier tier) {
  CaseLimits l;
  l.tier = tier;
  switch (tier) {
    case SizeTier::small:  // the defaults: regular lengths up to 260, long keys up to 8k
      break;
    case SizeTier::medium:
      l.max_len = 4096;
      l.max_work = std::int64_t{1} << 27;
      l.long_keys = 32768;
      l.long_row = 65536;
      l.max_bytes = std::uint64_t{1} << 30;
      break;
    case SizeTier::large:
      l.max_len = 32768;
      l.max_work = std::int64_t{1} << 30;
      l.long_keys = 131072;
      l.long_row = 262144;
      l.max_bytes = std::uint64_t{4} << 30;
      break;
  }
  return l;
}

std::string describe_tier(SizeTier tier) {
  const CaseLimits l = tier_limits(tier);
  auto k = [](std::int64_t n) {
    return n >= 1024 && n % 1024 == 0 ? std::to_string(n / 1024) + "k" : std::to_string(n);
  };
  char work[32];
  std::snprintf(work, sizeof work, "%.2g", static_cast<double>(l.max_work));
  const auto mib = l.max_bytes >> 20;
  return std::string(to_string(tier)) + ": Lq, Lk up to " + k(l.max_len) + " (softmax rows " +
         k(2 * l.max_len) + "), 1 case in " + std::to_string(l.long_share) +
         " long (decode: Lq 1-4, Lk up to " + k(l.long_keys) + "; softmax and cross-entropy rows " +
         "up to " + k(l.long_row) + "), work <= " + work + " per case, memory <= " +
         (mib >= 1024 ? std::to_string(mib / 1024) + " GiB" : std::to_string(mib) + " MiB") +
         " per case";
}

namespace {

std::uint64_t u(std::int64_t x) {
  return x > 0 ? static_cast<std::uint64_t>(x) : 0;
}

}  // namespace

// The factors are the measured peaks of the most demanding property of each operation, rounded
// up (tiers_test measures every property against these estimates): a value is a double
// everywhere in the suite, and a property holds its inputs, a poisoned or rearranged copy, two
// or three outputs and the reference's results in fp64 and in the case's dtype at once.
std::uint64_t mask_case_bytes(std::int64_t B, std::int64_t Lq, std::int64_t Lk) {
  const std::uint64_t n = u(B) * u(Lq) * u(Lk);
  return 64 * n + (std::uint64_t{1} << 16);
}

std::uint64_t softmax_case_bytes(std::int64_t B, std::int64_t H, std::int64_t Lq,
                                 std::int64_t Lk) {
  const std::uint64_t n = u(B) * u(H) * u(Lq) * u(Lk);
  return 80 * n + 4 * u(B) * u(Lq) * u(Lk) + (std::uint64_t{1} << 16);
}

std::uint64_t attention_case_bytes(std::int64_t B, std::int64_t H, std::int64_t Hkv,
                                   std::int64_t Lq, std::int64_t Lk, std::int64_t D) {
  (void)Hkv;  // gqaEqualsRepeatedKv repeats K and V to H heads: count them at H
  const std::uint64_t q = u(B) * u(H) * u(Lq) * (u(D) + 1), kv = 2 * u(B) * u(H) * u(Lk) * u(D);
  return 64 * (q + kv) + 4 * u(B) * u(Lq) * u(Lk) + 64 * u(Lk) + (std::uint64_t{1} << 16);
}

std::uint64_t loss_case_bytes(std::int64_t N, std::int64_t V) {
  return 80 * u(N) * u(V) + 128 * u(N) + (std::uint64_t{1} << 16);
}

}  // namespace maskcheck
