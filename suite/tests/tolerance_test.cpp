// The tolerance module: the FlashAttention rule, the dtype floor, exact mode, and failure reports
// that name coordinates.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

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

TEST(Tolerance, reportShowsFiveMismatchesAndStopsCountingAtTen) {
  const mc::Shape s{{"n", "v"}, {4, 5}};
  std::vector<double> want(20, 0.0), got(20, 1.0);
  const auto r = mc::check_exact("dlogits", s, got, want);
  EXPECT_EQ(r.mismatches, 10);
  EXPECT_EQ(r.first.size(), 10u);
  const std::string report = r.report();
  EXPECT_NE(report.find(">= 10 mismatching elements of 20"), std::string::npos) << report;
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

}  // namespace
