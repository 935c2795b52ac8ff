// The whole property catalogue against maskcheck's own built-in implementations (the reference,
// the CPU and CUDA kernels), strictly (a named deviation fails too), one GoogleTest per
// (implementation, property): "<implementation>.<op>_<property>". Unsupported properties are
// skipped with the reason. The seed is printed first with the command that replays a failure.
//   MASKCHECK_SEED  fixes the seed (default: random)   MASKCHECK_CASES / MASKCHECK_CI: case count
#include <gtest/gtest.h>

#include <iostream>
#include <random>

#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

mc::VerifyConfig g_config;

class PropertyTest : public testing::Test {
 public:
  PropertyTest(std::shared_ptr<const mc::Implementation> impl, const mc::Property* prop)
      : impl_(std::move(impl)), prop_(prop) {}
  void TestBody() override {
    const mc::PropertyOutcome o = mc::run_property(*impl_, *prop_, g_config);
    switch (o.status) {
      case mc::Status::passed:
        RecordProperty("cases", o.cases);
        return;
      case mc::Status::skipped: {
        std::string why;
        for (const auto& [reason, n] : o.skip_reasons) why += reason + "; ";
        GTEST_SKIP() << why;
      }
      case mc::Status::deviation:  // not with strict; listed for the switch
      case mc::Status::failed:
      case mc::Status::error: {
        std::string ce;
        for (const auto& [type, value] : o.counterexample) ce += "  " + type + ": " + value + "\n";
        FAIL() << o.message << "\nshrunk counterexample:\n" << ce << "replay: " << o.replay;
      }
    }
  }

 private:
  std::shared_ptr<const mc::Implementation> impl_;
  const mc::Property* prop_;
};

std::string sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  try {
    g_config.cases = mc::cases_from_env(100);
    g_config.strict = true;
    g_config.seed = mc::seed_from_env().value_or((std::uint64_t{std::random_device{}()} << 32) ^
                                                 std::random_device{}());
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  std::cout << "maskcheck properties: seed " << g_config.seed << ", " << g_config.cases
            << " cases per property\nreplay: MASKCHECK_SEED=" << g_config.seed
            << " MASKCHECK_CASES=" << g_config.cases << " " << argv[0] << " [--gtest_filter=...]\n"
            << std::flush;
  // maskcheck's own implementations must pass everything; third-party adapters (LibTorch) have
  // findings, checked against their expected verdicts by torch_adapters_test.
  for (const auto& impl : mc::builtin_registry().all())
    for (const auto& prop : mc::property_catalogue()) {
      if (impl->third_party() || !impl->provides(prop.op)) continue;
      const std::string name = sanitize(prop.name);
      testing::RegisterTest(
          sanitize(impl->name()).c_str(), name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
          [impl, p = &prop]() -> testing::Test* { return new PropertyTest(impl, p); });
    }
  return RUN_ALL_TESTS();
}
