// The tolerance module: the FlashAttention rule, the dtype floor, exact mode, and failure reports
// that name coordinates.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace mc = maskcheck;

namespace {

const mc::Shape kShape{{"b", "h", "q", "d"}, {1, 2, 2, 3}};

TEST(Tolerance, passesWithinTwiceTheNaiveError) {
  std::vector<double> want(12, 1.0), naive(12, 1.0), got(12, 1.0);
  naive[4] = 1.1;  // the naive same-dtype result is off by 0.1 somewhere
  got[7] = 1.0 + 0.2 - 1e-9;
  EXPECT_TRUE(mc::check_close("out", kShape, got, want, naive, mc::DType::bf16).ok);
  got[7] = 1.0 + 0.25;
  const auto r = mc::check_close("out", kShape, got, want, naive, mc::DType::bf16);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report().find("out(b=0, h=1, q=0, d=1) got 1.25 want 1"), std::string::npos)
      << r.report();
}

TEST(Tolerance, dtypeFloorAppliesWhenTheNaiveResultIsExact) {
  std::vector<double> want{100.0}, naive{100.0}, got{100.0 + 100.0 * 1e-5 * 0.9};
  const mc::Shape s{{"n"}, {1}};
  EXPECT_TRUE(mc::check_close("loss", s, got, want, naive, mc::DType::f32).ok);
  got[0] = 100.0 * (1 + 3e-5);
  EXPECT_FALSE(mc::check_close("loss", s, got, want, naive, mc::DType::f32).ok);
}

TEST(Tolerance, nanAndInfinitiesMustMatchExactly) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const mc::Shape s{{"n"}, {3}};
  const std::vector<double> want{-inf, 0.0, 1.0};
  EXPECT_TRUE(
      mc::check_close("lse", s, std::vector<double>{-inf, 0.0, 1.0}, want, want, mc::DType::f32)
          .ok);
  EXPECT_FALSE(
      mc::check_close("lse", s, std::vector<double>{inf, 0.0, 1.0}, want, want, mc::DType::f32).ok);
  EXPECT_FALSE(
      mc::check_close("lse", s, std::vector<double>{nan, 0.0, 1.0}, want, want, mc::DType::f32).ok);
  EXPECT_FALSE(
      mc::check_close("lse", s, std::vector<double>{-inf, nan, 1.0}, want, want, mc::DType::f32)
          .ok);
}

TEST(Tolerance, exactModeComparesBits) {
  const mc::Shape s{{"n"}, {2}};
  EXPECT_TRUE(
      mc::check_exact("w", s, std::vector<double>{0.0, 1.0}, std::vector<double>{0.0, 1.0}).ok);
  EXPECT_FALSE(
      mc::check_exact("w", s, std::vector<double>{-0.0, 1.0}, std::vector<double>{0.0, 1.0}).ok);
  EXPECT_FALSE(mc::check_exact("w", s, std::vector<double>{0.0, std::nextafter(1.0, 2.0)},
                               std::vector<double>{0.0, 1.0})
                   .ok);
}

TEST(Tolerance, reportShowsFiveMismatchesAndStopsCollectingAtTen) {
  const mc::Shape s{{"n", "v"}, {4, 5}};
  std::vector<double> want(20, 0.0), got(20, 1.0);
  const auto r = mc::check_exact("dlogits", s, got, want);
  EXPECT_EQ(r.mismatches, 10);
  EXPECT_EQ(r.first.size(), 10u);
  EXPECT_EQ(r.all_mismatches, 20);  // counted in full for the headline
  const std::string report = r.report();
  EXPECT_NE(report.find("20 mismatching elements of 20"), std::string::npos) << report;
  EXPECT_NE(report.find("dlogits(n=0, v=4) got 1 want 0"), std::string::npos) << report;
  EXPECT_EQ(report.find("dlogits(n=1, v=0)"), std::string::npos)
      << report;  // the sixth is not shown
}

TEST(Tolerance, ledgerRecordsLargestErrors) {
  mc::reset_error_ledger();
  const mc::Shape s{{"n"}, {2}};
  (void)mc::check_consistent("y", s, std::vector<double>{1.0, 2.5}, std::vector<double>{1.0, 2.0},
                             mc::DType::f32);
  const auto l = mc::error_ledger();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].what, "y");
  EXPECT_DOUBLE_EQ(l[0].max_abs_err, 0.5);
}

TEST(Tolerance, sizeMismatchIsAnError) {
  const mc::Shape s{{"n"}, {3}};
  EXPECT_THROW(mc::check_exact("x", s, std::vector<double>{1, 2}, std::vector<double>{1, 2, 3}),
               std::invalid_argument);
}

TEST(Tolerance, roundingBoundIsAThirdPerElementCriterion) {
  const mc::Shape s{{"n"}, {3}};
  const std::vector<double> want{1.0, 2.0, 3.0}, naive = want;  // naive exact: the floor alone
  std::vector<double> got{1.0, 2.0 + 4e-4, 3.0};
  const std::vector<double> rounding{0.0, 5e-4, 0.0};
  EXPECT_FALSE(mc::check_close("out", s, got, want, naive, mc::DType::f32).ok);
  EXPECT_TRUE(mc::check_close("out", s, got, want, naive, mc::DType::f32, rounding).ok);
  got[1] = 2.0 + 6e-4;  // beyond the element's bound
  auto r = mc::check_close("out", s, got, want, naive, mc::DType::f32, rounding);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report().find("or the element's first-order rounding bound"), std::string::npos)
      << r.report();
  EXPECT_NE(r.report().find("out(n=1) got 2.0006 want 2 (allowed +-0.0005)"), std::string::npos)
      << r.report();
  got[1] = 2.0;
  got[0] = 1.0 + 1e-4;  // another element's bound does not carry over
  EXPECT_FALSE(mc::check_close("out", s, got, want, naive, mc::DType::f32, rounding).ok);
  EXPECT_THROW(
      (void)mc::check_close("out", s, got, want, naive, mc::DType::f32, std::vector<double>{1.0}),
      std::invalid_argument);
}

// Where the inputs are well conditioned (values in [-2, 2), many comparable keys) the attention
// bound stays within a small factor of the fp32 rule's floor atol + rtol |want|: it widens the
// gate only where the formula's rounding does, not by the worst case's factor D + n.
void expect_bound_near_the_floor(mc::AttentionProblem p, double max_ratio) {
  std::vector<double> q(static_cast<std::size_t>(p.q_numel())), k(p.kv_numel()), v(k.size());
  std::uint32_t x = 12345;
  const auto next = [&] {  // deterministic values in [-2, 2), exact in f32
    x = x * 1664525u + 1013904223u;
    return static_cast<double>(static_cast<float>((x >> 8) * (4.0 / 16777216.0) - 2.0));
  };
  for (auto* a : {&q, &k, &v})
    for (auto& e : *a) e = next();
  const auto b = mc::attention_rounding_bound(p, mc::DType::f32, q, k, v, true);
  const auto want = mc::reference_attention(p, mc::DType::f32, q, k, v, true, mc::Precision::exact);
  const auto tol = mc::default_tolerance(mc::DType::f32);
  double worst = 0, smallest = 1;
  for (std::size_t i = 0; i < b.out.size(); ++i) {
    const double floor = tol.atol + tol.rtol * std::fabs(want.out[i]);
    worst = std::max(worst, b.out[i] / floor);
    smallest = std::min(smallest, b.out[i]);
  }
  EXPECT_GT(smallest, 0.0);  // every row sees a key here
  EXPECT_LT(worst, max_ratio) << "D=" << p.D << " Lk=" << p.mask.Lk;
  double worst_lse = 0;
  for (std::size_t i = 0; i < b.lse.size(); ++i)
    worst_lse = std::max(worst_lse, b.lse[i] / (tol.atol + tol.rtol * std::fabs(want.lse[i])));
  EXPECT_LT(worst_lse, max_ratio) << "D=" << p.D << " Lk=" << p.mask.Lk;
  std::cout << "D=" << p.D << " Lk=" << p.mask.Lk << ": bound / floor up to " << worst << " (out), "
            << worst_lse << " (lse)\n";
}

TEST(Tolerance, attentionRoundingBoundStaysNearTheFloorOnWellConditionedInputs) {
  mc::AttentionProblem p;
  p.mask.B = 2;
  p.mask.Lq = 33;
  p.mask.Lk = 97;
  p.mask.k_lens = {97, 40};
  p.mask.causal = true;  // rows of 8 to 97 keys
  p.H = 2;
  p.D = 64;
  expect_bound_near_the_floor(p, 2.5);
  p.mask.B = 1;
  p.mask.Lq = 4;
  p.mask.Lk = 2048;
  p.mask.k_lens.clear();
  p.mask.causal = false;
  p.H = 1;
  p.D = 128;
  expect_bound_near_the_floor(p, 2.5);
}

TEST(Tolerance, attentionRoundingBoundIsZeroOnRowsThatSeeNoKey) {
  mc::AttentionProblem p;
  p.mask.B = 2;
  p.mask.Lq = 3;
  p.mask.Lk = 5;
  p.mask.k_lens = {0, 5};
  p.D = 4;
  const std::vector<double> q(static_cast<std::size_t>(p.q_numel()), 1.5),
      kv(static_cast<std::size_t>(p.kv_numel()), -0.5);
  const auto b = mc::attention_rounding_bound(p, mc::DType::f32, q, kv, kv, true);
  for (std::int64_t i = 0; i < p.mask.Lq * p.D; ++i) EXPECT_EQ(b.out[i], 0.0) << i;
  for (std::int64_t i = 0; i < p.mask.Lq; ++i) EXPECT_EQ(b.lse[i], 0.0) << i;
  for (std::int64_t i = p.mask.Lq * p.D; i < p.q_numel(); ++i) EXPECT_GT(b.out[i], 0.0) << i;
}

}  // namespace

TEST(Tolerance, headlineCountsNonFiniteMismatchesAndShowsTheBoundsApplied) {
  // "max |err| 0" above "got -nan want 1" told nothing: NaN and inf are counted by name.
  const mc::Shape s{{"i"}, {5}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> want{1, 1, 1, 1, 1}, naive{1, 1, 1, 1, 1};
  const std::vector<double> got{nan, -nan, inf, 1.5, 1};
  const auto r = mc::check_close("out", s, got, want, naive, mc::DType::f32);
  const std::string report = r.report();
  EXPECT_NE(report.find("out: 4 mismatching elements of 5 (2 NaN; 1 inf; max |err| 0.5 over finite "
                        "pairs; allowed +-2e-05"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("out(i=0) got nan want 1 (allowed +-2e-05)"), std::string::npos) << report;
}

TEST(Tolerance, consistencyNamesTheComparedRunAndTakesTheConditioning) {
  const mc::Shape s{{"i"}, {2}};
  const std::vector<double> want{1.0, 2.0}, got{1.0, 2.004};
  // The plain floor refuses 4e-3 in f32 ...
  auto r = mc::check_consistent("out", s, got, want, mc::DType::f32, "batched run");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report().find("got 2.004 batched run 2"), std::string::npos) << r.report();
  // ... a computation whose naive f32 result is off by 1e-3 allows each run 2e-3, two runs 4e-3 ...
  const auto cond = mc::conditioning(want, std::vector<double>{1.0, 2.001}, mc::DType::f32);
  EXPECT_TRUE(mc::check_consistent("out", s, got, want, mc::DType::f32, "batched run", &cond).ok);
  // ... and per-element rounding bounds widen only their own elements.
  const auto tight = mc::conditioning(want, want, mc::DType::f32, std::vector<double>{0.0, 2.5e-3});
  EXPECT_TRUE(mc::check_consistent("out", s, got, want, mc::DType::f32, "run", &tight).ok);
  const std::vector<double> off_first{1.004, 2.0};
  EXPECT_FALSE(mc::check_consistent("out", s, off_first, want, mc::DType::f32, "run", &tight).ok);
}
