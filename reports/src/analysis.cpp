#include "maskcheck/reports/analysis.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>

namespace maskcheck::reports {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : "/") + p;
  return s;
}

// The number after `prefix` when `component` is exactly prefix + digits.
std::optional<long long> axis_value(const std::string& component, const std::string& prefix) {
  if (!starts_with(component, prefix) || component.size() == prefix.size() ||
      component.size() > prefix.size() + 15)
    return std::nullopt;
  for (std::size_t i = prefix.size(); i < component.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(component[i]))) return std::nullopt;
  return std::stoll(component.substr(prefix.size()));
}

// A value's stat from its per-repetition samples, else its median and stddev aggregates.
Stat make_stat(const std::vector<double>* samples, double median_value, double stddev, int reps,
               double scale) {
  Stat s;
  std::vector<double> finite;
  if (samples)
    for (double x : *samples)
      if (std::isfinite(x)) finite.push_back(x * scale);
  if (!finite.empty()) {
    s.median = median(finite);
    s.lo = *std::min_element(finite.begin(), finite.end());
    s.hi = *std::max_element(finite.begin(), finite.end());
    s.n = static_cast<int>(finite.size());
    s.spread = finite.size() > 1 ? Spread::min_max : Spread::none;
    return s;
  }
  if (!std::isfinite(median_value)) return s;
  s.median = median_value * scale;
  s.n = std::max(reps, 1);
  if (std::isfinite(stddev) && reps > 1) {
    s.lo = (median_value - stddev) * scale;
    s.hi = (median_value + stddev) * scale;
    s.spread = Spread::stddev;
  } else {
    s.lo = s.hi = s.median;
  }
  return s;
}

double context_number(const nlohmann::json& context, const std::string& key) {
  if (!context.is_object() || !context.contains(key))
    return std::numeric_limits<double>::quiet_NaN();
  const auto& v = context.at(key);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    try {
      std::size_t used = 0;
      const std::string s = v.get<std::string>();
      const double x = std::stod(s, &used);
      if (used == s.size()) return x;
    } catch (const std::exception&) {
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

Limit probe_or_context(const BenchDoc& bench, const std::string& probe_prefix,
                       const std::string& counter, const std::string& context_key,
                       const std::string& context_unit, double context_scale,
                       const std::string& unit) {
  Limit l;
  l.unit = unit;
  for (const auto& r : bench.rows) {
    if (!starts_with(current_bench_name(r.name), probe_prefix) || !r.ok()) continue;
    const Stat s = counter_stat(r, counter);
    if (!s.ok() || s.median <= 0) continue;
    l.value = s.median;
    l.from_probe = true;
    l.source = "probe row " + r.name + " (median of " + std::to_string(s.n) + " repetition" +
               (s.n == 1 ? "" : "s") + ")";
    return l;
  }
  const double v = context_number(bench.context, context_key);
  if (std::isfinite(v) && v > 0) {
    l.value = v * context_scale;
    std::ostringstream os;
    os << v;
    l.source = "context " + context_key + " = " + os.str() + " " + context_unit +
               " (the start-up probe; no probe row in the file)";
  }
  return l;
}

}  // namespace

std::string describe_spread(Spread spread, int n) {
  const std::string reps = std::to_string(n) + " repetition" + (n == 1 ? "" : "s");
  switch (spread) {
    case Spread::min_max:
      return "min-max of " + reps;
    case Spread::stddev:
      return "median +- 1 stddev of " + reps;
    case Spread::none:
      break;
  }
  return reps + ", no spread";
}

Stat time_stat(const BenchRow& row) {
  if (!row.ok()) return {};
  return make_stat(&row.seconds, row.median_s, row.stddev_s, row.repetitions, 1);
}

Stat counter_stat(const BenchRow& row, const std::string& counter, double scale) {
  if (!row.error.empty()) return {};
  const auto samples = row.counter_samples.find(counter);
  const auto median_it = row.counters.find(counter);
  const auto stddev_it = row.counter_stddev.find(counter);
  return make_stat(samples == row.counter_samples.end() ? nullptr : &samples->second,
                   median_it == row.counters.end() ? std::numeric_limits<double>::quiet_NaN()
                                                   : median_it->second,
                   stddev_it == row.counter_stddev.end() ? std::numeric_limits<double>::quiet_NaN()
                                                         : stddev_it->second,
                   row.repetitions, scale);
}

std::optional<Metric> throughput_metric(const BenchRow& row) {
  if (row.counter("useful_FLOPS")) return Metric{"useful_FLOPS", 1, "FLOP/s", "useful FLOP/s"};
  if (row.counter("useful_TFLOPS")) return Metric{"useful_TFLOPS", 1e12, "FLOP/s", "useful FLOP/s"};
  if (row.counter("bytes_per_second")) return Metric{"bytes_per_second", 1, "B/s", "bytes/s"};
  return std::nullopt;
}

bool is_cpu_row(const BenchRow& row) {
  return starts_with(row.name, "cpu/") || starts_with(row.name, "ceiling/cpu/");
}

bool is_probe_row(const BenchRow& row) {
  return starts_with(row.name, "ceiling/");
}

std::string current_bench_name(const std::string& name) {
  const std::string op = name.substr(0, name.find('/'));
  for (const char* legacy : {"attention", "softmax", "cross_entropy", "mlm", "build_mask"})
    if (op == legacy) return "cuda/" + name;
  if (name == "ceiling/d2d_copy" || starts_with(name, "ceiling/d2d_copy/"))
    return "ceiling/cuda/" + name.substr(8);
  return name;
}

std::vector<Family> length_families(const BenchDoc& bench) {
  struct Candidate {
    const BenchRow* row;
    std::size_t index;  // in the file
    std::vector<std::string> parts;
    std::size_t axis_at;
    std::string axis;
    long long length;
    std::optional<std::size_t> lq_at;
    Metric metric;
  };
  std::vector<Candidate> candidates;
  for (std::size_t i = 0; i < bench.rows.size(); ++i) {
    const BenchRow& r = bench.rows[i];
    if (!r.ok() || is_probe_row(r) || r.group.empty()) continue;
    const auto metric = throughput_metric(r);
    if (!metric) continue;
    Candidate c{&r, i, name_components(r.group), 0, "", 0, std::nullopt, *metric};
    bool found = false;
    for (std::size_t k = 0; k < c.parts.size() && !found; ++k) {
      for (const std::string axis : {"Lk", "L"}) {
        if (const auto v = axis_value(c.parts[k], axis)) {
          c.axis_at = k;
          c.axis = axis;
          c.length = *v;
          found = true;
          break;
        }
      }
    }
    if (!found) continue;
    for (std::size_t k = 0; k < c.parts.size(); ++k)
      if (k != c.axis_at && axis_value(c.parts[k], "Lq")) c.lq_at = k;
    candidates.push_back(std::move(c));
  }

  // Groups by a key, in the order of first appearance.
  auto group_by = [](const std::vector<const Candidate*>& cs, auto key_of) {
    std::vector<std::pair<std::string, std::vector<const Candidate*>>> groups;
    std::map<std::string, std::size_t> at;
    for (const Candidate* c : cs) {
      const std::string key = key_of(*c);
      const auto [it, added] = at.emplace(key, groups.size());
      if (added) groups.push_back({key, {}});
      groups[it->second].second.push_back(c);
    }
    return groups;
  };
  auto with_axis = [](const Candidate& c) {
    auto parts = c.parts;
    parts[c.axis_at] = c.axis + "*";
    return parts;
  };

  struct Built {
    std::size_t first;
    Family family;
  };
  std::vector<Built> built;
  // Makes a family of `members` (one metric: the first row's); false when fewer than two lengths.
  auto build = [&](const std::string& pattern, const std::vector<const Candidate*>& members,
                   bool lq_varies) {
    Family f;
    f.pattern = pattern;
    f.axis = members.front()->axis;
    f.lq_varies = lq_varies;
    f.metric = members.front()->metric;
    std::set<long long> lengths;
    std::size_t first = members.front()->index;
    for (const Candidate* c : members) {
      if (c->metric.counter != f.metric.counter) continue;
      lengths.insert(c->length);
      first = std::min(first, c->index);
      auto line = std::find_if(f.lines.begin(), f.lines.end(),
                               [&](const FamilyLine& l) { return l.impl == c->row->impl; });
      if (line == f.lines.end()) {
        f.lines.push_back({c->row->impl, {}});
        line = f.lines.end() - 1;
      }
      line->points.push_back({c->length, c->row});
    }
    if (lengths.size() < 2) return false;
    f.lengths.assign(lengths.begin(), lengths.end());
    for (auto& line : f.lines)
      std::sort(line.points.begin(), line.points.end(),
                [](const FamilyPoint& a, const FamilyPoint& b) { return a.length < b.length; });
    built.push_back({first, std::move(f)});
    return true;
  };

  std::vector<const Candidate*> all;
  for (const auto& c : candidates) all.push_back(&c);
  std::vector<const Candidate*> leftover;
  for (const auto& [key, members] :
       group_by(all, [&](const Candidate& c) { return join(with_axis(c)); })) {
    if (!build(key, members, false))
      for (const Candidate* c : members)
        if (c->lq_at) leftover.push_back(c);
  }
  // Rows whose query count changes with the key count (softmax at a fixed Lq x Lk): one family
  // when every length has exactly one query count.
  for (const auto& [key, members] : group_by(leftover, [&](const Candidate& c) {
         auto parts = with_axis(c);
         parts[*c.lq_at] = "Lq*";
         return join(parts);
       })) {
    std::map<long long, std::set<std::string>> groups_at;
    for (const Candidate* c : members) groups_at[c->length].insert(c->row->group);
    const bool one_each = std::all_of(groups_at.begin(), groups_at.end(),
                                      [](const auto& g) { return g.second.size() == 1; });
    if (one_each) build(key, members, true);
  }
  std::stable_sort(built.begin(), built.end(),
                   [](const Built& a, const Built& b) { return a.first < b.first; });
  std::vector<Family> out;
  for (auto& b : built) out.push_back(std::move(b.family));
  return out;
}

std::vector<Speedup> torch_speedups(const BenchDoc& bench) {
  std::vector<Speedup> out;
  for (const auto& peer : bench.rows) {
    if (!starts_with(peer.impl, "torch") || !peer.ok()) continue;
    const BenchRow* own = bench.find(peer.group + "/maskcheck");
    if (!own || !own->ok()) continue;
    Speedup s{own, &peer, {}};
    s.ratio.median = peer.median_s / own->median_s;
    s.ratio.lo = s.ratio.hi = s.ratio.median;
    const auto finite = [](const std::vector<double>& v) {
      std::vector<double> f;
      for (double x : v)
        if (std::isfinite(x) && x > 0) f.push_back(x);
      return f;
    };
    const auto p = finite(peer.seconds), o = finite(own->seconds);
    if (p.size() > 1 && o.size() > 1) {
      // Every pairing of a peer repetition with a maskcheck repetition lies in [lo, hi].
      s.ratio.lo = *std::min_element(p.begin(), p.end()) / *std::max_element(o.begin(), o.end());
      s.ratio.hi = *std::max_element(p.begin(), p.end()) / *std::min_element(o.begin(), o.end());
      s.ratio.n = static_cast<int>(std::min(p.size(), o.size()));
      s.ratio.spread = Spread::min_max;
    } else if (std::isfinite(peer.stddev_s) && std::isfinite(own->stddev_s) &&
               peer.repetitions > 1 && own->repetitions > 1) {
      // Relative errors add in quadrature for a quotient.
      const double rel = std::hypot(peer.stddev_s / peer.median_s, own->stddev_s / own->median_s);
      s.ratio.lo = s.ratio.median * std::max(0.0, 1 - rel);
      s.ratio.hi = s.ratio.median * (1 + rel);
      s.ratio.n = std::min(peer.repetitions, own->repetitions);
      s.ratio.spread = Spread::stddev;
    } else {
      s.ratio.n = std::max(1, std::min(std::max(peer.repetitions, static_cast<int>(p.size())),
                                       std::max(own->repetitions, static_cast<int>(o.size()))));
    }
    out.push_back(s);
  }
  return out;
}

Limits measured_limits(const BenchDoc& bench) {
  Limits l;
  l.cpu_bandwidth = probe_or_context(bench, "ceiling/cpu/triad", "bytes_per_second",
                                     "cpu.triad_bandwidth_gbps", "GB/s", 1e9, "B/s");
  l.cpu_fma = probe_or_context(bench, "ceiling/cpu/fma", "FLOPS", "cpu.fma_peak_gflops", "GFLOP/s",
                               1e9, "FLOP/s");
  l.gpu_bandwidth = probe_or_context(bench, "ceiling/cuda/d2d_copy", "bytes_per_second",
                                     "cuda.copy_bandwidth_gbps", "GB/s", 1e9, "B/s");
  return l;
}

std::vector<Fraction> limit_fractions(const BenchDoc& bench, const Limits& limits) {
  std::vector<Fraction> out;
  for (const auto& r : bench.rows) {
    if (!r.ok() || is_probe_row(r) || !starts_with(r.impl, "maskcheck")) continue;
    const auto metric = throughput_metric(r);
    if (!metric) continue;
    Fraction f;
    f.row = &r;
    const Limit* limit = nullptr;
    if (metric->counter == "useful_FLOPS" && is_cpu_row(r)) {
      f.kind = Fraction::Kind::fma;
      limit = &limits.cpu_fma;
    } else if (metric->counter == "bytes_per_second") {
      f.kind = Fraction::Kind::bandwidth;
      limit = is_cpu_row(r) ? &limits.cpu_bandwidth : &limits.gpu_bandwidth;
    }
    if (!limit || !limit->ok()) continue;
    f.achieved = counter_stat(r, metric->counter, metric->scale);
    if (!f.achieved.ok()) continue;
    f.fraction = f.achieved;
    f.fraction.median /= limit->value;
    f.fraction.lo /= limit->value;
    f.fraction.hi /= limit->value;
    out.push_back(f);
  }
  return out;
}

}  // namespace maskcheck::reports
