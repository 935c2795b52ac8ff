// Mutant runs: the catalogue's plan and which properties killed each mutant.
#include "maskcheck/suite/mutants.hpp"

namespace maskcheck {

std::vector<MutantVerdict> mutant_verdicts(const std::vector<PropertyOutcome>& results) {
  std::vector<MutantVerdict> verdicts;
  for (const auto& m : mutant_catalogue()) {
    MutantVerdict v{m.impl->name(), m.bug, {}};
    bool ran = false;
    for (const auto& o : results) {
      if (o.implementation != v.name) continue;
      ran = true;
      if (o.status == Status::failed) v.killed_by.push_back(o.property);
    }
    if (ran) verdicts.push_back(std::move(v));
  }
  return verdicts;
}

VerifyPlan plan_mutant_verify(const VerifyConfig& config) {
  VerifyPlan plan = plan_verify(mutant_registry(), config);
  if (config.op || !config.properties.empty()) return plan;
  std::erase_if(plan.items, [](const auto& item) {
    for (const auto& m : mutant_catalogue())
      if (m.impl == item.first)
        return m.op != item.second->op || !mutant_meets(m, item.second->name);
    return false;
  });
  return plan;
}

KillRate kill_rate(const std::vector<MutantVerdict>& verdicts) {
  KillRate k;
  for (const auto& v : verdicts) k.killed += v.killed();
  k.total = static_cast<int>(verdicts.size());
  return k;
}

nlohmann::json mutants_json(const std::vector<PropertyOutcome>& results) {
  nlohmann::json j = nlohmann::json::object();
  const auto verdicts = mutant_verdicts(results);
  if (verdicts.empty()) return j;
  for (const auto& v : verdicts)
    j["mutants"].push_back(
        {{"name", v.name}, {"bug", v.bug}, {"killed", v.killed()}, {"killed_by", v.killed_by}});
  const KillRate k = kill_rate(verdicts);
  j["kill_rate"] = {{"killed", k.killed}, {"total", k.total}};
  return j;
}

}  // namespace maskcheck
