// The deviation policy: each named deviation is recognized exactly, normalized to the contract and
// recorded (or fails in strict mode); everything else still reaches the properties unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/deviations.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// Rows of fully masked queries as `fill` (NaN: torch.softmax(x + mask)), optionally only the
// first element of each (a partial NaN row, which is no deviation).
class EmptyRowsAs : public mc::ReferenceImplementation {
 public:
  EmptyRowsAs(double fill, bool whole_row, double lse_fill)
      : fill_(fill), whole_(whole_row), lse_fill_(lse_fill) {}
  std::string name() const override { return "test:empty-rows"; }
  std::vector<double> softmax(const mc::SoftmaxProblem& p, mc::DType t,
                              std::span<const double> x) const override {
    auto y = ReferenceImplementation::softmax(p, t, x);
    fill_rows(y, p.mask, p.H, p.mask.Lk);
    return y;
  }
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    auto r = ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    fill_rows(r.out, p.mask, p.H, p.D);
    for (auto& l : r.lse)
      if (l == -kInf) l = lse_fill_;
    return r;
  }

 private:
  void fill_rows(std::vector<double>& y, const mc::MaskSpec& m, std::int64_t H,
                 std::int64_t row_len) const {
    const auto keep = mc::ref::build_keep_mask(m);
    for (std::int64_t b = 0; b < m.B; ++b)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t q = 0; q < m.Lq; ++q) {
          bool empty = true;
          for (std::int64_t k = 0; k < m.Lk; ++k) empty = empty && !keep[(b * m.Lq + q) * m.Lk + k];
          if (!empty) continue;
          const auto row = ((b * H + h) * m.Lq + q) * row_len;
          for (std::int64_t i = 0; i < (whole_ ? row_len : std::min<std::int64_t>(row_len, 1)); ++i)
            y[row + i] = fill_;
        }
  }
  double fill_;
  bool whole_;
  double lse_fill_;
};

// A causal problem with padded keys: sequence 1 has 2 valid queries of 4 and no valid key, so
// its queries see nothing.
mc::AttentionProblem problem_with_empty_rows() {
  mc::AttentionProblem p;
  p.mask.B = 2;
  p.mask.Lq = 4;
  p.mask.Lk = 4;
  p.mask.q_lens = {4, 2};
  p.mask.k_lens = {4, 0};
  p.H = 2;
  p.Hkv = 2;
  p.D = 3;
  return p;
}

std::vector<double> ramp(std::int64_t n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    v[i] = std::ldexp(static_cast<double>((i * 37) % 17) - 8, -3);
  return v;
}

TEST(Deviations, nanRowsOfFullyMaskedQueriesAreNamedAndZeroed) {
  const EmptyRowsAs impl(kNaN, true, -kInf);
  const mc::DeviationFilter filter(impl, /*strict=*/false);
  const auto p = problem_with_empty_rows();
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  mc::reset_deviation_ledger();
  const auto got = filter.attention(p, mc::DType::f64, q, kv, kv, false);
  const auto want = mc::ReferenceImplementation().attention(p, mc::DType::f64, q, kv, kv, false);
  EXPECT_EQ(got.out, want.out);
  EXPECT_EQ(mc::deviation_ledger().count("fully_masked_row_nan"), 1u);
}

TEST(Deviations, strictModeFailsTheDeviation) {
  const EmptyRowsAs impl(kNaN, true, -kInf);
  const mc::DeviationFilter filter(impl, /*strict=*/true);
  const auto p = problem_with_empty_rows();
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  EXPECT_THROW(filter.attention(p, mc::DType::f64, q, kv, kv, false), mc::DeviationError);
}

TEST(Deviations, partlyNanRowsAreNoDeviation) {
  const EmptyRowsAs impl(kNaN, /*whole_row=*/false, -kInf);
  const mc::DeviationFilter filter(impl, false);
  const auto p = problem_with_empty_rows();
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  mc::reset_deviation_ledger();
  const auto got = filter.attention(p, mc::DType::f64, q, kv, kv, false);
  EXPECT_TRUE(mc::deviation_ledger().empty());
  EXPECT_TRUE(std::any_of(got.out.begin(), got.out.end(), [](double x) { return std::isnan(x); }));
}

TEST(Deviations, emptyRowLseInfOrZeroIsNamedButNanIsNot) {
  const auto p = problem_with_empty_rows();
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  for (const double lse : {kInf, 0.0, kNaN}) {
    const EmptyRowsAs impl(0.0, true, lse);
    const mc::DeviationFilter filter(impl, false);
    mc::reset_deviation_ledger();
    const auto got = filter.attention(p, mc::DType::f64, q, kv, kv, true);
    const bool named = !std::isnan(lse);
    EXPECT_EQ(mc::deviation_ledger().count("empty_row_lse"), named ? 1u : 0u) << lse;
    // Sequence 1: 4 queries (2 valid, 2 padded) with no key, 2 heads.
    EXPECT_EQ(std::count(got.lse.begin(), got.lse.end(), -kInf), named ? 8 : 0) << lse;
  }
}

// Top-left causal where bottom-right was asked (PyTorch is_causal with Lq != Lk).
class TopLeft : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    mc::AttentionProblem tl = p;
    tl.mask.alignment = mc::Alignment::top_left;
    return ReferenceImplementation::attention(tl, t, q, k, v, want_lse);
  }
};

// Zero values: the outputs of both alignments are all zero, only the log-sum-exp of the rows
// that see no key tells them apart (the filter compared outputs only, and called this a failure).
TEST(Deviations, topLeftCausalIsRecognizedByTheLseToo) {
  const TopLeft impl;
  const mc::DeviationFilter filter(impl, false);
  mc::AttentionProblem p;
  p.mask.Lq = 5;
  p.mask.Lk = 2;
  p.mask.causal = true;
  p.D = 2;
  const std::vector<double> zq(p.q_numel(), 0.0), zkv(p.kv_numel(), 0.0);
  mc::reset_deviation_ledger();
  const auto got = filter.attention(p, mc::DType::f32, zq, zkv, zkv, true);
  EXPECT_EQ(mc::deviation_ledger().count("top_left_causal"), 1u);
  EXPECT_EQ(got.lse,
            mc::ReferenceImplementation().attention(p, mc::DType::f32, zq, zkv, zkv, true).lse);
}

TEST(Deviations, topLeftCausalIsNamedOnlyWhereAlignmentMatters) {
  const TopLeft impl;
  const mc::DeviationFilter filter(impl, false);
  mc::AttentionProblem p;
  p.mask.Lq = 3;
  p.mask.Lk = 6;
  p.mask.causal = true;
  p.D = 2;
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  mc::reset_deviation_ledger();
  const auto got = filter.attention(p, mc::DType::f32, q, kv, kv, false);
  EXPECT_EQ(mc::deviation_ledger().count("top_left_causal"), 1u);
  EXPECT_EQ(got.out,
            mc::ReferenceImplementation().attention(p, mc::DType::f32, q, kv, kv, false).out);
  p.mask.Lk = 3;  // square: the two alignments agree, nothing to name
  mc::reset_deviation_ledger();
  filter.attention(p, mc::DType::f32, ramp(p.q_numel()), ramp(p.kv_numel()), ramp(p.kv_numel()),
                   false);
  EXPECT_TRUE(mc::deviation_ledger().empty());
}

// The bottom-right answer plus an error of 1e6 in one row. Where inputs near the float maximum
// put the naive top-left reference far off in one row (a score that overflows to -inf in float,
// with the exact sum positive), one bound for the whole tensor admitted this output: the filter
// named it top_left_causal and replaced the wrong output by the reference's (found by
// attention.maskedKeysCannotLeak on the cpu kernel). Each row has its own bound now.
class OffByOneRow : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    auto r = ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    r.out[5 * p.D] += 1e6;
    return r;
  }
};

TEST(Deviations, topLeftCausalIsJudgedRowByRow) {
  mc::AttentionProblem p;
  p.mask.Lq = 6;
  p.mask.Lk = 3;
  p.mask.window = mc::Window{1, 0};
  p.D = 4;
  p.scale = 1.0;
  // Bottom-right: query 3 sees key 0, query 4 keys 0-1, query 5 keys 1-2, queries 0-2 none.
  // Top-left: query 0 sees key 0, query 1 keys 0-1, query 2 keys 1-2, query 3 key 2.
  std::vector<double> q(p.q_numel(), 0.0), k(p.kv_numel(), 0.0), v(p.kv_numel(), 0.0);
  for (int d = 0; d < 4; ++d) q[1 * 4 + d] = 1;  // query 1, top-left only, sees keys 0 and 1
  // Key 0 (exact in float): the float dot product overflows to -inf at its second term, the
  // exact one is +2^127.
  k[0] = -0x1p127, k[1] = -0x1p127, k[2] = 0x1.8p127, k[3] = 0x1.8p127;
  v[0] = 0x1p126;  // the exact top-left output of query 1 is 2^126, the naive float one 0
  v[2 * 4] = 1;
  const OffByOneRow impl;
  for (const bool strict : {false, true}) {
    const mc::DeviationFilter filter(impl, strict);
    mc::reset_deviation_ledger();
    mc::AttentionResult got;
    ASSERT_NO_THROW(got = filter.attention(p, mc::DType::f32, q, k, v, false)) << strict;
    EXPECT_TRUE(mc::deviation_ledger().empty()) << strict;
    // The wrong output reaches the properties as it is.
    EXPECT_EQ(got.out, impl.attention(p, mc::DType::f32, q, k, v, false).out) << strict;
  }
}

// All-zero rows where the bottom-right rows are not: with the top-left rows below atol, zeros
// agree with top-left, yet they are just as much a row that sees no key (the cpu kernel's answer
// to scores near 1e35 once). No evidence of top-left alignment.
class Zeros : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    auto r = ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    std::fill(r.out.begin(), r.out.end(), 0.0);
    return r;
  }
};

TEST(Deviations, zeroRowsAreNoEvidenceOfTopLeftCausal) {
  mc::AttentionProblem p;
  p.mask.Lq = 1;
  p.mask.Lk = 4;
  p.mask.causal = true;  // bottom-right: the query sees keys 0-3; top-left: key 0
  p.D = 2;
  const std::vector<double> q(p.q_numel(), 0.0);
  const std::vector<double> k(p.kv_numel(), 0.0);
  const std::vector<double> v{0x1p-20, 0x1p-20, 1, 1, 1, 1, 1, 1};
  const Zeros impl;
  mc::reset_deviation_ledger();
  const auto got = mc::DeviationFilter(impl, false).attention(p, mc::DType::f32, q, k, v, false);
  EXPECT_TRUE(mc::deviation_ledger().empty());
  EXPECT_EQ(got.out, std::vector<double>(2, 0.0));
  // The top-left output of the same problem with values well above atol is named.
  mc::reset_deviation_ledger();
  const std::vector<double> v_big{0.5, 0.5, 1, 1, 1, 1, 1, 1};
  const TopLeft top_left;
  mc::DeviationFilter(top_left, false).attention(p, mc::DType::f32, q, k, v_big, false);
  EXPECT_EQ(mc::deviation_ledger().count("top_left_causal"), 1u);
}

// Cross-entropy mean over rows that are all ignored: NaN (torch) is named, NaN elsewhere is not.
class MeanNan : public mc::ReferenceImplementation {
 public:
  mc::LossResult cross_entropy(const mc::LossProblem& p, mc::DType t,
                               std::span<const double> logits, std::span<const std::int64_t> labels,
                               std::span<const double> weights, bool backward) const override {
    auto r = ReferenceImplementation::cross_entropy(p, t, logits, labels, weights, backward);
    if (p.reduction == mc::Reduction::mean && r.count == 0) r.loss = kNaN;
    if (p.reduction == mc::Reduction::sum) r.loss = kNaN;
    return r;
  }
};

// Implementations that mimic a convention wrongly (each named deviation must be granted only
// for the whole behaviour of the convention).

// An empty row that sees a key anyway and happens to have log-sum-exp 0: the first key of the
// sequence with score 0 (zero queries), so out = v of that key and lse = 0.
class EmptyRowsSeeTheFirstKey : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    auto r = ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    for (std::size_t i = 0; i < r.lse.size(); ++i)
      if (r.lse[i] == -kInf) {
        r.lse[i] = 0.0;
        r.out[i * static_cast<std::size_t>(p.D)] = 0.5;  // v[key 0], not the zero row
      }
    return r;
  }
};

TEST(Deviations, emptyRowLseIsGrantedOnlyWithTheZeroRowOfTheConvention) {
  const auto p = problem_with_empty_rows();
  const auto q = ramp(p.q_numel()), kv = ramp(p.kv_numel());
  const EmptyRowsSeeTheFirstKey impl;
  const mc::DeviationFilter filter(impl, false);
  mc::reset_deviation_ledger();
  const auto got = filter.attention(p, mc::DType::f64, q, kv, kv, true);
  EXPECT_EQ(mc::deviation_ledger().count("empty_row_lse"), 0u);
  EXPECT_EQ(std::count(got.lse.begin(), got.lse.end(), 0.0), 8);  // left for the properties
}

// Alignment by the sign of Lk - Lq: top-left with more keys than queries, bottom-right with
// fewer. Either case alone looks like a convention (or like the contract); the run does not.
class AlignmentBySign : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    mc::AttentionProblem a = p;
    if (p.mask.Lk > p.mask.Lq) a.mask.alignment = mc::Alignment::top_left;
    return ReferenceImplementation::attention(a, t, q, k, v, want_lse);
  }
};

TEST(Deviations, topLeftCausalMustHoldThroughoutTheRun) {
  const AlignmentBySign impl;
  const mc::DeviationFilter filter(impl, false);
  mc::AttentionProblem more_queries, more_keys;
  more_queries.mask.Lq = 6;
  more_queries.mask.Lk = 3;
  more_queries.mask.causal = true;
  more_queries.D = 2;
  more_keys = more_queries;
  more_keys.mask.Lq = 3;
  more_keys.mask.Lk = 6;
  auto call = [&](const mc::AttentionProblem& p) {
    return filter.attention(p, mc::DType::f32, ramp(p.q_numel()), ramp(p.kv_numel()),
                            ramp(p.kv_numel()), true);
  };
  mc::reset_deviation_ledger();
  EXPECT_NO_THROW(call(more_queries));  // bottom-right where the alignments differ: the contract
  try {
    call(more_keys);  // top-left now: no convention aligns by the sign of Lk - Lq
    ADD_FAILURE() << "no error for top-left after bottom-right in one run";
  } catch (const mc::DeviationError& e) {
    EXPECT_NE(std::string(e.what()).find("alignment inconsistent across the run"),
              std::string::npos)
        << e.what();
  }
  // The other order fails too, and a consistently top-left implementation stays a deviation.
  const mc::DeviationFilter fresh(impl, false);
  EXPECT_NO_THROW(fresh.attention(more_keys, mc::DType::f32, ramp(more_keys.q_numel()),
                                  ramp(more_keys.kv_numel()), ramp(more_keys.kv_numel()), true));
  EXPECT_THROW(fresh.attention(more_queries, mc::DType::f32, ramp(more_queries.q_numel()),
                               ramp(more_queries.kv_numel()), ramp(more_queries.kv_numel()), true),
               mc::DeviationError);
  const TopLeft top_left;
  const mc::DeviationFilter consistent(top_left, false);
  for (const auto* p : {&more_keys, &more_queries, &more_keys})
    EXPECT_NO_THROW(consistent.attention(*p, mc::DType::f32, ramp(p->q_numel()),
                                         ramp(p->kv_numel()), ramp(p->kv_numel()), true));
}

// An exclusive window edge (k < diag + right): for causal it equals top-left exactly when
// Lk - Lq = 1, and is neither alignment for any other offset; over a run it fails.
class ExclusiveCausalEdge : public mc::ReferenceImplementation {
 public:
  mc::AttentionResult attention(const mc::AttentionProblem& p, mc::DType t,
                                std::span<const double> q, std::span<const double> k,
                                std::span<const double> v, bool want_lse) const override {
    mc::AttentionProblem a = p;
    if (a.mask.causal) {
      a.mask.causal = false;
      mc::Window w = a.mask.window.value_or(mc::Window{});
      w.right = std::min<std::int64_t>(w.right, 0) - 1;
      a.mask.window = w;
    }
    return ReferenceImplementation::attention(a, t, q, k, v, want_lse);
  }
  std::string name() const override { return "test:exclusive-edge"; }
};

TEST(Deviations, anExclusiveWindowEdgeIsNoTopLeftConvention) {
  const ExclusiveCausalEdge impl;
  const mc::Property* prop = mc::find_property("attention.agreesWithReference");
  ASSERT_NE(prop, nullptr);
  mc::VerifyConfig config;
  config.seed = 5;
  config.cases = 100;
  const auto o = mc::run_property(impl, *prop, config);  // not strict
  EXPECT_EQ(o.status, mc::Status::failed) << o.message;
}

TEST(Deviations, allIgnoredMeanNanIsNamedOtherNanIsNot) {
  const MeanNan impl;
  const mc::DeviationFilter filter(impl, false);
  mc::LossProblem p;
  p.N = 2;
  p.V = 3;
  const auto logits = ramp(6);
  const std::vector<std::int64_t> ignored{-100, -100}, labels{1, -100};
  mc::reset_deviation_ledger();
  auto r = filter.cross_entropy(p, mc::DType::f64, logits, ignored, {}, true);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(mc::deviation_ledger().count("all_ignored_mean_nan"), 1u);
  p.reduction = mc::Reduction::sum;
  mc::reset_deviation_ledger();
  r = filter.cross_entropy(p, mc::DType::f64, logits, labels, {}, true);
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(mc::deviation_ledger().empty());
}

// Through the runner: a passing property with a named deviation is Status::deviation, and a
// strict run fails it.
TEST(Deviations, runnerReportsDeviationsAndStrictFailsThem) {
  const EmptyRowsAs impl(kNaN, true, -kInf);
  const mc::Property* prop = mc::find_property("softmax.agreesWithReference");
  ASSERT_NE(prop, nullptr);
  mc::VerifyConfig config;
  config.cases = 60;
  config.seed = 7;
  const auto lax = mc::run_property(impl, *prop, config);
  EXPECT_EQ(lax.status, mc::Status::deviation) << lax.message;
  EXPECT_GT(lax.deviations.count("fully_masked_row_nan"), 0u);
  config.strict = true;
  const auto strict = mc::run_property(impl, *prop, config);
  EXPECT_EQ(strict.status, mc::Status::failed);
  EXPECT_NE(strict.message.find("fully_masked_row_nan"), std::string::npos) << strict.message;
}

}  // namespace
