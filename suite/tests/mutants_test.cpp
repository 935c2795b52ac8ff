// The suite's power: every mutant in the catalogue must be caught by the property catalogue.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/runner.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace mc = maskcheck;

namespace {

class MutantTest : public testing::TestWithParam<std::size_t> {};

TEST_P(MutantTest, isKilledByTheCatalogue) {
  const mc::Mutant& m = mc::mutant_catalogue()[GetParam()];
  mc::VerifyConfig config;
  config.cases = std::max(mc::cases_from_env(100), m.min_cases);
  config.seed = mc::seed_from_env().value_or(20261123);
  config.op = m.op;
  config.strict = true;  // as verify --mutants: a named deviation kills a mutant too
  // The first property that kills the mutant is enough for the test (and saves most of its
  // time: most mutants fall to the first property of their operation); MASKCHECK_ALL_KILLERS=1
  // runs every property and records each killer (the killed_by property of the test's XML).
  const char* all_env = std::getenv("MASKCHECK_ALL_KILLERS");
  const bool all = all_env != nullptr && std::string(all_env) == "1";
  std::vector<std::string> killers;
  for (const auto& prop : mc::property_catalogue()) {
    if (prop.op != m.op || !mc::mutant_meets(m, prop.name)) continue;  // as verify --mutants
    const auto o = mc::run_property(*m.impl, prop, config);
    ASSERT_NE(o.status, mc::Status::error) << o.message;
    if (o.status == mc::Status::failed) killers.push_back(prop.name);
    if (!killers.empty() && !all) break;
  }
  EXPECT_FALSE(killers.empty()) << m.impl->name() << " (" << m.bug << ") survived every "
                                << mc::to_string(m.op) << " property; seed " << config.seed;
  std::string list;
  for (const auto& k : killers) list += " " + k;
  RecordProperty("killed_by", list);
}

// The catalogue holds at least 20 mutants, among them every bug the suite promises to catch,
// each named "mutant:<id>" with a one-sentence bug and a description of its mechanism.
TEST(MutantCatalogue, holdsTheRequiredBugs) {
  const auto& catalogue = mc::mutant_catalogue();
  EXPECT_GE(catalogue.size(), 20u);
  std::vector<std::string> names;
  for (const auto& m : catalogue) {
    const std::string name = m.impl->name();
    EXPECT_EQ(name.rfind("mutant:", 0), 0u) << name;
    EXPECT_EQ(std::count(names.begin(), names.end(), name), 0) << "duplicate " << name;
    EXPECT_FALSE(m.bug.empty()) << name;
    EXPECT_FALSE(m.impl->description().empty()) << name;
    EXPECT_TRUE(m.impl->provides(m.op)) << name;
    names.push_back(name);
  }
  for (const char* required : {
           "mutant:mask-after-softmax",           // mask applied after softmax
           "mutant:causal-off-by-one",            // causal diagonal off by one
           "mutant:top-left-causal",              // top-left vs bottom-right when Lq != Lk
           "mutant:padding-on-queries",           // padding mask on queries only
           "mutant:additive-1e4-mask",            // -1e4 mask in fp16 with large logits
           "mutant:finite-min-sum",               // finite-min + finite-min overflow to -inf
           "mutant:online-max-clamped-to-zero",   // first tile fully masked, running max 0
           "mutant:window-off-by-one",            // window off by one
           "mutant:ignored-labels-in-mean",       // ignored labels in the denominator
           "mutant:ignored-gradient-not-zeroed",  // gradient not zeroed for ignored rows
           "mutant:smoothing-on-ignored-rows",    // label smoothing applied to ignored rows
           "mutant:pad-eos-label-masking",        // pad == eos label masking
           "mutant:mlm-selects-special-tokens",   // MLM selecting special tokens ...
           "mutant:mlm-selects-padding",          // ... or pads
           "mutant:mlm-wrong-split",              // a wrong 80/10/10 split
           "mutant:mlm-shared-rng-stream",        // one RNG stream shared by all sequences
           "mutant:seqlen-k-off-by-one",          // lengths off by one
           "mutant:left-padding-as-right",        // left padding treated as right
           "mutant:gqa-head-modulo",              // GQA head mapping wrong
           "mutant:nan-lse-empty-rows",           // NaN LSE on empty rows
           "mutant:documents-leak",               // packed documents leaking across boundaries
       })
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

// The accumulation claim of the catalogue, on one fixed case: bf16 storage, one query over 2048
// keys, same-sign values. Accumulating P.V in the storage dtype fails the tolerance
// agreesWithReference applies; maskcheck's CPU kernel (f32 accumulation) meets it.
TEST(Accumulation, storageDtypeOver2048KeysFailsAndF32AccumulationPasses) {
  mc::AttentionProblem p;
  p.mask.B = 1;
  p.mask.Lq = 1;
  p.mask.Lk = 2048;
  p.H = p.Hkv = 1;
  p.D = 16;
  const auto t = mc::DType::bf16;
  std::vector<double> q(static_cast<std::size_t>(p.q_numel())), k(p.kv_numel()), v(p.kv_numel());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = mc::round_to(t, 0.25 * std::sin(0.7 * i));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = mc::round_to(t, std::cos(1.3 * i));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = mc::round_to(t, 1.0 + 0.5 * std::sin(0.1 * i));
  const auto e = mc::attention_expectation(p, t, q, k, v, false);
  auto check = [&](const mc::Implementation& impl) {
    return mc::check_close("out", mc::attention_out_shape(p),
                           impl.attention(p, t, q, k, v, false).out, e.want.out, e.naive.out, t,
                           e.rounding.out);
  };
  const auto mutant = mc::mutant_registry().find("mutant:pv-in-storage");
  ASSERT_NE(mutant, nullptr);
  EXPECT_FALSE(check(*mutant).ok);
  const auto cpu = mc::builtin_registry().find("cpu");
  ASSERT_NE(cpu, nullptr);
  const auto r = check(*cpu);
  EXPECT_TRUE(r.ok) << r.report();
}
