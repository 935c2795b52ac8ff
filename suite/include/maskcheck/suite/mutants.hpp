// The mutant catalogue: deliberately broken copies of the reference, each carrying one realistic
// masking bug. The suite's power is measured by running the catalogue against them: every mutant
// must be caught (killed) by at least one property.
#pragma once

#include <cstdint>
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
  // The entry its bug lives in. A bug in an entry of its own (a backward: attention_backward,
  // cross_entropy_upstream; attention_paged; attention_chunk), the rest of the operation being the
  // reference's, meets only the properties that call that entry (entry_of_property): the others
  // cannot fail on it. The operation's other mutants (Entry::main) meet every property of the
  // operation but the backward ones (their backward is the reference's; the paged and split
  // properties also call their forward).
  enum class Entry : std::uint8_t { main, backward, paged, chunk };
  Entry entry = Entry::main;
};

// The entry of its own a property calls: attention.backward.* and cross_entropy.upstream.* the
// backward entries, attention.pagedEqualsContiguous attention_paged,
// attention.splitKvMergesToUnsplit attention_chunk; Entry::main for the others.
inline Mutant::Entry entry_of_property(std::string_view name) {
  if (name.starts_with("attention.backward.") || name.starts_with("cross_entropy.upstream."))
    return Mutant::Entry::backward;
  if (name == "attention.pagedEqualsContiguous") return Mutant::Entry::paged;
  if (name == "attention.splitKvMergesToUnsplit") return Mutant::Entry::chunk;
  return Mutant::Entry::main;
}
// Whether mutant m meets property `name` of its operation.
inline bool mutant_meets(const Mutant& m, std::string_view name) {
  const Mutant::Entry e = entry_of_property(name);
  return m.entry == Mutant::Entry::main ? e != Mutant::Entry::backward : e == m.entry;
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
