// The suite's power: every mutant in the catalogue must be caught by the property catalogue.
#include <gtest/gtest.h>

#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

class MutantTest : public testing::TestWithParam<std::size_t> {};

TEST_P(MutantTest, isKilledByTheCatalogue) {
  const mc::Mutant& m = mc::mutant_catalogue()[GetParam()];
  mc::VerifyConfig config;
  config.cases = mc::cases_from_env(100);
  config.seed = mc::seed_from_env().value_or(20261123);
  config.op = m.op;
  std::vector<std::string> killers;
  for (const auto& prop : mc::property_catalogue()) {
    if (prop.op != m.op) continue;
    const auto o = mc::run_property(*m.impl, prop, config);
    ASSERT_NE(o.status, mc::Status::error) << o.message;
    if (o.status == mc::Status::failed) killers.push_back(prop.name);
  }
  EXPECT_FALSE(killers.empty()) << m.impl->name() << " (" << m.bug << ") survived every "
                                << mc::to_string(m.op) << " property; seed " << config.seed;
  std::string list;
  for (const auto& k : killers) list += " " + k;
  RecordProperty("killed_by", list);
}

// The three bugs the foundation must catch are in the catalogue.
TEST(MutantCatalogue, holdsTheRequiredBugs) {
  std::vector<std::string> names;
  for (const auto& m : mc::mutant_catalogue()) names.push_back(m.impl->name());
  for (const char* required :
       {"mutant:causal-off-by-one", "mutant:ignored-labels-in-mean", "mutant:padding-on-queries"})
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end()) << required;
}

INSTANTIATE_TEST_SUITE_P(Catalogue, MutantTest,
                         testing::Range<std::size_t>(0, mc::mutant_catalogue().size()),
                         [](const testing::TestParamInfo<std::size_t>& param) {
                           std::string n =
                               mc::mutant_catalogue()[param.param].impl->name().substr(7);
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
