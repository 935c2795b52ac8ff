#include "maskcheck/reports/results.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace maskcheck::reports {
namespace {

using nlohmann::json;

// Google Benchmark names end in "/manual_time" or "/real_time" when a timing mode is set.
std::string base_name(std::string n) {
  for (const std::string s : {"/manual_time", "/real_time"})
    if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0)
      n.resize(n.size() - s.size());
  return n;
}

double to_seconds(double t, const std::string& unit) {
  if (unit == "ns") return t * 1e-9;
  if (unit == "us") return t * 1e-6;
  if (unit == "ms") return t * 1e-3;
  return t;
}

bool is_standard_field(const std::string& k) {
  static const std::vector<std::string> standard{
      "name",           "run_name",         "run_type",
      "repetitions",    "threads",          "iterations",
      "real_time",      "cpu_time",         "time_unit",
      "family_index",   "aggregate_name",   "aggregate_unit",
      "label",          "repetition_index", "per_family_instance_index",
      "error_occurred", "error_message"};
  return std::find(standard.begin(), standard.end(), k) != standard.end();
}

}  // namespace

DocKind doc_kind(const json& doc, const std::string& source) {
  if (doc.is_object() && doc.value("schema", "") == "maskcheck.verify/1") return DocKind::verify;
  if (doc.is_object() && doc.contains("context") && doc.contains("benchmarks") &&
      doc.at("benchmarks").is_array())
    return DocKind::bench;
  throw std::runtime_error(
      source +
      ": unknown result file (expected maskcheck.verify/1 from `maskcheck "
      "verify --json` or Google Benchmark JSON from `maskcheck bench --json`)");
}

std::optional<double> BenchRow::counter(const std::string& key) const {
  const auto it = counters.find(key);
  if (it == counters.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

const BenchRow* BenchDoc::find(const std::string& name) const {
  for (const auto& r : rows)
    if (r.name == name) return &r;
  return nullptr;
}

BenchDoc parse_bench(const json& doc) {
  if (doc_kind(doc) != DocKind::bench)
    throw std::runtime_error("not Google Benchmark JSON (a maskcheck.verify/1 file?)");
  BenchDoc out;
  out.context = doc.at("context");
  std::map<std::string, std::size_t> index;
  std::map<std::string, double> median_aggregate;
  std::map<std::string, std::map<std::string, double>> median_counters;
  auto row = [&](const std::string& name) -> BenchRow& {
    const auto [it, added] = index.emplace(name, out.rows.size());
    if (added) {
      BenchRow r;
      r.name = name;
      const auto slash = name.rfind('/');
      r.group = slash == std::string::npos ? std::string() : name.substr(0, slash);
      r.impl = slash == std::string::npos ? name : name.substr(slash + 1);
      out.rows.push_back(std::move(r));
    }
    return out.rows[it->second];
  };
  for (const auto& b : doc.at("benchmarks")) {
    if (!b.is_object()) throw std::runtime_error("benchmark entry is not an object");
    const std::string name = base_name(b.value("run_name", b.value("name", std::string())));
    if (name.empty()) throw std::runtime_error("benchmark entry without a name");
    BenchRow& r = row(name);
    if (b.contains("label") && b.at("label").is_string()) r.label = b.at("label");
    if (b.value("error_occurred", false)) {
      r.error = b.value("error_message", std::string("error"));
      continue;
    }
    const double t = b.contains("real_time") && b.at("real_time").is_number()
                         ? to_seconds(b.at("real_time").get<double>(), b.value("time_unit", "ns"))
                         : std::numeric_limits<double>::quiet_NaN();
    if (b.contains("repetitions") && b.at("repetitions").is_number_integer())
      r.repetitions = std::max(r.repetitions, b.at("repetitions").get<int>());
    const std::string run_type = b.value("run_type", "iteration");
    if (run_type == "aggregate") {
      if (b.value("aggregate_name", "") == "stddev") {
        r.stddev_s = t;
        for (const auto& [k, v] : b.items())
          if (!is_standard_field(k) && v.is_number()) r.counter_stddev[k] = v.get<double>();
      }
      if (b.value("aggregate_name", "") != "median") continue;
      median_aggregate[name] = t;
      for (const auto& [k, v] : b.items())
        if (!is_standard_field(k))
          median_counters[name][k] =
              v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    r.seconds.push_back(t);
    // A counter Google Benchmark wrote as nan/inf reads back as null (io.cpp): keep it as NaN.
    for (const auto& [k, v] : b.items())
      if (!is_standard_field(k) && (v.is_number() || v.is_null()))
        r.counter_samples[k].push_back(v.is_number() ? v.get<double>()
                                                     : std::numeric_limits<double>::quiet_NaN());
  }
  for (auto& r : out.rows) {
    if (!r.error.empty()) {
      r.seconds.clear();
      r.counter_samples.clear();
      r.stddev_s = std::numeric_limits<double>::quiet_NaN();
      r.counter_stddev.clear();
      continue;
    }
    if (!r.seconds.empty()) {
      r.median_s = median(r.seconds);
      for (const auto& [k, v] : r.counter_samples) r.counters[k] = median(v);
    } else if (const auto it = median_aggregate.find(r.name); it != median_aggregate.end()) {
      r.median_s = it->second;
      r.counters = median_counters[r.name];
    }
  }
  return out;
}

std::vector<std::string> name_components(const std::string& name) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t slash = name.find('/', pos);
    out.push_back(name.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos));
    if (slash == std::string::npos) return out;
    pos = slash + 1;
  }
}

double median(std::vector<double> v) {
  return quantile(std::move(v), 0.5);
}

double quantile(std::vector<double> v, double q) {
  std::erase_if(v, [](double x) { return std::isnan(x); });
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

std::string format_si(double x) {
  if (!std::isfinite(x)) return x != x ? "nan" : (x > 0 ? "inf" : "-inf");
  const char* units[] = {"", "k", "M", "G", "T", "P"};
  int u = 0;
  double a = std::fabs(x);
  while (a >= 999.5 && u < 5) {
    a /= 1000.0;
    x /= 1000.0;
    ++u;
  }
  std::ostringstream os;
  os.precision(3);
  os << x << units[u];
  return os.str();
}

std::string format_seconds(double s) {
  if (!std::isfinite(s)) return "-";
  const char* unit = "s";
  double v = s;
  if (std::fabs(s) < 1e-6) {
    v = s * 1e9;
    unit = "ns";
  } else if (std::fabs(s) < 1e-3) {
    v = s * 1e6;
    unit = "us";
  } else if (std::fabs(s) < 1) {
    v = s * 1e3;
    unit = "ms";
  }
  std::ostringstream os;
  os.precision(3);
  os << v << " " << unit;
  return os.str();
}

std::string verify_cell(const json& r) {
  const std::string status = r.at("status");
  const int cases = r.value("cases", 0);
  if (status == "passed") {
    std::string s = "pass " + std::to_string(cases);
    if (r.value("skipped_cases", 0) > 0)
      s += " (" + std::to_string(r.at("skipped_cases").get<int>()) + " skipped)";
    return s;
  }
  if (status == "deviation") {
    std::string s = "pass " + std::to_string(cases) + ", deviation";
    if (r.contains(
            "deviations"))  // not r.value(...).items(): its temporary would not outlive the loop
      for (const auto& [name, n] : r.at("deviations").items()) s += " " + name;
    return s;
  }
  if (status == "failed") return "FAIL";
  if (status == "error") return "ERROR";
  return "skip";
}

}  // namespace maskcheck::reports
