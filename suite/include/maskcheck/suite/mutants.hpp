// The mutant catalogue: deliberately broken copies of the reference, each carrying one realistic
// masking bug. The suite's power is measured by running the catalogue against them: every mutant
// must be caught (killed) by at least one property.
#pragma once

#include <memory>
#include <string>
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
  // The bug lives in attention backward (the forward is the reference's): the mutant meets the
  // attention.backward.* properties only, and the forward attention mutants meet none of them
  // (their backward is the reference's).
  bool backward = false;
};

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
