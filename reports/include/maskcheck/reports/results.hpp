// The result files maskcheck reads back: verify JSON (schema maskcheck.verify/1, written by
// `maskcheck verify --json`) and Google Benchmark JSON (written by `maskcheck bench --json`),
// parsed into the one model that the Markdown and HTML reports and `maskcheck compare` share.
//
// A benchmark row is one Google Benchmark run name (a path of axes, see suite/bench/harness.hpp):
//   cpu/attention/f32/D64/L2048/pad50/padding+causal/maskcheck
// with the timing-mode suffix (/real_time, /manual_time) removed. Its group is the name without
// the implementation (the last component), so a maskcheck row and its peers share a group.
#pragma once

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace maskcheck::reports {

enum class DocKind { verify, bench };

// Which kind of result file `doc` is; throws std::runtime_error naming `source` when neither.
DocKind doc_kind(const nlohmann::json& doc, const std::string& source = "result file");

struct BenchRow {
  std::string name;   // run name without the timing-mode suffix
  std::string group;  // name without its last component
  std::string impl;   // the last component: maskcheck, torch_sdpa, reference, ...
  std::string label;  // Google Benchmark's label (peer backend, probe description)
  // Seconds per iteration of every repetition, in run order (the iteration rows). Empty when the
  // file holds aggregates only (--benchmark_report_aggregates_only).
  std::vector<double> seconds;
  double median_s = 0;  // median of `seconds`, else the median aggregate; 0 for an errored row
  // Counters (bytes_per_second, bw_frac, fma_frac, useful_FLOPS, ...): per repetition, and the
  // median of each.
  std::map<std::string, std::vector<double>> counter_samples;
  std::map<std::string, double> counters;
  // The repetitions the run asked for (Google Benchmark's `repetitions`; 0 when not recorded).
  int repetitions = 0;
  // The stddev aggregate of the time and of each counter, when the file has one: the only spread
  // a file of aggregates alone (no per-repetition samples) records. NaN / absent otherwise.
  double stddev_s = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, double> counter_stddev;
  std::string error;  // error_message of a skipped row ("mismatch: ...", "no CUDA device: ...")

  bool ok() const { return error.empty() && median_s > 0; }
  // The value of a counter's median, if the row has it.
  std::optional<double> counter(const std::string& key) const;
};

struct BenchDoc {
  nlohmann::json context;      // Google Benchmark's context (machine, probes, versions)
  std::vector<BenchRow> rows;  // in the order of the file
  const BenchRow* find(const std::string& name) const;
};

// Throws std::runtime_error for a document that is not Google Benchmark JSON.
BenchDoc parse_bench(const nlohmann::json& doc);

// The axes of a benchmark name, split at '/': {"cpu", "attention", "f32", "D64", ...}.
std::vector<std::string> name_components(const std::string& name);

// The median of `v` (mean of the middle two for an even count); NaN for an empty vector.
double median(std::vector<double> v);
// A linearly interpolated quantile, q in [0, 1]; NaN for an empty vector.
double quantile(std::vector<double> v, double q);

// "1.23 ms", "456 us", "12.3 s": seconds for people.
std::string format_seconds(double s);
// 1.23k, 4.56M, 7.89G: SI prefixes, three significant digits.
std::string format_si(double x);

// One verify row's cell: "pass 100", "pass 30 (4 skipped)", "pass 30, deviation NAME", "FAIL",
// "ERROR", "skip".
std::string verify_cell(const nlohmann::json& row);

}  // namespace maskcheck::reports
