// The subcommands of the maskcheck command line, one file each (list.cpp, verify.cpp, eval.cpp,
// bench.cpp, report.cpp); main.cpp parses the flags and dispatches to them.
#pragma once

#include <string>
#include <vector>

#include "maskcheck/reports/compare.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck::cli {

inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// "a,,b" -> {"a", "b"}
std::vector<std::string> split_commas(const std::string& s);

// list: implementations, operations, dtypes, properties (and the mutants).
int cmd_list(const Registry& registry, bool json, bool mutants);

// verify: the plan's properties; the console table, the JSON file, the mutants' verdicts.
int cmd_verify(const VerifyPlan& plan, VerifyConfig config, const std::string& json_path,
               bool quiet, bool mutants);
// Where verify saves counterexamples unless told: beside the --json file, else in the current
// directory.
std::string default_counterexample_dir(const std::string& json_path);
// Adds the plugins at `paths` to the registry (probed in a worker, or loaded here with
// --in-process) and to the run's selection: alone, or beside the implementations of --impl.
void add_plugins(Registry& registry, VerifyConfig& config, const std::vector<std::string>& paths);

// eval: one call of one implementation on a case file.
struct EvalOptions {
  std::string op, impl = "reference", in, out, plugin;
  bool impl_given = false;
  bool quiet = false;
  Budget budget;
};
int cmd_eval(const EvalOptions& o);

// bench: maskcheck_bench beside this executable.
struct BenchOptions {
  std::string filter, json;
  std::vector<std::string> plugins;  // --plugin: libraries timed beside maskcheck's rows
  int repetitions = 5;
  std::string min_time;  // empty: maskcheck_bench's default
  std::vector<std::string> extra;
};
int cmd_bench(const BenchOptions& o);

// report: DIR/report.md and DIR/report.html from result files.
int cmd_report(const std::vector<std::string>& inputs, const std::string& out_dir);
// compare: the CI gate's comparison; Markdown on stdout and in `out` when given.
int cmd_compare(const std::string& baseline, const std::string& next,
                const reports::CompareOptions& options, const std::string* out);

}  // namespace maskcheck::cli
