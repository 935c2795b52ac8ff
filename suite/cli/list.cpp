// maskcheck list: what this build (and the plugins named) can verify.
#include "commands.hpp"

#include <iostream>

#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/plugin_host.hpp"

namespace mc = maskcheck;

namespace maskcheck::cli {
namespace {

std::string join(const std::vector<mc::Op>& ops) {
  std::string s;
  for (auto op : ops) s += (s.empty() ? "" : ",") + std::string(mc::to_string(op));
  return s;
}

std::string dtypes_of(const mc::Implementation& impl, mc::Op op) {
  std::string s;
  for (auto t : impl.dtypes(op)) s += (s.empty() ? "" : ",") + std::string(mc::to_string(t));
  return s;
}

}  // namespace

int cmd_list(const mc::Registry& registry, bool json, bool mutants) {
  if (json) {
    nlohmann::json j;
    j["schema"] = "maskcheck.list/1";
    j["about"] = mc::about_json();
    for (const auto& impl : registry.all()) {
      nlohmann::json ops = nlohmann::json::array();
      for (auto op : impl->ops()) {
        nlohmann::json dts = nlohmann::json::array();
        for (auto t : impl->dtypes(op)) dts.push_back(std::string(mc::to_string(t)));
        ops.push_back({{"op", std::string(mc::to_string(op))}, {"dtypes", dts}});
      }
      nlohmann::json entry = {
          {"name", impl->name()}, {"description", impl->description()}, {"operations", ops}};
      if (const auto* info = mc::plugin::plugin_info(*impl)) entry["plugin"] = info->to_json();
      j["implementations"].push_back(entry);
    }
    for (const auto& p : mc::property_catalogue())
      j["properties"].push_back(
          {{"name", p.name}, {"op", std::string(mc::to_string(p.op))}, {"summary", p.summary}});
    if (mutants)
      for (const auto& m : mc::mutant_catalogue())
        j["mutants"].push_back({{"name", m.impl->name()},
                                {"op", std::string(mc::to_string(m.op))},
                                {"bug", m.bug},
                                {"description", m.impl->description()}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "Implementations:\n";
  for (const auto& impl : registry.all()) {
    std::cout << "  " << impl->name() << "  [" << join(impl->ops()) << "]\n      "
              << impl->description() << "\n";
    for (auto op : impl->ops())
      std::cout << "      " << mc::to_string(op) << ": " << dtypes_of(*impl, op) << "\n";
  }
  std::cout << "\nProperties (" << mc::property_catalogue().size() << "):\n";
  for (const auto& p : mc::property_catalogue())
    std::cout << "  " << p.name << "\n      " << p.summary << "\n";
  if (mutants) {
    std::cout << "\nMutants (" << mc::mutant_catalogue().size() << "):\n";
    for (const auto& m : mc::mutant_catalogue())
      std::cout << "  " << m.impl->name() << "  [" << mc::to_string(m.op) << "] " << m.bug
                << "\n      " << m.impl->description() << "\n";
  }
  return 0;
}

}  // namespace maskcheck::cli
