// LibTorch's verdicts: the CPU adapters (torch_impl.hpp) run the whole catalogue at a fixed seed
// and case count, and every (implementation, property) verdict must equal the expected one
// committed in expected_verdicts.json beside this file: passed, skipped, failed, or deviation with
// the deviations' names. LibTorch fails some properties for real (NaN in padding memory reaches
// valid rows, ...); the file records those findings, and this test turns any change (a LibTorch
// upgrade fixing or breaking a property, an adapter or mask translation change) into a failure
// that lists the differences. MASKCHECK_UPDATE_EXPECTED=1 rewrites the file from this run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

constexpr std::uint64_t kSeed = 20261123;
constexpr int kCases = 30;

std::string verdict(const mc::PropertyOutcome& o) {
  std::string v(mc::to_string(o.status));
  if (o.status == mc::Status::deviation) {
    v += ":";
    for (const auto& [name, n] : o.deviations) v += " " + name;
  }
  return v;
}

TEST(TorchAdapters, verdictsAreTheExpectedOnes) {
  mc::VerifyConfig config;
  config.seed = kSeed;
  config.cases = kCases;
  config.impls = "torch:*";
  std::map<std::string, std::map<std::string, std::string>> got;
  const auto plan = mc::plan_verify(mc::builtin_registry(), config);
  for (const auto& [impl, prop] : plan.items) {
    if (impl->name().rfind("torch:cuda-", 0) == 0) continue;  // CPU verdicts only
    const auto o = mc::run_property(*impl, *prop, config);
    ASSERT_NE(o.status, mc::Status::error)
        << impl->name() << " " << prop->name << ": " << o.message;
    got[impl->name()][prop->name] = verdict(o);
  }
  ASSERT_FALSE(got.empty()) << "no LibTorch adapter is registered";

  nlohmann::json doc;
  doc["about"] = "verdicts of maskcheck verify --impl 'torch:*' --seed " + std::to_string(kSeed) +
                 " --cases " + std::to_string(kCases) +
                 " (CPU adapters), checked by torch_adapters_test";
  doc["torch"] = mc::torch_peers::torch_version();
  doc["verdicts"] = got;
  const char* update = std::getenv("MASKCHECK_UPDATE_EXPECTED");
  if (update && std::string_view(update) == "1") {
    mc::write_json_atomic(MASKCHECK_TORCH_EXPECTED, doc);
    GTEST_SKIP() << "rewrote " << MASKCHECK_TORCH_EXPECTED;
  }
  const nlohmann::json want = mc::read_json_file(MASKCHECK_TORCH_EXPECTED);
  if (want.at("torch") != doc["torch"])
    GTEST_SKIP() << "the expected verdicts are LibTorch " << want.at("torch") << "'s, this is "
                 << doc["torch"] << ": rerun with MASKCHECK_UPDATE_EXPECTED=1 and review the diff";
  std::string diff;
  const auto& expected = want.at("verdicts");
  for (const auto& [impl, props] : got)
    for (const auto& [prop, v] : props) {
      const std::string e = expected.contains(impl) && expected[impl].contains(prop)
                                ? expected[impl][prop].get<std::string>()
                                : "(none)";
      if (e != v) diff += "  " + impl + " " + prop + ": expected " + e + ", got " + v + "\n";
    }
  for (const auto& [impl, props] : expected.items())
    for (const auto& [prop, v] : props.items())
      if (!got.count(impl) || !got[impl].count(prop))
        diff += "  " + impl + " " + prop + ": expected " + v.get<std::string>() + ", not run\n";
  EXPECT_TRUE(diff.empty()) << "LibTorch verdicts changed (seed " << kSeed << ", " << kCases
                            << " cases; replay one with maskcheck verify --impl NAME --property "
                               "PROPERTY --seed "
                            << kSeed << " --cases " << kCases << "):\n"
                            << diff << "If the change is intended: MASKCHECK_UPDATE_EXPECTED=1 "
                            << "ctest -R torch_adapters_test, and review the diff of "
                            << MASKCHECK_TORCH_EXPECTED;
}

}  // namespace
