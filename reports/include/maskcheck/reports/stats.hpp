// The statistics behind `maskcheck compare`: a one-sided Mann-Whitney U (Wilcoxon rank-sum) test
// over the repetitions of a benchmark, baseline against new.
//
// U counts the pairs (x_i, y_j) in which the new time y_j is larger than the baseline time x_i,
// a tied pair counting one half; it runs from 0 (every new time smaller) to m*n (every new time
// larger). Under H0 (both samples drawn from one distribution) every assignment of the pooled
// values to the two samples is equally likely, and the p-value is the share of assignments whose
// U is at least (or at most) the observed one:
//   - both samples of at most kExactMax values, no ties: the exact null distribution, counted by
//     the recursion c(m, n, u) = c(m - 1, n, u) + c(m, n - 1, u - m) (the pooled maximum belongs
//     to x and adds nothing to U, or to y and exceeds all m x's);
//   - both samples of at most kExactMax values, with ties: the exact permutation distribution of
//     the midrank sum, i.e. conditional on the observed tie pattern (counted over the subsets of
//     n midranks by their sum);
//   - larger samples: the normal approximation with the tie correction of the variance and a
//     continuity correction of 1/2.
// With m = n = 5 the smallest attainable one-sided p is 1 / C(10, 5) = 1/252 = 0.00397.
#pragma once

#include <cstddef>
#include <span>

namespace maskcheck::reports {

struct RankTest {
  std::size_t m = 0;  // values in x (baseline)
  std::size_t n = 0;  // values in y (new)
  double u = 0;       // pairs with y > x, plus half the tied pairs
  // P(U >= u) under H0: small when y tends to be larger than x (new slower, for times).
  double p_greater = 1;
  // P(U <= u) under H0: small when y tends to be smaller than x (new faster, for times).
  double p_less = 1;
  bool exact = false;  // exact permutation distribution (else the normal approximation)
  bool ties = false;   // some value occurs more than once in the pooled sample
};

// Samples up to this size (both) get the exact distribution.
inline constexpr std::size_t kExactMax = 20;

// Throws std::invalid_argument when a sample is empty or holds a NaN.
RankTest mann_whitney_u(std::span<const double> x, std::span<const double> y);

// The smallest one-sided p that an exact test of m against n untied values can reach:
// 1 / C(m + n, n).
double smallest_exact_p(std::size_t m, std::size_t n);

// P(Z > z) for a standard normal Z.
double normal_sf(double z);

}  // namespace maskcheck::reports
