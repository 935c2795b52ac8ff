// The mutant catalogue: deliberately broken copies of the reference, each carrying one realistic
// masking bug. The suite's power is measured by running the catalogue against them: every mutant
// must be caught (killed) by at least one property.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck {

struct Mutant {
  std::shared_ptr<const Implementation> impl;  // named "mutant:<id>"
  std::string bug;                             // what is wrong, in one sentence
  Op op;                                       // the operation the bug lives in
  // Cases the catalogue is promised to kill it at under any case budget (0: the run's count).
  // Bugs that only rare draws show (rows of hundreds or thousands of keys, 1 case in 4; a scale
  // of exactly 0, about 1 attention case in 14) are promised at the default 100 cases, not at
  // CI's 30 or ASan's 20.
  int min_cases = 0;
  // The bug lives in a backward with its own entry (attention_backward, cross_entropy_upstream;
  // the rest of the operation is the reference's): the mutant meets that entry's properties only
  // (is_backward_property), and the operation's other mutants meet none of them (their backward
  // is the reference's).
  bool backward = false;
};

// attention.backward.* and cross_entropy.upstream.*: the properties of the backward entries.
inline bool is_backward_property(std::string_view name) {
  return name.starts_with("attention.backward.") || name.starts_with("cross_entropy.upstream.");
}

const std::vector<Mutant>& mutant_catalogue();
Registry mutant_registry();

// The mutant catalogue's plan. Unless the selection names an operation or properties, each mutant
// meets only the properties of the operation its bug lives in (of attention: the backward ones
// or the forward ones, Mutant::backward): its other operations are the reference's and cannot
// fail.
VerifyPlan plan_mutant_verify(const VerifyConfig& config);

// Mutant runs: which properties killed (failed on) each mutant of the catalogue that ran.
struct MutantVerdict {
  std::string name;
  std::string bug;
  std::vector<std::string> killed_by;
  bool killed() const { return !killed_by.empty(); }
};
std::vector<MutantVerdict> mutant_verdicts(const std::vector<PropertyOutcome>& results);

struct KillRate {
  int killed = 0, total = 0;
  bool all() const { return killed == total; }
};
KillRate kill_rate(const std::vector<MutantVerdict>& verdicts);

// The "mutants" and "kill_rate" fields of a verify JSON file (empty when no mutant ran).
nlohmann::json mutants_json(const std::vector<PropertyOutcome>& results);

}  // namespace maskcheck
