// maskcheck: verify implementations of masked sequence-model operations against the reference
// and write reports.
//   maskcheck list [--json] [--mutants] [--plugin LIB.so]...
//   maskcheck verify [--impl a,b] [--op OP] [--property P,...] [--cases N] [--seed S] [--json FILE]
//                    [--strict] [--mutants] [--counterexamples DIR | --no-counterexamples]
//                    [--plugin LIB.so]... [--plugin-timeout S] [--plugin-memory SIZE]
//                    [--in-process]
//   maskcheck eval OP [--impl NAME] [--plugin LIB.so] --in CASE.safetensors
//                  [--out RESULT.safetensors] [--quiet] [--max-memory SIZE] [--max-work N]
//   maskcheck report RESULTS.json... --out DIR      (writes DIR/report.md and DIR/report.html)
//   maskcheck bench [--filter RE] [--json FILE] [--repetitions N] [--min-time S] [-- ARGS...]
//   maskcheck compare BASELINE NEW [--max-slowdown 5%] [--alpha 0.05] [--gate RE] [--out FILE]
// Exit codes: 0 everything passed (named deviations included, unless --strict), 1 a property
// failed, 2 usage or input error (bench: the exit code of maskcheck_bench, 1 when a maskcheck
// kernel mismatched before timing, 2 when the filter matches no benchmark; eval: 0 ran and wrote
// the result, 1 the implementation threw on a valid case, 2 unreadable or invalid case, wrong OP,
// or a case the implementation does not support, or one above --max-memory / --max-work; compare:
// 0 no regression, 1 a benchmark or property regressed, 2 unreadable or mismatched inputs, bad
// flag values). Inputs must be regular files and outputs plain paths (maskcheck/suite/io.hpp).
// `--plugin` loads a library implementing maskcheck/plugin.h (in a child process: see
// suite/plugin/include/maskcheck/suite/plugin_host.hpp); `maskcheck plugin-worker` is that child,
// a hidden subcommand.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <regex>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reports/compare.hpp"
#include "maskcheck/reports/html.hpp"
#include "maskcheck/reports/markdown.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/progress.hpp"
#include "maskcheck/suite/recording.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

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

std::string cell(const mc::PropertyOutcome& o) {
  switch (o.status) {
    case mc::Status::passed:
      return o.skipped_cases > 0 ? "pass " + std::to_string(o.cases) + " (" +
                                       std::to_string(o.skipped_cases) + " skip)"
                                 : "pass " + std::to_string(o.cases);
    case mc::Status::failed:
      return "FAIL";
    case mc::Status::skipped:
      return "skip";
    case mc::Status::error:
      return "ERROR";
    case mc::Status::deviation: {
      std::string names;
      for (const auto& [name, n] : o.deviations) names += (names.empty() ? "" : ",") + name;
      return "pass " + std::to_string(o.cases) + " dev " + names;
    }
  }
  return "?";
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

// Where verify saves counterexamples unless told: beside the --json file, else in the current
// directory.
std::string default_counterexample_dir(const std::string& json_path) {
  if (json_path.empty()) return "maskcheck-counterexamples";
  const auto parent = std::filesystem::path(json_path).parent_path();
  return (parent / "counterexamples").string();
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

int cmd_verify(const mc::VerifyPlan& plan, mc::VerifyConfig config, const std::string& json_path,
               bool quiet, bool mutants) {
  if (plan.items.empty())
    throw mc::InvalidArgument("selection", "empty", "no property matches the selection");
  std::cout << "maskcheck verify: seed " << config.seed << ", " << config.cases
            << " cases per property, " << plan.items.size() << " properties\n"
            << "replay: " << mc::replay_command(config) << "\n";
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

// ---- eval: one operation of one implementation on the tensors of a case file -----------------

struct EvalOptions {
  std::string op, impl = "reference", in, out, plugin;
  bool impl_given = false;
  bool quiet = false;
  mc::Budget budget;
};

// Built-in implementations and the mutants (mutant:<id>).
std::shared_ptr<const mc::Implementation> find_implementation(const std::string& name) {
  if (auto impl = mc::builtin_registry().find(name)) return impl;
  const mc::Registry mutants = mc::mutant_registry();
  if (auto impl = mutants.find(name)) return impl;
  if (name.rfind("plugin:", 0) == 0)
    throw mc::InvalidArgument("--impl", name, "a plugin: name its library with --plugin LIB.so");
  std::string known;
  for (const auto& i : mc::builtin_registry().all())
    known += (known.empty() ? "" : ", ") + i->name();
  throw mc::InvalidArgument(
      "--impl", name,
      "unknown implementation; known: " + known + " and the mutants of maskcheck list --mutants");
}

// "F32[1, 2]" and, for small tensors, the values.
std::string preview(const mc::safetensors::Tensor& t) {
  std::string s = t.describe();
  if (t.numel() > 16) return s;
  std::vector<std::string> values;
  if (mc::safetensors::is_floating(t.dtype)) {
    for (double x : mc::safetensors::to_doubles(t, "")) values.push_back(fmt::format("{:.6g}", x));
  } else {
    for (std::int64_t x : mc::safetensors::to_int64(t, "")) values.push_back(std::to_string(x));
  }
  if (t.shape.empty()) return s + " = " + values.front();
  std::string joined;
  for (const auto& v : values) joined += (joined.empty() ? "" : ", ") + v;
  return s + " = [" + joined + "]";
}

int cmd_eval(const EvalOptions& o) {
  const mc::Op op = mc::op_from_string(o.op);
  if (!o.out.empty()) mc::check_output_path(o.out, "--out", o.in);
  // The memory a case needs is known before it runs: the file (its bytes, then its tensors), the
  // tensors as doubles, then the call (limits.hpp). Above the budget: exit 2 with the figure.
  const double max_memory = static_cast<double>(o.budget.max_memory);
  if (std::error_code ec;
      std::filesystem::is_regular_file(o.in, ec) &&
      2.0 * static_cast<double>(std::filesystem::file_size(o.in, ec)) > max_memory)
    throw mc::InvalidArgument(
        o.in,
        "a file of " + mc::format_bytes(static_cast<double>(std::filesystem::file_size(o.in, ec))),
        "reading it needs twice its size, above the budget --max-memory " +
            mc::format_bytes(max_memory) + "; raise it to run the case");
  // A plugin runs in this process here: one call, nothing else to protect.
  const auto impl = o.plugin.empty() ? find_implementation(o.impl)
                                     : mc::plugin::load_plugin(std::filesystem::absolute(o.plugin));
  if (!o.plugin.empty() && o.impl_given && o.impl != impl->name())
    throw mc::InvalidArgument("--impl", o.impl, "the library of --plugin is " + impl->name());
  const auto file = mc::safetensors::read_file(o.in, o.budget.max_memory / 2);
  double held = 0;  // the file's tensors, kept for the metadata of the result
  for (const auto& [name, t] : file.tensors) held += static_cast<double>(t.bytes.size());
  mc::check_budget({held + mc::decoded_bytes(file), 0}, o.budget, o.in);
  if (const auto it = file.metadata.find(mc::kMetaOp);
      it != file.metadata.end() && it->second != mc::to_string(op)) {
    std::cerr << "maskcheck: " << o.in << " holds a " << it->second << " case, not " << o.op
              << " (maskcheck eval " << it->second << " runs it)\n";
    return kExitUsage;
  }
  const mc::CallInputs in = mc::decode_case(file, o.in);
  try {
    mc::validate_call(in);
  } catch (const mc::InvalidArgument& e) {
    std::cerr << "maskcheck: " << o.in << " is not a valid " << mc::to_string(mc::call_of(in))
              << " case: " << e.what() << "\n";
    return kExitUsage;
  }
  mc::CallCost cost = mc::cost_of(in);
  cost.bytes += held;
  mc::check_budget(cost, o.budget, o.in);
  if (const mc::Support s = mc::supports_call(*impl, in); !s) {
    std::cerr << "maskcheck: " << impl->name() << " does not support this case: " << s.reason
              << "\n";
    return kExitUsage;
  }
  mc::CallResult r;
  try {
    r = mc::run_call(*impl, in);
  } catch (const std::exception& e) {
    std::cerr << "maskcheck: " << impl->name() << " failed on " << o.in << ": " << e.what() << "\n";
    return kExitFailed;
  }
  std::vector<std::string> notes;
  mc::safetensors::File result;
  result.tensors = mc::result_tensors(in, r, "", &notes);
  const auto meta = mc::encode_case(in).metadata;  // the case as this run read it
  for (const auto& key :
       {mc::kMetaOp, mc::kMetaCall, mc::kMetaDtype, mc::kMetaProblem, mc::kMetaOptions}) {
    if (const auto it = meta.find(key); it != meta.end()) result.metadata[key] = it->second;
  }
  result.metadata[mc::kMetaFormat] = std::string(mc::kResultFormat);
  result.metadata["maskcheck.implementation"] = impl->name();
  result.metadata["maskcheck.input"] = o.in;
  result.metadata["maskcheck.version"] = mc::about_json()["maskcheck"].get<std::string>();
  result.metadata["maskcheck.commit"] = mc::git_commit();
  for (const auto& n : notes) std::cerr << "maskcheck: note: " << n << "\n";
  if (!o.out.empty()) mc::safetensors::write_file(o.out, result);
  if (!o.quiet) {
    const std::string call(mc::to_string(mc::call_of(in)));
    std::cout << "maskcheck eval " << o.op << (call != o.op ? " (" + call + ")" : "") << " --impl "
              << impl->name() << " --in " << o.in
              << "\n  problem: " << result.metadata[mc::kMetaProblem] << "\n";
    if (const auto it = result.metadata.find(mc::kMetaDtype); it != result.metadata.end())
      std::cout << "  dtype: " << it->second << "\n";
    for (const auto& [name, t] : result.tensors)
      std::cout << "  " << name << ": " << preview(t) << "\n";
    if (!o.out.empty()) std::cout << "wrote " << o.out << "\n";
  }
  return 0;
}

// ---- bench: runs maskcheck_bench, the benchmark binary built next to this executable ----------

struct BenchOptions {
  std::string filter, json;
  int repetitions = 5;
  std::string min_time;  // empty: maskcheck_bench's default
  std::vector<std::string> extra;
};

volatile std::sig_atomic_t g_bench_signal = 0;
extern "C" void note_bench_signal(int sig) {
  g_bench_signal = sig;
}

std::filesystem::path bench_binary() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot resolve /proc/self/exe: " + ec.message());
  return self.parent_path() / "maskcheck_bench";
}

// Forks and execs maskcheck_bench with `args` (its output goes straight to ours) and waits for
// it. SIGINT and SIGTERM reach the child (same process group) while this process only notes
// them, so that it can clean up after the child is gone. Returns the child's exit code, or
// 128 + signal when it was killed.
int run_child(const std::filesystem::path& bin, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  struct sigaction note = {};
  struct sigaction old_int = {};
  struct sigaction old_term = {};
  note.sa_handler = note_bench_signal;
  sigemptyset(&note.sa_mask);
  sigaction(SIGINT, nullptr, &old_int);
  sigaction(SIGTERM, nullptr, &old_term);
  // A signal this process was told to ignore (a background job's SIGINT) stays ignored by both.
  if (old_int.sa_handler != SIG_IGN) sigaction(SIGINT, &note, nullptr);
  if (old_term.sa_handler != SIG_IGN) sigaction(SIGTERM, &note, nullptr);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Handled signals are reset to their default by exec; restore them explicitly anyway.
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    ::execv(bin.c_str(), argv.data());
    std::fprintf(stderr, "maskcheck: cannot run %s: %s\n", bin.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int status = 0, rc = kExitUsage;
  if (pid < 0) {
    std::cerr << "maskcheck: cannot start " << bin.string() << ": " << std::strerror(errno) << "\n";
  } else {
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno == EINTR) continue;  // a noted signal: the child got it too
      status = -1;
      break;
    }
    if (status == -1)
      rc = kExitFailed;
    else if (WIFEXITED(status))
      rc = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      rc = 128 + WTERMSIG(status);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return rc;
}

int cmd_bench(const BenchOptions& o) {
  namespace fs = std::filesystem;
  const fs::path bin = bench_binary();
  if (!fs::exists(bin)) {
    std::cerr << "maskcheck: the benchmark binary " << bin.string()
              << " is missing: build the maskcheck_bench target (MASKCHECK_BUILD_BENCHMARKS=ON), "
                 "which puts it next to maskcheck\n";
    return kExitUsage;
  }
  if (!o.filter.empty()) {
    try {
      std::regex re(o.filter, std::regex::extended);
    } catch (const std::regex_error& e) {
      throw mc::InvalidArgument("--filter", o.filter,
                                std::string("not a regular expression: ") + e.what());
    }
  }
  std::vector<std::string> args{bin.string()};
  if (!o.filter.empty()) args.push_back("--benchmark_filter=" + o.filter);
  args.push_back("--benchmark_repetitions=" + std::to_string(o.repetitions));
  // The console shows the aggregates (median, mean, stddev, cv); the JSON keeps every repetition
  // too, for a significance test against a baseline.
  if (o.repetitions > 1) args.push_back("--benchmark_display_aggregates_only=true");
  if (!o.min_time.empty())
    args.push_back(
        fmt::format("--benchmark_min_time={}", mc::parse_positive(o.min_time, "--min-time")));
  // The JSON goes to a temporary file beside the target and is renamed into place only when the
  // run finished and wrote valid JSON: an interrupted run never replaces a good file.
  std::string tmp;
  if (!o.json.empty()) {
    const fs::path target(o.json);
    if (target.has_parent_path()) {
      std::error_code ec;
      fs::create_directories(target.parent_path(), ec);
      if (ec)
        throw std::runtime_error("cannot create directory " + target.parent_path().string() + ": " +
                                 ec.message());
    }
    mc::remove_stale_temp_files(o.json);
    tmp = mc::temp_path_for(o.json);
    args.push_back("--benchmark_out=" + tmp);
    args.push_back("--benchmark_out_format=json");
  }
  args.insert(args.end(), o.extra.begin(), o.extra.end());
  std::string line;
  for (const auto& a : args) line += (line.empty() ? "" : " ") + a;
  std::cout << "maskcheck bench: " << line << std::endl;

  const int rc = run_child(bin, args);
  if (tmp.empty()) return rc;
  std::error_code ec;
  // 0: all results matched; 1: a maskcheck row mismatched, the results are still complete.
  const bool finished = (rc == 0 || rc == kExitFailed) && g_bench_signal == 0;
  std::string why;
  bool matched_nothing = false;
  if (!finished) {
    why = g_bench_signal != 0 ? "interrupted"
          : rc == kExitUsage
              ? "maskcheck_bench ran nothing (no benchmark matched the filter, or it did not know "
                "an argument)"
              : "maskcheck_bench exited with " + std::to_string(rc);
  } else if (!fs::exists(tmp, ec) || fs::file_size(tmp, ec) == 0) {
    why = "maskcheck_bench wrote no results (no benchmark matched the filter?)";
    matched_nothing = rc == 0;
  } else {
    try {
      const nlohmann::json j = mc::read_json_file(tmp);
      if (!j.contains("benchmarks") || !j.contains("context"))
        why = "maskcheck_bench's output is not Google Benchmark JSON";
    } catch (const std::exception& e) {
      why = e.what();
    }
  }
  if (!why.empty()) {
    fs::remove(tmp, ec);
    std::cerr << "maskcheck: " << why << "; " << o.json << " left unchanged\n";
    // A filter that matches nothing is a usage error, like a bad regular expression.
    return matched_nothing ? kExitUsage : (rc != 0 ? rc : kExitFailed);
  }
  if (const int fd = ::open(tmp.c_str(), O_RDONLY); fd >= 0) {  // on disk before the rename
    ::fsync(fd);
    ::close(fd);
  }
  mc::check_output_path(o.json, "--json");  // still a plain path after the run
  fs::rename(tmp, o.json, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot replace " + o.json + ": " + ec.message());
  }
  std::cout << "wrote " << o.json << "\n";
  return rc;
}

// `report`: both pages are rendered before either is written, and they are replaced together
// (write_files_atomic: both temporary files written first, the renames shielded from SIGINT,
// SIGTERM, SIGHUP and SIGQUIT), so that a bad input, a failed render or an interrupt leaves no
// half-written report, nor a Markdown page beside a stale HTML one.
int cmd_report(const std::vector<std::string>& inputs, const std::string& out_dir) {
  if (out_dir.empty())
    throw mc::InvalidArgument("--out", "''", "must name a directory for report.md and report.html");
  const std::string md_path = out_dir + "/report.md", html_path = out_dir + "/report.html";
  for (const auto& p : {md_path, html_path}) {
    mc::check_output_path(p, "--out");
    for (const auto& in : inputs) mc::check_output_path(p, "--out", in);
  }
  std::vector<nlohmann::json> docs;
  for (const auto& path : inputs) {
    docs.push_back(mc::read_json_file(path));
    mc::reports::doc_kind(docs.back(), path);  // names the file that is neither kind
  }
  const std::string md = mc::reports::markdown_report(docs);
  mc::reports::HtmlOptions html_options;
  html_options.sources = inputs;
  html_options.out_dir = out_dir;
  std::error_code ec;
  html_options.cwd = std::filesystem::current_path(ec);
  html_options.generated = mc::utc_now_iso8601();
  const std::string html = mc::reports::html_report(docs, html_options);
  mc::write_files_atomic({{md_path, md}, {html_path, html}});
  std::cout << "wrote " << out_dir << "/report.md and " << out_dir << "/report.html\n";
  return 0;
}

// Adds the plugins at `paths` to the registry (probed in a worker, or loaded here with
// --in-process) and to the run's selection: alone, or beside the implementations of --impl.
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "maskcheck: property-based verification of masked attention, softmax, "
      "cross-entropy and MLM masking"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       std::string(mc::about_json()["maskcheck"]) + " (" + mc::git_commit() + ")");

  auto* list =
      app.add_subcommand("list", "list implementations, their operations and the properties");
  bool list_json = false, list_mutants = false;
  std::vector<std::string> list_plugins;
  list->add_flag("--json", list_json, "print JSON");
  list->add_flag("--mutants", list_mutants, "include the mutant catalogue");
  list->add_option("--plugin", list_plugins,
                   "also list this plugin library (maskcheck/plugin.h); repeatable");

  auto* verify =
      app.add_subcommand("verify", "check implementations against the property catalogue");
  std::string impls, op, properties, json_path;
  int cases = 0, max_size = 100;
  std::string seed_text;
  bool no_shrink = false, quiet = false, mutants = false;
  verify->add_option(
      "--impl", impls,
      "implementations, comma-separated: names, own (maskcheck's), third-party "
      "(LibTorch adapters), prefixes such as torch:*, mutant:<id> (default: all built in)");
  verify->add_option(
      "--op", op, "only this operation: masks, softmax, attention, cross_entropy, lm_labels, mlm");
  verify->add_option("--property", properties, "only these properties, comma-separated");
  verify->add_option("--cases", cases, "cases per property (default 100, or MASKCHECK_CASES)")
      ->check(CLI::Range(1, 1000000));
  auto* seed_opt = verify->add_option(
      "--seed", seed_text,
      "seed of the run, an unsigned 64-bit decimal integer (default: MASKCHECK_SEED or random)");
  verify->add_option("--max-size", max_size, "largest rapidcheck size (default 100)")
      ->check(CLI::Range(0, 10000));
  verify->add_flag("--no-shrink", no_shrink, "report the first failing case without shrinking it");
  verify->add_flag("--quiet", quiet, "print only failures and the summary");
  verify->add_flag("--mutants", mutants,
                   "run against the mutant catalogue instead of the built-in implementations");
  verify->add_option("--json", json_path, "write the results as JSON to FILE");
  bool strict = false;
  verify->add_flag("--strict", strict,
                   "named deviations (fully_masked_row_nan, empty_row_lse, all_ignored_mean_nan, "
                   "top_left_causal) fail like any other difference (always on with --mutants)");
  std::string counterexample_dir;
  bool no_counterexamples = false;
  auto* ce_opt = verify->add_option(
      "--counterexamples", counterexample_dir,
      "save each failing case as .safetensors files here (default: counterexamples/ beside "
      "--json FILE, else ./maskcheck-counterexamples)");
  verify->add_flag("--no-counterexamples", no_counterexamples, "save no counterexample files")
      ->excludes(ce_opt);

  auto* eval = app.add_subcommand(
      "eval",
      "run one operation of one implementation on the tensors of a .safetensors case (a "
      "counterexample file of verify, or one written with safetensors.torch.save_file) and "
      "write the result tensors");
  EvalOptions eval_opts;
  eval->add_option("op", eval_opts.op,
                   "the case's operation: masks, softmax, attention, cross_entropy, lm_labels, "
                   "mlm (must match its maskcheck.op)")
      ->required();
  auto* eval_impl = eval->add_option(
      "--impl", eval_opts.impl,
      "implementation: built-in (maskcheck list) or mutant:<id> (default reference)");
  eval->add_option("--plugin", eval_opts.plugin,
                   "evaluate this plugin library (maskcheck/plugin.h), loaded into this process "
                   "(--impl, if given, must be its plugin:<name>)");
  eval->add_option("--in", eval_opts.in, "the case file (.safetensors)")->required();
  eval->add_option(
      "--out", eval_opts.out,
      "write the result tensors and metadata here (.safetensors, replaced atomically)");
  eval->add_flag("--quiet", eval_opts.quiet, "print nothing but errors");
  std::string eval_max_memory, eval_max_work;
  eval->add_option("--max-memory", eval_max_memory,
                   "refuse (exit 2) a case that needs more memory than this, computed before it "
                   "runs: 4G, 512M, 1.5GiB, bytes (default 4G)");
  eval->add_option("--max-work", eval_max_work,
                   "refuse (exit 2) a case whose naive reference needs more element operations "
                   "than this (default 1e12, about 10 to 20 minutes)");

  std::vector<std::string> plugin_paths;
  std::string plugin_timeout;
  bool in_process = false;
  verify->add_option("--plugin", plugin_paths,
                     "verify this plugin library (maskcheck/plugin.h), as plugin:<name>, in child "
                     "processes; repeatable; with --impl, beside those implementations");
  verify->add_option("--plugin-timeout", plugin_timeout,
                     "seconds a plugin's worker may go without finishing a call before it is "
                     "killed and the property fails, a finite number > 0 (default 60)");
  std::string plugin_memory;
  verify->add_option("--plugin-memory", plugin_memory,
                     "resident memory a plugin's worker and the processes it starts may hold "
                     "together before they are all killed and the property fails: 4G, 512M, "
                     "bytes (default: half the machine's memory, at most 16G)");
  verify->add_flag("--in-process", in_process,
                   "load plugins into this process: no isolation (a crash ends the run), for "
                   "debuggers");

  // The child process of --plugin (hidden: not part of the interface).
  auto* worker = app.add_subcommand("plugin-worker", "")->group("");
  mc::plugin::WorkerOptions worker_opts;
  worker->add_option("--plugin", worker_opts.plugin)->required();
  worker->add_option("--property", worker_opts.property);
  worker->add_option("--seed", worker_opts.seed);
  worker->add_option("--cases", worker_opts.cases);
  worker->add_option("--max-size", worker_opts.max_size);
  bool worker_no_shrink = false;
  worker->add_flag("--no-shrink", worker_no_shrink);
  worker->add_flag("--strict", worker_opts.strict);
  worker->add_option("--counterexamples", worker_opts.counterexample_dir);
  worker->add_option("--result-fd", worker_opts.result_fd);
  worker->add_option("--sandbox-memory", worker_opts.sandbox_memory);

  auto* report = app.add_subcommand(
      "report",
      "turn result JSON files into DIR/report.md and DIR/report.html (one self-contained page "
      "with charts)");
  std::vector<std::string> inputs;
  std::string out_dir;
  report
      ->add_option("results", inputs,
                   "result files: verify JSON (maskcheck verify --json) and benchmark JSON "
                   "(maskcheck bench --json), in the order the report shows them")
      ->required()
      ->check(CLI::ExistingFile);
  report
      ->add_option("--out", out_dir,
                   "output directory (created if missing); report.md and report.html are "
                   "replaced atomically")
      ->required();

  auto* bench = app.add_subcommand(
      "bench", "run the benchmarks (maskcheck_bench beside this executable) and write their JSON");
  BenchOptions bench_opts;
  bench->add_option("--filter", bench_opts.filter,
                    "regular expression over benchmark names (default: every benchmark)");
  bench->add_option("--json", bench_opts.json,
                    "write Google Benchmark JSON to FILE (replaced only by a finished run)");
  bench
      ->add_option("--repetitions", bench_opts.repetitions,
                   "repetitions per benchmark, with median/mean/stddev/cv (default 5)")
      ->check(CLI::Range(1, 1000));
  bench->add_option("--min-time", bench_opts.min_time,
                    "minimum seconds per repetition, a finite number > 0 (default: "
                    "maskcheck_bench's, 0.1)");
  bench->add_option("benchmark_args", bench_opts.extra,
                    "further arguments for maskcheck_bench, after --");

  // compare: the CI gate (reports/include/maskcheck/reports/compare.hpp).
  auto* compare = app.add_subcommand(
      "compare",
      "compare results with a baseline (the CI gate): benchmark rows by their median change and "
      "a one-sided Mann-Whitney U test over the repetitions, properties by status; Markdown on "
      "stdout; exit 1 when a benchmark or a property regressed");
  std::string cmp_base, cmp_new, cmp_slowdown = "5%", cmp_out;
  mc::reports::CompareOptions cmp_opts;
  compare
      ->add_option("baseline", cmp_base,
                   "baseline: a verify or bench JSON file, or a directory holding verify.json "
                   "and/or bench.json")
      ->required();
  compare->add_option("new", cmp_new, "the new results, of the same kind(s)")->required();
  compare->add_option("--max-slowdown", cmp_slowdown,
                      "a row regresses when its median is slower by more than this percentage "
                      "(5% and 5 both mean 5 percent; >= 0; default 5%) and the slowdown is "
                      "significant (p < --alpha)");
  compare->add_option("--alpha", cmp_opts.alpha,
                      "significance level of the one-sided test, in (0, 1) (default 0.05)");
  compare->add_option("--gate", cmp_opts.gate,
                      "ECMAScript regular expression searched in row names: the rows that can "
                      "fail (default: every row; probe rows ceiling/... never gate); the others "
                      "are informational");
  compare->add_option("--out", cmp_out, "also write the Markdown to FILE (replaced atomically)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message
    return kExitUsage;
  }

  try {
    if (*worker) {
      worker_opts.shrink = !worker_no_shrink;
      mc::plugin::worker_main(worker_opts);
    }
    if (*list) {
      mc::Registry registry = mc::builtin_registry();
      mc::VerifyConfig unused;
      add_plugins(registry, unused, list_plugins);
      return cmd_list(registry, list_json, list_mutants);
    }
    if (*verify) {
      mc::VerifyConfig config;
      config.cases = cases > 0 ? cases : mc::cases_from_env(100);
      if (*seed_opt) {
        config.seed = mc::parse_seed(seed_text, "--seed");
      } else if (auto s = mc::seed_from_env()) {
        config.seed = *s;
      } else {
        config.seed = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
      }
      config.max_size = max_size;
      config.shrink = !no_shrink;
      config.impls = impls;
      if (!op.empty()) config.op = mc::op_from_string(op);
      config.properties = split_commas(properties);
      // A mutant is judged against the exact contract: a named deviation kills it too.
      config.strict = strict || mutants;
      if (*ce_opt && counterexample_dir.empty())
        throw mc::InvalidArgument("--counterexamples", "''",
                                  "must name a directory (--no-counterexamples saves none)");
      if (*verify->get_option("--json")) mc::check_output_path(json_path, "--json");
      if (!no_counterexamples)
        config.counterexample_dir =
            *ce_opt ? counterexample_dir : default_counterexample_dir(json_path);
      if (!plugin_timeout.empty())
        config.plugin_timeout = mc::parse_positive(plugin_timeout, "--plugin-timeout");
      if (!plugin_memory.empty())
        config.plugin_memory = mc::parse_size(plugin_memory, "--plugin-memory");
      config.in_process = in_process;
      if (mutants && !plugin_paths.empty())
        throw mc::InvalidArgument("--plugin", plugin_paths.front(),
                                  "cannot be combined with --mutants");
      mc::Registry registry = mc::builtin_registry();
      add_plugins(registry, config, plugin_paths);
      // A mutant named in --impl runs like any implementation (the replay command of a mutant's
      // failure): its failures print in full and exit 1. Only named ones: "own" and the default
      // selection never include mutants.
      if (!mutants) {
        const mc::Registry catalogue = mc::mutant_registry();
        for (const auto& name : split_commas(impls))
          if (auto m = catalogue.find(name); m && !registry.find(name)) registry.add(m);
      }
      const mc::VerifyPlan plan =
          mutants ? mc::plan_mutant_verify(config) : mc::plan_verify(registry, config);
      return cmd_verify(plan, config, json_path, quiet || mutants, mutants);
    }
    if (*eval) {
      eval_opts.impl_given = eval_impl->count() > 0;
      if (!eval_max_memory.empty())
        eval_opts.budget.max_memory = mc::parse_size(eval_max_memory, "--max-memory");
      if (!eval_max_work.empty())
        eval_opts.budget.max_work = mc::parse_positive(eval_max_work, "--max-work");
      return cmd_eval(eval_opts);
    }
    if (*report) return cmd_report(inputs, out_dir);
    if (*bench) {
      if (*bench->get_option("--json")) mc::check_output_path(bench_opts.json, "--json");
      return cmd_bench(bench_opts);
    }
    if (*compare) {
      cmp_opts.max_slowdown = mc::reports::parse_percentage(cmp_slowdown);
      if (*compare->get_option("--out")) mc::check_output_path(cmp_out, "--out");
      const auto c = mc::reports::compare_results(
          mc::reports::load_results(cmp_base, "BASELINE", mc::read_json_file),
          mc::reports::load_results(cmp_new, "NEW", mc::read_json_file), cmp_opts);
      const std::string md = mc::reports::compare_markdown(c);
      if (*compare->get_option("--out")) mc::write_file_atomic(cmp_out, md);
      std::cout << md << std::flush;
      return c.failed() ? kExitFailed : 0;
    }
  } catch (const mc::InvalidArgument& e) {
    std::cerr << "maskcheck: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "maskcheck: " << e.what() << "\n";
    return kExitUsage;
  }
  return kExitUsage;
}
