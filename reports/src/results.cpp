#include "maskcheck/reports/results.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
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

// The units doc_kind accepts (an unknown one is refused there, not read as seconds).
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

namespace {

// Checks the fields the reports, the charts and compare read, so that a corrupt or hostile file
// is refused with its name and the field (results[3].status) instead of a JSON library error, and
// nothing downstream meets a value of the wrong type.
class Fields {
 public:
  explicit Fields(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const json& v, const std::string& want) const {
    std::string shown = v.dump();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    throw std::runtime_error(source_ + ": field " + path + " must be " + want + ", is " +
                             std::string(v.type_name()) + " " + shown);
  }
  [[noreturn]] void missing(const std::string& path, const std::string& want) const {
    throw std::runtime_error(source_ + ": field " + path + " is missing (" + want + ")");
  }
  const json* get(const json& obj, const std::string& path, const char* key, bool required,
                  const std::string& want) const {
    if (!obj.contains(key)) {
      if (required) missing(path + key, want);
      return nullptr;
    }
    return &obj.at(key);
  }
  void object(const json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, v, "an object");
  }
  void array(const json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, v, "an array");
  }
  void string(const json& obj, const std::string& path, const char* key,
              bool required = false) const {
    if (const json* v = get(obj, path, key, required, "a string"); v && !v->is_string())
      fail(path + key, *v, "a string");
  }
  void boolean(const json& obj, const std::string& path, const char* key) const {
    if (const json* v = get(obj, path, key, false, "true or false"); v && !v->is_boolean())
      fail(path + key, *v, "true or false");
  }
  void number(const json& obj, const std::string& path, const char* key, bool nullable) const {
    if (const json* v = get(obj, path, key, false, "a number");
        v && !(v->is_number() || (nullable && v->is_null())))
      fail(path + key, *v, nullable ? "a number or null" : "a number");
  }
  // A count the reports print as int: an integer in [0, 2^31).
  void count(const json& v, const std::string& path) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
        v.get<std::int64_t>() > std::numeric_limits<int>::max())
      fail(path, v, "an integer in [0, 2147483647]");
  }
  void count(const json& obj, const std::string& path, const char* key,
             bool required = false) const {
    if (const json* v = get(obj, path, key, required, "an integer")) count(*v, path + key);
  }
  void unsigned_integer(const json& obj, const std::string& path, const char* key,
                        bool required) const {
    if (const json* v = get(obj, path, key, required, "an unsigned integer");
        v && !(v->is_number_unsigned() || (v->is_number_integer() && v->get<std::int64_t>() >= 0)))
      fail(path + key, *v, "an unsigned integer");
  }
  void strings(const json& obj, const std::string& path, const char* key) const {
    const json* v = get(obj, path, key, false, "an array of strings");
    if (!v) return;
    array(*v, path + key);
    for (std::size_t i = 0; i < v->size(); ++i)
      if (!(*v)[i].is_string())
        fail(path + key + "[" + std::to_string(i) + "]", (*v)[i], "a string");
  }
  // [count, ...]
  void count_array(const json& obj, const std::string& path, const char* key) const {
    const json* v = get(obj, path, key, false, "an array of integers");
    if (!v) return;
    array(*v, path + key);
    for (std::size_t i = 0; i < v->size(); ++i)
      count((*v)[i], path + key + "[" + std::to_string(i) + "]");
  }
  // {name: count}
  void counts(const json& obj, const std::string& path, const char* key) const {
    const json* v = get(obj, path, key, false, "an object of counts");
    if (!v) return;
    object(*v, path + key);
    for (const auto& [k, n] : v->items()) count(n, path + key + "[\"" + k + "\"]");
  }

 private:
  std::string source_;
};

void validate_verify(const json& doc, const Fields& f) {
  f.unsigned_integer(doc, "", "seed", false);
  f.count(doc, "", "cases", false);
  f.string(doc, "", "replay");
  f.number(doc, "", "duration_s", false);
  f.boolean(doc, "", "strict");
  f.number(doc, "", "max_size", false);
  f.string(doc, "", "size");
  if (doc.contains("size") && doc.at("size") != "small" && doc.at("size") != "medium" &&
      doc.at("size") != "large")
    f.fail("size", doc.at("size"), "small, medium or large");
  f.count(doc, "", "chunk_cases");
  f.count(doc, "", "chunk");
  if (const json* sh = f.get(doc, "", "shard", false, "")) {  // verify --shard K/N
    f.object(*sh, "shard");
    f.count(*sh, "shard.", "index", true);
    f.count(*sh, "shard.", "count", true);
    f.string(*sh, "shard.", "run", true);
  }
  if (const json* sh = f.get(doc, "", "shards", false, "")) {  // merged shards
    f.object(*sh, "shards");
    f.count(*sh, "shards.", "count", true);
    f.count_array(*sh, "shards.", "merged");
    f.count_array(*sh, "shards.", "missing");
  }
  if (const json* about = f.get(doc, "", "about", false, "")) {
    f.object(*about, "about");
    for (const char* key : {"date", "commit", "build_type", "compiler", "cpu", "os"})
      f.string(*about, "about.", key);
    f.boolean(*about, "about.", "dirty");
    f.count(*about, "about.", "cores");
  }
  if (const json* summary = f.get(doc, "", "summary", false, "")) {
    f.object(*summary, "summary");
    for (const char* key : {"passed", "deviation", "failed", "error", "skipped"})
      f.count(*summary, "summary.", key);
  }
  const json* results = f.get(doc, "", "results", true, "an array of property results");
  f.array(*results, "results");
  for (std::size_t i = 0; i < results->size(); ++i) {
    const json& r = (*results)[i];
    const std::string at = "results[" + std::to_string(i) + "]";
    f.object(r, at);
    const std::string p = at + ".";
    f.string(r, p, "implementation", true);
    f.string(r, p, "property", true);
    f.string(r, p, "status", true);
    static const std::set<std::string> statuses{"passed", "failed", "skipped", "error",
                                                "deviation"};
    if (!statuses.count(r.at("status").get<std::string>()))
      f.fail(p + "status", r.at("status"), "passed, failed, skipped, error or deviation");
    f.string(r, p, "op");
    f.count(r, p, "cases");
    f.count(r, p, "skipped_cases");
    f.number(r, p, "seconds", false);
    f.number(r, p, "seed", false);
    f.string(r, p, "message");
    f.string(r, p, "replay");
    f.strings(r, p, "counterexample_files");
    f.counts(r, p, "deviations");
    f.counts(r, p, "skip_reasons");
    f.counts(r, p, "coverage");
    f.count_array(r, p, "chunks");
    f.count_array(r, p, "failed_chunks");
    f.count(r, p, "plan_index");
    if (const json* ce = f.get(r, p, "counterexample", false, "")) {
      f.array(*ce, p + "counterexample");
      for (std::size_t k = 0; k < ce->size(); ++k) {
        const std::string q = p + "counterexample[" + std::to_string(k) + "]";
        f.object((*ce)[k], q);
        f.string((*ce)[k], q + ".", "type", true);
        f.string((*ce)[k], q + ".", "value", true);
      }
    }
    if (const json* me = f.get(r, p, "max_errors", false, "")) {
      f.array(*me, p + "max_errors");
      for (std::size_t k = 0; k < me->size(); ++k) {
        const std::string q = p + "max_errors[" + std::to_string(k) + "]";
        f.object((*me)[k], q);
        f.string((*me)[k], q + ".", "tensor");
        for (const char* key : {"max_abs_err", "max_rel_err", "max_ratio_to_bound"})
          f.number((*me)[k], q + ".", key, true);
      }
    }
  }
  if (const json* k = f.get(doc, "", "kill_rate", false, "")) {
    f.object(*k, "kill_rate");
    f.count(*k, "kill_rate.", "killed");
    f.count(*k, "kill_rate.", "total");
  }
  if (const json* m = f.get(doc, "", "mutants", false, "")) {
    f.array(*m, "mutants");
    for (std::size_t i = 0; i < m->size(); ++i) {
      const std::string q = "mutants[" + std::to_string(i) + "]";
      f.object((*m)[i], q);
      f.string((*m)[i], q + ".", "name");
      f.string((*m)[i], q + ".", "bug");
      f.boolean((*m)[i], q + ".", "killed");
      f.strings((*m)[i], q + ".", "killed_by");
    }
  }
}

void validate_bench(const json& doc, const Fields& f) {
  f.object(doc.at("context"), "context");
  const json& rows = doc.at("benchmarks");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const json& b = rows[i];
    const std::string at = "benchmarks[" + std::to_string(i) + "]";
    f.object(b, at);
    const std::string p = at + ".";
    for (const char* key : {"name", "run_name", "run_type", "aggregate_name", "aggregate_unit",
                            "label", "error_message", "time_unit"})
      f.string(b, p, key);
    if (!b.contains("name") && !b.contains("run_name")) f.missing(p + "name", "the row's name");
    f.boolean(b, p, "error_occurred");
    f.number(b, p, "real_time", true);
    f.number(b, p, "cpu_time", true);
    f.count(b, p, "repetitions");
    if (b.contains("time_unit")) {
      const std::string u = b.at("time_unit");
      if (u != "ns" && u != "us" && u != "ms" && u != "s")
        f.fail(p + "time_unit", b.at("time_unit"), "ns, us, ms or s (Google Benchmark's units)");
    }
    if (b.contains("run_type")) {
      const std::string t = b.at("run_type");
      if (t != "iteration" && t != "aggregate")
        f.fail(p + "run_type", b.at("run_type"), "iteration or aggregate");
    }
  }
}

}  // namespace

DocKind doc_kind(const json& doc, const std::string& source) {
  const Fields f(source);
  if (doc.is_object() && doc.contains("schema") && doc.at("schema").is_string() &&
      doc.at("schema").get<std::string>().rfind("maskcheck.verify/", 0) == 0) {
    if (doc.at("schema") != "maskcheck.verify/1")
      f.fail("schema", doc.at("schema"), "maskcheck.verify/1 (a newer maskcheck wrote it?)");
    validate_verify(doc, f);
    return DocKind::verify;
  }
  if (doc.is_object() && doc.contains("context") && doc.contains("benchmarks") &&
      doc.at("benchmarks").is_array()) {
    validate_bench(doc, f);
    return DocKind::bench;
  }
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
