// maskcheck: verify implementations of masked sequence-model operations against the reference
// and write reports.
//   maskcheck list [--json] [--mutants] [--plugin LIB.so]...
//   maskcheck verify [--impl a,b] [--op OP] [--property P,...] [--dtype f32,bf16] [--cases N]
//                    [--seed S] [--json FILE] [--size small|medium|large] [--shard K/N | --chunk J]
//                    [--strict] [--mutants] [--counterexamples DIR | --no-counterexamples]
//                    [--plugin LIB.so]... [--plugin-timeout S] [--plugin-memory SIZE]
//                    [--in-process]
//   maskcheck eval OP [--impl NAME] [--plugin LIB.so] --in CASE.safetensors
//                  [--out RESULT.safetensors] [--quiet] [--max-memory SIZE] [--max-work N]
//   maskcheck report RESULTS.json... --out DIR      (writes DIR/report.md and DIR/report.html)
//   maskcheck bench [--filter RE] [--json FILE] [--repetitions N] [--min-time S] [--plugin
//   LIB.so]...
//                   [-- ARGS...]
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
#include <algorithm>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/runner.hpp"

namespace mc = maskcheck;
namespace cli = maskcheck::cli;

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
      "(LibTorch and ggml adapters, plugins), prefixes such as torch:* or ggml:*, mutant:<id> "
      "(default: all built in)");
  verify->add_option(
      "--op", op, "only this operation: masks, softmax, attention, cross_entropy, lm_labels, mlm");
  verify->add_option("--property", properties, "only these properties, comma-separated");
  std::string dtypes;
  verify->add_option("--dtype", dtypes,
                     "only cases of these dtypes, comma-separated: f64, f32, f16, bf16 (an "
                     "implementation that takes none of them is skipped with the reason; a failure "
                     "shrinks within the dtype it was found in)");
  verify->add_option("--cases", cases, "cases per property (default 100, or MASKCHECK_CASES)")
      ->check(CLI::Range(1, 1000000));
  auto* seed_opt = verify->add_option(
      "--seed", seed_text,
      "seed of the run, an unsigned 64-bit decimal integer (default: MASKCHECK_SEED or random)");
  verify->add_option("--max-size", max_size, "largest rapidcheck size (default 100)")
      ->check(CLI::Range(0, 10000));
  std::string size_text = "small", shard_text;
  int chunk = -1;
  verify->add_option("--size", size_text,
                     "size tier of the cases (default small). " +
                         mc::describe_tier(mc::SizeTier::small) + ". " +
                         mc::describe_tier(mc::SizeTier::medium) + ". " +
                         mc::describe_tier(mc::SizeTier::large) + ".");
  auto* shard_opt = verify->add_option(
      "--shard", shard_text,
      "run shard K of N (K/N, shards numbered 0 to N-1): a deterministic share of the run's "
      "chunks of up to 100 cases (implementations x properties x case ranges, same seeds); N "
      "shards together run exactly the unsharded run, and `report` merges their JSON files");
  verify
      ->add_option("--chunk", chunk,
                   "run only chunk J (cases 100*J to 100*J+99 of each property, with that "
                   "chunk's seed): what a failure's replay command names")
      ->check(CLI::Range(0, 1000000))
      ->excludes(shard_opt);
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
  cli::EvalOptions eval_opts;
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
                     "verify this plugin library (maskcheck/plugin.h, ABI 1.0 to 1.5; the "
                     "attention.backward.* properties need ABI 1.2's attention_backward), as "
                     "plugin:<name>, in child processes; repeatable; with --impl, beside those "
                     "implementations");
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
  worker->add_option("--size", worker_opts.size);
  worker->add_option("--shard", worker_opts.shard);
  worker->add_option("--chunk", worker_opts.chunk);
  bool worker_no_shrink = false;
  worker->add_flag("--no-shrink", worker_no_shrink);
  worker->add_flag("--strict", worker_opts.strict);
  std::string worker_dtypes;
  worker->add_option("--dtype", worker_dtypes);
  worker->add_flag("--isolate-calls", worker_opts.isolate_calls);
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
  cli::BenchOptions bench_opts;
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
  bench->add_option("--plugin", bench_opts.plugins,
                    "also time this plugin library (maskcheck/plugin.h) on the same cases, rows "
                    "<case>/plugin:<name>, each checked against the reference first; loaded into "
                    "the benchmark process (verify it first); repeatable");
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
    return cli::kExitUsage;
  }

  try {
    if (*worker) {
      worker_opts.shrink = !worker_no_shrink;
      for (const auto& d : cli::split_commas(worker_dtypes))
        worker_opts.dtypes.push_back(mc::dtype_from_string(d));
      mc::plugin::worker_main(worker_opts);
    }
    if (*list) {
      mc::Registry registry = mc::builtin_registry();
      mc::VerifyConfig unused;
      cli::add_plugins(registry, unused, list_plugins);
      return cli::cmd_list(registry, list_json, list_mutants);
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
      config.size = mc::size_tier_from_string(size_text);
      if (*shard_opt) config.shard = mc::parse_shard(shard_text);
      if (chunk >= 0) {
        if (chunk >= mc::chunk_count(config.cases))
          throw mc::InvalidArgument("--chunk", std::to_string(chunk),
                                    "must be below the number of chunks, " +
                                        std::to_string(mc::chunk_count(config.cases)) + " for " +
                                        std::to_string(config.cases) +
                                        " cases (100 cases per chunk)");
        config.chunk = chunk;
      }
      config.shrink = !no_shrink;
      config.impls = impls;
      if (!op.empty()) config.op = mc::op_from_string(op);
      config.properties = cli::split_commas(properties);
      for (const auto& d : cli::split_commas(dtypes)) {
        const mc::DType t = mc::dtype_from_string(d);
        if (std::find(config.dtypes.begin(), config.dtypes.end(), t) == config.dtypes.end())
          config.dtypes.push_back(t);
      }
      if (*verify->get_option("--dtype") && config.dtypes.empty())
        throw mc::InvalidArgument("--dtype", "''", "must name f64, f32, f16 or bf16");
      // A mutant is judged against the exact contract: a named deviation kills it too.
      config.strict = strict || mutants;
      if (*ce_opt && counterexample_dir.empty())
        throw mc::InvalidArgument("--counterexamples", "''",
                                  "must name a directory (--no-counterexamples saves none)");
      if (*verify->get_option("--json")) mc::check_output_path(json_path, "--json");
      if (!no_counterexamples)
        config.counterexample_dir =
            *ce_opt ? counterexample_dir : cli::default_counterexample_dir(json_path);
      if (!plugin_timeout.empty())
        config.plugin_timeout = mc::parse_positive(plugin_timeout, "--plugin-timeout");
      if (!plugin_memory.empty())
        config.plugin_memory = mc::parse_size(plugin_memory, "--plugin-memory");
      config.in_process = in_process;
      if (mutants && !plugin_paths.empty())
        throw mc::InvalidArgument("--plugin", plugin_paths.front(),
                                  "cannot be combined with --mutants");
      mc::Registry registry = mc::builtin_registry();
      cli::add_plugins(registry, config, plugin_paths);
      // A mutant named in --impl runs like any implementation (the replay command of a mutant's
      // failure): its failures print in full and exit 1. Only named ones: "own" and the default
      // selection never include mutants.
      if (!mutants) {
        const mc::Registry catalogue = mc::mutant_registry();
        for (const auto& name : cli::split_commas(impls))
          if (auto m = catalogue.find(name); m && !registry.find(name)) registry.add(m);
      }
      mc::VerifyPlan plan =
          mutants ? mc::plan_mutant_verify(config) : mc::plan_verify(registry, config);
      if (config.shard) {
        // A shard of an empty selection is an error like the selection itself; a shard that
        // the hash leaves without chunks runs nothing and writes an empty file.
        if (plan.items.empty())
          throw mc::InvalidArgument("selection", "empty", "no property matches the selection");
        mc::restrict_to_shard(plan, config);
      }
      return cli::cmd_verify(plan, config, json_path, quiet || mutants, mutants);
    }
    if (*eval) {
      eval_opts.impl_given = eval_impl->count() > 0;
      if (!eval_max_memory.empty())
        eval_opts.budget.max_memory = mc::parse_size(eval_max_memory, "--max-memory");
      if (!eval_max_work.empty())
        eval_opts.budget.max_work = mc::parse_positive(eval_max_work, "--max-work");
      return cli::cmd_eval(eval_opts);
    }
    if (*report) return cli::cmd_report(inputs, out_dir);
    if (*bench) {
      if (*bench->get_option("--json")) mc::check_output_path(bench_opts.json, "--json");
      return cli::cmd_bench(bench_opts);
    }
    if (*compare) {
      cmp_opts.max_slowdown = mc::reports::parse_percentage(cmp_slowdown);
      return cli::cmd_compare(cmp_base, cmp_new, cmp_opts,
                              *compare->get_option("--out") ? &cmp_out : nullptr);
    }
  } catch (const mc::InvalidArgument& e) {
    std::cerr << "maskcheck: " << e.what() << "\n";
    return cli::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "maskcheck: " << e.what() << "\n";
    return cli::kExitUsage;
  }
  return cli::kExitUsage;
}
