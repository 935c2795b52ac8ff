// maskcheck verify: runs the plan, prints the table, writes the JSON, judges the mutants.
#include "commands.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/progress.hpp"
#include "maskcheck/suite/recording.hpp"

namespace mc = maskcheck;

namespace maskcheck::cli {
namespace {

// A cell of the console table, in the report's wording (reports::verify_cell).
std::string cell(const mc::PropertyOutcome& o) {
  return mc::reports::verify_cell(mc::outcome_json(o));
}

void print_summary(const std::vector<mc::PropertyOutcome>& results,
                   const mc::VerifyConfig& config) {
  std::vector<std::string> impls, props;
  for (const auto& o : results) {
    if (std::find(impls.begin(), impls.end(), o.implementation) == impls.end())
      impls.push_back(o.implementation);
    if (std::find(props.begin(), props.end(), o.property) == props.end())
      props.push_back(o.property);
  }
  std::size_t w0 = 8;
  for (const auto& p : props) w0 = std::max(w0, p.size());
  std::vector<std::size_t> w(impls.size());
  for (std::size_t i = 0; i < impls.size(); ++i) {
    w[i] = impls[i].size();
    for (const auto& o : results)
      if (o.implementation == impls[i]) w[i] = std::max(w[i], cell(o).size());
  }
  auto pad = [](const std::string& s, std::size_t n) {
    return s + std::string(n > s.size() ? n - s.size() : 0, ' ');
  };
  std::cout << "\n" << pad("property", w0);
  for (std::size_t i = 0; i < impls.size(); ++i) std::cout << "  " << pad(impls[i], w[i]);
  std::cout << "\n" << std::string(w0, '-');
  for (std::size_t i = 0; i < impls.size(); ++i) std::cout << "  " << std::string(w[i], '-');
  std::cout << "\n";
  for (const auto& p : props) {
    std::cout << pad(p, w0);
    for (std::size_t i = 0; i < impls.size(); ++i) {
      std::string c = "-";
      for (const auto& o : results)
        if (o.implementation == impls[i] && o.property == p) c = cell(o);
      std::cout << "  " << pad(c, w[i]);
    }
    std::cout << "\n";
  }
  // Skip reasons, then failures with their shrunk counterexamples.
  bool header = false;
  for (const auto& o : results)
    for (const auto& [reason, n] : o.skip_reasons) {
      if (!header) std::cout << "\nSkipped cases:\n";
      header = true;
      std::cout << "  " << o.implementation << " " << o.property << ": "
                << (n > 0 ? std::to_string(n) + " x " : "") << reason << "\n";
    }
  header = false;
  for (const auto& o : results)
    for (const auto& [name, n] : o.deviations) {
      if (!header)
        std::cout << "\nDeviations (named conventions on which libraries differ; --strict fails "
                     "them):\n";
      header = true;
      std::cout << "  " << o.implementation << " " << o.property << ": " << name << " in " << n
                << " case(s)\n";
    }
  for (const auto& o : results) {
    if (o.status != mc::Status::failed && o.status != mc::Status::error) continue;
    std::cout << "\n"
              << (o.status == mc::Status::failed ? "FAILED " : "ERROR ") << o.implementation << " "
              << o.property << " after " << o.cases << " passing case(s)\n";
    if (!o.counterexample.empty()) {
      std::cout << "  shrunk counterexample:\n";
      for (const auto& [type, value] : o.counterexample)
        std::cout << "    " << type << ": " << value << "\n";
    }
    std::cout << "  " << o.message << "\n  replay: " << o.replay << "\n";
    if (o.failed_chunks.size() > 1) {
      std::string more;
      for (std::size_t i = 1; i < o.failed_chunks.size(); ++i)
        more += (i > 1 ? ", " : "") + std::to_string(o.failed_chunks[i]);
      std::cout << "  also failed in chunk(s) " << more
                << " (replay one with --chunk J instead of --chunk " << o.failed_chunks.front()
                << ")\n";
    }
    if (!o.counterexample_files.empty()) {
      std::string target = "--impl " + o.implementation;
      for (const auto& p : config.plugins)
        if (p.impl == o.implementation) target += " --plugin " + p.path;
      std::cout << "  counterexample files (replay: maskcheck eval " << mc::to_string(o.op) << " "
                << target << " --in FILE --out RESULT):\n";
      for (const auto& f : o.counterexample_files) std::cout << "    " << f << "\n";
    }
  }
}

// The plugins a plan runs, once each, in order.
std::vector<std::shared_ptr<const mc::Implementation>> plugins_of(const mc::VerifyPlan& plan) {
  std::vector<std::shared_ptr<const mc::Implementation>> out;
  for (const auto& item : plan.items)
    if (mc::plugin::plugin_info(*item.first) &&
        std::find(out.begin(), out.end(), item.first) == out.end())
      out.push_back(item.first);
  return out;
}

}  // namespace

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t c = std::min(s.find(',', pos), s.size());
    if (c > pos) out.push_back(s.substr(pos, c - pos));
    pos = c + 1;
  }
  return out;
}

std::string default_counterexample_dir(const std::string& json_path) {
  if (json_path.empty()) return "maskcheck-counterexamples";
  const auto parent = std::filesystem::path(json_path).parent_path();
  return (parent / "counterexamples").string();
}

int cmd_verify(const mc::VerifyPlan& plan, mc::VerifyConfig config, const std::string& json_path,
               bool quiet, bool mutants) {
  if (plan.items.empty() && !config.shard)
    throw mc::InvalidArgument("selection", "empty", "no property matches the selection");
  std::cout << "maskcheck verify: seed " << config.seed << ", " << config.cases
            << " cases per property, " << plan.items.size() << " properties, size "
            << mc::to_string(config.size);
  if (config.shard)
    std::cout << ", shard " << config.shard->index << "/" << config.shard->count
              << " (its share of the chunks of up to " << mc::kChunkCases << " cases)";
  if (config.chunk) std::cout << ", chunk " << *config.chunk;
  std::cout << "\nreplay: " << mc::replay_command(config) << "\n";
  // The counterexample directory is claimed now (concurrent runs get their own, see
  // recording.hpp) and removed at the end when this run created it and left it empty.
  std::vector<std::string> created_dirs;
  if (!config.counterexample_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(config.counterexample_dir, ec))
      created_dirs.push_back(config.counterexample_dir);
    const std::string dir = mc::claim_counterexample_dir(config.counterexample_dir);
    if (dir != config.counterexample_dir) {
      created_dirs.insert(created_dirs.begin(), dir);
      std::cout << "counterexamples: " << config.counterexample_dir
                << " is in use by another maskcheck verify; this run saves its files in " << dir
                << "\n";
    }
    config.counterexample_dir = dir;
  }
  const auto plugins = plugins_of(plan);
  for (const auto& impl : plugins) std::cout << impl->name() << ": " << impl->description() << "\n";
  std::cout << std::flush;
  // Plugins run in worker processes, unless --in-process loaded them here.
  const mc::PropertyRunner runner = config.plugins.empty() || config.in_process
                                        ? mc::PropertyRunner{}
                                        : mc::plugin::run_property_isolated;
  const auto start = std::chrono::steady_clock::now();
  // Property k of n with the time left: a status line on a terminal, plain lines in a log.
  mc::Progress progress("properties", plan.items.size(), stderr);
  const auto results = mc::run_verify(
      plan, config,
      [&](std::size_t i, std::size_t n, const mc::PropertyOutcome& o) {
        progress.clear();
        if (!quiet || o.status != mc::Status::passed) {
          fmt::print("[{:>3}/{}] {:<8} {:<12} {:<48} {:>5} cases {:>6.2f}s  ({})\n", i + 1, n,
                     mc::to_string(o.status), o.implementation, o.property, o.cases, o.seconds,
                     progress.timing(i + 1));
          std::fflush(stdout);
        }
        progress.update(i + 1, o.implementation + " " + o.property);
      },
      runner);
  progress.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& dir : created_dirs) {  // innermost first; remove() only takes empty ones
    std::error_code ec;
    std::filesystem::remove(dir, ec);
  }
  print_summary(results, config);
  int failed = 0, errors = 0, passed = 0, skipped = 0, deviations = 0;
  for (const auto& o : results) {
    failed += o.status == mc::Status::failed;
    errors += o.status == mc::Status::error;
    passed += o.status == mc::Status::passed;
    skipped += o.status == mc::Status::skipped;
    deviations += o.status == mc::Status::deviation;
  }
  std::cout << "\n"
            << passed << " passed, " << deviations << " passed with named deviations, " << failed
            << " failed, " << errors << " errors, " << skipped << " skipped in "
            << static_cast<int>(seconds) << "s (seed " << config.seed
            << (config.strict ? ", strict" : "") << ")\n";
  if (!json_path.empty()) {
    nlohmann::json doc = mc::verify_json(config, results, seconds);
    doc.update(mc::mutants_json(results));
    doc["about"].update(mc::builtin_environment());
    for (const auto& impl : plugins)
      doc["plugins"].push_back(mc::plugin::plugin_info(*impl)->to_json());
    mc::write_json_atomic(json_path, doc);
    std::cout << "wrote " << json_path << "\n";
  }
  if (mutants) {
    // Against mutants a failure is the goal: the run passes when every mutant is killed.
    const auto verdicts = mc::mutant_verdicts(results);
    std::cout << "\nMutants (killed: caught by at least one property):\n";
    for (const auto& v : verdicts) {
      std::cout << "  " << (v.killed() ? "killed   " : "SURVIVED ") << v.name << ": " << v.bug
                << "\n";
      std::string by;
      for (const auto& p : v.killed_by) by += (by.empty() ? "" : ", ") + p;
      std::cout << "           " << (v.killed() ? "by " + by : "by no property") << "\n";
    }
    const mc::KillRate k = mc::kill_rate(verdicts);
    fmt::print("Kill rate: {}/{} ({:.0f} %)\n", k.killed, k.total,
               k.total > 0 ? 100.0 * k.killed / k.total : 100.0);
    return errors == 0 && k.all() ? 0 : kExitFailed;
  }
  return failed + errors > 0 ? kExitFailed : 0;
}

void add_plugins(mc::Registry& registry, mc::VerifyConfig& config,
                 const std::vector<std::string>& paths) {
  std::vector<std::string> names;
  for (const auto& given : paths) {
    std::error_code ec;
    const std::string path = std::filesystem::absolute(given, ec).string();
    auto impl = config.in_process ? mc::plugin::load_plugin(path)
                                  : mc::plugin::isolated_plugin(mc::plugin::probe_plugin(
                                        path, config.plugin_timeout, config.plugin_memory));
    if (registry.find(impl->name()))
      throw mc::InvalidArgument("--plugin", given,
                                "its name " + impl->name() + " is taken by another implementation");
    registry.add(impl);
    config.plugins.push_back({impl->name(), path});
    names.push_back(impl->name());
  }
  auto selected = split_commas(config.impls);
  for (const auto& n : names)
    if (std::find(selected.begin(), selected.end(), n) == selected.end()) selected.push_back(n);
  config.impls.clear();
  for (const auto& n : selected) config.impls += (config.impls.empty() ? "" : ",") + n;
}

}  // namespace maskcheck::cli
