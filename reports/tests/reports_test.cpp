// The report generator: the analysis behind the charts (length families, speedups, fractions of
// the measured limits, spreads) and the HTML page (escaping, charts present or absent, links to
// counterexample files, unknown input).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "maskcheck/reports/analysis.hpp"
#include "maskcheck/reports/html.hpp"
#include "maskcheck/reports/markdown.hpp"
#include "maskcheck/reports/results.hpp"

namespace {

using nlohmann::json;
namespace mr = maskcheck::reports;

// Google Benchmark iteration rows of one benchmark, one per repetition: seconds per call, and
// counters given as work per call (each repetition's counter is work / seconds).
void add_rows(json& benchmarks, const std::string& name, const std::vector<double>& seconds,
              const std::map<std::string, double>& work = {}) {
  for (std::size_t i = 0; i < seconds.size(); ++i) {
    json b = {{"name", name + "/real_time"},
              {"run_name", name + "/real_time"},
              {"run_type", "iteration"},
              {"repetitions", seconds.size()},
              {"repetition_index", i},
              {"iterations", 10},
              {"real_time", seconds[i] * 1e3},
              {"cpu_time", seconds[i] * 1e3},
              {"time_unit", "ms"}};
    for (const auto& [k, w] : work) b[k] = w / seconds[i];
    benchmarks.push_back(b);
  }
}

json bench_doc(json benchmarks, json context = json::object()) {
  return {{"context", context}, {"benchmarks", benchmarks}};
}

// Attention over L = 256..1024 (maskcheck, torch_sdpa; the reference at 256 only), a softmax
// family whose Lq changes with Lk, a cross-entropy pair of one size, and the CPU probes.
json sample_bench() {
  json b = json::array();
  add_rows(b, "ceiling/cpu/triad/3x16MiB", {1, 1, 1}, {{"bytes_per_second", 20e9}});
  add_rows(b, "ceiling/cpu/fma/f32", {1, 2, 4}, {{"FLOPS", 400e9}});  // 400, 200, 100 GFLOP/s
  for (int l : {256, 512, 1024}) {
    const std::string g = "cpu/attention/f32/D64/L" + std::to_string(l) + "/pad50/padding+causal";
    add_rows(b, g + "/maskcheck", {1, 1, 1}, {{"useful_FLOPS", 50e9}, {"bytes_per_second", 1e9}});
    add_rows(b, g + "/torch_sdpa", {4, 5, 6}, {{"useful_FLOPS", 50e9}});
    if (l == 256) add_rows(b, g + "/reference", {100}, {{"useful_FLOPS", 50e9}});
  }
  for (auto [lk, lq] : {std::pair{1024, 1024}, {8192, 128}}) {
    const std::string g =
        "cpu/softmax/f32/Lk" + std::to_string(lk) + "/Lq" + std::to_string(lq) + "/pad0/none";
    add_rows(b, g + "/maskcheck", {1, 1, 1}, {{"bytes_per_second", 10e9}});
    add_rows(b, g + "/torch", {2, 2, 2}, {{"bytes_per_second", 10e9}});
  }
  add_rows(b, "cpu/cross_entropy/f32/V131072/N512/ignore50/maskcheck", {1, 1, 1},
           {{"bytes_per_second", 5e9}});
  add_rows(b, "cpu/cross_entropy/f32/V131072/N512/ignore50/torch", {3, 3, 3},
           {{"bytes_per_second", 5e9}});
  return bench_doc(b, {{"cpu.triad_bandwidth_gbps", "30.0"},
                       {"cpu.fma_peak_gflops", "1000.0"},
                       {"maskcheck.cpu", "Test CPU"},
                       {"cuda", "unavailable (no device)"}});
}

json verify_doc(const std::string& impl, const std::string& property, const std::string& status) {
  json row = {{"implementation", impl},
              {"property", property},
              {"op", "attention"},
              {"status", status},
              {"cases", 30},
              {"skipped_cases", 0},
              {"skip_reasons", json::object()},
              {"seed", 5},
              {"replay", "maskcheck verify --impl x --seed 5"}};
  if (status == "failed") {
    row["message"] = "out: got 1 want 2";
    row["counterexample"] = json::array({{{"type", "case"}, {"value", "attention f64 H=1"}}});
  }
  if (status == "deviation") row["deviations"] = {{"empty_row_lse", 3}};
  return {
      {"schema", "maskcheck.verify/1"},
      {"seed", 5},
      {"cases", 30},
      {"replay", "maskcheck verify --seed 5"},
      {"about", {{"cpu", "Test CPU"}, {"cores", 2}, {"commit", "abc"}}},
      {"summary", {{"passed", status == "passed" ? 1 : 0}, {"failed", status == "failed" ? 1 : 0}}},
      {"results", json::array({row})}};
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1))
    ++n;
  return n;
}

TEST(Analysis, familiesDifferOnlyInTheirLengthAxis) {
  const auto bench = mr::parse_bench(sample_bench());
  const auto families = mr::length_families(bench);
  ASSERT_EQ(families.size(), 2u);

  const auto& att = families[0];
  EXPECT_EQ(att.pattern, "cpu/attention/f32/D64/L*/pad50/padding+causal");
  EXPECT_EQ(att.axis, "L");
  EXPECT_FALSE(att.lq_varies);
  EXPECT_EQ(att.metric.counter, "useful_FLOPS");
  EXPECT_EQ(att.lengths, (std::vector<long long>{256, 512, 1024}));
  ASSERT_EQ(att.lines.size(), 3u);
  EXPECT_EQ(att.lines[0].impl, "maskcheck");
  EXPECT_EQ(att.lines[0].points.size(), 3u);
  EXPECT_EQ(att.lines[2].impl, "reference");
  EXPECT_EQ(att.lines[2].points.size(), 1u);

  // Softmax keeps Lq x Lk fixed: Lq changes with Lk, one query count per length.
  const auto& sm = families[1];
  EXPECT_EQ(sm.pattern, "cpu/softmax/f32/Lk*/Lq*/pad0/none");
  EXPECT_EQ(sm.axis, "Lk");
  EXPECT_TRUE(sm.lq_varies);
  EXPECT_EQ(sm.metric.counter, "bytes_per_second");
  EXPECT_EQ(sm.lengths, (std::vector<long long>{1024, 8192}));
}

TEST(Analysis, noFamilyWhenAnotherAxisVariesToo) {
  json b = json::array();
  // Two query counts at one key count: the rows differ in Lq on its own, not a length family.
  for (auto [lk, lq] : {std::pair{1024, 16}, {1024, 32}, {2048, 16}, {2048, 32}})
    add_rows(
        b,
        "softmax/f16/Lk" + std::to_string(lk) + "/Lq" + std::to_string(lq) + "/pad0/none/maskcheck",
        {1}, {{"bytes_per_second", 1e9}});
  // One length only.
  add_rows(b, "cross_entropy/bf16/V32768/N16384/ignore0/maskcheck", {1},
           {{"bytes_per_second", 1e9}});
  const auto families = mr::length_families(mr::parse_bench(bench_doc(b)));
  // Lk varies at a fixed Lq: two families (Lq16 and Lq32), neither mixing the query counts.
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(families[0].pattern, "softmax/f16/Lk*/Lq16/pad0/none");
  EXPECT_EQ(families[1].pattern, "softmax/f16/Lk*/Lq32/pad0/none");
  for (const auto& f : families) EXPECT_FALSE(f.lq_varies);
}

TEST(Analysis, speedupIsPeerOverMaskcheckWithThePairingEnvelope) {
  const auto bench = mr::parse_bench(sample_bench());
  const auto speedups = mr::torch_speedups(bench);
  // 3 attention lengths + 2 softmax + 1 cross-entropy; the reference is not a LibTorch peer.
  ASSERT_EQ(speedups.size(), 6u);
  const auto& s = speedups[0];
  EXPECT_EQ(s.peer->impl, "torch_sdpa");
  EXPECT_DOUBLE_EQ(s.ratio.median, 5.0);
  EXPECT_DOUBLE_EQ(s.ratio.lo, 4.0);
  EXPECT_DOUBLE_EQ(s.ratio.hi, 6.0);
  EXPECT_EQ(s.ratio.spread, mr::Spread::min_max);
  EXPECT_EQ(s.ratio.n, 3);
  EXPECT_DOUBLE_EQ(speedups[5].ratio.median, 3.0);
}

TEST(Analysis, fractionsUseTheProbeRowsOverTheStartUpContext) {
  const auto bench = mr::parse_bench(sample_bench());
  const auto limits = mr::measured_limits(bench);
  ASSERT_TRUE(limits.cpu_bandwidth.from_probe);
  EXPECT_DOUBLE_EQ(limits.cpu_bandwidth.value, 20e9);  // not the context's 30 GB/s
  EXPECT_NE(limits.cpu_bandwidth.source.find("ceiling/cpu/triad/3x16MiB"), std::string::npos);
  ASSERT_TRUE(limits.cpu_fma.from_probe);
  EXPECT_DOUBLE_EQ(limits.cpu_fma.value, 200e9);  // the median of 400, 200, 100
  EXPECT_FALSE(limits.gpu_bandwidth.ok());

  const auto fractions = mr::limit_fractions(bench, limits);
  // maskcheck rows only: 3 attention (FMA) + 2 softmax + 1 cross-entropy (bandwidth).
  ASSERT_EQ(fractions.size(), 6u);
  EXPECT_EQ(fractions[0].kind, mr::Fraction::Kind::fma);
  EXPECT_DOUBLE_EQ(fractions[0].fraction.median, 50e9 / 200e9);
  EXPECT_EQ(fractions[3].kind, mr::Fraction::Kind::bandwidth);
  EXPECT_DOUBLE_EQ(fractions[3].fraction.median, 10e9 / 20e9);
  EXPECT_DOUBLE_EQ(fractions[5].fraction.median, 5e9 / 20e9);
}

TEST(Analysis, withoutProbeRowsTheContextValuesAreTheLimits) {
  json b = json::array();
  add_rows(b, "cpu/mlm/T1048576/L512/pad25/maskcheck", {1, 1}, {{"bytes_per_second", 15e9}});
  add_rows(b, "cross_entropy/bf16/V32768/N16384/ignore0/maskcheck", {1, 1},
           {{"bytes_per_second", 1.5e12}});
  const auto bench = mr::parse_bench(
      bench_doc(b, {{"cpu.triad_bandwidth_gbps", "30.0"}, {"cuda.copy_bandwidth_gbps", 3000.0}}));
  const auto limits = mr::measured_limits(bench);
  EXPECT_FALSE(limits.cpu_bandwidth.from_probe);
  EXPECT_DOUBLE_EQ(limits.cpu_bandwidth.value, 30e9);
  EXPECT_NE(limits.cpu_bandwidth.source.find("context cpu.triad_bandwidth_gbps"),
            std::string::npos);
  EXPECT_DOUBLE_EQ(limits.gpu_bandwidth.value, 3000e9);
  EXPECT_FALSE(limits.cpu_fma.ok());
  const auto fractions = mr::limit_fractions(bench, limits);
  ASSERT_EQ(fractions.size(), 2u);
  EXPECT_DOUBLE_EQ(fractions[0].fraction.median, 0.5);  // CPU row against the CPU triad
  EXPECT_DOUBLE_EQ(fractions[1].fraction.median, 0.5);  // GPU row against the device copy
}

// The GPU copy probe, under its name (ceiling/cuda/d2d_copy/...) and under the name files written
// before every row began with its device still carry (ceiling/d2d_copy/...), gives the GPU
// bandwidth; a CUDA row's fraction and its speedup over a LibTorch peer come out under either.
TEST(Analysis, gpuProbeRowUnderItsCurrentAndItsLegacyName) {
  for (const std::string device : {"cuda/", ""}) {
    json b = json::array();
    add_rows(b, "ceiling/" + device + "d2d_copy/1024MiB", {1, 1, 1},
             {{"bytes_per_second", 3000e9}});
    const std::string g = device + "softmax/bf16/Lk8192/Lq256/pad0/none";
    add_rows(b, g + "/maskcheck", {1, 1}, {{"bytes_per_second", 2400e9}});
    add_rows(b, g + "/torch", {2, 2}, {{"bytes_per_second", 2400e9}});
    const auto bench = mr::parse_bench(bench_doc(b, {{"cuda.copy_bandwidth_gbps", "1000"}}));
    const auto limits = mr::measured_limits(bench);
    ASSERT_TRUE(limits.gpu_bandwidth.from_probe) << device;
    EXPECT_DOUBLE_EQ(limits.gpu_bandwidth.value, 3000e9);
    EXPECT_FALSE(limits.cpu_bandwidth.ok());
    const auto fractions = mr::limit_fractions(bench, limits);
    ASSERT_EQ(fractions.size(), 1u);
    EXPECT_EQ(fractions[0].row->name, g + "/maskcheck");
    EXPECT_DOUBLE_EQ(fractions[0].fraction.median, 0.8);
    const auto speedups = mr::torch_speedups(bench);
    ASSERT_EQ(speedups.size(), 1u);
    EXPECT_DOUBLE_EQ(speedups[0].ratio.median, 2.0);
  }
}

TEST(Analysis, currentBenchNameMapsOnlyTheLegacyCudaNames) {
  using mr::current_bench_name;
  EXPECT_EQ(current_bench_name("attention/bf16/D128/L2048/pad50/padding+causal/maskcheck"),
            "cuda/attention/bf16/D128/L2048/pad50/padding+causal/maskcheck");
  EXPECT_EQ(current_bench_name("softmax/f16/Lk1024/Lq2048/pad0/none/torch"),
            "cuda/softmax/f16/Lk1024/Lq2048/pad0/none/torch");
  EXPECT_EQ(current_bench_name("cross_entropy/bf16/V32768/N16384/ignore0/maskcheck"),
            "cuda/cross_entropy/bf16/V32768/N16384/ignore0/maskcheck");
  EXPECT_EQ(current_bench_name("mlm/T1048576/L512/pad25/maskcheck"),
            "cuda/mlm/T1048576/L512/pad25/maskcheck");
  EXPECT_EQ(current_bench_name("build_mask/keep/u8/L2048/pad25/padding+causal"),
            "cuda/build_mask/keep/u8/L2048/pad25/padding+causal");
  EXPECT_EQ(current_bench_name("ceiling/d2d_copy/1024MiB"), "ceiling/cuda/d2d_copy/1024MiB");
  EXPECT_EQ(current_bench_name("ceiling/d2d_copy"), "ceiling/cuda/d2d_copy");
  // Current names, CPU names and anything else stay as they are.
  for (const std::string name :
       {"cuda/attention/bf16/D64/L512/pad0/none/maskcheck", "ceiling/cuda/d2d_copy/64MiB",
        "cpu/attention/f32/D64/L512/pad0/none/maskcheck", "ceiling/cpu/triad/3x16MiB",
        "ceiling/cpu/fma/f32", "cpu/lm_labels/T16384/L2048/pad25/maskcheck", "attentionx/a",
        "x/maskcheck", ""})
    EXPECT_EQ(current_bench_name(name), name);
}

TEST(Analysis, aggregatesOnlyGiveAStddevSpread) {
  json b = json::array();
  for (const auto& [agg, t, tf] : {std::tuple{"mean", 1.0, 100.0},
                                   {"median", 1.0, 100.0},
                                   {"stddev", 0.1, 10.0},
                                   {"cv", 0.1, 0.1}})
    b.push_back(
        {{"name", std::string("attention/bf16/D128/L1024/pad0/none/maskcheck/manual_time_") + agg},
         {"run_name", "attention/bf16/D128/L1024/pad0/none/maskcheck/manual_time"},
         {"run_type", "aggregate"},
         {"aggregate_name", agg},
         {"repetitions", 5},
         {"real_time", t},
         {"time_unit", "ms"},
         {"useful_TFLOPS", tf}});
  const auto bench = mr::parse_bench(bench_doc(b));
  ASSERT_EQ(bench.rows.size(), 1u);
  EXPECT_EQ(bench.rows[0].repetitions, 5);
  EXPECT_DOUBLE_EQ(bench.rows[0].stddev_s, 1e-4);
  const auto metric = mr::throughput_metric(bench.rows[0]);
  ASSERT_TRUE(metric);
  EXPECT_EQ(metric->counter, "useful_TFLOPS");
  const auto s = mr::counter_stat(bench.rows[0], metric->counter, metric->scale);
  EXPECT_EQ(s.spread, mr::Spread::stddev);
  EXPECT_DOUBLE_EQ(s.median, 100e12);
  EXPECT_DOUBLE_EQ(s.lo, 90e12);
  EXPECT_DOUBLE_EQ(s.hi, 110e12);
  EXPECT_EQ(s.n, 5);
  // GPU attention has no measured compute limit: no fraction.
  EXPECT_TRUE(mr::limit_fractions(bench, mr::measured_limits(bench)).empty());
}

TEST(Html, escapesTextAndAttributes) {
  EXPECT_EQ(mr::html_escape("<a & \"b\" 'c'>"), "&lt;a &amp; &quot;b&quot; &#39;c&#39;&gt;");
}

TEST(Html, namesWithMarkupCharactersAreEscapedEverywhere) {
  json v = verify_doc("plugin:<x&y>", "attention.\"quoted\"<p>", "failed");
  v["about"]["cpu"] = "CPU <b>&";
  json b = json::array();
  add_rows(b, "cpu/softmax/f32/Lk1024/Lq1024/pad0/<none>&\"x\"/maskcheck", {1, 1},
           {{"bytes_per_second", 1e9}});
  add_rows(b, "cpu/softmax/f32/Lk1024/Lq1024/pad0/<none>&\"x\"/torch<&>", {2, 2},
           {{"bytes_per_second", 1e9}});
  const std::string html = mr::html_report({v, bench_doc(b, {{"maskcheck.cpu", "<script>"}})});
  for (const std::string raw :
       {"plugin:<x&y>", "\"quoted\"<p>", "CPU <b>&", "<none>", "torch<&>", "<script>"})
    EXPECT_EQ(html.find(raw), std::string::npos) << raw;
  EXPECT_NE(html.find("plugin:&lt;x&amp;y&gt;"), std::string::npos);
  EXPECT_NE(html.find("attention.&quot;quoted&quot;&lt;p&gt;"), std::string::npos);
  EXPECT_NE(html.find("CPU &lt;b&gt;&amp;"), std::string::npos);
  EXPECT_NE(html.find("torch&lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  EXPECT_EQ(count(html, "<script"), 0u);
}

TEST(Html, benchFileGivesEveryKindOfChart) {
  const std::string html = mr::html_report({sample_bench()}, {{"bench.json"}, {}, {}, ""});
  // Two throughput families, one speedup chart (6 bars), one fraction chart (6 bars).
  EXPECT_EQ(count(html, "data-kind=\"throughput\""), 2u);
  EXPECT_EQ(count(html, "data-kind=\"speedup\""), 1u);
  EXPECT_EQ(count(html, "data-kind=\"limits\""), 1u);
  EXPECT_EQ(count(html, "<svg class=\"chart\""), 4u);
  EXPECT_EQ(count(html, "<g class=\"bar\">"), 12u);
  // Every chart has a title, axis labels with units, ticks and a legend.
  EXPECT_EQ(count(html, "class=\"chart-title\""), 4u);
  EXPECT_GE(count(html, "class=\"axis-label\""), 6u);
  EXPECT_EQ(count(html, "<g class=\"legend\">"), 4u);
  EXPECT_NE(html.find("useful FLOP/s, log scale"), std::string::npos);  // 0.5 to 50 GFLOP/s
  EXPECT_NE(html.find("GB/s (bytes moved)"), std::string::npos);
  EXPECT_NE(html.find("sequence length L [tokens, log2 axis]"), std::string::npos);
  EXPECT_NE(html.find("speedup = LibTorch time / maskcheck time"), std::string::npos);
  // Spreads: whiskers and the tables beside the charts.
  EXPECT_NE(html.find("min\u2013max over 3 repetitions"), std::string::npos);
  EXPECT_NE(html.find("4.00\u00d7 \u2013 6.00\u00d7"), std::string::npos);
  // Fractions name their probe rows; the page is self-contained.
  EXPECT_NE(html.find("probe row ceiling/cpu/triad/3x16MiB"), std::string::npos);
  EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // No non-finite number reaches an SVG attribute.
  EXPECT_FALSE(std::regex_search(html, std::regex("=\"-?(nan|inf)", std::regex::icase)));
  // Missing facts say so.
  EXPECT_NE(html.find("none: unavailable (no device)"), std::string::npos);
  EXPECT_NE(html.find("not recorded"), std::string::npos);
}

TEST(Html, verifyOnlyReportHasTheMatrixAndNoCharts) {
  const std::string html = mr::html_report({verify_doc("reference", "attention.x", "deviation")});
  EXPECT_EQ(count(html, "<svg"), 0u);
  EXPECT_EQ(count(html, "<figure"), 0u);
  EXPECT_NE(html.find("<table class=\"matrix\">"), std::string::npos);
  EXPECT_NE(html.find("class=\"dev\""), std::string::npos);
  EXPECT_NE(html.find("pass 30, deviation empty_row_lse"), std::string::npos);
  EXPECT_NE(html.find("not recorded"), std::string::npos);
  EXPECT_NE(html.find("Named deviations"), std::string::npos);
}

TEST(Html, machineFactsComeFromTheVerifyFileWhenItHasThem) {
  json v = verify_doc("reference", "attention.x", "passed");
  v["about"]["gpu"] = "none (built without CUDA)";
  v["about"]["libtorch"] = "2.11.0";
  std::string html = mr::html_report({v});
  EXPECT_NE(html.find("<td class=\"none\">none (built without CUDA)</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>2.11.0</td>"), std::string::npos);
  v["about"]["gpu"] = "NVIDIA H100 (sm_90, 132 SMs)";
  v["about"]["gpu_driver"] = "CUDA driver 13.0, runtime 13.0";
  v["about"]["libtorch"] = "not built";
  html = mr::html_report({v});
  EXPECT_NE(html.find("<td>NVIDIA H100 (sm_90, 132 SMs)</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>CUDA driver 13.0, runtime 13.0</td>"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"none\">none (not built)</td>"), std::string::npos);
}

TEST(Html, failuresLinkTheirCounterexampleFilesRelativeToTheReport) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("reports_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "out");
  fs::create_directories(dir / "ce");
  std::ofstream(dir / "ce" / "a b.safetensors") << "x";
  json v = verify_doc("mutant:m", "attention.p", "failed");
  v["results"][0]["counterexample_files"] = {"ce/a b.safetensors", "ce/missing.safetensors"};
  mr::HtmlOptions o;
  o.out_dir = dir / "out";
  o.cwd = dir;
  const std::string html = mr::html_report({v}, o);
  fs::remove_all(dir);
  EXPECT_NE(html.find("href=\"../ce/a%20b.safetensors\""), std::string::npos) << html;
  EXPECT_EQ(html.find("href=\"../ce/missing.safetensors\""), std::string::npos);
  EXPECT_NE(html.find("ce/missing.safetensors</span> <span class=\"none\">(not found"),
            std::string::npos);
  EXPECT_NE(html.find("class=\"fail\""), std::string::npos);
  EXPECT_NE(html.find("attention f64 H=1"), std::string::npos);  // the shrunk counterexample
  EXPECT_NE(html.find("maskcheck verify --impl x --seed 5"), std::string::npos);
}

TEST(Html, unknownInputIsAnError) {
  try {
    mr::html_report({json{{"hello", 1}}}, {{"x.json"}, {}, {}, ""});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x.json: unknown result file"), std::string::npos)
        << e.what();
  }
}
}  // namespace

namespace {

// The Markdown report's headline: every maskcheck row beside its LibTorch peer, with the speedup,
// its range and the fraction of the limit measured by the probe rows of the same file.
TEST(Markdown, headlineTableSpeedupsWithTheirRangeAndFraction) {
  const std::string md = mr::markdown_report({sample_bench()});
  const auto head = md.find("### Headline: maskcheck against LibTorch");
  ASSERT_NE(head, std::string::npos) << md;
  const std::string table = md.substr(head, md.find("### Every row") - head);
  // Attention L1024: torch 4, 5, 6 s against maskcheck 1 s: 5x, range 4-6, FMA fraction
  // 50 GFLOP/s over the FMA probe's median 200 GFLOP/s.
  EXPECT_NE(
      table.find("| cpu/attention/f32/D64/L1024/pad50/padding+causal | 1 s | 5 s torch_sdpa | "
                 "**5.00x** (4.00-6.00) | 0.25 of FMA peak (useful FLOP/s) |"),
      std::string::npos)
      << table;
  // Cross-entropy: 3x, memory-bound: 5 GB/s over the triad row's 20 GB/s.
  EXPECT_NE(table.find("| cpu/cross_entropy/f32/V131072/N512/ignore50 | 1 s | 3 s torch | "
                       "**3.00x** (3.00-3.00) | 0.25 of bandwidth |"),
            std::string::npos)
      << table;
  // The reference is not LibTorch; the probes are not rows of the headline.
  EXPECT_EQ(table.find("reference"), std::string::npos) << table;
  EXPECT_EQ(table.find("| ceiling/"), std::string::npos) << table;
  EXPECT_NE(table.find("from probe row ceiling/cpu/triad"), std::string::npos) << table;
  // A verify file alone has no headline.
  EXPECT_EQ(mr::markdown_report({verify_doc("cpu", "attention.x", "passed")}).find("Headline"),
            std::string::npos);
}

// The machine table shows context values as text: strings without their JSON quotes (they were
// printed as "30.0"), numbers as numbers, a '|' in a value escaped.
TEST(Markdown, contextValuesAreTextNotJson) {
  json doc = sample_bench();
  doc["context"]["num_cpus"] = 2;
  doc["context"]["cpu.probe"] = "a | b";
  const std::string md = mr::markdown_report({doc});
  EXPECT_NE(md.find("| cpu.triad_bandwidth_gbps | 30.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| num_cpus | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| cpu.probe | a \\| b |"), std::string::npos) << md;
  EXPECT_EQ(md.find("\"30.0\""), std::string::npos) << md;
}

}  // namespace
