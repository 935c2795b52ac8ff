// `maskcheck compare BASELINE NEW`: the CI gate. Compares two sets of result files (verify JSON
// and/or Google Benchmark JSON, see results.hpp) and says whether NEW regressed.
//
// Benchmarks: per row present on both sides, the change of the median time and a one-sided
// Mann-Whitney U test over the repetitions (stats.hpp). A gated row whose new times are
// significantly larger (p < alpha) AND whose median slowed down by more than the threshold is a
// regression. Rows with fewer than 2 repetitions on a side are shown untested, never failed.
// Probe rows (`ceiling/...`) measure the machine: never gated, shown as the "machine" line.
// Rows are paired by name; a file from before every row began with its device (CUDA rows
// `attention/...`) is compared under the current names (current_bench_name, analysis.hpp).
// Verification: per (implementation, property), passed or deviation in the baseline and failed or
// error now is a regression.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskcheck/reports/stats.hpp"

namespace maskcheck::reports {

struct CompareOptions {
  double max_slowdown = 0.05;  // fraction: 0.05 is 5 %
  double alpha = 0.05;         // significance level of the one-sided tests
  // ECMAScript regular expression searched in row names: the rows that can fail the gate.
  // Empty: every row but the probes. Probe rows are never gated.
  std::string gate;
};

// Throws std::invalid_argument naming the flag (--max-slowdown, --alpha, --gate) when a value is
// out of range or the regular expression does not compile.
void validate(const CompareOptions& o);

// "5%", "5 %", "5", "2.5%" -> 0.05, 0.05, 0.05, 0.025: a percentage, the sign optional.
// Throws std::invalid_argument for anything else, a negative or a non-finite value.
double parse_percentage(const std::string& text);

// One side of a comparison: a result file, or a directory holding verify.json and/or bench.json.
// Without verify.json, the directory's verify-shard-*.json files (the shards of one verify
// --shard K/N run) are merged into its verify results (shards.hpp).
struct ResultSet {
  std::string path;  // as given
  bool directory = false;
  std::optional<nlohmann::json> verify, bench;
  std::string verify_path, bench_path;  // the files read
};

// Reads `path` with `read_json` (maskcheck::read_json_file, which also accepts Google Benchmark's
// bare nan/inf). Throws std::runtime_error naming `role` (BASELINE, NEW) and the path when it
// cannot be read, is no result file, or is a directory without either file.
ResultSet load_results(const std::string& path, const std::string& role,
                       const std::function<nlohmann::json(const std::string&)>& read_json);

enum class BenchVerdict {
  slower,                  // p_slower < alpha and the median slowed by more than the threshold
  slower_not_significant,  // the median slowed by more than the threshold, p_slower >= alpha
  within,                  // |change| <= threshold (significant or not)
  faster,                  // p_faster < alpha and the median sped up by more than the threshold
  faster_not_significant,  // the median sped up by more than the threshold, p_faster >= alpha
  untested,                // fewer than 2 repetitions on a side
  added,                   // only in NEW
  missing,                 // only in the baseline
  error,                   // errored in NEW, timed in the baseline
  error_both,              // errored on both sides
  baseline_error,          // errored in the baseline, timed in NEW
};

struct BenchComparison {
  std::string name;
  bool probe = false;  // ceiling/...: measures the machine
  bool gated = false;  // can fail the gate
  BenchVerdict verdict = BenchVerdict::within;
  std::size_t n_base = 0, n_new = 0;       // repetitions
  double base_median = 0, new_median = 0;  // seconds; 0 where absent or errored
  double ratio = 0;                        // new / baseline median; 0 where not defined
  std::optional<RankTest> test;            // absent when untested
  std::string error;                       // the error message (NEW's, else the baseline's)

  bool regression() const { return gated && verdict == BenchVerdict::slower; }
  // The one-sided p in the direction of the median change (p_greater when slower).
  double p() const;
};

enum class PropertyChange {
  unchanged,
  regressed,        // passed or deviation -> failed or error
  fixed,            // failed or error -> passed or deviation
  still_failing,    // failed or error on both sides
  failing_untried,  // skipped in the baseline, or only in NEW, and failing now (not a regression)
  newly_skipped,    // ran in the baseline, skipped now
  unskipped,        // skipped in the baseline, passing now
  new_deviation,    // a deviation name that the baseline did not show
  deviation_gone,   // a deviation in the baseline, plain pass now
  missing,          // only in the baseline
  added,            // only in NEW, not failing
};

struct PropertyComparison {
  std::string implementation, property;
  std::string base_status, new_status;  // empty on the side that lacks it
  PropertyChange change = PropertyChange::unchanged;
  std::vector<std::string> new_deviations;  // names NEW shows that the baseline did not
  std::string detail;                       // NEW's failure message (first line) or skip reason
};

struct Comparison {
  CompareOptions options;
  std::string base_path, new_path;
  std::vector<std::string> notes;     // kinds compared, kinds on one side only
  std::vector<std::string> warnings;  // untested rows, unreachable alpha, different machines

  bool compared_bench = false;
  std::string base_bench_path, new_bench_path;
  nlohmann::json base_context, new_context;
  std::vector<BenchComparison> bench;  // NEW's order, then rows missing in NEW

  bool compared_verify = false;
  std::string base_verify_path, new_verify_path;
  nlohmann::json base_about, new_about;
  std::vector<PropertyComparison> properties;           // NEW's order, then missing ones
  std::vector<std::string> impls_missing, impls_added;  // implementations on one side only

  std::size_t bench_regressions() const;
  std::size_t property_regressions() const;
  bool failed() const { return bench_regressions() + property_regressions() > 0; }
  // Geometric mean of the median ratios of rows timed on both sides, gated or informational
  // (probes excluded), and how many rows it covers.
  std::pair<double, std::size_t> geomean(bool gated) const;
};

// Throws std::runtime_error when the two sides have no kind in common (a verify file against a
// bench file), std::invalid_argument for bad options and for a gate that matches no row.
Comparison compare_results(const ResultSet& base, const ResultSet& next,
                           const CompareOptions& options);

// The pull-request comment: a verdict line first, then the property changes, the benchmark
// changes (unchanged rows collapsed), the machine line, the geometric mean and the parameters.
std::string compare_markdown(const Comparison& c);
// The verdict line alone (without Markdown emphasis), for logs.
std::string compare_verdict(const Comparison& c, bool markdown = false);

}  // namespace maskcheck::reports
