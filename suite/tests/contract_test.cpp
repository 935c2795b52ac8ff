// The contract's corners that an independent reading of the documented semantics found open,
// decided and pinned down (README "The contract's corners"): each against an independent
// computation, and the reference and maskcheck's CPU kernels both held to it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/reference.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace mc = maskcheck;

namespace {

const mc::Implementation& impl(const std::string& name) {
  const auto p = mc::builtin_registry().find(name);
  if (!p) throw std::runtime_error("no implementation " + name);
  return *p;
}

// lm_labels on a keep mask with a hole: a position's index within its sequence is its offset
// from the sequence's first valid position (the hole counts), not the number of valid positions
// before it.
TEST(Contract, lmLabelsCountPromptPositionsFromTheFirstValidOneHolesIncluded) {
  mc::LmLabelsProblem p;
  p.B = 1;
  p.L = 7;
  const std::vector<std::int64_t> ids{10, 11, 12, 13, 14, 15, 16};
  const std::vector<std::uint8_t> keep{0, 1, 0, 1, 1, 1, 0};  // first valid 1, a hole at 2
  const std::vector<std::int32_t> prompt{3};
  // Independently: targets t + 1 with offset (t + 1) - 1 >= 3, t and t + 1 both kept.
  std::vector<std::int64_t> want(7, p.ignore_index);
  for (std::int64_t t = 0; t + 1 < 7; ++t)
    if (keep[t] && keep[t + 1] && (t + 1) - 1 >= 3) want[t] = ids[t + 1];
  // Counting valid positions instead would give position 4 the index 2 and drop its label.
  EXPECT_EQ(want, (std::vector<std::int64_t>{-100, -100, -100, 14, 15, -100, -100}));
  for (const char* name : {"reference", "cpu"})
    EXPECT_EQ(impl(name).lm_labels(p, ids, keep, prompt), want) << name;
}

// keep and masked_out masks hold 0 or 1; anything else is refused everywhere (a 2 reads as true
// for one framework, 0.5 truncates to 0 in a uint8 mask, -1 wraps to 255), as is NaN in any
// encoding. Additive masks hold any number.
TEST(Contract, flagMasksHoldZeroOrOne) {
  for (const double bad : {2.0, 0.5, -1.0, 256.0, std::numeric_limits<double>::infinity()})
    for (const auto e : {mc::MaskEncoding::keep, mc::MaskEncoding::masked_out})
      for (const char* name : {"reference", "cpu"}) {
        const std::vector<double> values{1.0, bad, 0.0};
        try {
          impl(name).convert_mask(values, e, mc::MaskEncoding::additive_inf, mc::DType::f32);
          ADD_FAILURE() << name << " accepted " << bad;
        } catch (const mc::InvalidArgument& err) {
          EXPECT_NE(std::string(err.what()).find("mask[1]"), std::string::npos) << err.what();
        }
      }
  const std::vector<double> additive{0.0, -3.5, -1e30, 2.0};
  EXPECT_NO_THROW(mc::ref::decode_mask(additive, mc::MaskEncoding::additive_inf, mc::DType::f32));
  const std::vector<double> nan{std::numeric_limits<double>::quiet_NaN()};
  EXPECT_THROW(mc::ref::decode_mask(nan, mc::MaskEncoding::additive_1e4, mc::DType::f32),
               mc::InvalidArgument);
}

// Softmax scales its scores by 1 unless told; attention by 1/sqrt(D). Both take any finite
// scale, 0 (uniform weights) and negative ones included.
TEST(Contract, defaultScalesAndTheWholeRangeOfScales) {
  EXPECT_EQ(mc::SoftmaxProblem{}.scale, 1.0);
  mc::AttentionProblem a;
  a.D = 16;
  EXPECT_EQ(a.effective_scale(), 0.25);
  mc::SoftmaxProblem s;
  s.mask.Lq = 1;
  s.mask.Lk = 4;
  const std::vector<double> x{1, 2, 3, 4};
  s.scale = 0.0;
  for (const char* name : {"reference", "cpu"})
    for (const double y : impl(name).softmax(s, mc::DType::f32, x)) EXPECT_EQ(y, 0.25) << name;
  s.scale = -1.0;
  for (const char* name : {"reference", "cpu"}) {
    const auto y = impl(name).softmax(s, mc::DType::f32, x);
    EXPECT_GT(y[0], y[3]) << name;  // reversed preference
  }
}

// The packed (varlen) layout's log-sum-exp is [H, T_q] (FlashAttention's softmax_lse of
// varlen): entry h * T_q + t, where the padded layout's is [B, H, Lq].
TEST(Contract, varlenLogSumExpIsHeadsByTokens) {
  mc::VarlenAttentionProblem v;
  v.H = 2;
  v.Hkv = 1;
  v.D = 1;
  v.cu_seqlens_q = {0, 2, 3};
  v.cu_seqlens_k = {0, 3, 5};
  const std::vector<double> q{1, 2, 3, 4, 5, 6}, k{1, 0, -1, 2, 1}, vv{1, 2, 3, 4, 5};
  const auto packed =
      mc::ReferenceImplementation().attention_varlen(v, mc::DType::f64, q, k, vv, true);
  ASSERT_EQ(packed.lse.size(), 6u);
  // Independently: token t of head h sees its sequence's keys; lse = log sum exp(q k / sqrt 1).
  const std::vector<int> seq{0, 0, 1};
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < 3; ++t) {
      double sum = 0;
      for (int j = v.cu_seqlens_k[seq[t]]; j < v.cu_seqlens_k[seq[t] + 1]; ++j)
        sum += std::exp(q[t * 2 + h] * k[j]);
      EXPECT_NEAR(packed.lse[h * 3 + t], std::log(sum), 1e-12) << "h=" << h << " t=" << t;
    }
}

}  // namespace
