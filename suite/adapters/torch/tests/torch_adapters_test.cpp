// LibTorch's verdicts: the CPU adapters (torch_impl.hpp) run the whole catalogue at a fixed seed
// and case count, and every (implementation, property) verdict must equal the expected one
// committed in expected_verdicts.json beside this file: passed, skipped, failed, or deviation with
// the deviations' names. LibTorch fails some properties for real (NaN in padding memory reaches
// valid rows, ...); the file records those findings, and this test turns any change (a LibTorch
// upgrade fixing or breaking a property, an adapter or mask translation change) into a failure
// that lists the differences. MASKCHECK_UPDATE_EXPECTED=1 rewrites the file from this run.
#include <gtest/gtest.h>

#include <string>

#include "expected_verdicts.hpp"
#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

constexpr std::uint64_t kSeed = 20261123;
constexpr int kCases = 30;

TEST(TorchAdapters, verdictsAreTheExpectedOnes) {
  mc::VerifyConfig config;
  config.seed = kSeed;
  config.cases = kCases;
  config.impls = "torch:*";
  mc::testing::Verdicts got;
  const auto plan = mc::plan_verify(mc::builtin_registry(), config);
  for (const auto& [impl, prop] : plan.items) {
    if (impl->name().rfind("torch:cuda-", 0) == 0) continue;  // CPU verdicts only
    const auto o = mc::run_property(*impl, *prop, config);
    ASSERT_NE(o.status, mc::Status::error)
        << impl->name() << " " << prop->name << ": " << o.message;
    got[impl->name()][prop->name] = mc::testing::verdict(o);
  }
  ASSERT_FALSE(got.empty()) << "no LibTorch adapter is registered";
  const std::string run = "--seed " + std::to_string(kSeed) + " --cases " + std::to_string(kCases);
  mc::testing::expect_verdicts({.path = MASKCHECK_TORCH_EXPECTED,
                                .library = "torch",
                                .version = mc::torch_peers::torch_version(),
                                .about = "verdicts of maskcheck verify --impl 'torch:*' " + run +
                                         " (CPU adapters), checked by torch_adapters_test",
                                .replay = "maskcheck verify --impl NAME --property PROPERTY " + run,
                                .test = "torch_adapters_test"},
                               got);
}

}  // namespace
