#include "maskcheck/reports/compare.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "maskcheck/reports/analysis.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/reports/shards.hpp"
#include "text.hpp"

#include <re2/re2.h>

namespace maskcheck::reports {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_probe(const std::string& name) {
  return name.rfind("ceiling/", 0) == 0;
}

std::string plural(std::size_t n, const std::string& one, const std::string& many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// 0.05 -> "5 %", 0.025 -> "2.5 %".
std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g %%", fraction * 100);
  return buf;
}

// +20.3 %, -4.1 %, +0.0 %.
std::string signed_percent(double change) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f %%", change * 100);
  return buf;
}

std::string ratio_text(double r) {
  return reports::ratio_text(r, 3, "x");
}

std::string p_text(double p) {
  if (!std::isfinite(p)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2g", p);
  return buf;
}

std::string alpha_text(double a) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", a);
  return buf;
}

// Text from the result files, escaped for the Markdown comment (text.hpp).
std::string cell(const std::string& s) {
  return md_text(s);
}

std::string code(const std::string& s) {
  return md_code(s);
}

// The first line of a message, at most `max` characters.
std::string first_line(const std::string& s, std::size_t max = 160) {
  std::string line = s.substr(0, s.find('\n'));
  if (line.size() > max) line = line.substr(0, max - 3) + "...";
  return line;
}

// ---- verify rows ----

struct VerifyRow {
  std::string implementation, property, status, message, skip_reason;
  std::set<std::string> deviations;
};

const std::set<std::string>& known_statuses() {
  static const std::set<std::string> s{"passed", "deviation", "failed", "error", "skipped"};
  return s;
}

std::vector<VerifyRow> verify_rows(const json& doc, const std::string& source) {
  if (!doc.contains("results") || !doc.at("results").is_array())
    throw std::runtime_error(source + ": verify JSON without a results array");
  std::vector<VerifyRow> rows;
  for (const auto& r : doc.at("results")) {
    auto str = [&](const char* key) {
      if (!r.is_object() || !r.contains(key) || !r.at(key).is_string())
        throw std::runtime_error(source + ": a verify result without a string \"" + key + "\"");
      return r.at(key).get<std::string>();
    };
    VerifyRow v{str("implementation"), str("property"), str("status"), {}, {}, {}};
    if (!known_statuses().count(v.status))
      throw std::runtime_error(source + ": unknown status \"" + v.status + "\" of " +
                               v.implementation + " " + v.property);
    if (r.contains("message") && r.at("message").is_string()) v.message = r.at("message");
    if (r.contains("skip_reasons") && r.at("skip_reasons").is_object() &&
        !r.at("skip_reasons").empty())
      v.skip_reason = r.at("skip_reasons").begin().key();
    if (r.contains("deviations") && r.at("deviations").is_object())
      for (const auto& [name, n] : r.at("deviations").items()) v.deviations.insert(name);
    rows.push_back(std::move(v));
  }
  return rows;
}

bool failing(const std::string& s) {
  return s == "failed" || s == "error";
}
bool passing(const std::string& s) {
  return s == "passed" || s == "deviation";
}

PropertyComparison classify(const VerifyRow* b, const VerifyRow& n) {
  PropertyComparison p;
  p.implementation = n.implementation;
  p.property = n.property;
  p.new_status = n.status;
  if (failing(n.status))
    p.detail = first_line(n.message.empty() ? n.status : n.message);
  else if (n.status == "skipped")
    p.detail = first_line(n.skip_reason);
  if (!b) {
    p.change = failing(n.status) ? PropertyChange::failing_untried : PropertyChange::added;
    return p;
  }
  p.base_status = b->status;
  const std::string &bs = b->status, &ns = n.status;
  if (passing(bs) && failing(ns))
    p.change = PropertyChange::regressed;
  else if (failing(bs) && passing(ns))
    p.change = PropertyChange::fixed;
  else if (failing(bs) && failing(ns))
    p.change = PropertyChange::still_failing;
  else if (bs == "skipped" && failing(ns))
    p.change = PropertyChange::failing_untried;
  else if (bs != "skipped" && ns == "skipped")
    p.change = PropertyChange::newly_skipped;
  else if (bs == "skipped" && passing(ns))
    p.change = PropertyChange::unskipped;
  else if (passing(bs) && passing(ns)) {
    for (const auto& d : n.deviations)
      if (!b->deviations.count(d)) p.new_deviations.push_back(d);
    if (!p.new_deviations.empty())
      p.change = PropertyChange::new_deviation;
    else if (bs == "deviation" && ns == "passed")
      p.change = PropertyChange::deviation_gone;
  }
  return p;
}

void compare_verify(Comparison& c, const json& base, const json& next) {
  const auto brows = verify_rows(base, "BASELINE " + c.base_verify_path);
  const auto nrows = verify_rows(next, "NEW " + c.new_verify_path);
  c.base_about = base.value("about", json::object());
  c.new_about = next.value("about", json::object());
  std::map<std::pair<std::string, std::string>, const VerifyRow*> bindex, nindex;
  std::vector<std::string> bimpls, nimpls;
  for (const auto& r : brows) {
    bindex[{r.implementation, r.property}] = &r;
    if (std::find(bimpls.begin(), bimpls.end(), r.implementation) == bimpls.end())
      bimpls.push_back(r.implementation);
  }
  for (const auto& r : nrows) {
    nindex[{r.implementation, r.property}] = &r;
    if (std::find(nimpls.begin(), nimpls.end(), r.implementation) == nimpls.end())
      nimpls.push_back(r.implementation);
  }
  for (const auto& i : nimpls)
    if (std::find(bimpls.begin(), bimpls.end(), i) == bimpls.end()) c.impls_added.push_back(i);
  for (const auto& i : bimpls)
    if (std::find(nimpls.begin(), nimpls.end(), i) == nimpls.end()) c.impls_missing.push_back(i);
  for (const auto& r : nrows) {
    const auto it = bindex.find({r.implementation, r.property});
    c.properties.push_back(classify(it == bindex.end() ? nullptr : it->second, r));
  }
  for (const auto& r : brows)
    if (!nindex.count({r.implementation, r.property})) {
      PropertyComparison p;
      p.implementation = r.implementation;
      p.property = r.property;
      p.base_status = r.status;
      p.change = PropertyChange::missing;
      c.properties.push_back(std::move(p));
    }
}

// ---- benchmark rows ----

std::vector<double> finite(const std::vector<double>& v) {
  std::vector<double> out;
  for (double x : v)
    if (std::isfinite(x)) out.push_back(x);
  return out;
}

// The --gate expression (RE2 syntax: ECMAScript's without backreferences and lookaround).
std::unique_ptr<re2::RE2> compile_gate(const std::string& pattern) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<re2::RE2>(pattern, options);
  if (!re->ok())
    throw std::invalid_argument("--gate '" + pattern +
                                "' is not a regular expression (RE2 syntax): " + re->error());
  return re;
}

BenchComparison compare_row(const BenchRow* b, const BenchRow* n, const CompareOptions& o,
                            const re2::RE2* gate) {
  BenchComparison r;
  r.name = n ? n->name : b->name;
  r.probe = is_probe(r.name);
  r.gated = !r.probe && (!gate || re2::RE2::PartialMatch(r.name, *gate));
  if (b) {
    r.n_base = finite(b->seconds).size();
    if (b->ok()) r.base_median = b->median_s;
  }
  if (n) {
    r.n_new = finite(n->seconds).size();
    if (n->ok()) r.new_median = n->median_s;
  }
  if (!b || !n) {
    r.verdict = b ? BenchVerdict::missing : BenchVerdict::added;
    r.error = b ? b->error : n->error;
    return r;
  }
  if (!n->error.empty()) {
    r.verdict = b->error.empty() ? BenchVerdict::error : BenchVerdict::error_both;
    r.error = n->error;
    return r;
  }
  if (!b->error.empty()) {
    r.verdict = BenchVerdict::baseline_error;
    r.error = b->error;
    return r;
  }
  if (r.base_median > 0 && r.new_median > 0) r.ratio = r.new_median / r.base_median;
  const std::vector<double> bs = finite(b->seconds), ns = finite(n->seconds);
  if (bs.size() < 2 || ns.size() < 2 || !(r.ratio > 0)) {
    r.verdict = BenchVerdict::untested;
    return r;
  }
  r.test = mann_whitney_u(bs, ns);
  const double change = r.ratio - 1;
  if (change > o.max_slowdown)
    r.verdict =
        r.test->p_greater < o.alpha ? BenchVerdict::slower : BenchVerdict::slower_not_significant;
  else if (change < -o.max_slowdown)
    r.verdict =
        r.test->p_less < o.alpha ? BenchVerdict::faster : BenchVerdict::faster_not_significant;
  else
    r.verdict = BenchVerdict::within;
  return r;
}

std::string machine_of(const json& ctx) {
  std::string m = context_text(ctx, "maskcheck.cpu");
  const std::string cores = context_text(ctx, "maskcheck.cores");
  if (!cores.empty()) m += (m.empty() ? "" : ", ") + cores + " cores";
  const std::string gpu = context_text(ctx, "cuda.device");
  if (!gpu.empty()) m += (m.empty() ? "" : ", ") + gpu;
  return m;
}

// Gives the rows of an older maskcheck_bench their current names (current_bench_name: the CUDA
// rows before they began with "cuda/"), so that such a baseline still pairs with NEW. Returns how
// many rows were renamed.
std::size_t adopt_current_names(BenchDoc& d) {
  std::size_t renamed = 0;
  for (auto& r : d.rows) {
    const std::string now = current_bench_name(r.name);
    if (now == r.name) continue;
    r.name = now;
    r.group = current_bench_name(r.group);
    ++renamed;
  }
  return renamed;
}

void compare_bench(Comparison& c, const json& base, const json& next) {
  BenchDoc bd, nd;
  try {
    bd = parse_bench(base);
  } catch (const std::exception& e) {
    throw std::runtime_error("BASELINE " + c.base_bench_path + ": " + e.what());
  }
  try {
    nd = parse_bench(next);
  } catch (const std::exception& e) {
    throw std::runtime_error("NEW " + c.new_bench_path + ": " + e.what());
  }
  c.base_context = bd.context;
  c.new_context = nd.context;
  if (const std::size_t nb = adopt_current_names(bd), nn = adopt_current_names(nd); nb + nn > 0) {
    std::string rows = nb > 0 ? plural(nb, "row", "rows") + " of the baseline" : "";
    if (nn > 0) rows += (nb > 0 ? " and " : "") + plural(nn, "row", "rows") + " of NEW";
    c.notes.push_back(rows + (nb + nn == 1 ? " carries" : " carry") +
                      " names from before every row began with its device (`attention/...`, "
                      "`ceiling/d2d_copy/...`): compared as `cuda/attention/...`, "
                      "`ceiling/cuda/d2d_copy/...`");
  }
  // RE2: linear time in the name and no recursion, so hostile names (30,000 characters) cannot
  // exhaust the stack or the time as a backtracking engine's can.
  std::unique_ptr<re2::RE2> gate;
  if (!c.options.gate.empty()) {
    gate = compile_gate(c.options.gate);
    bool any = false;
    for (const auto* d : {&bd, &nd})
      for (const auto& r : d->rows)
        any = any || (!is_probe(r.name) && re2::RE2::PartialMatch(r.name, *gate));
    if (!any)
      throw std::invalid_argument(
          "--gate '" + c.options.gate +
          "' matches no benchmark row (probes ceiling/... are never gated)");
  }
  for (const auto& r : nd.rows)
    c.bench.push_back(compare_row(bd.find(r.name), &r, c.options, gate.get()));
  for (const auto& r : bd.rows)
    if (!nd.find(r.name)) c.bench.push_back(compare_row(&r, nullptr, c.options, gate.get()));

  // The gated row whose repetitions allow the least evidence: its smallest attainable p.
  std::size_t untested = 0, aggregates_only = 0, gated = 0, min_m = 0, min_n = 0;
  double worst_p = 0;
  for (const auto& r : c.bench) {
    if (r.probe) continue;
    gated += r.gated;
    if (r.verdict == BenchVerdict::untested) {
      ++untested;
      aggregates_only += std::min(r.n_base, r.n_new) == 0;
    }
    if (r.gated && r.test && r.test->exact && smallest_exact_p(r.n_base, r.n_new) > worst_p) {
      worst_p = smallest_exact_p(r.n_base, r.n_new);
      min_m = r.n_base;
      min_n = r.n_new;
    }
  }
  if (untested > aggregates_only)
    c.warnings.push_back(plural(untested - aggregates_only, "row has", "rows have") +
                         " fewer than 2 repetitions on a side and could not be tested (shown "
                         "as untested, never failed): run `maskcheck bench --repetitions 5`");
  if (aggregates_only > 0)
    c.warnings.push_back(plural(aggregates_only, "row", "rows") +
                         " with aggregates only, no repetitions (Google Benchmark's "
                         "--benchmark_report_aggregates_only): write the JSON without it");
  if (worst_p >= c.options.alpha)
    c.warnings.push_back("with " + std::to_string(min_m) + " vs " + std::to_string(min_n) +
                         " repetitions no p-value can fall below " + p_text(worst_p) +
                         ", which is not below alpha " + alpha_text(c.options.alpha) +
                         ": such rows can never be significant; use more repetitions or a "
                         "larger --alpha");
  std::size_t in_both = 0;
  for (const auto& r : c.bench)
    in_both += !r.probe && r.verdict != BenchVerdict::added && r.verdict != BenchVerdict::missing;
  if (in_both == 0)
    c.warnings.push_back(
        "no benchmark row is in both files: nothing was compared (other benchmarks, another "
        "machine, or renamed rows?)");
  else if (gated == 0)
    c.warnings.push_back("no benchmark row is gated");
  const std::string bm = machine_of(bd.context), nm = machine_of(nd.context);
  if (!bm.empty() && !nm.empty() && bm != nm)
    c.warnings.push_back("the benchmarks ran on different machines (baseline: " + bm +
                         "; new: " + nm + "): the ratios include the machine difference");
  for (const char* key : {"maskcheck.build_type", "maskcheck.ci_budget"}) {
    const std::string bv = context_text(bd.context, key), nv = context_text(nd.context, key);
    if (bv != nv)
      c.warnings.push_back(std::string(key) + " differs (baseline: " + (bv.empty() ? "unset" : bv) +
                           "; new: " + (nv.empty() ? "unset" : nv) + ")");
  }
  for (const auto& r : c.bench)
    if (r.probe && (r.verdict == BenchVerdict::slower || r.verdict == BenchVerdict::faster))
      c.warnings.push_back("machine probe `" + r.name + "` changed by " +
                           signed_percent(r.ratio - 1) +
                           " (significant): the machines, or their load, differ");
}

std::string kinds_of(const ResultSet& s) {
  std::string k;
  if (s.verify) k = "verify";
  if (s.bench) k += std::string(k.empty() ? "" : " + ") + "bench";
  return (s.directory ? "a directory with " : "a ") + k + (s.directory ? " results" : " file");
}

std::string verdict_text(const BenchComparison& r) {
  switch (r.verdict) {
    case BenchVerdict::slower:
      return r.gated ? "**regression**" : "slower";
    case BenchVerdict::slower_not_significant:
      return "slower, not significant";
    case BenchVerdict::within:
      return "within threshold";
    case BenchVerdict::faster:
      return "faster";
    case BenchVerdict::faster_not_significant:
      return "faster, not significant";
    case BenchVerdict::untested: {
      const std::size_t n = std::min(r.n_base, r.n_new);
      return n == 0 ? "untested (no repetitions)" : "untested (n=" + std::to_string(n) + ")";
    }
    case BenchVerdict::added:
      return "new";
    case BenchVerdict::missing:
      return "missing";
    case BenchVerdict::error:
      return "**error** in NEW: " + first_line(r.error);
    case BenchVerdict::error_both:
      return "error on both sides: " + first_line(r.error);
    case BenchVerdict::baseline_error:
      return "baseline errored: " + first_line(r.error);
  }
  return "?";
}

// Order of the rows worth a look: errors, regressions, then the rest of the changes.
int severity(BenchVerdict v) {
  switch (v) {
    case BenchVerdict::error:
      return 0;
    case BenchVerdict::slower:
      return 1;
    case BenchVerdict::slower_not_significant:
      return 2;
    case BenchVerdict::faster:
      return 3;
    case BenchVerdict::faster_not_significant:
      return 4;
    case BenchVerdict::untested:
      return 5;
    case BenchVerdict::error_both:
      return 6;
    case BenchVerdict::baseline_error:
      return 7;
    default:
      return 8;
  }
}

void row_line(std::ostringstream& os, const BenchComparison& r) {
  os << "| " << code(r.name) << " | " << (r.base_median > 0 ? format_seconds(r.base_median) : "-")
     << " | " << (r.new_median > 0 ? format_seconds(r.new_median) : "-") << " | "
     << (r.ratio > 0 ? signed_percent(r.ratio - 1) : "") << " | " << p_text(r.p()) << " | "
     << cell(verdict_text(r)) << " |\n";
}

const char* kTableHead =
    "| benchmark | baseline | new | change | p | verdict |\n|---|--:|--:|--:|--:|---|\n";

void bench_table(std::ostringstream& os, const Comparison& c, bool gated) {
  std::vector<const BenchComparison*> notable, within, one_side;
  for (const auto& r : c.bench) {
    if (r.probe || r.gated != gated) continue;
    if (r.verdict == BenchVerdict::within)
      within.push_back(&r);
    else if (r.verdict == BenchVerdict::added || r.verdict == BenchVerdict::missing)
      one_side.push_back(&r);
    else
      notable.push_back(&r);
  }
  const std::size_t compared = notable.size() + within.size();
  if (compared + one_side.size() == 0 && !gated) return;
  os << "### " << (gated ? "Gated benchmarks" : "Informational benchmarks") << " ("
     << (!gated                   ? std::string("not gated")
         : c.options.gate.empty() ? std::string("every row but the probes")
                                  : "gate " + code(c.options.gate))
     << "): " << compared << " in both files\n\n";
  std::stable_sort(notable.begin(), notable.end(), [](const auto* a, const auto* b) {
    if (severity(a->verdict) != severity(b->verdict))
      return severity(a->verdict) < severity(b->verdict);
    return a->ratio > b->ratio;
  });
  if (!notable.empty()) {
    os << kTableHead;
    for (const auto* r : notable) row_line(os, *r);
    os << "\n";
  }
  if (!within.empty()) {
    const bool collapse = !notable.empty() || within.size() > 10;
    const std::string what = (notable.empty() ? "All " : "") +
                             plural(within.size(), "row", "rows") + " within ±" +
                             percent(c.options.max_slowdown);
    if (collapse)
      os << "<details><summary>" << what << "</summary>\n\n";
    else
      os << what << ":\n\n";
    os << kTableHead;
    for (const auto* r : within) row_line(os, *r);
    os << "\n";
    if (collapse) os << "</details>\n\n";
  }
  if (!one_side.empty()) {
    std::size_t added = 0;
    for (const auto* r : one_side) added += r->verdict == BenchVerdict::added;
    os << "<details><summary>";
    if (added) os << plural(added, "row", "rows") << " only in NEW";
    if (added && one_side.size() > added) os << ", ";
    if (one_side.size() > added)
      os << plural(one_side.size() - added, "row", "rows") << " only in the baseline";
    os << " (not compared)</summary>\n\n";
    for (const auto* r : one_side) {
      os << "- " << (r->verdict == BenchVerdict::added ? "new: " : "missing: ") << code(r->name);
      const double t = r->verdict == BenchVerdict::added ? r->new_median : r->base_median;
      if (t > 0) os << " (" << format_seconds(t) << ")";
      if (!r->error.empty()) os << " (error: " << cell(first_line(r->error)) << ")";
      os << "\n";
    }
    os << "\n</details>\n\n";
  }
}

std::string status_text(const std::string& s) {
  if (s.empty()) return "absent";
  if (failing(s)) return "**" + s + "**";
  return s;
}

std::string transition(const PropertyComparison& p) {
  std::string s = status_text(p.base_status) + " → " + status_text(p.new_status);
  if (!p.new_deviations.empty()) {
    s += " (";
    for (std::size_t k = 0; k < p.new_deviations.size(); ++k)
      s += (k ? ", " : "") + code(p.new_deviations[k]);
    s += ")";
  }
  if (!p.detail.empty()) s += " — " + cell(p.detail);
  return s;
}

// One line per property; a long list (collapsed) groups the properties of an implementation
// that changed the same way for the same reason (43 CUDA properties skipped: no device).
void property_list(std::ostringstream& os, const std::string& title,
                   const std::vector<const PropertyComparison*>& rows, bool always_open) {
  if (rows.empty()) return;
  const bool collapse = !always_open && rows.size() > 10;
  if (!collapse) {
    os << "**" << title << "** (" << rows.size() << "):\n\n";
    for (const auto* p : rows)
      os << "- " << code(p->implementation) << " " << code(p->property) << ": " << transition(*p)
         << "\n";
    os << "\n";
    return;
  }
  os << "<details><summary>" << title << " (" << rows.size() << ")</summary>\n\n";
  std::vector<std::pair<std::string, std::vector<const PropertyComparison*>>> groups;
  for (const auto* p : rows) {
    const std::string key = p->implementation + "\x1f" + transition(*p);
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end())
      groups.push_back({key, {p}});
    else
      it->second.push_back(p);
  }
  for (const auto& [key, ps] : groups) {
    os << "- " << code(ps.front()->implementation);
    if (ps.size() == 1) {
      os << " " << code(ps.front()->property);
    } else {
      os << ", " << ps.size() << " properties (";
      for (std::size_t k = 0; k < ps.size(); ++k) os << (k ? ", " : "") << code(ps[k]->property);
      os << ")";
    }
    os << ": " << transition(*ps.front()) << "\n";
  }
  os << "\n</details>\n\n";
}

void properties_section(std::ostringstream& os, const Comparison& c) {
  os << "### Properties\n\n";
  std::map<PropertyChange, std::vector<const PropertyComparison*>> by;
  std::size_t both = 0;
  for (const auto& p : c.properties) {
    if (!p.base_status.empty() && !p.new_status.empty()) ++both;
    const bool whole_impl_absent =
        (p.change == PropertyChange::missing &&
         std::count(c.impls_missing.begin(), c.impls_missing.end(), p.implementation)) ||
        (p.change == PropertyChange::added &&
         std::count(c.impls_added.begin(), c.impls_added.end(), p.implementation));
    if (!whole_impl_absent) by[p.change].push_back(&p);
  }
  property_list(os, "Regressed (passing in the baseline, failing now)",
                by[PropertyChange::regressed], true);
  property_list(os, "Failing, not run in the baseline (not a regression)",
                by[PropertyChange::failing_untried], true);
  property_list(os, "Still failing", by[PropertyChange::still_failing], false);
  property_list(os, "Fixed", by[PropertyChange::fixed], false);
  property_list(os, "New deviations", by[PropertyChange::new_deviation], false);
  property_list(os, "Newly skipped", by[PropertyChange::newly_skipped], false);
  property_list(os, "No longer skipped", by[PropertyChange::unskipped], false);
  property_list(os, "Deviation gone", by[PropertyChange::deviation_gone], false);
  property_list(os, "Only in the baseline", by[PropertyChange::missing], false);
  property_list(os, "New properties", by[PropertyChange::added], false);
  auto impl_line = [&](const std::vector<std::string>& impls, const std::string& where,
                       PropertyChange change) {
    if (impls.empty()) return;
    os << "Implementations only in " << where << ":";
    for (std::size_t k = 0; k < impls.size(); ++k) {
      std::size_t n = 0;
      for (const auto& p : c.properties)
        n += p.implementation == impls[k] &&
             (p.change == change ||
              (change == PropertyChange::added && p.change == PropertyChange::failing_untried));
      os << (k ? "," : "") << " " << code(impls[k]) << " (" << plural(n, "property", "properties")
         << ")";
    }
    os << ".\n\n";
  };
  impl_line(c.impls_missing, "the baseline", PropertyChange::missing);
  impl_line(c.impls_added, "NEW", PropertyChange::added);
  std::size_t unchanged = 0;
  for (const auto& p : c.properties) unchanged += p.change == PropertyChange::unchanged;
  os << unchanged << " of " << both << " properties present on both sides kept their status.\n\n";
}

std::string repetitions(const Comparison& c, bool base) {
  std::size_t lo = SIZE_MAX, hi = 0;
  for (const auto& r : c.bench) {
    const std::size_t n = base ? r.n_base : r.n_new;
    // Repetitions of the rows in both files (a row only on one side was not compared).
    if (r.verdict == BenchVerdict::added || r.verdict == BenchVerdict::missing || n == 0) continue;
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  if (hi == 0) return "-";
  return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

std::string commit_text(const std::string& commit, bool dirty, const std::string& date) {
  std::string s = commit.empty() ? "?" : code(commit.substr(0, 12));
  if (dirty) s += " (dirty)";
  if (!date.empty()) s += ", " + cell(date);
  return s;
}

void parameters(std::ostringstream& os, const Comparison& c) {
  os << "**Inputs and parameters**\n\n| | baseline | new |\n|---|---|---|\n";
  if (c.compared_bench) {
    os << "| bench | " << code(c.base_bench_path) << " | " << code(c.new_bench_path) << " |\n";
    auto commit = [](const json& ctx) {
      return commit_text(context_text(ctx, "maskcheck.commit"),
                         context_text(ctx, "maskcheck.dirty") == "true", context_text(ctx, "date"));
    };
    os << "| commit | " << commit(c.base_context) << " | " << commit(c.new_context) << " |\n";
    os << "| machine | " << cell(machine_of(c.base_context)) << " | "
       << cell(machine_of(c.new_context)) << " |\n";
    os << "| repetitions | " << repetitions(c, true) << " | " << repetitions(c, false) << " |\n";
  }
  if (c.compared_verify) {
    os << "| verify | " << code(c.base_verify_path) << " | " << code(c.new_verify_path) << " |\n";
    auto commit = [](const json& about) {
      return commit_text(about.value("commit", ""), about.value("dirty", false),
                         about.value("date", ""));
    };
    os << "| verify commit | " << commit(c.base_about) << " | " << commit(c.new_about) << " |\n";
  }
  os << "\n";
  if (c.compared_bench)
    os << "Regression: median slower by more than " << percent(c.options.max_slowdown)
       << " and a one-sided Mann-Whitney U test over the repetitions with p < "
       << alpha_text(c.options.alpha) << " (exact permutation distribution up to " << kExactMax
       << " repetitions per side, ties by midranks; normal approximation with tie and "
          "continuity correction beyond). p is the one-sided p-value in the direction of the "
          "change. Gate: "
       << (c.options.gate.empty() ? "every row but the probes" : code(c.options.gate)) << ".\n";
}

}  // namespace

double BenchComparison::p() const {
  if (!test) return kNaN;
  return ratio < 1 ? test->p_less : test->p_greater;
}

std::size_t Comparison::bench_regressions() const {
  std::size_t n = 0;
  for (const auto& r : bench) n += r.regression();
  return n;
}

std::size_t Comparison::property_regressions() const {
  std::size_t n = 0;
  for (const auto& p : properties) n += p.change == PropertyChange::regressed;
  return n;
}

std::pair<double, std::size_t> Comparison::geomean(bool gated) const {
  double sum = 0;
  std::size_t n = 0;
  for (const auto& r : bench)
    if (!r.probe && r.gated == gated && r.ratio > 0) {
      sum += std::log(r.ratio);
      ++n;
    }
  return {n ? std::exp(sum / static_cast<double>(n)) : kNaN, n};
}

void validate(const CompareOptions& o) {
  if (!(o.max_slowdown >= 0) || !std::isfinite(o.max_slowdown))
    throw std::invalid_argument("--max-slowdown must be a finite percentage >= 0");
  if (!(o.alpha > 0 && o.alpha < 1))
    throw std::invalid_argument("--alpha must lie strictly between 0 and 1");
  if (!o.gate.empty()) (void)compile_gate(o.gate);
}

double parse_percentage(const std::string& text) {
  std::string s = text;
  auto trim = [&] {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  };
  trim();
  if (!s.empty() && s.back() == '%') {
    s.pop_back();
    trim();
  }
  const auto bad = [&] {
    return std::invalid_argument("--max-slowdown '" + text +
                                 "': expected a percentage >= 0 such as 5% or 5 (both 5 percent)");
  };
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s.front())) || s.front() == '.' ||
                     s.front() == '+'))
    throw bad();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0) throw bad();
  return v / 100;
}

ResultSet load_results(const std::string& path, const std::string& role,
                       const std::function<json(const std::string&)>& read_json) {
  ResultSet s;
  s.path = path;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw std::runtime_error(role + ": no such file or directory: " + path);
  auto read = [&](const std::string& file) {
    try {
      return read_json(file);
    } catch (const std::exception& e) {
      throw std::runtime_error(role + ": " + e.what());
    }
  };
  auto put = [&](json doc, const std::string& file) {
    if (doc_kind(doc, role + " " + file) == DocKind::verify) {
      s.verify = std::move(doc);
      s.verify_path = file;
    } else {
      s.bench = std::move(doc);
      s.bench_path = file;
    }
  };
  if (!fs::is_directory(st)) {
    put(read(path), path);
    return s;
  }
  s.directory = true;
  for (const auto& [name, kind] :
       {std::pair{"verify.json", DocKind::verify}, std::pair{"bench.json", DocKind::bench}}) {
    const std::string file = (fs::path(path) / name).string();
    if (!fs::exists(file, ec)) continue;
    json doc = read(file);
    if (doc_kind(doc, role + " " + file) != kind)
      throw std::runtime_error(
          role + " " + file + ": holds " +
          (kind == DocKind::verify ? "Google Benchmark JSON" : "maskcheck.verify/1 results") +
          ", not what its name says");
    put(std::move(doc), file);
  }
  if (!s.verify) {  // the shards of a sharded verify run, merged into its one file
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("verify-shard-", 0) == 0 && name.ends_with(".json"))
        files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    std::vector<json> shards;
    for (const auto& file : files) {
      shards.push_back(read(file));
      if (doc_kind(shards.back(), role + " " + file) != DocKind::verify ||
          !shards.back().contains("shard"))
        throw std::runtime_error(role + " " + file +
                                 ": is not the file of a verify --shard K/N run");
    }
    if (!shards.empty()) {
      ResultFiles merged = merge_shards(shards, files);
      if (merged.docs.size() > 1)
        throw std::runtime_error(role + ": the directory " + path +
                                 " holds the shards of more than one run");
      s.verify = std::move(merged.docs.front());
      s.verify_path = merged.sources.front();
    }
  }
  if (!s.verify && !s.bench)
    throw std::runtime_error(role + ": the directory " + path +
                             " holds neither verify.json nor bench.json (nor verify-shard-*.json files)");
  return s;
}

Comparison compare_results(const ResultSet& base, const ResultSet& next,
                           const CompareOptions& options) {
  validate(options);
  Comparison c;
  c.options = options;
  c.base_path = base.path;
  c.new_path = next.path;
  c.compared_verify = base.verify && next.verify;
  c.compared_bench = base.bench && next.bench;
  if (!c.compared_verify && !c.compared_bench)
    throw std::runtime_error("nothing to compare: BASELINE " + base.path + " is " + kinds_of(base) +
                             ", NEW " + next.path + " is " + kinds_of(next) +
                             " (the kinds must match)");
  for (const auto& [kind, b, n] :
       {std::tuple{"verify", base.verify.has_value(), next.verify.has_value()},
        std::tuple{"bench", base.bench.has_value(), next.bench.has_value()}}) {
    if (b && !n)
      c.notes.push_back(std::string(kind) + " results only in the baseline: not compared");
    if (!b && n) c.notes.push_back(std::string(kind) + " results only in NEW: not compared");
  }
  if (c.compared_verify) {
    c.base_verify_path = base.verify_path;
    c.new_verify_path = next.verify_path;
    compare_verify(c, *base.verify, *next.verify);
  }
  if (c.compared_bench) {
    c.base_bench_path = base.bench_path;
    c.new_bench_path = next.bench_path;
    compare_bench(c, *base.bench, *next.bench);
  }
  return c;
}

std::string compare_verdict(const Comparison& c, bool markdown) {
  const std::size_t br = c.bench_regressions(), pr = c.property_regressions();
  std::string s = std::string(markdown ? "**" : "") +
                  "maskcheck compare: " + (c.failed() ? "FAIL" : "PASS") + (markdown ? "**" : "") +
                  " — ";
  const std::string threshold = percent(c.options.max_slowdown);
  const std::string alpha = "alpha " + alpha_text(c.options.alpha);
  std::vector<std::string> parts;
  std::size_t errors = 0, untested = 0, faster = 0, missing_gated = 0;
  for (const auto& r : c.bench) {
    if (r.probe) continue;
    errors += r.verdict == BenchVerdict::error;
    untested += r.gated && r.verdict == BenchVerdict::untested;
    faster += r.gated && r.verdict == BenchVerdict::faster;
    missing_gated += r.gated && r.verdict == BenchVerdict::missing;
  }
  if (c.compared_bench) {
    const auto [g, n] = c.geomean(true);
    if (br > 0) {
      parts.push_back(plural(br, "benchmark", "benchmarks") + " significantly slower than " +
                      threshold + " (" + alpha + ")");
    } else if (n == 0) {
      parts.push_back("no gated benchmark row timed in both files");
    } else {
      parts.push_back("no gated benchmark significantly slower than " + threshold + " (" + alpha +
                      "; " + std::to_string(n) + " compared, geometric mean " +
                      signed_percent(g - 1) + ")");
    }
  }
  if (c.compared_verify) {
    if (pr > 0) {
      parts.push_back(plural(pr, "property", "properties") + " regressed");
    } else {
      std::size_t both = 0;
      for (const auto& p : c.properties) both += !p.base_status.empty() && !p.new_status.empty();
      parts.push_back("no property regressed (" + std::to_string(both) + " compared)");
    }
  }
  std::vector<std::string> extra;
  if (errors) extra.push_back(plural(errors, "benchmark", "benchmarks") + " errored in NEW");
  if (faster) extra.push_back(std::to_string(faster) + " significantly faster");
  if (untested) extra.push_back(std::to_string(untested) + " untested");
  if (missing_gated)
    extra.push_back(plural(missing_gated, "gated row", "gated rows") + " missing in NEW");
  for (std::size_t k = 0; k < parts.size(); ++k) s += (k ? ", " : "") + parts[k];
  for (std::size_t k = 0; k < extra.size(); ++k) s += (k ? ", " : "; ") + extra[k];
  return s;
}

std::string compare_markdown(const Comparison& c) {
  std::ostringstream os;
  os << compare_verdict(c, true) << "\n\n";
  os << "Compared " << code(c.base_path) << " (baseline) with " << code(c.new_path) << " (new): ";
  std::vector<std::string> kinds;
  if (c.compared_verify) kinds.push_back("verify");
  if (c.compared_bench) kinds.push_back("bench");
  for (std::size_t k = 0; k < kinds.size(); ++k) os << (k ? " and " : "") << kinds[k];
  os << ".";
  for (const auto& n : c.notes) os << " " << cell(n) << ".";
  os << "\n\n";
  for (const auto& w : c.warnings) os << "> **Warning:** " << w << "\n>\n";
  if (!c.warnings.empty()) os << "\n";

  if (c.compared_verify) properties_section(os, c);
  if (c.compared_bench) {
    for (const auto& r : c.bench)
      if (r.verdict == BenchVerdict::error)
        os << "**Error in NEW**: " << code(r.name)
           << " was timed in the baseline and errored now: " << cell(first_line(r.error)) << "\n\n";
    bench_table(os, c, true);
    bench_table(os, c, false);

    os << "**Geometric mean** of the median ratios (new / baseline):";
    bool any = false;
    for (const bool g : {true, false}) {
      const auto [mean, n] = c.geomean(g);
      if (n == 0) continue;
      os << (any ? ";" : "") << " " << (g ? "gated " : "informational ") << ratio_text(mean) << " ("
         << signed_percent(mean - 1) << ") over " << plural(n, "row", "rows");
      any = true;
    }
    os << (any ? "" : " no row timed on both sides") << ".\n\n";

    os << "**Machine** (probes, new / baseline time; far from 1.000x means the runs are not "
          "comparable):";
    any = false;
    for (const auto& r : c.bench) {
      if (!r.probe) continue;
      os << (any ? "," : "") << " " << code(r.name) << " ";
      if (r.ratio > 0)
        os << ratio_text(r.ratio) << (r.test ? " (p " + p_text(r.p()) + ")" : "");
      else
        os << cell(verdict_text(r));
      any = true;
    }
    os << (any ? "" : " no probe rows (ceiling/...) in these files") << ".\n\n";
  }
  parameters(os, c);
  return os.str();
}

}  // namespace maskcheck::reports
