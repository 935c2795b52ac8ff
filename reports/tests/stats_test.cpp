// The one-sided Mann-Whitney U test of `maskcheck compare`. Reference p-values come from
// scipy.stats.mannwhitneyu(new, baseline, alternative='greater' / 'less', method='exact' or
// 'asymptotic') (scipy 1.17), and, for tied samples, from enumerating every assignment; the
// tests also enumerate assignments themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "maskcheck/reports/stats.hpp"

namespace {

using maskcheck::reports::mann_whitney_u;
using maskcheck::reports::RankTest;
using V = std::vector<double>;

TEST(MannWhitney, completelySeparatedFiveVsFiveGivesOneOver252) {
  const RankTest t = mann_whitney_u(V{1, 2, 3, 4, 5}, V{6, 7, 8, 9, 10});
  EXPECT_TRUE(t.exact);
  EXPECT_FALSE(t.ties);
  EXPECT_EQ(t.u, 25);
  EXPECT_DOUBLE_EQ(t.p_greater, 1.0 / 252);
  EXPECT_DOUBLE_EQ(t.p_less, 1.0);
  EXPECT_DOUBLE_EQ(maskcheck::reports::smallest_exact_p(5, 5), 1.0 / 252);
  // The other direction mirrors it.
  const RankTest r = mann_whitney_u(V{6, 7, 8, 9, 10}, V{1, 2, 3, 4, 5});
  EXPECT_EQ(r.u, 0);
  EXPECT_DOUBLE_EQ(r.p_less, 1.0 / 252);
  EXPECT_DOUBLE_EQ(r.p_greater, 1.0);
}

TEST(MannWhitney, exactDistributionMatchesScipy) {
  // U = 21 of 25: 12 of the 252 assignments reach it.
  RankTest t = mann_whitney_u(V{1.1, 2.3, 0.7, 4.2, 3.3}, V{2.9, 4.0, 5.1, 3.8, 6.2});
  EXPECT_EQ(t.u, 21);
  EXPECT_DOUBLE_EQ(t.p_greater, 12.0 / 252);  // scipy 0.047619047619047616
  EXPECT_NEAR(t.p_less, 0.9722222222222222, 1e-15);
  // Unequal sizes.
  t = mann_whitney_u(V{0.5, 1.5, 2.5}, V{0.1, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0});
  EXPECT_EQ(t.u, 15);
  EXPECT_NEAR(t.p_greater, 0.19166666666666665, 1e-15);
  EXPECT_NEAR(t.p_less, 0.8666666666666667, 1e-15);
  // One value each: a coin flip.
  t = mann_whitney_u(V{1.0}, V{2.0});
  EXPECT_DOUBLE_EQ(t.p_greater, 0.5);
  EXPECT_DOUBLE_EQ(t.p_less, 1.0);
}

TEST(MannWhitney, twentyVsTwentyIsStillExactAndMatchesScipy) {
  const V x{-0.428025, -0.30368, 0.352589,  -0.12077,  -0.197284, -1.114067, -0.011521,
            -0.443581, 1.166128, 0.653089,  -0.024144, 0.668381,  -0.33987,  1.052126,
            -0.0054,   0.583382, -1.290893, 0.34668,   -1.688204, -2.035329};
  const V y{0.195523, -0.399928, 0.664053, 2.744757,  -0.331723, -0.123944, 0.705404,
            0.993013, 0.323594,  0.29407,  1.202463,  1.019908,  -0.533676, 0.420819,
            0.535287, -0.554485, 0.759839, -0.357956, 1.472067,  0.692746};
  const RankTest t = mann_whitney_u(x, y);
  EXPECT_TRUE(t.exact);
  EXPECT_EQ(t.u, 272);
  EXPECT_NEAR(t.p_greater, 0.02619976093642486, 1e-12);
  EXPECT_NEAR(t.p_less, 0.9754548374053138, 1e-12);
}

TEST(MannWhitney, tiesUseTheExactPermutationDistributionOfMidranks) {
  // Enumerated: 27 of the 252 assignments have a midrank sum at least the observed one.
  RankTest t = mann_whitney_u(V{1, 2, 2, 3, 4}, V{2, 3, 3, 5, 6});
  EXPECT_TRUE(t.exact);
  EXPECT_TRUE(t.ties);
  EXPECT_EQ(t.u, 19);
  EXPECT_NEAR(t.p_greater, 27.0 / 252, 1e-15);  // 0.10714285714285714
  EXPECT_NEAR(t.p_less, 0.9404761904761905, 1e-15);
  t = mann_whitney_u(V{1, 1, 1, 2, 2, 3}, V{1, 2, 2, 3, 3, 3, 4});
  EXPECT_EQ(t.u, 32);
  EXPECT_NEAR(t.p_greater, 150.0 / 1716, 1e-15);  // 0.08741258741258741
  EXPECT_NEAR(t.p_less, 0.9755244755244755, 1e-15);
}

// Identical samples are no evidence in either direction, with or without ties.
TEST(MannWhitney, identicalSamplesAreNeverSignificant) {
  RankTest t = mann_whitney_u(V{3, 3, 3, 3, 3}, V{3, 3, 3, 3, 3});
  EXPECT_EQ(t.u, 12.5);
  EXPECT_DOUBLE_EQ(t.p_greater, 1.0);
  EXPECT_DOUBLE_EQ(t.p_less, 1.0);
  const V same{1.0, 1.2, 0.9, 1.1, 1.05};
  t = mann_whitney_u(same, same);
  EXPECT_TRUE(t.ties);
  EXPECT_GT(t.p_greater, 0.5);
  EXPECT_GT(t.p_less, 0.5);
  // Large and all equal: the normal approximation has no variance; p stays 1.
  t = mann_whitney_u(V(30, 2.0), V(30, 2.0));
  EXPECT_FALSE(t.exact);
  EXPECT_DOUBLE_EQ(t.p_greater, 1.0);
  EXPECT_DOUBLE_EQ(t.p_less, 1.0);
}

TEST(MannWhitney, largeSamplesUseTheNormalApproximationWithContinuityCorrection) {
  const V x{10.00123,  10.298746, 9.725862,  9.109408,  9.545329,  9.008353,  10.060144,
            11.340215, 9.507793,  9.379525,  10.489842, 10.356887, 10.105414, 9.069532,
            9.970748,  10.695303, 8.655785,  9.542384,  8.098777,  8.710462,  8.158265,
            9.764909,  8.732554,  10.271264, 10.156751};
  const V y{10.413069, 8.08324,   10.061307, 10.551499, 10.713309, 9.069864,  10.122247, 9.621481,
            9.791163,  11.660899, 9.792465,  10.567478, 11.48439,  10.0164,   10.488298, 10.710464,
            10.663782, 9.374944,  10.67614,  11.958823, 9.052855,  11.459383, 10.719354, 9.95853,
            12.600417, 11.36226,  9.400711,  10.674516, 11.17669,  10.411218};
  const RankTest t = mann_whitney_u(x, y);
  EXPECT_FALSE(t.exact);
  EXPECT_EQ(t.u, 562);
  EXPECT_NEAR(t.p_greater, 0.0008096010309958365, 1e-12);
  EXPECT_NEAR(t.p_less, 0.9992360418891888, 1e-12);
}

TEST(MannWhitney, largeTiedSamplesCorrectTheVarianceForTies) {
  const V x{2, 4, 2, 2, 3, 5, 2, 3, 2, 3, 2, 3, 3, 4, 5, 0, 3, 2, 2, 1, 0, 2, 4, 0};
  const V y{3, 6, 6, 2, 1, 5, 1, 2, 3, 6, 1, 4, 4, 1, 6, 6, 3, 6, 4, 6, 6, 4, 2, 1, 4, 2};
  const RankTest t = mann_whitney_u(x, y);
  EXPECT_FALSE(t.exact);
  EXPECT_TRUE(t.ties);
  EXPECT_EQ(t.u, 417);
  EXPECT_NEAR(t.p_greater, 0.019511008740714597, 1e-12);
  EXPECT_NEAR(t.p_less, 0.981406513661864, 1e-12);
}

// An independent computation: enumerate every way to pick which n of the pooled values are y,
// and count those whose U is at least / at most the observed one (U by counting pairs).
double u_of(const V& x, const V& y) {
  double u = 0;
  for (double a : x)
    for (double b : y) u += b > a ? 1.0 : (b == a ? 0.5 : 0.0);
  return u;
}

TEST(MannWhitney, exactPValuesAgreeWithBruteForceEnumeration) {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t m = 1 + rng() % 7, n = 1 + rng() % 7;
    // Half the trials draw from few distinct values, so that ties are common.
    const int levels = trial % 2 ? 4 : 1000;
    V x(m), y(n);
    for (auto& v : x) v = static_cast<double>(rng() % levels);
    for (auto& v : y) v = static_cast<double>(rng() % levels) + (trial % 3 == 0 ? 1.0 : 0.0);
    V pooled = x;
    pooled.insert(pooled.end(), y.begin(), y.end());
    const double u_obs = u_of(x, y);
    std::vector<int> pick(m + n, 0);
    std::fill(pick.end() - static_cast<long>(n), pick.end(), 1);
    double all = 0, ge = 0, le = 0;
    do {
      V px, py;
      for (std::size_t k = 0; k < pooled.size(); ++k) (pick[k] ? py : px).push_back(pooled[k]);
      const double u = u_of(px, py);
      ++all;
      ge += u >= u_obs - 1e-9;
      le += u <= u_obs + 1e-9;
    } while (std::next_permutation(pick.begin(), pick.end()));
    const RankTest t = mann_whitney_u(x, y);
    ASSERT_TRUE(t.exact);
    EXPECT_EQ(t.u, u_obs) << "trial " << trial;
    EXPECT_NEAR(t.p_greater, ge / all, 1e-12) << "trial " << trial << " m " << m << " n " << n;
    EXPECT_NEAR(t.p_less, le / all, 1e-12) << "trial " << trial << " m " << m << " n " << n;
  }
}

TEST(MannWhitney, rejectsEmptySamplesAndNaN) {
  EXPECT_THROW(mann_whitney_u(V{}, V{1.0}), std::invalid_argument);
  EXPECT_THROW(mann_whitney_u(V{1.0, NAN}, V{1.0}), std::invalid_argument);
}

TEST(MannWhitney, normalTailIsRight) {
  EXPECT_NEAR(maskcheck::reports::normal_sf(0), 0.5, 1e-16);
  EXPECT_NEAR(maskcheck::reports::normal_sf(1.6448536269514722), 0.05, 1e-15);
  EXPECT_NEAR(maskcheck::reports::normal_sf(-1.959963984540054), 0.975, 1e-15);
}

}  // namespace
