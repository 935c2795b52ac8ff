// What the HTML report draws, computed from the result model (results.hpp) and kept apart from
// the drawing so that it can be tested by itself:
//   - families of benchmark rows that differ only in their sequence-length axis (L<n> or Lk<n>),
//     for throughput against sequence length;
//   - speedups of maskcheck over its LibTorch peers (peer median time / maskcheck median time);
//   - the fraction of the machine's measured limits that each maskcheck row reaches: the
//     bandwidth probe for memory-bound rows, the FMA probe for CPU attention.
// Every value carries its spread over the repetitions: min-max of the per-repetition samples when
// the file has them, else median +- the stddev aggregate (files of aggregates alone).
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "maskcheck/reports/results.hpp"

namespace maskcheck::reports {

enum class Spread {
  none,     // a single value: one repetition, or no spread recorded
  min_max,  // lo, hi: the smallest and largest repetition
  stddev,   // lo, hi: median -+ one standard deviation (aggregates only)
};

// A median with its spread over `n` repetitions.
struct Stat {
  double median = std::numeric_limits<double>::quiet_NaN();
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
  int n = 0;
  Spread spread = Spread::none;
  bool ok() const { return std::isfinite(median); }
};

// "min-max of 5 repetitions", "+-1 stddev of 5 repetitions", "1 repetition".
std::string describe_spread(Spread spread, int n);

// The time per iteration in seconds, and a counter's value times `scale`.
Stat time_stat(const BenchRow& row);
Stat counter_stat(const BenchRow& row, const std::string& counter, double scale = 1);

// The throughput a row is charted by: useful FLOP/s for attention (useful_FLOPS, or
// useful_TFLOPS x 1e12), bytes per second otherwise.
struct Metric {
  std::string counter;  // the counter it reads
  double scale = 1;     // to the unit
  std::string unit;     // "FLOP/s" or "B/s"
  std::string what;     // "useful FLOP/s", "bytes/s"
};
std::optional<Metric> throughput_metric(const BenchRow& row);

// Rows that differ only in their length axis. `pattern` is the group name with that axis written
// as L* (or Lk*, and Lq* when the query count changes with the key count, as in the softmax rows
// that keep Lq x Lk fixed).
struct FamilyPoint {
  long long length = 0;
  const BenchRow* row = nullptr;
};
struct FamilyLine {
  std::string impl;
  std::vector<FamilyPoint> points;  // by length
};
struct Family {
  std::string pattern;
  std::string axis;  // "L" or "Lk"
  bool lq_varies = false;
  Metric metric;
  std::vector<long long> lengths;  // distinct, ascending
  std::vector<FamilyLine> lines;   // in the order of the file
};
// Families with at least two lengths, in the order of the file. Probe rows (ceiling/...) and rows
// that errored are left out.
std::vector<Family> length_families(const BenchDoc& bench);

// peer median time / maskcheck median time for every group that has a maskcheck row and a peer
// whose name starts with "torch". Above 1: maskcheck is faster.
struct Speedup {
  const BenchRow* own = nullptr;
  const BenchRow* peer = nullptr;
  Stat ratio;  // spread: peer min / own max .. peer max / own min, or the stddevs combined
};
std::vector<Speedup> torch_speedups(const BenchDoc& bench);

// A measured limit of the machine: the median of a probe row of the same file when there is one,
// else the value the benchmark recorded in its context at start-up.
struct Limit {
  double value = std::numeric_limits<double>::quiet_NaN();  // bytes/s or FLOP/s
  std::string unit;                                         // "B/s" or "FLOP/s"
  std::string source;  // "probe row ceiling/cpu/triad/3x520MiB (median of 5 repetitions)" or
                       // "context cpu.triad_bandwidth_gbps (start-up probe)"
  bool from_probe = false;
  bool ok() const { return std::isfinite(value) && value > 0; }
};
struct Limits {
  Limit cpu_bandwidth;  // STREAM triad
  Limit cpu_fma;        // FMA peak
  Limit gpu_bandwidth;  // device-to-device copy
};
Limits measured_limits(const BenchDoc& bench);

// The fraction of its limit a maskcheck row (maskcheck, maskcheck_varlen, ...) reaches: bytes/s
// over the bandwidth for memory-bound rows, useful FLOP/s over the FMA peak for CPU attention.
// GPU attention has no measured compute limit and is not included.
struct Fraction {
  const BenchRow* row = nullptr;
  enum class Kind { bandwidth, fma } kind = Kind::bandwidth;
  Stat achieved;  // bytes/s or FLOP/s
  Stat fraction;  // achieved / limit
};
std::vector<Fraction> limit_fractions(const BenchDoc& bench, const Limits& limits);

// True for rows measured on the CPU: names starting with cpu/ or ceiling/cpu/.
bool is_cpu_row(const BenchRow& row);
// True for probe rows (ceiling/...).
bool is_probe_row(const BenchRow& row);

// The current name of a benchmark row (or group) that an older maskcheck_bench wrote. Names begin
// with the device ("cpu/...", "cuda/...", probes "ceiling/<device>/..."); before that scheme the
// CUDA rows had no device: "attention/", "softmax/", "cross_entropy/", "mlm/" and "build_mask/"
// rows are now "cuda/attention/..." and so on, and the copy probe "ceiling/d2d_copy/..." is
// "ceiling/cuda/d2d_copy/...". Any other name is current and returned as it is.
std::string current_bench_name(const std::string& name);

}  // namespace maskcheck::reports
