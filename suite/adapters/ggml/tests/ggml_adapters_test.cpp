// ggml's verdicts: the adapters (ggml_impl.hpp) run the whole catalogue at a fixed seed and case
// count, and every (implementation, property) verdict must equal the expected one committed in
// expected_verdicts.json beside this file: passed, skipped, failed, or deviation with the
// deviations' names. ggml fails some properties for real (see the README's ggml section); the file
// records those findings, and this test turns any change (a ggml upgrade fixing or breaking a
// property, an adapter change) into a failure that lists the differences.
// MASKCHECK_UPDATE_EXPECTED=1 rewrites the file from this run.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <variant>

#include "expected_verdicts.hpp"
#include "maskcheck/adapters/ggml_impl.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

constexpr std::uint64_t kSeed = 20261205;
constexpr int kCases = 30;

// The verdict per property and dtype ("<property> <dtype>"), so that a finding in one storage (K
// and V in f16) is told from the others.
TEST(GgmlAdapters, verdictsAreTheExpectedOnes) {
  mc::VerifyConfig config;
  config.seed = kSeed;
  config.cases = kCases;
  config.impls = "ggml:*";
  mc::testing::Verdicts got;
  const auto plan = mc::plan_verify(mc::builtin_registry(), config);
  ASSERT_FALSE(plan.items.empty()) << "no ggml adapter is registered";
  for (const auto& [impl, prop] : plan.items)
    for (const mc::DType t : impl->dtypes(prop->op)) {
      mc::VerifyConfig one = config;
      one.dtypes = {t};
      const auto o = mc::run_property(*impl, *prop, one);
      ASSERT_NE(o.status, mc::Status::error)
          << impl->name() << " " << prop->name << " " << mc::to_string(t) << ": " << o.message;
      got[impl->name()][prop->name + " " + std::string(mc::to_string(t))] = mc::testing::verdict(o);
    }
  const std::string run = "--seed " + std::to_string(kSeed) + " --cases " + std::to_string(kCases);
  mc::testing::expect_verdicts(
      {.path = MASKCHECK_GGML_EXPECTED,
       .library = "ggml",
       .version = mc::ggml_adapters::ggml_version(),
       .about = "verdicts of maskcheck verify --impl 'ggml:*' --dtype T " + run +
                " per property and dtype, checked by ggml_adapters_test",
       .replay = "maskcheck verify --impl NAME --property PROPERTY --dtype DTYPE " + run,
       .test = "ggml_adapters_test"},
      got);
}

// The counterexample files of ggml's findings committed in ../findings (the README lists them):
// each still loads, runs through its adapter as `maskcheck eval` runs it, and still shows its
// finding against the reference: NaN where the reference is finite, or an error above a bound.
struct Finding {
  const char* file;
  const char* impl;
  bool nan;      // the finding is NaN in rows the reference computes finitely
  double error;  // else: the largest |ggml - reference| is above this
};

std::vector<double> output_of(const mc::CallResult& r) {
  if (const auto* a = std::get_if<mc::AttentionResult>(&r)) return a->out;
  return std::get<std::vector<double>>(r);
}

TEST(GgmlAdapters, committedFindingsStillReproduce) {
  const Finding findings[] = {
      {"flash_attn_ext-f16-rows-sum", "ggml:flash_attn_ext", false, 0.02},
      {"flash_attn_ext-f16-constant-values", "ggml:flash_attn_ext", false, 1.5},
      {"flash_attn_ext-tiled-padding-nan", "ggml:flash_attn_ext", true, 0},
      {"flash_attn_ext-tiled-masked-keys-overflow", "ggml:flash_attn_ext", true, 0},
      {"mul_mat_softmax-masked-keys-overflow", "ggml:mul_mat_softmax", true, 0},
      {"mul_mat_softmax-padding-nan", "ggml:mul_mat_softmax", true, 0},
      {"soft_max_ext-masked-score-nan", "ggml:soft_max_ext", true, 0},
  };
  const auto reference = mc::builtin_registry().find("reference");
  for (const Finding& f : findings) {
    SCOPED_TRACE(f.file);
    const std::string path = std::string(MASKCHECK_GGML_FINDINGS) + "/" + f.file + ".safetensors";
    const mc::CallInputs in = mc::decode_case(mc::safetensors::read_file(path), path);
    mc::validate_call(in);
    const auto impl = mc::builtin_registry().find(f.impl);
    ASSERT_NE(impl, nullptr);
    ASSERT_TRUE(mc::supports_call(*impl, in));
    const auto got = output_of(mc::run_call(*impl, in));
    const auto want = output_of(mc::run_call(*reference, in));
    ASSERT_EQ(got.size(), want.size());
    std::size_t nan = 0;
    double error = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (!std::isfinite(want[i])) continue;
      if (std::isnan(got[i]))
        ++nan;
      else
        error = std::max(error, std::abs(got[i] - want[i]));
    }
    if (f.nan)
      EXPECT_GT(nan, 0U) << "no NaN where the reference is finite: fixed in "
                         << mc::ggml_adapters::ggml_version() << "?";
    else
      EXPECT_GT(error, f.error) << "the error is within " << f.error << ": fixed in "
                                << mc::ggml_adapters::ggml_version() << "?";
  }
}

}  // namespace
