#include "maskcheck/reports/markdown.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace maskcheck::reports {
namespace {

using nlohmann::json;

std::string escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += "<br>";
    else
      out += c;
  }
  return out;
}

std::string cell(const json& r) {
  const std::string status = r.at("status");
  if (status == "passed") {
    std::string s = "pass " + std::to_string(r.at("cases").get<int>());
    if (r.value("skipped_cases", 0) > 0)
      s += " (" + std::to_string(r.at("skipped_cases").get<int>()) + " skipped)";
    return s;
  }
  if (status == "deviation") {
    std::string s = "pass " + std::to_string(r.at("cases").get<int>()) + ", deviation";
    for (const auto& [name, n] : r.value("deviations", json::object()).items()) s += " " + name;
    return s;
  }
  if (status == "failed") return "**FAIL**";
  if (status == "error") return "**ERROR**";
  return "skip";
}

void verify_section(std::ostringstream& os, const json& doc) {
  const json& about = doc.at("about");
  os << "## Verification\n\n";
  os << "| | |\n|---|---|\n";
  os << "| date | " << about.value("date", "?") << " |\n";
  os << "| commit | `" << about.value("commit", "?") << "`"
     << (about.value("dirty", false) ? " (dirty)" : "") << " |\n";
  os << "| build | " << about.value("build_type", "?") << ", "
     << escape(about.value("compiler", "?")) << " |\n";
  os << "| machine | " << escape(about.value("cpu", "?")) << ", " << about.value("cores", 0)
     << " cores, " << escape(about.value("os", "?")) << " |\n";
  os << "| seed | " << doc.at("seed").get<std::uint64_t>() << " (" << doc.at("cases").get<int>()
     << " cases per property) |\n";
  os << "| replay | `" << doc.value("replay", "") << "` |\n\n";
  const json& s = doc.at("summary");
  os << "**" << s.value("passed", 0) << " passed, " << s.value("deviation", 0)
     << " passed with named deviations, " << s.value("failed", 0) << " failed, "
     << s.value("error", 0) << " errors, " << s.value("skipped", 0) << " skipped** in "
     << static_cast<int>(doc.value("duration_s", 0.0)) << " s.\n\n";

  std::vector<std::string> impls, props;
  for (const auto& r : doc.at("results")) {
    const std::string i = r.at("implementation"), p = r.at("property");
    if (std::find(impls.begin(), impls.end(), i) == impls.end()) impls.push_back(i);
    if (std::find(props.begin(), props.end(), p) == props.end()) props.push_back(p);
  }
  os << "| property |";
  for (const auto& i : impls) os << " " << i << " |";
  os << "\n|---|";
  for (std::size_t k = 0; k < impls.size(); ++k) os << "---|";
  os << "\n";
  for (const auto& p : props) {
    os << "| " << p << " |";
    for (const auto& i : impls) {
      std::string c = "-";
      for (const auto& r : doc.at("results"))
        if (r.at("implementation") == i && r.at("property") == p) c = cell(r);
      os << " " << c << " |";
    }
    os << "\n";
  }
  bool any = false;
  for (const auto& r : doc.at("results")) {
    if (r.at("status") != "failed" && r.at("status") != "error") continue;
    if (!any) os << "\n### Failures\n";
    any = true;
    os << "\n**" << r.at("implementation").get<std::string>() << " — "
       << r.at("property").get<std::string>() << "**\n\n```\n"
       << r.value("message", "") << "\n";
    if (r.contains("counterexample"))
      for (const auto& ce : r.at("counterexample"))
        os << ce.at("type").get<std::string>() << ": " << ce.at("value").get<std::string>() << "\n";
    os << "```\nreplay: `" << r.value("replay", "") << "`\n";
  }
  any = false;
  for (const auto& r : doc.at("results"))
    for (const auto& [reason, n] : r.at("skip_reasons").items()) {
      if (!any)
        os << "\n### Skipped cases\n\n| implementation | property | cases | reason "
              "|\n|---|---|---|---|\n";
      any = true;
      os << "| " << r.at("implementation").get<std::string>() << " | "
         << r.at("property").get<std::string>() << " | " << n.get<int>() << " | " << escape(reason)
         << " |\n";
    }
}

std::string si(double x) {
  const char* units[] = {"", "k", "M", "G", "T", "P"};
  int u = 0;
  double a = std::fabs(x);
  while (a >= 1000.0 && u < 5) {
    a /= 1000.0;
    x /= 1000.0;
    ++u;
  }
  std::ostringstream os;
  os.precision(a >= 100 ? 4 : 3);
  os << x << units[u];
  return os.str();
}

std::string fixed(double x, int digits) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << x;
  return os.str();
}

// Google Benchmark names end in "/manual_time" or "/real_time" when a timing mode is set.
std::string base_name(std::string n) {
  for (const char* suffix : {"/manual_time", "/real_time"}) {
    const std::string s(suffix);
    if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0)
      n.resize(n.size() - s.size());
  }
  return n;
}

double to_seconds(double t, const std::string& unit) {
  if (unit == "ns") return t * 1e-9;
  if (unit == "us") return t * 1e-6;
  if (unit == "ms") return t * 1e-3;
  return t;
}

struct BenchRow {
  std::string group, impl;
  double median_s = 0, cv = -1;
  std::vector<std::pair<std::string, double>> counters;
};

void bench_section(std::ostringstream& os, const json& doc) {
  const json& ctx = doc.at("context");
  os << "## Benchmarks\n\n| | |\n|---|---|\n";
  for (const auto& [k, v] : ctx.items())
    if (v.is_string() || v.is_number()) os << "| " << k << " | " << escape(v.dump()) << " |\n";
  os << "\n";
  // Median rows (or the single run when there are no aggregates), keyed by base name.
  std::vector<BenchRow> rows;
  auto find = [&](const std::string& name) -> BenchRow& {
    for (auto& r : rows)
      if (r.group + "/" + r.impl == name) return r;
    BenchRow r;
    const auto slash = name.rfind('/');
    r.group = slash == std::string::npos ? name : name.substr(0, slash);
    r.impl = slash == std::string::npos ? name : name.substr(slash + 1);
    rows.push_back(r);
    return rows.back();
  };
  const bool has_aggregates = [&] {
    for (const auto& b : doc.at("benchmarks"))
      if (b.value("run_type", "") == "aggregate") return true;
    return false;
  }();
  for (const auto& b : doc.at("benchmarks")) {
    if (b.contains("error_occurred") && b.at("error_occurred").get<bool>()) {
      BenchRow& r = find(base_name(b.value("run_name", b.value("name", "?"))));
      r.counters.push_back({"skipped: " + b.value("error_message", ""), 0});
      continue;
    }
    const std::string agg = b.value("aggregate_name", "");
    if (has_aggregates && agg != "median" && agg != "cv") continue;
    BenchRow& r = find(base_name(b.value("run_name", b.value("name", "?"))));
    if (agg == "cv") {
      r.cv = b.value("real_time", 0.0);
      continue;
    }
    r.median_s = to_seconds(b.value("real_time", 0.0), b.value("time_unit", "ns"));
    for (const auto& [k, v] : b.items()) {
      static const std::vector<std::string> standard{
          "name",           "run_name",         "run_type",
          "repetitions",    "repetition_index", "threads",
          "iterations",     "real_time",        "cpu_time",
          "time_unit",      "family_index",     "per_family_instance_index",
          "aggregate_name", "aggregate_unit",   "label"};
      if (v.is_number() && std::find(standard.begin(), standard.end(), k) == standard.end())
        r.counters.push_back({k, v.get<double>()});
    }
  }
  std::string group;
  double own = 0;
  os << "| benchmark | implementation | median | cv | counters | maskcheck speedup "
        "|\n|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    if (r.group != group) {
      group = r.group;
      own = 0;
      for (const auto& o : rows)
        if (o.group == group && o.impl == "maskcheck") own = o.median_s;
    }
    std::string counters;
    for (const auto& [k, v] : r.counters)
      counters += (counters.empty() ? "" : ", ") + k + (v != 0 ? "=" + si(v) : "");
    const std::string speedup =
        r.impl != "maskcheck" && own > 0 && r.median_s > 0 ? fixed(r.median_s / own, 2) + "x" : "";
    os << "| " << r.group << " | " << r.impl << " | "
       << (r.median_s > 0 ? si(r.median_s) + "s" : "-") << " | "
       << (r.cv >= 0 ? fixed(100 * r.cv, 1) + "%" : "-") << " | " << escape(counters) << " | "
       << speedup << " |\n";
  }
  os << "\n";
}

}  // namespace

std::string markdown_report(const std::vector<json>& docs) {
  std::ostringstream os;
  os << "# maskcheck report\n\n";
  for (const auto& doc : docs) {
    const std::string schema = doc.value("schema", "");
    if (schema == "maskcheck.verify/1") {
      verify_section(os, doc);
    } else if (doc.contains("context") && doc.contains("benchmarks")) {
      bench_section(os, doc);
    } else {
      throw std::runtime_error(
          "unknown result file (expected maskcheck.verify/1 or Google "
          "Benchmark JSON)");
    }
  }
  return os.str();
}

}  // namespace maskcheck::reports
