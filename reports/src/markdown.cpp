#include "maskcheck/reports/markdown.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "maskcheck/reports/analysis.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/reports/shards.hpp"
#include "text.hpp"

namespace maskcheck::reports {
namespace {

using nlohmann::json;

std::string cell(const json& r) {
  const std::string c = verify_cell(r);
  return c == "FAIL" || c == "ERROR" ? "**" + c + "**" : c;
}

void verify_section(std::ostringstream& os, const json& doc) {
  // doc_kind validated the types; absent fields print as "?".
  const json about = doc.value("about", json::object());
  os << "## Verification\n\n";
  os << "| | |\n|---|---|\n";
  os << "| date | " << md_text(about.value("date", "?")) << " |\n";
  os << "| commit | " << md_code(about.value("commit", "?"))
     << (about.value("dirty", false) ? " (dirty)" : "") << " |\n";
  os << "| build | " << md_text(about.value("build_type", "?")) << ", "
     << md_text(about.value("compiler", "?")) << " |\n";
  os << "| machine | " << md_text(about.value("cpu", "?")) << ", " << about.value("cores", 0)
     << " cores, " << md_text(about.value("os", "?")) << " |\n";
  os << "| seed | " << (doc.contains("seed") ? doc.at("seed").dump() : "?") << " ("
     << doc.value("cases", 0) << " cases per property, size " << md_text(doc.value("size", "small"))
     << ") |\n";
  if (const std::string note = shards_note(doc); !note.empty())
    os << "| shards | " << md_text(note) << " |\n";
  os << "| replay | " << md_code(doc.value("replay", "")) << " |\n\n";
  const json s = doc.value("summary", json::object());
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
  for (const auto& i : impls) os << " " << md_text(i) << " |";
  os << "\n|---|";
  for (std::size_t k = 0; k < impls.size(); ++k) os << "---|";
  os << "\n";
  for (const auto& p : props) {
    os << "| " << md_text(p) << " |";
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
    os << "\n**" << md_text(r.at("implementation").get<std::string>()) << " — "
       << md_text(r.at("property").get<std::string>()) << "**\n\n";
    std::string block = r.value("message", "") + "\n";
    if (r.contains("counterexample"))
      for (const auto& ce : r.at("counterexample"))
        block += ce.at("type").get<std::string>() + ": " + ce.at("value").get<std::string>() + "\n";
    os << md_block(block) << "replay: " << md_code(r.value("replay", "")) << "\n";
    if (r.contains("failed_chunks") && r.at("failed_chunks").size() > 1)
      os << "\nalso failed in chunks " << md_text(chunks_text(r.at("failed_chunks"), 1))
         << " (replay one with `--chunk J`)\n";
    for (const auto& f : r.value("counterexample_files", json::array()))
      os << "\ncounterexample file: " << md_code(f.get<std::string>()) << "\n";
  }
  any = false;
  for (const auto& r : doc.at("results")) {
    const json reasons = r.value("skip_reasons", json::object());  // outlives the loop
    for (const auto& [reason, n] : reasons.items()) {
      if (!any)
        os << "\n### Skipped cases\n\n| implementation | property | cases | reason "
              "|\n|---|---|---|---|\n";
      any = true;
      os << "| " << md_text(r.at("implementation").get<std::string>()) << " | "
         << md_text(r.at("property").get<std::string>()) << " | " << n.get<int>() << " | "
         << md_text(reason) << " |\n";
    }
  }
}

// The headline: maskcheck against LibTorch in the same run, with the fraction of the measured
// limit that maskcheck reaches (analysis.hpp computes both, as for the HTML charts).
void headline(std::ostringstream& os, const BenchDoc& bench) {
  const auto speedups = torch_speedups(bench);
  if (speedups.empty()) return;
  const Limits limits = measured_limits(bench);
  const auto fractions = limit_fractions(bench, limits);
  os << "### Headline: maskcheck against LibTorch\n\n"
        "| benchmark | maskcheck | LibTorch | speedup (range) | fraction of the measured limit "
        "|\n|---|--:|--:|--:|---|\n";
  for (const auto& s : speedups) {
    std::string fraction = "-";
    for (const auto& f : fractions)
      if (f.row == s.own && f.fraction.ok())
        fraction = fixed(f.fraction.median, 2) + " of " +
                   (f.kind == Fraction::Kind::fma ? "FMA peak (useful FLOP/s)" : "bandwidth");
    std::string range;
    if (std::isfinite(s.ratio.lo) && std::isfinite(s.ratio.hi))
      range = " (" + fixed(s.ratio.lo, 2) + "-" + fixed(s.ratio.hi, 2) + ")";
    os << "| " << md_text(s.own->group) << " | " << format_seconds(s.own->median_s) << " | "
       << format_seconds(s.peer->median_s) << " " << md_text(s.peer->impl) << " | **"
       << fixed(s.ratio.median, 2) << "x**" << range << " | " << fraction << " |\n";
  }
  os << "\nMedians of the repetitions; the range pairs the slowest and fastest repetitions. "
        "Limits: ";
  std::string sep;
  for (const Limit* l : {&limits.cpu_bandwidth, &limits.cpu_fma, &limits.gpu_bandwidth})
    if (l->ok()) {
      os << sep << format_si(l->value) << l->unit << " from " << l->source;
      sep = "; ";
    }
  os << (sep.empty() ? "none measured" : "") << ".\n\n";
}

void bench_section(std::ostringstream& os, const json& doc) {
  const json& ctx = doc.at("context");
  os << "## Benchmarks\n\n| | |\n|---|---|\n";
  for (const auto& [k, v] : ctx.items())
    if (v.is_string() || v.is_number())
      os << "| " << md_text(k) << " | " << md_text(v.is_string() ? v.get<std::string>() : v.dump())
         << " |\n";
  os << "\n";
  const BenchDoc bench = parse_bench(doc);
  headline(os, bench);
  os << "### Every row\n\n";
  std::string group;
  double own = 0;
  os << "| benchmark | implementation | median | cv | counters | maskcheck speedup "
        "|\n|---|---|---|---|---|---|\n";
  for (const auto& r : bench.rows) {
    if (r.group != group) {
      group = r.group;
      const BenchRow* o = bench.find(group + "/maskcheck");
      own = o && o->ok() ? o->median_s : 0;
    }
    std::string counters = r.error.empty() ? "" : "skipped: " + r.error;
    for (const auto& [k, v] : r.counters)
      counters += (counters.empty() ? "" : ", ") + k + "=" + format_si(v);
    std::string cv = "-";
    if (r.seconds.size() > 1) {
      double mean = 0, var = 0;
      for (double t : r.seconds) mean += t / static_cast<double>(r.seconds.size());
      for (double t : r.seconds) var += (t - mean) * (t - mean);
      cv = fixed(100 * std::sqrt(var / static_cast<double>(r.seconds.size() - 1)) / mean, 1) + "%";
    }
    const std::string speedup =
        r.impl != "maskcheck" && own > 0 && r.ok() ? fixed(r.median_s / own, 2) + "x" : "";
    os << "| " << md_text(r.group) << " | " << md_text(r.impl) << " | "
       << (r.ok() ? format_seconds(r.median_s) : "-") << " | " << cv << " | " << md_text(counters)
       << " | " << speedup << " |\n";
  }
  os << "\n";
}

}  // namespace

std::string markdown_report(const std::vector<json>& docs) {
  std::ostringstream os;
  os << "# maskcheck report\n\n";
  for (const auto& doc : docs) {
    if (doc_kind(doc) == DocKind::verify)
      verify_section(os, doc);
    else
      bench_section(os, doc);
  }
  return os.str();
}

}  // namespace maskcheck::reports
