// The textbook worked example of padding and masking, reproduced by the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "maskcheck/reference/reference.hpp"

namespace mc = maskcheck;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(WorkedExample, rightPaddingWithZeros) {
  const auto p =
      mc::ref::pad_sequences({{1, 2, 3}, {1, 2, 3, 4, 5}, {1, 2, 3, 4}}, 0, mc::PaddingSide::right);
  EXPECT_EQ(p.L, 5);
  EXPECT_EQ(p.values, (std::vector<std::int64_t>{1, 2, 3, 0, 0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 0}));
  EXPECT_EQ(p.lengths, (std::vector<std::int32_t>{3, 5, 4}));
  EXPECT_EQ(mc::ref::last_valid_index(p.lengths, p.L, mc::PaddingSide::right),
            (std::vector<std::int64_t>{2, 4, 3}));
}

TEST(WorkedExample, additivePaddingMask) {
  const std::vector<std::int32_t> lengths{3, 5, 4};
  const auto keep = mc::ref::keep_from_lengths(lengths, 5, mc::PaddingSide::right);
  const auto additive = mc::ref::encode_mask(keep, mc::MaskEncoding::additive_inf, mc::DType::f32);
  EXPECT_EQ(additive, (std::vector<double>{0, 0, 0, -kInf, -kInf,  //
                                           0, 0, 0, 0, 0,          //
                                           0, 0, 0, 0, -kInf}));
}

TEST(WorkedExample, causalMask5x5) {
  mc::MaskSpec spec;
  spec.Lq = spec.Lk = 5;
  spec.causal = true;
  const auto keep = mc::ref::build_keep_mask(spec);
  const auto additive = mc::ref::encode_mask(keep, mc::MaskEncoding::additive_inf, mc::DType::f32);
  for (int q = 0; q < 5; ++q)
    for (int k = 0; k < 5; ++k)
      EXPECT_EQ(additive[q * 5 + k], k <= q ? 0.0 : -kInf) << q << "," << k;
}

// Per-token losses of the three sequences.
const std::vector<double> kLosses{0.5135, 0.5513, 0.9017, 0.4005, 0.0784,  //
                                  0.4215, 0.5581, 0.8376, 0.8771, 0.9324,  //
                                  0.2851, 0.7234, 0.5639, 0.6350, 0.9162};

TEST(WorkedExample, paddingMaskedMeanLoss) {
  const auto keep =
      mc::ref::keep_from_lengths(std::vector<std::int32_t>{3, 5, 4}, 5, mc::PaddingSide::right);
  const std::vector<double> w(keep.begin(), keep.end());
  EXPECT_NEAR(mc::ref::weighted_mean<double>(kLosses, w), 0.650, 5e-4);
  EXPECT_NEAR(mc::ref::weighted_mean<double>(kLosses, w), 7.8006 / 12, 1e-12);
}

TEST(WorkedExample, mlmPositionsMeanLoss) {
  std::vector<double> w(15, 0.0);
  for (auto [b, t] : {std::pair{0, 1}, {0, 4}, {1, 0}, {1, 2}, {2, 3}}) w[b * 5 + t] = 1.0;
  EXPECT_NEAR(mc::ref::weighted_mean<double>(kLosses, w), 0.505, 5e-4);
  EXPECT_NEAR(mc::ref::weighted_mean<double>(kLosses, w), 2.5238 / 5, 1e-12);
}

TEST(WorkedExample, crossEntropyMeanOverPaddedBatchMatchesMaskedMean) {
  // The same masked mean through cross-entropy: padding positions carry ignore_index.
  // Logits chosen so that each row's loss is the table's value: with V = 2 and logits (0, x),
  // -log softmax_0 = log(1 + e^x), so x = log(e^l - 1).
  mc::LossProblem p;
  p.N = 15;
  p.V = 2;
  std::vector<double> logits;
  std::vector<std::int64_t> labels;
  const std::vector<std::int32_t> lengths{3, 5, 4};
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 5; ++t) {
      logits.push_back(0.0);
      logits.push_back(std::log(std::exp(kLosses[b * 5 + t]) - 1.0));
      labels.push_back(t < lengths[b] ? 0 : p.ignore_index);
    }
  const auto out = mc::ref::cross_entropy<double, double>(p, logits, labels, {}, {});
  EXPECT_NEAR(out.loss, 7.8006 / 12, 1e-12);
  EXPECT_EQ(out.count, 12);
}

}  // namespace
