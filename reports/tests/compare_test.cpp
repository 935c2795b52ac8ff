// `maskcheck compare` on synthetic result files: which benchmark rows regress, which are
// informational, which properties regressed, and what the Markdown says.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "maskcheck/reports/compare.hpp"
#include "maskcheck/suite/io.hpp"

namespace {

using nlohmann::json;
using namespace maskcheck::reports;
using V = std::vector<double>;

struct Row {
  Row(std::string n, V t, std::string e = {})
      : name(std::move(n)), ms(std::move(t)), error(std::move(e)) {}
  std::string name;
  V ms;               // milliseconds per repetition
  std::string error;  // error_message: the row errored
};

// Google Benchmark JSON as `maskcheck bench --json` writes it: one iteration entry per
// repetition, then the aggregates.
json bench_doc(const std::vector<Row>& rows, const std::string& commit = "aaaa",
               const std::string& cpu = "Test CPU") {
  json doc;
  doc["context"] = {{"date", "2026-11-23T07:06:20+00:00"},
                    {"maskcheck.commit", commit},
                    {"maskcheck.cpu", cpu},
                    {"maskcheck.cores", "2"}};
  doc["benchmarks"] = json::array();
  for (const auto& r : rows) {
    const std::string name = r.name + "/real_time";
    if (!r.error.empty()) {
      doc["benchmarks"].push_back({{"name", name},
                                   {"run_name", name},
                                   {"run_type", "iteration"},
                                   {"error_occurred", true},
                                   {"error_message", r.error}});
      continue;
    }
    for (std::size_t k = 0; k < r.ms.size(); ++k)
      doc["benchmarks"].push_back({{"name", name},
                                   {"run_name", name},
                                   {"run_type", "iteration"},
                                   {"repetitions", r.ms.size()},
                                   {"repetition_index", k},
                                   {"iterations", 10},
                                   {"real_time", r.ms[k]},
                                   {"cpu_time", r.ms[k]},
                                   {"time_unit", "ms"}});
    V sorted = r.ms;
    std::sort(sorted.begin(), sorted.end());
    doc["benchmarks"].push_back({{"name", name + "_median"},
                                 {"run_name", name},
                                 {"run_type", "aggregate"},
                                 {"aggregate_name", "median"},
                                 {"real_time", sorted[sorted.size() / 2]},
                                 {"time_unit", "ms"}});
  }
  return doc;
}

struct Prop {
  Prop(std::string i, std::string p, std::string s, json e = json::object())
      : impl(std::move(i)), property(std::move(p)), status(std::move(s)), extra(std::move(e)) {}
  std::string impl, property, status;
  json extra;
};

json verify_doc(const std::vector<Prop>& props, const std::string& commit = "bbbb") {
  json doc{{"schema", "maskcheck.verify/1"},
           {"seed", 1},
           {"cases", 100},
           {"about", {{"commit", commit}, {"date", "2026-11-23T07:06:18Z"}, {"dirty", false}}}};
  doc["results"] = json::array();
  for (const auto& p : props) {
    json r{{"implementation", p.impl}, {"property", p.property},
           {"status", p.status},       {"cases", 100},
           {"skipped_cases", 0},       {"skip_reasons", json::object()}};
    r.update(p.extra);
    doc["results"].push_back(r);
  }
  return doc;
}

ResultSet bench_set(const json& doc, const std::string& path) {
  ResultSet s;
  s.path = s.bench_path = path;
  s.bench = doc;
  return s;
}

ResultSet verify_set(const json& doc, const std::string& path) {
  ResultSet s;
  s.path = s.verify_path = path;
  s.verify = doc;
  return s;
}

V scaled(const V& v, double f) {
  V out;
  for (double x : v) out.push_back(x * f);
  return out;
}

// Five repetitions with a little spread (±2 %), as a quiet machine gives them.
const V kBase{1.00, 1.02, 0.99, 1.01, 0.98};

const BenchComparison& row(const Comparison& c, const std::string& name) {
  for (const auto& r : c.bench)
    if (r.name == name) return r;
  throw std::runtime_error("no row " + name);
}

Comparison compare_bench(const std::vector<Row>& base, const std::vector<Row>& next,
                         CompareOptions o = {}) {
  return compare_results(bench_set(bench_doc(base), "base.json"),
                         bench_set(bench_doc(next), "new.json"), o);
}

TEST(Compare, clearTwentyPercentSlowdownIsARegression) {
  const auto c = compare_bench({{"cpu/softmax/a/maskcheck", kBase}},
                               {{"cpu/softmax/a/maskcheck", scaled(kBase, 1.2)}});
  const auto& r = row(c, "cpu/softmax/a/maskcheck");
  EXPECT_EQ(r.verdict, BenchVerdict::slower);
  EXPECT_TRUE(r.regression());
  EXPECT_NEAR(r.ratio, 1.2, 1e-12);
  ASSERT_TRUE(r.test);
  EXPECT_DOUBLE_EQ(r.p(), 1.0 / 252);
  EXPECT_TRUE(c.failed());
  EXPECT_EQ(c.bench_regressions(), 1u);
  const std::string md = compare_markdown(c);
  EXPECT_EQ(md.rfind("**maskcheck compare: FAIL** — 1 benchmark significantly slower than 5 % "
                     "(alpha 0.05)",
                     0),
            0u)
      << md;
  EXPECT_NE(md.find("| `cpu/softmax/a/maskcheck` | 1 ms | 1.2 ms | +20.0 % | 0.004 | "
                    "**regression** |"),
            std::string::npos)
      << md;
}

TEST(Compare, significantThreePercentSlowdownIsWithinTheThreshold) {
  const auto c = compare_bench({{"x/maskcheck", kBase}}, {{"x/maskcheck", scaled(kBase, 1.03)}});
  const auto& r = row(c, "x/maskcheck");
  EXPECT_EQ(r.verdict, BenchVerdict::within);
  EXPECT_LT(r.p(), 0.05);  // significant, but small
  EXPECT_FALSE(c.failed());
  // A stricter threshold makes it a regression; 3 % exactly at a 3 % threshold is not one.
  CompareOptions o;
  o.max_slowdown = 0.02;
  EXPECT_TRUE(
      compare_bench({{"x/maskcheck", kBase}}, {{"x/maskcheck", scaled(kBase, 1.03)}}, o).failed());
  o.max_slowdown = 0.031;
  EXPECT_FALSE(
      compare_bench({{"x/maskcheck", kBase}}, {{"x/maskcheck", scaled(kBase, 1.03)}}, o).failed());
}

TEST(Compare, overlappingNoisySamplesAreNotSignificant) {
  // The median is 12 % slower, but the samples interleave: U = 16 of 25.
  const auto c = compare_bench({{"x/maskcheck", {1.00, 1.30, 0.90, 1.25, 0.95}}},
                               {{"x/maskcheck", {1.12, 0.92, 1.35, 1.10, 1.28}}});
  const auto& r = row(c, "x/maskcheck");
  EXPECT_EQ(r.verdict, BenchVerdict::slower_not_significant);
  EXPECT_GE(r.p(), 0.05);
  EXPECT_FALSE(c.failed());
  EXPECT_NE(compare_markdown(c).find("slower, not significant"), std::string::npos);
}

TEST(Compare, significantSpeedUpIsReportedAsFaster) {
  const auto c = compare_bench({{"x/maskcheck", kBase}}, {{"x/maskcheck", scaled(kBase, 0.8)}});
  const auto& r = row(c, "x/maskcheck");
  EXPECT_EQ(r.verdict, BenchVerdict::faster);
  EXPECT_DOUBLE_EQ(r.p(), 1.0 / 252);  // p in the direction of the change
  EXPECT_FALSE(c.failed());
  const std::string md = compare_markdown(c);
  EXPECT_EQ(md.rfind("**maskcheck compare: PASS**", 0), 0u) << md;
  EXPECT_NE(md.find("1 significantly faster"), std::string::npos) << md;
  EXPECT_NE(md.find("| -20.0 % | 0.004 | faster |"), std::string::npos) << md;
}

TEST(Compare, gateRegexChoosesTheRowsThatCanFail) {
  const std::vector<Row> base{
      {"g/maskcheck", kBase}, {"g/maskcheck_varlen", kBase}, {"g/torch_sdpa", kBase}};
  const std::vector<Row> next{{"g/maskcheck", scaled(kBase, 1.2)},
                              {"g/maskcheck_varlen", scaled(kBase, 1.2)},
                              {"g/torch_sdpa", scaled(kBase, 1.2)}};
  // Default: every row but the probes is gated.
  EXPECT_EQ(compare_bench(base, next).bench_regressions(), 3u);
  CompareOptions o;
  o.gate = "/maskcheck[^/]*$";
  const auto c = compare_bench(base, next, o);
  EXPECT_EQ(c.bench_regressions(), 2u);
  EXPECT_TRUE(row(c, "g/maskcheck_varlen").gated);
  const auto& peer = row(c, "g/torch_sdpa");
  EXPECT_FALSE(peer.gated);
  EXPECT_EQ(peer.verdict, BenchVerdict::slower);  // shown, but informational
  EXPECT_FALSE(peer.regression());
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("### Gated benchmarks (gate `/maskcheck[^/]*$`): 2 in both files"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("### Informational benchmarks (not gated): 1 in both files"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| `g/torch_sdpa` | 1 ms | 1.2 ms | +20.0 % | 0.004 | slower |"),
            std::string::npos)
      << md;
  // Only the peer slower: the gate passes.
  EXPECT_FALSE(compare_bench(base,
                             {{"g/maskcheck", kBase},
                              {"g/maskcheck_varlen", kBase},
                              {"g/torch_sdpa", scaled(kBase, 1.5)}},
                             o)
                   .failed());
  // A gate that matches nothing would pass everything: an input error.
  o.gate = "^nothing$";
  EXPECT_THROW(compare_bench(base, next, o), std::invalid_argument);
  o.gate = "(";
  EXPECT_THROW(compare_bench(base, next, o), std::invalid_argument);
}

TEST(Compare, probeRowsAreNeverGatedAndFormTheMachineLine) {
  const auto c = compare_bench(
      {{"ceiling/cpu/fma/f32", kBase}, {"x/maskcheck", kBase}},
      {{"ceiling/cpu/fma/f32", scaled(kBase, 1.5)}, {"x/maskcheck", scaled(kBase, 1.01)}});
  const auto& probe = row(c, "ceiling/cpu/fma/f32");
  EXPECT_TRUE(probe.probe);
  EXPECT_FALSE(probe.gated);
  EXPECT_EQ(probe.verdict, BenchVerdict::slower);
  EXPECT_FALSE(c.failed());
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("**Machine** (probes, new / baseline time"), std::string::npos) << md;
  EXPECT_NE(md.find("`ceiling/cpu/fma/f32` 1.500x (p 0.004)"), std::string::npos) << md;
  // Not in the benchmark tables, and a warning says the machines differ.
  EXPECT_EQ(md.find("| `ceiling/cpu/fma/f32`"), std::string::npos) << md;
  EXPECT_NE(md.find("machine probe `ceiling/cpu/fma/f32` changed by +50.0 %"), std::string::npos)
      << md;
  // Probes are not in the geometric mean.
  EXPECT_EQ(c.geomean(true).second, 1u);
}

TEST(Compare, singleRepetitionRowsAreUntestedNeverFailedButWarned) {
  const auto c = compare_bench({{"x/maskcheck", {1.0}}, {"y/maskcheck", kBase}},
                               {{"x/maskcheck", {2.0}}, {"y/maskcheck", {1.5}}});
  EXPECT_EQ(row(c, "x/maskcheck").verdict, BenchVerdict::untested);
  EXPECT_EQ(row(c, "y/maskcheck").verdict, BenchVerdict::untested);
  EXPECT_FALSE(row(c, "x/maskcheck").test);
  EXPECT_FALSE(c.failed());
  ASSERT_FALSE(c.warnings.empty());
  EXPECT_NE(c.warnings.front().find("2 rows have fewer than 2 repetitions"), std::string::npos);
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("| +100.0 % | - | untested (n=1) |"), std::string::npos) << md;
  EXPECT_NE(md.find("> **Warning:** 2 rows have fewer than 2 repetitions"), std::string::npos)
      << md;
  EXPECT_NE(md.find("; 2 untested"), std::string::npos) << md;
}

// --benchmark_report_aggregates_only leaves medians but no repetitions to test.
TEST(Compare, aggregatesOnlyFilesAreUntestedAndSaySo) {
  json base = bench_doc({{"x/maskcheck", kBase}}), next = bench_doc({{"x/maskcheck", kBase}});
  for (auto* d : {&base, &next}) {
    json kept = json::array();
    for (const auto& b : (*d)["benchmarks"])
      if (b["run_type"] != "iteration") kept.push_back(b);
    (*d)["benchmarks"] = kept;
  }
  const auto c = compare_results(bench_set(base, "a"), bench_set(next, "b"), {});
  const auto& r = row(c, "x/maskcheck");
  EXPECT_EQ(r.verdict, BenchVerdict::untested);
  EXPECT_NEAR(r.ratio, 1.0, 1e-12);  // the median aggregates still give the change
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("untested (no repetitions)"), std::string::npos) << md;
  EXPECT_NE(md.find("1 row with aggregates only"), std::string::npos) << md;
}

TEST(Compare, tooFewRepetitionsForAlphaAreWarned) {
  // 3 vs 3: the smallest p is 1/20 = 0.05, never below alpha 0.05.
  const auto c =
      compare_bench({{"x/maskcheck", {1.0, 1.01, 0.99}}}, {{"x/maskcheck", {2.0, 2.01, 1.99}}});
  EXPECT_EQ(row(c, "x/maskcheck").verdict, BenchVerdict::slower_not_significant);
  bool warned = false;
  for (const auto& w : c.warnings) warned = warned || w.find("3 vs 3 repetitions") != w.npos;
  EXPECT_TRUE(warned);
}

TEST(Compare, rowsOnOneSideAndErrorsAreListedNotFailed) {
  const auto c =
      compare_bench({{"a/maskcheck", kBase}, {"gone/maskcheck", kBase}, {"b/maskcheck", kBase}},
                    {{"a/maskcheck", kBase},
                     {"fresh/maskcheck", kBase},
                     {"b/maskcheck", {}, "mismatch: max error 3 at (0, 1, 2, 3)"}});
  EXPECT_EQ(row(c, "gone/maskcheck").verdict, BenchVerdict::missing);
  EXPECT_EQ(row(c, "fresh/maskcheck").verdict, BenchVerdict::added);
  EXPECT_EQ(row(c, "b/maskcheck").verdict, BenchVerdict::error);
  EXPECT_FALSE(c.failed());
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("; 1 benchmark errored in NEW"), std::string::npos) << md;
  EXPECT_NE(md.find("**Error in NEW**: `b/maskcheck` was timed in the baseline and errored now: "
                    "mismatch: max error 3 at (0, 1, 2, 3)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("1 row only in NEW, 1 row only in the baseline (not compared)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("- new: `fresh/maskcheck`"), std::string::npos) << md;
  EXPECT_NE(md.find("- missing: `gone/maskcheck`"), std::string::npos) << md;
  EXPECT_NE(md.find("; 1 benchmark errored in NEW, 1 gated row missing in NEW"), std::string::npos)
      << md;
}

TEST(Compare, geometricMeanOfMedianRatios) {
  const auto c =
      compare_bench({{"a/maskcheck", kBase}, {"b/maskcheck", kBase}},
                    {{"a/maskcheck", scaled(kBase, 1.25)}, {"b/maskcheck", scaled(kBase, 0.8)}});
  const auto [g, n] = c.geomean(true);
  EXPECT_EQ(n, 2u);
  EXPECT_NEAR(g, 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(c.geomean(false).first));
}

TEST(Compare, unchangedRowsAreCollapsedBesideTheChangedOnes) {
  std::vector<Row> base, next;
  for (int k = 0; k < 30; ++k) {
    base.push_back({"r" + std::to_string(k) + "/maskcheck", kBase});
    next.push_back({"r" + std::to_string(k) + "/maskcheck", kBase});
  }
  next[7].ms = scaled(kBase, 1.3);
  const std::string md = compare_markdown(compare_bench(base, next));
  const auto details = md.find("<details><summary>29 rows within ±5 %</summary>");
  ASSERT_NE(details, std::string::npos) << md;
  EXPECT_LT(md.find("`r7/maskcheck`"), details);  // the regression comes first, in the open
}

TEST(Compare, propertyStatusChanges) {
  const json base = verify_doc({
      {"cpu", "a.regresses", "passed"},
      {"cpu", "b.fixed", "failed"},
      {"cpu", "c.stillFails", "error"},
      {"cpu", "d.nowSkipped", "passed"},
      {"torch:x", "e.newDeviation", "passed"},
      {"cpu", "f.gone", "passed"},
      {"cpu", "g.deviationRegresses", "deviation", {{"deviations", {{"empty_row_lse", 3}}}}},
      {"cuda", "h.cudaOnly", "passed"},
      {"cpu", "i.unchanged", "passed"},
      {"cpu", "j.skippedThenFails", "skipped"},
  });
  const json next = verify_doc({
      {"cpu", "a.regresses", "failed", {{"message", "max error 0.5 at (0, 0, 1, 2)\nmore"}}},
      {"cpu", "b.fixed", "passed"},
      {"cpu", "c.stillFails", "failed"},
      {"cpu", "d.nowSkipped", "skipped", {{"skip_reasons", {{"no CUDA device", 100}}}}},
      {"torch:x", "e.newDeviation", "deviation", {{"deviations", {{"fully_masked_row_nan", 5}}}}},
      {"cpu", "g.deviationRegresses", "error", {{"message", "threw"}}},
      {"cpu", "i.unchanged", "passed"},
      {"cpu", "j.skippedThenFails", "failed"},
      {"cpu", "k.brandNew", "passed"},
  });
  const auto c = compare_results(verify_set(base, "b.json"), verify_set(next, "n.json"), {});
  EXPECT_EQ(c.property_regressions(), 2u);
  EXPECT_TRUE(c.failed());
  auto change = [&](const std::string& prop) {
    for (const auto& p : c.properties)
      if (p.property == prop) return p.change;
    throw std::runtime_error("no " + prop);
  };
  EXPECT_EQ(change("a.regresses"), PropertyChange::regressed);
  EXPECT_EQ(change("b.fixed"), PropertyChange::fixed);
  EXPECT_EQ(change("c.stillFails"), PropertyChange::still_failing);
  EXPECT_EQ(change("d.nowSkipped"), PropertyChange::newly_skipped);
  EXPECT_EQ(change("e.newDeviation"), PropertyChange::new_deviation);
  EXPECT_EQ(change("f.gone"), PropertyChange::missing);
  EXPECT_EQ(change("g.deviationRegresses"), PropertyChange::regressed);
  EXPECT_EQ(change("h.cudaOnly"), PropertyChange::missing);
  EXPECT_EQ(change("i.unchanged"), PropertyChange::unchanged);
  EXPECT_EQ(change("j.skippedThenFails"), PropertyChange::failing_untried);
  EXPECT_EQ(change("k.brandNew"), PropertyChange::added);
  EXPECT_EQ(c.impls_missing, std::vector<std::string>{"cuda"});

  const std::string md = compare_markdown(c);
  EXPECT_EQ(md.rfind("**maskcheck compare: FAIL** — 2 properties regressed\n", 0), 0u) << md;
  EXPECT_NE(md.find("**Regressed (passing in the baseline, failing now)** (2):\n\n- `cpu` "
                    "`a.regresses`: passed → **failed** — max error 0.5 at (0, 0, 1, 2)\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("`torch:x` `e.newDeviation`: passed → deviation (`fully_masked_row_nan`)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("`cpu` `d.nowSkipped`: passed → skipped — no CUDA device"), std::string::npos)
      << md;
  EXPECT_NE(md.find("**Failing, not run in the baseline (not a regression)** (1)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("Implementations only in the baseline: `cuda` (1 property)."),
            std::string::npos)
      << md;
  // A whole implementation missing is one line, not one per property.
  EXPECT_EQ(md.find("`cuda` `h.cudaOnly`"), std::string::npos) << md;
  EXPECT_NE(md.find("- `cpu` `k.brandNew`: absent → passed"), std::string::npos) << md;

  // The same results on both sides: nothing to report.
  const auto same = compare_results(verify_set(next, "a"), verify_set(next, "b"), {});
  EXPECT_FALSE(same.failed());
  EXPECT_EQ(compare_verdict(same), "maskcheck compare: PASS — no property regressed (9 compared)");
}

json read_json(const std::string& path) {
  return maskcheck::read_json_file(path);
}

std::filesystem::path temp_root() {
  return std::filesystem::temp_directory_path() /
         ("maskcheck_compare_test_" + std::to_string(::getpid()));
}

// Removes this process's temporary directory after the last test.
struct RemoveTempRoot : ::testing::Environment {
  void TearDown() override { std::filesystem::remove_all(temp_root()); }
};
const auto* const remove_temp_root = ::testing::AddGlobalTestEnvironment(new RemoveTempRoot);

std::string temp_dir(const std::string& name) {
  const auto dir = temp_root() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(Compare, directoriesCompareEveryKindBothHave) {
  const std::string a = temp_dir("a"), b = temp_dir("b"), only_bench = temp_dir("c");
  maskcheck::write_json_atomic(a + "/bench.json", bench_doc({{"x/maskcheck", kBase}}));
  maskcheck::write_json_atomic(a + "/verify.json", verify_doc({{"cpu", "p", "passed"}}));
  maskcheck::write_json_atomic(b + "/bench.json",
                               bench_doc({{"x/maskcheck", scaled(kBase, 1.2)}}, "cccc"));
  maskcheck::write_json_atomic(b + "/verify.json", verify_doc({{"cpu", "p", "failed"}}, "dddd"));
  maskcheck::write_json_atomic(only_bench + "/bench.json", bench_doc({{"x/maskcheck", kBase}}));

  const ResultSet sa = load_results(a, "BASELINE", read_json);
  EXPECT_TRUE(sa.directory);
  ASSERT_TRUE(sa.bench && sa.verify);
  const auto c = compare_results(sa, load_results(b, "NEW", read_json), {});
  EXPECT_TRUE(c.compared_bench && c.compared_verify);
  EXPECT_EQ(c.bench_regressions(), 1u);
  EXPECT_EQ(c.property_regressions(), 1u);
  const std::string md = compare_markdown(c);
  EXPECT_EQ(md.rfind("**maskcheck compare: FAIL** — 1 benchmark significantly slower than 5 % "
                     "(alpha 0.05), 1 property regressed\n",
                     0),
            0u)
      << md;
  EXPECT_NE(md.find("(new): verify and bench."), std::string::npos) << md;
  EXPECT_NE(md.find("| commit | `aaaa`, 2026-11-23T07:06:20+00:00 | `cccc`, "), std::string::npos)
      << md;
  EXPECT_NE(md.find("| repetitions | 5 | 5 |"), std::string::npos) << md;

  // A directory with bench.json only against one with both: bench compared, the rest noted.
  const auto d = compare_results(sa, load_results(only_bench, "NEW", read_json), {});
  EXPECT_TRUE(d.compared_bench);
  EXPECT_FALSE(d.compared_verify);
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_EQ(d.notes[0], "verify results only in the baseline: not compared");
  EXPECT_NE(compare_markdown(d).find("verify results only in the baseline: not compared."),
            std::string::npos);

  // A directory against a single file of a kind it holds.
  const auto e = compare_results(sa, load_results(b + "/verify.json", "NEW", read_json), {});
  EXPECT_TRUE(e.compared_verify);
  EXPECT_FALSE(e.compared_bench);
}

TEST(Compare, inputErrorsNameTheSideAndThePath) {
  const std::string dir = temp_dir("errors");
  maskcheck::write_json_atomic(dir + "/bench.json", bench_doc({{"x/maskcheck", kBase}}));
  maskcheck::write_json_atomic(dir + "/verify.json", verify_doc({{"cpu", "p", "passed"}}));
  maskcheck::write_file_atomic(dir + "/not.json", "{\"hello\": 1}");
  maskcheck::write_file_atomic(dir + "/broken.json", "{\"hello\": ");
  std::filesystem::create_directories(dir + "/empty");

  auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message([&] {
              load_results(dir + "/nope", "BASELINE", read_json);
            }).find("BASELINE: no such file or directory: " + dir + "/nope"),
            std::string::npos);
  EXPECT_NE(message([&] {
              load_results(dir + "/not.json", "NEW", read_json);
            }).find("NEW " + dir + "/not.json: unknown result file"),
            std::string::npos);
  EXPECT_NE(message([&] {
              load_results(dir + "/broken.json", "NEW", read_json);
            }).find("NEW: cannot parse"),
            std::string::npos);
  EXPECT_NE(message([&] {
              load_results(dir + "/empty", "NEW", read_json);
            }).find("holds neither verify.json nor bench.json"),
            std::string::npos);
  const auto v = load_results(dir + "/verify.json", "BASELINE", read_json);
  const auto b = load_results(dir + "/bench.json", "NEW", read_json);
  EXPECT_NE(
      message([&] { compare_results(v, b, {}); })
          .find("nothing to compare: BASELINE " + dir + "/verify.json is a verify file, NEW " +
                dir + "/bench.json is a bench file (the kinds must match)"),
      std::string::npos);
  // A bench file named verify.json in a directory.
  const std::string swapped = temp_dir("swapped");
  maskcheck::write_json_atomic(swapped + "/verify.json", bench_doc({{"x/maskcheck", kBase}}));
  EXPECT_NE(
      message([&] { load_results(swapped, "NEW", read_json); }).find("holds Google Benchmark JSON"),
      std::string::npos);
}

TEST(Compare, optionValues) {
  EXPECT_DOUBLE_EQ(parse_percentage("5%"), 0.05);
  EXPECT_DOUBLE_EQ(parse_percentage("5"), 0.05);
  EXPECT_DOUBLE_EQ(parse_percentage(" 2.5 % "), 0.025);
  EXPECT_DOUBLE_EQ(parse_percentage("0"), 0.0);
  EXPECT_DOUBLE_EQ(parse_percentage("150%"), 1.5);
  for (const std::string bad : {"", "%", "-1", "-1%", "abc", "5%%", "5x", "inf", "nan", "1e999"})
    EXPECT_THROW(parse_percentage(bad), std::invalid_argument) << bad;
  CompareOptions o;
  EXPECT_NO_THROW(validate(o));
  for (const double a : {0.0, 1.0, -0.1, 1.5, std::nan("")}) {
    o.alpha = a;
    EXPECT_THROW(validate(o), std::invalid_argument) << a;
  }
  o.alpha = 0.01;
  o.max_slowdown = -0.01;
  EXPECT_THROW(validate(o), std::invalid_argument);
  o.max_slowdown = 0;
  o.gate = "[";
  EXPECT_THROW(validate(o), std::invalid_argument);
}

// A baseline written before every row began with its device: its CUDA rows (attention/...) and
// copy probe (ceiling/d2d_copy/...) pair with NEW's cuda/... and ceiling/cuda/... rows, and the
// comparison says so; CPU rows pair as they always did.
TEST(Compare, legacyCudaNamesOfABaselinePairWithTheirCurrentNames) {
  const std::string legacy = "attention/bf16/D128/L2048/pad50/padding+causal/maskcheck";
  const std::string current = "cuda/" + legacy;
  const auto c =
      compare_bench({{legacy, kBase},
                     {"attention/bf16/D128/L2048/pad50/padding+causal/torch_cudnn", kBase},
                     {"ceiling/d2d_copy/1024MiB", kBase},
                     {"cpu/softmax/a/maskcheck", kBase}},
                    {{current, scaled(kBase, 1.2)},
                     {"cuda/attention/bf16/D128/L2048/pad50/padding+causal/torch_cudnn", kBase},
                     {"ceiling/cuda/d2d_copy/1024MiB", kBase},
                     {"cpu/softmax/a/maskcheck", kBase}});
  ASSERT_EQ(c.bench.size(), 4u);
  for (const auto& r : c.bench) {
    EXPECT_NE(r.verdict, BenchVerdict::added) << r.name;
    EXPECT_NE(r.verdict, BenchVerdict::missing) << r.name;
    EXPECT_EQ(r.n_base, 5u) << r.name;
  }
  EXPECT_TRUE(row(c, current).regression());
  EXPECT_TRUE(row(c, "ceiling/cuda/d2d_copy/1024MiB").probe);
  EXPECT_EQ(c.bench_regressions(), 1u);
  const std::string md = compare_markdown(c);
  EXPECT_NE(md.find("3 rows of the baseline carry names from before every row began with its "
                    "device"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| `" + current + "` |"), std::string::npos) << md;
  EXPECT_EQ(md.find("| `" + legacy + "` |"), std::string::npos) << md;

  // The other way round (NEW from an older binary) pairs too; current names alone give no note.
  const auto back = compare_bench({{current, kBase}}, {{legacy, kBase}});
  EXPECT_EQ(row(back, current).verdict, BenchVerdict::within);
  EXPECT_NE(compare_markdown(back).find("1 row of NEW carries names"), std::string::npos);
  const auto plain = compare_bench({{current, kBase}}, {{current, kBase}});
  EXPECT_TRUE(plain.notes.empty());
}

// The committed GPU report (written before the CUDA rows began with cuda/, aggregates only)
// against a copy of itself under the current names: every row pairs, none is added or missing.
TEST(Compare, committedGpuReportPairsWithItsRowsUnderTheirCurrentNames) {
  const json doc = maskcheck::read_json_file(MASKCHECK_GPU_BENCH);
  json renamed = doc;
  std::set<std::string> rows;
  for (auto& b : renamed["benchmarks"])
    for (const char* key : {"name", "run_name"}) {
      std::string n = b.value(key, "");
      ASSERT_FALSE(n.rfind("cuda/", 0) == 0 || n.rfind("cpu/", 0) == 0) << n;
      if (std::string(key) == "run_name") rows.insert(n);
      b[key] = n.rfind("ceiling/d2d_copy/", 0) == 0 ? "ceiling/cuda/" + n.substr(8) : "cuda/" + n;
    }
  const auto c = compare_results(bench_set(doc, "old"), bench_set(renamed, "new"), {});
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(rows.size(), 220u);
  EXPECT_EQ(c.bench.size(), rows.size());
  for (const auto& r : c.bench) {
    EXPECT_TRUE(r.name.rfind("cuda/", 0) == 0 || r.name.rfind("ceiling/cuda/", 0) == 0) << r.name;
    EXPECT_DOUBLE_EQ(r.ratio, 1.0) << r.name;  // timed on both sides: paired
  }
  EXPECT_NE(compare_markdown(c).find("220 rows of the baseline carry names"), std::string::npos);
}

// The committed CPU report of the main job (29 rows, 5 repetitions each) against itself and
// against a copy whose maskcheck attention rows are 20 % slower.
TEST(Compare, committedCpuReportAgainstItselfAndAPerturbedCopy) {
  const json doc = maskcheck::read_json_file(MASKCHECK_CPU_BENCH);
  CompareOptions o;
  o.gate = "/maskcheck[^/]*$";
  const auto same = compare_results(bench_set(doc, "a"), bench_set(doc, "b"), o);
  EXPECT_FALSE(same.failed());
  std::size_t gated = 0;
  for (const auto& r : same.bench) {
    EXPECT_TRUE(r.probe || r.verdict == BenchVerdict::within) << r.name;
    EXPECT_EQ(r.n_base, 5u) << r.name;
    gated += r.gated;
  }
  EXPECT_EQ(gated, 15u);
  EXPECT_DOUBLE_EQ(same.geomean(true).first, 1.0);

  json slow = doc;
  for (auto& b : slow["benchmarks"]) {
    const std::string name = b.value("name", "");
    if (name.find("cpu/attention/") == 0 && name.find("/maskcheck/") != std::string::npos)
      b["real_time"] = b["real_time"].get<double>() * 1.2;
  }
  const auto c = compare_results(bench_set(doc, "a"), bench_set(slow, "b"), o);
  EXPECT_EQ(c.bench_regressions(), 2u);
  for (const auto& r : c.bench)
    EXPECT_EQ(r.regression(),
              r.name.find("cpu/attention/") == 0 && r.name.find("/maskcheck") != std::string::npos)
        << r.name;
}

}  // namespace
